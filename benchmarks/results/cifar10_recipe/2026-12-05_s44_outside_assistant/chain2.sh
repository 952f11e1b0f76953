#!/usr/bin/env bash
# session 44, seed 1 of the same check, in chain.sh's idle core time: its sweep (alpha 1.0, then 0.25 taught by it)
# once chain.sh's alpha-0.25-from-the-teacher job frees a core, then seed 1's alpha 0.25 from the teacher once
# chain.sh's sweep ends.
cd /tmp/s44/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s44/cache
T=/tmp/s44/teacher/teacher.safetensors
log() { echo "$1 $(date +%H:%M:%S)" >> /tmp/s44/chain.log; }
until grep -q DONE_direct /tmp/s44/chain.log 2>/dev/null; do sleep 10; done
COMMON="experiment=cifar10_recipe data.label_fraction=1.0 teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64 seed=1"
log START_sweep1
( /usr/bin/time -v -o /tmp/s44/sweep1.time python train.py -m $COMMON student.alpha=1.0,0.25 hydra.sweep.dir=/tmp/s44/sweep1 \
  > /tmp/s44/sweep1.log 2>&1; log "DONE_sweep1 rc=$?" ) &
until grep -q DONE_sweep /tmp/s44/chain.log 2>/dev/null; do sleep 10; done
log START_direct1
OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s44/direct1.time python train.py $COMMON student.alpha=0.25 assistant=null \
  hydra.run.dir=/tmp/s44/direct1 > /tmp/s44/direct1.log 2>&1
log "DONE_direct1 rc=$?"
wait
log CHAIN2_DONE
