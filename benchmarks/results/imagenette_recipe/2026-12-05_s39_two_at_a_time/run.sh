#!/bin/bash
# Session 39: the Imagenette recipe's α = 0.25 pair from nothing, two jobs at a time (the two teacher stages side by side first)
cd /tmp/s39/repo
export MOBILEDISTILL_CACHE=/tmp/s39/cache
/usr/bin/time -v python train.py -m experiment=imagenette_recipe student.alpha=0.25
