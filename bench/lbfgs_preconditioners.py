#!/usr/bin/python3
"""lbfgs_preconditioners.py: how many full-batch evaluations L-BFGS needs to reach scikit-learn's
objective on Fashion-MNIST, under different changes of variables (preconditioners). It counts
evaluations, not seconds: each one is two 60000 x 784 x 10 products (1.88 GFLOP), so the count
bounds what any implementation of the method can do on a given machine. It is the evidence behind
docs/training.md's statement that a whole `xent train --optimizer lbfgs` run in 1 s is out of reach
here. Not a test: nothing is asserted. Skips (exit 0) without the data.

Objective (scikit-learn's LogisticRegression(multi_class='multinomial') divided by N, as xent's):
    f(W, b) = mean cross-entropy + ||W||^2 / (2 C N)
in float64 NumPy; SciPy's L-BFGS-B (memory 10, the optimiser scikit-learn runs) on theta = T(v)
for each T, from W = 0. Preconditioners:
  plain      T = identity (what scikit-learn does)
  whiten     T = R^-1 with R^T R = the inputs' Gram matrix + ridge (xent --precondition inputs)
  kron       T = H_k^(-1/2), H_k = A (x) G_w: a Kronecker model of the Hessian at the current point
             (A: the mean softmax covariance over classes, G_w: the inputs' Gram matrix weighted by
             each row's softmax variance), rebuilt after iterations 10, 30, 70, 150 and 310 (what
             xent does by default, --precondition curvature)
  block*     the exact block-diagonal Hessian (class-by-class) AT THE OPTIMUM (an oracle)
  hessian*   the exact Hessian AT THE OPTIMUM from 4096 rows (an oracle: 2e11 FLOP to form and a
             7850 x 7850 Cholesky, 1.6e11 FLOP, which alone cost ~1 s at this machine's peak)
The oracles need the optimum: a float64 `xent train --optimizer lbfgs` run gives it (--build).

    /usr/bin/python3 bench/lbfgs_preconditioners.py [--build build] [--data DIR] [--only plain,whiten]
"""
import argparse
import gzip
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from compare_sklearn import find, read_idx, read_safetensors  # noqa: E402

