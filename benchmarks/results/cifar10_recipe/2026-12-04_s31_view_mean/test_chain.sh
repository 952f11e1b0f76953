#!/usr/bin/env bash
# the test split: a teacher from the stage on the full train split (24-minute budget), then alpha 0.25 at the
# recipe's 68 epochs without labels, view_mean 0 against 0.5, two at a time with one thread each
cd /tmp/s31/repo && git checkout -q distill/data.py && git pull -q /work/main main && git log --oneline | head -1 >> /tmp/s31/chain.log
export WANDB_MODE=offline
echo "START teacher_full $(date +%H:%M:%S)" >> /tmp/s31/chain.log
/usr/bin/time -v -o /tmp/s31/teacher_full.time python train_teacher.py experiment=cifar10_teacher \
  callbacks.time_budget.minutes=24 hydra.run.dir=/tmp/s31/teacher_full > /tmp/s31/teacher_full.log 2>&1
echo "DONE teacher_full rc=$? $(date +%H:%M:%S)" >> /tmp/s31/chain.log
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s31/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s31/runs/$NAME.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
    teacher.checkpoint_path=/tmp/s31/teacher_full/teacher.safetensors teacher.img_size=64 supervision=teacher seed=0 \
    hydra.run.dir=/tmp/s31/runs/$NAME "$@" > /tmp/s31/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s31/chain.log
}
t test_a025_vm0 student.alpha=0.25 soft_targets.view_mean=0 &
t test_a025_vm05 student.alpha=0.25 soft_targets.view_mean=0.5 &
wait
echo "TEST CHAIN DONE" >> /tmp/s31/chain.log
