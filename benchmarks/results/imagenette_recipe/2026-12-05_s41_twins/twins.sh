#!/usr/bin/env bash
# session 41, val split: the Imagenette recipe's label-only twins at the middle widths and alpha = 0.25 (all the
# labels, the recipe's epochs 24 / 32 / 160), two at a time, one thread each, after the CIFAR seeds
while kill -0 $(cat /tmp/s41/chain.pid) 2>/dev/null; do sleep 20; done
cd /tmp/s41/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s39/cache
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s41/twins.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s41/runs/$NAME.time python train.py experiment=imagenette_recipe \
    student.img_size=128 data.label_fraction=1.0 supervision=labels hydra.run.dir=/tmp/s41/runs/$NAME "$@" \
    > /tmp/s41/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s41/twins.log
}
( t inette_twin_a075 student.alpha=0.75; t inette_twin_a05 student.alpha=0.5 ) &
( t inette_twin_a025 student.alpha=0.25 ) &
wait
echo "TWINS DONE $(date +%H:%M:%S)" >> /tmp/s41/twins.log
