#!/bin/bash
# eval60.sh: the 10,000-image evaluation and GEN-2 sample of the 60-epoch copy
# (main's code), on one intra-op thread at low priority, beside the training.
wd=/work/long-wt/runs/infogan-learned-44
cd /work/main && . /work/venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1
one_thread="import sys, runpy, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
sys.argv = ['vae_balance'] + sys.argv[1:]
runpy.run_module('vae_balance', run_name='__main__')"
/usr/bin/time -v nice -n 19 python -c "$one_thread" evaluate $wd-at60 --sets gen2,gen2_matched \
    --no-nll --gmm-components 0 --interpolation-pairs 0 \
    --shared-feature-cache /work/long-wt/runs/features > $wd-s2-60/evaluate.log 2>&1
echo "[eval60] $(date +%T) evaluate rc=$?"
cp -p $wd-at60/evaluation*.json $wd-at60/evaluation*.md $wd-s2-60/
nice -n 19 python -c "$one_thread" sample $wd-at60/sampler --num 10000 --seed 0 \
    --out $wd-s2-60/gen2_10000_seed0.npz > $wd-s2-60/sample.log 2>&1
echo "[eval60] $(date +%T) sample rc=$?"
