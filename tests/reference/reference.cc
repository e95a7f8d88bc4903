// reference.cc: the long-double oracle (see reference.h). Plain loops, sequential long-double sums.
//
// Every formula cites the PyTorch 1.13 code it restates. Backward functions compose the autograd
// formulas the way PyTorch's graph does (e.g. cross-entropy backward = nll backward, then
// log_softmax backward dx = dy - exp(y) * sum(dy)), so they also reproduce PyTorch's NaNs.
// Not fast, not shared with the library, not validated input (it throws on misuse).
#include "reference/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace xent::ref {
namespace {

constexpr Real kNaN = std::numeric_limits<Real>::quiet_NaN();
constexpr Real kInf = std::numeric_limits<Real>::infinity();
// Loss.cpp: `constexpr float EPSILON = 1e-12;`, a float even for float64 data (9.99999996e-13).
constexpr Real kBceEpsilon = static_cast<Real>(1e-12f);

void check(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("xent::ref: " + what);
}

// A tensor seen as (outer, C, inner) around one dimension.
struct Layout {
  std::int64_t outer = 1, C = 1, inner = 1;
  std::int64_t dim = 0;  // normalised; 0 for a 0-d tensor
  std::int64_t at(std::int64_t o, std::int64_t c, std::int64_t i) const {
    return (o * C + c) * inner + i;
  }
  std::int64_t row(std::int64_t o, std::int64_t i) const { return o * inner + i; }
};

Layout layout_of(const Shape& s, std::int64_t dim) {
  Layout l;
  const auto rank = static_cast<std::int64_t>(s.size());
  if (rank == 0) {
    check(dim == 0 || dim == -1, "dim out of range for a 0-d tensor");
    return l;
  }
  if (dim < 0) dim += rank;
  check(dim >= 0 && dim < rank, "dim out of range");
  l.dim = dim;
  for (std::int64_t k = 0; k < dim; ++k) l.outer *= s[k];
  l.C = s[dim];
  for (std::int64_t k = dim + 1; k < rank; ++k) l.inner *= s[k];
  return l;
}

Shape reduced_shape(const Shape& s, const Layout& l) {
  return s.empty() ? Shape{} : shape_without(s, l.dim);
}

// NaN-propagating maximum of one row, -inf for an empty row.
Real row_max(const Tensor& x, const Layout& l, std::int64_t o, std::int64_t i) {
  Real m = -kInf;
  for (std::int64_t c = 0; c < l.C; ++c) {
    const Real v = x.data[l.at(o, c, i)];
    if (std::isnan(v)) return kNaN;
    if (v > m) m = v;
  }
  return m;
}

// Class layout of a loss input: (C) -> class dim 0, otherwise dim 1 (PyTorch's class_dim).
Layout class_layout(const Shape& input) {
  check(!input.empty(), "loss input must have rank >= 1");
  return layout_of(input, input.size() == 1 ? 0 : 1);
}

Real reduce(const Tensor& per_row, Reduction r, Real divisor) {
  Real s = 0;
  for (Real v : per_row.data) s += v;
  if (r == Reduction::kMean) return s / divisor;  // 0 / 0 = NaN for an empty mean
  return s;
}

// Gradient scale of element k of a loss: dloss[k] for kNone, dloss / divisor for kMean.
Real upstream(const Tensor& dloss, Reduction r, std::int64_t k, Real divisor) {
  if (r == Reduction::kNone) return dloss.data[k];
  check(dloss.numel() == 1, "dloss of a reduced loss must have one element");
  return r == Reduction::kMean ? dloss.data[0] / divisor : dloss.data[0];
}

Real weight_of(const std::optional<Tensor>& w, std::int64_t c) { return w ? w->data[c] : Real(1); }

void check_class_weight(const std::optional<Tensor>& w, std::int64_t C) {
  if (w) check(w->shape.size() == 1 && w->shape[0] == C, "class weight must have shape (C)");
}

void check_targets(const Tensor& input, const Targets& t) {
  Shape want = input.shape.size() == 1 ? Shape{} : shape_without(input.shape, 1);
  check(t.shape == want, "target shape must be the input's without the class dimension");
  check(static_cast<std::int64_t>(t.data.size()) == numel(t.shape), "target data size");
}

}  // namespace

std::int64_t numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

