#!/usr/bin/env bash
# session 38, test split: seeds 1 and 2 at both ends of alpha with session 37's own stage teacher (80.93 %),
# label-free (the recipe's rows); then the label-only twins on a third of the labels at today's settings
cd /tmp/s38/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s37/cache
git log --oneline | head -1 >> /tmp/s38/chain.log
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s38/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s38/runs/$NAME.time python train.py experiment=cifar10_recipe \
    hydra.run.dir=/tmp/s38/runs/$NAME "$@" > /tmp/s38/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s38/chain.log
}
D="data.label_fraction=1.0 supervision=teacher"
L="data.label_fraction=0.3333 supervision=labels"
( t a10_s1 $D student.alpha=1.0 seed=1; t a025_s1 $D student.alpha=0.25 seed=1; t twin3_a10 $L student.alpha=1.0; t twin3_a05 $L student.alpha=0.5 ) &
# (each seed has its own soft-target cache, so the two chains start together)
( t a10_s2 $D student.alpha=1.0 seed=2; t a025_s2 $D student.alpha=0.25 seed=2; t twin3_a075 $L student.alpha=0.75; t twin3_a025 $L student.alpha=0.25 ) &
wait
echo "CHAIN DONE $(date +%H:%M:%S)" >> /tmp/s38/chain.log
