#!/usr/bin/env bash
# session 36: padding first, end to end: the CIFAR recipe's alpha 0.25 job without labels (session 32's 78.5 %
# outside teacher, seed 0), the code before (130b24b) and after side by side, one thread each
export WANDB_MODE=offline
T=/tmp/s32/teacher/teacher.safetensors
t() {  # name, repo
  echo "START $1 $(date +%H:%M:%S)" >> /tmp/s36/chain.log
  cd $2 && OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s36/runs/$1.time python train.py experiment=cifar10_recipe \
    data.label_fraction=1.0 teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64 student.alpha=0.25 \
    seed=0 hydra.run.dir=/tmp/s36/runs/$1 > /tmp/s36/runs/$1.log 2>&1
  echo "DONE $1 rc=$? $(date +%H:%M:%S)" >> /tmp/s36/chain.log
}
t a025_pad_first /tmp/s36/repo &
t a025_padded_conv /tmp/s36/old &
wait
echo "CHAIN DONE $(date +%H:%M:%S)" >> /tmp/s36/chain.log
