#!/usr/bin/env bash
# session 44: the assistant with an outside teacher, on test. A plain-loop resnet18 (benchmarks/teacher.py, 28.5-min
# budget: 19 epochs here, never trained by the project), then the recipe's one command cut to alpha 1.0 and 0.25 with all labels
# (alpha 0.25 taught by the sweep's alpha 1.0), and beside alpha 1.0 on the idle core alpha 0.25 from the teacher itself.
cd /tmp/s44/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s44/cache
T=/tmp/s44/teacher/teacher.safetensors
log() { echo "$1 $(date +%H:%M:%S)" >> /tmp/s44/chain.log; }
log START_teacher
/usr/bin/time -v -o /tmp/s44/teacher/time.txt python benchmarks/teacher.py --budget-min 28.5 --save /tmp/s44/teacher \
  --out /tmp/s44/teacher/plain.json > /tmp/s44/teacher/plain_loop.log 2>&1
log "DONE_teacher rc=$?"
COMMON="experiment=cifar10_recipe data.label_fraction=1.0 teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64"
log START_sweep
( /usr/bin/time -v -o /tmp/s44/sweep.time python train.py -m $COMMON student.alpha=1.0,0.25 hydra.sweep.dir=/tmp/s44/sweep \
  > /tmp/s44/sweep.log 2>&1; log "DONE_sweep rc=$?" ) &
sleep 20
log START_direct
OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s44/direct.time python train.py $COMMON student.alpha=0.25 assistant=null \
  hydra.run.dir=/tmp/s44/direct > /tmp/s44/direct.log 2>&1
log "DONE_direct rc=$?"
wait
log CHAIN_DONE
