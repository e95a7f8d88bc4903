#!/usr/bin/env bash
# bench_linear.sh: the fused linear + cross-entropy (xent bench linear-cross-entropy) against
# PyTorch 1.13's F.linear + F.cross_entropy + backward (bench/linear_ce_torch.py), forward and
# backward, float32, reduction mean, over N in {1024, 8192, 32768} and V in {32000, 128256} at
# H = 1024. Each measurement runs in its own process (peak RSS is a per-process high-water mark).
# Prints a Markdown table: median time, peak extra memory, and xent's ratio to PyTorch on both.
# Not a test: it checks nothing. Takes tens of minutes on 2 cores.
#
# Usage: bash bench/bench_linear.sh [BUILD_DIR]
#   THREADS=2        threads for both (xent's pool; torch.set_num_threads)
#   REPS=3           timed repetitions after an untimed first call; the largest shapes (N*V above
#                    2^29) time their first and only call instead (each takes minutes)
#   SHAPES="8192x32000 ..."   only these NxV cases
#   TORCH_MAX_GIB=N  address-space cap for PyTorch (default: MemAvailable minus 2 GiB), so that a
#                    shape that does not fit is reported as OOM instead of invoking the OOM killer
set -euo pipefail
BUILD=${1:-build}
XENT="$BUILD/xent"
HERE=$(cd "$(dirname "$0")" && pwd)
THREADS=${THREADS:-2}
REPS=${REPS:-3}
H=1024
SHAPES=${SHAPES:-"1024x32000 8192x32000 32768x32000 1024x128256 8192x128256 32768x128256"}
if [ -z "${TORCH_MAX_GIB:-}" ]; then
  avail_kib=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  TORCH_MAX_GIB=$(( avail_kib / 1048576 - 2 ))
fi
[ -x "$XENT" ] || { echo "bench_linear.sh: $XENT not found; build first (make build)" >&2; exit 2; }

jget() { /usr/bin/python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d.get(sys.argv[2], ''))" "$1" "$2"; }

echo "# linear + cross-entropy, fwd+bwd, float32, H=$H, threads=$THREADS, $(date -u +%FT%TZ)"
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| N | V | xent ms | torch ms | time xent/torch | xent peak extra MiB | torch peak extra MiB | memory xent/torch |"
echo "|---|---|---|---|---|---|---|---|"
for shape in $SHAPES; do
  N=${shape%x*}
  V=${shape#*x}
  reps=$REPS
  if [ $(( N * V )) -gt $(( 1 << 29 )) ]; then reps=0; fi  # minutes per call: time the first one
  # PyTorch's peak is about 3 N V 4 bytes (logits, log-probabilities, their gradients); do not even
  # start a case that cannot fit: on a shared machine the attempt itself could starve others.
  torch_need_gib=$(( 3 * N * V * 4 / 1073741824 + 1 ))
  xj=$("$XENT" bench linear-cross-entropy --tokens "$N" --hidden $H --vocab "$V" --threads "$THREADS" --reps "$reps" --json)
  if [ "$torch_need_gib" -gt "$TORCH_MAX_GIB" ]; then
    tj="{\"impl\": \"torch\", \"error\": \"OOM\", \"detail\": \"skipped: needs about $torch_need_gib GiB\"}"
  else
    tj=$(/usr/bin/python3 "$HERE/linear_ce_torch.py" --tokens "$N" --hidden $H --vocab "$V" --threads "$THREADS" \
           --reps $(( reps + 1 )) --max-gib "$TORCH_MAX_GIB" 2>/dev/null || echo '{"error": "crashed"}')
  fi
  xms=$(jget "$xj" median_ms); xmem=$(jget "$xj" peak_extra_bytes)
  terr=$(jget "$tj" error)
  if [ -n "$terr" ]; then
    printf '| %s | %s | %.0f | %s | - | %.1f | %s (needs ~%s GiB, cap %s GiB) | - |\n' "$N" "$V" "$xms" "$terr" \
      "$(echo "$xmem / 1048576" | bc -l)" "$terr" "$torch_need_gib" "$TORCH_MAX_GIB"
  else
    tms=$(jget "$tj" median_ms); tmem=$(jget "$tj" peak_extra_bytes)
    printf '| %s | %s | %.0f | %.0f | %.2f | %.1f | %.1f | %.3f |\n' "$N" "$V" "$xms" "$tms" \
      "$(echo "$xms / $tms" | bc -l)" "$(echo "$xmem / 1048576" | bc -l)" "$(echo "$tmem / 1048576" | bc -l)" \
      "$(echo "$xmem / $tmem" | bc -l)"
  fi
  echo "$xj" >&2
  echo "$tj" >&2
done
