#!/usr/bin/env bash
# fuzz.sh: build every libFuzzer target of fuzz/CMakeLists.txt with clang (-fsanitize=fuzzer,
# address,undefined) in its own CMake build and run each for N seconds, one at a time. Behind `make fuzz FUZZ_SECONDS=N`.
#
#   bash scripts/fuzz.sh 60                 # build, run each target 60 s, exit 1 on any finding
#   bash scripts/fuzz.sh 3600 npy           # one target only
#   FUZZ_MERGE=1 bash scripts/fuzz.sh 600   # also add new coverage-increasing inputs to fuzz/corpus/<t>
#   FUZZ_BUILD=dir FUZZ_CXX=clang++-14 FUZZ_CXXFLAGS=-D... FUZZ_MAX_LEN=n   # build dir, compiler, flags, input cap
#
# The committed seed corpus (fuzz/corpus/<target>/) is read, never written, unless FUZZ_MERGE=1;
# new inputs go to $FUZZ_BUILD/corpus/<target>/. A crash, leak, timeout (-timeout=10), out-of-memory
# (-rss_limit_mb=2048) or sanitizer report stops that target; its reproducer is saved in
# fuzz/findings/ (git-ignored) and the script exits 1 after running the remaining targets.
# Execution counts are appended to $FUZZ_BUILD/stats.tsv (date, target, seconds, execs, result).
# Not a unit test: the fault and sanitizer tests live in tests/hardening and scripts/test-sanitized.sh.
set -uo pipefail

SECONDS_EACH=${1:-60}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
FINDINGS=$ROOT/fuzz/findings
CXX=${FUZZ_CXX:-clang++}
mkdir -p "$BUILD" "$FINDINGS"

if ! command -v "$CXX" >/dev/null; then
  echo "fuzz.sh: $CXX not found (install Debian's clang: apt-get install clang)" >&2
  exit 1
fi

# The fuzz programs are CMake targets (fuzz/CMakeLists.txt, XENT_BUILD_FUZZ=ON): every library is
# compiled with -fsanitize=fuzzer-no-link,address,undefined and each program linked with
# -fsanitize=fuzzer. The list of programs comes from that build ($BUILD/fuzz/targets.txt).
echo "== fuzz: configure and build in $BUILD" >&2
C_COMPILER=${FUZZ_CC:-$(dirname "$(command -v "$CXX")")/clang}
[ -x "$C_COMPILER" ] || C_COMPILER=clang
if ! cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_C_COMPILER="$C_COMPILER" \
       -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -fno-omit-frame-pointer ${FUZZ_CXXFLAGS:-}" \
       -DXENT_LEAN_SIMD=ON -DXENT_BUILD_FUZZ=ON -DXENT_SANITIZE=address,undefined -DXENT_BUILD_TESTS=OFF \
       -DXENT_BUILD_BENCH=OFF -DXENT_BUILD_CLI=OFF -DXENT_INSTALL=OFF >"$BUILD/configure.log" 2>&1; then
  cat "$BUILD/configure.log" >&2
  echo "fuzz.sh: FAIL: configure failed" >&2
  exit 1
fi
if ! cmake --build "$BUILD" --target xent_fuzzers -j "${JOBS:-$(nproc)}"; then
  echo "fuzz.sh: FAIL: build failed" >&2
  exit 1
fi
mapfile -t ALL_TARGETS <"$BUILD/fuzz/targets.txt"
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")

status=0
summary=()
for t in "${TARGETS[@]}"; do
  if [ ! -x "$BUILD/fuzz/${t}_fuzz" ]; then
    echo "fuzz.sh: unknown target '$t' (known: ${ALL_TARGETS[*]})" >&2
    exit 2
  fi
  seeds="$ROOT/fuzz/corpus/$t"
  work="$BUILD/corpus/$t"
  mkdir -p "$seeds" "$work"
  dict=()
  [ -f "$ROOT/fuzz/$t.dict" ] && dict=(-dict="$ROOT/fuzz/$t.dict")
  log="$BUILD/$t.log"
  echo "== fuzz target $t: run ${SECONDS_EACH}s (log: $log)" >&2
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$BUILD/fuzz/${t}_fuzz" "${dict[@]}" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -timeout=10 -max_len="${FUZZ_MAX_LEN:-8192}" -print_final_stats=1 -artifact_prefix="$FINDINGS/$t-" \
    "$work" "$seeds" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  execs=${execs:-0}
  if [ $rc -eq 0 ]; then
    result=ok
  else
    result="FINDING (exit $rc)"
    status=1
    echo "fuzz.sh: FINDING in $t (exit $rc); reproducer(s):" >&2
    ls -1t "$FINDINGS/$t-"* 2>/dev/null | head -5 >&2
    grep -m1 -A25 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|==ERROR' "$log" >&2
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$SECONDS_EACH" "$execs" "$result" >>"$BUILD/stats.tsv"
  summary+=("$t: $execs execs in ${SECONDS_EACH}s, $result")

  if [ "${FUZZ_MERGE:-0}" = 1 ] && [ $rc -eq 0 ]; then
    # Adds to the committed seeds only the new inputs that reach coverage the seeds do not.
    before=$(ls "$seeds" | wc -l)
    "$BUILD/fuzz/${t}_fuzz" -merge=1 -rss_limit_mb=2048 -timeout=10 -max_len="${FUZZ_MAX_LEN:-8192}" \
      "$seeds" "$work" >"$BUILD/$t.merge.log" 2>&1 &&
      echo "== merged corpus for $t: $before -> $(ls "$seeds" | wc -l) files" >&2
  fi
done

echo "== fuzz summary" >&2
for line in "${summary[@]}"; do echo "  $line" >&2; done
exit $status
