#!/bin/bash
# stage1-eval.sh: once the learned run's 44-epoch stage 1 is done (its
# 60-epoch stage 2 has started), REC and GMM at 10,000 images with main's code.
# The stage-2 training is paused (SIGSTOP) meanwhile, so that the evaluation
# has both cores, then continued (SIGCONT).
name=infogan-learned-44; wd=/work/long-wt/runs/$name; out=$wd-floor
until grep -aq "Epoch 1/60" $name.log 2>/dev/null; do sleep 20; done
pid=$(pgrep -f "train --workdir $wd" | head -1)
kill -STOP $pid
echo "[stage1-eval] $(date +%T) stage 2 started; paused $pid; evaluating rec,gmm"
mkdir -p $out && cp -p $wd/config.json $wd/history_stage1.csv $out/
cp -p $wd/batchnorm.json $out/ 2>/dev/null
cd /work/main && . /work/venv/bin/activate && export TF_CPP_MIN_LOG_LEVEL=2
/usr/bin/time -v python -m vae_balance evaluate $wd --sets rec,gmm --no-nll \
    --interpolation-pairs 0 --shared-feature-cache /work/long-wt/runs/features > $out/evaluate.log 2>&1
echo "[stage1-eval] $(date +%T) evaluate rc=$?"
cp -p $wd/evaluation.json $wd/evaluation.md $out/
kill -CONT $pid
echo "[stage1-eval] $(date +%T) continued $pid"
