#!/usr/bin/env bash
# download-idx.sh: the body shared by download-fashion-mnist.sh and download-mnist.sh. Fetches
# four gzip'd IDX files from BASE into DEST (skipping those already there with the right MD5),
# checks each MD5, and moves a file into place only once it matches. Not run by the tests.
#
#   bash scripts/download-idx.sh LABEL DEST BASE "name md5
#   name md5 ..."
set -euo pipefail
LABEL=$1 DEST=$2 BASE=$3 FILES=$4
mkdir -p "$DEST"
fetch() {
  if command -v curl >/dev/null; then curl -fL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null; then wget -O "$2" "$1"
  else echo "download $LABEL: need curl or wget" >&2; exit 1; fi
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
    echo "download $LABEL: $name has MD5 $got, expected $md5" >&2; rm -f "$path.part"; exit 1
  fi
  mv "$path.part" "$path"
  echo "ok       $path"
done
echo "$LABEL is in $DEST; train with: ./build/xent train --data $DEST"
