#!/bin/bash
# Session 39: the α = 0.5 pair, after the α = 0.25 pair (run.sh), with the teachers and soft-target caches it left
cd /tmp/s39/repo
export MOBILEDISTILL_CACHE=/tmp/s39/cache
while pgrep -f "experiment=imagenette_recipe student.alpha=0.25" > /dev/null; do sleep 10; done
echo "START $(date +%F_%H:%M:%S)"
/usr/bin/time -v python train.py -m experiment=imagenette_recipe student.alpha=0.5
echo "DONE rc=$? $(date +%F_%H:%M:%S)"
