"""test_grad_in_forward.py: xent.torch.cross_entropy's default autograd path (grad_in_forward=True:
loss and gradient in one fused call during forward, only the gradient kept, scaled by grad_output
in backward) against torch.nn.functional and against the path that keeps the input
(grad_in_forward=False): what the graph keeps (no reference to the input; it is freed), that the
gradient buffer is xent's own and handed over without a copy, grad_output scaling (scalar,
per-row, the expanded ones of loss.sum(), inf/NaN on ignored rows), backward twice
(retain_graph: a RuntimeError naming the option, and the other path giving PyTorch's result), and
that no fused call runs under torch.no_grad / inference_mode or for an input without
requires_grad. The option-by-option comparison with PyTorch for both paths is in
test_torch_api.py (test_cross_entropy). Skips when torch cannot be imported.
"""
import gc
import weakref

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import xent.torch as xt  # noqa: E402
from xent import _xent  # noqa: E402

GEN = torch.Generator().manual_seed(99)


def randn(*shape, dtype=torch.float64, scale=3.0):
    return (torch.randn(*shape, generator=GEN, dtype=torch.float64) * scale).to(dtype)


@pytest.fixture
def calls(monkeypatch):
    """Records (want_grad, grad pointer or None) of every _xent.cross_entropy call."""
    seen = []
    real = _xent.cross_entropy

    def spy(*args):
        loss, grad = real(*args)
        seen.append((args[6], None if grad is None else grad.ctypes.data))
        return loss, grad

    monkeypatch.setattr(_xent, "cross_entropy", spy)
    return seen


def test_graph_keeps_only_the_gradient_and_frees_the_input():
    t = torch.tensor([0, 4, -100, 3, 1, 2])
    for gif in (True, False):
        leaf = randn(6, 5).requires_grad_(True)
        x = leaf * 2.0  # an intermediate, as a model's logits are (mul by a number saves nothing)
        loss = xt.cross_entropy(x, t, grad_in_forward=gif)
        saved = loss.grad_fn.saved_tensors
        ref = weakref.ref(x)
        del x
        gc.collect()
        if gif:
            assert len(saved) == 1 and torch.equal(saved[0], t)  # the target only
            assert ref() is None  # the logits are gone before backward
            assert loss.grad_fn.dx.shape == (6, 5)
        else:
            assert ref() is not None  # backward reads them again
        loss.backward()
        lf = leaf.detach().clone().requires_grad_(True)
        F.cross_entropy(lf * 2.0, t).backward()
        torch.testing.assert_close(leaf.grad, lf.grad, rtol=1e-12, atol=1e-14)


def test_gradient_buffer_is_handed_over_scaled_in_place(calls):
    x = randn(16, 9, dtype=torch.float32).requires_grad_(True)
    t = torch.randint(0, 9, (16,), generator=GEN)
    before = x.detach().clone()
    loss = xt.cross_entropy(x, t, label_smoothing=0.1)
    assert len(calls) == 1 and calls[0][0] is True  # one fused call in forward
    (loss * 2.5).backward()
    assert len(calls) == 1  # backward called no kernel
    assert x.grad.data_ptr() == calls[0][1]  # xent's buffer, not a copy
    assert torch.equal(x.detach(), before)
    ref = x.detach().double().requires_grad_(True)
    (F.cross_entropy(ref, t, label_smoothing=0.1) * 2.5).backward()
    torch.testing.assert_close(x.grad.double(), ref.grad, rtol=3e-6, atol=3e-7)


