"""xent.torch: autograd-aware drop-ins for torch.nn.functional's softmax and cross-entropy family,
plus a fused linear + cross-entropy for language-model heads, on CPU tensors: float32, float64,
bfloat16 and float16 for everything.

Same argument names, defaults and results as PyTorch 1.13's functions. In bfloat16/float16 inputs,
outputs and gradients have the input's dtype and every op computes in float32 or wider and rounds
its result once (PyTorch 1.13 has these ops in bfloat16 on the CPU, none in float16). Tensors
reach xent's C++ kernels as NumPy views of their storage (`tensor.detach().numpy()`; bfloat16 as
its int16 storage tagged xent.bfloat16), so a contiguous CPU tensor is never copied; a
non-contiguous one is made contiguous once (that copy is what backward uses). Results are fresh
tensors; no caller tensor is ever written. Anything else (a CUDA tensor, a sparse tensor, wrong
shapes) raises TypeError or ValueError with xent's
message.

What autograd keeps for backward (no probabilities are stored):
  cross_entropy (default grad_in_forward=True): when a gradient will be needed, forward computes
      loss and gradient in one fused pass and keeps only that gradient (xent's own buffer) and the
      target; backward scales it by grad_output in place and hands it over, so it can run once
      (a second backward raises RuntimeError). grad_in_forward=False keeps references to the
      inputs instead and backward reads the logits again (any number of backwards).
  nll_loss / bce*: references to the inputs (no extra memory); backward recomputes what it needs
      in the pass that writes the gradient.
  softmax / log_softmax: the output, as PyTorch does.
  linear_cross_entropy: with 'mean' or 'sum' the gradients of input, weight and bias are
      computed in the forward call (one fused pass; the (N, V) logits never exist) and backward
      only scales them by grad_output (a second backward through a retained graph recomputes
      them); with 'none' backward calls the fused op again with the
      per-token grad_output (correct per-token scaling before the sum over tokens, at the cost of
      a second pass). Under torch.no_grad() (or when nothing needs a gradient) only the loss is
      computed.
No second derivatives (backward is once_differentiable). docs/python.md has the details.
"""

import numpy as _np_module
import torch as _torch
from torch.autograd.function import once_differentiable as _once_differentiable

from .. import _xent
from .. import _call_linear, _int, _float, _reduction

__all__ = [
    "softmax", "log_softmax", "logsumexp", "cross_entropy", "nll_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "linear_cross_entropy", "nn",
]

_FLOAT = (_torch.float32, _torch.float64, _torch.bfloat16, _torch.float16)
_BF16_STORAGE = _np_module.int16
_INDEX = (_torch.int32, _torch.int64)
_TARGET = _FLOAT + _INDEX


def _dtype_name(dt):
    return str(dt).replace("torch.", "")


def _check(t, name, allowed):
    """Raises TypeError unless t is a dense CPU tensor of an allowed dtype; returns it contiguous
    (the same tensor when it already is)."""
    if not isinstance(t, _torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, found {type(t).__name__}")
    if t.device.type != "cpu":
        raise TypeError(f"{name} must be a CPU tensor (xent runs on the CPU), found a tensor on {t.device}")
    if t.layout != _torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, found layout {t.layout}")
    if t.dtype not in allowed:
        names = " or ".join(_dtype_name(d) for d in allowed) if len(allowed) <= 2 else \
            ", ".join(_dtype_name(d) for d in allowed[:-1]) + " or " + _dtype_name(allowed[-1])
        raise TypeError(f"{name} must be {names}, found {_dtype_name(t.dtype)}")
    return t if t.is_contiguous() else t.contiguous()


def _np(t):
    """NumPy view of a checked contiguous CPU tensor's storage (no copy); None stays None.
    bfloat16, which NumPy lacks, crosses as its int16 storage tagged as xent.bfloat16."""
    if t is None:
        return None
    t = t.detach()
    if t.dtype == _torch.bfloat16:
        return t.view(_torch.int16).numpy().view(_xent.bfloat16)
    return t.numpy()


def _opt(t, name, allowed=_FLOAT):
    return None if t is None else _check(t, name, allowed)


def _t(a):
    """Tensor sharing the memory of an array xent returned; bfloat16 arrives as tagged int16."""
    if a is None:
        return None
    t = _torch.from_numpy(a)
    return t.view(_torch.bfloat16) if a.dtype == _BF16_STORAGE and a.dtype.metadata else t


def _no_target_grad(ctx, index, name):
    if ctx.needs_input_grad[index]:
        raise ValueError(f"{name} requires grad, but xent computes no gradient with respect to {name}; "
                         f"pass {name}.detach()")


# ------------------------------------------------------------------------------ softmax family

class _SoftmaxFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, dim, log):
        x = _check(input, "input", _FLOAT)
        y = _t((_xent.log_softmax if log else _xent.softmax)(_np(x), dim))
        ctx.dim, ctx.log = dim, log
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        g = _check(grad, "grad_output", _FLOAT)
        f = _xent.log_softmax_backward if ctx.log else _xent.softmax_backward
        return _t(f(_np(y), _np(g), ctx.dim)), None, None


