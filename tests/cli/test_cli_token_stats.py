#!/usr/bin/python3
"""test_cli_token_stats.py: end-to-end tests of `xent cross-entropy --token-weight` (per-token loss
weights) and of the forward-only statistics (`xent token-stats`), against NumPy float64 formulas
written here (and torch.argmax for the argmax rule when torch is importable). Bad input: exit 2, one line,
outputs untouched. Not covered: the library's numerics in depth (tests/core/test_token_weights.cc,
test_token_stats.cc).

Usage: test_cli_token_stats.py path/to/xent      (exit 0 pass, 1 fail, 77 skip)
"""
import os

from cli_harness import check, fails, path, run, run_ok, run_tests, save  # first: skips without numpy

import numpy as np  # noqa: E402

RNG = np.random.default_rng(338)
N, C = 9, 6
X = RNG.standard_normal((N, C)) * 2
T = RNG.integers(0, C, size=N)
T[4] = -100  # ignored
V = RNG.uniform(0, 3, size=N)
W = RNG.uniform(0.5, 2, size=C)


def lse(x):
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


def close(got, want, what, rtol=1e-12):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    ok = got.shape == want.shape and np.allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True)
    check(ok, f"{what}: got {got}, expected {want}")


def token_weighted(x, t, v, w, reduction):
    kept = t != -100
    tt = np.where(kept, t, 0)
    per = np.where(kept, v * w[tt] * (lse(x) - x[np.arange(len(t)), tt]), 0.0)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / np.where(kept, v * w[tt], 0).sum()


def test_token_weight_loss_and_gradient():
    xp, tp, vp, wp = save("x.npy", X), save("t.npy", T), save("v.npy", V), save("w.npy", W)
    for red in ("none", "mean", "sum"):
        run_ok("cross-entropy", "--input", xp, "--target", tp, "--weight", wp, "--token-weight", vp, "--reduction",
               red, "--out", path("l.npy"), "--grad-out", path("g.npy"))
        close(np.load(path("l.npy")), token_weighted(X, T, V, W, red), f"--token-weight loss, {red}")
        # The gradient of the sum of the reported loss, by central differences of the formula.
        g = np.load(path("g.npy"))
        fd = np.zeros_like(X)
        for i in range(N):
            for c in range(C):
                h = 1e-6
                xp_, xm_ = X.copy(), X.copy()
                xp_[i, c] += h
                xm_[i, c] -= h
                fd[i, c] = (token_weighted(xp_, T, V, W, red).sum() - token_weighted(xm_, T, V, W, red).sum()) / (2 * h)
        check(np.allclose(g, fd, rtol=1e-6, atol=1e-7), f"--token-weight gradient, {red}: max diff "
              f"{np.abs(g - fd).max():.3g}")
    # All ones: exactly the unweighted loss.
    ones = run_ok("cross-entropy", "--input", xp, "--target", tp, "--token-weight", save("ones.npy", np.ones(N)),
                  "--out", path("a.npy"))
    del ones
    run_ok("cross-entropy", "--input", xp, "--target", tp, "--out", path("b.npy"))
    check(np.load(path("a.npy")).tobytes() == np.load(path("b.npy")).tobytes(), "--token-weight of ones changes the loss")
    # In bfloat16 with --dtype: the weights are converted too.
    run_ok("cross-entropy", "--input", xp, "--target", tp, "--token-weight", vp, "--dtype", "f32", "--out",
           path("l32.npy"))
    x32, v32 = X.astype(np.float32).astype(np.float64), V.astype(np.float32).astype(np.float64)
    close(np.load(path("l32.npy")), token_weighted(x32, T, v32, np.ones(C), "mean"), "--token-weight --dtype f32",
          rtol=1e-6)


def test_token_weight_bad_input():
    xp, tp = save("x.npy", X), save("t.npy", T)
    keep = save("keep.npy", np.array([1.0]))
    before = open(keep, "rb").read()
    fails(["cross-entropy", "--input", xp, "--target", tp, "--token-weight", save("v5.npy", np.ones(5)), "--out",
           keep], ["token_weight", "shape [9]", "[5]"])
    fails(["cross-entropy", "--input", xp, "--target", tp, "--token-weight", save("v32.npy", np.ones(N, np.float32)),
           "--out", keep], ["token_weight", "float64", "float32"])
    fails(["cross-entropy", "--input", xp, "--target", save("p.npy", np.full((N, C), 1 / C)), "--token-weight",
           save("v.npy", V), "--out", keep], ["--token-weight", "class-index targets"])
    fails(["cross-entropy", "--input", xp, "--target", tp, "--token-weight", path("missing.npy"), "--out", keep],
          ["--token-weight", "missing.npy"])
    check(open(keep, "rb").read() == before, "a failed run changed an existing output")
    check(not os.path.exists(path("missing.npy")), "missing.npy appeared")


def test_token_stats():
    x = X.copy()
    x[1] = [2, 5, 5, 1, 5, 0]  # ties: the first maximum (class 1)
    x[2, 3] = -np.inf
    t = T.copy()
    t[1] = 1
    xp, tp = save("xs.npy", x), save("ts.npy", t)
    run_ok("token-stats", "--input", xp, "--target", tp, "--lse-out", path("lse.npy"), "--entropy-out",
           path("h.npy"), "--correct-out", path("ok.npy"))
    p = np.exp(x - lse(x)[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0).sum(axis=1)
    close(np.load(path("lse.npy")), lse(x), "token-stats lse")
    close(np.load(path("h.npy")), h, "token-stats entropy")
    am = np.argmax(x, axis=1)  # NumPy's argmax is also the first maximum
    try:
        import torch
        am_t = torch.argmax(torch.from_numpy(x), dim=1).numpy()
        check((am == am_t).all(), f"numpy and torch argmax disagree: {am} {am_t}")
    except ImportError:
        pass
    want = np.where(t == -100, -1, (am == t).astype(np.int32))
    got = np.load(path("ok.npy"))
    check(got.dtype == np.int32 and (got == want).all(), f"token-stats correct: {got}, expected {want}")
    check(got[1] == 1, "a tie must go to the first maximum")
    # Printed (no output flags): three labelled arrays; --dtype bf16 shows its dtype.
    out = run_ok("token-stats", "--input", xp, "--target", tp, "--dtype", "bf16").stdout
    check(out.startswith("lse:\n") and "\nentropy:\n" in out and "\ncorrect:\n" in out and "dtype bfloat16" in out,
          f"printed token-stats: {out!r}")


def test_token_stats_bad_input():
    xp, tp = save("x.npy", X), save("t.npy", T)
    keep = save("keep2.npy", np.array([2.0]))
    before = open(keep, "rb").read()
    fails(["token-stats", "--input", xp, "--target", save("tf.npy", T.astype(np.float64)), "--lse-out", keep],
          ["--target", "tf.npy", "class indices"])
    fails(["token-stats", "--input", xp, "--target", save("tb.npy", np.full(N, 7)), "--lse-out", keep],
          ["target 7", "[0, 6)"])
    fails(["token-stats", "--input", xp, "--target", save("t3.npy", T[:3]), "--lse-out", keep],
          ["target must have shape [9]"])
    fails(["token-stats", "--input", tp, "--target", tp, "--lse-out", keep], ["--input", "int64"])
    check(open(keep, "rb").read() == before, "a failed token-stats run changed an existing output")


if __name__ == "__main__":
    run_tests([test_token_weight_loss_and_gradient, test_token_weight_bad_input, test_token_stats,
               test_token_stats_bad_input])
