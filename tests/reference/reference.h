// reference.h: the long-double scalar oracle for every op in include/xent/softmax.h and losses.h.
//
// Each function restates PyTorch 1.13's definition (aten/src/ATen/native/SoftMax.cpp,
// ReduceOps.cpp logsumexp, LossNLL.cpp, Loss.cpp, and the autograd formulas of derivatives.yaml)
// in plain sequential long-double loops, forward and backward. Tests feed it the same values they
// pass to xent (converted exactly to long double) and compare. It shares no code with the library:
// it is slow, allocates freely, and checks its preconditions by throwing std::invalid_argument
// (it is test-only code; bad-input handling of the library is tested separately).
// Not a tensor library: contiguous row-major data, no dtypes, no threads.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace xent::ref {

using Real = long double;
using Shape = std::vector<std::int64_t>;

std::int64_t numel(const Shape& shape);
// shape with dimension `dim` (already normalised to [0, rank)) removed.
Shape shape_without(const Shape& shape, std::int64_t dim);

// A dense row-major tensor of long doubles. Rank 0 holds one element.
struct Tensor {
  Shape shape;
  std::vector<Real> data;

  Tensor() : data(1, 0) {}
  explicit Tensor(Shape s) : shape(std::move(s)), data(static_cast<std::size_t>(ref::numel(shape)), 0) {}
  Tensor(Shape s, std::vector<Real> d);

  std::int64_t numel() const { return static_cast<std::int64_t>(data.size()); }
  static Tensor scalar(Real v) { return Tensor(Shape{}, {v}); }
};

// Class-index targets (values as int64 whatever the dtype the library gets).
struct Targets {
  Shape shape;
  std::vector<std::int64_t> data;
};

enum class Reduction { kNone, kMean, kSum };

// ---- softmax.h ----------------------------------------------------------------------------------
// dim may be negative; a 0-d input is a 1-element vector (dim 0 or -1).
Tensor softmax(const Tensor& x, std::int64_t dim);
Tensor softmax_backward(const Tensor& y, const Tensor& dy, std::int64_t dim);
Tensor log_softmax(const Tensor& x, std::int64_t dim);
Tensor log_softmax_backward(const Tensor& y, const Tensor& dy, std::int64_t dim);
// PyTorch rule: max replaced by 0 when it is +-inf (an all -inf row gives -inf, not NaN).
Tensor logsumexp(const Tensor& x, std::int64_t dim);
Tensor logsumexp_backward(const Tensor& x, const Tensor& out, const Tensor& dout, std::int64_t dim);

// ---- losses.h -----------------------------------------------------------------------------------
// Input (C), (N, C) or (N, C, d1..dk); class dimension 1 (0 for a 1-d input).
struct CrossEntropyOptions {
  std::optional<Tensor> weight;  // (C)
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::kMean;
  Real label_smoothing = 0;
};

// Class-index targets: (1 - eps) * nll(log_softmax(x)) + eps / C * smooth, PyTorch's
// cross_entropy_loss_label_smoothing (eps = 0 is plain nll_loss_nd).
Tensor cross_entropy(const Tensor& input, const Targets& target, const CrossEntropyOptions& o);
// Gradient of sum(loss * dloss) (dloss shaped like the loss), as autograd composes it.
Tensor cross_entropy_backward(const Tensor& input, const Targets& target,
                              const CrossEntropyOptions& o, const Tensor& dloss);
// Per-token weights (xent's extension, class-index targets): token i's loss (as reduction none
// gives it) times tw[i], 0 where the target is ignored; the mean divides by the sum over kept
// tokens of tw[i] * w[t_i]. The backward is the gradient of sum(loss * dloss) (reduction none) or
// of the reduced loss times dloss.
Tensor cross_entropy_token_weighted(const Tensor& input, const Targets& target, const CrossEntropyOptions& o,
                                    const Tensor& token_weight);
Tensor cross_entropy_token_weighted_backward(const Tensor& input, const Targets& target,
                                             const CrossEntropyOptions& o, const Tensor& token_weight,
                                             const Tensor& dloss);
// Probability targets (input's shape), PyTorch's cross_entropy_loss_prob_target.
Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& o);
Tensor cross_entropy_backward(const Tensor& input, const Tensor& target,
                              const CrossEntropyOptions& o, const Tensor& dloss);

struct NllOptions {
  std::optional<Tensor> weight;  // (C)
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::kMean;
};
Tensor nll_loss(const Tensor& input, const Targets& target, const NllOptions& o);
Tensor nll_loss_backward(const Tensor& input, const Targets& target, const NllOptions& o,
                         const Tensor& dloss);

struct BceOptions {
  std::optional<Tensor> weight;      // broadcastable to the input's shape
  std::optional<Tensor> pos_weight;  // broadcastable; with-logits only
  Reduction reduction = Reduction::kMean;
};
Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, const BceOptions& o);
Tensor binary_cross_entropy_backward(const Tensor& input, const Tensor& target, const BceOptions& o,
                                     const Tensor& dloss);
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                        const BceOptions& o);
Tensor binary_cross_entropy_with_logits_backward(const Tensor& input, const Tensor& target,
                                                 const BceOptions& o, const Tensor& dloss);

// The values of `t` broadcast (NumPy rules) to `shape`; throws if they do not broadcast to it.
Tensor broadcast_to(const Tensor& t, const Shape& shape);

}  // namespace xent::ref
