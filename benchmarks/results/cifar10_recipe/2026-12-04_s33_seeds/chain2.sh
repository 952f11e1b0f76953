#!/usr/bin/env bash
# after chain.sh: a second seed of the middle widths' label-only twins (one seed each until now; the twins move
# 1.5-2.3 points with their seed, the distilled students 0.2-0.4)
while ! grep -q "CHAIN DONE" /tmp/s33/chain.log; do sleep 20; done
cd /tmp/s33/repo
export WANDB_MODE=offline
T=/tmp/s32/teacher/teacher.safetensors
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s33/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s33/runs/$NAME.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
    teacher.name=resnet18 teacher.checkpoint_path=$T teacher.img_size=64 supervision=teacher \
    hydra.run.dir=/tmp/s33/runs/$NAME "$@" > /tmp/s33/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s33/chain.log
}
t a075_twin_s1 student.alpha=0.75 seed=1 supervision=labels &
t a05_twin_s1 student.alpha=0.5 seed=1 supervision=labels &
wait
echo "CHAIN2 DONE $(date +%H:%M:%S)" >> /tmp/s33/chain.log