Shape shape_without(const Shape& shape, std::int64_t dim) {
  Shape out;
  for (std::size_t k = 0; k < shape.size(); ++k) {
    if (static_cast<std::int64_t>(k) != dim) out.push_back(shape[k]);
  }
  return out;
}

Tensor::Tensor(Shape s, std::vector<Real> d) : shape(std::move(s)), data(std::move(d)) {
  check(static_cast<std::int64_t>(data.size()) == ref::numel(shape), "data size does not match shape");
}

Tensor broadcast_to(const Tensor& t, const Shape& shape) {
  const auto rank = static_cast<std::int64_t>(shape.size());
  const auto trank = static_cast<std::int64_t>(t.shape.size());
  check(trank <= rank, "cannot broadcast to a lower rank");
  // Right-aligned strides of t, 0 where t's dim is 1 (or missing).
  std::vector<std::int64_t> stride(rank, 0);
  std::int64_t st = 1;
  for (std::int64_t k = trank - 1; k >= 0; --k) {
    const std::int64_t out_k = k + rank - trank;
    check(t.shape[k] == 1 || t.shape[k] == shape[out_k], "shape does not broadcast");
    stride[out_k] = t.shape[k] == 1 ? 0 : st;
    st *= t.shape[k];
  }
  Tensor out(shape);
  std::vector<std::int64_t> idx(rank, 0);
  for (std::int64_t e = 0; e < out.numel(); ++e) {
    std::int64_t src = 0;
    for (std::int64_t k = 0; k < rank; ++k) src += idx[k] * stride[k];
    out.data[e] = t.data[src];
    for (std::int64_t k = rank - 1; k >= 0; --k) {  // odometer
      if (++idx[k] < shape[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

// ---- softmax family (SoftMax.cpp host_softmax / _vec_log_softmax; ReduceOps.cpp logsumexp) -----

Tensor softmax(const Tensor& x, std::int64_t dim) {
  const Layout l = layout_of(x.shape, dim);
  Tensor y(x.shape);
  for (std::int64_t o = 0; o < l.outer; ++o) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      const Real m = row_max(x, l, o, i);
      Real s = 0;
      for (std::int64_t c = 0; c < l.C; ++c) s += std::exp(x.data[l.at(o, c, i)] - m);
      for (std::int64_t c = 0; c < l.C; ++c) {
        y.data[l.at(o, c, i)] = std::exp(x.data[l.at(o, c, i)] - m) / s;
      }
    }
  }
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& dy, std::int64_t dim) {
  check(y.shape == dy.shape, "softmax_backward shapes");
  const Layout l = layout_of(y.shape, dim);
  Tensor dx(y.shape);
  for (std::int64_t o = 0; o < l.outer; ++o) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      Real dot = 0;
      for (std::int64_t c = 0; c < l.C; ++c) dot += dy.data[l.at(o, c, i)] * y.data[l.at(o, c, i)];
      for (std::int64_t c = 0; c < l.C; ++c) {
        const auto k = l.at(o, c, i);
        dx.data[k] = y.data[k] * (dy.data[k] - dot);
      }
    }
  }
  return dx;
}

Tensor log_softmax(const Tensor& x, std::int64_t dim) {
  const Layout l = layout_of(x.shape, dim);
  Tensor y(x.shape);
  for (std::int64_t o = 0; o < l.outer; ++o) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      const Real m = row_max(x, l, o, i);
      Real s = 0;
      for (std::int64_t c = 0; c < l.C; ++c) s += std::exp(x.data[l.at(o, c, i)] - m);
      const Real log_s = std::log(s);
      for (std::int64_t c = 0; c < l.C; ++c) {
        y.data[l.at(o, c, i)] = (x.data[l.at(o, c, i)] - m) - log_s;
      }
    }
  }
  return y;
}

Tensor log_softmax_backward(const Tensor& y, const Tensor& dy, std::int64_t dim) {
  check(y.shape == dy.shape, "log_softmax_backward shapes");
  const Layout l = layout_of(y.shape, dim);
  Tensor dx(y.shape);
  for (std::int64_t o = 0; o < l.outer; ++o) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      Real sum = 0;
      for (std::int64_t c = 0; c < l.C; ++c) sum += dy.data[l.at(o, c, i)];
      for (std::int64_t c = 0; c < l.C; ++c) {
        const auto k = l.at(o, c, i);
        dx.data[k] = dy.data[k] - std::exp(y.data[k]) * sum;
      }
    }
  }
  return dx;
}