def _softmax_args(input, dim, dtype):
    if dim is None:
        raise ValueError("dim must be given (an int), found None (xent has no implicit-dim rule)")
    dim = _int(dim, "dim")
    if dtype is not None:
        input = input.to(dtype)
    return input, dim


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """torch.nn.functional.softmax (dim is required)."""
    input, dim = _softmax_args(input, dim, dtype)
    return _SoftmaxFn.apply(input, dim, False)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """torch.nn.functional.log_softmax (dim is required)."""
    input, dim = _softmax_args(input, dim, dtype)
    return _SoftmaxFn.apply(input, dim, True)


class _LogSumExpFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, dim):
        x = _check(input, "input", _FLOAT)
        out = _t(_xent.logsumexp(_np(x), dim))
        ctx.dim = dim
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        g = _check(grad, "grad_output", _FLOAT)
        return _t(_xent.logsumexp_backward(_np(x), _np(out), _np(g), ctx.dim)), None


def logsumexp(input, dim, keepdim=False):
    """torch.logsumexp over one dimension."""
    dim = _int(dim, "dim")
    out = _LogSumExpFn.apply(input, dim)
    return out.unsqueeze(dim if dim >= 0 else dim + input.dim()) if keepdim else out


# ------------------------------------------------------------------------------------ losses

def _autocast_fp32(*tensors):
    """Under torch.autocast("cpu"), PyTorch runs its losses (cross_entropy, nll_loss, bce*) in
    float32: bfloat16/float16 arguments are cast up first (a differentiable cast, so the input's
    gradient comes back in its own dtype) and the loss is float32. The same here; outside autocast
    the tensors pass unchanged. softmax, log_softmax and logsumexp keep their dtype, as PyTorch's."""
    if not _torch.is_autocast_cpu_enabled():
        return tensors
    return tuple(t.float() if isinstance(t, _torch.Tensor) and t.dtype in (_torch.bfloat16, _torch.float16) else t
                 for t in tensors)


def _no_legacy(size_average, reduce):
    if size_average is not None or reduce is not None:
        raise ValueError("size_average and reduce are deprecated in PyTorch and not supported by xent; "
                         "use reduction='none', 'mean' or 'sum'")


class _CrossEntropyFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, label_smoothing, fused):
        # fused: a gradient will be needed (grad mode on, input requires grad; decided by the
        # caller, since needs_input_grad ignores torch.no_grad) and grad_in_forward is set.
        _no_target_grad(ctx, 1, "target")
        x = _check(input, "input", _FLOAT)
        t = _check(target, "target", _TARGET)
        w = _opt(weight, "weight")
        loss, dx = _xent.cross_entropy(_np(x), _np(t), _np(w), ignore_index, reduction, label_smoothing, fused, None, "fast")
        ctx.opts = (ignore_index, reduction, label_smoothing)
        ctx.fused, ctx.dx, ctx.input_dim = fused, None, x.dim()
        if fused:
            # Only the gradient of sum(loss) (xent's own buffer) and the target (small: it masks
            # ignored rows if grad_output is not finite); not the input, no probabilities.
            ctx.dx = _t(dx)
            ctx.save_for_backward(t)
        elif ctx.needs_input_grad[0]:
            ctx.save_for_backward(x, t, w)
        return _t(loss)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        g = _check(grad, "grad_output", _FLOAT)
        if not ctx.fused:
            x, t, w = ctx.saved_tensors
            dx = _xent.cross_entropy_backward(_np(x), _np(t), _np(w), *ctx.opts, _np(g))
            return _t(dx), None, None, None, None, None, None
        dx, ctx.dx = ctx.dx, None  # hand the buffer to autograd without another reference
        if dx is None:
            raise RuntimeError(
                "xent.torch.cross_entropy: backward reached this call a second time (retain_graph=True, "
                "torch.autograd.grad or gradcheck); with grad_in_forward=True the gradient is computed in "
                "forward and handed over, scaled, by the first backward. Pass grad_in_forward=False to "
                "backward through the call more than once")
        (t,) = ctx.saved_tensors
        _scale_rows(dx, g, t, ctx.opts[0], ctx.opts[1], ctx.input_dim)
        return dx, None, None, None, None, None, None


