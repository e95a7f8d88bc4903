#!/usr/bin/env bash
# fault_tests.sh: what `xent` does when the environment fails under it. One case per run:
#
#   fault_tests.sh XENT CASE        (exit 0 pass, 1 fail, 77 skipped with the reason on stdout)
#
# Every case checks the same contract: a clear one-line error on stderr ("xent: error: ..."), exit
# code 1, no partial output (the destination is the old file, byte for byte, or absent), and no
# temporary ("<out>.tmp.XXXXXX") left behind, except after SIGKILL, which cannot be caught.
#
# How each fault is made (we may run as root, for whom chmod does not make a directory read-only):
#   missing_dir, not_a_dir   a path under a directory that does not exist / under a regular file (exit 2)
#   readonly_dir             a tmpfs remounted read-only, in a private mount namespace (unshare -m;
#                            skipped where unprivileged)
#   disk_full                a 64 KiB tmpfs in a private mount namespace (skipped where unprivileged)
#   disk_full_two_outputs    same, with --grad-out: the first output fits, the second does not;
#                            neither existing file may be replaced
#   file_size_limit          RLIMIT_FSIZE (ulimit -f) with SIGXFSZ ignored: writes fail with EFBIG
#   sigterm_during_write, sigint_during_write, sigkill_during_write
#                            the signal arrives while the output is being written: every write(2)
#                            is slowed by strace's fault injection (skipped without strace/ptrace)
#   input_shrinks            the input is truncated while it is read: the data pread(2) is delayed
#                            by strace and the file truncated meanwhile
#   huge_declared            a .npy header declaring 16 TiB of data: exit 2 before any allocation
#   huge_model_header        a model file declaring a 1 TiB header: exit 2 before any allocation
#   train_killed             `xent train --checkpoint` killed with SIGKILL at several moments: the
#                            checkpoint and the model that remain must load (skipped until the
#                            train command exists)
# Not a test of the parsers (fuzz/) nor of the numerics.
set -uo pipefail

XENT=${1:?usage: fault_tests.sh XENT CASE}
CASE=${2:?usage: fault_tests.sh XENT CASE}
XENT=$(readlink -f "$XENT")
SELF=$(readlink -f "$0")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xent-fault.XXXXXX")
cleanup() {
  local m
  for m in "$WORK/ro" "$WORK/small"; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
  rm -rf "$WORK" 2>/dev/null
}
trap cleanup EXIT

fail() { echo "FAIL ${CASE#ns:}: $*"; exit 1; }
skip() { echo "SKIP ${CASE#ns:}: $*"; exit 77; }
pass() { echo "PASS ${CASE#ns:}${1:+: $1}"; exit 0; }