Tensor logsumexp(const Tensor& x, std::int64_t dim) {
  const Layout l = layout_of(x.shape, dim);
  Tensor out(reduced_shape(x.shape, l));
  for (std::int64_t o = 0; o < l.outer; ++o) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      Real m = row_max(x, l, o, i);
      if (std::isinf(m)) m = 0;  // maxes.masked_fill_(maxes.abs() == INFINITY, 0)
      Real s = 0;
      for (std::int64_t c = 0; c < l.C; ++c) s += std::exp(x.data[l.at(o, c, i)] - m);
      out.data[l.row(o, i)] = std::log(s) + m;
    }
  }
  return out;
}

Tensor logsumexp_backward(const Tensor& x, const Tensor& out, const Tensor& dout, std::int64_t dim) {
  const Layout l = layout_of(x.shape, dim);
  check(out.shape == reduced_shape(x.shape, l) && dout.shape == out.shape, "logsumexp_backward shapes");
  Tensor dx(x.shape);
  for (std::int64_t o = 0; o < l.outer; ++o) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      const Real r = out.data[l.row(o, i)], g = dout.data[l.row(o, i)];
      for (std::int64_t c = 0; c < l.C; ++c) {
        const auto k = l.at(o, c, i);
        dx.data[k] = g * std::exp(x.data[k] - r);  // derivatives.yaml: grad * (self - result).exp()
      }
    }
  }
  return dx;
}

// ---- nll_loss (LossNLL.cpp nll_loss_out_frame / nll_loss_backward_out_frame, nll_loss2d) ------

namespace {

// Per-position nll terms and the mean's divisor (sum of picked weights over non-ignored targets).
struct NllParts {
  Tensor loss;          // target's shape
  Real total_weight = 0;
};

NllParts nll_parts(const Tensor& logp, const Targets& t, const std::optional<Tensor>& weight,
                   std::int64_t ignore_index) {
  const Layout l = class_layout(logp.shape);
  check_targets(logp, t);
  check_class_weight(weight, l.C);
  NllParts p{Tensor(t.shape), 0};
  for (std::int64_t o = 0; o < l.outer; ++o) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      const auto r = l.row(o, i);
      const std::int64_t target = t.data[r];
      if (target == ignore_index) continue;  // contributes 0 and no weight
      check(target >= 0 && target < l.C, "target out of range: " + std::to_string(target));
      const Real w = weight_of(weight, target);
      p.loss.data[r] = -w * logp.data[l.at(o, target, i)];
      p.total_weight += w;
    }
  }
  return p;
}

}  // namespace

Tensor nll_loss(const Tensor& input, const Targets& target, const NllOptions& o) {
  NllParts p = nll_parts(input, target, o.weight, o.ignore_index);
  if (o.reduction == Reduction::kNone) return p.loss;
  return Tensor::scalar(reduce(p.loss, o.reduction, p.total_weight));
}

Tensor nll_loss_backward(const Tensor& input, const Targets& target, const NllOptions& o,
                         const Tensor& dloss) {
  const NllParts p = nll_parts(input, target, o.weight, o.ignore_index);
  if (o.reduction == Reduction::kNone) check(dloss.shape == target.shape, "dloss shape");
  const Layout l = class_layout(input.shape);
  Tensor dx(input.shape);
  for (std::int64_t b = 0; b < l.outer; ++b) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      const auto r = l.row(b, i);
      const std::int64_t t = target.data[r];
      if (t == o.ignore_index) continue;
      const Real g = upstream(dloss, o.reduction, r, p.total_weight);
      dx.data[l.at(b, t, i)] = weight_of(o.weight, t) * -g;
    }
  }
  return dx;
}


// ---- cross_entropy (LossNLL.cpp cross_entropy_loss_symint and its two helpers) -----------------

namespace {

// -sum_c w_c * logp_c per position, 0 where the target is ignored.
Tensor smooth_terms(const Tensor& logp, const Targets& t, const std::optional<Tensor>& weight,
                    std::int64_t ignore_index) {
  const Layout l = class_layout(logp.shape);
  Tensor s(t.shape);
  for (std::int64_t o = 0; o < l.outer; ++o) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      const auto r = l.row(o, i);
      if (t.data[r] == ignore_index) continue;  // smooth_loss.masked_fill_(ignore_mask, 0.0)
      Real acc = 0;
      for (std::int64_t c = 0; c < l.C; ++c) acc += logp.data[l.at(o, c, i)] * weight_of(weight, c);
      s.data[r] = -acc;
    }
  }
  return s;
}

