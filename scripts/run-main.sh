#!/usr/bin/env bash
# The main job behind `make run`: train softmax regression (d2l's recipe) on Fashion-MNIST and
# write the model, metrics, pictures and report.html into out/.
#
#   make run                      # data from $DATA, data/fashion-mnist or ../shared/data/fashion-mnist
#   make run DATA=/path/to/mnist  # any directory with the four MNIST-style IDX files
# Exits 2 with instructions when no data are found.
set -euo pipefail
BUILD=${1:-build}
OUT=${OUT:-out}
cd "$(dirname "$0")/.."

has_data() { [ -n "$1" ] && ls "$1"/train-images*idx3-ubyte* >/dev/null 2>&1; }
DIR=""
if [ -n "${DATA:-}" ]; then
  has_data "$DATA" || { echo "make run: no MNIST-style IDX files (train-images-idx3-ubyte[.gz], ...) in DATA=$DATA" >&2; exit 2; }
  DIR=$DATA
fi
for cand in data/fashion-mnist ../shared/data/fashion-mnist; do
  if [ -z "$DIR" ] && has_data "$cand"; then DIR=$cand; fi
done
if [ -z "$DIR" ]; then
  cat >&2 <<'MSG'
make run: Fashion-MNIST not found (looked in $DATA, data/fashion-mnist, ../shared/data/fashion-mnist).
Download the official files (about 30 MB) with:
    bash scripts/download-fashion-mnist.sh            # into data/fashion-mnist
then run `make run` again, or point at any MNIST-style directory: `make run DATA=/path/to/dir`.
MSG
  exit 2
fi
case "$BUILD" in /*) XENT="$BUILD/xent" ;; *) XENT="./$BUILD/xent" ;; esac
[ -x "$XENT" ] || { echo "make run: $XENT not found; build first (make)" >&2; exit 1; }
# TRAIN_FLAGS adds options, e.g. make run TRAIN_FLAGS="--epochs 20 --momentum 0.9".
# shellcheck disable=SC2086
exec "$XENT" train --data "$DIR" --out "$OUT" ${TRAIN_FLAGS:-}
