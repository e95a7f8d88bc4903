"""xent.torch.nn: nn.Module forms of xent.torch's functions, with torch.nn's constructor arguments
(CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss, Softmax, LogSoftmax), plus
LinearCrossEntropyLoss (a model's lm_head weight + loss in one call) and LinearCrossEntropy (a
head that owns its weight). Class weights are registered as buffers, as in torch.nn. Not covered:
the deprecated size_average/reduce arguments (ValueError if given).
"""

import math

import torch

from . import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, linear_cross_entropy,
               log_softmax, nll_loss, softmax, _no_legacy)

__all__ = ["CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "Softmax", "LogSoftmax",
           "LinearCrossEntropyLoss", "LinearCrossEntropy"]


class CrossEntropyLoss(torch.nn.Module):
    """torch.nn.CrossEntropyLoss's constructor, plus xent.torch.cross_entropy's grad_in_forward."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0, *, grad_in_forward=True):
        super().__init__()
        _no_legacy(size_average, reduce)
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.grad_in_forward = grad_in_forward

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             grad_in_forward=self.grad_in_forward)


class NLLLoss(torch.nn.Module):
    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
        super().__init__()
        _no_legacy(size_average, reduce)
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, input, target):
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class BCELoss(torch.nn.Module):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        _no_legacy(size_average, reduce)
        self.register_buffer("weight", weight)
        self.reduction = reduction

    def forward(self, input, target):
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(torch.nn.Module):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None):
        super().__init__()
        _no_legacy(size_average, reduce)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = reduction

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)


class Softmax(torch.nn.Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return softmax(input, self.dim)


class LogSoftmax(torch.nn.Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return log_softmax(input, self.dim)


class LinearCrossEntropyLoss(torch.nn.Module):
    """loss(input, weight, target, bias=None): the loss of F.linear(input, weight, bias) under
    cross-entropy, fused; pass a model's lm_head.weight (and .bias). Options as
    xent.torch.linear_cross_entropy."""

    def __init__(self, class_weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                 lse_square_scale=0.0, softcap=0.0, return_z_loss=False):
        super().__init__()
        self.register_buffer("class_weight", class_weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing
        self.lse_square_scale, self.softcap, self.return_z_loss = lse_square_scale, softcap, return_z_loss

    def forward(self, input, weight, target, bias=None):
        return linear_cross_entropy(input, weight, target, bias, class_weight=self.class_weight,
                                    ignore_index=self.ignore_index, reduction=self.reduction,
                                    label_smoothing=self.label_smoothing, lse_square_scale=self.lse_square_scale,
                                    softcap=self.softcap, return_z_loss=self.return_z_loss)


class LinearCrossEntropy(torch.nn.Module):
    """A language-model head that owns weight (out_features, in_features) and an optional bias,
    initialised as torch.nn.Linear does; forward(input, target) returns the loss."""

    def __init__(self, in_features, out_features, bias=False, device=None, dtype=None, **loss_options):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.nn.Parameter(torch.empty((out_features, in_features), **kw))
        self.bias = torch.nn.Parameter(torch.empty(out_features, **kw)) if bias else None
        self.loss = LinearCrossEntropyLoss(**loss_options)
        torch.nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features) if in_features > 0 else 0
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input, target):
        return self.loss(input, self.weight, target, self.bias)
