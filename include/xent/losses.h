// losses.h: cross-entropy, NLL and binary cross-entropy, forward, backward and fused.
//
// Semantics are PyTorch 1.13's torch.nn.functional.{cross_entropy, nll_loss, binary_cross_entropy,
// binary_cross_entropy_with_logits}, including every option's edge cases: the divisor of a weighted
// mean (sum of the picked weights), label smoothing with weights and ignored targets, probability
// targets (mean divides by the number of rows), NaN for a mean over no targets. docs/numerics.md has
// the formulas. This header does not cover linear layers (see linear_cross_entropy.h).
//
// Shapes (class dimension is dim 1, as in PyTorch):
//   input  (C), (N, C) or (N, C, d1, ..., dk); float32 or float64
//   target class indices: (), (N) or (N, d1, ..., dk), int32 or int64;
//          class probabilities: input's shape and dtype
//   loss   reduction kNone: target's shape for class indices, input's shape without dim 1 for
//          probabilities; kMean / kSum: a 0-d tensor (rank 0, one element)
// Backward takes `dloss` shaped like the loss and writes dinput shaped like the input; the
// gradient of reduction kNone is that of sum(loss * dloss). `*_fused` computes the loss and the
// gradient of sum(loss) in one pass over the input. dinput may alias input.
// Loss is computed from logits as logsumexp(z) - z[target], never as -log(softmax(z)).
// Nothing is written to any output when the returned Status is not ok.
#pragma once

#include <cstdint>

#include "xent/status.h"
#include "xent/tensor.h"

namespace xent {

enum class Reduction : std::uint8_t { kNone, kMean, kSum };

// "none", "mean", "sum".
const char* reduction_name(Reduction r) noexcept;

// How cross_entropy sums each row's exp(z - max) (and, with label smoothing, sum_c w_c z_c).
//   kFast   the vectorised kernels: a floating-point sum in lanes and a fixed tree (the default;
//           within rounding of the exact result, the same bits for any thread count).
//   kExact  every term rounded once onto a fixed-point grid (2^-120 of the row's largest term) and
//           added as integers, exactly; the row's lse, loss and gradient then follow one fixed
//           sequence of double operations. The result does not depend on how the classes are
//           split, so it is the same bits as xent::mpi::vocab_parallel_cross_entropy over the
//           same classes on any number of ranks (include/xent/mpi.h), and as accurate or more
//           than kFast. Scalar code with std::exp in double: several times slower than kFast.
//           Class-index targets with float32 or float64 input only (probability targets and
//           16-bit input are refused with an error). docs/numerics.md, "Exact summation".
enum class Summation : std::uint8_t { kFast, kExact };

struct CrossEntropyOptions {
  ConstTensorView weight;            // optional (C) class weights, input's dtype; empty = all ones
  std::int64_t ignore_index = -100;  // targets equal to this contribute nothing (class indices only;
                                     // must be negative with probability targets, as in PyTorch)
  Reduction reduction = Reduction::kMean;
  double label_smoothing = 0.0;      // in [0, 1]
  // Optional per-token loss weights (class-index targets only): the target's shape, the input's
  // dtype. Token i's loss and gradient are multiplied by token_weight[i]; the mean becomes the
  // weighted mean sum_i tw_i w[t_i] l_i / sum_i tw_i w[t_i] over the kept tokens (PyTorch's rule
  // for class weights, applied to the product of both weights; docs/numerics.md). Ignored tokens
  // contribute nothing whatever their weight. Not an extension of PyTorch 1.13.
  ConstTensorView token_weight;
  Summation summation = Summation::kFast;  // kExact: see Summation above
};

Status cross_entropy_forward(ConstTensorView input, ConstTensorView target,
                             const CrossEntropyOptions& options, TensorView loss);
Status cross_entropy_backward(ConstTensorView input, ConstTensorView target,
                              const CrossEntropyOptions& options, ConstTensorView dloss,
                              TensorView dinput);
// loss as cross_entropy_forward, dinput = d sum(loss) / d input.
Status cross_entropy_fused(ConstTensorView input, ConstTensorView target,
                           const CrossEntropyOptions& options, TensorView loss, TensorView dinput);

struct TokenStatsOptions {
  std::int64_t ignore_index = -100;  // such targets get correct = -1 (their lse and entropy are still given)
};

// Forward-only per-token statistics of cross_entropy's softmax over the classes (dim 1), without a
// loss, a reduction or a gradient. input: logits as for cross_entropy (any floating dtype); target:
// class indices (int32 or int64), in [0, C) or ignore_index. Each output is the target's shape and
// optional (an empty view skips it; at least one is needed):
//   lse      input's dtype: logsumexp over the classes, as logsumexp_forward gives it
//   entropy  input's dtype: -sum_c p_c log p_c of p = softmax(x) (a class with p_c = 0 adds 0; NaN
//            for a row holding a NaN or +inf, or all -inf)
//   correct  int32 or int64: 1 where argmax_c x equals the target, 0 where it does not, -1 where the
//            target is ignore_index. argmax is torch.argmax's: the first maximum, or the first NaN.
// docs/numerics.md has the formulas. Nothing is written when the Status is not ok.
Status cross_entropy_token_stats(ConstTensorView input, ConstTensorView target, const TokenStatsOptions& options,
                                 TensorView lse, TensorView entropy, TensorView correct);

struct NllOptions {
  ConstTensorView weight;            // optional (C) class weights
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::kMean;
};

// input holds log-probabilities; loss = -weight[t] * input[n, t].
Status nll_loss_forward(ConstTensorView input, ConstTensorView target, const NllOptions& options,
                        TensorView loss);
Status nll_loss_backward(ConstTensorView input, ConstTensorView target, const NllOptions& options,
                         ConstTensorView dloss, TensorView dinput);

struct BceOptions {
  ConstTensorView weight;      // optional, broadcastable to the input's shape (NumPy rules)
  ConstTensorView pos_weight;  // optional, broadcastable; binary_cross_entropy_with_logits only
  Reduction reduction = Reduction::kMean;
};

// input holds probabilities in [0, 1] (anything else, NaN included, is refused);
// loss = -w * (t * max(log p, -100) + (1 - t) * max(log(1 - p), -100)). target has input's shape.
Status binary_cross_entropy_forward(ConstTensorView input, ConstTensorView target,
                                    const BceOptions& options, TensorView loss);
Status binary_cross_entropy_backward(ConstTensorView input, ConstTensorView target,
                                     const BceOptions& options, ConstTensorView dloss,
                                     TensorView dinput);

// input holds logits; loss = w * ((1 - t) * x + (1 + (pw - 1) * t) * softplus(-x)), evaluated in
// PyTorch's stable form.
Status binary_cross_entropy_with_logits_forward(ConstTensorView input, ConstTensorView target,
                                                const BceOptions& options, TensorView loss);
Status binary_cross_entropy_with_logits_backward(ConstTensorView input, ConstTensorView target,
                                                 const BceOptions& options, ConstTensorView dloss,
                                                 TensorView dinput);

}  // namespace xent
