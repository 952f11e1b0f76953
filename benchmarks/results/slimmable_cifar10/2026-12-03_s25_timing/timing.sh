#!/bin/bash
# Training throughput of alpha 1.0 alone against the slimmable net (sandwich 1 and 2), one after another,
# 2 threads, the same cached soft targets (seed 0): read each run's it/s over its 200 steps.
cd /work/main
T=/tmp/s20/teacher/teacher.safetensors
for spec in "plain|" "sw1|student=slimmable_mobilenet_v1 student.sandwich=1 callbacks.widths.calibration_images=64" "sw2|student=slimmable_mobilenet_v1 student.sandwich=2 callbacks.widths.calibration_images=64" "plain2|"; do
  name=${spec%%|*}; extra=${spec#*|}
  echo "START t_$name $(date +%T)" >> /tmp/s25/chain.log
  /usr/bin/time -f "%e s wall" -o /tmp/s25/runs/t_$name.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
    teacher.checkpoint_path=$T teacher.img_size=64 supervision=teacher seed=0 trainer.max_epochs=1 \
    trainer.limit_train_batches=200 trainer.limit_val_batches=2 \
    hydra.run.dir=/tmp/s25/runs/t_$name $extra > /tmp/s25/t_$name.log 2>&1
  echo "DONE t_$name $(date +%T) rc=$?" >> /tmp/s25/chain.log
done
