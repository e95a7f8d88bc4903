#!/usr/bin/env bash
# fuzz.sh: build every libFuzzer target in fuzz/ with clang (-fsanitize=fuzzer,address,undefined)
# and run each for N seconds, one at a time. Behind `make fuzz FUZZ_SECONDS=N`.
#
#   bash scripts/fuzz.sh 60                 # build, run each target 60 s, exit 1 on any finding
#   bash scripts/fuzz.sh 3600 npy           # one target only
#   FUZZ_MERGE=1 bash scripts/fuzz.sh 600   # also add new coverage-increasing inputs to fuzz/corpus/<t>
#   FUZZ_BUILD=dir FUZZ_CXXFLAGS=-D... FUZZ_MAX_LEN=n   # build dir, extra compile flags, input size cap
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
mkdir -p "$BUILD/obj" "$BUILD/corpus" "$FINDINGS"

if ! command -v "$CXX" >/dev/null; then
  echo "fuzz.sh: $CXX not found (install Debian's clang: apt-get install clang)" >&2
  exit 1
fi

# Targets: name, then the library sources it needs (relative to the repo root). Each target's
# harness is fuzz/<name>_fuzz.cc; fuzz/<name>.dict is used when present.
declare -A SOURCES=(
  [npy]="src/status.cc src/tensor.cc src/io/atomic_file.cc src/io/npy.cc"
  [idx]="src/status.cc src/train/idx.cc"
  [inline]="src/status.cc src/tensor.cc cli/ops/inline_values.cc"
  [safetensors]="src/status.cc src/tensor.cc src/io/atomic_file.cc src/train/idx.cc src/train/model.cc"
)
ALL_TARGETS=(npy idx inline safetensors)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")

CXXFLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
          -I"$ROOT/include" -I"$ROOT/src" -I"$ROOT/cli" -DXENT_FUZZING=1 ${FUZZ_CXXFLAGS:-})
LIBS=(-lfmt -lz -ldeflate -lpthread)

# Compiles one source into $BUILD/obj when it is newer than its object (a tiny make).
compile() {
  local src=$1 flags=$2
  local obj="$BUILD/obj/$(echo "$src" | tr '/' '_').o"
  if [ ! -f "$obj" ] || [ "$ROOT/$src" -nt "$obj" ] || [ -n "$(find "$ROOT/include" "$ROOT/src" "$ROOT/cli" -name '*.h' -newer "$obj" -print -quit)" ]; then
    echo "  CXX $src" >&2
    "$CXX" "${CXXFLAGS[@]}" "$flags" -c "$ROOT/$src" -o "$obj" || return 1
  fi
  echo "$obj"
}

status=0
summary=()
for t in "${TARGETS[@]}"; do
  srcs=${SOURCES[$t]:-}
  if [ -z "$srcs" ]; then
    echo "fuzz.sh: unknown target '$t' (known: ${ALL_TARGETS[*]})" >&2
    exit 2
  fi
  missing=""
  for s in $srcs fuzz/${t}_fuzz.cc; do [ -f "$ROOT/$s" ] || missing="$missing $s"; done
  if [ -n "$missing" ]; then
    echo "fuzz.sh: SKIP $t: missing$missing" >&2
    summary+=("$t: skipped (missing$missing)")
    continue
  fi
  echo "== fuzz target $t: build" >&2
  objs=()
  ok=1
  for s in $srcs; do
    o=$(compile "$s" -fsanitize=fuzzer-no-link) || { ok=0; break; }
    objs+=("$o")
  done
  if [ $ok = 1 ]; then
    o=$(compile "fuzz/${t}_fuzz.cc" -fsanitize=fuzzer-no-link) || ok=0
    objs+=("$o")
  fi
  if [ $ok = 1 ]; then
    "$CXX" "${CXXFLAGS[@]}" -fsanitize=fuzzer "${objs[@]}" "${LIBS[@]}" -o "$BUILD/${t}_fuzz" || ok=0
  fi
  if [ $ok = 0 ]; then
    echo "fuzz.sh: FAIL $t: build failed" >&2
    summary+=("$t: BUILD FAILED")
    status=1
    continue
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
    "$BUILD/${t}_fuzz" "${dict[@]}" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
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
    "$BUILD/${t}_fuzz" -merge=1 -rss_limit_mb=2048 -timeout=10 -max_len="${FUZZ_MAX_LEN:-8192}" \
      "$seeds" "$work" >"$BUILD/$t.merge.log" 2>&1 &&
      echo "== merged corpus for $t: $before -> $(ls "$seeds" | wc -l) files" >&2
  fi
done

echo "== fuzz summary" >&2
for line in "${summary[@]}"; do echo "  $line" >&2; done
exit $status
