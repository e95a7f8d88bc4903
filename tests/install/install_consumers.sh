#!/usr/bin/env bash
# install_consumers.sh CMAKE BUILD_DIR EXAMPLES_DIR [SANITIZERS]: the `install_consumers` test.
# Installs BUILD_DIR into a fresh temporary prefix, builds examples/find_package with CMake and
# examples/pkg_config with make + pkg-config against it (the same compiler, plus -fsanitize when the
# build is sanitized, as a static archive built that way needs), runs both and checks that each
# prints exactly "1.2753". Exit 77 (skipped) when pkg-config or make is missing.
set -euo pipefail
CMAKE=$1 BUILD=$2 EXAMPLES=$3 SAN=${4:-}
for tool in pkg-config make; do
  command -v "$tool" >/dev/null || { echo "install_consumers: SKIP: $tool not found"; exit 77; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
CXX=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
FLAGS=""
[ -n "$SAN" ] && FLAGS="-fsanitize=$SAN"

"$CMAKE" --install "$BUILD" --prefix "$TMP/prefix" >"$TMP/install.log"
echo "install_consumers: installed into $TMP/prefix:"
(cd "$TMP/prefix" && find . -name '*.a' -o -name '*.so' -o -name '*.pc' -o -name '*.cmake' -o -name xent.h | sort)

check() {  # name, program
  local out
  out=$("$2")
  if [ "$out" != "1.2753" ]; then
    echo "install_consumers: FAIL: the $1 consumer printed '$out', expected 1.2753"
    exit 1
  fi
  echo "install_consumers: the $1 consumer printed $out"
}

"$CMAKE" -S "$EXAMPLES/find_package" -B "$TMP/find_package" -DCMAKE_PREFIX_PATH="$TMP/prefix" \
  -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" >"$TMP/fp.log" ||
  { cat "$TMP/fp.log"; exit 1; }
"$CMAKE" --build "$TMP/find_package" >>"$TMP/fp.log" 2>&1 || { cat "$TMP/fp.log"; exit 1; }
check find_package "$TMP/find_package/mean_loss"

mkdir -p "$TMP/pkg_config"
PKG_CONFIG_PATH="$(dirname "$(find "$TMP/prefix" -name xent.pc)")" make -s -C "$EXAMPLES/pkg_config" OUT="$TMP/pkg_config" \
  CXX="$CXX $FLAGS" >"$TMP/pc.log" 2>&1 || { cat "$TMP/pc.log"; exit 1; }
check pkg-config "$TMP/pkg_config/mean_loss"
