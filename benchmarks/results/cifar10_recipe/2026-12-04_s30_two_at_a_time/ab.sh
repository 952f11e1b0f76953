#!/bin/bash
# A/B: the mini CIFAR recipe from nothing, two jobs at a time (joblib) vs one at a time (basic launcher)
cd /tmp/s30/repo
COMMON=(experiment=cifar10_recipe 'teacher_stage.extra=["trainer.max_steps=100"]' 'recipe_epochs={1.0:2,0.75:2,0.5:4,0.25:6}' callbacks.progress_bar.refresh_rate=200)
for mode in lanes serial; do
  if [ $mode = lanes ]; then L=hydra.launcher.n_jobs=2; else L=hydra.launcher.n_jobs=1; fi
  echo "START $mode $(date +%T)" >> /tmp/s30/chain.log
  MOBILEDISTILL_CACHE=/tmp/s30/cache_$mode /usr/bin/time -v python train.py -m "${COMMON[@]}" $L hydra.sweep.dir=/tmp/s30/runs/$mode > /tmp/s30/$mode.log 2>&1
  echo "END $mode rc=$? $(date +%T)" >> /tmp/s30/chain.log
done
