#!/bin/bash
# points1.sh: the learned 44-epoch run's 2,000-image quality points (stage-1
# epochs 24, 44, 12) with main's benchmarks/quality_study.py, on one intra-op
# thread at low priority, beside the stage-2 training (which leaves about 0.6
# of a core idle). chain3.sh skips the points this one has written.
wd=/work/long-wt/runs/infogan-learned-44
cd /work/main && . /work/venv/bin/activate
export TF_CPP_MIN_LOG_LEVEL=2 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1
for epoch in 24 44 12; do
  /usr/bin/time -v nice -n 19 python -c "
import sys, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
sys.path.insert(0, 'benchmarks')
import quality_study
quality_study.main(sys.argv[1:])
" points $wd --epochs $epoch --shared-feature-cache /work/long-wt/runs/features >> $wd/points1.log 2>&1
  echo "[points1] $(date +%T) epoch $epoch rc=$?"
done
