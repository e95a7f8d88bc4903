"""test_linear.py: xent.torch.linear_cross_entropy (and the NumPy xent.linear_cross_entropy)
against F.cross_entropy(F.linear(...)) with the z-loss and soft-cap written out in torch
(docs/linear_cross_entropy.md): every reduction with grad_output other than 1, class weights,
ignore_index, label smoothing, bias, int32 targets, (B, T, H) inputs, gradients of a subset of
the inputs; gradcheck in float64; a few SGD steps of a tiny LM head tracking the unfused loop in
float32; no copy of contiguous inputs; error paths. Skips when torch cannot be imported.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import xent  # noqa: E402
import xent.torch as xt  # noqa: E402
from xent import _xent  # noqa: E402

GEN = torch.Generator().manual_seed(99)


def ref_loss(h, w, t, b=None, class_weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
             lse_square_scale=0.0, softcap=0.0):
    z = F.linear(h, w, b)
    if softcap > 0:
        z = softcap * torch.tanh(z / softcap)
    ce = F.cross_entropy(z, t.long(), weight=class_weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing)
    if lse_square_scale == 0:
        return ce
    keep = (t != ignore_index).to(z.dtype)
    zl = lse_square_scale * torch.logsumexp(z, 1) ** 2 * keep
    if reduction == "none":
        return ce + zl
    if reduction == "sum":
        return ce + zl.sum()
    return ce + zl.sum() / keep.sum()


def make(N, H, V, dtype, bias):
    h = torch.randn(N, H, generator=GEN, dtype=torch.float64).to(dtype)
    w = (torch.randn(V, H, generator=GEN, dtype=torch.float64) * 0.5).to(dtype)
    b = (torch.randn(V, generator=GEN, dtype=torch.float64) * 0.1).to(dtype) if bias else None
    t = torch.randint(0, V, (N,), generator=GEN)
    return h, w, b, t


def leaf(x, dtype=None):
    return None if x is None else x.detach().clone().to(dtype or x.dtype).requires_grad_(True)


OPTIONS = [
    {},
    {"ignore_index": 3},
    {"label_smoothing": 0.1},
    {"class_weight": True, "ignore_index": -100, "label_smoothing": 0.05},
    {"softcap": 2.0},
    {"lse_square_scale": 1e-3},
    {"lse_square_scale": 1e-2, "softcap": 3.0, "ignore_index": 3},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("bias", [False, True])
def test_matches_unfused(dtype, reduction, opts, bias):
    N, H, V = 13, 8, 37
    h, w, b, t = make(N, H, V, dtype, bias)
    t[::4] = opts.get("ignore_index", -100)
    kw = dict(opts, reduction=reduction)
    if kw.get("class_weight"):
        kw["class_weight"] = (torch.rand(V, generator=GEN, dtype=torch.float64) + 0.5).to(dtype)
    snapshot = [x.clone() for x in (h, w, t) + ((b,) if bias else ())]
    hs, ws, bs = leaf(h), leaf(w), leaf(b)
    loss = xt.linear_cross_entropy(hs, ws, t.to(torch.int32) if dtype == torch.float32 else t, bs, **kw)
    kw64 = dict(kw)
    if "class_weight" in kw64:
        kw64["class_weight"] = kw64["class_weight"].double()
    h64, w64, b64 = leaf(h, torch.float64), leaf(w, torch.float64), leaf(b, torch.float64)
    ref = ref_loss(h64, w64, t, b64, **kw64)
    go = torch.rand(ref.shape, generator=GEN, dtype=torch.float64) * 2 - 0.5
    (loss * go.to(dtype)).sum().backward()
    (ref * go).sum().backward()
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-6)
    assert loss.dtype == dtype and loss.shape == ref.shape
    torch.testing.assert_close(loss.double(), ref.detach(), **tol)
    torch.testing.assert_close(hs.grad.double(), h64.grad, **tol)
    torch.testing.assert_close(ws.grad.double(), w64.grad, **tol)
    if bias:
        torch.testing.assert_close(bs.grad.double(), b64.grad, **tol)
    for x, y in zip((h, w, t) + ((b,) if bias else ()), snapshot):
        assert torch.equal(x, y)


def test_z_loss_output_and_3d_inputs():
    h, w, b, t = make(12, 6, 20, torch.float64, True)
    loss, z = xt.linear_cross_entropy(h, w, t, b, lse_square_scale=0.01, reduction="none", return_z_loss=True)
    zref = 0.01 * torch.logsumexp(F.linear(h, w, b), 1) ** 2
    torch.testing.assert_close(z, zref, rtol=1e-12, atol=1e-14)
    assert not z.requires_grad
    # (B, T, H) hidden with (B, T) targets, as a model produces them.
    hb, tb = h.reshape(3, 4, 6), t.reshape(3, 4)
    lb = xt.linear_cross_entropy(hb, w, tb, b, reduction="none")
    assert lb.shape == (3, 4)
    torch.testing.assert_close(lb, F.cross_entropy(F.linear(h, w, b), t, reduction="none").reshape(3, 4))


def test_gradient_of_a_subset_and_no_grad():
    h, w, b, t = make(9, 5, 11, torch.float64, True)
    hs = leaf(h)
    xt.linear_cross_entropy(hs, w, t, b).backward()  # weight and bias frozen
    h64 = leaf(h)
    F.cross_entropy(F.linear(h64, w, b), t).backward()
    torch.testing.assert_close(hs.grad, h64.grad, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        loss = xt.linear_cross_entropy(leaf(h), leaf(w), t)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(F.linear(h, w), t), rtol=1e-12, atol=0)


def test_gradcheck_float64():
    h, w, b, t = make(6, 4, 9, torch.float64, True)
    t[2] = -100
    cw = torch.rand(9, generator=GEN, dtype=torch.float64) + 0.5
    for reduction in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(
            lambda a, c, d: xt.linear_cross_entropy(a, c, t, d, class_weight=cw, reduction=reduction,
                                                    label_smoothing=0.1, lse_square_scale=0.01, softcap=4.0),
            (leaf(h), leaf(w), leaf(b)))


def test_sgd_loop_tracks_unfused_float32():
    torch.manual_seed(0)
    N, H, V, steps = 64, 32, 200, 8
    hidden = torch.randn(N, H)
    target = torch.randint(0, V, (N,))
    target[::7] = -100
    head_a = torch.nn.Linear(H, V, bias=True)
    head_b = torch.nn.Linear(H, V, bias=True)
    head_b.load_state_dict(head_a.state_dict())
    proj_a, proj_b = torch.nn.Linear(H, H), torch.nn.Linear(H, H)
    proj_b.load_state_dict(proj_a.state_dict())
    opt_a = torch.optim.SGD(list(head_a.parameters()) + list(proj_a.parameters()), lr=0.5)
    opt_b = torch.optim.SGD(list(head_b.parameters()) + list(proj_b.parameters()), lr=0.5)
    losses_a, losses_b = [], []
    for _ in range(steps):
        opt_a.zero_grad()
        loss_a = xt.linear_cross_entropy(torch.tanh(proj_a(hidden)), head_a.weight, target, head_a.bias,
                                         label_smoothing=0.1)
        loss_a.backward()
        opt_a.step()
        opt_b.zero_grad()
        loss_b = F.cross_entropy(head_b(torch.tanh(proj_b(hidden))), target, label_smoothing=0.1)
        loss_b.backward()
        opt_b.step()
        losses_a.append(loss_a.item())
        losses_b.append(loss_b.item())
    assert losses_a[-1] < losses_a[0] - 0.5  # it learns
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-4)
    torch.testing.assert_close(head_a.weight, head_b.weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(proj_a.weight, proj_b.weight, rtol=1e-4, atol=1e-5)


def test_modules():
    h, w, b, t = make(10, 6, 15, torch.float32, True)
    loss_fn = xt.nn.LinearCrossEntropyLoss(ignore_index=2, label_smoothing=0.1)
    torch.testing.assert_close(loss_fn(h, w, t, b), F.cross_entropy(F.linear(h, w, b), t, ignore_index=2,
                                                                  label_smoothing=0.1))
    head = xt.nn.LinearCrossEntropy(6, 15, bias=True, reduction="sum")
    assert head.weight.shape == (15, 6) and head.bias.shape == (15,)
    torch.testing.assert_close(head(h, t), F.cross_entropy(F.linear(h, head.weight, head.bias), t, reduction="sum"))


def test_numpy_api_and_no_copy():
    h, w, b, t = make(8, 5, 12, torch.float32, True)
    hn, wn, bn, tn = h.numpy(), w.numpy(), b.numpy(), t.numpy()
    loss, z, (dh, dw, db) = xent.linear_cross_entropy(hn, wn, tn, bn, return_z_loss=True, return_grad=True,
                                                      lse_square_scale=0.0)
    seen = dict(_xent._last_input_pointers())
    assert seen["input"] == hn.ctypes.data and seen["weight"] == wn.ctypes.data and seen["bias"] == bn.ctypes.data
    assert seen["target"] == tn.ctypes.data
    assert z == 0
    hs, ws, bs = leaf(h), leaf(w), leaf(b)
    ref = F.cross_entropy(F.linear(hs, ws, bs), t)
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=2e-6)
    np.testing.assert_allclose(dh, hs.grad.numpy(), rtol=2e-5, atol=2e-7)
    np.testing.assert_allclose(dw, ws.grad.numpy(), rtol=2e-5, atol=2e-7)
    np.testing.assert_allclose(db, bs.grad.numpy(), rtol=2e-5, atol=2e-7)
    # torch: the views handed to C++ are the tensors' own storage.
    hl = leaf(h)
    xt.linear_cross_entropy(hl, w, t, b)
    seen = dict(_xent._last_input_pointers())
    assert seen["input"] == hl.data_ptr() and seen["weight"] == w.data_ptr() and seen["target"] == t.data_ptr()


H_, W_, T_ = torch.zeros(4, 3), torch.zeros(5, 3), torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize("call, exc, message", [
    (lambda: xt.linear_cross_entropy(H_.half(), W_, T_), TypeError,
     "weight must have the input's dtype float16, found float32"),
    (lambda: xt.linear_cross_entropy(H_, W_.bfloat16(), T_), TypeError,
     "weight must have the input's dtype float32, found bfloat16"),
    (lambda: xt.linear_cross_entropy(H_.int(), W_, T_), TypeError,
     "input must be float32, float64, bfloat16 or float16, found int32"),
    (lambda: xt.linear_cross_entropy(H_, W_.double(), T_), TypeError,
     "weight must have the input's dtype float32, found float64"),
    (lambda: xt.linear_cross_entropy(H_, W_, T_.float()), TypeError, "target must be int32 or int64, found float32"),
    (lambda: xt.linear_cross_entropy(H_, torch.zeros(5, 4), T_), ValueError, "weight"),
    (lambda: xt.linear_cross_entropy(H_, W_, torch.tensor([0, 1, 2, 5])), ValueError, "5"),
    (lambda: xt.linear_cross_entropy(H_, W_, T_, torch.zeros(4)), ValueError, "bias"),
    (lambda: xt.linear_cross_entropy(H_, W_, T_, softcap=-1.0), ValueError, "softcap"),
    (lambda: xt.linear_cross_entropy(H_, W_, T_, lse_square_scale=float("nan")), ValueError, "lse_square_scale"),
    (lambda: xt.linear_cross_entropy(H_, W_, T_, reduction="mean2"), ValueError, "reduction must be"),
    (lambda: xt.linear_cross_entropy(H_.to("meta"), W_, T_), TypeError, "CPU tensor"),
])
def test_errors(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert message in str(info.value), str(info.value)