# make_npy PATH ROWS COLS: a float32 (ROWS, COLS) .npy of zeros (softmax of it is 1/COLS).
make_npy() {
  local path=$1 rows=$2 cols=$3
  local dict="{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }"
  local total=$((10 + ${#dict} + 1))
  local pad=$(((64 - total % 64) % 64))
  local hlen=$((${#dict} + pad + 1))
  {
    printf '\x93NUMPY\x01\x00'
    printf "\\x$(printf %02x $((hlen & 255)))\\x$(printf %02x $((hlen >> 8)))"
    printf '%s' "$dict"
    printf '%*s' "$pad" ''
    printf '\n'
    head -c $((rows * cols * 4)) /dev/zero
  } >"$path"
}

# expect_failure RC STDERR_FILE: exit code 1 and exactly one "xent: error:" line.
# expect_failure RC STDERR_FILE [WANT_RC]: exit WANT_RC (default 1, a runtime failure; 2 for an
# output path that cannot be one, refused as bad usage) and one 'xent: error: ' line.
expect_failure() {
  local rc=$1 err=$2 want=${3:-1}
  [ "$rc" -eq "$want" ] || fail "expected exit code $want, got $rc; stderr: $(head -c 400 "$err")"
  local lines
  lines=$(grep -c . "$err")
  [ "$lines" -eq 1 ] || fail "expected one line on stderr, got $lines: $(head -c 400 "$err")"
  grep -q '^xent: error: ' "$err" || fail "stderr does not start with 'xent: error: ': $(cat "$err")"
}

# expect_intact DEST OLD_COPY: the destination is byte-for-byte the old file.
expect_intact() {
  [ -f "$1" ] || fail "the existing output '$1' was removed"
  cmp -s "$1" "$2" || fail "the existing output '$1' was modified"
}

# expect_no_temps DIR
expect_no_temps() {
  local left
  left=$(find "$1" -maxdepth 1 -name '*.tmp.*' 2>/dev/null)
  [ -z "$left" ] || fail "temporary file(s) left behind: $left"
}

# in_private_ns FUNC: runs this script's FUNC in a private mount namespace (for tmpfs mounts).
in_private_ns() {
  if ! unshare -m --propagation private true 2>/dev/null; then
    skip "cannot create a private mount namespace (unshare -m needs CAP_SYS_ADMIN)"
  fi
  unshare -m --propagation private bash "$SELF" "$XENT" "ns:$1"
  exit $?
}

mount_small_tmpfs() {  # mount_small_tmpfs DIR SIZE
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2" xent-fault "$1" 2>/dev/null || skip "cannot mount a tmpfs at $1"
}

# child_of PID: the first child process of PID (strace's tracee).
child_of() {
  if command -v pgrep >/dev/null; then
    pgrep -P "$1" 2>/dev/null | head -1
  else
    cat /proc/"$1"/task/*/children 2>/dev/null | awk '{print $1; exit}'
  fi
}

# sanitized: the binary is built with ASan or TSan. (grep reads all of nm's output: with pipefail,
# `grep -q` would stop early, nm would die of SIGPIPE and the test would read "not sanitized".)
sanitized() { nm -C "$XENT" 2>/dev/null | grep '__asan_init\|__tsan_init' >/dev/null; }

have_strace() {
  # LeakSanitizer cannot run under ptrace, and these cases test the process's behaviour, which the
  # unsanitized build covers; under sanitizers they are skipped.
  sanitized && { echo "SKIP ${CASE#ns:}: sanitized build (LeakSanitizer does not work under ptrace; covered by the plain build)"; exit 77; }
  command -v strace >/dev/null || return 1
  strace -f -o /dev/null -e trace=none true 2>/dev/null
}

# signal_during_write SIGNAL: starts `xent softmax` with every write(2) delayed, sends SIGNAL as
# soon as its temporary exists, and checks what remains.
signal_during_write() {
  local sig=$1
  have_strace || skip "strace (with ptrace permission) is needed to slow the writes down"
  make_npy "$WORK/x.npy" 256 1024  # 1 MiB out, written in many 4 KiB-or-larger writes
  printf 'old output\n' >"$WORK/y.npy"
  cp "$WORK/y.npy" "$WORK/old.npy"
  # Job control on, so that the background job does not start with SIGINT ignored.
  set -m
  strace -f -o /dev/null -e trace=write -e inject=write:delay_enter=200000 \
    "$XENT" softmax --input "$WORK/x.npy" --out "$WORK/y.npy" 2>"$WORK/err" &
  local tracer=$!
  set +m
  local i pid=""
  for i in $(seq 1 500); do
    pid=$(child_of "$tracer")
    [ -n "$pid" ] && compgen -G "$WORK/y.npy.tmp.*" >/dev/null && break
    sleep 0.01
  done
  compgen -G "$WORK/y.npy.tmp.*" >/dev/null || { kill -KILL "$tracer" 2>/dev/null; wait "$tracer"; fail "no temporary appeared within 5 s"; }
  sleep 0.1
  kill "-$sig" "$pid"
  wait "$tracer"
  local rc=$?
  [ $rc -ne 0 ] || fail "xent finished normally: the SIG$sig did not interrupt it"
  # The destination is the old file (or, if the rename won the race, the complete new one).
  if ! cmp -s "$WORK/y.npy" "$WORK/old.npy"; then
    local want=$((128 + 256 * 1024 * 4))
    [ "$(stat -c %s "$WORK/y.npy")" -eq "$want" ] || fail "destination is neither the old file nor a complete output"
  fi
  if [ "$sig" = KILL ]; then
    pass "destination intact after SIGKILL (a temporary may remain; SIGKILL cannot be caught)"
  fi
  expect_no_temps "$WORK"
  pass "destination intact, temporary removed"
}

case "$CASE" in
  missing_dir)
    make_npy "$WORK/x.npy" 2 3
    "$XENT" softmax --input "$WORK/x.npy" --out "$WORK/no/such/dir/y.npy" 2>"$WORK/err"
    expect_failure $? "$WORK/err" 2
    grep -q "no/such/dir" "$WORK/err" || fail "the error does not name the directory: $(cat "$WORK/err")"
    [ ! -e "$WORK/no" ] || fail "the missing directory was created"
    pass ;;

  not_a_dir)
    make_npy "$WORK/x.npy" 2 3
    printf 'a file\n' >"$WORK/afile"
    "$XENT" softmax --input "$WORK/x.npy" --out "$WORK/afile/y.npy" 2>"$WORK/err"
    expect_failure $? "$WORK/err" 2
    [ "$(cat "$WORK/afile")" = "a file" ] || fail "the file in the way was modified"
    pass ;;

  readonly_dir) in_private_ns readonly_dir ;;
  ns:readonly_dir)
    make_npy "$WORK/x.npy" 2 3
    mount_small_tmpfs "$WORK/ro" 1m
    printf 'old output\n' >"$WORK/ro/y.npy"
    cp "$WORK/ro/y.npy" "$WORK/old.npy"
    mount -o remount,ro "$WORK/ro" || skip "cannot remount the tmpfs read-only"
    "$XENT" softmax --input "$WORK/x.npy" --out "$WORK/ro/y.npy" 2>"$WORK/err"
    expect_failure $? "$WORK/err"
    grep -qi "read-only" "$WORK/err" || fail "the error does not say read-only: $(cat "$WORK/err")"
    expect_intact "$WORK/ro/y.npy" "$WORK/old.npy"
    expect_no_temps "$WORK/ro"
    pass ;;

  disk_full) in_private_ns disk_full ;;
  ns:disk_full)
    make_npy "$WORK/x.npy" 64 1024  # 256 KiB of output on a 64 KiB file system
    mount_small_tmpfs "$WORK/small" 64k
    printf 'old output\n' >"$WORK/small/y.npy"
    cp "$WORK/small/y.npy" "$WORK/old.npy"
    "$XENT" softmax --input "$WORK/x.npy" --out "$WORK/small/y.npy" 2>"$WORK/err"
    expect_failure $? "$WORK/err"
    grep -qi "no space" "$WORK/err" || fail "the error does not say the disk is full: $(cat "$WORK/err")"
    expect_intact "$WORK/small/y.npy" "$WORK/old.npy"
    expect_no_temps "$WORK/small"
    pass ;;

  disk_full_two_outputs) in_private_ns disk_full_two_outputs ;;
  ns:disk_full_two_outputs)
    make_npy "$WORK/x.npy" 8 1024  # two 32 KiB outputs (+ headers) on a 64 KiB file system
    mount_small_tmpfs "$WORK/small" 64k
    printf 'old y\n' >"$WORK/small/y.npy"
    printf 'old dx\n' >"$WORK/small/dx.npy"
    cp "$WORK/small/y.npy" "$WORK/old_y.npy"
    cp "$WORK/small/dx.npy" "$WORK/old_dx.npy"
    "$XENT" softmax --input "$WORK/x.npy" --out "$WORK/small/y.npy" --grad-out "$WORK/small/dx.npy" 2>"$WORK/err"
    expect_failure $? "$WORK/err"
    expect_intact "$WORK/small/y.npy" "$WORK/old_y.npy"
    expect_intact "$WORK/small/dx.npy" "$WORK/old_dx.npy"
    expect_no_temps "$WORK/small"
    pass ;;

  file_size_limit)
    make_npy "$WORK/x.npy" 64 1024
    printf 'old output\n' >"$WORK/y.npy"
    cp "$WORK/y.npy" "$WORK/old.npy"
    # ulimit -f counts 1024-byte blocks; SIGXFSZ ignored makes the write fail with EFBIG instead.
    (trap '' XFSZ; ulimit -f 64; exec "$XENT" softmax --input "$WORK/x.npy" --out "$WORK/y.npy") 2>"$WORK/err"
    expect_failure $? "$WORK/err"
    expect_intact "$WORK/y.npy" "$WORK/old.npy"
    expect_no_temps "$WORK"
    pass ;;

  sigterm_during_write) signal_during_write TERM ;;
  sigint_during_write) signal_during_write INT ;;
  sigkill_during_write) signal_during_write KILL ;;

  input_shrinks)
    have_strace || skip "strace (with ptrace permission) is needed to hold the read"
    make_npy "$WORK/x.npy" 256 1024
    # Every pread(2) is delayed 0.3 s; once xent has the input open (and has fstat'ed it, which
    # follows the open directly), the file is truncated under it.
    strace -f -o /dev/null -e trace=pread64 -e inject=pread64:delay_enter=300000 \
      "$XENT" softmax --input "$WORK/x.npy" --out "$WORK/y.npy" 2>"$WORK/err" &
    tracer=$!
    opened=0
    for i in $(seq 1 500); do
      pid=$(child_of "$tracer")
      if [ -n "$pid" ] && ls -l "/proc/$pid/fd" 2>/dev/null | grep -q 'x\.npy$'; then opened=1; break; fi
      sleep 0.01
    done
    [ $opened = 1 ] || { kill -KILL "$tracer" 2>/dev/null; wait "$tracer"; fail "xent did not open its input within 5 s"; }
    truncate -s 4096 "$WORK/x.npy"
    wait "$tracer"
    rc=$?
    expect_failure $rc "$WORK/err"
    grep -q "x.npy" "$WORK/err" || fail "the error does not name the input: $(cat "$WORK/err")"
    [ ! -e "$WORK/y.npy" ] || fail "an output was written from a truncated input"
    expect_no_temps "$WORK"
    pass ;;

  huge_declared)
    # A 128-byte header that declares 2^42 float32 elements (16 TiB), with no data: refused from the
    # header alone (exit 2, bad input), before any allocation, and fast. Under a 1 GiB address-space
    # limit when the binary is not sanitized (ASan reserves terabytes of shadow).
    dict="{'descr': '<f4', 'fortran_order': False, 'shape': (4194304, 1048576), }"
    pad=$(((64 - (10 + ${#dict} + 1) % 64) % 64))
    { printf '\x93NUMPY\x01\x00\x76\x00'; printf '%s%*s\n' "$dict" "$pad" ''; } >"$WORK/huge.npy"
    limit="ulimit -v 1048576;"
    sanitized && limit=""
    bash -c "$limit exec \"\$0\" softmax --input \"\$1\" --out \"\$2\"" "$XENT" "$WORK/huge.npy" "$WORK/y.npy" 2>"$WORK/err"
    rc=$?
    [ $rc -eq 2 ] || fail "expected exit code 2 (bad input), got $rc: $(cat "$WORK/err")"
    [ "$(grep -c . "$WORK/err")" -eq 1 ] || fail "expected one line on stderr: $(cat "$WORK/err")"
    grep -q "huge.npy" "$WORK/err" || fail "the error does not name the file: $(cat "$WORK/err")"
    [ ! -e "$WORK/y.npy" ] || fail "an output was written"
    pass "$(cat "$WORK/err")" ;;

  train_killed)
    "$XENT" --help 2>/dev/null | grep -q "^  train " || skip "no 'xent train' command in this build yet"
    bash "$(dirname "$SELF")/train_killed.sh" "$XENT" "$WORK"
    exit $? ;;

  huge_model_header)
    # A model file whose 8-byte header length declares 1 TiB of JSON: refused from those 8 bytes.
    "$XENT" --help 2>/dev/null | grep -q "^  evaluate " || skip "no 'xent evaluate' command in this build yet"
    printf '\x00\x00\x00\x00\x00\x01\x00\x00{}      ' >"$WORK/huge.safetensors"
    mkdir -p "$WORK/data"
    printf '\x00\x00\x08\x03\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x07' >"$WORK/data/t10k-images-idx3-ubyte"
    printf '\x00\x00\x08\x01\x00\x00\x00\x01\x00' >"$WORK/data/t10k-labels-idx1-ubyte"
    "$XENT" evaluate --model "$WORK/huge.safetensors" --test-images "$WORK/data/t10k-images-idx3-ubyte" \
      --test-labels "$WORK/data/t10k-labels-idx1-ubyte" 2>"$WORK/err" >/dev/null
    rc=$?
    [ $rc -eq 2 ] || fail "expected exit code 2 (bad input), got $rc: $(cat "$WORK/err")"
    [ "$(grep -c . "$WORK/err")" -eq 1 ] || fail "expected one line on stderr: $(cat "$WORK/err")"
    grep -q "huge.safetensors" "$WORK/err" || fail "the error does not name the file: $(cat "$WORK/err")"
    pass "$(cat "$WORK/err")" ;;

  *) echo "fault_tests.sh: unknown case '$CASE'" >&2; exit 2 ;;
esac
