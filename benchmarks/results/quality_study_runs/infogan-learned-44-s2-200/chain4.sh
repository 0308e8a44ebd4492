#!/bin/bash
# chain4.sh PID: takes over from chain3.sh (whose 200-epoch launch is PID)
# once the quality points were measured (points1.sh) and the
# 60-epoch copy's evaluation started beside the training (eval60.sh): wait for
# the launch, then evaluate and sample the 200-epoch run (main's code).
cd /work/long-wt/runs
name=infogan-learned-44; wd=/work/long-wt/runs/$name; pid=$1
while kill -0 $pid 2>/dev/null; do sleep 10; done
echo "[chain4] $(date +%T) 44 + 200 done rc=$?"
out=$wd-s2-200; mkdir -p $out
cp -p $wd/config.json $wd/history_stage1.csv $wd/history_stage2.csv $wd/batchnorm.json $out/
cp -p $wd/checkpoints/stage2-epoch0200.json $out/ 2>/dev/null
cp -p $name.log $out/train.log
cd /work/main && . /work/venv/bin/activate && export TF_CPP_MIN_LOG_LEVEL=2
/usr/bin/time -v python -m vae_balance evaluate $wd --sets gen2,gen2_matched --no-nll \
    --gmm-components 0 --interpolation-pairs 0 --shared-feature-cache /work/long-wt/runs/features \
    > $out/evaluate.log 2>&1
echo "[chain4] $(date +%T) evaluate 200 rc=$?"
cp -p $wd/evaluation*.json $wd/evaluation*.md $out/ 2>/dev/null
python -m vae_balance sample $wd/sampler --num 10000 --seed 0 --out $out/gen2_10000_seed0.npz > $out/sample.log 2>&1
echo "[chain4] $(date +%T) sample rc=$?"
