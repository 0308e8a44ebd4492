#!/bin/bash
# chain2.sh PID: takes over from chain.sh (whose relaunch asked for a
# 200-epoch stage 2 at once). The `learned` run follows the `running` run's
# path (sessions 7-8): stage 1 26 epochs at 1e-4, then --lr-epochs 18 to
# epoch 44; a 60-epoch stage 2; the 10,000-image evaluation and sample of
# that 44 + 60 run (main's code); then stage 2 continued towards 200 epochs.
cd /work/long-wt/runs
name=infogan-learned-44; wd=/work/long-wt/runs/$name; pid=$1
while kill -0 $pid 2>/dev/null; do
  n=$(($(cat $wd/history_stage1.csv 2>/dev/null | wc -l) - 1))
  if [ "$n" -ge 26 ]; then
    echo "[chain2] $(date +%T) stage 1 at $n epochs: SIGTERM $pid"; kill -TERM $pid
    while kill -0 $pid 2>/dev/null; do sleep 2; done; break
  fi
  sleep 10
done
echo "[chain2] $(date +%T) relaunch: --epochs 44 --lr-epochs 18 --epochs2 60"
./launch2.sh $name --preset fashion_mnist_infogan --epochs 44 --lr-epochs 18 --epochs2 60 \
    --lr-epochs2 300 --snapshot-every 4 --grid-every 4 --allow-config-change --balance learned
echo "[chain2] $(date +%T) 44 + 60 done rc=$?"
mkdir -p $wd-s2-60 && cp -p $wd/config.json $wd/history_stage1.csv $wd/history_stage2.csv $wd-s2-60/
cp -p $wd/checkpoints/stage2-epoch0060.json $wd/checkpoints/stage1-epoch0044.json $wd-s2-60/ 2>/dev/null
cp -p $wd/batchnorm.json $wd-s2-60/ 2>/dev/null
cp -p $name.log $wd-s2-60/train.log
(
  cd /work/main && . /work/venv/bin/activate && export TF_CPP_MIN_LOG_LEVEL=2
  /usr/bin/time -v python -m vae_balance evaluate $wd --sets rec,gen2,gen2_matched,gmm \
      --stretch --no-nll --interpolation-pairs 0 --shared-feature-cache /work/long-wt/runs/features \
      > $wd-s2-60/evaluate.log 2>&1
  echo "[chain2] $(date +%T) evaluate rc=$?"
  cp -p $wd/evaluation*.json $wd/evaluation*.md $wd-s2-60/ 2>/dev/null
  /usr/bin/time -v python -m vae_balance sample $wd/sampler --num 10000 --seed 0 \
      --out $wd-s2-60/gen2_10000_seed0.npz > $wd-s2-60/sample.log 2>&1
  echo "[chain2] $(date +%T) sample rc=$?"
)
echo "[chain2] $(date +%T) stage 2 continued towards 200 epochs"
./launch2.sh $name --preset fashion_mnist_infogan --epochs 44 --lr-epochs 18 --epochs2 200 \
    --lr-epochs2 300 --snapshot-every 4 --grid-every 4 --allow-config-change --balance learned
echo "[chain2] $(date +%T) done rc=$?"
