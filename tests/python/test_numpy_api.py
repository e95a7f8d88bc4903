"""test_numpy_api.py: the NumPy front end (import xent) against torch.nn.functional in float64
(the oracle) and float32, plus what only the NumPy layer does: zero-copy for contiguous arrays
(seen through the module's debug hook), one copy for strided ones, inputs left bit-identical,
threads from Python, runtime controls and every error path (type and message).

Not covered here: autograd (test_torch_api.py) and the fused linear layer (test_linear.py).
torch-based cases skip cleanly when torch is absent.
"""
import threading

import numpy as np
import pytest

import xent
from xent import _xent

try:
    import torch
    import torch.nn.functional as F
except Exception:  # noqa: BLE001
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not importable")
RNG = np.random.default_rng(1234)


def close(a, b, dtype):
    """xent in dtype against torch's float64 result."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    if dtype == np.float64:
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    else:
        np.testing.assert_allclose(a, b, rtol=3e-6, atol=3e-6)


def torch_ce(x, t, grad_output=None, **kw):
    X = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    T = torch.tensor(t.astype(np.int64)) if t.dtype.kind == "i" else torch.tensor(t, dtype=torch.float64)
    if "weight" in kw and kw["weight"] is not None:
        kw["weight"] = torch.tensor(kw["weight"], dtype=torch.float64)
    loss = F.cross_entropy(X, T, **kw)
    g = torch.ones_like(loss) if grad_output is None else torch.tensor(grad_output, dtype=torch.float64)
    (loss * g).sum().backward()
    return loss.detach().numpy(), X.grad.numpy()


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (6, 5), (4, 3, 5), (2, 4, 3, 2)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("variant", ["plain", "weight", "ignore", "smooth", "weight_ignore_smooth", "prob",
                                     "prob_smooth", "int32", "exact_weight_ignore_smooth"])
def test_cross_entropy_matches_torch(dtype, shape, reduction, variant):
    x = RNG.normal(0, 3, size=shape).astype(dtype)
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else shape[:1] + shape[2:]
    kw = {"reduction": reduction}
    if variant.startswith("prob"):
        p = RNG.random(shape)
        t = (p / p.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)).astype(dtype)
    else:
        t = np.asarray(RNG.integers(0, C, size=tshape), dtype=np.int32 if variant == "int32" else np.int64)
    if "weight" in variant:
        kw["weight"] = RNG.uniform(0.2, 2.0, size=C).astype(dtype)
    if "ignore" in variant:
        t = np.where(RNG.random(tshape) < 0.3, 1, t).astype(t.dtype)
        kw["ignore_index"] = 1
    if "smooth" in variant:
        kw["label_smoothing"] = 0.15
    ours = dict(kw, summation="exact") if variant.startswith("exact") else kw
    ref_loss, ref_grad = torch_ce(x, t, **kw)
    loss = xent.cross_entropy(x, t, **ours)
    assert loss.dtype == dtype
    close(loss, ref_loss, dtype)
    loss2, grad = xent.cross_entropy(x, t, **ours, return_grad=True)
    close(loss2, ref_loss, dtype)
    close(grad, ref_grad, dtype)
    # A non-trivial upstream gradient (per element for 'none').
    go = RNG.uniform(-2, 2, size=np.shape(ref_loss)).astype(dtype)
    ref_loss, ref_grad = torch_ce(x, t, grad_output=go, **kw)
    _, grad = xent.cross_entropy(x, t, **ours, return_grad=True, grad_output=go)
    close(grad, ref_grad, dtype)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family_matches_torch(dtype, dim):
    x = RNG.normal(0, 4, size=(5, 7, 3)).astype(dtype)
    X = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    dy = RNG.normal(size=x.shape).astype(dtype)
    for ours, ours_bwd, theirs in [(xent.softmax, xent.softmax_backward, torch.softmax),
                                   (xent.log_softmax, xent.log_softmax_backward, torch.log_softmax)]:
        y = ours(x, dim)
        Y = theirs(X, dim)
        close(y, Y.detach().numpy(), dtype)
        (gx,) = torch.autograd.grad((Y * torch.tensor(dy, dtype=torch.float64)).sum(), X)
        close(ours_bwd(y, dy, dim), gx.numpy(), dtype)
    close(xent.logsumexp(x, dim), torch.logsumexp(X, dim).detach().numpy(), dtype)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_nll_and_bce_match_torch(dtype, reduction):
    x = RNG.normal(size=(6, 4)).astype(dtype)
    t = RNG.integers(0, 4, size=6)
    t[2] = -100
    w = RNG.uniform(0.5, 2, size=4).astype(dtype)
    logp = xent.log_softmax(x, 1)
    X = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    ref = F.nll_loss(X, torch.tensor(t), weight=torch.tensor(w, dtype=torch.float64), reduction=reduction)
    ref.sum().backward()
    loss, grad = xent.nll_loss(logp, t, w, reduction=reduction, return_grad=True)
    close(loss, ref.detach().numpy(), dtype)
    close(grad, X.grad.numpy(), dtype)

    p = RNG.uniform(0.01, 0.99, size=(6, 4)).astype(dtype)
    y = RNG.uniform(0, 1, size=(6, 4)).astype(dtype)
    bw = RNG.uniform(0.5, 2, size=(4,)).astype(dtype)
    P = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    ref = F.binary_cross_entropy(P, torch.tensor(y, dtype=torch.float64), weight=torch.tensor(bw, dtype=torch.float64),
                                 reduction=reduction)
    ref.sum().backward()
    loss, grad = xent.binary_cross_entropy(p, y, bw, reduction=reduction, return_grad=True)
    close(loss, ref.detach().numpy(), dtype)
    close(grad, P.grad.numpy(), dtype)

    pw = RNG.uniform(0.5, 3, size=(4,)).astype(dtype)
    Z = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ref = F.binary_cross_entropy_with_logits(Z, torch.tensor(y, dtype=torch.float64), reduction=reduction,
                                             pos_weight=torch.tensor(pw, dtype=torch.float64))
    ref.sum().backward()
    loss, grad = xent.binary_cross_entropy_with_logits(x, y, reduction=reduction, pos_weight=pw, return_grad=True)
    close(loss, ref.detach().numpy(), dtype)
    close(grad, Z.grad.numpy(), dtype)


def test_contiguous_inputs_are_not_copied_and_not_written():
    x = RNG.normal(size=(64, 10)).astype(np.float32)
    t = RNG.integers(0, 10, size=64)
    w = RNG.uniform(0.5, 2, size=10).astype(np.float32)
    before = [a.copy() for a in (x, t, w)]
    loss, grad = xent.cross_entropy(x, t, w, label_smoothing=0.1, return_grad=True)
    seen = dict(_xent._last_input_pointers())
    assert seen["input"] == x.ctypes.data
    assert seen["target"] == t.ctypes.data
    assert seen["weight"] == w.ctypes.data
    assert not np.shares_memory(grad, x)
    for a, b in zip((x, t, w), before):
        assert a.tobytes() == b.tobytes()


def test_strided_input_is_made_contiguous_once():
    base = RNG.normal(size=(10, 8)).astype(np.float64)
    x = base.T  # (8, 10), Fortran-ordered view
    t = RNG.integers(0, 10, size=8)
    loss = xent.cross_entropy(x, t, reduction="none")
    seen = dict(_xent._last_input_pointers())
    assert seen["input"] != base.ctypes.data  # a contiguous copy went in
    expected = xent.cross_entropy(np.ascontiguousarray(x), t, reduction="none")
    assert np.array_equal(loss, expected)
    # A Python scalar grad_output is a 0-d array, as a reduced loss is.
    _, g2 = xent.cross_entropy(x, t, return_grad=True, grad_output=2.0)
    _, g1 = xent.cross_entropy(x, t, return_grad=True)
    np.testing.assert_allclose(g2, 2 * g1, rtol=1e-15, atol=0)
    # Python lists are accepted as NumPy would convert them.
    assert np.array_equal(xent.softmax([[1.0, 2.0, 3.0]], 1), xent.softmax(np.array([[1.0, 2.0, 3.0]]), 1))


def test_threads_same_results_and_concurrent_calls():
    x = RNG.normal(size=(512, 300)).astype(np.float32)
    t = RNG.integers(0, 300, size=512)
    old = xent.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            xent.set_num_threads(n)
            assert xent.get_num_threads() == n
            results.append(xent.cross_entropy(x, t, reduction="none", return_grad=True))
        for loss, grad in results[1:]:
            assert loss.tobytes() == results[0][0].tobytes()
            assert grad.tobytes() == results[0][1].tobytes()
    finally:
        xent.set_num_threads(old)
    ref_loss, ref_grad = results[0]
    out, errors = [None] * 8, []

    def work(i):
        try:
            for _ in range(5):
                out[i] = xent.cross_entropy(x, t, reduction="none", return_grad=True)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for loss, grad in out:
        assert loss.tobytes() == ref_loss.tobytes() and grad.tobytes() == ref_grad.tobytes()


def test_runtime_controls():
    assert xent.__version__
    names = xent.supported_isas()
    assert names[-1] == "scalar" and xent.isa() in names
    x = RNG.normal(size=(3, 20))
    t = np.array([1, 2, 3])
    try:
        xent.set_isa("scalar")
        assert xent.isa() == "scalar"
        scalar = xent.cross_entropy(x, t)
    finally:
        xent.set_isa("auto")
    np.testing.assert_allclose(xent.cross_entropy(x, t), scalar, rtol=1e-14)
    with pytest.raises(ValueError, match="scalar"):
        xent.set_isa("no-such-isa")
    with pytest.raises(ValueError, match=">= 0"):
        xent.set_num_threads(-1)


def test_bad_environment_is_one_warning():
    """XENT_ISA / XENT_THREADS that cannot be used: a RuntimeWarning at import, nothing on stderr from
    the library itself, and the defaults in use."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, XENT_ISA="no-such-isa", XENT_THREADS="0")
    code = ("import warnings; warnings.simplefilter('error')\n"
            "try:\n    import xent\nexcept RuntimeWarning as w:\n    print('warned:', w)\n"
            "warnings.simplefilter('ignore'); import xent; print('isa:', xent.isa(), xent.supported_isas()[0])")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].startswith("warned: xent: XENT_ISA=no-such-isa is not available on this CPU (available: ")
    assert "XENT_THREADS=0 is not a positive integer" in lines[0]
    _, isa, best = lines[1].split()
    assert isa == best
    env.pop("XENT_ISA")
    env.pop("XENT_THREADS")
    r = subprocess.run([sys.executable, "-W", "error", "-c", "import xent"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


@pytest.mark.parametrize("call, exc, message", [
    (lambda: xent.cross_entropy(np.zeros((2, 3), np.int16), np.array([0, 1])), TypeError,
     "input must be float32, float64, float16 or bfloat16, found int16"),
    (lambda: xent.cross_entropy(np.zeros((2, 3), np.float16), np.array([0, 1]), weight=np.ones(3, np.float32)),
     TypeError, "weight must have the input's dtype float16, found float32"),
    (lambda: xent.softmax(np.zeros((2, 3), np.int16).view(xent.bfloat16).astype(np.int16), 1), TypeError,
     "found int16"),
    (lambda: xent.linear_cross_entropy(np.zeros((2, 3), np.float16), np.zeros((4, 3), np.float32), np.array([0, 1])),
     TypeError, "weight must have the input's dtype float16, found float32"),
    (lambda: xent.nll_loss(np.zeros((2, 3)), np.zeros(2, np.uint8)), TypeError,
     "target must be int32 or int64 class indices, found uint8"),
    (lambda: xent.cross_entropy(np.zeros((2, 3), np.int64), np.array([0, 1])), TypeError,
     "input must be float32, float64, float16 or bfloat16, found int64"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1], np.uint8)), TypeError, "found uint8"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.zeros((2, 3), np.float32)), TypeError,
     "target must have the input's dtype float64, found float32"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=np.ones(3, np.float32)), TypeError,
     "weight must have the input's dtype float64, found float32"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError, "target 3 at position 1"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2])), ValueError, "target must have shape [2]"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=np.ones(4)), ValueError, "weight"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), reduction="avg"), ValueError,
     "reduction must be 'none', 'mean' or 'sum', found 'avg'"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=1.5), ValueError,
     "label_smoothing"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), summation="slow"), ValueError,
     "summation must be 'fast' or 'exact', found 'slow'"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), summation=1), TypeError, "summation"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.full((2, 3), 1 / 3), summation="exact"), ValueError,
     "class-index targets only"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), ignore_index=1.5), TypeError,
     "ignore_index must be an int"),
    (lambda: xent.cross_entropy(None, np.array([0, 1])), TypeError, "input must be an array, found None"),
    (lambda: xent.cross_entropy(np.array([{}, {}]), np.array([0, 1])), TypeError, "found object"),
    (lambda: xent.cross_entropy([{}, {}], np.array([0, 1])), TypeError, "input must be a numeric array"),
    (lambda: xent.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), return_grad=True, grad_output=np.ones(2)),
     ValueError, "loss gradient must have shape [], found [2]"),
    (lambda: xent.softmax(np.zeros((2, 3)), 2), ValueError, "dim"),
    (lambda: xent.softmax(np.zeros((2, 3)), None), ValueError, "dim must be given"),
    (lambda: xent.softmax(np.zeros((2, 3)).astype(">f8"), 1), TypeError, "byte order"),
    (lambda: xent.softmax(np.zeros((1,) * 9), 1), ValueError, "at most 8 dimensions"),
    (lambda: xent.nll_loss(np.zeros((2, 3)), np.zeros(2)), TypeError, "target must be int32 or int64"),
    (lambda: xent.binary_cross_entropy(np.full(3, 1.5), np.zeros(3)), ValueError, "1.5"),
    (lambda: xent.binary_cross_entropy_with_logits(np.zeros(3), np.zeros(4)), ValueError, "target"),
    (lambda: xent.softmax_backward(np.zeros((2, 3)), np.zeros((2, 3), np.float32), 1), TypeError,
     "grad_output must have the input's dtype float64, found float32"),
])
def test_errors(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert message in str(info.value), str(info.value)


def test_private_module_refuses_strided_arrays():
    with pytest.raises(ValueError, match="C-contiguous"):
        _xent.softmax(np.zeros((4, 3)).T, 1)


def test_buffer_cache_reuses_freed_outputs():
    x = RNG.normal(size=(512, 1024)).astype(np.float32)  # 2 MiB gradient: cached size class
    t = RNG.integers(0, 1024, size=512)
    xent.empty_buffer_cache()
    assert xent.buffer_cache_bytes() == 0
    _, g = xent.cross_entropy(x, t, return_grad=True)
    first, expected = g.ctypes.data, g.copy()
    del g
    assert xent.buffer_cache_bytes() >= x.nbytes
    _, g = xent.cross_entropy(x, t, return_grad=True)
    assert g.ctypes.data == first  # the freed block came back
    assert np.array_equal(g, expected)  # and was fully overwritten
    assert xent.buffer_cache_bytes() == 0
    try:
        xent.set_buffer_cache_limit(0)
        del g
        assert xent.buffer_cache_bytes() == 0
    finally:
        xent.set_buffer_cache_limit(4 << 30)
    with pytest.raises(ValueError, match=">= 0"):
        xent.set_buffer_cache_limit(-1)
