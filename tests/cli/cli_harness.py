"""cli_harness.py: what the end-to-end CLI scripts (test_cli.py, test_cli_everyday.py) share: the
xent binary from argv[1], one fresh temporary directory, a check() that records failures, the
helpers to save arrays and run xent there, and the runner that prints each test's verdict and
exits 0 (pass), 1 (fail) or 77 (skip: numpy missing). Not a test framework.
"""
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy is not importable by", sys.executable)
    sys.exit(77)

XENT = os.path.abspath(sys.argv[1])
TMP = tempfile.mkdtemp(prefix="xent_" + os.path.splitext(os.path.basename(sys.argv[0]))[0] + "_")
FAILURES = []
_checks = [0]


def check(cond, what):
    _checks[0] += 1
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what)


def path(name):
    return os.path.join(TMP, name)


def save(name, array):
    np.save(path(name), array)
    return path(name)


def run(*args, stdout_bytes=False):
    return subprocess.run([XENT, *map(str, args)], capture_output=True, text=not stdout_bytes, cwd=TMP, timeout=120)


def run_ok(*args):
    """Runs xent and checks that it exited 0."""
    p = run(*args)
    check(p.returncode == 0, f"xent {' '.join(map(str, args))}: exit {p.returncode}, stderr {p.stderr!r}")
    return p


def fails(args, frags):
    """Runs xent and checks bad input's contract: exit 2, one line on stderr naming every fragment."""
    p = run(*args)
    check(p.returncode == 2, f"xent {' '.join(map(str, args))}: exit {p.returncode}, expected 2")
    err = p.stderr.strip()
    check(err and "\n" not in err, f"{args}: expected one line on stderr, got {p.stderr!r}")
    for f in frags:
        check(f in err, f"{args}: stderr {err!r} lacks {f!r}")


def run_tests(tests):
    """Runs each test function, prints its verdict, removes TMP and exits with the suite's status."""
    try:
        for t in tests:
            before = len(FAILURES)
            t()
            print(f"{t.__name__}: {'ok' if len(FAILURES) == before else 'FAILED'}")
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"{_checks[0]} checks, {len(FAILURES)} failures")
    sys.exit(1 if FAILURES else 0)
