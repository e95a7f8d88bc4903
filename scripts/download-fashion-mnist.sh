#!/usr/bin/env bash
# Downloads the official Fashion-MNIST files (Zalando Research, MIT licence) into
# data/fashion-mnist (or the directory given as $1) and checks their published MD5 sums.
# For real users; the tests never run it (they write tiny IDX files, or use ../shared/data).
set -euo pipefail
DEST=${1:-data/fashion-mnist}
BASE=${FASHION_MNIST_URL:-http://fashion-mnist.s3-website.eu-central-1.amazonaws.com}
mkdir -p "$DEST"
# name  md5 (from github.com/zalandoresearch/fashion-mnist README)
FILES="train-images-idx3-ubyte.gz 8d4fb7e6c68d591d4c3dfef9ec88bf0d
train-labels-idx1-ubyte.gz 25c81989df183df01b3e8a0aad5dffbe
t10k-images-idx3-ubyte.gz bef4ecab320f06d8554ea6380940ec79
t10k-labels-idx1-ubyte.gz bb300cfdad3c16e7a12a480ee83cd310"
fetch() {
  if command -v curl >/dev/null; then curl -fL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null; then wget -O "$2" "$1"
  else echo "download-fashion-mnist.sh: need curl or wget" >&2; exit 1; fi
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
    echo "download-fashion-mnist.sh: $name has MD5 $got, expected $md5" >&2; rm -f "$path.part"; exit 1
  fi
  mv "$path.part" "$path"
  echo "ok       $path"
done
echo "Fashion-MNIST is in $DEST; train with: ./build/xent train --data $DEST"
