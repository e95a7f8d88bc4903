// softmax.h: softmax, log_softmax and logsumexp over one dimension, forward and backward.
//
// Semantics are PyTorch 1.13's (torch.softmax, torch.log_softmax, torch.logsumexp with
// keepdim=false); docs/numerics.md has the exact formulas and edge cases. Inputs and outputs are
// float32 or float64 and must share one dtype. `dim` may be negative (counted from the end); a
// 0-d input is treated as a 1-element vector with dim 0 or -1.
//
// Numerics: every row is shifted by its maximum before exp, so no finite input overflows;
// float32 rows accumulate in float64. A row of all -inf gives NaN from softmax/log_softmax (0/0)
// and -inf from logsumexp, as in PyTorch; NaN propagates. Results do not depend on the thread
// count. Outputs may alias inputs of the same shape (y may be x; dx may be dy).
// Nothing is written to any output when a Status is not ok.
#pragma once

#include <cstdint>

#include "xent/status.h"
#include "xent/tensor.h"

namespace xent {

// y = exp(x - max) / sum(exp(x - max)) along dim. y has x's shape.
Status softmax_forward(ConstTensorView x, std::int64_t dim, TensorView y);
// dx = y * (dy - sum(dy * y)) along dim, where y is softmax_forward's output.
Status softmax_backward(ConstTensorView y, ConstTensorView dy, std::int64_t dim, TensorView dx);

// y = x - max - log(sum(exp(x - max))) along dim.
Status log_softmax_forward(ConstTensorView x, std::int64_t dim, TensorView y);
// dx = dy - exp(y) * sum(dy) along dim, where y is log_softmax_forward's output.
Status log_softmax_backward(ConstTensorView y, ConstTensorView dy, std::int64_t dim, TensorView dx);

// out = log(sum(exp(x))) along dim, computed as max + log(sum(exp(x - max))) with an infinite max
// replaced by 0 (PyTorch's rule). out has x's shape without `dim`.
Status logsumexp_forward(ConstTensorView x, std::int64_t dim, TensorView out);
// dx = dout * exp(x - out), out being logsumexp_forward's output, broadcast along dim.
Status logsumexp_backward(ConstTensorView x, ConstTensorView out, ConstTensorView dout, std::int64_t dim,
                          TensorView dx);

}  // namespace xent
