#!/bin/bash
# Session 40: the α 1.0 and 0.75 pairs, with session 39's teachers and soft-target caches
cd /tmp/s40/repo
export MOBILEDISTILL_CACHE=/tmp/s39/cache
echo "START $(date +%F_%H:%M:%S)"
/usr/bin/time -v python train.py -m experiment=imagenette_recipe student.alpha=1.0,0.75
echo "DONE rc=$? $(date +%F_%H:%M:%S)"
