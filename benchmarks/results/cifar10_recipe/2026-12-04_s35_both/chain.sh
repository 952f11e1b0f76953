#!/usr/bin/env bash
# session 35: supervision=both (labels beside the teacher) at the recipe's settings (view_mean=0.5), every width,
# seed 0, CIFAR, session 32's 78.5 % outside teacher, two jobs at a time
cd /tmp/s35/repo
export WANDB_MODE=offline
T=/tmp/s32/teacher/teacher.safetensors
t() {  # name, supervision, alpha, seed
  echo "START $1 $(date +%H:%M:%S)" >> /tmp/s35/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s35/runs/$1.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
    teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64 supervision=$2 student.alpha=$3 seed=$4 \
    hydra.run.dir=/tmp/s35/runs/$1 > /tmp/s35/runs/$1.log 2>&1
  echo "DONE $1 rc=$? $(date +%H:%M:%S)" >> /tmp/s35/chain.log
}
(t a075_both_s0 both 0.75 0; t a10_both_s0 both 1.0 0) &
(t a05_both_s0 both 0.5 0; t a025_both_s0 both 0.25 0) &
wait
echo "CHAIN DONE $(date +%H:%M:%S)" >> /tmp/s35/chain.log
