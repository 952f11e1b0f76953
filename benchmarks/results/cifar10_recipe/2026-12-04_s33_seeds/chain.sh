#!/usr/bin/env bash
# test split: more seeds of the recipe's label-free rows (view_mean 0.5, the recipe's) with session 32's 78.5 %
# outside teacher, at the two widths where the margin to the label-only twin is thinnest (alpha 0.25 and 1.0)
cd /tmp/s33/repo
export WANDB_MODE=offline
git log --oneline | head -1 >> /tmp/s33/chain.log
T=/tmp/s32/teacher/teacher.safetensors
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s33/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s33/runs/$NAME.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
    teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64 supervision=teacher \
    hydra.run.dir=/tmp/s33/runs/$NAME "$@" > /tmp/s33/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s33/chain.log
}
( t a025_s1 student.alpha=0.25 seed=1; t a10_s1 student.alpha=1.0 seed=1 ) &
( t a025_s2 student.alpha=0.25 seed=2; t a10_s2 student.alpha=1.0 seed=2 ) &
wait
echo "CHAIN DONE $(date +%H:%M:%S)" >> /tmp/s33/chain.log
