#!/bin/bash
# Session 45, after students_ls0.sh: (1) alpha 0.25 taught by the LS0 sweep's alpha 1.0 of its seed (a teacher
# assistant, as session 42 ran it); (2) a plain-loop teacher on the tuning split (benchmarks/teacher.py, no label
# smoothing, fp32, 22 min as in session 16); (3) from it: alpha 1.0 and 0.25 seeds 0 and 1; (4) alpha 0.25 taught by
# (3)'s alpha 1.0 of its seed. Two jobs at a time, one thread each; nothing else running.
cd /tmp/s45/repo
export WANDB_MODE=offline MOBILEDISTILL_CACHE=/tmp/s45/cache
TUNE=/tmp/s45/tune
COMMON=(experiment=cifar10_recipe recipe_data=$TUNE data.val_dir=$TUNE/val data.label_fraction=1.0)
until grep -q "Exit status" /tmp/s45/students_ls0.log; do sleep 20; done
ta () {  # ta SWEEP OUT: alpha 0.25 seeds 0 and 1, each taught by SWEEP's alpha 1.0 of its seed (jobs 2 and 3)
  for s in 0 1; do
    OMP_NUM_THREADS=1 /usr/bin/time -v python train.py "${COMMON[@]}" student.alpha=0.25 seed=$s \
      teacher.name=mobilenet_v1 teacher.checkpoint_path=$1/$((s + 2))/student.safetensors teacher.img_size=32 \
      hydra.run.dir=$2/s$s > $2_s$s.log 2>&1 &
  done
  wait
}
echo "ta_ls0 start $(date +%T)" >> /tmp/s45/queue2.log
ta /tmp/s45/students_ls0 /tmp/s45/ta_ls0
echo "plain teacher start $(date +%T)" >> /tmp/s45/queue2.log
/usr/bin/time -v python benchmarks/teacher.py --budget-min 22 --data $TUNE --test-split val \
    --save /tmp/s45/tune_plain --out /tmp/s45/tune_plain.json > /tmp/s45/tune_plain.log 2>&1
echo "plain students start $(date +%T)" >> /tmp/s45/queue2.log
/usr/bin/time -v python train.py -m "${COMMON[@]}" teacher.checkpoint_path=/tmp/s45/tune_plain/teacher.safetensors \
    teacher.img_size=64 student.alpha=0.25,1.0 seed=0,1 hydra.sweep.dir=/tmp/s45/students_plain \
    > /tmp/s45/students_plain.log 2>&1
echo "ta_plain start $(date +%T)" >> /tmp/s45/queue2.log
ta /tmp/s45/students_plain /tmp/s45/ta_plain
echo "QUEUE DONE $(date +%T)" >> /tmp/s45/queue2.log
