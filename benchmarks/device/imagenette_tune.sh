#!/usr/bin/env bash
# How many epochs and views the Imagenette recipe's alpha = 1.0 student needs, measured on a lent GPU
# (BENCHMARKS.md, "Imagenette recipe", 2026-12-04). From the repo root, with the recipe's configs and code:
#   IMAGENETTE=<folder with train/ val/> OUT=<results folder> bash benchmarks/device/imagenette_tune.sh [smoke]
# 1. the recipe's teacher stage on the tuning split (the first 300 train files of each class; the other 100
#    held out) and on the whole train split, side by side;
# 2. alpha = 1.0 students on the tuning split, four at a time: 32 / 64 epochs, K = 8 / 16 views,
#    view_mean 0 / 0.5, and the label-only twins;
# 3. on val: 32 epochs against the run the tuning split ranks first, and its twin. VAL_ONLY="NAME OVERRIDES"
#    runs this step alone with the variant named. `smoke`: a few images and steps (a check of the script).
# BUDGET_S (540): seconds before unfinished jobs are stopped; step 3 starts only with 150 left. On the lent
# machine, whose python has torch, timm and Lightning, hydra-core, omegaconf and antlr4 travelled as copied
# package folders on PYTHONPATH, and the Imagenette folder by the device tool's `carry`.
set -u
SMOKE=${1:-}
ROOT=${ROOT:-/tmp/tune34}; CACHE=$ROOT/cache; mkdir -p $ROOT
export MOBILEDISTILL_CACHE=$CACHE PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-540} ))
python3 - "$IMAGENETTE" $ROOT "$SMOKE" <<'PY'
import sys; from pathlib import Path
src, root, smoke = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def link(files, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).exists() or (folder / f.name).symlink_to(f.resolve())

for c in sorted(p.name for p in (src / "train").iterdir() if p.is_dir()):
    files = sorted((src / "train" / c).iterdir())
    link(files[:12] if smoke else files[:300], root / "split" / "train" / c)
    link(files[300:306] if smoke else files[300:], root / "split" / "val" / c)
    if smoke:  # a small stand-in for the whole split too
        link(files[:24], root / "full" / "train" / c)
        link(files[300:306], root / "full" / "val" / c)
PY
FULL=$IMAGENETTE; [ -n "$SMOKE" ] && FULL=$ROOT/full
QUICK=(); TQUICK=()
[ -n "$SMOKE" ] && QUICK=(trainer.max_epochs=1 trainer.limit_train_batches=2) && TQUICK=(trainer.max_steps=20 trainer.val_check_interval=10)
left() { echo $(( DEADLINE - $(date +%s) )); }
teacher() {  # $1 name, $2 data folder
  timeout $(left) python3 -m train_teacher experiment=imagenette_teacher recipe_data=$2 hydra.run.dir=$ROOT/$1 \
    "${TQUICK[@]}" > $ROOT/$1.log 2>&1; echo "teacher $1 rc=$? $(date +%T)"
}
student() {  # $1 name, $2 data folder, $3 teacher dir, rest: overrides
  local name=$1 data=$2 tdir=$3; shift 3
  timeout $(left) python3 train.py experiment=imagenette_recipe recipe_data=$data data.label_fraction=1.0 \
    student.alpha=1.0 student.img_size=128 teacher.checkpoint_path=$ROOT/$tdir/teacher.safetensors \
    data.num_workers=3 hydra.run.dir=$ROOT/runs/$name "$@" "${QUICK[@]}" > $ROOT/runs/$name.log 2>&1
  echo "student $name rc=$? $(date +%T)"
}
collect() {
  python3 benchmarks/device/tune_table.py $ROOT/runs | tee $OUT/table.txt
  tar czf $OUT/tune34.tgz -C $ROOT --exclude='*.safetensors' --exclude='*.ckpt' --exclude=cache --exclude=split \
    --exclude=full runs teacher_tune teacher_full teacher_tune.log teacher_full.log 2>/dev/null
}
mkdir -p $ROOT/runs; nvidia-smi -L 2>/dev/null; date +%T
on_val() {  # $1 name, rest: its overrides
  local name=$1; shift
  student val_e32_k8 $FULL teacher_full supervision=teacher trainer.max_epochs=32 &
  student val_$name $FULL teacher_full supervision=teacher "$@" &
  student val_twin_$name $FULL teacher_full supervision=labels $(printf '%s\n' "$@" | grep max_epochs) & wait
}
if [ -n "${VAL_ONLY:-}" ]; then
  teacher teacher_full $FULL; on_val $VAL_ONLY; collect; exit
fi
teacher teacher_tune $ROOT/split & teacher teacher_full $FULL & wait
[ -f $ROOT/teacher_tune/teacher.safetensors ] || { tail -20 $ROOT/teacher_tune.log; collect; exit 1; }
T=teacher_tune; D=$ROOT/split
student e32_k8 $D $T supervision=teacher trainer.max_epochs=32 &
student e32_k16 $D $T supervision=teacher trainer.max_epochs=32 soft_targets.views=16 &
student twin_e32 $D $T supervision=labels trainer.max_epochs=32 & student twin_e64 $D $T supervision=labels trainer.max_epochs=64 & wait; collect
student e64_k8 $D $T supervision=teacher trainer.max_epochs=64 &
student e64_k16 $D $T supervision=teacher trainer.max_epochs=64 soft_targets.views=16 &
student e32_k8_vm $D $T supervision=teacher trainer.max_epochs=32 soft_targets.view_mean=0.5 &
student e64_k8_vm $D $T supervision=teacher trainer.max_epochs=64 soft_targets.view_mean=0.5 & wait; collect
BEST=$(python3 benchmarks/device/tune_table.py $ROOT/runs --best)
echo "tuning split ranks first: $BEST"
if [ -n "$BEST" ] && [ $(left) -gt 150 ]; then
  on_val $BEST
fi
collect; date +%T
