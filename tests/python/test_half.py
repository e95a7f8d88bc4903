"""test_half.py: bfloat16 and float16 through the Python module (NumPy float16 arrays, xent.bfloat16
views) and xent.torch (torch.bfloat16 / torch.float16 CPU tensors): softmax, log_softmax,
logsumexp, cross_entropy with every option, nll_loss, binary_cross_entropy(_with_logits), forward
and backward.

Oracle: inputs drawn in float64 and rounded once to the 16-bit type; PyTorch's float64 result on
those exact values (the loss, and the gradient for a grad_output itself rounded to the type) is the
reference. Each xent value must be within one ulp of the type of the reference (the core computes
in float32 or wider and rounds once; its SIMD float32 arithmetic may land on the neighbour), plus
an absolute slack of 2^-21 x the largest reference value for float32 cancellation near zero. The
fused default path of cross_entropy rounds the gradient in forward and once more when backward
multiplies it by a grad_output other than 1: two ulps there. In bfloat16 xent's error must also be
no larger than PyTorch 1.13's own bfloat16 path's, element by element (or within that ulp).
PyTorch has no CPU float16 kernels for these ops, so float16 has the float64 oracle only. Also:
outputs keep the input's dtype, no copy of contiguous 16-bit inputs, inputs bit-identical
afterwards. linear_cross_entropy in 16 bits against PyTorch's float32 computation on the same
values (within the 16-bit rounding). Skips when torch cannot be imported.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import xent  # noqa: E402
import xent.torch as xt  # noqa: E402
from xent import _xent  # noqa: E402

GEN = torch.Generator().manual_seed(1616)
HALF = [torch.bfloat16, torch.float16]
IDS = ["bf16", "f16"]


def ulp(ref, dt):
    """Spacing of dt at |ref| (the subnormal spacing below the normal range), float64."""
    digits, min_exp = (8, -126) if dt == torch.bfloat16 else (11, -14)
    a = ref.abs()
    e = torch.floor(torch.log2(torch.where(a > 0, a, torch.ones_like(a)))).clamp(min=min_exp)
    return torch.pow(2.0, e - (digits - 1))


def check(ours, ref64, dt, theirs=None, ulps=1.0, what=""):
    """ours (dtype dt) within `ulps` ulps of ref64 (+ slack); in bfloat16 also no worse than theirs."""
    assert ours.dtype == dt and ours.shape == ref64.shape, (what, ours.dtype, ours.shape, ref64.shape)
    o, r = ours.double(), ref64.double()
    nan = torch.isnan(r)
    assert torch.equal(torch.isnan(o), nan), what
    o, r = o[~nan], r[~nan]
    if r.numel() == 0:
        return
    slack = 2.0 ** -21 * r.abs().max()
    err, u = (o - r).abs(), ulp(r, dt)
    bad = err > ulps * u + slack
    assert not bad.any(), f"{what}: {int(bad.sum())} of {r.numel()} beyond {ulps} ulp, worst " \
                          f"{float(((err - slack) / u).max()):.2f} ulp"
    if theirs is not None:
        t = theirs.double()[~nan]
        worse = err > torch.maximum((t - r).abs(), ulps * u) + slack
        assert not worse.any(), f"{what}: {int(worse.sum())} elements less accurate than PyTorch's bfloat16"


def draw(*shape, dt, scale=3.0):
    return (torch.randn(*shape, generator=GEN, dtype=torch.float64) * scale).to(dt)


def compare(ours_fn, ref_fn, inputs, dt, grad=True, grad_ulps=1.0, what="", ref_grad=None):
    """Runs ours in dt, the reference in float64 on the same (exactly representable) values, and
    PyTorch's own dt path where it exists (bfloat16); compares loss/output and input gradient.
    ref_grad(x64, out, go64), when given, is the float64 reference gradient from ours's rounded
    output `out` (softmax and logsumexp backward read their saved output, as in PyTorch)."""
    before = [t.clone() for t in inputs]
    xs = inputs[0].clone().requires_grad_(grad)
    out = ours_fn(xs, *inputs[1:])
    x64 = inputs[0].double().requires_grad_(grad)
    rest64 = [t.double() if t.is_floating_point() else t for t in inputs[1:]]
    ref = ref_fn(x64, *rest64)
    theirs, xb = None, None
    if dt == torch.bfloat16:
        xb = inputs[0].clone().requires_grad_(grad)
        theirs = ref_fn(xb, *inputs[1:])
    check(out.detach(), ref.detach(), dt, None if theirs is None else theirs.detach(), what=what + " output")
    if grad:
        go = (torch.rand(ref.shape, generator=GEN, dtype=torch.float64) * 3 - 1).to(dt)
        (out * go).sum().backward() if out.dim() else out.backward(go)
        (ref * go.double()).sum().backward()
        ref_dx = x64.grad if ref_grad is None else ref_grad(x64.detach(), out.detach().double(), go.double())
        if theirs is not None:
            (theirs * go).sum().backward() if theirs.dim() else theirs.backward(go)
        check(xs.grad, ref_dx, dt, None if xb is None else xb.grad, ulps=grad_ulps, what=what + " gradient")
    for a, b in zip(inputs, before):
        assert torch.equal(a.view(torch.int16) if a.dtype in HALF else a, b.view(torch.int16) if b.dtype in HALF else b)


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("shape, dim", [((9, 33), 1), ((4, 1000), -1), ((6, 5, 3), 1), ((5, 7), 0)])
def test_softmax_family(dt, shape, dim):
    x = draw(*shape, dt=dt)
    # Backward reads the saved 16-bit output y (as PyTorch's does), so its reference is the
    # backward formula in float64 on that y.
    compare(lambda a: xt.softmax(a, dim), lambda a: F.softmax(a, dim), [x], dt, what="softmax",
            ref_grad=lambda x64, y, g: y * (g - (g * y).sum(dim, keepdim=True)))
    compare(lambda a: xt.log_softmax(a, dim), lambda a: F.log_softmax(a, dim), [x], dt, what="log_softmax",
            ref_grad=lambda x64, y, g: g - y.exp() * g.sum(dim, keepdim=True))
    compare(lambda a: xt.logsumexp(a, dim), lambda a: torch.logsumexp(a, dim), [x], dt, what="logsumexp",
            ref_grad=lambda x64, y, g: g.unsqueeze(dim) * (x64 - y.unsqueeze(dim)).exp())


VARIANTS = ["plain", "weight", "ignore", "smooth", "weight_ignore_smooth", "prob", "prob_weight_smooth", "int32"]


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("shape", [(8, 37), (3, 1000), (4, 6, 3)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("gif", [True, False], ids=["grad_in_forward", "grad_in_backward"])
def test_cross_entropy(dt, shape, reduction, variant, gif):
    x = draw(*shape, dt=dt)
    C = shape[1]
    tshape = shape[:1] + shape[2:]
    kw = {"reduction": reduction}
    if variant.startswith("prob"):
        t = torch.softmax(draw(*shape, dt=torch.float64), 1).to(dt)
    else:
        t = torch.randint(0, C, tshape, generator=GEN)
    if "weight" in variant:
        kw["weight"] = (torch.rand(C, generator=GEN, dtype=torch.float64) + 0.2).to(dt)
    if "ignore" in variant:
        t = torch.where(torch.rand(tshape, generator=GEN) < 0.3, torch.full_like(t, -7), t)
        kw["ignore_index"] = -7
    if "smooth" in variant:
        kw["label_smoothing"] = 0.2
    t_ours = t.to(torch.int32) if variant == "int32" else t

    def ours(a, t_):
        return xt.cross_entropy(a, t_ours if variant == "int32" else t_, grad_in_forward=gif, **kw)

    def ref(a, t_):
        k = dict(kw)
        if "weight" in k:
            k["weight"] = k["weight"].to(a.dtype)
        return F.cross_entropy(a, t_.to(a.dtype) if t_.is_floating_point() else t_, **k)

    # grad_in_forward rounds the gradient in forward, and again when it scales it by grad_output.
    compare(ours, ref, [x, t], dt, grad_ulps=2.0 if gif else 1.0, what=f"cross_entropy {variant}")


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_nll_and_bce(dt, reduction):
    lp = torch.log_softmax(draw(5, 4, 3, dt=torch.float64), 1).to(dt)
    t = torch.randint(0, 4, (5, 3), generator=GEN)
    t[0, 0] = -100
    w = (torch.rand(4, generator=GEN, dtype=torch.float64) + 0.5).to(dt)
    compare(lambda a, b: xt.nll_loss(a, b, w, reduction=reduction),
            lambda a, b: F.nll_loss(a, b, w.to(a.dtype), reduction=reduction), [lp, t], dt, what="nll_loss")
    z = draw(6, 9, dt=dt)
    y = torch.rand(6, 9, generator=GEN, dtype=torch.float64).to(dt)
    bw = (torch.rand(6, 1, generator=GEN, dtype=torch.float64) + 0.5).to(dt)
    pw = (torch.rand(9, generator=GEN, dtype=torch.float64) * 3).to(dt)
    compare(lambda a, b: xt.binary_cross_entropy_with_logits(a, b, bw, reduction=reduction, pos_weight=pw),
            lambda a, b: F.binary_cross_entropy_with_logits(a, b, bw.to(a.dtype), reduction=reduction,
                                                            pos_weight=pw.to(a.dtype)),
            [z, y], dt, what="bce_with_logits")
    # binary_cross_entropy on probabilities: PyTorch 1.13 has no bfloat16 kernel for it, so the
    # float64 oracle only.
    p = (torch.rand(6, 9, generator=GEN, dtype=torch.float64) * 0.98 + 0.01).to(dt)
    ps = p.clone().requires_grad_(True)
    out = xt.binary_cross_entropy(ps, y, bw, reduction=reduction)
    p64 = p.double().requires_grad_(True)
    ref = F.binary_cross_entropy(p64, y.double(), bw.double(), reduction=reduction)
    check(out.detach(), ref.detach(), dt, what="bce")
    go = (torch.rand(ref.shape, generator=GEN, dtype=torch.float64) + 0.5).to(dt)
    out.backward(go)
    ref.backward(go.double())
    check(ps.grad, p64.grad, dt, what="bce gradient")


@pytest.mark.parametrize("dt, npdt", [(torch.float16, np.float16), (torch.bfloat16, xent.bfloat16)], ids=IDS[::-1])
def test_numpy_api_matches_torch_api_bit_for_bit(dt, npdt):
    x = draw(16, 50, dt=dt)
    t = torch.randint(0, 50, (16,), generator=GEN)
    t[3] = -100
    xn = x.view(torch.int16).numpy().view(npdt)
    assert xn.dtype == npdt

    def bits(a):
        assert a.dtype == npdt, (a.dtype, npdt)
        return torch.from_numpy(a.view(np.int16))

    def tbits(t_):
        return t_.detach().view(torch.int16)

    for f_np, f_t in [(lambda a: xent.softmax(a, 1), lambda a: xt.softmax(a, 1)),
                      (lambda a: xent.log_softmax(a, 0), lambda a: xt.log_softmax(a, 0)),
                      (lambda a: xent.logsumexp(a, 1), lambda a: xt.logsumexp(a, 1))]:
        assert torch.equal(bits(f_np(xn)), tbits(f_t(x)))
    loss, grad = xent.cross_entropy(xn, t.numpy(), label_smoothing=0.1, return_grad=True)
    xg = x.clone().requires_grad_(True)
    tl = xt.cross_entropy(xg, t, label_smoothing=0.1)
    tl.backward()
    assert loss.shape == () and torch.equal(bits(loss), tbits(tl)) and torch.equal(bits(grad), tbits(xg.grad))
    go = draw(16, dt=dt)
    loss, grad = xent.cross_entropy(xn, t.numpy(), reduction="none", return_grad=True,
                                    grad_output=go.view(torch.int16).numpy().view(npdt))
    xg = x.clone().requires_grad_(True)
    tl = xt.cross_entropy(xg, t, reduction="none", grad_in_forward=False)
    tl.backward(go)
    assert torch.equal(bits(loss), tbits(tl)) and torch.equal(bits(grad), tbits(xg.grad))
    # no grad_output: the module makes ones of the dtype (1.0's bits, not the integer 1)
    nl, ng = xent.nll_loss(xn, t.numpy(), reduction="none", return_grad=True)
    ref = torch.zeros(16, 50)
    ref[torch.arange(16), t.clamp(min=0)] = -1.0
    ref[3] = 0
    assert torch.equal(bits(ng), ref.to(dt).view(torch.int16))


@pytest.mark.parametrize("dt", HALF, ids=IDS)
def test_no_copy_and_dtypes(dt):
    x = draw(8, 10, dt=dt).requires_grad_(True)
    t = torch.randint(0, 10, (8,), generator=GEN)
    w = (torch.rand(10, generator=GEN) + 0.5).to(dt)
    loss = xt.cross_entropy(x, t, w)
    seen = dict(_xent._last_input_pointers())
    assert seen["input"] == x.data_ptr() and seen["weight"] == w.data_ptr()
    assert loss.dtype == dt
    loss.backward()
    assert x.grad.dtype == dt and x.grad.data_ptr() != x.data_ptr()
    y = xt.softmax(x.detach(), 1)
    assert y.dtype == dt and _xent._last_input_pointers()[0][1] == x.data_ptr()


@pytest.mark.parametrize("dt", HALF, ids=IDS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_linear_cross_entropy_16_bit(dt, reduction):
    # 16-bit input, weight, bias and class weights (xent's core widens them by blocks into its
    # float32 products and rounds each result once): the loss and every gradient in dt, within one
    # ulp of dt (+ slack) of PyTorch's float32 computation on the same values. grad_output is not 1:
    # 'mean'/'sum' scale the gradients computed in forward by it (a second rounding: two ulps),
    # 'none' calls the fused op again with the per-token grad_output.
    N, H, V = 29, 24, 300
    h, W, b = draw(N, H, dt=dt, scale=1.0), draw(V, H, dt=dt, scale=0.3), draw(V, dt=dt, scale=0.1)
    cw = (torch.rand(V, generator=GEN, dtype=torch.float64) + 0.5).to(dt)
    t = torch.randint(0, V, (N,), generator=GEN)
    t[::7] = -100
    g = draw(N, dt=dt, scale=1.0) if reduction == "none" else torch.tensor(0.75, dtype=dt)
    before = [x.clone() for x in (h, W, b, cw)]
    hs, Ws, bs = (x.clone().requires_grad_(True) for x in (h, W, b))
    loss = xt.linear_cross_entropy(hs, Ws, t, bs, class_weight=cw, reduction=reduction, label_smoothing=0.1)
    assert loss.dtype == dt
    loss.backward(g)
    h32, W32, b32 = (x.float().requires_grad_(True) for x in (h, W, b))
    ref = F.cross_entropy(F.linear(h32, W32, b32), t, weight=cw.float(), reduction=reduction, label_smoothing=0.1)
    ref.backward(g.float())
    check(loss, ref.detach(), dt, what="loss")
    ulps = 1.0 if reduction == "none" else 2.0
    for ours, theirs, what in ((hs, h32, "dinput"), (Ws, W32, "dweight"), (bs, b32, "dbias")):
        assert ours.grad.dtype == dt, what
        check(ours.grad, theirs.grad, dt, ulps=ulps, what=what)
    for x, x0 in zip((h, W, b, cw), before):
        assert torch.equal(x.view(torch.int16), x0.view(torch.int16))
    if dt == torch.float16:  # the NumPy API: the same call, the same bits
        ln, (dh, dw, db) = xent.linear_cross_entropy(h.numpy(), W.numpy(), t.numpy(), b.numpy(), class_weight=cw.numpy(),
                                                     reduction=reduction, label_smoothing=0.1, return_grad=True,
                                                     grad_output=g.numpy())
        assert ln.dtype == np.float16 and dw.dtype == np.float16
        if reduction == "none":
            assert np.array_equal(ln.view(np.int16), loss.detach().numpy().view(np.int16))
            assert np.array_equal(dw.view(np.int16), Ws.grad.numpy().view(np.int16))


def test_numpy_non_contiguous_16_bit_is_made_contiguous_once():
    for npdt, dt in ((np.float16, torch.float16), (xent.bfloat16, torch.bfloat16)):
        x = draw(12, 40, dt=dt)
        xn = x.view(torch.int16).numpy().view(npdt)
        strided = xn[:, ::2]  # a view with a column stride: copied once, keeping the dtype (and its tag)
        assert not strided.flags.c_contiguous
        a = xent.log_softmax(strided, 1)
        b = xent.log_softmax(np.ascontiguousarray(strided), 1)
        assert a.dtype == npdt and np.array_equal(a.view(np.int16), b.view(np.int16))
        ref = torch.log_softmax(x[:, ::2].double(), 1)
        check(torch.from_numpy(a.view(np.int16)).view(dt), ref, dt, what="strided log_softmax")


def test_autocast_runs_losses_in_float32_as_pytorch_does():
    # Under torch.autocast("cpu", bfloat16) PyTorch's losses cast 16-bit arguments to float32 and
    # return float32; softmax, log_softmax and logsumexp keep the input's dtype. xent.torch does the
    # same, and the gradient reaches the bfloat16 input through the cast, in bfloat16.
    x0 = draw(6, 11, dt=torch.bfloat16)
    t = torch.tensor([0, 3, -100, 10, 2, 2])
    y = torch.rand(6, 11, generator=GEN).to(torch.bfloat16)
    w = (torch.rand(11, generator=GEN) + 0.5).to(torch.bfloat16)
    h, W = draw(6, 4, dt=torch.bfloat16), draw(11, 4, dt=torch.float32, scale=0.5)
    def like(v, a):  # the argument in the dtype of a (a no-op but for the float64 reference)
        return v.to(a.dtype)

    calls = [
        (lambda a: xt.cross_entropy(a, t, w, label_smoothing=0.1),
         lambda a: F.cross_entropy(a, t, like(w, a), label_smoothing=0.1)),
        (lambda a: xt.cross_entropy(a, torch.softmax(y.float(), 1).bfloat16()),
         lambda a: F.cross_entropy(a, like(torch.softmax(y.float(), 1).bfloat16(), a))),
        (lambda a: xt.nll_loss(a, t, w), lambda a: F.nll_loss(a, t, like(w, a))),
        (lambda a: xt.binary_cross_entropy_with_logits(a, y, pos_weight=w),
         lambda a: F.binary_cross_entropy_with_logits(a, like(y, a), pos_weight=like(w, a))),
        (lambda a: xt.binary_cross_entropy(a, y), lambda a: F.binary_cross_entropy(a, like(y, a))),
        (lambda a: xt.softmax(a, 1), lambda a: F.softmax(a, 1)),
        (lambda a: xt.logsumexp(a, 1), lambda a: torch.logsumexp(a, 1)),
    ]
    lp = torch.log_softmax(x0.float(), 1).bfloat16()  # inputs of nll_loss and binary_cross_entropy
    p = torch.sigmoid(x0.float()).bfloat16()
    for i, (ours, theirs) in enumerate(calls):
        x = lp if i == 2 else p if i == 4 else x0
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lo, lt = ours(a), theirs(b)
        assert lo.dtype == lt.dtype, (lo.dtype, lt.dtype)
        lo.sum().backward()
        lt.sum().backward()
        assert a.grad.dtype == torch.bfloat16
        if lo.dtype == torch.float32:  # against the float64 loss of the same bfloat16 values
            c = x.double().requires_grad_(True)
            ref = theirs(c)
            ref.sum().backward()
            torch.testing.assert_close(lo.double(), ref.detach(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a.grad.double(), c.grad.to(torch.bfloat16).double(), rtol=1e-2, atol=1e-4)
    hh = h.clone().requires_grad_(True)
    Wg = W.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = xt.linear_cross_entropy(hh, Wg, t)
        ref_dtype = F.cross_entropy(F.linear(h, W), t).dtype
    assert loss.dtype == ref_dtype == torch.float32
    loss.backward()
    assert hh.grad.dtype == torch.bfloat16 and Wg.grad.dtype == torch.float32
    h64, W64 = h.double().requires_grad_(True), W.double().requires_grad_(True)
    ref = F.cross_entropy(F.linear(h64, W64), t)
    ref.backward()
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(Wg.grad.double(), W64.grad, rtol=1e-5, atol=1e-6)
    # Outside autocast a 16-bit input stays 16-bit.
    assert xt.cross_entropy(x0, t).dtype == torch.bfloat16
    assert xt.linear_cross_entropy(h, W.bfloat16(), t).dtype == torch.bfloat16
