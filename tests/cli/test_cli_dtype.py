#!/usr/bin/python3
"""test_cli_dtype.py: end-to-end tests of the op subcommands' --dtype flag and of 16-bit .npy
files: float16 inputs used directly, bfloat16 read and written as ml_dtypes' '<V2' convention, the
inputs converted once, and each result against the float64 formula on the converted inputs,
rounded once to the dtype (NumPy rounds float64 to float16 correctly; bfloat16 rounding is written
here). xent must be within one unit in the last place of the 16-bit type everywhere. Printed
results name their dtype. Bad input: exit 2 and one line. Not covered: the kernels' numerics in
depth (tests/kernels, tests/torch) or the parser's byte-level cases (test_npy.cc).

Usage: test_cli_dtype.py path/to/xent      (exit 0 pass, 1 fail, 77 skip)
"""
import io

from cli_harness import check, fails, path, run, run_ok, run_tests, save  # first: skips without numpy

import numpy as np  # noqa: E402

RNG = np.random.default_rng(16)


# --- 16-bit rounding and comparison -----------------------------------------------------------------

def bf16_bits(x64):
    """float64 -> bfloat16 bits, rounded once to nearest even (not via float32, which rounds twice)."""
    x = np.asarray(x64, np.float64)
    b = x.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000)  # a neighbour of the answer
    best = np.zeros(x.shape, np.uint32)
    best_d = np.full(x.shape, np.inf)
    for delta in (-0x10000, 0, 0x10000):
        with np.errstate(over="ignore", invalid="ignore"):
            c = (b.astype(np.int64) + delta).astype(np.uint32)
            v = c.view(np.float32).astype(np.float64)
            v = np.where(np.isinf(v), np.sign(v) * 2.0 ** 128, v)  # inf is where 2^128 would be
            d = np.abs(v - x)
        even = (c & np.uint32(0x10000)) == 0
        better = (d < best_d) | ((d == best_d) & even)
        best = np.where(better, c, best)
        best_d = np.where(better, d, best_d)
    special = ~np.isfinite(x)
    best = np.where(special, x.astype(np.float32).view(np.uint32) & np.uint32(0xFFFF0000), best)
    return (best >> np.uint32(16)).astype(np.uint16)


def bf16_value(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)


def to_type(x64, dt):
    """float64 values rounded once to dt, as float64."""
    if dt == "bf16":
        return bf16_value(bf16_bits(x64))
    return np.asarray(x64, np.float64).astype({"f16": np.float16, "f32": np.float32, "f64": np.float64}[dt]).astype(
        np.float64)


def bits16(a, dt):
    a = np.asarray(a)
    if dt == "bf16":
        return a.view(np.uint16) if a.dtype.itemsize == 2 else bf16_bits(a)
    return np.asarray(a, np.float16).view(np.uint16)


def ulps16(got_bits, want_bits):
    """Distance in units in the last place between 16-bit patterns (sign-magnitude ordered)."""
    def key(b):
        b = np.asarray(b, np.int64)
        return np.where(b & 0x8000, -(b & 0x7FFF), b)
    return np.abs(key(got_bits) - key(want_bits))


def load16(p, dt):
    """The 16-bit result file's bits, checking the descr of the convention."""
    a = np.load(p)
    if dt == "bf16":
        check(a.dtype == np.dtype("V2"), f"{p}: bfloat16 written as dtype {a.dtype}, expected '<V2' (void 2)")
        return a.view("<u2")
    check(a.dtype == np.float16, f"{p}: float16 written as dtype {a.dtype}")
    return a.view(np.uint16)


def within_ulp(p, want64, dt, what):
    got = load16(p, dt)
    want = bits16(to_type(want64, dt), dt) if dt == "bf16" else np.asarray(want64).astype(np.float16).view(np.uint16)
    check(got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}")
    if got.shape == want.shape:
        d = ulps16(got, want)
        check(d.max(initial=0) <= 1, f"{what}: {d.max()} ulp from the float64 result rounded to {dt}\n got {got}\n"
              f" want {want}")
    return got


def save_bf16(name, x64):
    """A '<V2' file, as np.save writes an ml_dtypes.bfloat16 array (no ml_dtypes here: the header is
    NumPy's for '<u2' with the descr replaced; same length)."""
    buf = io.BytesIO()
    np.save(buf, bf16_bits(x64))
    data = buf.getvalue().replace(b"'<u2'", b"'<V2'", 1)
    with open(path(name), "wb") as f:
        f.write(data)
    return path(name)


# --- float64 oracles ----------------------------------------------------------------------------

def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def lse(x):
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


