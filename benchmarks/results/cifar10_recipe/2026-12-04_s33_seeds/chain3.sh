#!/usr/bin/env bash
# once alpha 0.5's twin was done: a second seed of the distilled alpha 0.75 (seed 1; its cache built by chain.sh)
cd /tmp/s33/repo
export WANDB_MODE=offline
T=/tmp/s32/teacher/teacher.safetensors
NAME=a075_s1
echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s33/chain.log
OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s33/runs/$NAME.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
  teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64 supervision=teacher student.alpha=0.75 seed=1 \
  hydra.run.dir=/tmp/s33/runs/$NAME > /tmp/s33/runs/$NAME.log 2>&1
echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s33/chain.log
