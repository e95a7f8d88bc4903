// op_checks.h: "run this op on these inputs through xent and through the oracle, compare" for every
// op, forward, backward (random dloss) and fused. Shared by the reference, edge-case and ISA tests.
//
// Each check_* function records gtest failures (callers add SCOPED_TRACE with the case's name).
// The per-element scales implement the tolerance model of test_util.h: the sum of the magnitudes of
// the terms the element is computed from. Not a place for expectations about specific values.
#pragma once

#include <optional>

#include "test_util.h"

namespace xent::test {

// A tensor seen as (outer, C, inner) around the class / softmax dimension.
struct Rows {
  std::int64_t outer = 1, C = 1, inner = 1;
  std::int64_t at(std::int64_t o, std::int64_t c, std::int64_t i) const { return (o * C + c) * inner + i; }
  std::int64_t row(std::int64_t o, std::int64_t i) const { return o * inner + i; }
  std::int64_t rows() const { return outer * inner; }

  static Rows around(const ref::Shape& s, std::int64_t dim) {
    Rows r;
    const auto rank = static_cast<std::int64_t>(s.size());
    if (rank == 0) return r;
    if (dim < 0) dim += rank;
    r.outer = 1;
    for (std::int64_t k = 0; k < dim; ++k) r.outer *= s[k];
    r.C = s[dim];
    r.inner = 1;
    for (std::int64_t k = dim + 1; k < rank; ++k) r.inner *= s[k];
    return r;
  }
  static Rows classes(const ref::Shape& s) { return around(s, s.size() == 1 ? 0 : 1); }
};

// Per-row statistics of x along the dimension: max m and range R = max |x - m| over finite x.
struct RowStats {
  std::vector<Real> m, R;
};
inline RowStats row_stats(const ref::Tensor& x, const Rows& r) {
  RowStats st{std::vector<Real>(r.rows(), 0), std::vector<Real>(r.rows(), 0)};
  for (std::int64_t o = 0; o < r.outer; ++o) {
    for (std::int64_t i = 0; i < r.inner; ++i) {
      Real m = -INFINITY;
      for (std::int64_t c = 0; c < r.C; ++c) m = std::max(m, x.data[r.at(o, c, i)]);
      Real R = 0;
      for (std::int64_t c = 0; c < r.C; ++c) {
        const Real v = x.data[r.at(o, c, i)];
        if (std::isfinite(v) && std::isfinite(m)) R = std::max(R, std::fabs(v - m));
      }
      st.m[r.row(o, i)] = std::isfinite(m) ? m : 0;
      st.R[r.row(o, i)] = R;
    }
  }
  return st;
}

// a * b, but 0 when a is 0 (so that an exact-zero output with an infinite factor keeps scale 0).
inline Real times(Real a, Real b) { return a == 0 ? Real(0) : a * b; }
inline Real finite_or0(Real v) { return std::isfinite(v) ? v : Real(0); }

inline Real fabs_sum(const std::vector<Real>& v) {
  Real s = 0;
  for (Real x : v) s += std::fabs(x);
  return s;
}

template <class T>
Buf<T> random_dloss(Rng& rng, const ref::Shape& loss_shape) {
  return rng.uniform_buf<T>(loss_shape, -2.0, 2.0);
}

// ---- softmax / log_softmax / logsumexp ----------------------------------------------------------

template <class T>
void check_softmax_family(const Buf<T>& x, std::int64_t dim, Rng& rng) {
  const ref::Tensor rx = x.to_ref();
  const Rows r = Rows::around(x.shape, dim);
  const RowStats st = row_stats(rx, r);
  const ref::Shape red_shape = x.shape.empty() ? ref::Shape{} : ref::shape_without(x.shape, dim < 0 ? dim + static_cast<std::int64_t>(x.shape.size()) : dim);

  // softmax forward + backward
  {
    Buf<T> y(x.shape, T(-7));
    const Status s = softmax_forward(x.cview(), dim, y.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    const ref::Tensor ry = ref::softmax(rx, dim);
    std::vector<Real> sc(ry.numel());
    for (std::int64_t o = 0; o < r.outer; ++o)
      for (std::int64_t i = 0; i < r.inner; ++i)
        for (std::int64_t c = 0; c < r.C; ++c) {
          const auto k = r.at(o, c, i);
          sc[k] = times(std::fabs(ry.data[k]), 2 + std::fabs(rx.data[k] - st.m[r.row(o, i)]) + st.R[r.row(o, i)]);
        }
    EXPECT_TRUE(close_to(y.v, ry, sc)) << "softmax_forward";

    // Backward from the oracle's y rounded to T (a valid softmax output) and a random dy.
    const Buf<T> yin = Buf<T>::from_ref(ry);
    const Buf<T> dy = rng.uniform_buf<T>(x.shape, -1.0, 1.0);
    Buf<T> dx(x.shape, T(-7));
    const Status sb = softmax_backward(yin.cview(), dy.cview(), dim, dx.view());
    ASSERT_TRUE(sb.ok()) << sb.to_string();
    const ref::Tensor ryin = yin.to_ref(), rdy = dy.to_ref();
    const ref::Tensor rdx = ref::softmax_backward(ryin, rdy, dim);
    for (std::int64_t o = 0; o < r.outer; ++o)
      for (std::int64_t i = 0; i < r.inner; ++i) {
        Real dot = 0;
        for (std::int64_t c = 0; c < r.C; ++c) dot += std::fabs(ryin.data[r.at(o, c, i)] * rdy.data[r.at(o, c, i)]);
        for (std::int64_t c = 0; c < r.C; ++c) {
          const auto k = r.at(o, c, i);
          sc[k] = 2 * std::fabs(ryin.data[k]) * (std::fabs(rdy.data[k]) + dot) + std::fabs(rdx.data[k]);
        }
      }
    EXPECT_TRUE(close_to(dx.v, rdx, sc)) << "softmax_backward";
  }
  // log_softmax forward + backward
  {
    Buf<T> y(x.shape, T(-7));
    const Status s = log_softmax_forward(x.cview(), dim, y.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    const ref::Tensor ry = ref::log_softmax(rx, dim);
    std::vector<Real> sc(ry.numel());
    for (std::int64_t o = 0; o < r.outer; ++o)
      for (std::int64_t i = 0; i < r.inner; ++i)
        for (std::int64_t c = 0; c < r.C; ++c) {
          const auto k = r.at(o, c, i);
          sc[k] = std::fabs(rx.data[k]) + std::fabs(st.m[r.row(o, i)]) + std::fabs(ry.data[k]) + st.R[r.row(o, i)] + 1;
        }
    EXPECT_TRUE(close_to(y.v, ry, sc)) << "log_softmax_forward";

    const Buf<T> yin = Buf<T>::from_ref(ry);
    const Buf<T> dy = rng.uniform_buf<T>(x.shape, -1.0, 1.0);
    Buf<T> dx(x.shape, T(-7));
    const Status sb = log_softmax_backward(yin.cview(), dy.cview(), dim, dx.view());
    ASSERT_TRUE(sb.ok()) << sb.to_string();
    const ref::Tensor ryin = yin.to_ref(), rdy = dy.to_ref();
    const ref::Tensor rdx = ref::log_softmax_backward(ryin, rdy, dim);
    for (std::int64_t o = 0; o < r.outer; ++o)
      for (std::int64_t i = 0; i < r.inner; ++i) {
        Real sum = 0;
        for (std::int64_t c = 0; c < r.C; ++c) sum += std::fabs(rdy.data[r.at(o, c, i)]);
        for (std::int64_t c = 0; c < r.C; ++c) {
          const auto k = r.at(o, c, i);
          sc[k] = std::fabs(rdy.data[k]) + times(std::exp(ryin.data[k]) * sum, 2 + std::fabs(ryin.data[k])) + std::fabs(rdx.data[k]);
        }
      }
    EXPECT_TRUE(close_to(dx.v, rdx, sc)) << "log_softmax_backward";
  }
  // logsumexp forward + backward
  {
    Buf<T> out(red_shape, T(-7));
    const Status s = logsumexp_forward(x.cview(), dim, out.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    const ref::Tensor rout = ref::logsumexp(rx, dim);
    std::vector<Real> sc(rout.numel());
    for (std::int64_t k = 0; k < rout.numel(); ++k) sc[k] = std::fabs(st.m[k]) + std::fabs(rout.data[k]) + st.R[k] + 1;
    EXPECT_TRUE(close_to(out.v, rout, sc)) << "logsumexp_forward";

    const Buf<T> oin = Buf<T>::from_ref(rout);
    const Buf<T> dout = rng.uniform_buf<T>(red_shape, -1.0, 1.0);
    Buf<T> dx(x.shape, T(-7));
    const Status sb = logsumexp_backward(x.cview(), oin.cview(), dout.cview(), dim, dx.view());
    ASSERT_TRUE(sb.ok()) << sb.to_string();
    const ref::Tensor roin = oin.to_ref();
    const ref::Tensor rdx = ref::logsumexp_backward(rx, roin, dout.to_ref(), dim);
    std::vector<Real> sc2(rdx.numel());
    for (std::int64_t o = 0; o < r.outer; ++o)
      for (std::int64_t i = 0; i < r.inner; ++i)
        for (std::int64_t c = 0; c < r.C; ++c) {
          const auto k = r.at(o, c, i);
          sc2[k] = times(std::fabs(rdx.data[k]), 2 + std::fabs(rx.data[k]) + std::fabs(roin.data[r.row(o, i)]));
        }
    EXPECT_TRUE(close_to(dx.v, rdx, sc2)) << "logsumexp_backward";
  }
}

// ---- cross-entropy with class indices -----------------------------------------------------------

struct CeCase {
  std::int64_t ignore_index = -100;
  ref::Reduction reduction = ref::Reduction::kMean;
  double label_smoothing = 0;
  Summation summation = Summation::kFast;
};

inline ref::Shape loss_shape_of(ref::Reduction red, const ref::Shape& per_row) {
  return red == ref::Reduction::kNone ? per_row : ref::Shape{};
}

// Upstream gradient of row r: dloss[r] (kNone) or dloss / divisor (kMean) or dloss (kSum).
inline Real row_upstream(const ref::Tensor& dloss, ref::Reduction red, std::int64_t r, Real divisor) {
  if (red == ref::Reduction::kNone) return dloss.data[r];
  return red == ref::Reduction::kMean ? dloss.data[0] / divisor : dloss.data[0];
}

// Reduces per-row scales like the loss: as is (kNone), summed (kSum), summed / |divisor| (kMean);
// adds |oracle| for the final rounding.
inline std::vector<Real> reduce_scales(const std::vector<Real>& rows, ref::Reduction red, Real divisor,
                                       const ref::Tensor& oracle) {
  std::vector<Real> out;
  if (red == ref::Reduction::kNone) {
    out = rows;
  } else {
    Real s = 0;
    for (Real v : rows) s += v;
    out = {red == ref::Reduction::kMean ? s / std::fabs(divisor) : s};
  }
  for (std::size_t k = 0; k < out.size(); ++k) out[k] += std::fabs(oracle.data[k]);
  return out;
}

template <class T, class I>
void check_cross_entropy(const Buf<T>& x, const Buf<I>& target, const std::optional<Buf<T>>& weight,
                         const CeCase& cs, Rng& rng) {
  const ref::Tensor rx = x.to_ref();
  const ref::Targets rt = target.to_targets();
  ref::CrossEntropyOptions ro;
  if (weight) ro.weight = weight->to_ref();
  ro.ignore_index = cs.ignore_index;
  ro.reduction = cs.reduction;
  ro.label_smoothing = static_cast<Real>(cs.label_smoothing);
  CrossEntropyOptions xo;
  if (weight) xo.weight = weight->cview();
  xo.ignore_index = cs.ignore_index;
  xo.reduction = to_xent(cs.reduction);
  xo.label_smoothing = cs.label_smoothing;
  xo.summation = cs.summation;

  const Rows r = Rows::classes(x.shape);
  const RowStats st = row_stats(rx, r);
  const ref::Tensor lse = ref::logsumexp(rx, x.shape.size() == 1 ? 0 : 1);
  Real wmax = 1;
  if (weight) {
    wmax = 0;
    for (T w : weight->v) wmax = std::max<Real>(wmax, std::fabs(static_cast<Real>(w)));
  }
  Real divisor = 0;
  std::vector<Real> row_scale(r.rows(), 0);
  for (std::int64_t o = 0; o < r.outer; ++o)
    for (std::int64_t i = 0; i < r.inner; ++i) {
      const auto rr = r.row(o, i);
      const std::int64_t t = rt.data[rr];
      if (t == cs.ignore_index) continue;
      divisor += weight ? std::fabs(static_cast<Real>(weight->v[t])) : 1;
      Real zmax = 0;
      for (std::int64_t c = 0; c < r.C; ++c) zmax = std::max(zmax, std::fabs(finite_or0(rx.data[r.at(o, c, i)])));
      row_scale[rr] = wmax * (std::fabs(finite_or0(lse.data[rr])) + zmax + st.R[rr] + 1);
    }

  const ref::Shape lshape = loss_shape_of(cs.reduction, target.shape);
  const ref::Tensor rloss = ref::cross_entropy(rx, rt, ro);
  const std::vector<Real> lscale = reduce_scales(row_scale, cs.reduction, divisor, rloss);
  {
    Buf<T> loss(lshape, T(-7));
    const Status s = cross_entropy_forward(x.cview(), target.cview(), xo, loss.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_TRUE(close_to(loss.v, rloss, lscale)) << "cross_entropy_forward";
  }
  // Gradient scales for an upstream dloss: |g| wmax (1 + p_c (2 + 2R)) + |oracle|.
  const ref::Tensor p = ref::softmax(rx, x.shape.size() == 1 ? 0 : 1);
  auto grad_scales = [&](const ref::Tensor& dloss, const ref::Tensor& rdx) {
    std::vector<Real> sc(rdx.numel(), 0);
    for (std::int64_t o = 0; o < r.outer; ++o)
      for (std::int64_t i = 0; i < r.inner; ++i) {
        const auto rr = r.row(o, i);
        const bool ignored = rt.data[rr] == cs.ignore_index;
        const Real g = ignored ? 0 : std::fabs(row_upstream(dloss, cs.reduction, rr, divisor));
        for (std::int64_t c = 0; c < r.C; ++c) {
          const auto k = r.at(o, c, i);
          sc[k] = g * wmax * (1 + finite_or0(p.data[k]) * (2 + 2 * st.R[rr])) + std::fabs(finite_or0(rdx.data[k]));
        }
      }
    return sc;
  };
  {
    const Buf<T> dloss = random_dloss<T>(rng, lshape);
    const ref::Tensor rdloss = dloss.to_ref();
    Buf<T> dx(x.shape, T(-7));
    const Status s = cross_entropy_backward(x.cview(), target.cview(), xo, dloss.cview(), dx.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    const ref::Tensor rdx = ref::cross_entropy_backward(rx, rt, ro, rdloss);
    EXPECT_TRUE(close_to(dx.v, rdx, grad_scales(rdloss, rdx))) << "cross_entropy_backward";
  }
  {
    Buf<T> loss(lshape, T(-7)), dx(x.shape, T(-7));
    const Status s = cross_entropy_fused(x.cview(), target.cview(), xo, loss.view(), dx.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_TRUE(close_to(loss.v, rloss, lscale)) << "cross_entropy_fused loss";
    const ref::Tensor ones(lshape, std::vector<Real>(static_cast<std::size_t>(ref::numel(lshape)), 1));
    const ref::Tensor rdx = ref::cross_entropy_backward(rx, rt, ro, ones);
    EXPECT_TRUE(close_to(dx.v, rdx, grad_scales(ones, rdx))) << "cross_entropy_fused dinput";
  }
}

// ---- cross-entropy with probability targets -----------------------------------------------------

template <class T>
void check_cross_entropy_probs(const Buf<T>& x, const Buf<T>& target, const std::optional<Buf<T>>& weight,
                               ref::Reduction red, double eps, Rng& rng) {
  const ref::Tensor rx = x.to_ref(), rt = target.to_ref();
  ref::CrossEntropyOptions ro;
  if (weight) ro.weight = weight->to_ref();
  ro.reduction = red;
  ro.label_smoothing = static_cast<Real>(eps);
  CrossEntropyOptions xo;
  if (weight) xo.weight = weight->cview();
  xo.reduction = to_xent(red);
  xo.label_smoothing = eps;

  const std::int64_t cdim = x.shape.size() == 1 ? 0 : 1;
  const Rows r = Rows::classes(x.shape);
  const RowStats st = row_stats(rx, r);
  const ref::Tensor lse = ref::logsumexp(rx, cdim);
  const ref::Tensor p = ref::softmax(rx, cdim);
  auto coef = [&](std::int64_t o, std::int64_t c, std::int64_t i) {  // |t'_c w_c|
    const Real t = rt.data[r.at(o, c, i)];
    const Real ts = eps > 0 ? t * (1 - static_cast<Real>(eps)) + static_cast<Real>(eps) / r.C : t;
    return std::fabs(ts * (weight ? static_cast<Real>(weight->v[c]) : 1));
  };
  std::vector<Real> row_scale(r.rows(), 0), row_coef(r.rows(), 0);
  for (std::int64_t o = 0; o < r.outer; ++o)
    for (std::int64_t i = 0; i < r.inner; ++i) {
      const auto rr = r.row(o, i);
      for (std::int64_t c = 0; c < r.C; ++c) {
        row_scale[rr] += coef(o, c, i) * (std::fabs(finite_or0(rx.data[r.at(o, c, i)])) + std::fabs(finite_or0(lse.data[rr])) + st.R[rr] + 1);
        row_coef[rr] += coef(o, c, i);
      }
    }
  const Real divisor = static_cast<Real>(r.rows());
  const ref::Shape lshape = loss_shape_of(red, ref::shape_without(x.shape, cdim));
  const ref::Tensor rloss = ref::cross_entropy(rx, rt, ro);
  const std::vector<Real> lscale = reduce_scales(row_scale, red, divisor, rloss);
  {
    Buf<T> loss(lshape, T(-7));
    const Status s = cross_entropy_forward(x.cview(), target.cview(), xo, loss.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_TRUE(close_to(loss.v, rloss, lscale)) << "cross_entropy_forward (probabilities)";
  }
  auto grad_scales = [&](const ref::Tensor& dloss, const ref::Tensor& rdx) {
    std::vector<Real> sc(rdx.numel(), 0);
    for (std::int64_t o = 0; o < r.outer; ++o)
      for (std::int64_t i = 0; i < r.inner; ++i) {
        const auto rr = r.row(o, i);
        const Real g = std::fabs(row_upstream(dloss, red, rr, divisor));
        for (std::int64_t c = 0; c < r.C; ++c) {
          const auto k = r.at(o, c, i);
          sc[k] = g * (coef(o, c, i) + finite_or0(p.data[k]) * (2 + 2 * st.R[rr]) * row_coef[rr]) + std::fabs(finite_or0(rdx.data[k]));
        }
      }
    return sc;
  };
  {
    const Buf<T> dloss = random_dloss<T>(rng, lshape);
    Buf<T> dx(x.shape, T(-7));
    const Status s = cross_entropy_backward(x.cview(), target.cview(), xo, dloss.cview(), dx.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    const ref::Tensor rdx = ref::cross_entropy_backward(rx, rt, ro, dloss.to_ref());
    EXPECT_TRUE(close_to(dx.v, rdx, grad_scales(dloss.to_ref(), rdx))) << "cross_entropy_backward (probabilities)";
  }
  {
    Buf<T> loss(lshape, T(-7)), dx(x.shape, T(-7));
    const Status s = cross_entropy_fused(x.cview(), target.cview(), xo, loss.view(), dx.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_TRUE(close_to(loss.v, rloss, lscale)) << "cross_entropy_fused loss (probabilities)";
    const ref::Tensor ones(lshape, std::vector<Real>(static_cast<std::size_t>(ref::numel(lshape)), 1));
    const ref::Tensor rdx = ref::cross_entropy_backward(rx, rt, ro, ones);
    EXPECT_TRUE(close_to(dx.v, rdx, grad_scales(ones, rdx))) << "cross_entropy_fused dinput (probabilities)";
  }
}

// ---- nll_loss -----------------------------------------------------------------------------------

template <class T, class I>
void check_nll(const Buf<T>& logp, const Buf<I>& target, const std::optional<Buf<T>>& weight,
               std::int64_t ignore_index, ref::Reduction red, Rng& rng) {
  const ref::Tensor rx = logp.to_ref();
  const ref::Targets rt = target.to_targets();
  ref::NllOptions ro;
  if (weight) ro.weight = weight->to_ref();
  ro.ignore_index = ignore_index;
  ro.reduction = red;
  NllOptions xo;
  if (weight) xo.weight = weight->cview();
  xo.ignore_index = ignore_index;
  xo.reduction = to_xent(red);

  const Rows r = Rows::classes(logp.shape);
  Real divisor = 0;
  std::vector<Real> row_scale(r.rows(), 0);
  for (std::int64_t o = 0; o < r.outer; ++o)
    for (std::int64_t i = 0; i < r.inner; ++i) {
      const auto rr = r.row(o, i);
      const std::int64_t t = rt.data[rr];
      if (t == ignore_index) continue;
      const Real w = weight ? static_cast<Real>(weight->v[t]) : 1;
      divisor += std::fabs(w);
      row_scale[rr] = std::fabs(w * rx.data[r.at(o, t, i)]);
    }
  const ref::Shape lshape = loss_shape_of(red, target.shape);
  const ref::Tensor rloss = ref::nll_loss(rx, rt, ro);
  {
    Buf<T> loss(lshape, T(-7));
    const Status s = nll_loss_forward(logp.cview(), target.cview(), xo, loss.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_TRUE(close_to(loss.v, rloss, reduce_scales(row_scale, red, divisor, rloss))) << "nll_loss_forward";
  }
  {
    const Buf<T> dloss = random_dloss<T>(rng, lshape);
    Buf<T> dx(logp.shape, T(-7));
    const Status s = nll_loss_backward(logp.cview(), target.cview(), xo, dloss.cview(), dx.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    const ref::Tensor rdx = ref::nll_loss_backward(rx, rt, ro, dloss.to_ref());
    std::vector<Real> sc(rdx.numel());
    for (std::int64_t k = 0; k < rdx.numel(); ++k) sc[k] = 2 * std::fabs(rdx.data[k]);
    EXPECT_TRUE(close_to(dx.v, rdx, sc)) << "nll_loss_backward";
  }
}

// ---- binary cross-entropy (probabilities and logits) --------------------------------------------

template <class T>
void check_bce(const Buf<T>& p, const Buf<T>& target, const std::optional<Buf<T>>& weight,
               ref::Reduction red, Rng& rng) {
  const ref::Tensor rp = p.to_ref(), rt = target.to_ref();
  ref::BceOptions ro;
  if (weight) ro.weight = weight->to_ref();
  ro.reduction = red;
  BceOptions xo;
  if (weight) xo.weight = weight->cview();
  xo.reduction = to_xent(red);
  const ref::Tensor w = weight ? ref::broadcast_to(weight->to_ref(), p.shape)
                               : ref::Tensor(p.shape, std::vector<Real>(p.v.size(), 1));
  const Real n = static_cast<Real>(p.numel());

  std::vector<Real> el_scale(p.v.size());
  for (std::size_t k = 0; k < el_scale.size(); ++k) {
    const Real pk = rp.data[k], tk = rt.data[k];
    const Real lp = std::max(std::log(pk), Real(-100)), l1p = std::max(std::log1p(-pk), Real(-100));
    el_scale[k] = std::fabs(w.data[k]) * (std::fabs(tk) * (std::fabs(lp) + 1) + std::fabs(1 - tk) * (std::fabs(l1p) + 1));
  }
  const ref::Shape lshape = loss_shape_of(red, p.shape);
  const ref::Tensor rloss = ref::binary_cross_entropy(rp, rt, ro);
  {
    Buf<T> loss(lshape, T(-7));
    const Status s = binary_cross_entropy_forward(p.cview(), target.cview(), xo, loss.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_TRUE(close_to(loss.v, rloss, reduce_scales(el_scale, red, n, rloss))) << "binary_cross_entropy_forward";
  }
  {
    const Buf<T> dloss = random_dloss<T>(rng, lshape);
    const ref::Tensor rdloss = dloss.to_ref();
    Buf<T> dx(p.shape, T(-7));
    const Status s = binary_cross_entropy_backward(p.cview(), target.cview(), xo, dloss.cview(), dx.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    const ref::Tensor rdx = ref::binary_cross_entropy_backward(rp, rt, ro, rdloss);
    std::vector<Real> sc(rdx.numel());
    for (std::int64_t k = 0; k < rdx.numel(); ++k) {
      const Real pk = rp.data[k], tk = rt.data[k];
      const Real g = std::fabs(row_upstream(rdloss, red, k, n) * w.data[k]);
      sc[k] = 2 * g * (std::fabs(pk) + std::fabs(tk)) / std::max((1 - pk) * pk, static_cast<Real>(1e-12f)) + std::fabs(rdx.data[k]);
    }
    EXPECT_TRUE(close_to(dx.v, rdx, sc)) << "binary_cross_entropy_backward";
  }
}

template <class T>
void check_bce_logits(const Buf<T>& x, const Buf<T>& target, const std::optional<Buf<T>>& weight,
                      const std::optional<Buf<T>>& pos_weight, ref::Reduction red, Rng& rng) {
  const ref::Tensor rx = x.to_ref(), rt = target.to_ref();
  ref::BceOptions ro;
  if (weight) ro.weight = weight->to_ref();
  if (pos_weight) ro.pos_weight = pos_weight->to_ref();
  ro.reduction = red;
  BceOptions xo;
  if (weight) xo.weight = weight->cview();
  if (pos_weight) xo.pos_weight = pos_weight->cview();
  xo.reduction = to_xent(red);
  const ref::Tensor ones(x.shape, std::vector<Real>(x.v.size(), 1));
  const ref::Tensor w = weight ? ref::broadcast_to(weight->to_ref(), x.shape) : ones;
  const ref::Tensor pw = pos_weight ? ref::broadcast_to(pos_weight->to_ref(), x.shape) : ones;
  const Real n = static_cast<Real>(x.numel());

  std::vector<Real> el_scale(x.v.size());
  for (std::size_t k = 0; k < el_scale.size(); ++k) {
    const Real xk = finite_or0(rx.data[k]), tk = rt.data[k];
    const Real lw = (pw.data[k] - 1) * tk + 1;
    el_scale[k] = std::fabs(w.data[k]) * (std::fabs(1 - tk) * std::fabs(xk) + (std::fabs(lw) + std::fabs(pw.data[k] * tk) + 1) * (std::fabs(xk) + 2));
  }
  const ref::Shape lshape = loss_shape_of(red, x.shape);
  const ref::Tensor rloss = ref::binary_cross_entropy_with_logits(rx, rt, ro);
  {
    Buf<T> loss(lshape, T(-7));
    const Status s = binary_cross_entropy_with_logits_forward(x.cview(), target.cview(), xo, loss.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_TRUE(close_to(loss.v, rloss, reduce_scales(el_scale, red, n, rloss))) << "binary_cross_entropy_with_logits_forward";
  }
  {
    const Buf<T> dloss = random_dloss<T>(rng, lshape);
    const ref::Tensor rdloss = dloss.to_ref();
    Buf<T> dx(x.shape, T(-7));
    const Status s = binary_cross_entropy_with_logits_backward(x.cview(), target.cview(), xo, dloss.cview(), dx.view());
    ASSERT_TRUE(s.ok()) << s.to_string();
    const ref::Tensor rdx = ref::binary_cross_entropy_with_logits_backward(rx, rt, ro, rdloss);
    std::vector<Real> sc(rdx.numel());
    for (std::int64_t k = 0; k < rdx.numel(); ++k) {
      const Real xk = rx.data[k], tk = rt.data[k];
      const Real g = std::fabs(row_upstream(rdloss, red, k, n) * w.data[k]);
      const Real sig = 1 / (1 + std::exp(-xk)), pt = std::fabs(pw.data[k] * tk);
      sc[k] = 2 * g * ((pt + 1 + std::fabs(tk)) * sig * (1 + std::fabs(finite_or0(xk))) + pt) + std::fabs(rdx.data[k]);
    }
    EXPECT_TRUE(close_to(dx.v, rdx, sc)) << "binary_cross_entropy_with_logits_backward";
  }
}

// Class-index targets in [0, C), with `ignore` written at about one position in four when given.
template <class I>
Buf<I> random_targets(Rng& rng, const ref::Shape& shape, std::int64_t C, std::optional<std::int64_t> ignore) {
  Buf<I> t(shape);
  for (auto& v : t.v) {
    v = static_cast<I>(rng.integer(0, C - 1));
    if (ignore && rng.integer(0, 3) == 0) v = static_cast<I>(*ignore);
  }
  return t;
}

}  // namespace xent::test
