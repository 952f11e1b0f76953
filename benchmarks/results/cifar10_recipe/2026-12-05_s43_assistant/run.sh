#!/bin/bash
# Session 43: the recipe's one command cut to the widths the assistant touches, seed 0, on session 37's stage
# teachers (left in its cache), from a frozen clone of a7fffe5. third_seed1/third.sh: the second seed on a third.
MOBILEDISTILL_CACHE=/tmp/s37/cache /usr/bin/time -v python train.py -m experiment=cifar10_recipe student.alpha=1.0,0.25
