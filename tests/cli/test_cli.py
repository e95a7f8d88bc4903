#!/usr/bin/python3
"""test_cli.py: end-to-end tests of the `xent` op subcommands (softmax, log-softmax, logsumexp,
cross-entropy, nll, bce, bce-with-logits, explain).

Oracles are NumPy float64 formulas written here (PyTorch 1.13's definitions) and central finite
differences of those formulas for every --grad-out; when torch is importable the formulas
themselves are also checked against torch. Errors: the exit code (2 bad input or usage, 1 runtime
failure), exactly one line on stderr naming the problem, and existing output files byte-identical
afterwards. Not covered here: the library's edge cases (tests/core) or the .npy parser's
byte-level cases (test_npy.cc).

Usage: test_cli.py path/to/xent      (exit 0 pass, 1 fail, 77 skip)
"""
import glob
import json
import os

from cli_harness import TMP, check, path, run, run_ok, run_tests, save  # first: skips without numpy

import numpy as np  # noqa: E402


def close(got, want, what, rtol=1e-10, atol=1e-12):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    same_shape = got.shape == want.shape
    check(same_shape, f"{what}: shape {got.shape}, expected {want.shape}")
    if same_shape:
        ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        err = np.max(np.abs(got - want)) if got.size else 0.0
        check(ok, f"{what}: max |difference| {err:.3g} (rtol {rtol}, atol {atol})\n got {got}\n want {want}")


# --- oracles (float64) ----------------------------------------------------------------------------

def softmax(x, d):
    e = np.exp(x - x.max(axis=d, keepdims=True))
    return e / e.sum(axis=d, keepdims=True)


def log_softmax(x, d):
    m = x.max(axis=d, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=d, keepdims=True))


def logsumexp(x, d):
    m = x.max(axis=d, keepdims=True)
    return np.squeeze(m + np.log(np.exp(x - m).sum(axis=d, keepdims=True)), axis=d)


def reduce(per, reduction, divisor=None):
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / (per.size if divisor is None else divisor)


def cross_entropy(x, t, w=None, ignore=-100, reduction="mean", eps=0.0):
    """torch.nn.functional.cross_entropy (1.13), classes along dim 1 (or dim 0 of a 1-d input)."""
    x = np.asarray(x, np.float64)
    one_d = x.ndim == 1
    if one_d:
        x, t = x[None], np.asarray(t)[None]
    C = x.shape[1]
    W = np.ones(C) if w is None else np.asarray(w, np.float64)
    lp = np.moveaxis(log_softmax(x, 1), 1, -1)  # (N, d..., C)
    if np.issubdtype(np.asarray(t).dtype, np.floating):
        tp = np.moveaxis(np.asarray(t, np.float64), 1, -1) * (1 - eps) + eps / C
        per = -(lp * tp * W).sum(-1)
        out = reduce(per, reduction)
    else:
        t = np.asarray(t)
        valid = t != ignore
        tc = np.where(valid, t, 0)
        picked = np.take_along_axis(lp, tc[..., None], -1)[..., 0]
        wt = W[tc] * valid
        nll = -wt * picked
        smooth = -(lp * W).sum(-1) * valid
        per = (1 - eps) * nll + eps / C * smooth
        if reduction == "mean":
            # Both terms divide by the picked weights (unweighted: the number of targets not ignored).
            smooth_div = wt.sum() if w is not None else valid.sum()
            out = (1 - eps) * nll.sum() / wt.sum() + eps / C * smooth.sum() / smooth_div
        else:
            out = reduce(per, reduction)
    return out[0] if one_d and reduction == "none" else out


def nll_loss(x, t, w=None, ignore=-100, reduction="mean"):
    x = np.asarray(x, np.float64)
    one_d = x.ndim == 1
    if one_d:
        x, t = x[None], np.asarray(t)[None]
    W = np.ones(x.shape[1]) if w is None else np.asarray(w, np.float64)
    xl = np.moveaxis(x, 1, -1)
    valid = t != ignore
    tc = np.where(valid, t, 0)
    wt = W[tc] * valid
    per = -wt * np.take_along_axis(xl, tc[..., None], -1)[..., 0]
    out = reduce(per, reduction, wt.sum())
    return out[0] if one_d and reduction == "none" else out


