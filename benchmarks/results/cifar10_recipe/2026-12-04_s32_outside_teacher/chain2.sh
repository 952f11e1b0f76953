#!/usr/bin/env bash
# the middle widths at the recipe's epochs (28 / 50) with view_mean 0.5, each as soon as a core frees
cd /tmp/s32/repo
export WANDB_MODE=offline
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s32/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s32/runs/$NAME.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
    teacher.name=resnet18 teacher.checkpoint_path=/tmp/s32/teacher/teacher.safetensors teacher.img_size=64 supervision=teacher seed=0 \
    hydra.run.dir=/tmp/s32/runs/$NAME "$@" > /tmp/s32/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s32/chain.log
}
waitfor() { until grep -q "DONE $1 " /tmp/s32/chain.log; do sleep 15; done; }
( waitfor a10_vm05; t a075_vm05 student.alpha=0.75 soft_targets.view_mean=0.5 ) &
( waitfor a025_vm0; t a05_vm05 student.alpha=0.5 soft_targets.view_mean=0.5 ) &
wait
echo "CHAIN2 DONE $(date +%H:%M:%S)" >> /tmp/s32/chain.log
