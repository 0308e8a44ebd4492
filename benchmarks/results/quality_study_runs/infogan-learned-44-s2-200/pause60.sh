#!/bin/bash
# pause60.sh: gives the 200-epoch evaluation both cores: stops eval60's python
# (PID $2) when the training launch ($1) ends, continues it once chain4.log
# says the 200-epoch evaluation is done.
while kill -0 $1 2>/dev/null; do sleep 5; done
kill -STOP $2; echo "[pause60] $(date +%T) stopped $2"
until grep -q "evaluate 200" chain4.log; do sleep 5; done
kill -CONT $2; echo "[pause60] $(date +%T) continued $2"