void check_smoothing(Real eps) { check(eps >= 0 && eps <= 1, "label_smoothing outside [0, 1]"); }

// target * (1 - eps) + eps / C (cross_entropy_loss_prob_target), or target when eps == 0.
Real smoothed_prob(Real t, Real eps, std::int64_t C) {
  return eps > 0 ? t * (1 - eps) + eps / static_cast<Real>(C) : t;
}

}  // namespace

Tensor cross_entropy(const Tensor& input, const Targets& target, const CrossEntropyOptions& o) {
  check_smoothing(o.label_smoothing);
  const Layout l = class_layout(input.shape);
  const Tensor logp = log_softmax(input, l.dim);
  const NllParts nll = nll_parts(logp, target, o.weight, o.ignore_index);
  const Real eps = o.label_smoothing;
  if (eps == 0) {  // plain nll_loss_nd(log_softmax(x)): no smoothing term at all
    if (o.reduction == Reduction::kNone) return nll.loss;
    return Tensor::scalar(reduce(nll.loss, o.reduction, nll.total_weight));
  }
  const Tensor smooth = smooth_terms(logp, target, o.weight, o.ignore_index);
  const Real k = eps / static_cast<Real>(l.C);
  if (o.reduction == Reduction::kNone) {
    Tensor out(target.shape);
    for (std::int64_t r = 0; r < out.numel(); ++r) {
      out.data[r] = (1 - eps) * nll.loss.data[r] + smooth.data[r] * k;
    }
    return out;
  }
  // Mean: both terms divide by the sum of w[target] over non-ignored targets (the count without
  // weights), which is nll's total_weight.
  const Real nll_red = reduce(nll.loss, o.reduction, nll.total_weight);
  const Real smooth_red = reduce(smooth, o.reduction, nll.total_weight);
  return Tensor::scalar((1 - eps) * nll_red + smooth_red * k);
}

Tensor cross_entropy_backward(const Tensor& input, const Targets& target,
                              const CrossEntropyOptions& o, const Tensor& dloss) {
  check_smoothing(o.label_smoothing);
  const Layout l = class_layout(input.shape);
  const Tensor logp = log_softmax(input, l.dim);
  const NllParts nll = nll_parts(logp, target, o.weight, o.ignore_index);
  if (o.reduction == Reduction::kNone) check(dloss.shape == target.shape, "dloss shape");
  const Real eps = o.label_smoothing;
  const Real k = eps / static_cast<Real>(l.C);
  // d loss / d logp, then log_softmax backward (dx = dy - exp(y) * sum(dy)) per row.
  Tensor dlogp(input.shape);
  for (std::int64_t b = 0; b < l.outer; ++b) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      const auto r = l.row(b, i);
      const std::int64_t t = target.data[r];
      if (t == o.ignore_index) continue;  // no gradient from nll or the masked smooth term
      const Real g = upstream(dloss, o.reduction, r, nll.total_weight);
      if (eps == 0) {
        dlogp.data[l.at(b, t, i)] = weight_of(o.weight, t) * -g;
      } else {
        dlogp.data[l.at(b, t, i)] = weight_of(o.weight, t) * -(g * (1 - eps));
        for (std::int64_t c = 0; c < l.C; ++c) dlogp.data[l.at(b, c, i)] -= g * k * weight_of(o.weight, c);
      }
    }
  }
  return log_softmax_backward(logp, dlogp, l.dim);
}

namespace {

// The mean's divisor with token weights: sum over kept tokens of tw[i] * w[t_i].
Real token_weighted_divisor(const Targets& target, const CrossEntropyOptions& o, const Tensor& tw) {
  check(tw.shape == target.shape, "token_weight must have the target's shape");
  Real d = 0;
  for (std::int64_t r = 0; r < tw.numel(); ++r)
    if (target.data[r] != o.ignore_index) d += tw.data[r] * weight_of(o.weight, target.data[r]);
  return d;
}

}  // namespace

Tensor cross_entropy_token_weighted(const Tensor& input, const Targets& target, const CrossEntropyOptions& o,
                                    const Tensor& token_weight) {
  CrossEntropyOptions none = o;
  none.reduction = Reduction::kNone;
  Tensor per = cross_entropy(input, target, none);
  const Real divisor = token_weighted_divisor(target, o, token_weight);
  for (std::int64_t r = 0; r < per.numel(); ++r)
    per.data[r] = target.data[r] == o.ignore_index ? Real(0) : per.data[r] * token_weight.data[r];
  if (o.reduction == Reduction::kNone) return per;
  return Tensor::scalar(reduce(per, o.reduction, divisor));
}

