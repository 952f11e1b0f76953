#!/usr/bin/env bash
# session 42: alpha 0.25 taught by a distilled alpha 1.0 student (teacher assistant), tuning split
cd /tmp/s42/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s42/cache
git log --oneline | head -1 >> /tmp/s42/ta.log
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s42/ta.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s42/runs/$NAME.time python train.py experiment=cifar10_recipe \
    recipe_data=/tmp/s41/tune data.val_dir=/tmp/s41/tune/val student.alpha=0.25 \
    hydra.run.dir=/tmp/s42/runs/$NAME "$@" > /tmp/s42/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s42/ta.log
}
t ta teacher.name=mobilenet_v1 teacher.checkpoint_path=/tmp/s42/runs/a1/student.safetensors teacher.img_size=32
echo "CHAIN DONE $(date +%H:%M:%S)" >> /tmp/s42/ta.log
