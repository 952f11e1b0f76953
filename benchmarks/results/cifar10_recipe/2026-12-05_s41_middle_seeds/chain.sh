#!/usr/bin/env bash
# session 41, test split: seeds 1 and 2 of the middle widths with session 37's own stage teacher (80.93 %),
# label-free (the recipe's rows), two jobs at a time, one thread each
cd /tmp/s41/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s37/cache
git log --oneline | head -1 >> /tmp/s41/chain.log
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s41/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s41/runs/$NAME.time python train.py experiment=cifar10_recipe \
    hydra.run.dir=/tmp/s41/runs/$NAME "$@" > /tmp/s41/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s41/chain.log
}
D="data.label_fraction=1.0 supervision=teacher"
( t a075_s1 $D student.alpha=0.75 seed=1; t a05_s1 $D student.alpha=0.5 seed=1 ) &
( t a075_s2 $D student.alpha=0.75 seed=2; t a05_s2 $D student.alpha=0.5 seed=2 ) &
wait
echo "CHAIN DONE $(date +%H:%M:%S)" >> /tmp/s41/chain.log
