#!/usr/bin/env bash
# session 42: alpha 0.25 taught by a distilled alpha 1.0 student (teacher assistant), tuning split
# (it ran with benchmarks/queue.sh's `t` written out in it; the same command)
cd /tmp/s42/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s42/cache
RUNS=/tmp/s42/runs LOG=/tmp/s42/ta.log
COMMON=(recipe_data=/tmp/s41/tune data.val_dir=/tmp/s41/tune/val student.alpha=0.25)
source benchmarks/queue.sh
t ta teacher.name=mobilenet_v1 teacher.checkpoint_path=/tmp/s42/runs/a1/student.safetensors teacher.img_size=32
echo "CHAIN DONE $(date +%H:%M:%S)" >> $LOG