def bce(p, t, w=None, reduction="mean"):
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore"):
        per = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))
    if w is not None:
        per = per * w
    return reduce(per, reduction)


def bce_with_logits(x, t, w=None, pw=None, reduction="mean"):
    x = np.asarray(x, np.float64)
    softplus_neg = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)  # log(1 + exp(-x)), stable
    coef = 1 + (np.asarray(pw, np.float64) - 1) * t if pw is not None else 1
    per = (1 - t) * x + coef * softplus_neg
    if w is not None:
        per = per * w
    return reduce(per, reduction)


def fd_grad(f, x, h=1e-6):
    """Central differences of sum(f(x)) with respect to x, in float64."""
    x = np.array(x, np.float64)
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = np.sum(f(x))
        flat[i] = old - h
        down = np.sum(f(x))
        flat[i] = old
        gf[i] = (up - down) / (2 * h)
    return g


rng = np.random.default_rng(20240611)

# --- softmax, log-softmax, logsumexp --------------------------------------------------------------

def test_softmax_family():
    x = rng.normal(size=(3, 4, 5)) * 3
    xp = save("sm_x.npy", x)
    ops = {
        "softmax": (softmax, lambda x, d: softmax(x, d) * (1 - 1)),  # grad of sum(softmax) is 0
        "log-softmax": (log_softmax, lambda x, d: 1 - x.shape[d] * softmax(x, d)),
        "logsumexp": (logsumexp, softmax),
    }
    for op, (f, grad) in ops.items():
        # Rank >= 3 needs --dim (PyTorch deprecates the implicit dim; (B, T, V) would get dim 1).
        p = run(op, "--input", xp, "--out", path("sm_y_nodim.npy"))
        check(p.returncode == 2 and "--dim is required" in p.stderr and p.stderr.count("\n") == 1
              and not os.path.exists(path("sm_y_nodim.npy")),
              f"{op} rank 3 without --dim: exit {p.returncode}, stderr {p.stderr!r}")
        for dim in [0, 1, 2, -1, -3]:
            d = dim
            args = [op, "--input", xp, "--out", path("sm_y.npy"), "--grad-out", path("sm_g.npy"), "--dim", dim]
            run_ok(*args)
            y, g = np.load(path("sm_y.npy")), np.load(path("sm_g.npy"))
            check(y.dtype == np.float64 and g.dtype == np.float64, f"{op}: output dtype {y.dtype}, {g.dtype}")
            close(y, f(x, d), f"{op} dim={dim}")
            close(g, grad(x, d), f"{op} dim={dim} --grad-out", atol=1e-12)
            if op != "softmax":
                close(g, fd_grad(lambda v: f(v, d), x), f"{op} dim={dim} --grad-out vs finite differences",
                      rtol=1e-6, atol=1e-7)
    # float32 in, float32 out; 1-d input defaults to dim 0.
    x32 = rng.normal(size=(7,)).astype(np.float32)
    for op, (f, _) in ops.items():
        run_ok(op, "--input", save("sm_x32.npy", x32), "--out", path("sm_y32.npy"))
        y = np.load(path("sm_y32.npy"))
        check(y.dtype == np.float32, f"{op} float32: output dtype {y.dtype}")
        close(y, f(x32.astype(np.float64), 0), f"{op} float32 1-d", rtol=2e-6, atol=1e-6)
    # The seed's overflow example: exp(100) overflows float32, softmax must not.
    run_ok("softmax", "--input", save("sm_big.npy", np.array([1, 100], np.float32)), "--out", path("sm_big_y.npy"))
    y = np.load(path("sm_big_y.npy"))
    check(np.isfinite(y).all() and y[1] == 1.0 and abs(float(y[0]) / np.exp(-99.0) - 1) < 0.01,
          f"softmax [1, 100] in float32 gave {y}, expected [1.0089e-43, 1]")


# --- losses ---------------------------------------------------------------------------------------

