#!/bin/bash
# Test split, a third of the labels, seed 1: the recipe's one command for alpha 1.0 and 0.25 (0.25 taught by
# the sweep's 1.0), then alpha 0.25 from the stage teacher itself (assistant=null), one job at a time.
cd /tmp/s43/repo
export MOBILEDISTILL_CACHE=/tmp/s37/cache
/usr/bin/time -v python train.py -m experiment=cifar10_recipe seed=1 data.label_fraction=0.3333 student.alpha=1.0,0.25 \
    hydra.launcher.n_jobs=1 hydra.sweep.dir=/tmp/s43/third_seed1
/usr/bin/time -v python train.py experiment=cifar10_recipe seed=1 data.label_fraction=0.3333 student.alpha=0.25 \
    assistant=null hydra.run.dir=/tmp/s43/third_seed1_direct
