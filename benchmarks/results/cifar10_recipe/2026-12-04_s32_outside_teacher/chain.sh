#!/usr/bin/env bash
# test split: an outside teacher (the plain loop, 52-min budget, like session 20's 78.5 %), then the recipe's
# label-free students with view_mean 0.5 (the recipe's) at alpha 1.0 and 0.25, and alpha 0.25 at view_mean 0
cd /tmp/s32/repo
export WANDB_MODE=offline
git log --oneline | head -1 >> /tmp/s32/chain.log
echo "START teacher $(date +%H:%M:%S)" >> /tmp/s32/chain.log
/usr/bin/time -v -o /tmp/s32/teacher.time python benchmarks/teacher.py --budget-min 52 --save /tmp/s32/teacher \
  --out /tmp/s32/teacher/plain.json > /tmp/s32/teacher.log 2>&1
echo "DONE teacher rc=$? $(date +%H:%M:%S)" >> /tmp/s32/chain.log
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s32/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s32/runs/$NAME.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
    teacher.name=resnet18 teacher.checkpoint_path=/tmp/s32/teacher/teacher.safetensors teacher.img_size=64 supervision=teacher seed=0 \
    hydra.run.dir=/tmp/s32/runs/$NAME "$@" > /tmp/s32/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s32/chain.log
}
t a10_vm05 student.alpha=1.0 soft_targets.view_mean=0.5 &
( t a025_vm05 student.alpha=0.25 soft_targets.view_mean=0.5; t a025_vm0 student.alpha=0.25 soft_targets.view_mean=0 ) &
wait
echo "CHAIN DONE $(date +%H:%M:%S)" >> /tmp/s32/chain.log
