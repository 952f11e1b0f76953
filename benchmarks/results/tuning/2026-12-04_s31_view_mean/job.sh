#!/usr/bin/env bash
# THREADS=N [MD_VIEWAVG=b] job.sh NAME [overrides...]: a tuning-split run with session 29's clean tuning teacher (72.6 %)
NAME=$1; shift
cd /tmp/s31/repo
export OMP_NUM_THREADS=${THREADS:-1} WANDB_MODE=offline
mkdir -p /tmp/s31/runs
echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s31/chain.log
/usr/bin/time -v -o /tmp/s31/runs/$NAME.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
  recipe_data=/tmp/s28/tune data.val_dir=/tmp/s28/tune/val \
  teacher.checkpoint_path=/tmp/s29/teacher/teacher.safetensors teacher.img_size=64 supervision=teacher seed=${SEED:-0} \
  hydra.run.dir=/tmp/s31/runs/$NAME "$@" > /tmp/s31/runs/$NAME.log 2>&1
echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s31/chain.log
