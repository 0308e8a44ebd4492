#!/bin/bash
# launch2.sh NAME ARGS...: `python -m vae_balance train` of this worktree (1864c96)
# on 2 intra-op threads, at low priority, logging to runs/NAME.log (appended).
name=$1; shift
cd /work/long-wt
. /work/venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONPATH=/work/long-wt TF_NUM_INTRAOP_THREADS=2 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=2
exec nice -n 19 python -c "
import sys, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(1)
from vae_balance.__main__ import main
sys.argv = ['vae_balance'] + sys.argv[1:]
main()
" train --workdir /work/long-wt/runs/$name "$@" >> /work/long-wt/runs/$name.log 2>&1
