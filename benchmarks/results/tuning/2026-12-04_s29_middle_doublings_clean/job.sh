#!/usr/bin/env bash
# THREADS=N job.sh NAME [overrides...]: a tuning-split run with the stage's clean tuning teacher, from the frozen clone
NAME=$1; shift
cd S29/repo
export OMP_NUM_THREADS=${THREADS:-1} WANDB_MODE=offline
mkdir -p S29/runs
echo "START $NAME $(date +%H:%M:%S)" >> S29/chain.log
/usr/bin/time -v -o S29/runs/$NAME.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
  recipe_data=TUNE data.val_dir=TUNE/val \
  teacher.checkpoint_path=DIR/teacher.safetensors teacher.img_size=64 supervision=teacher seed=${SEED:-0} \
  hydra.run.dir=S29/runs/$NAME "$@" > S29/runs/$NAME.log 2>&1
echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> S29/chain.log
