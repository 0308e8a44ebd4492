#!/bin/bash
# launch_rule2.sh: launch_rule.sh with 2 intra-op threads; as launch.sh, but a resumed stage-1 model
# takes the running rule RULE (min, ema, ema_min) before its step is traced.
name=$1; rule=$2; shift 2
cd /work/long-wt
. /work/venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=/work/long-wt TF_NUM_INTRAOP_THREADS=2 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=2 RULE=$rule
exec nice -n 19 python -c "
import os, sys, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
from vae_balance.training import checkpoints
restore = checkpoints.restore_newest
def restore_newest(workdir, stage, *args, **kwargs):
    restored = restore(workdir, stage, *args, **kwargs)
    if restored is not None and stage == 'stage1':
        restored[0].running_rule = os.environ['RULE']
        print('[rule] stage1 running_rule ->', restored[0].running_rule, flush=True)
    return restored
checkpoints.restore_newest = restore_newest
from vae_balance.__main__ import main
sys.argv = ['vae_balance'] + sys.argv[1:]
main()
" train --workdir /work/long-wt/runs/$name "$@" > /work/long-wt/runs/$name.log 2>&1