X32 = (RNG.standard_normal((6, 37)) * 3).astype(np.float32)
T = RNG.integers(0, 37, size=6)


def test_softmax_family_converted_once():
    xp, tp = save("x32.npy", X32), save("t.npy", T)
    del tp
    for dt in ("bf16", "f16"):
        xc = to_type(X32.astype(np.float64), dt)  # the input, converted once
        run_ok("softmax", "--input", xp, "--dtype", dt, "--out", path("y.npy"), "--grad-out", path("g.npy"))
        within_ulp(path("y.npy"), softmax(xc), dt, f"softmax --dtype {dt}")
        g = load16(path("g.npy"), dt)  # d sum(softmax) / dx = 0 up to the rounding of y
        check(np.abs(bf16_value(g) if dt == "bf16" else g.view(np.float16).astype(np.float64)).max() < 0.05,
              f"softmax --dtype {dt}: gradient of sum(softmax) far from 0")
        run_ok("log-softmax", "--input", xp, "--dtype", dt, "--out", path("y.npy"))
        within_ulp(path("y.npy"), xc - lse(xc)[:, None], dt, f"log-softmax --dtype {dt}")
        run_ok("logsumexp", "--input", xp, "--dtype", dt, "--out", path("y.npy"), "--grad-out", path("g.npy"))
        within_ulp(path("y.npy"), lse(xc), dt, f"logsumexp --dtype {dt}")
        # The backward takes the (rounded) output, as PyTorch's does: dx = exp(x - lse_16).
        within_ulp(path("g.npy"), np.exp(xc - to_type(lse(xc), dt)[:, None]), dt, f"logsumexp --dtype {dt} gradient")
    # float64 from float32: the conversion is exact, the result float64.
    run_ok("softmax", "--input", xp, "--dtype", "f64", "--out", path("y.npy"))
    y = np.load(path("y.npy"))
    check(y.dtype == np.float64, f"softmax --dtype f64 wrote {y.dtype}")
    check(np.allclose(y, softmax(X32.astype(np.float64)), rtol=1e-13, atol=0), "softmax --dtype f64 values")
    # float64 down to float32: one rounding of the input, the result in float32.
    x64 = RNG.standard_normal((3, 5))
    run_ok("logsumexp", "--input", save("x64.npy", x64), "--dtype", "f32", "--out", path("y.npy"))
    y = np.load(path("y.npy"))
    check(y.dtype == np.float32, f"logsumexp --dtype f32 wrote {y.dtype}")
    check(np.allclose(y, lse(x64.astype(np.float32).astype(np.float64)), rtol=2e-7, atol=0), "logsumexp --dtype f32")


def test_16bit_files_used_directly():
    x16 = X32.astype(np.float16)
    run_ok("softmax", "--input", save("x16.npy", x16), "--out", path("y.npy"))
    within_ulp(path("y.npy"), softmax(x16.astype(np.float64)), "f16", "softmax of a float16 file")
    # A '<V2' file is bfloat16 when --dtype bf16 says so, and its bits are used as they are.
    xb = save_bf16("xb.npy", X32.astype(np.float64))
    xbc = to_type(X32.astype(np.float64), "bf16")
    run_ok("log-softmax", "--input", xb, "--dtype", "bf16", "--out", path("y.npy"))
    within_ulp(path("y.npy"), xbc - lse(xbc)[:, None], "bf16", "log-softmax of a '<V2' file")
    # Without --dtype bf16 such a file is refused, saying how to ask.
    fails(["softmax", "--input", xb, "--out", path("z.npy")], ["--input", "xb.npy", "'<V2'", "--dtype bf16"])
    fails(["softmax", "--input", xb, "--dtype", "f16", "--out", path("z.npy")], ["'<V2'", "--dtype bf16"])


