#!/usr/bin/python3
"""test_train_mpi.py: `mpirun -np K xent train` writes the same model file bytes as `xent train`
(K = 1, 2, 3), on a small synthetic IDX dataset (3 chunks of 128 rows per batch, so 3 ranks each
own one), and only rank 0 writes. Exit 77 (skip) without mpirun.

usage: test_train_mpi.py --xent build/xent --mpirun tests/mpi/mpirun.sh
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np


def write_idx(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, arr.ndim))
        for d in arr.shape:
            f.write(struct.pack(">I", d))
        f.write(arr.tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xent", required=True)
    ap.add_argument("--mpirun", required=True)
    a = ap.parse_args()
    if shutil.which("mpirun") is None:
        print("mpirun not found: skipping")
        return 77
    tmp = tempfile.mkdtemp(prefix="xent-train-mpi-")
    try:
        rng = np.random.default_rng(5)
        C, H, W = 4, 8, 8
        protos = rng.integers(0, 256, size=(C, H, W))

        def make(n):
            y = rng.integers(0, C, size=n)
            x = np.clip(protos[y] + rng.normal(0, 60, size=(n, H, W)), 0, 255)
            return x.astype(np.uint8), y.astype(np.uint8)

        xt, yt = make(700)
        xs, ys = make(100)
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        write_idx(os.path.join(data, "train-images-idx3-ubyte"), xt)
        write_idx(os.path.join(data, "train-labels-idx1-ubyte"), yt)
        write_idx(os.path.join(data, "t10k-images-idx3-ubyte"), xs)
        write_idx(os.path.join(data, "t10k-labels-idx1-ubyte"), ys)
        common = ["train", "--data", data, "--epochs", "3", "--batch-size", "300", "--lr", "0.05",
                  "--momentum", "0.9", "--label-smoothing", "0.1", "--no-report", "--threads", "1"]
        env = dict(os.environ, XENT_THREADS="1", OPENBLAS_NUM_THREADS="1")
        out0 = os.path.join(tmp, "single")
        r = subprocess.run([a.xent] + common + ["--out", out0], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            return 1
        want = open(os.path.join(out0, "model.safetensors"), "rb").read()
        ok = True
        for k in (1, 2, 3):
            outk = os.path.join(tmp, f"np{k}")
            r = subprocess.run([a.mpirun, str(k), a.xent] + common + ["--out", outk], env=env, capture_output=True,
                               text=True, timeout=180)
            if r.returncode != 0:
                print(f"np {k}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
                ok = False
                continue
            got = open(os.path.join(outk, "model.safetensors"), "rb").read()
            same = got == want
            print(f"np {k}: model {'identical' if same else 'DIFFERS'} ({len(got)} bytes)")
            ok &= same
            lines = [l for l in r.stdout.splitlines() if l.startswith("xent train:")]
            if len(lines) != 1:  # only rank 0 prints the banner
                print(f"np {k}: expected one banner, found {len(lines)}")
                ok = False
            if k > 1 and "data parallel: %d ranks" % k not in r.stdout:
                print(f"np {k}: the run did not say it was data parallel")
                ok = False
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
