#!/usr/bin/env bash
# test-sanitized.sh: build xent with sanitizers in its own build directory and run the tests there.
# Behind `make test-asan` (address,undefined) and `make test-tsan` (thread).
#
#   bash scripts/test-sanitized.sh address,undefined   # build-asan: every test except 'torch'
#   bash scripts/test-sanitized.sh thread              # build-tsan: the tests that run threads
#   SAN_BUILD=dir SAN_CTEST_ARGS='-R npy' bash scripts/test-sanitized.sh address,undefined
#
# Any sanitizer report fails the test that triggered it (-fno-sanitize-recover=all, halt_on_error).
# Lean on purpose (CI has 2 cores): RelWithDebInfo at -O1 with line tables only (-g1: enough for
# the sanitizers' stack traces), no benchmarks, and one SIMD kernel set (XENT_LEAN_SIMD: AVX2 and
# the scalar table; the normal build tests every ISA). Excluded under sanitizers:
# the PyTorch comparison (label 'torch': minutes of Python driving the CLI, and its numerics are
# covered by the normal `make test`); set SAN_WITH_TORCH=1 to include it. Always excluded: 'python'
# (the module is not built in a sanitizer build: an uninstrumented interpreter cannot load it),
# 'mpi' (Open MPI's own allocations and threads flood LSan/TSan; the MPI layer's logic is covered
# by `make test`) and the headless-browser check of the report (chromium, not xent's code). Under TSan only the tests
# that run several threads: the thread-count determinism tests (core Threads.*, the linear op's
# SameBitsForAnyThreadCount) and the fault tests (fault_train_killed trains with 2 threads);
# SAN_TSAN_REGEX overrides the selection. tests/hardening/tsan.supp silences uninstrumented
# third-party threads (OpenBLAS) only.
# Not a fuzzer: see scripts/fuzz.sh.
set -euo pipefail

SAN=${1:?usage: test-sanitized.sh address,undefined|thread}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "$SAN" in
  thread) DEFAULT_BUILD=build-tsan ;;
  *) DEFAULT_BUILD=build-asan ;;
esac
BUILD=${SAN_BUILD:-$ROOT/$DEFAULT_BUILD}
JOBS=${JOBS:-$(nproc)}

cmake -S "$ROOT" -B "$BUILD" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -fno-omit-frame-pointer" \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DXENT_LEAN_SIMD=ON \
  -DXENT_SANITIZE="$SAN" -DXENT_BUILD_BENCH=OFF -DXENT_BUILD_TESTS=ON >/dev/null
cmake --build "$BUILD" -j "$JOBS"

export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/hardening/lsan.supp}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/tests/hardening/tsan.supp}
# Sanitized binaries are 2-20x slower: give ctest's per-test timeouts room.
CTEST_ARGS=(--test-dir "$BUILD" --output-on-failure --no-tests=error -j "$JOBS" --timeout 1200)
if [ "${SAN_WITH_TORCH:-0}" != 1 ]; then
  CTEST_ARGS+=(-LE 'torch|python|mpi')
  echo "test-sanitized: excluding the 'torch', 'python' and 'mpi' labels (SAN_WITH_TORCH=1 keeps 'torch')" >&2
else
  CTEST_ARGS+=(-LE 'python|mpi')
fi
CTEST_ARGS+=(-E 'report_in_browser')
if [ "$SAN" = thread ]; then
  CTEST_ARGS+=(-R "${SAN_TSAN_REGEX:-Threads\.|ThreadCount|Determinis|fault_}")
fi
# shellcheck disable=SC2206
CTEST_ARGS+=(${SAN_CTEST_ARGS:-})
echo "test-sanitized: ctest ${CTEST_ARGS[*]}" >&2
ctest "${CTEST_ARGS[@]}"
