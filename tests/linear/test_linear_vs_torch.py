#!/usr/bin/python3
"""test_linear_vs_torch.py: `xent linear-cross-entropy` against PyTorch 1.13 on small shapes.

What it does. For every option (bias, class weight, ignore_index, label_smoothing, reduction
mean/sum/none with an upstream gradient, z-loss, soft-capping), int32 and int64 targets, float32
and float64, and block shapes that force recomputed vocabulary blocks, tails and one-token blocks,
it writes .npy files, runs the CLI with every gradient output, and compares the loss, the z-loss
and the gradients with PyTorch's autograd of

    z    = F.linear(h, W, b);  z = s * tanh(z / s) when softcapped
    loss = F.cross_entropy(z, t, weight=, ignore_index=, label_smoothing=, reduction=)
           + z-loss (lse_square_scale * logsumexp(z)^2 per kept token; summed, or for mean
             divided by the number of kept tokens; per token for none)
    objective = sum(loss * dloss)

computed in float64. Edge cases: every token ignored, one token, no tokens. Bad input (target out
of range, mismatched shapes, --grad-bias without --bias) must exit 2 with one line on stderr and
leave an existing output file untouched.

Tolerances: float64 results within 1e-10 of torch64 relative to the output's largest magnitude
(two float64 implementations differ by rounding only); float32 results within
max(4 |torch32 - torch64|, 2e-5 * max(scale, 0.05)) of torch64, i.e. no less accurate than PyTorch's own
float32 computation, up to a floor for elements where torch32 is exact by luck.

Exit status: 0 all pass, 1 failures (each with a reproducing command), 77 when numpy or torch is
missing (ctest reports it as skipped). Not a benchmark.
"""

import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except Exception as e:  # noqa: BLE001 - any import failure means "cannot run here"
    print(f"SKIPPED: numpy and torch are needed to compare with PyTorch ({type(e).__name__}: {e})")
    sys.exit(77)

import argparse
import itertools
import os
import shlex
import subprocess
import tempfile


def torch_reference(h, w, b, t, cw, ignore_index, eps, red, lam, cap, dloss, dtype):
    """Loss, z-loss and gradients from PyTorch autograd, in `dtype`."""
    ht = torch.tensor(h, dtype=dtype, requires_grad=True)
    wt = torch.tensor(w, dtype=dtype, requires_grad=True)
    bt = torch.tensor(b, dtype=dtype, requires_grad=True) if b is not None else None
    tt = torch.tensor(t, dtype=torch.int64)
    cwt = torch.tensor(cw, dtype=dtype) if cw is not None else None
    z = F.linear(ht, wt, bt)
    if cap > 0:
        z = cap * torch.tanh(z / cap)
    ce = F.cross_entropy(z, tt, weight=cwt, ignore_index=ignore_index, label_smoothing=eps, reduction=red)
    keep = (tt != ignore_index).to(dtype)
    zl_tok = lam * torch.logsumexp(z, dim=1) ** 2 * keep if z.shape[0] > 0 else torch.zeros(0, dtype=dtype)
    if red == "none":
        zl = zl_tok
    elif red == "sum":
        zl = zl_tok.sum()
    elif keep.sum() > 0:
        zl = zl_tok.sum() / keep.sum()
    else:  # a mean over no tokens: NaN loss, zero gradient (as PyTorch's cross_entropy does)
        zl = zl_tok.sum() + float("nan")
    loss = ce + zl
    g = torch.tensor(dloss, dtype=dtype) if dloss is not None else torch.ones_like(loss)
    (loss * g).sum().backward()
    grads = [ht.grad, wt.grad] + ([bt.grad] if bt is not None else [])
    grads = [x if x is not None else torch.zeros(1) for x in grads]
    return [loss.detach().numpy(), zl.detach().numpy()] + [x.numpy() for x in grads]


