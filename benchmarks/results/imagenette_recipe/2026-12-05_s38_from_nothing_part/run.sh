#!/usr/bin/env bash
# session 38: the Imagenette recipe from nothing, the documented command, an empty cache; 2 cores of an
# Intel Xeon (model 167) with AMX and AVX-512 bf16
cd /tmp/s38/repo && export MOBILEDISTILL_CACHE=/tmp/s38/inette_cache WANDB_MODE=offline
echo "START $(date +%F_%H:%M:%S) $(git log --oneline | head -1)" > /tmp/s38/inette.status
/usr/bin/time -v -o /tmp/s38/inette.time python train.py -m experiment=imagenette_recipe > /tmp/s38/inette.log 2>&1
echo "DONE rc=$? $(date +%F_%H:%M:%S)" >> /tmp/s38/inette.status
