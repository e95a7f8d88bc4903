"""test_torch_api.py: xent.torch's autograd drop-ins against torch.nn.functional: every option of
cross_entropy (reductions, class weights, ignore_index, label smoothing, probability targets,
(N, C, d1, ...) shapes, int32/int64 targets), nll_loss, bce(_with_logits), softmax/log_softmax,
forward and backward in float32 and float64 with grad_output other than 1 and reduction='none'
with ignored rows; torch.autograd.gradcheck in float64; nn.Module forms; inputs left bit-identical
and not copied when contiguous (data_ptr through the module's debug hook); concurrent calls from
Python threads; every error path. Skips when torch cannot be imported.
"""
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import xent.torch as xt  # noqa: E402
from xent import _xent  # noqa: E402

GEN = torch.Generator().manual_seed(4321)


def randn(*shape, dtype=torch.float64, scale=3.0):
    return (torch.randn(*shape, generator=GEN, dtype=torch.float64) * scale).to(dtype)


def assert_close(ours, ref, dtype):
    assert ours.dtype == dtype and ours.shape == ref.shape
    if dtype == torch.float64:
        torch.testing.assert_close(ours, ref.to(dtype), rtol=1e-11, atol=1e-13, equal_nan=True)
    else:
        torch.testing.assert_close(ours.double(), ref.double(), rtol=3e-6, atol=3e-6, equal_nan=True)


def run_both(ours_fn, ref_fn, inputs, grad_index, dtype):
    """Forward + backward with a random grad_output through both; compares loss and gradient
    (ours in dtype, torch in float64), and that no input changed."""
    before = [t.clone() if isinstance(t, torch.Tensor) else t for t in inputs]
    x = inputs[grad_index].detach().clone().requires_grad_(True)
    ours_in = list(inputs)
    ours_in[grad_index] = x
    loss = ours_fn(*ours_in)
    x64 = inputs[grad_index].detach().double().clone().requires_grad_(True)
    ref_in = [t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs]
    ref_in[grad_index] = x64
    ref = ref_fn(*ref_in)
    assert_close(loss.detach(), ref.detach(), dtype)
    go = torch.rand(ref.shape, generator=GEN, dtype=torch.float64) * 3 - 1
    (loss * go.to(dtype)).sum().backward()
    (ref * go).sum().backward()
    assert_close(x.grad, x64.grad, dtype)
    for a, b in zip(inputs, before):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
    return loss, x.grad