def close(name, got, t64, t32, is32):
    got = np.asarray(got, dtype=np.float64)
    t64 = np.asarray(t64, dtype=np.float64)
    if got.shape != t64.shape:
        return f"{name}: shape {got.shape}, torch {t64.shape}"
    nan_g, nan_t = np.isnan(got), np.isnan(t64)
    if not np.array_equal(nan_g, nan_t):
        return f"{name}: NaN at {np.argwhere(nan_g != nan_t)[:3].tolist()} (xent NaN {nan_g.sum()}, torch NaN {nan_t.sum()})"
    ok = ~nan_t
    if not ok.any():
        return None
    scale = max(np.abs(t64[ok]).max(), 1e-3)
    if is32:
        # Outputs that are near-cancellations of O(0.05+) terms (a gradient that is nearly zero)
        # carry float32 rounding of the terms, not of the result.
        scale = max(scale, 0.05)
        t32 = np.asarray(t32, dtype=np.float64)
        bound = np.maximum(4 * np.abs(t32[ok] - t64[ok]), 2e-5 * scale)
    else:
        bound = 1e-10 * scale
    err = np.abs(got[ok] - t64[ok])
    if np.all(err <= bound):
        return None
    i = int(np.argmax(err - bound))
    return (f"{name}: max excess at flat {i}: xent {got[ok][i]!r} torch64 {t64[ok][i]!r} "
            f"|diff| {err[i]:.3g} > bound {np.broadcast_to(bound, err.shape)[i]:.3g}")


def run_case(xent, tmp, case, failures):
    (N, H, V), dtname, bias, use_cw, ignore, eps, red, lam, cap, t32, blocks, dloss_on, seed = case
    rng = np.random.default_rng(seed)
    npdt = np.float32 if dtname == "f32" else np.float64
    h = rng.uniform(-1.5, 1.5, (N, H)).astype(npdt)
    w = rng.uniform(-1, 1, (V, H)).astype(npdt)
    b = rng.uniform(-0.5, 0.5, V).astype(npdt) if bias else None
    cw = rng.uniform(0.2, 2, V).astype(npdt) if use_cw else None
    t = rng.integers(0, V, N).astype(np.int64)
    ignore_index = -100
    if ignore == "some" and N > 0:
        t[::3] = ignore_index
    elif ignore == "all":
        t[:] = ignore_index
    dloss = None
    if dloss_on:
        dloss = rng.uniform(-1, 2, N if red == "none" else ()).astype(npdt)
    p = lambda name: os.path.join(tmp, name)  # noqa: E731
    np.save(p("h.npy"), h)
    np.save(p("w.npy"), w)
    np.save(p("t.npy"), t.astype(np.int32 if t32 else np.int64))
    cmd = [xent, "linear-cross-entropy", "--hidden", p("h.npy"), "--weight", p("w.npy"), "--target", p("t.npy"),
           "--reduction", red, "--out", p("loss.npy"), "--z-loss", p("z.npy"), "--grad-hidden", p("gh.npy"),
           "--grad-weight", p("gw.npy")]
    if bias:
        np.save(p("b.npy"), b)
        cmd += ["--bias", p("b.npy"), "--grad-bias", p("gb.npy")]
    if use_cw:
        np.save(p("cw.npy"), cw)
        cmd += ["--class-weight", p("cw.npy")]
    if dloss is not None:
        np.save(p("g.npy"), np.asarray(dloss, dtype=npdt))
        cmd += ["--dloss", p("g.npy")]
    if eps:
        cmd += ["--label-smoothing", repr(eps)]
    if lam:
        cmd += ["--lse-square-scale", repr(lam)]
    if cap:
        cmd += ["--softcap", repr(cap)]
    if blocks:
        cmd += ["--token-block", str(blocks[0]), "--vocab-block", str(blocks[1])]
    desc = f"case {case}: {shlex.join(cmd)}"
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        failures.append(f"{desc}\n  exit {r.returncode}: {r.stderr.strip()}")
        return
    got = [np.load(p("loss.npy")), np.load(p("z.npy")), np.load(p("gh.npy")), np.load(p("gw.npy"))]
    if bias:
        got.append(np.load(p("gb.npy")))
    for g in got:
        if g.dtype != npdt:
            failures.append(f"{desc}\n  output dtype {g.dtype}, expected {npdt}")
            return
    args = (h, w, b, t, cw, ignore_index, eps, red, lam, cap, dloss)
    ref64 = torch_reference(*args, torch.float64)
    ref32 = torch_reference(*args, torch.float32) if dtname == "f32" else ref64
    names = ["loss", "z_loss", "grad_hidden", "grad_weight", "grad_bias"]
    for name, g, r64, r32 in zip(names, got, ref64, ref32):
        msg = close(name, g, r64, r32, dtname == "f32")
        if msg:
            failures.append(f"{desc}\n  {msg}")


