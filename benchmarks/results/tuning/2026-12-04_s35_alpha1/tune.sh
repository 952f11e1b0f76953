#!/usr/bin/env bash
# session 35: tuning split (session 28's split, session 29's clean 72.6 % tuning teacher), alpha 1.0:
# view_mean=1 (the teacher's mean over the 8 views alone) and the label-only twin, beside the test jobs
cd /tmp/s35/repo
export WANDB_MODE=offline
job() {  # name, overrides...
  NAME=$1; shift
  echo "START $NAME $(date +%H:%M:%S)" >> /tmp/s35/chain.log
  OMP_NUM_THREADS=1 /usr/bin/time -v -o /tmp/s35/runs/$NAME.time python train.py experiment=cifar10_recipe data.label_fraction=1.0 \
    recipe_data=/tmp/s28/tune data.val_dir=/tmp/s28/tune/val \
    teacher.checkpoint_path=/tmp/s29/teacher/teacher.safetensors teacher.img_size=64 seed=0 \
    hydra.run.dir=/tmp/s35/runs/$NAME "$@" > /tmp/s35/runs/$NAME.log 2>&1
  echo "DONE $NAME rc=$? $(date +%H:%M:%S)" >> /tmp/s35/chain.log
}
waitfor() { until grep -q "DONE $1" /tmp/s35/chain.log; do sleep 20; done; }
(waitfor a025_both_s0; job tune_a10_vm1 student.alpha=1.0 supervision=teacher soft_targets.view_mean=1.0) &
(waitfor a10_both_s0; job tune_a10_twin student.alpha=1.0 supervision=labels) &
wait
echo "TUNE DONE $(date +%H:%M:%S)" >> /tmp/s35/chain.log