def test_no_fused_call_when_no_gradient_is_needed(calls):
    x = randn(8, 7, dtype=torch.float32)
    t = torch.randint(0, 7, (8,), generator=GEN)
    ref = F.cross_entropy(x, t)
    torch.testing.assert_close(xt.cross_entropy(x, t), ref)  # input without requires_grad
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        out = xt.cross_entropy(xg, t)
    assert out.grad_fn is None
    torch.testing.assert_close(out, ref)
    with torch.inference_mode():
        torch.testing.assert_close(xt.cross_entropy(xg, t), ref)
    xt.cross_entropy(xg, t, grad_in_forward=False)
    assert [c[0] for c in calls] == [False, False, False, False]
    xt.cross_entropy(xg, t)
    assert calls[-1][0] is True


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_backward_twice(reduction):
    x = randn(6, 5).requires_grad_(True)
    t = torch.tensor([0, 4, -100, 3, 1, 2])
    loss = xt.cross_entropy(x, t, reduction=reduction).sum()
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    with pytest.raises(RuntimeError, match="grad_in_forward=False"):
        loss.backward()
    assert torch.equal(x.grad, first)  # the failed second backward added nothing
    ref = x.detach().clone().requires_grad_(True)
    F.cross_entropy(ref, t, reduction=reduction).sum().backward()
    torch.testing.assert_close(first, ref.grad, rtol=1e-12, atol=1e-14)
    # grad_in_forward=False backs through the call any number of times, as PyTorch does.
    x.grad = None
    crit = xt.nn.CrossEntropyLoss(reduction=reduction, grad_in_forward=False)
    loss = crit(x, t).sum()
    loss.backward(retain_graph=True)
    loss.backward(retain_graph=True)
    (g,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(x.grad, 2 * ref.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g, ref.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("gif", [True, False])
def test_nonfinite_grad_output_leaves_ignored_rows_zero(gif):
    # As in PyTorch, an ignored row's gradient is 0 whatever its grad_output; a kept row's with an
    # inf or NaN grad_output is not finite (PyTorch's exact mix of inf and NaN there comes from
    # its log_softmax composition and is not compared).
    x = randn(5, 4)
    t = torch.tensor([1, -100, 3, -100, 0])
    nan, inf = float("nan"), float("inf")
    cases = [("none", [1.0, nan, 0.5, -inf, 2.0], True), ("none", [1.0, inf, nan, 3.0, 2.0], False),
             ("mean", nan, False), ("sum", inf, False)]
    for reduction, go, kept_finite in cases:
        go = torch.tensor(go, dtype=torch.float64)
        for smoothing in (0.0, 0.2):
            a = x.clone().requires_grad_(True)
            go_before = go.clone()
            xt.cross_entropy(a, t, reduction=reduction, label_smoothing=smoothing, grad_in_forward=gif).backward(go)
            assert torch.allclose(go, go_before, equal_nan=True)  # the caller's grad_output untouched
            b = x.clone().requires_grad_(True)
            F.cross_entropy(b, t, reduction=reduction, label_smoothing=smoothing).backward(go)
            assert torch.equal(a.grad[1], torch.zeros(4)) and torch.equal(a.grad[3], torch.zeros(4))
            assert torch.equal(b.grad[1], torch.zeros(4)) and torch.equal(b.grad[3], torch.zeros(4))
            kept = [0, 2, 4]
            if kept_finite:
                torch.testing.assert_close(a.grad[kept], b.grad[kept], rtol=1e-12, atol=1e-14)
            else:
                bad = ~torch.isfinite(a.grad[kept]).all(1)
                assert torch.equal(bad, ~torch.isfinite(b.grad[kept]).all(1)) and bad.any()


@pytest.mark.parametrize("shape", [(7,), (6, 5), (3, 4, 2, 3)])
def test_none_reduced_afterwards(shape):
    # loss.sum() / loss.mean() send back an expanded grad_output (stride 0), not a tensor of ones.
    x = randn(*shape)
    C = shape[0] if len(shape) == 1 else shape[1]
    t = torch.randint(0, C, () if len(shape) == 1 else shape[:1] + shape[2:], generator=GEN)
    for post in (torch.sum, torch.mean, lambda v: (v * 3).sum()):
        a = x.clone().requires_grad_(True)
        post(xt.cross_entropy(a, t, reduction="none")).backward()
        b = x.clone().requires_grad_(True)
        post(F.cross_entropy(b, t, reduction="none")).backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)


def test_non_contiguous_input():
    xs = randn(9, 12).t().requires_grad_(True)
    t = torch.randint(0, 9, (12,), generator=GEN)
    (xt.cross_entropy(xs, t, reduction="none") * torch.arange(12.0, dtype=torch.float64)).sum().backward()
    ref = xs.detach().clone().requires_grad_(True)
    (F.cross_entropy(ref, t, reduction="none") * torch.arange(12.0, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(xs.grad, ref.grad, rtol=1e-12, atol=1e-14)
