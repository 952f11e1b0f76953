#!/bin/bash
# Session 45: alpha 0.25 and 1.0, seeds 0 and 1, distilled (the recipe, no labels) on the tuning split from
# the stage teacher trained without label smoothing; two jobs at a time, one thread each.
cd /tmp/s45/repo
TUNE=/tmp/s45/tune
while [ ! -f /tmp/s45/tune_teacher_ls0/teacher.safetensors ]; do sleep 20; done
MOBILEDISTILL_CACHE=/tmp/s45/cache /usr/bin/time -v python train.py -m experiment=cifar10_recipe recipe_data=$TUNE \
    data.val_dir=$TUNE/val teacher.checkpoint_path=/tmp/s45/tune_teacher_ls0/teacher.safetensors teacher.img_size=64 \
    student.alpha=0.25,1.0 seed=0,1 data.label_fraction=1.0 hydra.sweep.dir=/tmp/s45/students_ls0
