#!/usr/bin/env bash
# Downloads the MNIST files (Yann LeCun and Corinna Cortes; from the mirror torchvision uses) into
# data/mnist (or the directory given as $1) and checks their MD5 sums (those torchvision checks).
# For real users; the tests never run it (they write tiny IDX files, or use ../shared/data).
set -euo pipefail
DEST=${1:-data/mnist}
BASE=${MNIST_URL:-https://ossci-datasets.s3.amazonaws.com/mnist}
mkdir -p "$DEST"
# name  md5 (torchvision.datasets.MNIST.resources)
FILES="train-images-idx3-ubyte.gz f68b3c2dcbeaaa9fbdd348bbdeb94873
train-labels-idx1-ubyte.gz d53e105ee54ea40749a09fcbcd1e9432
t10k-images-idx3-ubyte.gz 9fb629c4189551a2d022fa330f9573f3
t10k-labels-idx1-ubyte.gz ec29112dd5afa0611ce80d1b7f02629c"
fetch() {
  if command -v curl >/dev/null; then curl -fL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null; then wget -O "$2" "$1"
  else echo "download-mnist.sh: need curl or wget" >&2; exit 1; fi
}
echo "$FILES" | while read -r name md5; do
  path="$DEST/$name"
  if [ -f "$path" ] && [ "$(md5sum "$path" | cut -d' ' -f1)" = "$md5" ]; then
    echo "ok       $path"; continue
  fi
  echo "fetching $BASE/$name"
  fetch "$BASE/$name" "$path.part"
  got=$(md5sum "$path.part" | cut -d' ' -f1)
  if [ "$got" != "$md5" ]; then
    echo "download-mnist.sh: $name has MD5 $got, expected $md5" >&2; rm -f "$path.part"; exit 1
  fi
  mv "$path.part" "$path"
  echo "ok       $path"
done
echo "MNIST is in $DEST; train with: ./build/xent train --data $DEST"
