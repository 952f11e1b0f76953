# Sourced by a session's queue script (benchmarks/results/*/*.sh), from the project root:
#   RUNS=DIR LOG=FILE COMMON=(overrides...); source benchmarks/queue.sh
#   ( t NAME overrides...; t NAME2 ... ) & ( t NAME3 ... ) & wait
# `t` runs one `train.py experiment=cifar10_recipe COMMON overrides` job on one thread (two queues side by side
# share 2 cores), into $RUNS/NAME, its output in $RUNS/NAME.log, /usr/bin/time's in $RUNS/NAME.time, and
# START / DONE lines with the exit code in $LOG.
t() {
  local name=$1; shift
  echo "START $name $(date +%H:%M:%S)" >> "$LOG"
  OMP_NUM_THREADS=1 /usr/bin/time -v -o "$RUNS/$name.time" python train.py experiment=cifar10_recipe \
    "${COMMON[@]}" hydra.run.dir="$RUNS/$name" "$@" > "$RUNS/$name.log" 2>&1
  echo "DONE $name rc=$? $(date +%H:%M:%S)" >> "$LOG"
}
git log --oneline | head -1 >> "$LOG"
