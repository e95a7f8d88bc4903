#!/usr/bin/python3
"""accuracy_half.py: error of xent.torch's bfloat16/float16 results, and of PyTorch 1.13's own
bfloat16 path, against PyTorch's float64 result on the same (exactly representable) 16-bit inputs,
in ulps of the 16-bit type at the reference value: max and mean over all elements, for the forward
output and, for cross_entropy, the input gradient (of sum(loss) for 'none'). Softmax and
log_softmax show the output only: their backward reads the rounded saved output, so its error is
that rounding's, the same for both. PyTorch has no CPU float16 kernels for these ops, so float16
shows xent only. Near-zero gradients (label smoothing: p - eps/C) are differences of float32
values, so a few ulps there are float32 cancellation, not rounding.

Not a test and asserts nothing (tests/python/test_half.py holds the bounds).
    PYTHONPATH=build/python /usr/bin/python3 bench/python/accuracy_half.py [--rows 512 --classes 32000]
"""
import argparse

import torch
import torch.nn.functional as F

import xent.torch as xt


def ulp(ref, dt):
    digits, min_exp = (8, -126) if dt == torch.bfloat16 else (11, -14)
    a = ref.abs()
    e = torch.floor(torch.log2(torch.where(a > 0, a, torch.ones_like(a)))).clamp(min=min_exp)
    return torch.pow(2.0, e - (digits - 1))


def errors(out, grad, ref, ref_grad, dt):
    eo = (out.double() - ref).abs() / ulp(ref, dt)
    text = f"output max {eo.max():6.2f} mean {eo.mean():.3f} ulp"
    if grad is not None:
        eg = (grad.double() - ref_grad).abs() / ulp(ref_grad, dt)
        text += f"; gradient max {eg.max():9.2f} mean {eg.mean():.3f} ulp"
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--classes", type=int, default=32000)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    N, C = args.rows, args.classes
    x64 = torch.randn(N, C, generator=g, dtype=torch.float64) * 3
    t = torch.randint(0, C, (N,), generator=g)
    ops = {
        "softmax": (lambda f, a: f.softmax(a, 1), lambda a: F.softmax(a, 1)),
        "log_softmax": (lambda f, a: f.log_softmax(a, 1), lambda a: F.log_softmax(a, 1)),
        "cross_entropy none": (lambda f, a: f.cross_entropy(a, t, reduction="none"),
                               lambda a: F.cross_entropy(a, t, reduction="none")),
        "cross_entropy mean, smoothing 0.1": (lambda f, a: f.cross_entropy(a, t, label_smoothing=0.1),
                                              lambda a: F.cross_entropy(a, t, label_smoothing=0.1)),
    }
    print(f"# {N}x{C}, inputs randn * 3 rounded to the type; errors in ulps of the type at the float64 result")
    for dt in (torch.bfloat16, torch.float16):
        x = x64.to(dt)
        for name, (ours, ref_fn) in ops.items():
            grad = name.startswith("cross_entropy")
            r = x.double().requires_grad_(grad)
            ref = ref_fn(r)
            if grad:
                ref.sum().backward()
            impls = [("xent", lambda a: ours(xt, a))]
            if dt == torch.bfloat16:
                impls.append(("torch", ref_fn))
            for impl, fn in impls:
                a = x.clone().requires_grad_(grad)
                out = fn(a)
                if grad:
                    out.sum().backward()
                print(f"{str(dt)[6:]:8s} {name:34s} {impl:5s} {errors(out.detach(), a.grad, ref.detach(), r.grad, dt)}",
                      flush=True)


if __name__ == "__main__":
    main()