def _scale_rows(dx, g, t, ignore_index, reduction, input_dim):
    """dx (xent's own gradient of sum(loss), never a caller's tensor) times grad_output g, in place:
    g is 0-d for 'mean'/'sum', shaped like the loss for 'none' (one factor per row along the class
    dim 1). As in PyTorch, a row whose target is ignore_index stays 0 even where g is inf or NaN."""
    if reduction != "none" or g.dim() == 0:
        if float(g) == 1.0:
            return
    elif bool((g == 1).all()):  # loss.sum().backward(): an expanded 1, nothing to do
        return
    if not t.is_floating_point() and not bool(_torch.isfinite(g).all()):
        ignored = t == ignore_index
        if bool(ignored.any()):
            g = g.expand(t.shape).masked_fill(ignored, 0)
    if g.dim() > 0 and input_dim >= 2:
        g = g.unsqueeze(1)  # (N, d1, ...) -> (N, 1, d1, ...): broadcast over the classes
    dx.mul_(g)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0, *, grad_in_forward=True):
    """torch.nn.functional.cross_entropy: input (C), (N, C) or (N, C, d1, ...); target class
    indices (int32/int64) or class probabilities (input's shape and dtype).

    grad_in_forward (default True): when a gradient will be needed (grad mode on and input
    requires grad), forward computes the loss and the gradient in one fused pass over the input
    and keeps only that gradient for backward, which scales it by grad_output in place; one
    backward through the call (retain_graph, torch.autograd.grad twice or gradcheck raise a
    RuntimeError). False: forward computes the loss only and keeps a reference to the input;
    backward reads it again (two passes over the logits, any number of backwards)."""
    _no_legacy(size_average, reduce)
    input, target, weight = _autocast_fp32(input, target, weight)
    fused = bool(grad_in_forward) and _torch.is_grad_enabled() and isinstance(input, _torch.Tensor) \
        and input.requires_grad
    return _CrossEntropyFn.apply(input, target, weight, _int(ignore_index, "ignore_index"), _reduction(reduction),
                                 _float(label_smoothing, "label_smoothing"), fused)


class _NllFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction):
        x = _check(input, "input", _FLOAT)
        t = _check(target, "target", _INDEX)
        w = _opt(weight, "weight")
        loss, _ = _xent.nll_loss(_np(x), _np(t), _np(w), ignore_index, reduction, False, None)
        ctx.opts = (ignore_index, reduction)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x, t, w)
        return _t(loss)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        x, t, w = ctx.saved_tensors
        g = _check(grad, "grad_output", _FLOAT)
        _, dx = _xent.nll_loss(_np(x), _np(t), _np(w), *ctx.opts, True, _np(g))
        return _t(dx), None, None, None, None


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """torch.nn.functional.nll_loss: input holds log-probabilities."""
    _no_legacy(size_average, reduce)
    input, weight = _autocast_fp32(input, weight)
    return _NllFn.apply(input, target, weight, _int(ignore_index, "ignore_index"), _reduction(reduction))


class _BceFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, reduction, logits):
        _no_target_grad(ctx, 1, "target")
        x = _check(input, "input", _FLOAT)
        t = _check(target, "target", _FLOAT)
        w = _opt(weight, "weight")
        pw = _opt(pos_weight, "pos_weight")
        if logits:
            loss, _ = _xent.binary_cross_entropy_with_logits(_np(x), _np(t), _np(w), _np(pw), reduction, False, None)
        else:
            loss, _ = _xent.binary_cross_entropy(_np(x), _np(t), _np(w), reduction, False, None)
        ctx.reduction, ctx.logits = reduction, logits
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x, t, w, pw)
        return _t(loss)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        x, t, w, pw = ctx.saved_tensors
        g = _check(grad, "grad_output", _FLOAT)
        if ctx.logits:
            _, dx = _xent.binary_cross_entropy_with_logits(_np(x), _np(t), _np(w), _np(pw), ctx.reduction, True, _np(g))
        else:
            _, dx = _xent.binary_cross_entropy(_np(x), _np(t), _np(w), ctx.reduction, True, _np(g))
        return _t(dx), None, None, None, None, None


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """torch.nn.functional.binary_cross_entropy: input holds probabilities in [0, 1]."""
    _no_legacy(size_average, reduce)
    input, target, weight = _autocast_fp32(input, target, weight)
    return _BceFn.apply(input, target, weight, None, _reduction(reduction), False)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """torch.nn.functional.binary_cross_entropy_with_logits."""
    _no_legacy(size_average, reduce)
    input, target, weight, pos_weight = _autocast_fp32(input, target, weight, pos_weight)
    return _BceFn.apply(input, target, weight, pos_weight, _reduction(reduction), True)


