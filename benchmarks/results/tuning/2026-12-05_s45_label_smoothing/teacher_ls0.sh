#!/bin/bash
# Session 45: the CIFAR teacher stage on the tuning split without label smoothing (finetune.label_smoothing=0).
cd /tmp/s45/repo
TUNE=/tmp/s45/tune
/usr/bin/time -v python train_teacher.py experiment=cifar10_teacher recipe_data=$TUNE data.val_dir=$TUNE/val \
    finetune.label_smoothing=0 hydra.run.dir=/tmp/s45/tune_teacher_ls0
