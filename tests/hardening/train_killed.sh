#!/usr/bin/env bash
# train_killed.sh: `xent train --checkpoint` killed with SIGKILL at several moments must leave a
# checkpoint that resumes and a model that loads. Run by fault_tests.sh (case train_killed):
#
#   train_killed.sh XENT WORKDIR     (exit 0 pass, 1 fail, 77 skipped)
#
# A first complete run writes model + checkpoint. Then, KILLS times, the same run restarts over
# those files and is SIGKILLed after a pseudo-random delay (fixed seed, so the moments are the same
# on every run); afterwards `xent evaluate --model` must succeed on the model, and
# `xent train --resume` must succeed from the checkpoint. The data are a tiny synthetic IDX set
# written here (4000 + 500 images of 8 x 8, 10 classes). Not a test of training quality.
set -uo pipefail
XENT=${1:?usage: train_killed.sh XENT WORKDIR}
WORK=${2:?usage: train_killed.sh XENT WORKDIR}
KILLS=${KILLS:-8}
fail() { echo "FAIL train_killed: $*"; exit 1; }

command -v /usr/bin/python3 >/dev/null || { echo "SKIP train_killed: /usr/bin/python3 is needed to write the data"; exit 77; }
mkdir -p "$WORK/data" "$WORK/out"
/usr/bin/python3 - "$WORK/data" <<'EOF'
import os, random, struct, sys
d = sys.argv[1]
rng = random.Random(1234)
def write(name, n, h, w):
    labels = bytes(rng.randrange(10) for _ in range(n))
    pix = bytearray()
    for y in labels:  # class-dependent bright stripe plus noise, so that learning is possible
        for i in range(h * w):
            pix.append(min(255, rng.randrange(64) + (160 if i % 10 == y else 0)))
    with open(os.path.join(d, name + "-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, h, w) + bytes(pix))
    with open(os.path.join(d, name + "-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels)
write("train", 4000, 8, 8)
write("t10k", 500, 8, 8)
EOF

ARGS=(train --data "$WORK/data" --out "$WORK/out" --epochs 30 --batch-size 16 --lr 0.05 --threads 2
      --no-report --quiet --checkpoint "$WORK/out/ckpt.safetensors")
t0=$(date +%s%N)
"$XENT" "${ARGS[@]}" >"$WORK/first.log" 2>&1 || fail "the first, uninterrupted run failed: $(tail -3 "$WORK/first.log")"
t1=$(date +%s%N)
run_ms=$(((t1 - t0) / 1000000))
[ -f "$WORK/out/model.safetensors" ] || fail "no model after a complete run"
[ -f "$WORK/out/ckpt.safetensors" ] || fail "no checkpoint after a complete run"

seed=12345
for k in $(seq 1 "$KILLS"); do
  seed=$(((seed * 1103515245 + 12345) % 2147483648))
  delay_ms=$((seed % (run_ms + 1)))  # somewhere in a full run's duration
  "$XENT" "${ARGS[@]}" >"$WORK/run.log" 2>&1 &
  pid=$!
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  "$XENT" evaluate --model "$WORK/out/model.safetensors" --data "$WORK/data" >"$WORK/eval.log" 2>&1 ||
    fail "kill $k after ${delay_ms} ms: the model does not load: $(tail -3 "$WORK/eval.log")"
  "$XENT" "${ARGS[@]}" --resume "$WORK/out/ckpt.safetensors" --model "$WORK/out/resumed.safetensors" \
    >"$WORK/resume.log" 2>&1 ||
    fail "kill $k after ${delay_ms} ms: the checkpoint does not resume: $(tail -3 "$WORK/resume.log")"
  rm -f "$WORK/out/"*.tmp.*  # SIGKILL can leave a temporary; it must never be the named file
done
echo "PASS train_killed: $KILLS kills within a ${run_ms} ms run; model and checkpoint always loadable"
