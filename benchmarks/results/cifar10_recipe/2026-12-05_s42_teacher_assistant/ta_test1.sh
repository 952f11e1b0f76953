#!/usr/bin/env bash
# session 42, test split: alpha 0.25 taught by the recipe's distilled alpha 1.0 student of the same seed
# (sessions 37-38, taught by the 80.93 % stage teacher), label-free, two jobs at a time, one thread each
cd /tmp/s42/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s42/cache
git log --oneline | head -1 >> /tmp/s42/ta_test.log
t() {  # NAME overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s42/ta_test.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s42/runs/$NAME.time python train.py experiment=cifar10_recipe \
    student.alpha=0.25 data.label_fraction=1.0 supervision=teacher teacher.name=mobilenet_v1 teacher.img_size=32 \
    hydra.run.dir=/tmp/s42/runs/$NAME "$@" > /tmp/s42/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s42/ta_test.log
}
t "$@"
