#!/usr/bin/env bash
# compare_train.sh: `xent train` against the PyTorch baseline (bench/train_torch.py) on the same
# data, recipe, seeds and threads. Prints one row per run (test accuracy, wall and CPU seconds of
# the whole process, loading included, and xent's own load_seconds) and the speed-up. Not a test:
# nothing is asserted.
# `xent train` runs three ways: --no-cache (the gzip'd files inflated every run), with the
# decoded-dataset cache cold (its directory emptied before the run: inflate + write the entries)
# and warm (entries filled by an untimed run first); each series has its own temporary
# XENT_CACHE_DIR, so ~/.cache is never touched.
#
#   bash bench/compare_train.sh [BUILD] [DATA]      # env: SEEDS="0 1 2" THREADS=2 LOADERS="dataloader tensor"
set -euo pipefail
BUILD=${1:-build}
DATA=${2:-}
cd "$(dirname "$0")/.."
for cand in "$DATA" data/fashion-mnist ../shared/data/fashion-mnist; do
  if [ -n "$cand" ] && ls "$cand"/train-images*idx3-ubyte* >/dev/null 2>&1; then DATA=$cand; break; fi
done
[ -n "$DATA" ] && ls "$DATA"/train-images*idx3-ubyte* >/dev/null 2>&1 ||
  { echo "compare_train.sh: no Fashion-MNIST (see scripts/download-fashion-mnist.sh)" >&2; exit 2; }
SEEDS=${SEEDS:-0 1 2}
THREADS=${THREADS:-2}
LOADERS=${LOADERS:-dataloader tensor}
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Runs a command, appends "wall user+sys" (seconds) to $TMP/time.
timed() { /usr/bin/time -f "%e %U %S" -o "$TMP/time" "$@"; }

printf '%-34s %5s %9s %9s %9s %9s\n' "run ($THREADS threads, $DATA)" seed "test acc" "wall s" "cpu s" "load s"
declare -A wall_sum cpu_sum acc_sum n
row() {  # name seed acc [load_seconds from metrics.json]
  read -r w u s <"$TMP/time"
  printf '%-34s %5s %9.4f %9.3f %9.3f %9s\n' "$1" "$2" "$3" "$w" "$(echo "$u + $s" | bc -l)" "${4:--}"
  cpu_sum[$1]=$(echo "${cpu_sum[$1]:-0} + $u + $s" | bc -l)
  wall_sum[$1]=$(echo "${wall_sum[$1]:-0} + $w" | bc -l)
  acc_sum[$1]=$(echo "${acc_sum[$1]:-0} + $3" | bc -l)
  n[$1]=$(( ${n[$1]:-0} + 1 ))
}
acc() { $PY -c "import json;print(json.load(open('$1/metrics.json'))['final']['test_accuracy'])"; }
load() { $PY -c "import json;print('%.3f' % json.load(open('$1/metrics.json'))['load_seconds'])"; }  # inside the run
# The load_cache uses of metrics.json ("hit hit hit hit"), checked so a warm row is really warm.
uses() { $PY -c "import json;c=json.load(open('$1/metrics.json'))['load_cache'];print(' '.join(c[k] for k in ('train_images','train_labels','test_images','test_labels')))"; }
COLD=$TMP/cache-cold WARM=$TMP/cache-warm
XENT_CACHE_DIR=$WARM "./$BUILD/xent" train --data "$DATA" --threads "$THREADS" --out "$TMP/fill" --no-report --quiet --epochs 1
for seed in $SEEDS; do
  common=(--data "$DATA" --seed "$seed" --threads "$THREADS" --quiet)
  timed "./$BUILD/xent" train "${common[@]}" --out "$TMP/x$seed" --no-report --no-cache
  row "xent train --no-report --no-cache" "$seed" "$(acc "$TMP/x$seed")" "$(load "$TMP/x$seed")"
  rm -rf "$COLD"
  XENT_CACHE_DIR=$COLD timed "./$BUILD/xent" train "${common[@]}" --out "$TMP/c$seed" --no-report
  [ "$(uses "$TMP/c$seed")" = "miss miss miss miss" ] || echo "compare_train.sh: cold run was $(uses "$TMP/c$seed")" >&2
  row "xent train --no-report, cache cold" "$seed" "$(acc "$TMP/c$seed")" "$(load "$TMP/c$seed")"
  XENT_CACHE_DIR=$WARM timed "./$BUILD/xent" train "${common[@]}" --out "$TMP/w$seed" --no-report
  [ "$(uses "$TMP/w$seed")" = "hit hit hit hit" ] || echo "compare_train.sh: warm run was $(uses "$TMP/w$seed")" >&2
  row "xent train --no-report, cache warm" "$seed" "$(acc "$TMP/w$seed")" "$(load "$TMP/w$seed")"
  XENT_CACHE_DIR=$WARM timed "./$BUILD/xent" train "${common[@]}" --out "$TMP/r$seed"
  row "xent train (report), cache warm" "$seed" "$(acc "$TMP/r$seed")" "$(load "$TMP/r$seed")"
  if $PY -c "import torch" 2>/dev/null; then
    for loader in $LOADERS; do
      timed $PY bench/train_torch.py --data "$DATA" --seed "$seed" --threads "$THREADS" --loader "$loader" --json >"$TMP/t.log"
      row "torch ($loader)" "$seed" "$(tail -1 "$TMP/t.log" | $PY -c "import json,sys;print(json.load(sys.stdin)['test_accuracy'])")"
    done
  fi
done
echo
printf '%-34s %9s %9s %9s %14s %14s\n' "mean over seeds" "test acc" "wall s" "cpu s" "wall / xent's" "cpu / xent's"
base=${wall_sum["xent train --no-report --no-cache"]}
cbase=${cpu_sum["xent train --no-report --no-cache"]}
keys=("xent train --no-report --no-cache" "xent train --no-report, cache cold" "xent train --no-report, cache warm"
      "xent train (report), cache warm")
for l in $LOADERS; do keys+=("torch ($l)"); done
for k in "${keys[@]}"; do
  [ -n "${n[$k]:-}" ] || continue
  printf '%-34s %9.4f %9.3f %9.3f %13.1fx %13.1fx\n' "$k" "$(echo "${acc_sum[$k]} / ${n[$k]}" | bc -l)" \
    "$(echo "${wall_sum[$k]} / ${n[$k]}" | bc -l)" "$(echo "${cpu_sum[$k]} / ${n[$k]}" | bc -l)" \
    "$(echo "${wall_sum[$k]} / $base" | bc -l)" "$(echo "${cpu_sum[$k]} / $cbase" | bc -l)"
done