# ----------------------------------------------------------------------- linear cross-entropy

class _LinearCrossEntropyFn(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, target, bias, class_weight, opts):
        # 16-bit input and weight: the core widens them by blocks into its float32 products and
        # rounds each result once; the gradients come back in the input's dtype (dweight summed
        # over tokens in float32 and rounded once), which autograd requires anyway.
        h = _check(input, "input", _FLOAT)
        w = _check(weight, "weight", _FLOAT)
        t = _check(target, "target", _INDEX)
        b = _opt(bias, "bias", _FLOAT)
        cw = _opt(class_weight, "class_weight", _FLOAT)
        need = ctx.needs_input_grad
        want = (bool(need[0]), bool(need[1]), bool(need[3]) and b is not None)
        ctx.opts, ctx.want = opts, want
        ctx.grads = None
        reduction = opts[1]
        if reduction != "none" and any(want):
            # Loss and gradients in one fused pass; backward scales them by the scalar grad_output.
            loss, z, dh, dw, db = _call_linear(_np(h), _np(w), _np(t), _np(b), _np(cw), *opts, True, *want, None)
            ctx.grads = (_t(dh), _t(dw), _t(db))
        else:
            loss, z, _, _, _ = _call_linear(_np(h), _np(w), _np(t), _np(b), _np(cw), *opts, True, False, False,
                                            False, None)
        if any(want):
            # References, not copies: 'none' recomputes from them, and so does a second backward
            # through a retained graph (the first one handed its gradient buffers to autograd).
            ctx.save_for_backward(h, w, t, b, cw)
        z = _t(z)
        ctx.mark_non_differentiable(z)
        return _t(loss), z

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad, _grad_z):
        g = _check(grad, "grad_output", _FLOAT)
        if ctx.grads is not None:
            dh, dw, db = ctx.grads
            ctx.grads = None  # hand the buffers to autograd without another reference
            if float(g) != 1.0:
                for d in (dh, dw, db):
                    if d is not None:
                        d.mul_(g)
        else:
            h, w, t, b, cw = ctx.saved_tensors
            _, _, dh, dw, db = _call_linear(_np(h), _np(w), _np(t), _np(b), _np(cw), *ctx.opts, False, *ctx.want,
                                            _np(g))
            dh, dw, db = _t(dh), _t(dw), _t(db)
        return dh, dw, None, db, None, None


def linear_cross_entropy(input, weight, target, bias=None, *, class_weight=None, ignore_index=-100,
                         reduction="mean", label_smoothing=0.0, lse_square_scale=0.0, softcap=0.0,
                         return_z_loss=False):
    """F.cross_entropy(F.linear(input, weight, bias), target, weight=class_weight, ...) without the
    (N, V) logits. input (..., H) with target (...) of int32/int64 (leading dims are flattened),
    weight (V, H), bias (V) or None. softcap > 0 caps logits as softcap * tanh(z / softcap);
    lse_square_scale adds the z-loss lse_square_scale * logsumexp(z)^2 per kept token. Returns the
    loss, or (loss, z_loss) with return_z_loss (z_loss is the z-loss part of loss, for logging; it
    carries no gradient of its own)."""
    opts = (_int(ignore_index, "ignore_index"), _reduction(reduction), _float(label_smoothing, "label_smoothing"),
            _float(lse_square_scale, "lse_square_scale"), _float(softcap, "softcap"))
    lead = None
    if isinstance(input, _torch.Tensor) and input.dim() > 2 and isinstance(target, _torch.Tensor):
        lead = target.shape
        input = input.reshape(-1, input.shape[-1])
        target = target.reshape(-1)
    # Under CPU autocast PyTorch's F.linear runs in bfloat16 and its cross_entropy in float32;
    # xent runs the whole fused layer in float32 there (the loss is float32 in both; the gradients
    # come back in the arguments' own dtypes). Outside autocast 16-bit tensors stay 16-bit.
    input, weight, bias, class_weight = _autocast_fp32(input, weight, bias, class_weight)
    loss, z = _LinearCrossEntropyFn.apply(input, weight, target, bias, class_weight, opts)
    if lead is not None and opts[1] == "none":
        loss, z = loss.reshape(lead), z.reshape(lead)
    return (loss, z) if return_z_loss else loss


from . import nn  # noqa: E402  (nn uses the functions above)