Tensor cross_entropy_token_weighted_backward(const Tensor& input, const Targets& target,
                                             const CrossEntropyOptions& o, const Tensor& token_weight,
                                             const Tensor& dloss) {
  // d/dx of sum_i tw_i g_i loss_i: reduction none's backward with the upstream tw_i g_i.
  const Real divisor = token_weighted_divisor(target, o, token_weight);
  Tensor g(target.shape);
  for (std::int64_t r = 0; r < g.numel(); ++r) {
    if (target.data[r] == o.ignore_index) continue;
    g.data[r] = token_weight.data[r] * upstream(dloss, o.reduction, r, divisor);
  }
  CrossEntropyOptions none = o;
  none.reduction = Reduction::kNone;
  return cross_entropy_backward(input, target, none, g);
}

Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& o) {
  check_smoothing(o.label_smoothing);
  check(o.ignore_index < 0, "ignore_index must be negative with probability targets");
  check(input.shape == target.shape, "probability target must have the input's shape");
  const Layout l = class_layout(input.shape);
  check_class_weight(o.weight, l.C);
  const Tensor logp = log_softmax(input, l.dim);
  Tensor per_row(shape_without(input.shape, l.dim));
  for (std::int64_t b = 0; b < l.outer; ++b) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      Real acc = 0;
      for (std::int64_t c = 0; c < l.C; ++c) {
        const auto k = l.at(b, c, i);
        // 0 * (-inf) = NaN here, as in PyTorch's -(input * target * weight).sum().
        acc += logp.data[k] * smoothed_prob(target.data[k], o.label_smoothing, l.C) * weight_of(o.weight, c);
      }
      per_row.data[l.row(b, i)] = -acc;
    }
  }
  if (o.reduction == Reduction::kNone) return per_row;
  if (o.reduction == Reduction::kMean && input.numel() == 0) return Tensor::scalar(kNaN);
  // Mean divides by numel / C = the number of rows (positions), whatever the weights.
  return Tensor::scalar(reduce(per_row, o.reduction, static_cast<Real>(l.outer * l.inner)));
}

Tensor cross_entropy_backward(const Tensor& input, const Tensor& target,
                              const CrossEntropyOptions& o, const Tensor& dloss) {
  check_smoothing(o.label_smoothing);
  check(o.ignore_index < 0, "ignore_index must be negative with probability targets");
  check(input.shape == target.shape, "probability target must have the input's shape");
  const Layout l = class_layout(input.shape);
  check_class_weight(o.weight, l.C);
  if (o.reduction == Reduction::kNone) check(dloss.shape == shape_without(input.shape, l.dim), "dloss shape");
  const Tensor logp = log_softmax(input, l.dim);
  Tensor dlogp(input.shape);
  const Real rows = static_cast<Real>(l.outer * l.inner);
  for (std::int64_t b = 0; b < l.outer; ++b) {
    for (std::int64_t i = 0; i < l.inner; ++i) {
      const Real g = upstream(dloss, o.reduction, l.row(b, i), rows);
      for (std::int64_t c = 0; c < l.C; ++c) {
        const auto k = l.at(b, c, i);
        dlogp.data[k] = -g * smoothed_prob(target.data[k], o.label_smoothing, l.C) * weight_of(o.weight, c);
      }
    }
  }
  return log_softmax_backward(logp, dlogp, l.dim);
}

// ---- binary cross-entropy (Loss.cpp binary_cross_entropy_out_cpu / _backward_out_cpu) ----------

