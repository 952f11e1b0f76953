#!/usr/bin/env bash
# session 42, CIFAR tuning split (train imgs 0000-1199 / held-out 1200-1499 per class), alpha 0.25,
# session 41's clean tuning teacher (79.53 % held-out), two jobs at a time, one thread each
cd /tmp/s42/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s42/cache
git log --oneline | head -1 >> /tmp/s42/tune2.log
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s42/tune2.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s42/runs/$NAME.time python train.py experiment=cifar10_recipe \
    recipe_data=/tmp/s41/tune data.val_dir=/tmp/s41/tune/val student.alpha=0.25 \
    teacher.checkpoint_path=/tmp/s41/tune_teacher/teacher.safetensors teacher.img_size=64 \
    hydra.run.dir=/tmp/s42/runs/$NAME "$@" > /tmp/s42/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s42/tune2.log
}
( t e100 trainer.max_epochs=100 ) &
( t e136 trainer.max_epochs=136 ) &
wait
echo "CHAIN DONE $(date +%H:%M:%S)" >> /tmp/s42/tune2.log
