#!/usr/bin/env bash
# bench.sh: `make bench`: xent against PyTorch (CPU, same threads, same shapes), one ratio table.
# Usage: scripts/bench.sh [build-dir] [extra bench_vs_torch.py flags]. Needs /usr/bin/python3 with
# PyTorch; without it, says so and exits 0. Not a test: it prints numbers and asserts nothing.
# The default cases make the README's table; `--cases prob` runs cross-entropy with probability
# targets and with label smoothing instead (`--cases default,prob` or `--cases all`: both), e.g.
#   bash scripts/bench.sh build --cases prob --threads 2
set -euo pipefail
BUILD="${1:-build}"
shift || true
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
echo "bench: load average now: $(cut -d' ' -f1-3 /proc/loadavg) (numbers are only meaningful on a quiet machine)"
exec "$PY" "$ROOT/bench/bench_vs_torch.py" --xent "$BUILD/xent" "$@"