namespace {

void check_same_shape(const Tensor& input, const Tensor& target) {
  check(input.shape == target.shape, "target must have the input's shape");
}

Tensor expand_or_ones(const std::optional<Tensor>& t, const Shape& shape) {
  if (!t) return Tensor(shape, std::vector<Real>(static_cast<std::size_t>(numel(shape)), Real(1)));
  return broadcast_to(*t, shape);
}

Tensor reduce_elementwise(const Tensor& loss, Reduction r) {
  if (r == Reduction::kNone) return loss;
  return Tensor::scalar(reduce(loss, r, static_cast<Real>(loss.numel())));  // mean / numel
}

}  // namespace

Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, const BceOptions& o) {
  check_same_shape(input, target);
  check(!o.pos_weight, "binary_cross_entropy takes no pos_weight");
  const Tensor w = expand_or_ones(o.weight, input.shape);
  Tensor loss(input.shape);
  for (std::int64_t k = 0; k < input.numel(); ++k) {
    const Real p = input.data[k], t = target.data[k];
    check(p >= 0 && p <= 1, "binary_cross_entropy input outside [0, 1]");
    const Real log_1mp = std::max(std::log1p(-p), Real(-100));
    const Real log_p = std::max(std::log(p), Real(-100));
    loss.data[k] = ((t - 1) * log_1mp - t * log_p) * w.data[k];
  }
  return reduce_elementwise(loss, o.reduction);
}

Tensor binary_cross_entropy_backward(const Tensor& input, const Tensor& target, const BceOptions& o,
                                     const Tensor& dloss) {
  check_same_shape(input, target);
  check(!o.pos_weight, "binary_cross_entropy takes no pos_weight");
  if (o.reduction == Reduction::kNone) check(dloss.shape == input.shape, "dloss shape");
  const Tensor w = expand_or_ones(o.weight, input.shape);
  Tensor dx(input.shape);
  const Real n = static_cast<Real>(input.numel());
  for (std::int64_t k = 0; k < input.numel(); ++k) {
    const Real p = input.data[k], t = target.data[k];
    check(p >= 0 && p <= 1, "binary_cross_entropy input outside [0, 1]");
    const Real g = upstream(dloss, o.reduction, k, n);
    dx.data[k] = g * (p - t) / std::max((1 - p) * p, kBceEpsilon) * w.data[k];
  }
  return dx;
}

// Loss.cpp binary_cross_entropy_with_logits: max_val = (-x).clamp_min(0), then
// (1 - t) * x + lw * (log(exp(-max_val) + exp(-x - max_val)) + max_val), lw = (pw - 1) * t + 1,
// restated exactly as docs/numerics.md writes it, without cancellation: the softplus is
// max_val + log1p(exp(-|x|)), and for x < 0, (1 - t) * x + lw * max_val = -(pw * t) * x.
// Without pos_weight lw = 1 (pw = 1). PyTorch's form gives NaN at x = -inf (inf - inf), kept, and
// at x = +inf, t = 1 ((1 - t) * x = 0 * inf).
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                        const BceOptions& o) {
  check_same_shape(input, target);
  const Tensor w = expand_or_ones(o.weight, input.shape);
  const Tensor pw = expand_or_ones(o.pos_weight, input.shape);
  Tensor loss(input.shape);
  for (std::int64_t k = 0; k < input.numel(); ++k) {
    const Real x = input.data[k], t = target.data[k];
    const Real p = o.pos_weight ? pw.data[k] : Real(1);
    const Real lw = o.pos_weight ? (pw.data[k] - 1) * t + 1 : Real(1);
    const Real lin = x >= 0 ? (1 - t) * x : -(p * t) * x;
    const Real softplus_part = std::log1p(std::exp(-std::fabs(x)));
    const Real l = std::isinf(x) && x < 0 ? std::numeric_limits<Real>::quiet_NaN() : lin + lw * softplus_part;
    loss.data[k] = l * w.data[k];
  }
  return reduce_elementwise(loss, o.reduction);
}

Tensor binary_cross_entropy_with_logits_backward(const Tensor& input, const Tensor& target,
                                                 const BceOptions& o, const Tensor& dloss) {
  check_same_shape(input, target);
  if (o.reduction == Reduction::kNone) check(dloss.shape == input.shape, "dloss shape");
  const Tensor w = expand_or_ones(o.weight, input.shape);
  const Tensor pw = expand_or_ones(o.pos_weight, input.shape);
  Tensor dx(input.shape);
  const Real n = static_cast<Real>(input.numel());
  for (std::int64_t k = 0; k < input.numel(); ++k) {
    const Real x = input.data[k], t = target.data[k];
    const Real g = upstream(dloss, o.reduction, k, n);
    const Real sig = 1 / (1 + std::exp(-x));
    Real d;
    if (o.pos_weight) {
      const Real pt = pw.data[k] * t;
      d = ((pt + 1 - t) * sig - pt) * g;
    } else {
      d = (sig - t) * g;
    }
    dx.data[k] = d * w.data[k];
  }
  return dx;
}

}  // namespace xent::ref