def test_losses_in_16_bits():
    tp = save("t.npy", T)
    xp = save("x32.npy", X32)
    w = RNG.uniform(0.5, 2, 37).astype(np.float32)
    wp = save("w.npy", w)
    for dt in ("bf16", "f16"):
        xc = to_type(X32.astype(np.float64), dt)
        wc = to_type(w.astype(np.float64), dt)
        rows = np.arange(6)
        per = lse(xc) - xc[rows, T]
        run_ok("cross-entropy", "--input", xp, "--target", tp, "--dtype", dt, "--reduction", "none", "--out",
               path("l.npy"), "--grad-out", path("g.npy"))
        within_ulp(path("l.npy"), per, dt, f"cross-entropy --dtype {dt} none")
        grad = softmax(xc)
        grad[rows, T] -= 1
        within_ulp(path("g.npy"), grad, dt, f"cross-entropy --dtype {dt} gradient")
        run_ok("cross-entropy", "--input", xp, "--target", tp, "--weight", wp, "--dtype", dt, "--out", path("l.npy"))
        within_ulp(path("l.npy"), (wc[T] * per).sum() / wc[T].sum(), dt, f"cross-entropy --dtype {dt} weighted mean")
        run_ok("nll", "--input", xp, "--target", tp, "--dtype", dt, "--reduction", "sum", "--out", path("l.npy"))
        within_ulp(path("l.npy"), -xc[rows, T].sum(), dt, f"nll --dtype {dt} sum")
        # Binary cross-entropy: logits and probabilities; the float targets are converted too.
        yt = (RNG.uniform(size=X32.shape) < 0.5).astype(np.float64)
        ytp = save("yt.npy", yt)
        run_ok("bce-with-logits", "--input", xp, "--target", ytp, "--dtype", dt, "--reduction", "none", "--out",
               path("l.npy"))
        within_ulp(path("l.npy"), np.maximum(xc, 0) - xc * yt + np.log1p(np.exp(-np.abs(xc))), dt,
                   f"bce-with-logits --dtype {dt}")
        p = RNG.uniform(0.05, 0.95, size=(4, 9))
        pc = to_type(p, dt)
        q = (RNG.uniform(size=p.shape) < 0.5).astype(np.float64)
        run_ok("bce", "--input", save("p.npy", p), "--target", save("q.npy", q), "--dtype", dt, "--out",
               path("l.npy"))
        within_ulp(path("l.npy"), np.mean(-(q * np.log(pc) + (1 - q) * np.log1p(-pc))), dt, f"bce --dtype {dt} mean")


def test_printed_results_name_the_dtype():
    xp, tp = save("x32.npy", X32[:2, :4]), save("t2.npy", T[:2] % 4)
    for dt, word in (("bf16", "bfloat16"), ("f16", "float16"), ("f64", "float64"), ("f32", "float32")):
        p = run_ok("cross-entropy", "--input", xp, "--target", tp, "--dtype", dt)
        lines = p.stdout.strip().split("\n")
        check(len(lines) == 2 and lines[1] == f"dtype {word}", f"printed loss --dtype {dt}: {p.stdout!r}")
        if len(lines) == 2:
            xc = to_type(X32[:2, :4].astype(np.float64), dt)
            want = np.mean(lse(xc) - xc[np.arange(2), T[:2] % 4])
            got = float(lines[0])
            tol = {"bf16": 2 ** -7, "f16": 2 ** -10, "f32": 1e-6, "f64": 1e-14}[dt]
            check(abs(got - want) <= tol * abs(want), f"printed loss --dtype {dt}: {got}, expected about {want}")
    # 16-bit values print as their shortest decimal: 1/3 in float16 is 0.3333, not 0.333251953125.
    p = run_ok("softmax", "--input", save("three.npy", np.zeros(3, np.float16)))
    check(p.stdout == "[0.3333 0.3333 0.3333]\ndtype float16\n", f"printed float16 softmax: {p.stdout!r}")
    # Without --dtype, float32 and float64 results print as before (no dtype line).
    p = run_ok("logsumexp", "--input", save("z64.npy", np.zeros(4)))
    check(p.stdout.strip() == str(np.log(4.0)), f"printed float64 logsumexp: {p.stdout!r}")


def test_bad_dtype_input():
    xp, tp = save("x32.npy", X32), save("t.npy", T)
    fails(["softmax", "--input", xp, "--dtype", "f8"], ["--dtype", "f32, f64, bf16 or f16", "'f8'"])
    fails(["cross-entropy", "--input", xp, "--target", tp, "--dtype", "half"], ["--dtype", "'half'"])
    fails(["softmax", "--input", tp, "--dtype", "bf16"], ["--input", "t.npy", "int64", "float16, bfloat16"])
    fails(["cross-entropy", "--input", save("p16.npy", np.full((2, 3), 1 / 3, np.float16)), "--target",
           save("t2.npy", np.array([0, 1])), "--input-kind", "probabilities"],
          ["--input-kind probabilities", "float16", "--dtype f32"])
    # A weight in another dtype than the 16-bit input, without --dtype, is the library's error.
    fails(["cross-entropy", "--input", save("x16.npy", X32.astype(np.float16)), "--target", tp, "--weight",
           save("w32.npy", np.ones(37, np.float32))], ["weight", "float16", "float32"])


if __name__ == "__main__":
    run_tests([test_softmax_family_converted_once, test_16bit_files_used_directly, test_losses_in_16_bits,
               test_printed_results_name_the_dtype, test_bad_dtype_input])
