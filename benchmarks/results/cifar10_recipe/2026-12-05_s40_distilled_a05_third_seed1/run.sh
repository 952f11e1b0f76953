#!/bin/bash
# Session 40: session 39's distilled CIFAR α 0.5 seed 1 on a third, stopped after 2 epochs, resumed alone
cd /tmp/s39/repo
export MOBILEDISTILL_CACHE=/tmp/s37/cache
# (it waited here for the Imagenette run, so that nothing ran beside it)
echo "START $(date +%F_%H:%M:%S)"
/usr/bin/time -v python train.py experiment=cifar10_recipe data.label_fraction=0.3333 supervision=teacher \
  student.alpha=0.5 seed=1 hydra.run.dir=/tmp/s39/cifar/teacher resume=/tmp/s39/cifar/teacher/checkpoints/last.ckpt
echo "DONE rc=$? $(date +%F_%H:%M:%S)"