def loss_case(op, oracle, x, files, flags, what, rtol=1e-10, atol=1e-12):
    """Runs `op` with --grad-out; checks the loss against oracle(x) and the gradient against
    finite differences of the oracle."""
    xp = save("l_x.npy", x)
    args = [op, "--input", xp, *files, *flags, "--out", path("l_out.npy"), "--grad-out", path("l_grad.npy")]
    p = run_ok(*args)
    if p.returncode != 0:
        return
    loss, grad = np.load(path("l_out.npy")), np.load(path("l_grad.npy"))
    check(loss.dtype == x.dtype and grad.dtype == x.dtype, f"{what}: dtypes {loss.dtype}, {grad.dtype}")
    close(loss, oracle(x.astype(np.float64)), f"{what}: loss", rtol, atol)
    close(grad, fd_grad(oracle, x), f"{what}: --grad-out vs finite differences", rtol=1e-5, atol=1e-7)


def test_cross_entropy():
    N, C = 5, 4
    x = rng.normal(size=(N, C)) * 2
    t = np.array([0, 3, 1, 2, 3], np.int64)
    w = rng.uniform(0.5, 2.0, size=C)
    tp, wp = save("ce_t.npy", t), save("ce_w.npy", w)
    for red in ["mean", "sum", "none"]:
        loss_case("cross-entropy", lambda v: cross_entropy(v, t, reduction=red), x, ["--target", tp],
                  ["--reduction", red], f"cross-entropy {red}")
        loss_case("cross-entropy", lambda v: cross_entropy(v, t, w, ignore=3, reduction=red, eps=0.2), x,
                  ["--target", tp, "--weight", wp], ["--reduction", red, "--ignore-index", 3, "--label-smoothing", 0.2],
                  f"cross-entropy weight+ignore+smoothing {red}")
        loss_case("cross-entropy", lambda v: cross_entropy(v, t, ignore=1, reduction=red, eps=0.3), x,
                  ["--target", tp], ["--reduction", red, "--ignore-index", 1, "--label-smoothing", 0.3],
                  f"cross-entropy ignore+smoothing (unweighted) {red}")
    # Probability targets, with smoothing.
    probs = softmax(rng.normal(size=(N, C)), 1)
    loss_case("cross-entropy", lambda v: cross_entropy(v, probs, eps=0.1), x, ["--target", save("ce_p.npy", probs)],
              ["--label-smoothing", 0.1], "cross-entropy probability targets")
    # int32 targets; (N, C, d) input; (C) input with a 0-d target.
    loss_case("cross-entropy", lambda v: cross_entropy(v, t), x, ["--target", save("ce_t32.npy", t.astype(np.int32))],
              [], "cross-entropy int32 targets")
    x3 = rng.normal(size=(2, 3, 4))
    t3 = rng.integers(0, 3, size=(2, 4))
    loss_case("cross-entropy", lambda v: cross_entropy(v, t3, reduction="none"), x3,
              ["--target", save("ce_t3.npy", t3)], ["--reduction", "none"], "cross-entropy (N, C, d)")
    loss_case("cross-entropy", lambda v: cross_entropy(v, np.int64(2)), x[0], ["--target", save("ce_t0.npy", np.int64(2))],
              [], "cross-entropy (C) input, 0-d target")
    # --exact (exact row sums, the MPI layer's arithmetic): the same oracles; probability targets refused.
    for red in ["mean", "sum", "none"]:
        loss_case("cross-entropy", lambda v: cross_entropy(v, t, w, ignore=3, reduction=red, eps=0.2), x,
                  ["--target", tp, "--weight", wp],
                  ["--reduction", red, "--ignore-index", 3, "--label-smoothing", 0.2, "--exact"],
                  f"cross-entropy --exact weight+ignore+smoothing {red}")
    loss_case("cross-entropy", lambda v: cross_entropy(v, t3, reduction="none"), x3,
              ["--target", save("ce_t3x.npy", t3)], ["--reduction", "none", "--exact"], "cross-entropy --exact (N, C, d)")
    fails(2, ["cross-entropy", "--input", save("ce_xp.npy", x), "--target", path("ce_p.npy"), "--exact"],
          ["--exact", "class-index"], outputs=())
    # Targets stored as uint8 / int16 are read as class indices.
    for dt in [np.uint8, np.int16, np.uint16]:
        loss_case("cross-entropy", lambda v: cross_entropy(v, t), x, ["--target", save("ce_tu.npy", t.astype(dt))], [],
                  f"cross-entropy {np.dtype(dt).name} targets")
    # float32: loss within float32 rounding of the float64 formula; reduced loss is 0-d.
    x32 = x.astype(np.float32)
    run_ok("cross-entropy", "--input", save("ce_x32.npy", x32), "--target", tp, "--out", path("ce_l32.npy"))
    l32 = np.load(path("ce_l32.npy"))
    check(l32.shape == () and l32.dtype == np.float32, f"cross-entropy float32 mean: shape {l32.shape} {l32.dtype}")
    close(l32, cross_entropy(x32.astype(np.float64), t), "cross-entropy float32", rtol=1e-6, atol=0)


