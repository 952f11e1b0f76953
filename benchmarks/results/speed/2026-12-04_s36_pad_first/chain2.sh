#!/usr/bin/env bash
# session 36: per-epoch time of padding first against the padded conv at the other widths: the CIFAR recipe's
# job without labels, 5 epochs (the OneCycle schedule shortened with them; only the epoch times are read),
# before (130b24b) and after side by side, one thread each
export WANDB_MODE=offline
T=/tmp/s32/teacher/teacher.safetensors
t() {  # name, repo, alpha
  echo "START $1 $(date +%H:%M:%S)" >> /tmp/s36/chain2.log
  cd $2 && OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s36/runs/$1.time python train.py experiment=cifar10_recipe \
    data.label_fraction=1.0 teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64 student.alpha=$3 \
    trainer.max_epochs=5 seed=0 hydra.run.dir=/tmp/s36/runs/$1 > /tmp/s36/runs/$1.log 2>&1
  echo "DONE $1 rc=$? $(date +%H:%M:%S)" >> /tmp/s36/chain2.log
}
for a in 1.0 0.75 0.5; do
  t a${a}_e5_pad_first /tmp/s36/repo $a &
  t a${a}_e5_padded_conv /tmp/s36/old $a &
  wait
done
echo "CHAIN DONE $(date +%H:%M:%S)" >> /tmp/s36/chain2.log
