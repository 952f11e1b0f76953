#!/usr/bin/env bash
# session 34: third seeds at the middle widths (CIFAR, session 32's 78.5 % outside teacher), two jobs at a time
cd /tmp/s34/repo
export WANDB_MODE=offline
T=/tmp/s32/teacher/teacher.safetensors
t() {  # name, supervision, alpha, seed
  echo "START $1 $(date +%H:%M:%S)" >> /tmp/s34/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s34/runs/$1.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
    teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64 supervision=$2 student.alpha=$3 seed=$4 \
    hydra.run.dir=/tmp/s34/runs/$1 > /tmp/s34/runs/$1.log 2>&1
  echo "DONE $1 rc=$? $(date +%H:%M:%S)" >> /tmp/s34/chain.log
}
(t a075_s2 teacher 0.75 2; t a05_s1 teacher 0.5 1) &
(t a075_twin_s2 labels 0.75 2; t a05_twin_s2 labels 0.5 2) &
wait