SHAPES = [(7,), (6, 5), (4, 3, 5), (2, 4, 3, 2)]
VARIANTS = ["plain", "weight", "ignore", "smooth", "weight_ignore_smooth", "prob", "prob_weight_smooth", "int32",
            "none_kept"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("gif", [True, False], ids=["grad_in_forward", "grad_in_backward"])
def test_cross_entropy(dtype, shape, reduction, variant, gif):
    x = randn(*shape, dtype=dtype)
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else shape[:1] + shape[2:]
    kw = {"reduction": reduction}
    if variant.startswith("prob"):
        t = torch.softmax(randn(*shape), 0 if len(shape) == 1 else 1).to(dtype)
    else:
        t = torch.randint(0, C, tshape, generator=GEN)
    if "weight" in variant:
        kw["weight"] = (torch.rand(C, generator=GEN, dtype=torch.float64) + 0.2).to(dtype)
    if "ignore" in variant:
        t = torch.where(torch.rand(tshape, generator=GEN) < 0.3, torch.full_like(t, -7), t)
        kw["ignore_index"] = -7
    if variant == "none_kept":
        t = torch.full(tshape, -100, dtype=torch.int64)
    if "smooth" in variant:
        kw["label_smoothing"] = 0.2
    t_ours = t.to(torch.int32) if variant == "int32" else t

    def ours(x_, t_):
        return xt.cross_entropy(x_, t_ours if t_ is t else t_, grad_in_forward=gif, **kw)

    def ref(x_, t_):
        kw64 = dict(kw)
        if "weight" in kw64:
            kw64["weight"] = kw64["weight"].double()
        return F.cross_entropy(x_, t_.double() if t_.is_floating_point() else t_, **kw64)

    if variant == "none_kept" and reduction == "mean":  # NaN, as in PyTorch, with a zero gradient
        x_ = x.clone().requires_grad_(True)
        loss = xt.cross_entropy(x_, t, grad_in_forward=gif, **kw)
        loss.backward()
        assert torch.isnan(loss) and torch.equal(x_.grad, torch.zeros_like(x))
        return
    run_both(ours, ref, [x, t], 0, dtype)


@pytest.mark.parametrize("gif", [True, False])
def test_none_with_ignored_rows_scales_each_row(gif):
    x = randn(8, 6)
    t = torch.tensor([0, -100, 2, 3, -100, 5, 1, 0])
    go = torch.arange(8, dtype=torch.float64) - 3.0
    xa = x.clone().requires_grad_(True)
    (xt.cross_entropy(xa, t, reduction="none", label_smoothing=0.1, grad_in_forward=gif) * go).sum().backward()
    xb = x.clone().requires_grad_(True)
    (F.cross_entropy(xb, t, reduction="none", label_smoothing=0.1) * go).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-14)
    assert torch.equal(xa.grad[1], torch.zeros(6)) and torch.equal(xa.grad[4], torch.zeros(6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_nll_and_bce(dtype, reduction):
    x = torch.log_softmax(randn(5, 4, 3), 1).to(dtype)
    t = torch.randint(0, 4, (5, 3), generator=GEN)
    t[0, 0] = -100
    w = (torch.rand(4, generator=GEN, dtype=torch.float64) + 0.5).to(dtype)
    run_both(lambda a, b: xt.nll_loss(a, b, w, reduction=reduction),
             lambda a, b: F.nll_loss(a, b, w.double(), reduction=reduction), [x, t], 0, dtype)
    p = (torch.rand(5, 4, generator=GEN, dtype=torch.float64) * 0.98 + 0.01).to(dtype)
    y = torch.rand(5, 4, generator=GEN, dtype=torch.float64).to(dtype)
    bw = (torch.rand(5, 1, generator=GEN, dtype=torch.float64) + 0.5).to(dtype)
    run_both(lambda a, b: xt.binary_cross_entropy(a, b, bw, reduction=reduction),
             lambda a, b: F.binary_cross_entropy(a, b, bw.double(), reduction=reduction), [p, y], 0, dtype)
    z = randn(5, 4, dtype=dtype)
    pw = (torch.rand(4, generator=GEN, dtype=torch.float64) * 3).to(dtype)
    run_both(lambda a, b: xt.binary_cross_entropy_with_logits(a, b, bw, reduction=reduction, pos_weight=pw),
             lambda a, b: F.binary_cross_entropy_with_logits(a, b, bw.double(), reduction=reduction,
                                                             pos_weight=pw.double()), [z, y], 0, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family(dtype, dim):
    x = randn(4, 6, 5, dtype=dtype)
    run_both(lambda a: xt.softmax(a, dim), lambda a: F.softmax(a, dim), [x], 0, dtype)
    run_both(lambda a: xt.log_softmax(a, dim), lambda a: F.log_softmax(a, dim), [x], 0, dtype)
    run_both(lambda a: xt.logsumexp(a, dim), lambda a: torch.logsumexp(a, dim), [x], 0, dtype)
    assert xt.logsumexp(x, dim, keepdim=True).shape == torch.logsumexp(x, dim, keepdim=True).shape
    assert xt.softmax(x, dim, dtype=torch.float64).dtype == torch.float64


def test_gradcheck_float64():
    # gradcheck backs through a call several times (retain_graph): grad_in_forward=False, the
    # path that keeps the input; the default path is checked against it in test_grad_in_forward.py.
    x = randn(5, 7).requires_grad_(True)
    t = torch.tensor([0, 3, -100, 6, 2])
    w = torch.rand(7, generator=GEN, dtype=torch.float64) + 0.3
    ce = lambda *a, **k: xt.cross_entropy(*a, grad_in_forward=False, **k)  # noqa: E731
    for reduction in ("none", "mean", "sum"):
        assert torch.autograd.gradcheck(
            lambda a: ce(a, t, w, reduction=reduction, label_smoothing=0.1), (x,))
    p = torch.softmax(randn(5, 7), 1)
    assert torch.autograd.gradcheck(lambda a: ce(a, p, label_smoothing=0.3), (x,))
    x4 = randn(2, 3, 2, 2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: ce(a, torch.tensor([[[0, 1], [2, 1]], [[2, 2], [0, 1]]]),
                                                 reduction="none"), (x4,))
    assert torch.autograd.gradcheck(lambda a: xt.softmax(a, 1), (x,))
    assert torch.autograd.gradcheck(lambda a: xt.log_softmax(a, 0), (x,))
    assert torch.autograd.gradcheck(lambda a: xt.logsumexp(a, 1), (x,))
    assert torch.autograd.gradcheck(lambda a: xt.nll_loss(a, t, w), (x,))
    y = torch.rand(5, 7, generator=GEN, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: xt.binary_cross_entropy_with_logits(a, y, reduction="none"), (x,))
    pr = (torch.rand(5, 7, generator=GEN, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: xt.binary_cross_entropy(a, y), (pr,))


def test_modules_match_functional():
    x = randn(6, 5, dtype=torch.float32)
    t = torch.randint(0, 5, (6,), generator=GEN)
    w = torch.rand(5, generator=GEN) + 0.5
    ours = xt.nn.CrossEntropyLoss(weight=w, ignore_index=2, reduction="sum", label_smoothing=0.1)
    ref = torch.nn.CrossEntropyLoss(weight=w, ignore_index=2, reduction="sum", label_smoothing=0.1)
    torch.testing.assert_close(ours(x, t), ref(x, t))
    assert "weight" in dict(ours.named_buffers())
    torch.testing.assert_close(xt.nn.NLLLoss(w)(x.log_softmax(1), t), torch.nn.NLLLoss(w)(x.log_softmax(1), t))
    y = torch.rand(6, 5, generator=GEN)
    torch.testing.assert_close(xt.nn.BCEWithLogitsLoss(pos_weight=w)(x, y), torch.nn.BCEWithLogitsLoss(pos_weight=w)(x, y))
    torch.testing.assert_close(xt.nn.BCELoss()(x.sigmoid(), y), torch.nn.BCELoss()(x.sigmoid(), y))
    torch.testing.assert_close(xt.nn.Softmax(1)(x), torch.nn.Softmax(1)(x))
    torch.testing.assert_close(xt.nn.LogSoftmax(0)(x), torch.nn.LogSoftmax(0)(x))


def test_no_copy_of_contiguous_tensors_and_inputs_untouched():
    x = randn(32, 10, dtype=torch.float32).requires_grad_(True)
    t = torch.randint(0, 10, (32,), generator=GEN)
    w = torch.rand(10, generator=GEN) + 0.5
    snapshot = [x.detach().clone(), t.clone(), w.clone()]
    loss = xt.cross_entropy(x, t, w, label_smoothing=0.05, grad_in_forward=False)
    seen = dict(_xent._last_input_pointers())
    assert seen["input"] == x.data_ptr() and seen["target"] == t.data_ptr() and seen["weight"] == w.data_ptr()
    loss.backward()
    seen = dict(_xent._last_input_pointers())  # backward reads the same storage again
    assert seen["input"] == x.data_ptr() and seen["target"] == t.data_ptr()
    assert x.grad.data_ptr() != x.data_ptr()
    for a, b in zip((x.detach(), t, w), snapshot):
        assert torch.equal(a, b)
    # A non-contiguous input is copied once, and backward uses that copy, not a second one.
    xs = randn(10, 32).t().requires_grad_(True)
    loss = xt.cross_entropy(xs, t, grad_in_forward=False)
    first = dict(_xent._last_input_pointers())["input"]
    assert first != xs.data_ptr()
    loss.backward()
    assert dict(_xent._last_input_pointers())["input"] == first
    xr = xs.detach().contiguous().requires_grad_(True)
    F.cross_entropy(xr, t).backward()
    torch.testing.assert_close(xs.grad, xr.grad)


def test_concurrent_threads_give_the_same_results():
    x = randn(256, 500, dtype=torch.float32)
    t = torch.randint(0, 500, (256,), generator=GEN)

    def once():
        a = x.clone().requires_grad_(True)
        loss = xt.cross_entropy(a, t, label_smoothing=0.1)
        loss.backward()
        return loss.detach(), a.grad

    ref_loss, ref_grad = once()
    out, errors = [None] * 6, []

    def work(i):
        try:
            for _ in range(4):
                out[i] = once()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for loss, grad in out:
        assert torch.equal(loss, ref_loss) and torch.equal(grad, ref_grad)


X2 = torch.zeros(2, 3)
T2 = torch.tensor([0, 1])


@pytest.mark.parametrize("call, exc, message", [
    (lambda: xt.cross_entropy(X2.to(torch.int16), T2), TypeError,
     "input must be float32, float64, bfloat16 or float16, found int16"),
    (lambda: xt.cross_entropy(X2.bfloat16(), T2, weight=torch.ones(3)), TypeError,
     "weight must have the input's dtype bfloat16, found float32"),
    (lambda: xt.cross_entropy(X2.half(), X2.bfloat16()), TypeError,
     "target must have the input's dtype float16, found bfloat16"),
    (lambda: xt.cross_entropy(X2.long(), T2), TypeError,
     "input must be float32, float64, bfloat16 or float16, found int64"),
    (lambda: xt.cross_entropy(X2.numpy(), T2), TypeError, "input must be a torch.Tensor, found ndarray"),
    (lambda: xt.cross_entropy(X2, T2.to(torch.int16)), TypeError,
     "target must be float32, float64, bfloat16, float16, int32 or int64"),
    (lambda: xt.cross_entropy(X2, T2.to_sparse()), TypeError, "dense"),
    (lambda: xt.cross_entropy(X2.to("meta"), T2), TypeError, "must be a CPU tensor"),
    (lambda: xt.cross_entropy(X2, torch.tensor([0, 3])), ValueError, "target 3 at position 1 is outside [0, 3)"),
    (lambda: xt.cross_entropy(X2, torch.tensor([0, 1, 2])), ValueError, "target must have shape [2]"),
    (lambda: xt.cross_entropy(X2, T2, weight=torch.ones(3, dtype=torch.float64)), TypeError,
     "weight must have the input's dtype float32, found float64"),
    (lambda: xt.cross_entropy(X2, T2, reduction="avg"), ValueError, "reduction must be"),
    (lambda: xt.cross_entropy(X2, T2, label_smoothing=-0.5), ValueError, "label_smoothing"),
    (lambda: xt.cross_entropy(X2, T2, size_average=True), ValueError, "size_average and reduce are deprecated"),
    (lambda: xt.cross_entropy(X2, torch.rand(2, 3).requires_grad_(True)), ValueError, "pass target.detach()"),
    (lambda: xt.softmax(X2), ValueError, "dim must be given"),
    (lambda: xt.softmax(X2, 5), ValueError, "dim"),
    (lambda: xt.nll_loss(X2, T2.float()), TypeError, "target must be int32 or int64, found float32"),
    (lambda: xt.binary_cross_entropy(X2 + 2, X2), ValueError, "2"),
    (lambda: xt.nn.CrossEntropyLoss(reduce=False), ValueError, "deprecated"),
])
def test_errors(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert message in str(info.value), str(info.value)


def test_cuda_tensor_is_refused_when_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (the meta-device case covers the check)")
    with pytest.raises(TypeError, match="CPU tensor"):
        xt.cross_entropy(X2.cuda(), T2.cuda())
