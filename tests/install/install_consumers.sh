#!/usr/bin/env bash
# install_consumers.sh CMAKE BUILD_DIR EXAMPLES_DIR [SANITIZERS]: the `install_consumers` test.
# Installs BUILD_DIR into a fresh temporary prefix, builds examples/find_package with CMake and
# examples/pkg_config with make + pkg-config against it (the same compiler, plus -fsanitize when the
# build is sanitized, as a static archive built that way needs), runs both and checks that each
# prints exactly "1.2753". When the build has xent_mpi, also builds the MPI consumer twice
# (examples/mpi through find_package(xent COMPONENTS mpi), and through xent-mpi.pc) and runs each
# under `mpirun -np 2` (tests/mpi/mpirun.sh), expecting 1.2753 again; that run is skipped, saying
# so, without an mpirun or in a sanitized build (whose ctest skips the mpi suite too). Exit 77
# (skipped) when pkg-config or make is missing.
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

# A shared build's pkg-config consumers carry no rpath: let them find the installed libraries.
LIBDIR=$(dirname "$(find "$TMP/prefix" -name 'libxent.*' | head -n 1)")
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

check() {  # name, program [args...] (the command to run)
  local out
  out=$("${@:2}")
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

# The MPI layer: installed with its package component and .pc exactly when the build has xent_mpi.
if ! grep -q '^XENT_HAVE_MPI:INTERNAL=ON' "$BUILD/CMakeCache.txt"; then
  echo "install_consumers: this build has no xent_mpi (MPI not found): no MPI consumer to check"
  exit 0
fi
for f in mpi.h xentMpiTargets.cmake xent-mpi.pc; do
  [ -n "$(find "$TMP/prefix" -name "$f")" ] || { echo "install_consumers: FAIL: the install has no $f"; exit 1; }
done
"$CMAKE" -S "$EXAMPLES/mpi" -B "$TMP/mpi" -DCMAKE_PREFIX_PATH="$TMP/prefix" \
  -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" >"$TMP/mpi.log" ||
  { cat "$TMP/mpi.log"; exit 1; }
"$CMAKE" --build "$TMP/mpi" >>"$TMP/mpi.log" 2>&1 || { cat "$TMP/mpi.log"; exit 1; }
PKG_CONFIG_PATH="$(dirname "$(find "$TMP/prefix" -name xent-mpi.pc)")" make -s -C "$EXAMPLES/pkg_config" OUT="$TMP/pkg_config" \
  CXX="$CXX $FLAGS" mpi >"$TMP/pc-mpi.log" 2>&1 || { cat "$TMP/pc-mpi.log"; exit 1; }
echo "install_consumers: built the MPI consumer with find_package(xent COMPONENTS mpi) and with xent-mpi.pc"
if [ -n "$SAN" ]; then
  echo "install_consumers: SKIP running the MPI consumers: sanitized build (Open MPI is not instrumented)"
  exit 0
fi
MPIRUN="$(dirname "$0")/../mpi/mpirun.sh"
if ! command -v mpirun >/dev/null 2>&1; then
  echo "install_consumers: SKIP running the MPI consumers: mpirun not found (install openmpi-bin)"
  exit 0
fi
check "find_package(xent COMPONENTS mpi), mpirun -np 2," sh "$MPIRUN" 2 "$TMP/mpi/mpi_loss"
check "xent-mpi.pc, mpirun -np 2," sh "$MPIRUN" 2 "$TMP/pkg_config/mpi_loss"
