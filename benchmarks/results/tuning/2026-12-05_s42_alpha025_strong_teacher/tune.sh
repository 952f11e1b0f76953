#!/usr/bin/env bash
# session 42, CIFAR tuning split (train imgs 0000-1199 / held-out 1200-1499 per class), alpha 0.25,
# session 41's clean tuning teacher (79.53 % held-out), two jobs at a time, one thread each
# (it ran with benchmarks/queue.sh's `t` written out in it; the same commands)
cd /tmp/s42/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s42/cache
RUNS=/tmp/s42/runs LOG=/tmp/s42/tune.log
COMMON=(recipe_data=/tmp/s41/tune data.val_dir=/tmp/s41/tune/val student.alpha=0.25
        teacher.checkpoint_path=/tmp/s41/tune_teacher/teacher.safetensors teacher.img_size=64)
source benchmarks/queue.sh
( t base; t t2 distill.temperature=2 ) &
( t mix16 data.mix.prob=0.5 soft_targets.views=16 soft_targets.view_mean=0 ; t t2mix16 distill.temperature=2 data.mix.prob=0.5 soft_targets.views=16 soft_targets.view_mean=0 ) &
wait
echo "CHAIN DONE $(date +%H:%M:%S)" >> $LOG
