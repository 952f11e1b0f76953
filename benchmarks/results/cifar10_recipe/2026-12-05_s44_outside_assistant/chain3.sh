#!/usr/bin/env bash
# session 44, seed 2 of the same check: its sweep at once (three jobs share the 2 cores for a while: times are
# not table times), then seed 2's alpha 0.25 from the teacher once chain2.sh's seed-1 one ends.
cd /tmp/s44/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s44/cache
T=/tmp/s44/teacher/teacher.safetensors
log() { echo "$1 $(date +%H:%M:%S)" >> /tmp/s44/chain.log; }
COMMON="experiment=cifar10_recipe data.label_fraction=1.0 teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64 seed=2"
log START_sweep2
( /usr/bin/time -v -o /tmp/s44/sweep2.time python train.py -m $COMMON student.alpha=1.0,0.25 hydra.sweep.dir=/tmp/s44/sweep2 \
  > /tmp/s44/sweep2.log 2>&1; log "DONE_sweep2 rc=$?" ) &
until grep -q "DONE_direct1" /tmp/s44/chain.log 2>/dev/null; do sleep 10; done
log START_direct2
OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s44/direct2.time python train.py $COMMON student.alpha=0.25 assistant=null \
  hydra.run.dir=/tmp/s44/direct2 > /tmp/s44/direct2.log 2>&1
log "DONE_direct2 rc=$?"
wait
log CHAIN3_DONE
