#!/bin/bash
# The recipe's one command on the tuning split (train images 0000-1199 of each class; held out 1200-1499),
# seed 1, alpha 1.0 then alpha 0.25 taught by it (the recipe's assistant), one job at a time on both cores.
cd /tmp/s43/repo
TUNE=/tmp/s41/tune
MOBILEDISTILL_CACHE=/tmp/s42/cache /usr/bin/time -v python train.py -m experiment=cifar10_recipe recipe_data=$TUNE \
    data.val_dir=$TUNE/val teacher.checkpoint_path=/tmp/s41/tune_teacher/teacher.safetensors teacher.img_size=64 \
    seed=1 student.alpha=1.0,0.25 data.label_fraction=1.0 hydra.launcher.n_jobs=1 \
    hydra.sweep.dir=/tmp/s43/tune_seed1
