#!/usr/bin/python3
"""test_half_vs_torch.py: xent's bfloat16 and float16 ops against PyTorch 1.13 on the CPU.

For each op (softmax and log_softmax forward and backward, logsumexp, cross-entropy mean with and
without label smoothing and its gradient, nll, bce-with-logits and its gradient) and shapes with
short and long rows, the inputs are drawn in float64 and rounded to the 16-bit type; the float64
result on those exact 16-bit values is the reference. xent runs through tests/torch/half_driver.cc.

  bfloat16: elementwise |xent - ref64| <= |torch_bf16 - ref64| + ulp_bf16(ref64) / 2 (+ 1e-30):
            xent no less accurate than PyTorch's own bfloat16 path, plus the final rounding.
  float16:  PyTorch 1.13 has no CPU float16 kernels for these ops, so xent must be within one ulp of
            the float64 result rounded once to float16 (and within half an ulp + float64 slack).

It prints, per op, the largest and mean error of each in ulps of the type, the numbers
docs/numerics.md quotes. Exits 0 on success, 1 on a mismatch, 77 when torch or numpy is missing.
"""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    print(f"SKIPPED: {e}")
    sys.exit(77)

DT = {"bf16": torch.bfloat16, "f16": torch.float16}


def ulp(ref, dt):
    """Spacing of dt at |ref| (subnormal spacing below the normal range), in float64."""
    digits, min_exp = (8, -126) if dt == torch.bfloat16 else (11, -14)
    a = np.abs(ref)
    e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    e = np.maximum(e, min_exp)
    return np.ldexp(1.0, (e - (digits - 1)).astype(np.int64))


def to_bits(t):
    return t.contiguous().view(torch.int16).numpy().astype(np.uint16)


def from_bits(b, dt, shape):
    return torch.from_numpy(np.frombuffer(b, dtype=np.int16).copy()).view(dt).reshape(shape)


def run_xent(driver, op, dname, x, t, tmp):
    dt = DT[dname]
    xs, ts = os.path.join(tmp, "x.bin"), os.path.join(tmp, "t.bin")
    out, grad = os.path.join(tmp, "o.bin"), os.path.join(tmp, "g.bin")
    to_bits(x).tofile(xs)
    (t.numpy().astype(np.int64) if t.dtype == torch.int64 else to_bits(t)).tofile(ts)
    N, C = x.shape
    subprocess.run([driver, op, dname, str(N), str(C), xs, ts, out, grad], check=True)
    o = open(out, "rb").read()
    g = from_bits(open(grad, "rb").read(), dt, x.shape)
    return from_bits(o, dt, (len(o) // 2,)), g


def torch_op(op, x, t):
    """(output, gradient of sum(out * dy) or of the loss) in x's dtype, PyTorch's way."""
    x = x.clone().requires_grad_(True)
    if op in ("softmax", "log_softmax"):
        y = (F.softmax if op == "softmax" else F.log_softmax)(x, dim=1)
        y.backward(t)
        return y.detach().reshape(-1), x.grad
    if op == "logsumexp":
        y = torch.logsumexp(x, dim=1)
        return y.detach(), None
    if op in ("ce", "ce_smooth"):
        y = F.cross_entropy(x, t, label_smoothing=0.1 if op == "ce_smooth" else 0.0)
    elif op == "nll":
        y = F.nll_loss(x, t)
    else:
        y = F.binary_cross_entropy_with_logits(x, t)
    y.backward()
    return y.detach().reshape(1), x.grad


def backward64(op, y16, dy16):
    """The softmax / log_softmax backward in float64 on 16-bit y and dy (the op's actual inputs)."""
    y, dy = y16.double(), dy16.double()
    if op == "softmax":
        return y * (dy - (y * dy).sum(dim=1, keepdim=True))
    return dy - torch.exp(y) * dy.sum(dim=1, keepdim=True)


def case_inputs(op, N, C, dt, rng):
    x64 = torch.from_numpy(rng.uniform(-8, 8, size=(N, C)))
    if op == "nll":
        x64 = F.log_softmax(x64, dim=1)
    x = x64.to(dt)
    if op in ("ce", "ce_smooth", "nll"):
        t = torch.from_numpy(rng.integers(0, C, size=N))
    elif op == "bce_logits":
        t = torch.from_numpy(rng.uniform(0, 1, size=(N, C))).to(dt)
    else:
        t = torch.from_numpy(rng.uniform(-1, 1, size=(N, C))).to(dt)
    return x, t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    failures = []
    ops = ["softmax", "log_softmax", "logsumexp", "ce", "ce_smooth", "nll", "bce_logits"]
    shapes = [(64, 10), (16, 1000), (4, 32000)]
    print(f"seed {a.seed}")
    print(f"{'op':12} {'dtype':5} {'shape':>11} {'what':5} {'xent max/mean ulp':>20} {'torch max/mean ulp':>20}")
    with tempfile.TemporaryDirectory() as tmp:
        for dname in ("bf16", "f16"):
            dt = DT[dname]
            for op in ops:
                for N, C in shapes:
                    x, t = case_inputs(op, N, C, dt, rng)
                    xo, xg = run_xent(a.driver, op, dname, x, t, tmp)
                    t64 = t.double() if t.dtype != torch.int64 else t
                    ro, rg = torch_op(op, x.double(), t64)
                    tb = None
                    if dname == "bf16":
                        try:
                            tb = torch_op(op, x, t)
                        except RuntimeError as e:  # no bf16 kernel: compare against rounding only
                            print(f"  torch has no bfloat16 {op}: {e}")
                    if op in ("softmax", "log_softmax"):
                        # The backward is an op of (y, dy): its reference takes the 16-bit y each
                        # implementation produced (xent's for xent; torch's error against its own).
                        rg = backward64(op, xo.reshape(x.shape), t)
                        if tb is not None:
                            tb = (tb[0], tb[1].double() - backward64(op, tb[0].reshape(x.shape), t) + rg)
                    pairs = [("out", xo, ro)] + ([("grad", xg, rg)] if rg is not None else [])
                    for k, (what, got, ref) in enumerate(pairs):
                        ref = ref.detach().numpy().reshape(-1)
                        got = got.double().numpy().reshape(-1)
                        u = ulp(ref, dt)
                        err = np.abs(got - ref)
                        if tb is not None:
                            tv = tb[k].double().numpy().reshape(-1)
                            terr = np.abs(tv - ref)
                            bound = terr + 0.5 * u + 1e-30
                            tstat = f"{np.max(terr / u):9.2f}/{np.mean(terr / u):8.3f}"
                        else:
                            bound = u  # one ulp of the float64 result (rounded once: half)
                            tstat = f"{'-':>18}"
                        bad = np.flatnonzero(~(err <= bound * (1 + 1e-12)))
                        print(f"{op:12} {dname:5} {N:5}x{C:<5} {what:5} {np.max(err / u):9.2f}/{np.mean(err / u):8.3f}  {tstat}")
                        if bad.size:
                            i = bad[0]
                            failures.append(f"{op} {dname} {N}x{C} {what}: {bad.size} elements, e.g. [{i}] xent {got[i]!r} "
                                            f"ref {ref[i]!r} bound {bound[i]!r}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
