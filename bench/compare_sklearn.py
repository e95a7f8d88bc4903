#!/usr/bin/python3
"""compare_sklearn.py: `xent train --optimizer lbfgs` against scikit-learn's
LogisticRegression(solver='lbfgs', multi_class='multinomial') on Fashion-MNIST, same data (pixels /
255), same C, 2 threads each. Prints, per run: the final objective
    f = mean cross-entropy + ||W||^2 / (2 C N)        (sklearn's objective divided by N)
recomputed here in float64 NumPy from each model's weights (the same oracle for both), its gap to
the lowest one, test accuracy, iterations, and the wall and CPU time (xent: the whole process, loading
and writing included; sklearn: fit() only, data already in memory) with the wall-time speed-up.
Not a test: nothing is asserted. Skips (exit 0) without the data.

    /usr/bin/python3 bench/compare_sklearn.py [--build build] [--data DIR] [--C 1] [--max-iter 1000]
"""
import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(d, stem):
    for name in (stem + ".gz", stem):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    raise FileNotFoundError(os.path.join(d, stem))


def read_safetensors(path):
    """The tensors of a safetensors file, parsed with json + NumPy (no safetensors package)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        dt = {"F32": np.float32, "F64": np.float64, "U64": np.uint64}[t["dtype"]]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=dt).reshape(t["shape"])
    return out, header.get("__metadata__", {})


def objective(W, b, X, y, C):
    """W (D, C), b (C): mean CE + ||W||^2 / (2 C N), in float64."""
    Z = X @ W.astype(np.float64) + b.astype(np.float64)
    m = Z.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(Z - m).sum(axis=1)))
    ce = lse - Z[np.arange(len(y)), y]
    return ce.mean() + (W.astype(np.float64) ** 2).sum() / (2 * C * len(y))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--data", default="")
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--max-iter", type=int, default=1000, help="both solvers' iteration cap")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-sklearn", action="store_true")
    args = ap.parse_args()
    data = args.data
    if not data:
        for cand in (os.path.join(ROOT, "data/fashion-mnist"), os.path.join(ROOT, "../shared/data/fashion-mnist")):
            if os.path.isdir(cand):
                data = cand
                break
    try:
        paths = [find(data, s) for s in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    except (FileNotFoundError, TypeError):
        print("compare_sklearn.py: no Fashion-MNIST found (see scripts/download-fashion-mnist.sh); skipped")
        return 0
    Xtr = read_idx(paths[0]).reshape(60000, -1) / 255.0
    ytr = read_idx(paths[1]).astype(np.int64)
    Xte = read_idx(paths[2]).reshape(10000, -1) / 255.0
    yte = read_idx(paths[3]).astype(np.int64)
    rows = []

    def add(name, W, b, wall, cpu, iters):
        acc = float(((Xte @ W + b).argmax(axis=1) == yte).mean())
        rows.append((name, objective(W, b, Xtr, ytr, args.C), acc, iters, wall, cpu))

    if not args.skip_sklearn:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
        from sklearn.linear_model import LogisticRegression
        try:
            from threadpoolctl import threadpool_limits
            limit = threadpool_limits(limits=args.threads)
        except ImportError:
            limit = None
        import warnings
        warnings.filterwarnings("ignore")
        clf = LogisticRegression(C=args.C, solver="lbfgs", multi_class="multinomial", max_iter=args.max_iter, tol=1e-4)
        t0, c0 = time.perf_counter(), time.process_time()
        clf.fit(Xtr, ytr)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        add("sklearn 1.2 lbfgs (float64)", clf.coef_.T, clf.intercept_, wall, cpu, int(clf.n_iter_[0]))
        del limit
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float64"):
            out = os.path.join(tmp, dtype)
            cmd = [os.path.join(args.build, "xent"), "train", "--data", data, "--optimizer", "lbfgs", "--C", str(args.C),
                   "--max-iter", str(args.max_iter), "--dtype", dtype, "--threads", str(args.threads), "--out", out,
                   "--no-report", "--quiet"]
            t0 = time.perf_counter()
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            t, meta = read_safetensors(os.path.join(out, "model.safetensors"))
            W = t["weight"].T if "weight" in t else t["W"]
            b = t["bias"] if "bias" in t else t["b"]
            add(f"xent train --optimizer lbfgs --dtype {dtype}", W.astype(np.float64), b.astype(np.float64), wall, cpu,
                int(meta.get("lbfgs_iterations", "0")))
    best = min(r[1] for r in rows)
    ref = rows[0][4] if not args.skip_sklearn else None
    print(f"Fashion-MNIST, C = {args.C}, max_iter = {args.max_iter}, {args.threads} threads")
    print(f"{'run':44s} {'objective':>16s} {'rel. gap':>9s} {'test acc':>8s} {'iters':>6s} {'wall s':>8s} {'cpu s':>8s} "
          f"{'speed-up':>8s}")
    for name, f, acc, iters, wall, cpu in rows:
        sp = f"{ref / wall:7.1f}x" if ref else ""
        print(f"{name:44s} {f:16.10f} {(f - best) / best:9.2e} {acc:8.4f} {iters:6d} {wall:8.2f} {cpu:8.2f} {sp:>8s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