SKLEARN_F = 0.3521599218  # scikit-learn 1.2, lbfgs, C = 1, its 1000-iteration cap (docs/training.md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--data", default="")
    ap.add_argument("--only", default="plain,whiten,kron,block,hessian")
    ap.add_argument("--max-evals", type=int, default=400)
    args = ap.parse_args()
    try:
        from scipy.optimize import minimize
        from scipy.special import logsumexp, softmax
        from scipy.linalg import cholesky, solve_triangular
    except ImportError:
        print("lbfgs_preconditioners: skipped: SciPy is not installed (Debian: python3-scipy)")
        return 0
    data = args.data or next((d for d in (os.path.join(ROOT, "data/fashion-mnist"),
                                          os.path.join(ROOT, "../shared/data/fashion-mnist")) if os.path.isdir(d)), "")
    if not data:
        print("lbfgs_preconditioners: skipped: no Fashion-MNIST directory (give --data DIR)")
        return 0
    X = read_idx(find(data, "train-images-idx3-ubyte")).reshape(60000, -1).astype(np.float64) / 255
    y = read_idx(find(data, "train-labels-idx1-ubyte")).astype(np.int64)
    N, D = X.shape
    K, n, lam = int(y.max()) + 1, D + 1, 1.0 / N
    Xa = np.hstack([X, np.ones((N, 1))])
    Y = np.zeros((N, K))
    Y[np.arange(N), y] = 1
    mask = np.ones((n, K))
    mask[-1] = 0
    sample = Xa[np.arange(0, N, N // 4096)[:4096]]
    target = SKLEARN_F * (1 + 1e-6)

    def objective(th):
        Z = Xa @ th
        lse = logsumexp(Z, axis=1, keepdims=True)
        f = np.mean(lse[:, 0] - Z[np.arange(N), y]) + 0.5 * lam * np.sum((th * mask) ** 2)
        return f, Xa.T @ (np.exp(Z - lse) - Y) / N + lam * th * mask

    def run(stages, th0):
        """stages: [(iterations, (to_theta, to_v, grad_to_v), or a function of theta that builds it)]."""
        history, th = [], th0
        for iters, make in stages:
            to_th, to_v, grad_v = make if isinstance(make, tuple) else make(th)

            def f(v):
                val, g = objective(to_th(v.reshape(n, K)))
                history.append(val)
                return val, grad_v(g).ravel()

            left = args.max_evals - len(history)
            if left <= 0:
                break
            r = minimize(f, to_v(th).ravel(), jac=True, method="L-BFGS-B",
                         options=dict(maxiter=iters, maxfun=left, gtol=1e-12, ftol=1e-16))
            th = to_th(r.x.reshape(n, K))
        best = np.minimum.accumulate(history)
        hit = np.nonzero(best <= target)[0]
        return (int(hit[0]) + 1 if hit.size else None), len(history), float(best[-1])

    identity = (lambda v: v, lambda t: t, lambda g: g)

    def whiten():  # theta = R^-1 v, R upper with R^T R = G + ridge (xent's Preconditioner)
        G = sample.T @ sample / len(sample)
        G += 1e-3 * np.trace(G) / n * np.eye(n)
        R = cholesky(G, lower=False)
        return (lambda v: solve_triangular(R, v), lambda t: R @ t, lambda g: solve_triangular(R, g, trans="T"))

    def kron_at(th):  # H ~ A (x) G_w at theta: T = H^(-1/2), symmetric
        P = softmax(sample @ th, axis=1)
        w = 1 - np.sum(P * P, axis=1)
        A = (np.diag(P.sum(0)) - P.T @ P) / w.sum()
        Gw = (sample * w[:, None]).T @ sample / len(sample)
        la, U = np.linalg.eigh(A)
        sg, V = np.linalg.eigh(Gw)
        S = 1 / np.sqrt(np.outer(np.maximum(sg, 0), np.maximum(la, 0)) + lam)
        T = lambda v: V @ ((V.T @ v @ U) * S) @ U.T  # noqa: E731
        return (T, lambda t: V @ ((V.T @ t @ U) / S) @ U.T, T)

    def hessian_at(th, rows, block):
        P = softmax(rows @ th, axis=1)
        H = np.zeros((n, K, n, K))
        for c in range(K):
            for c2 in range(c, K):
                if block and c2 != c:
                    continue
                a = P[:, c] * ((c == c2) - P[:, c2])
                H[:, c, :, c2] = H[:, c2, :, c] = (rows * a[:, None]).T @ rows / len(rows)
        H = H.reshape(n * K, n * K) + np.diag(lam * mask.ravel()) + 1e-10 * np.eye(n * K)
        L = cholesky(H, lower=True)  # theta = L^-T v
        return (lambda v: solve_triangular(L, v.ravel(), lower=True, trans="T").reshape(n, K),
                lambda t: (L.T @ t.ravel()).reshape(n, K),
                lambda g: solve_triangular(L, g.ravel(), lower=True).reshape(n, K))

    optimum = None
    wanted = args.only.split(",")
    if "block" in wanted or "hessian" in wanted:
        xent = os.path.join(args.build, "xent")
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([xent, "train", "--data", data, "--optimizer", "lbfgs", "--dtype", "float64", "--out", tmp,
                            "--no-report", "--quiet"], check=True)
            t = read_safetensors(os.path.join(tmp, "model.safetensors"))[0]
            optimum = np.vstack([t["weight"].T, t["bias"][None, :]]).astype(np.float64)
        print(f"optimum (xent, float64): f = {objective(optimum)[0]:.10f}")

    zero = np.zeros((n, K))
    print(f"target: scikit-learn's objective {SKLEARN_F} (+1e-6 relative); evaluations capped at {args.max_evals}")
    print(f"{'preconditioner':<34} {'evaluations to target':>22} {'evaluations':>12} {'best f':>14}")
    for name in wanted:
        if name == "plain":
            res = run([(10**6, identity)], zero)
        elif name == "whiten":
            res = run([(10**6, whiten())], zero)
        elif name == "kron":
            res = run([(10, whiten()), (20, kron_at), (40, kron_at), (80, kron_at), (160, kron_at), (10**6, kron_at)], zero)
        elif name == "block":
            res = run([(10**6, hessian_at(optimum, Xa, True))], zero)
        elif name == "hessian":
            res = run([(10**6, hessian_at(optimum, sample, False))], zero)
        else:
            print(f"unknown preconditioner {name!r}", file=sys.stderr)
            return 2
        hit, total, best = res
        label = {"plain": "plain (scikit-learn)", "whiten": "whiten (xent: inputs)", "kron": "kron (xent: curvature)",
                 "block": "block-diagonal Hessian at optimum*", "hessian": "Hessian at optimum, 4096 rows*"}[name]
        print(f"{label:<34} {hit if hit else '> ' + str(total):>22} {total:>12} {best:>14.10f}", flush=True)
    print("* oracles: they need the optimum they are meant to find")
    return 0


if __name__ == "__main__":
    sys.exit(main())
