#!/usr/bin/python3
"""test_cli_mpi.py: `mpirun -np K xent linear-cross-entropy` (each rank reading only its weight
rows) against the single-process `xent linear-cross-entropy` on the same .npy files: the loss
and dweight the same bits for K = 1, 2, 3 (the vocabulary-parallel promise), within float32
rounding of the single-process command; a bad target makes the job fail with one clear error.
Exit 77 (skip) without mpirun.

usage: test_cli_mpi.py --xent build/xent --mpirun tests/mpi/mpirun.sh
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xent", required=True)
    ap.add_argument("--mpirun", required=True)
    a = ap.parse_args()
    if shutil.which("mpirun") is None:
        print("mpirun not found: skipping")
        return 77
    tmp = tempfile.mkdtemp(prefix="xent-cli-mpi-")
    env = dict(os.environ, XENT_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        rng = np.random.default_rng(3)
        N, H, V = 23, 12, 301
        p = lambda n: os.path.join(tmp, n)
        np.save(p("h.npy"), rng.normal(size=(N, H)).astype(np.float32))
        np.save(p("w.npy"), rng.normal(size=(V, H)).astype(np.float32))
        np.save(p("b.npy"), rng.normal(size=(V,)).astype(np.float32))
        t = rng.integers(0, V, size=N).astype(np.int64)
        t[::5] = -100
        np.save(p("t.npy"), t)
        bad = t.copy()
        bad[3] = V + 2
        np.save(p("bad.npy"), bad)

        def args(tag, target="t.npy"):
            return ["linear-cross-entropy", "--hidden", p("h.npy"), "--weight", p("w.npy"), "--bias", p("b.npy"),
                    "--target", p(target), "--label-smoothing", "0.1", "--softcap", "8", "--lse-square-scale",
                    "1e-3", "--out", p(f"loss_{tag}.npy"), "--grad-hidden", p(f"dh_{tag}.npy"), "--grad-weight",
                    p(f"dw_{tag}.npy"), "--grad-bias", p(f"db_{tag}.npy")]

        r = subprocess.run([a.xent] + args("single"), env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            print("single:", r.stdout, r.stderr)
            return 1
        ld = lambda n: np.load(p(n))
        ok = True
        first = None
        for k in (1, 2, 3):
            r = subprocess.run([a.mpirun, str(k), a.xent] + args(f"np{k}"), env=env, capture_output=True, text=True,
                               timeout=120)
            if r.returncode != 0:
                print(f"np {k}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
                ok = False
                continue
            got = {n: ld(f"{n}_np{k}.npy") for n in ("loss", "dh", "dw", "db")}
            want = {n: ld(f"{n}_single.npy") for n in ("loss", "dh", "dw", "db")}
            for n in got:
                if got[n].shape != want[n].shape or not np.allclose(got[n], want[n], rtol=1e-4, atol=1e-6):
                    print(f"np {k}: {n} differs from the single-process command: max |diff| "
                          f"{np.max(np.abs(got[n] - want[n])) if got[n].shape == want[n].shape else got[n].shape}")
                    ok = False
            if first is None:
                first = got
            else:
                for n in ("loss", "dw", "db"):
                    if got[n].tobytes() != first[n].tobytes():
                        print(f"np {k}: {n} is not the same bits as with 1 rank")
                        ok = False
            print(f"np {k}: loss {float(got['loss']):.7f} (single {float(want['loss']):.7f})")
        # A bad target: the job fails (exit 2 from every rank), one clear message, no output file.
        r = subprocess.run([a.mpirun, "2", a.xent] + args("bad", "bad.npy"), env=env, capture_output=True, text=True,
                           timeout=120)
        msg = r.stderr
        if r.returncode == 0 or "outside [0, 301)" not in msg or os.path.exists(p("loss_bad.npy")):
            print(f"bad target: exit {r.returncode}, stderr:\n{msg}")
            ok = False
        else:
            print("bad target: failed as expected:", [l for l in msg.splitlines() if "outside" in l][0])
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
