"""xent: exact, fast softmax and cross-entropy on the CPU, for NumPy (this module) and PyTorch
(xent.torch, autograd-aware drop-ins for torch.nn.functional).

Every function takes torch.nn.functional's argument names, defaults and semantics (PyTorch 1.13)
and returns NumPy arrays of the input's dtype (float32, float64, float16, or bfloat16 as
xent.bfloat16 below; a reduced loss is a 0-d array). Class indices may be int32 or int64. Arrays
that are C-contiguous with a supported dtype reach the C++ kernels without a copy; any other array
(a transposed or strided view, a Python list) is made contiguous once with
numpy.ascontiguousarray. Inputs are never written.

Gradients come from the same call: `return_grad=True` returns `(loss, grad)` where grad is
d sum(loss * grad_output) / d input (grad_output defaults to ones, i.e. the gradient of the loss
itself for 'mean' and 'sum'). Errors are TypeError (a dtype xent cannot take) or ValueError
(shapes, values, options), with xent's one-line message. docs/python.md has the whole story.

16-bit: float16 arrays work everywhere (linear_cross_entropy too). NumPy has no
bfloat16 type, so xent.bfloat16 is a NumPy dtype, int16 storage tagged {"xent": "bfloat16"}: view
the 16-bit patterns of bfloat16 values with it (`bits.view(xent.bfloat16)`) to pass them in, and
bfloat16 results come back with it. 16-bit ops compute in float32 or wider and round each result
once.

This module does not do automatic differentiation, broadcasting beyond PyTorch's rules, or devices
other than the CPU.
"""

import numpy as _np

from . import _xent

__version__ = "0.1.0"

bfloat16 = _xent.bfloat16  # NumPy dtype: int16 storage read and written as bfloat16

# The library never prints: an unusable XENT_ISA or XENT_THREADS (read here, at import, and then
# replaced by the default) becomes one RuntimeWarning.
if _xent.environment_status():
    import warnings as _warnings

    _warnings.warn("xent: " + _xent.environment_status(), RuntimeWarning, stacklevel=2)

__all__ = [
    "softmax", "log_softmax", "logsumexp", "softmax_backward", "log_softmax_backward",
    "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "linear_cross_entropy", "set_num_threads", "get_num_threads", "isa", "supported_isas", "set_isa",
    "set_buffer_cache_limit", "buffer_cache_bytes", "empty_buffer_cache", "bfloat16",
]


def _array(x, name):
    """x as a C-contiguous ndarray: no copy when it already is one (the common case)."""
    if isinstance(x, _np.ndarray) and x.flags.c_contiguous:
        return x
    if x is None:
        raise TypeError(f"{name} must be an array, found None")
    try:
        a = _np.asarray(x)  # keeps a Python scalar 0-d (ascontiguousarray would make it 1-d)
        if not a.flags.c_contiguous:
            a = _np.ascontiguousarray(a)
    except Exception as e:  # noqa: BLE001 - whatever numpy cannot convert is a type problem
        raise TypeError(f"{name} must be an array, found {type(x).__name__} ({e})") from None
    if a.dtype == object:
        raise TypeError(f"{name} must be a numeric array, found {type(x).__name__} of Python objects")
    return a


def _optional(x, name):
    return None if x is None else _array(x, name)


def _dim(dim, name="dim"):
    if dim is None:
        raise ValueError(f"{name} must be given (an int), found None")
    if isinstance(dim, bool) or not isinstance(dim, (int, _np.integer)):
        raise TypeError(f"{name} must be an int, found {type(dim).__name__}")
    return int(dim)


def _int(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, _np.integer)):
        raise TypeError(f"{name} must be an int, found {type(v).__name__}")
    return int(v)


def _float(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float, _np.integer, _np.floating)):
        raise TypeError(f"{name} must be a float, found {type(v).__name__}")
    return float(v)


def _reduction(r):
    if not isinstance(r, str):
        raise TypeError(f"reduction must be 'none', 'mean' or 'sum', found {type(r).__name__}")
    return r


# ------------------------------------------------------------------------------ softmax family

def softmax(input, dim):
    """exp(x - max) / sum(exp(x - max)) along dim (torch.softmax)."""
    return _xent.softmax(_array(input, "input"), _dim(dim))


def log_softmax(input, dim):
    """x - max - log(sum(exp(x - max))) along dim (torch.log_softmax)."""
    return _xent.log_softmax(_array(input, "input"), _dim(dim))


def logsumexp(input, dim):
    """log(sum(exp(x))) along dim, which is removed (torch.logsumexp, keepdim=False)."""
    return _xent.logsumexp(_array(input, "input"), _dim(dim))


def softmax_backward(output, grad_output, dim):
    """Gradient of softmax given its output y: y * (dy - sum(dy * y))."""
    return _xent.softmax_backward(_array(output, "output"), _array(grad_output, "grad_output"), _dim(dim))


def log_softmax_backward(output, grad_output, dim):
    """Gradient of log_softmax given its output y: dy - exp(y) * sum(dy)."""
    return _xent.log_softmax_backward(_array(output, "output"), _array(grad_output, "grad_output"), _dim(dim))


# ------------------------------------------------------------------------------------ losses

