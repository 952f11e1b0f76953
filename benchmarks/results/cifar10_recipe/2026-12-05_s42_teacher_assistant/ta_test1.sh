#!/usr/bin/env bash
# session 42, test split: alpha 0.25 taught by the recipe's distilled alpha 1.0 student of the same seed
# (sessions 37-38, taught by the 80.93 % stage teacher), label-free, two jobs at a time, one thread each
# (it ran with benchmarks/queue.sh's `t` written out in it; the same commands). Usage: ta_test1.sh NAME overrides...
cd /tmp/s42/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s42/cache
RUNS=/tmp/s42/runs LOG=/tmp/s42/ta_test.log
COMMON=(student.alpha=0.25 data.label_fraction=1.0 supervision=teacher teacher.name=mobilenet_v1 teacher.img_size=32)
source benchmarks/queue.sh
t "$@"
