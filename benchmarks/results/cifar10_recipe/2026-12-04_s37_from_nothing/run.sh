#!/usr/bin/env bash
# session 37: the CIFAR recipe from nothing, the documented command, a fresh clone with ../shared beside it
# and an empty cache; 2 cores of an Intel Xeon (model 167) with AMX and AVX-512 bf16
cd /tmp/s37/repo && export MOBILEDISTILL_CACHE=/tmp/s37/cache
/usr/bin/time -v python train.py -m experiment=cifar10_recipe > /tmp/s37/recipe.log 2>&1
python benchmarks/timeline.py outputs/recipes/cifar10/2026-12-04_21-39-57 $MOBILEDISTILL_CACHE/recipes/cifar10/cifar10_teacher-resnet18-labels{1.0,0.3333}
