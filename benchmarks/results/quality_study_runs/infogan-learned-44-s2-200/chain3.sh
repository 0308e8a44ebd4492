#!/bin/bash
# chain3.sh PID: takes over from chain2.sh (session 13), so that the 44 + 200
# record comes first: wait for the 60-epoch stage-2 launch (PID) to end, copy
# its finished work directory (without snapshots and tensorboard) to
# NAME-at60, continue stage 2 to 200 epochs, evaluate and sample the 200-epoch
# run, then measure the 2,000-image quality points of stage-1
# epochs 24 and 44 (benchmarks/quality_study.py), evaluate the 60-epoch copy,
# and measure the epoch-12 point. Evaluations with main's code.
cd /work/long-wt/runs
name=infogan-learned-44; wd=/work/long-wt/runs/$name; pid=$1
while kill -0 $pid 2>/dev/null; do sleep 10; done
echo "[chain3] $(date +%T) 44 + 60 launch ended"
mkdir -p $wd-at60 && (cd $wd && tar cf - --exclude=./snapshots --exclude=./tensorboard .) | (cd $wd-at60 && tar xf -)
mkdir -p $wd-s2-60 && cp -p $wd/config.json $wd/history_stage1.csv $wd/history_stage2.csv $wd/batchnorm.json $wd-s2-60/
cp -p $wd/checkpoints/stage2-epoch0060.json $wd-s2-60/ 2>/dev/null
cp -p $name.log $wd-s2-60/train.log
echo "[chain3] $(date +%T) copied; stage 2 continued towards 200 epochs"
./launch2.sh $name --preset fashion_mnist_infogan --epochs 44 --lr-epochs 18 --epochs2 200 \
    --lr-epochs2 300 --snapshot-every 4 --grid-every 4 --allow-config-change --balance learned
echo "[chain3] $(date +%T) 44 + 200 done rc=$?"
out=$wd-s2-200; mkdir -p $out
cp -p $wd/config.json $wd/history_stage1.csv $wd/history_stage2.csv $wd/batchnorm.json $out/
cp -p $wd/checkpoints/stage2-epoch0200.json $out/ 2>/dev/null
cp -p $name.log $out/train.log
cd /work/main && . /work/venv/bin/activate && export TF_CPP_MIN_LOG_LEVEL=2
/usr/bin/time -v python -m vae_balance evaluate $wd --sets gen2,gen2_matched --no-nll \
    --gmm-components 0 --interpolation-pairs 0 --shared-feature-cache /work/long-wt/runs/features \
    > $out/evaluate.log 2>&1
echo "[chain3] $(date +%T) evaluate 200 rc=$?"
cp -p $wd/evaluation*.json $wd/evaluation*.md $out/ 2>/dev/null
python -m vae_balance sample $wd/sampler --num 10000 --seed 0 --out $out/gen2_10000_seed0.npz > $out/sample.log 2>&1
echo "[chain3] $(date +%T) sample rc=$?"
/usr/bin/time -v python benchmarks/quality_study.py points $wd --epochs 24 44 \
    --shared-feature-cache /work/long-wt/runs/features > $wd/points.log 2>&1
echo "[chain3] $(date +%T) points rc=$?"
/usr/bin/time -v python -m vae_balance evaluate $wd-at60 --sets gen2,gen2_matched --no-nll \
    --gmm-components 0 --interpolation-pairs 0 --shared-feature-cache /work/long-wt/runs/features \
    > $wd-s2-60/evaluate.log 2>&1
echo "[chain3] $(date +%T) evaluate 60 rc=$?"
cp -p $wd-at60/evaluation*.json $wd-at60/evaluation*.md $wd-s2-60/ 2>/dev/null
python -m vae_balance sample $wd-at60/sampler --num 10000 --seed 0 --out $wd-s2-60/gen2_10000_seed0.npz > $wd-s2-60/sample.log 2>&1
echo "[chain3] $(date +%T) sample 60 rc=$?"
python benchmarks/quality_study.py points $wd --epochs 12 \
    --shared-feature-cache /work/long-wt/runs/features >> $wd/points.log 2>&1
echo "[chain3] $(date +%T) points 12 rc=$?"