def expect_exit2(xent, tmp, args, what, failures):
    out = os.path.join(tmp, "keep.npy")
    np.save(out, np.array([42.0]))
    before = open(out, "rb").read()
    r = subprocess.run([xent, "linear-cross-entropy"] + args + ["--out", out], capture_output=True, text=True)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    if r.returncode != 2 or not lines:
        failures.append(f"{what}: expected exit 2 with a message, got {r.returncode}: {r.stderr!r}")
    if open(out, "rb").read() != before:
        failures.append(f"{what}: the existing output file was modified")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xent", required=True)
    ap.add_argument("--seed", type=int, default=20240)
    args = ap.parse_args()
    failures = []
    cases = []
    seed = args.seed
    # The option grid on one shape, blocks alternating between automatic, recomputed and tiny.
    block_modes = [None, (4, 5), (3, 17)]
    for red, bias, use_cw, eps, lam, cap in itertools.product(
            ["mean", "sum", "none"], [False, True], [False, True], [0.0, 0.1], [0.0, 0.01], [0.0, 3.0]):
        for dt in ["f32", "f64"]:
            cases.append(((9, 6, 17), dt, bias, use_cw, "some", eps, red, lam, cap, seed % 2 == 0,
                          block_modes[seed % 3], seed % 5 != 0, seed))
            seed += 1
    # Shapes: one token, a vocabulary that is not a multiple of the block, a wider layer.
    for shape, blocks in [((1, 4, 7), None), ((13, 5, 37), (4, 8)), ((40, 64, 300), (16, 64)),
                          ((40, 64, 300), None), ((5, 3, 1), None)]:
        for dt in ["f32", "f64"]:
            cases.append((shape, dt, True, True, "some", 0.1, "mean", 1e-3, 0.0, False, blocks, True, seed))
            cases.append((shape, dt, False, False, "none", 0.0, "none", 0.0, 5.0, True, blocks, True, seed + 1))
            seed += 2
    # Every token ignored, and no tokens at all.
    for red in ["mean", "sum", "none"]:
        cases.append(((4, 3, 6), "f64", True, False, "all", 0.1, red, 0.01, 0.0, False, None, False, seed))
        cases.append(((0, 3, 6), "f64", True, False, "none", 0.0, red, 0.0, 0.0, False, None, False, seed + 1))
        seed += 2
    with tempfile.TemporaryDirectory(prefix="xent_linear_torch_") as tmp:
        for c in cases:
            run_case(args.xent, tmp, c, failures)
        # Bad input: exit 2, nothing replaced.
        p = lambda name: os.path.join(tmp, name)  # noqa: E731
        np.save(p("h.npy"), np.zeros((3, 2), np.float32))
        np.save(p("w.npy"), np.zeros((4, 2), np.float32))
        np.save(p("w3.npy"), np.zeros((4, 3), np.float32))
        np.save(p("t.npy"), np.array([0, 4, 1]))
        np.save(p("tok.npy"), np.array([0, 3, 1]))
        base = ["--hidden", p("h.npy"), "--weight", p("w.npy")]
        expect_exit2(args.xent, tmp, base + ["--target", p("t.npy")], "target out of range", failures)
        expect_exit2(args.xent, tmp, ["--hidden", p("h.npy"), "--weight", p("w3.npy"), "--target", p("tok.npy")],
                     "weight of the wrong width", failures)
        expect_exit2(args.xent, tmp, base + ["--target", p("tok.npy"), "--grad-bias", p("gb.npy")],
                     "--grad-bias without --bias", failures)
        expect_exit2(args.xent, tmp, base + ["--target", p("tok.npy"), "--label-smoothing", "2"],
                     "label smoothing 2", failures)
    if failures:
        print(f"{len(failures)} of {len(cases) + 4} linear-cross-entropy checks FAILED (seed {args.seed}):")
        for f in failures:
            print(f)
        return 1
    print(f"all {len(cases) + 4} linear-cross-entropy checks match PyTorch {torch.__version__} (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