def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                  *, return_grad=False, grad_output=None, summation="fast"):
    """torch.nn.functional.cross_entropy: input (C), (N, C) or (N, C, d1, ...); target class
    indices (int32/int64) or probabilities (input's shape and dtype). Returns the loss, or
    (loss, grad) with return_grad=True (one fused pass when grad_output is None).
    summation="exact": each row summed exactly in fixed point (float32/float64, class indices;
    slower), the same bits as the vocabulary-parallel MPI layer (docs/numerics.md)."""
    if not isinstance(summation, str):
        raise TypeError(f"summation must be 'fast' or 'exact', found {type(summation).__name__}")
    loss, grad = _xent.cross_entropy(
        _array(input, "input"), _array(target, "target"), _optional(weight, "weight"),
        _int(ignore_index, "ignore_index"), _reduction(reduction), _float(label_smoothing, "label_smoothing"),
        bool(return_grad), _optional(grad_output, "grad_output"), summation)
    return (loss, grad) if return_grad else loss


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", *, return_grad=False,
             grad_output=None):
    """torch.nn.functional.nll_loss: input holds log-probabilities; loss = -weight[t] * input[n, t]."""
    loss, grad = _xent.nll_loss(
        _array(input, "input"), _array(target, "target"), _optional(weight, "weight"),
        _int(ignore_index, "ignore_index"), _reduction(reduction), bool(return_grad),
        _optional(grad_output, "grad_output"))
    return (loss, grad) if return_grad else loss


def binary_cross_entropy(input, target, weight=None, reduction="mean", *, return_grad=False, grad_output=None):
    """torch.nn.functional.binary_cross_entropy: input holds probabilities in [0, 1]; weight
    broadcasts to the input's shape."""
    loss, grad = _xent.binary_cross_entropy(
        _array(input, "input"), _array(target, "target"), _optional(weight, "weight"), _reduction(reduction),
        bool(return_grad), _optional(grad_output, "grad_output"))
    return (loss, grad) if return_grad else loss


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None, *,
                                     return_grad=False, grad_output=None):
    """torch.nn.functional.binary_cross_entropy_with_logits (PyTorch's stable form)."""
    loss, grad = _xent.binary_cross_entropy_with_logits(
        _array(input, "input"), _array(target, "target"), _optional(weight, "weight"),
        _optional(pos_weight, "pos_weight"), _reduction(reduction), bool(return_grad),
        _optional(grad_output, "grad_output"))
    return (loss, grad) if return_grad else loss


def linear_cross_entropy(input, weight, target, bias=None, *, class_weight=None, ignore_index=-100,
                         reduction="mean", label_smoothing=0.0, lse_square_scale=0.0, softcap=0.0,
                         return_z_loss=False, return_grad=False, grad_output=None):
    """cross_entropy(input @ weight.T + bias, target, ...) without forming the (N, V) logits.

    input (N, H), weight (V, H), bias (V) or None, target (N) int32/int64, class_weight (V) or
    None. softcap > 0 caps logits as softcap * tanh(z / softcap); lse_square_scale > 0 adds the
    z-loss lse_square_scale * logsumexp(z)^2 per kept token (docs/linear_cross_entropy.md).
    Returns loss; (loss, z_loss) with return_z_loss; with return_grad a last element
    (dinput, dweight, dbias) is appended (dbias None without a bias).
    """
    loss, z, dh, dw, db = _call_linear(
        _array(input, "input"), _array(weight, "weight"), _array(target, "target"), _optional(bias, "bias"),
        _optional(class_weight, "class_weight"), ignore_index, reduction, label_smoothing, lse_square_scale,
        softcap, bool(return_z_loss), bool(return_grad), bool(return_grad), bool(return_grad),
        _optional(grad_output, "grad_output"))
    out = (loss, z) if return_z_loss else (loss,)
    if return_grad:
        out = out + ((dh, dw, db),)
    return out[0] if len(out) == 1 else out


def _call_linear(hidden, weight, target, bias, class_weight, ignore_index, reduction, label_smoothing,
                 lse_square_scale, softcap, want_z, want_dh, want_dw, want_db, grad_output):
    """Arrays already checked for contiguity; the one Python entry into the C++ fused op."""
    return _xent.linear_cross_entropy(
        hidden, weight, target, bias, class_weight, _int(ignore_index, "ignore_index"), _reduction(reduction),
        _float(label_smoothing, "label_smoothing"), _float(lse_square_scale, "lse_square_scale"),
        _float(softcap, "softcap"), want_z, want_dh, want_dw, want_db, grad_output)


# ----------------------------------------------------------------------------------- runtime

def set_num_threads(n):
    """Threads xent's kernels use (its own pool, independent of torch.set_num_threads); 0 restores
    the default (the machine's cores, or XENT_THREADS). Results are the same bits for any count."""
    _xent.set_num_threads(_int(n, "n"))


def get_num_threads():
    """Threads xent's kernels use now."""
    return _xent.get_num_threads()


def isa():
    """Name of the instruction set the kernels use (e.g. 'avx512', 'avx2', 'scalar')."""
    return _xent.isa()


def supported_isas():
    """Instruction sets this CPU can run, best first (always ends with 'scalar')."""
    return list(_xent.supported_isas())


def set_isa(name):
    """Pins an instruction set by name ('auto' returns to the best); ValueError for one this CPU
    cannot run."""
    _xent.set_isa(str(name))


def set_buffer_cache_limit(nbytes):
    """Bytes of freed output buffers (each >= 1 MiB) xent keeps for reuse; 0 disables the cache.
    Default 4 GiB. Reusing a block avoids the page faults and zero-fill of fresh memory, which
    cost as much as a large gradient kernel itself. Empties the cache."""
    _xent.set_buffer_cache_limit(_int(nbytes, "nbytes"))


def buffer_cache_bytes():
    """Bytes held by the cache of freed output buffers now."""
    return _xent.buffer_cache_bytes()


def empty_buffer_cache():
    """Frees every cached output buffer (as torch.cuda.empty_cache does for the GPU)."""
    _xent.empty_buffer_cache()