def test_nll():
    N, C = 5, 4
    x = log_softmax(rng.normal(size=(N, C)), 1)
    t = np.array([1, 0, 3, 3, 2])
    w = rng.uniform(0.5, 2.0, size=C)
    tp, wp = save("nll_t.npy", t), save("nll_w.npy", w)
    for red in ["mean", "sum", "none"]:
        loss_case("nll", lambda v: nll_loss(v, t, reduction=red), x, ["--target", tp], ["--reduction", red],
                  f"nll {red}")
        loss_case("nll", lambda v: nll_loss(v, t, w, ignore=3, reduction=red), x, ["--target", tp, "--weight", wp],
                  ["--reduction", red, "--ignore-index", 3], f"nll weight+ignore {red}")


def test_bce():
    p = rng.uniform(0.05, 0.95, size=(3, 4))
    t = rng.uniform(0, 1, size=(3, 4))
    w = rng.uniform(0.5, 2, size=(4,))
    tp, wp = save("bce_t.npy", t), save("bce_w.npy", w)
    for red in ["mean", "sum", "none"]:
        loss_case("bce", lambda v: bce(v, t, reduction=red), p, ["--target", tp], ["--reduction", red], f"bce {red}")
        loss_case("bce", lambda v: bce(v, t, w, reduction=red), p, ["--target", tp, "--weight", wp],
                  ["--reduction", red], f"bce weight {red}", )
    # log is clamped at -100: p = 0 or 1 against the opposite target costs exactly 100.
    p01 = np.array([0.0, 1.0, 0.0, 1.0])
    t01 = np.array([1.0, 0.0, 0.0, 1.0])
    run_ok("bce", "--input", save("bce_p01.npy", p01), "--target", save("bce_t01.npy", t01), "--reduction", "none",
           "--out", path("bce_l01.npy"))
    close(np.load(path("bce_l01.npy")), bce(p01, t01, reduction="none"), "bce at p = 0 and 1 (clamped log)")

    x = rng.normal(size=(3, 4)) * 3
    pw = rng.uniform(0.5, 3, size=(4,))
    pwp = save("bcel_pw.npy", pw)
    for red in ["mean", "sum", "none"]:
        loss_case("bce-with-logits", lambda v: bce_with_logits(v, t, reduction=red), x, ["--target", tp],
                  ["--reduction", red], f"bce-with-logits {red}")
        loss_case("bce-with-logits", lambda v: bce_with_logits(v, t, w, pw, reduction=red), x,
                  ["--target", tp, "--weight", wp, "--pos-weight", pwp], ["--reduction", red],
                  f"bce-with-logits weight+pos-weight {red}")


def test_oracles_against_torch():
    """The formulas above are PyTorch's: checked here when torch is importable (else skipped)."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("note: torch not importable; oracle formulas not cross-checked against PyTorch")
        return
    T = torch.from_numpy
    x = rng.normal(size=(5, 4))
    t = np.array([0, 3, 1, 2, 3])
    w = rng.uniform(0.5, 2, size=4)
    for red in ["mean", "sum", "none"]:
        for kw in [dict(), dict(w=w, ignore=3, eps=0.2), dict(ignore=1, eps=0.3)]:
            want = F.cross_entropy(T(x), T(t), weight=T(w) if "w" in kw else None, ignore_index=kw.get("ignore", -100),
                                   reduction=red, label_smoothing=kw.get("eps", 0.0)).numpy()
            close(cross_entropy(x, t, reduction=red, **kw), want, f"oracle cross_entropy vs torch {red} {kw.keys()}")
        pt = softmax(rng.normal(size=(5, 4)), 1)
        close(cross_entropy(x, pt, reduction=red, eps=0.1),
              F.cross_entropy(T(x), T(pt), reduction=red, label_smoothing=0.1).numpy(), "oracle ce probs vs torch")
        lp = log_softmax(x, 1)
        close(nll_loss(lp, t, w, ignore=3, reduction=red),
              F.nll_loss(T(lp), T(t), weight=T(w), ignore_index=3, reduction=red).numpy(), "oracle nll vs torch")
        p = rng.uniform(0.05, 0.95, size=(5, 4))
        tt = rng.uniform(0, 1, size=(5, 4))
        close(bce(p, tt, w, reduction=red), F.binary_cross_entropy(T(p), T(tt), weight=T(w), reduction=red).numpy(),
              "oracle bce vs torch")
        close(bce_with_logits(x, tt, w, w + 1, reduction=red),
              F.binary_cross_entropy_with_logits(T(x), T(tt), weight=T(w), pos_weight=T(w + 1), reduction=red).numpy(),
              "oracle bce_with_logits vs torch")


def test_determinism_across_threads():
    x = rng.normal(size=(512, 1000)).astype(np.float32)
    t = rng.integers(0, 1000, size=512)
    xp, tp = save("det_x.npy", x), save("det_t.npy", t)
    outs = []
    for threads in [1, 2]:
        run_ok("cross-entropy", "--input", xp, "--target", tp, "--threads", threads, "--out", path(f"det_l{threads}.npy"),
               "--grad-out", path(f"det_g{threads}.npy"))
        outs.append(open(path(f"det_l{threads}.npy"), "rb").read() + open(path(f"det_g{threads}.npy"), "rb").read())
    check(outs[0] == outs[1], "cross-entropy outputs differ between --threads 1 and --threads 2")


def test_layout_conversions():
    """Fortran-order and big-endian inputs are read as the arrays they describe."""
    x = rng.normal(size=(3, 5))
    for name, arr in [("fortran", np.asfortranarray(x)), ("bigendian", x.astype(">f8")),
                      ("fortran_bigendian", np.asfortranarray(x.astype(">f8")))]:
        run_ok("softmax", "--input", save(f"lay_{name}.npy", arr), "--out", path("lay_y.npy"))
        y = np.load(path("lay_y.npy"))
        close(y, softmax(x, 1), f"softmax of a {name} input")


# --- errors ---------------------------------------------------------------------------------------

def raw_npy(dict_text, data=b"", length=None):
    d = dict_text.encode()
    d += b" " * ((64 - (10 + len(d) + 1) % 64) % 64) + b"\n"
    n = len(d) if length is None else length
    return b"\x93NUMPY\x01\x00" + bytes([n & 0xFF, n >> 8]) + d + data


def write_bytes(name, b):
    with open(path(name), "wb") as f:
        f.write(b)
    return path(name)


def fails(rc, args, fragments, outputs=("e_out.npy", "e_grad.npy")):
    """Runs xent expecting exit `rc`, exactly one stderr line containing every fragment, and every
    pre-existing output file byte-identical afterwards with no temporaries left beside it."""
    sentinels = {}
    for o in outputs:
        sentinels[o] = f"previous content of {o}\n".encode()
        write_bytes(o, sentinels[o])
    p = run(*args)
    what = f"xent {' '.join(map(str, args))}"
    check(p.returncode == rc, f"{what}: exit {p.returncode}, expected {rc}; stderr {p.stderr!r}")
    lines = p.stderr.splitlines()
    check(len(lines) == 1 and lines[0].startswith("xent: error: "),
          f"{what}: expected one 'xent: error: ...' line on stderr, got {p.stderr!r}")
    for f in fragments:
        check(f.lower() in p.stderr.lower(), f"{what}: stderr {p.stderr.strip()!r} does not mention {f!r}")
    for o, content in sentinels.items():
        with open(path(o), "rb") as fh:
            check(fh.read() == content, f"{what}: {o} was modified")
        check(not glob.glob(path(o) + ".tmp.*"), f"{what}: a temporary of {o} was left behind")
    return p


def test_errors():
    x = rng.normal(size=(4, 3))
    xp = save("e_x.npy", x)
    tp = save("e_t.npy", np.array([0, 2, 1, 1]))
    out = ["--out", path("e_out.npy"), "--grad-out", path("e_grad.npy")]
    ce = ["cross-entropy", "--input", xp, "--target", tp]

    # Usage.
    fails(2, ["frobnicate", "--input", xp], ["frobnicate"])
    fails(2, ["softmax", "--input", xp, *out, "--bogus"], ["--bogus"])
    fails(2, ["softmax", *out], ["--input"])
    fails(2, [*ce, *out, "--reduction", "average"], ["--reduction", "average"])
    for s in ["1.5", "-0.1", "nan"]:
        fails(2, [*ce, *out, "--label-smoothing", s], ["--label-smoothing", "[0, 1]"])
    fails(2, [*ce, "--out", path("e_out.npy"), "--grad-out", path("e_out.npy")], ["same file"],
          outputs=("e_out.npy",))
    fails(2, ["softmax", "--input", xp, "--dim", 2, *out], ["--dim 2", "[-2, 1]"])
    fails(2, ["softmax", "--input", xp, "--dim", -3, *out], ["--dim -3"])

    # Unreadable, malformed or lying files: every message names the file.
    good = open(xp, "rb").read()
    cases = [
        ("e_missing.npy", None, ["e_missing.npy", "no such file"]),
        ("e_trunc.npy", good[: len(good) - 10], ["e_trunc.npy", "truncated"]),
        ("e_text.npy", b"1.0, 2.0, 3.0\n", ["e_text.npy", "not a NumPy .npy file"]),
        ("e_empty.npy", b"", ["e_empty.npy", "empty"]),
        ("e_hdrlen.npy", raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3), }", length=5000),
         ["e_hdrlen.npy", "header declares 5000 bytes"]),
        ("e_short.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }", b"\0" * 120),
         ["e_short.npy", "declares 1000", "4000 bytes", "only 120 bytes"]),
        ("e_trail.npy", good + b"garbage", ["e_trail.npy", "trailing data"]),
        ("e_overflow.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }"),
         ["e_overflow.npy", "more elements than fit"]),
        ("e_huge.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }"),
         ["e_huge.npy", "limit"]),
        ("e_rank9.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", b"\0" * 4),
         ["e_rank9.npy", "9 dimensions", "at most 8"]),
        ("e_neg.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }"),
         ["e_neg.npy", "negative"]),
        ("e_dict.npy", raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", b"\0" * 24),
         ["e_dict.npy", "unexpected key 'x'"]),
        ("e_u64.npy", None, ["e_u64.npy", "uint64"]),
        ("e_c64.npy", None, ["e_c64.npy", "complex"]),
    ]
    save("e_u64.npy", np.abs(x).astype(np.uint64))
    save("e_c64.npy", x.astype(np.complex64))
    for name, content, frags in cases:
        if content is not None:
            write_bytes(name, content)
        fails(2, ["softmax", "--input", path(name), *out], ["--input", *frags])
        fails(2, ["cross-entropy", "--input", xp, "--target", path(name), *out], ["--target", *frags])
    fails(2, ["cross-entropy", "--input", xp, "--target", tp, "--weight", path("e_trunc.npy"), *out],
          ["--weight", "e_trunc.npy"])
    fails(2, ["softmax", "--input", TMP, *out], ["is a directory"])

    # Data that does not fit the operation.
    fails(2, ["cross-entropy", "--input", xp, "--target", save("e_t_oob.npy", np.array([0, 3, 1, 1])), *out],
          ["cross-entropy", "3", "[0, 3)"])
    fails(2, ["cross-entropy", "--input", xp, "--target", save("e_t_neg.npy", np.array([0, -1, 1, 1])), *out],
          ["-1"])
    fails(2, ["nll", "--input", xp, "--target", path("e_t_oob.npy"), *out], ["3"])
    fails(2, ["cross-entropy", "--input", xp, "--target", save("e_t_shape.npy", np.array([0, 1, 2])), *out],
          ["shape"])
    fails(2, ["cross-entropy", "--input", xp, "--target", tp, "--weight", save("e_w_shape.npy", np.ones(5)), *out],
          ["weight"])
    fails(2, ["cross-entropy", "--input", xp, "--target", tp, "--weight", save("e_w32.npy", np.ones(3, np.float32)),
              *out], ["float32"])
    fails(2, ["cross-entropy", "--input", xp, "--target", save("e_tp32.npy", np.ones((4, 3), np.float32) / 3), *out],
          ["float32"])
    fails(2, ["softmax", "--input", tp, *out], ["e_t.npy", "int64", "float32 or float64"])
    p01 = save("e_p.npy", np.array([[0.5, 1.5], [0.2, 0.3]]))
    t01 = save("e_pt.npy", np.array([[1.0, 0.0], [0.0, 1.0]]))
    fails(2, ["bce", "--input", p01, "--target", t01, *out], ["1.5", "[0, 1]"])
    fails(2, ["bce", "--input", save("e_pnan.npy", np.array([np.nan, 0.5])), "--target",
              save("e_ptn.npy", np.array([1.0, 0.0])), *out], ["nan"])
    fails(2, ["bce", "--input", t01, "--target", save("e_pti.npy", np.array([[1, 0], [0, 1]])), *out], ["int64"])
    fails(2, ["bce-with-logits", "--input", t01, "--target", save("e_pts.npy", np.ones((2, 3))), *out], ["shape"])

    # An output whose directory is missing is bad usage (exit 2), refused before any work, and the
    # other output is untouched.
    missing_dir = os.path.join(TMP, "no_such_dir")
    fails(2, [*ce, "--out", os.path.join(missing_dir, "l.npy"), "--grad-out", path("e_grad.npy")],
          ["--out", "no_such_dir", "does not exist"], outputs=("e_grad.npy",))
    fails(2, [*ce, "--out", path("e_out.npy"), "--grad-out", os.path.join(missing_dir, "g.npy")],
          ["--grad-out", "no_such_dir", "does not exist"], outputs=("e_out.npy",))
    # Runtime failures: exit 1, nothing written, the other output untouched.
    if os.geteuid() != 0:  # root writes anywhere
        ro = os.path.join(TMP, "readonly")
        os.makedirs(ro, exist_ok=True)
        os.chmod(ro, 0o500)
        fails(1, [*ce, "--out", os.path.join(ro, "l.npy")], ["readonly"], outputs=())
        os.chmod(ro, 0o700)


def test_bench_options():
    """`xent bench` cross-entropy options: JSON fields, minimal bytes, usage errors (exit 2)."""
    p = run_ok("bench", "cross-entropy", "--shape", "6,5", "--pass", "fwd+bwd", "--target", "prob",
               "--label-smoothing", "0.1", "--weight", "--reps", "1", "--no-copy", "--json")
    r = json.loads(p.stdout)
    check(r["target"] == "prob" and r["label_smoothing"] == 0.1 and r["weighted"] is True, f"bench json {r}")
    check(r["bytes"] == 4 * (3 * 6 * 5 + 5), f"bench bytes {r['bytes']}: logits, targets, dlogits, weights")
    for args, frag in [(["nll", "--target", "prob"], ["prob", "nll"]), (["cross-entropy", "--target", "x"], ["index or prob"]),
                       (["cross-entropy", "--label-smoothing", "1.5"], ["[0, 1]", "1.5"]),
                       (["cross-entropy", "--label-smoothing", "nan"], ["[0, 1]"]),
                       (["softmax", "--label-smoothing", "0"], ["cross-entropy"]), (["bce", "--weight"], ["--weight"])]:
        fails(2, ["bench", *args, "--shape", "4,3", "--reps", "1", "--no-copy"], frag, outputs=())
    p = run_ok("bench", "cross-entropy", "--shape", "6,5", "--pass", "fwd+bwd", "--exact", "--reps", "1", "--no-copy",
               "--json")
    check(json.loads(p.stdout)["exact"] is True, f"bench --exact json {p.stdout}")
    fails(2, ["bench", "cross-entropy", "--target", "prob", "--exact", "--shape", "4,3", "--reps", "1", "--no-copy"],
          ["--exact"], outputs=())


# --- help and explain -----------------------------------------------------------------------------

def test_help():
    flags = {
        "softmax": ["--input", "--dim", "--out", "--grad-out", "--threads"],
        "log-softmax": ["--input", "--dim", "--out", "--grad-out"],
        "logsumexp": ["--input", "--dim", "--out", "--grad-out"],
        "cross-entropy": ["--input", "--target", "--weight", "--ignore-index", "--reduction", "--label-smoothing",
                          "--out", "--grad-out", "--threads"],
        "nll": ["--input", "--target", "--weight", "--ignore-index", "--reduction", "--out", "--grad-out"],
        "bce": ["--input", "--target", "--weight", "--reduction", "--out", "--grad-out"],
        "bce-with-logits": ["--input", "--target", "--weight", "--pos-weight", "--reduction", "--out", "--grad-out"],
    }
    for cmd, fl in flags.items():
        p = run_ok(cmd, "--help")
        check("Examples:" in p.stdout and f"xent {cmd} " in p.stdout, f"xent {cmd} --help has no example")
        for f in fl:
            check(f in p.stdout, f"xent {cmd} --help does not explain {f}")
    for sub in [["explain", "--help"], ["explain", "cross-entropy", "--help"], ["explain", "softmax", "--help"]]:
        p = run_ok(*sub)
        check("Examples:" in p.stdout, f"xent {' '.join(sub)} has no example")


def test_explain():
    p = run_ok("explain", "cross-entropy", "--logits", "[[1,2,3],[2,4,6]]", "--target", "[0,2]")
    for s in ["0.0900", "0.2447", "0.6652", "0.0159", "0.1173", "0.8668", "2.4076", "0.1429", "2.5505", "1.2753",
              "-np.log(y_hat[range(n), y])", "equal"]:
        check(s in p.stdout, f"explain cross-entropy output lacks {s!r}")
    check("MISMATCH" not in p.stdout, "explain cross-entropy reports a mismatch with the library")
    # The same from files, and with options (checked against the library by explain itself).
    xp = save("ex_x.npy", np.array([[1, 2, 3], [2, 4, 6]], np.float32))
    tp = save("ex_t.npy", np.array([0, 2]))
    p = run_ok("explain", "cross-entropy", "--input", xp, "--target", tp)
    check("1.2753" in p.stdout, "explain cross-entropy from files lacks 1.2753")
    for extra in [["--weight", "[1,2,0.5]"], ["--ignore-index", "2"], ["--label-smoothing", "0.1"],
                  ["--label-smoothing", "0.2", "--ignore-index", "1"],
                  ["--weight", "[1,2,0.5]", "--label-smoothing", "0.25", "--ignore-index", "0"]]:
        p = run_ok("explain", "cross-entropy", "--logits", "[[1,2,3],[2,4,6],[0,0,9]]", "--target", "[0,2,1]", *extra)
        check("MISMATCH" not in p.stdout and "equal" in p.stdout, f"explain cross-entropy {extra}: {p.stdout[-300:]}")
        want = cross_entropy(np.array([[1, 2, 3], [2, 4, 6], [0, 0, 9]], np.float32).astype(np.float64),
                             np.array([0, 2, 1]), w=np.array([1, 2, 0.5]) if "--weight" in extra else None,
                             ignore=int(extra[extra.index("--ignore-index") + 1]) if "--ignore-index" in extra else -100,
                             eps=float(extra[extra.index("--label-smoothing") + 1]) if "--label-smoothing" in extra else 0)
        check(f"{want:.4f}" in p.stdout, f"explain cross-entropy {extra}: mean {want:.4f} not shown")
    p = run_ok("explain", "cross-entropy", "--logits", "[[1,2,3],[2,4,6]]", "--target", "[[1,0,0],[0,0,1]]")
    check("1.2753" in p.stdout, "explain cross-entropy with one-hot targets lacks 1.2753")
    p = run_ok("explain", "softmax", "--logits", "[1,100]")
    for s in ["1.0089e-43", "inf", "nan"]:
        check(s in p.stdout, f"explain softmax [1,100] lacks {s!r}")
    check("MISMATCH" not in p.stdout, "explain softmax reports a mismatch")
    fails(2, ["explain", "cross-entropy", "--logits", "[[1,2,3],[2,4]]", "--target", "[0,2]"],
          ["--logits", "at character"], outputs=())
    fails(2, ["explain", "cross-entropy", "--logits", "[[1,2,3]]", "--target", "[5]"], ["5", "[0, 3)"], outputs=())
    fails(2, ["explain", "cross-entropy", "--target", "[0]"], ["--input", "--logits"], outputs=())
    fails(2, ["explain", "softmax", "--logits", "[1, x]"], ["at character 4"], outputs=())


def main():
    run_tests([test_softmax_family, test_cross_entropy, test_nll, test_bce, test_oracles_against_torch,
               test_determinism_across_threads, test_layout_conversions, test_errors, test_bench_options, test_help, test_explain])


if __name__ == "__main__":
    main()
