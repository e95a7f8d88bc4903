// cross_entropy.cc: public entry points for cross_entropy (class-index and probability targets)
// and nll_loss: validation with PyTorch's rules, the mean's divisor, and the fixed-order
// reduction of per-row losses. The per-row arithmetic is in the kernel tables (src/cpu/). Long rows
// on few rows (reduce.h split_chunks) are split into chunks that run on several threads; other
// shapes run one task per leaf of rows.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"
#include "exact_sum.h"
#include "frontend.h"
#include "parallel.h"
#include "split.h"
#include "xent/losses.h"

namespace xent {

const char* reduction_name(Reduction r) noexcept {
  switch (r) {
    case Reduction::kNone: return "none";
    case Reduction::kMean: return "mean";
    case Reduction::kSum: return "sum";
  }
  return "unknown";
}

namespace {

using detail::Layout;
using detail::Piece;

enum class Kind { kIndex32, kIndex64, kProb };

// Everything validation learns about a call.
struct Setup {
  Layout L;
  Kind kind = Kind::kIndex64;
  Shape loss_none_shape;  // shape of the loss for reduction kNone
  double divisor = 1;     // the mean's divisor: sum of picked weights, or rows for probabilities
  double weight_sum = 0;  // sum of all class weights (C without weights)
};

struct Common {
  ConstTensorView weight;
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::kMean;
  double label_smoothing = 0;
  ConstTensorView token_weight;  // cross_entropy with class indices only
  Summation summation = Summation::kFast;  // cross_entropy only
};

template <class T, class I>
Status scan_targets(const I* t, std::int64_t n, const Shape& tshape, std::int64_t C, std::int64_t ignore_index,
                    const T* w, const T* tw, double* divisor) {
  // Without weights the kernel table's vector scan counts the kept targets (the divisor: the same
  // value as a sum of ones) and flags any out of range; the loop below then runs only to name the
  // first bad one. With weights (class or token) the loop sums tw[k] * w[t[k]] in order.
  if (w == nullptr && tw == nullptr) {
    const auto& k = cpu::active_table<T>();
    bool bad = false;
    std::int64_t kept;
    if constexpr (sizeof(I) == 4) kept = k.count_kept_i32(t, static_cast<std::size_t>(n), C, ignore_index, &bad);
    else kept = k.count_kept_i64(t, static_cast<std::size_t>(n), C, ignore_index, &bad);
    *divisor = static_cast<double>(kept);
    if (!bad) return ok_status();
  }
  double total = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    std::int64_t v = t[k];
    if (v == ignore_index) continue;
    if (v < 0 || v >= C) {
      return out_of_range(fmt::format("target {} at position {} is outside [0, {}){}", v, detail::position_of(k, tshape), C,
                                      fmt::format(" (ignore_index is {})", ignore_index)));
    }
    const double wv = w ? static_cast<double>(w[v]) : 1.0;
    total += tw ? static_cast<double>(tw[k]) * wv : wv;
  }
  *divisor = total;
  return ok_status();
}

template <class T>
double sum_weights(const T* w, std::size_t C) {
  if (!w) return static_cast<double>(C);
  double s = 0;
  for (std::size_t c = 0; c < C; ++c) s += static_cast<double>(w[c]);
  return s;
}

Status validate(ConstTensorView input, ConstTensorView target, const Common& o, bool is_nll, Setup* s) {
  XENT_RETURN_IF_ERROR(detail::check_floating(input, "input"));
  if (input.shape.rank() < 1)
    return invalid_argument(fmt::format("input must have shape (C), (N, C) or (N, C, d1, ...), found a 0-d tensor"));
  const int cdim = input.shape.rank() == 1 ? 0 : 1;
  s->L = detail::layout_of(input.shape, cdim);
  const std::int64_t C = input.shape[cdim];

  if (!o.weight.empty_view()) {
    XENT_RETURN_IF_ERROR(detail::check_present(o.weight, "weight"));
    if (o.weight.dtype != input.dtype)
      return invalid_argument(fmt::format("weight must have the input's dtype {}, found {}", dtype_name(input.dtype),
                                          dtype_name(o.weight.dtype)));
    if (o.weight.shape.rank() != 1 || o.weight.shape[0] != C)
      return invalid_argument(fmt::format("weight must have one entry per class ({}), found shape {}", C,
                                          o.weight.shape.to_string()));
  }
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0))
    return invalid_argument(fmt::format("label_smoothing must be in [0, 1], found {}", o.label_smoothing));
  if (o.reduction != Reduction::kNone && o.reduction != Reduction::kMean && o.reduction != Reduction::kSum)
    return invalid_argument("reduction must be none, mean or sum");
  if (o.summation != Summation::kFast && o.summation != Summation::kExact)
    return invalid_argument("summation must be fast or exact");
  if (o.summation == Summation::kExact) {
    if (input.dtype != DType::kF32 && input.dtype != DType::kF64)
      return invalid_argument(fmt::format("summation exact needs float32 or float64 input, found {} (use summation fast)",
                                          dtype_name(input.dtype)));
    if (is_floating(target.dtype))
      return invalid_argument("summation exact supports class-index targets only, found probability targets (use "
                              "summation fast)");
  }

  XENT_RETURN_IF_ERROR(detail::check_present(target, "target"));
  if (is_floating(target.dtype)) {
    if (is_nll)
      return invalid_argument(fmt::format("nll_loss target must hold class indices (int32 or int64), found {}",
                                          dtype_name(target.dtype)));
    XENT_RETURN_IF_ERROR(detail::check_like(target, input.dtype, input.shape, "probability target", "the input"));
    if (o.ignore_index >= 0)
      return invalid_argument(fmt::format(
          "ignore_index is not supported with probability targets (it must be negative, found {})", o.ignore_index));
    if (!o.token_weight.empty_view())
      return invalid_argument("token_weight applies to class-index targets; with probability targets use reduction "
                              "none and weight the per-row losses");
    s->kind = Kind::kProb;
    s->loss_none_shape = input.shape.without(cdim);
    s->divisor = static_cast<double>(s->L.rows());
  } else {
    Shape want = input.shape.without(cdim);
    if (target.shape != want)
      return invalid_argument(fmt::format("target must have shape {} for an input of shape {}, found {}", want.to_string(),
                                          input.shape.to_string(), target.shape.to_string()));
    s->loss_none_shape = want;
    s->kind = target.dtype == DType::kI32 ? Kind::kIndex32 : Kind::kIndex64;
    const std::int64_t n = want.numel();
    if (!o.token_weight.empty_view()) {
      XENT_RETURN_IF_ERROR(detail::check_present(o.token_weight, "token_weight"));
      XENT_RETURN_IF_ERROR(
          detail::check_like(o.token_weight, input.dtype, want, "token_weight", "the input"));
    }
    auto scan = [&](auto* w, auto* tw) -> Status {
      if (s->kind == Kind::kIndex32)
        return scan_targets(target.as<std::int32_t>(), n, want, C, o.ignore_index, w, tw, &s->divisor);
      return scan_targets(target.as<std::int64_t>(), n, want, C, o.ignore_index, w, tw, &s->divisor);
    };
    XENT_RETURN_IF_ERROR(detail::visit_float(input.dtype, [&](auto tag) {
      using T = decltype(tag);
      return scan(o.weight.as<T>(), o.token_weight.as<T>());
    }));
  }
  s->weight_sum =
      detail::visit_float(input.dtype, [&](auto tag) { return sum_weights(o.weight.as<decltype(tag)>(), s->L.C); });
  return ok_status();
}

Status check_dloss(ConstTensorView dloss, DType dt, const Setup& s, Reduction r) {
  Shape want = r == Reduction::kNone ? s.loss_none_shape : Shape{};
  return detail::check_like(dloss, dt, want, "loss gradient", "the input");
}

// Stores per-row losses, or reduces them as run() does: pairwise within leaves, then over leaves.
template <class T>
void finish_loss(const Setup& s, Reduction reduction, const double* row_loss, T* loss) {
  const std::size_t rows = s.L.rows(), per = detail::leaf_rows(s.L.C);
  if (reduction == Reduction::kNone) {
    for (std::size_t r = 0; r < rows; ++r) loss[r] = static_cast<T>(row_loss[r]);
    return;
  }
  std::vector<double> leaf_sums((rows + per - 1) / per);
  for (std::size_t leaf = 0; leaf < leaf_sums.size(); ++leaf) {
    const std::size_t r0 = leaf * per;
    leaf_sums[leaf] = detail::pairwise_sum(row_loss + r0, std::min(rows, r0 + per) - r0);
  }
  double total = detail::pairwise_sum(leaf_sums.data(), leaf_sums.size());
  if (reduction == Reduction::kMean) total /= s.divisor;
  *loss = static_cast<T>(total);
}

// Token weights on per-row losses: row_loss[r] *= tw[r0 + r] for the kept rows r0 .. r0 + n (an
// ignored token contributes 0 whatever its weight, as it does to the divisor).
template <class T, class I>
void apply_token_weights(const I* tgt, const T* tw, std::int64_t ignore_index, std::size_t r0, std::size_t n,
                         double* row_loss) {
  for (std::size_t r = 0; r < n; ++r)
    if (static_cast<std::int64_t>(tgt[r0 + r]) != ignore_index) row_loss[r] *= static_cast<double>(tw[r0 + r]);
}

// Cross-entropy on split rows (n_chunks per row), class-index targets (I an integer type, with or
// without label smoothing) or probability targets (I = T). Pass 1: the chunks' stats, and with
// label smoothing or probability targets their coefficient sums (split.h), combined per row in
// chunk order; pass 2: each chunk's gradient. The formulas are the unsplit kernels':
//   class index: loss = w[t] (lse - x[t]), smoothed (1 - eps) w[t] (lse - x[t]) + eps/C (Q log S - A),
//                dx = exp(x - M) (g coef / S) - (g eps / C) w, coef = (1 - eps) w[t] + eps W / C,
//                dx[t] = g ((1 - eps) w[t] expm1(x[t] - lse) + eps/C (W p[t] - w[t]));
//   probabilities: loss = Q log S - A, dx = exp(x - M) (g Q / S) - g c,
// with c = w q, Q = sum c and A = sum c (x - M) (kernels.h Coefs). Rows with a NaN, an infinite
// logit where the sums see it, all -inf or a non-finite x[t] take the unsplit kernel whole.
template <class T, class I>
void run_split_ce(const Setup& s, const Common& o, const T* x, const I* tgt, std::size_t n_chunks, T* loss, T* dx,
                  const T* dloss_rows, double dloss_scale) {
  constexpr bool kProb = detail::kIsFloat<I>;
  const auto& k = cpu::active_table<T>();
  const Layout& L = s.L;
  const std::size_t rows = L.rows(), C = L.C;
  const T* w = o.weight.as<T>();
  const T* tw = o.token_weight.as<T>();  // class indices only (validate)
  const double eps = o.label_smoothing, Cd = static_cast<double>(C);
  const bool sums = kProb || eps != 0;  // coefficient sums needed
  auto coefs_of = [&](std::size_t r, std::size_t c0) {
    cpu::Coefs<T> c;
    c.w = w != nullptr ? w + c0 : nullptr;
    if constexpr (kProb) {
      c.t = tgt + r * C + c0;
      c.keep = 1 - eps;
      c.u = eps / Cd;
    }
    return c;
  };
  std::vector<detail::RowSums> rs;
  if (sums) {
    detail::split_row_sums(x, L, n_chunks, coefs_of, &rs);
  } else {
    std::vector<double> M, S;
    std::vector<char> ok;
    detail::split_row_stats(x, L, n_chunks, &M, &S, &ok);
    rs.resize(rows);
    for (std::size_t r = 0; r < rows; ++r) rs[r] = {M[r], S[r], 0, 0, ok[r] != 0};
  }
  std::vector<double> row_loss(rows, 0.0), scale(rows, 0.0), gb(rows, 0.0), tgrad(rows, 0.0);
  std::vector<char> whole(rows, 0);
  for (std::size_t r = 0; r < rows; ++r) {
    const detail::RowSums& q = rs[r];
    double g = dloss_rows != nullptr ? dloss_scale * static_cast<double>(dloss_rows[r]) : dloss_scale;
    if (tw != nullptr) g *= static_cast<double>(tw[r]);  // kernels.h row_upstream's order
    if constexpr (kProb) {
      if (!q.ok) {
        whole[r] = 1;
        continue;
      }
      row_loss[r] = q.Q * std::log(q.S) - q.A;
      scale[r] = g * q.Q / q.S;
      gb[r] = g;
    } else {
      const std::int64_t t = static_cast<std::int64_t>(tgt[r]);
      if (t == o.ignore_index) {  // loss 0; gradient 0 * p (NaN for a row whose normaliser is not finite)
        whole[r] = !q.ok && dx != nullptr;
        continue;
      }
      const double xt = static_cast<double>(x[r * C + static_cast<std::size_t>(t)]);
      if (!q.ok || !std::isfinite(xt)) {
        whole[r] = 1;
        continue;
      }
      const double wt = w != nullptr ? static_cast<double>(w[t]) : 1.0;
      const double logS = std::log(q.S), lse = q.M + logS;
      const double nll = wt * (lse - xt);
      row_loss[r] = eps == 0 ? nll : (1 - eps) * nll + eps / Cd * (q.Q * logS - q.A);
      scale[r] = g * ((1 - eps) * wt + eps * s.weight_sum / Cd) / q.S;
      gb[r] = g * eps / Cd;
      const double pt_m1 = std::expm1(xt - lse);
      double dt = (1 - eps) * wt * pt_m1;
      if (eps != 0) dt += eps / Cd * (s.weight_sum * (pt_m1 + 1) - wt);
      tgrad[r] = g * dt;
    }
  }
  // A row the unsplit kernel redoes: its loss and gradient, written by the task of its first chunk.
  auto redo = [&](std::size_t r) {
    const cpu::Block b1{1, C, 1, 1};
    if constexpr (kProb) {
      cpu::CeProbArgs<T> a;
      a.x = x + r * C;
      a.target = tgt + r * C;
      a.weight = w;
      a.smoothing = eps;
      a.row_loss = loss != nullptr ? &row_loss[r] : nullptr;
      a.dx = dx != nullptr ? dx + r * C : nullptr;
      a.dloss = dloss_rows != nullptr ? dloss_rows + r : nullptr;
      a.dloss_scale = dloss_scale;
      k.ce_prob(a, b1);
    } else {
      cpu::CeIndexArgs<T, I> a;
      a.x = x + r * C;
      a.target = tgt + r;
      a.weight = w;
      a.weight_sum = s.weight_sum;
      a.ignore_index = o.ignore_index;
      a.smoothing = eps;
      a.row_loss = loss != nullptr ? &row_loss[r] : nullptr;
      a.dx = dx != nullptr ? dx + r * C : nullptr;
      a.dloss = dloss_rows != nullptr ? dloss_rows + r : nullptr;
      a.dloss_scale = dloss_scale;
      a.row_weight = tw != nullptr ? tw + r : nullptr;
      if constexpr (sizeof(I) == 4) k.ce_index_i32(a, b1);
      else k.ce_index_i64(a, b1);
    }
  };
  if (dx != nullptr) {
    detail::for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t j, std::size_t c0, std::size_t c1) {
      if (whole[r]) {
        if (j == 0) redo(r);
        return;
      }
      T* d = dx + r * C;
      if (sums) k.chunk_ce_grad(x + r * C + c0, coefs_of(r, c0), d + c0, c1 - c0, rs[r].M, scale[r], gb[r]);
      else k.chunk_exp_scale(x + r * C + c0, d + c0, c1 - c0, rs[r].M, scale[r]);
      if constexpr (!kProb) {
        const std::int64_t t = static_cast<std::int64_t>(tgt[r]);
        if (t != o.ignore_index && static_cast<std::size_t>(t) >= c0 && static_cast<std::size_t>(t) < c1)
          d[t] = static_cast<T>(tgrad[r]);
      }
    });
  } else {
    for (std::size_t r = 0; r < rows; ++r)
      if (whole[r]) redo(r);
  }
  if constexpr (!kProb) {
    if (loss != nullptr && tw != nullptr) apply_token_weights(tgt, tw, o.ignore_index, 0, rows, row_loss.data());
  }
  if (loss != nullptr) finish_loss(s, o.reduction, row_loss.data(), loss);
}

// NLL on split rows: the loss is one value per row (the kernel table's nll, forward only); the
// gradient is zero but for dx[t] = -w[t] g, so each chunk is zero-filled and the targets written
// after (the unsplit kernel's expression).
template <class T, class I>
void run_split_nll(const Setup& s, const Common& o, const T* x, const I* tgt, std::size_t n_chunks, T* loss, T* dx,
                   const T* dloss_rows, double dloss_scale) {
  const auto& k = cpu::active_table<T>();
  const Layout& L = s.L;
  const std::size_t rows = L.rows(), C = L.C;
  const T* w = o.weight.as<T>();
  if (loss != nullptr) {
    std::vector<double> row_loss(rows, 0.0);
    cpu::CeIndexArgs<T, I> a;
    a.x = x;
    a.target = tgt;
    a.weight = w;
    a.ignore_index = o.ignore_index;
    a.row_loss = row_loss.data();
    if constexpr (sizeof(I) == 4) k.nll_i32(a, cpu::Block{rows, C, 1, 1});
    else k.nll_i64(a, cpu::Block{rows, C, 1, 1});
    finish_loss(s, o.reduction, row_loss.data(), loss);
  }
  if (dx == nullptr) return;
  detail::for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t, std::size_t c0, std::size_t c1) {
    std::fill(dx + r * C + c0, dx + r * C + c1, T(0));
  });
  for (std::size_t r = 0; r < rows; ++r) {
    const std::int64_t t = static_cast<std::int64_t>(tgt[r]);
    if (t == o.ignore_index) continue;
    const double wt = w != nullptr ? static_cast<double>(w[t]) : 1.0;
    const double g = dloss_rows != nullptr ? dloss_scale * static_cast<double>(dloss_rows[r]) : dloss_scale;
    dx[r * C + static_cast<std::size_t>(t)] = static_cast<T>(-wt * g);
  }
}

// Summation::kExact (exact_sum.h): every row's sums in fixed point, its lse, loss and gradient by the
// same code as xent_mpi's vocabulary-parallel layer, and the token-order pairwise reduction. The
// rows are independent tasks (a few long rows: chunks whose words combine exactly) and the
// reduction's order is fixed, so the bits do not depend on the thread count. dloss: the upstream
// gradient as given (kNone: per token; else the scalar), or null (fused: 1). Token weights
// multiply a kept token's loss and upstream gradient.
constexpr std::size_t kExactRowsPerTask = 8;

template <class T, class I>
void run_exact(const Setup& s, const Common& o, const T* x, const I* tgt, T* loss, T* dx, const T* dloss) {
  const Layout& L = s.L;
  const std::size_t rows = L.rows(), C = L.C, inner = L.inner;
  const T* w = o.weight.as<T>();
  const T* tw = o.token_weight.as<T>();
  std::vector<double> cw(w != nullptr ? C : 0);
  for (std::size_t c = 0; c < cw.size(); ++c) cw[c] = static_cast<double>(w[c]);
  detail::exact::CeParams p;
  p.V = static_cast<std::int64_t>(C);
  p.cw = w != nullptr ? cw.data() : nullptr;
  p.W = detail::exact::weight_total(p.cw, p.V);
  p.eps = o.label_smoothing;
  p.ignore = o.ignore_index;
  detail::exact::Upstream up;
  up.red = o.reduction;
  double kept = 0;
  for (std::size_t r = 0; r < rows; ++r) kept += static_cast<std::int64_t>(tgt[r]) == o.ignore_index ? 0 : 1;
  up.div_ce = o.reduction == Reduction::kMean ? s.divisor : 1.0;
  up.div_z = o.reduction == Reduction::kMean ? kept : 1.0;
  const T* dloss_rows = nullptr;
  if (dloss != nullptr) {
    if (o.reduction == Reduction::kNone) dloss_rows = dloss;
    else up.g = static_cast<double>(dloss[0]);
  }
  std::vector<double> tok_ce(loss != nullptr ? rows : 0, 0.0);
  // A kept token's loss and upstream gradient times its token weight.
  auto store = [&](std::size_t r, std::int64_t t, double ce) {
    if (loss != nullptr) tok_ce[r] = tw != nullptr && t != o.ignore_index ? ce * static_cast<double>(tw[r]) : ce;
  };
  auto upstream = [&](std::size_t r, std::int64_t t, double* g_ce, double* g_z) {
    up.at(dloss_rows, static_cast<std::int64_t>(r), g_ce, g_z);
    if (tw != nullptr && t != o.ignore_index) {
      *g_ce *= static_cast<double>(tw[r]);
      *g_z *= static_cast<double>(tw[r]);
    }
  };
  namespace ex = detail::exact;
  if (const std::size_t n_chunks = detail::split_chunks(L, sizeof(T))) {
    // Few long rows (reduce.h split_chunks, inner == 1): a row's chunks on several threads. Pass-1
    // words combine by max and pass-2 words by integer addition, both exact, so the bits are the
    // unsplit row's (and the MPI layer's, whatever its split).
    const std::size_t K1 = static_cast<std::size_t>(p.k1()), K2 = static_cast<std::size_t>(p.k2());
    std::vector<std::int64_t> w1(rows * n_chunks * K1, 0), w2(rows * n_chunks * K2, 0), g1(rows * K1), g2(rows * K2, 0);
    std::vector<double> lse(rows);
    auto tgt_of = [&](std::size_t r) { return static_cast<std::int64_t>(tgt[r]); };
    detail::for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t j, std::size_t c0, std::size_t c1) {
      ex::row_pass1(p, x + r * C + c0, 1, static_cast<std::int64_t>(c0), static_cast<std::int64_t>(c1 - c0), false,
                    &w1[(r * n_chunks + j) * K1]);
    });
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t k = 0; k < K1; ++k) {
        std::int64_t m = w1[r * n_chunks * K1 + k];
        for (std::size_t j = 1; j < n_chunks; ++j) m = std::max(m, w1[(r * n_chunks + j) * K1 + k]);
        g1[r * K1 + k] = m;
      }
    detail::for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t j, std::size_t c0, std::size_t c1) {
      ex::row_pass2(p, x + r * C + c0, 1, static_cast<std::int64_t>(c0), static_cast<std::int64_t>(c1 - c0), false,
                    &g1[r * K1], tgt_of(r), &w2[(r * n_chunks + j) * K2]);
    });
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t j = 0; j < n_chunks; ++j)
        for (std::size_t k = 0; k < K2; ++k) g2[r * K2 + k] += w2[(r * n_chunks + j) * K2 + k];
      const ex::RowResult rr = ex::row_result(p, &g1[r * K1], &g2[r * K2], tgt_of(r));
      lse[r] = rr.lse;
      store(r, tgt_of(r), rr.ce);
    }
    if (dx != nullptr) {
      detail::for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t, std::size_t c0, std::size_t c1) {
        double g_ce, g_z;
        upstream(r, tgt_of(r), &g_ce, &g_z);
        ex::row_grad(p, x + r * C + c0, dx + r * C + c0, 1, static_cast<std::int64_t>(c0),
                     static_cast<std::int64_t>(c1 - c0), false, tgt_of(r), lse[r], g_ce, g_z);
      });
    }
  } else {
    detail::parallel_for((rows + kExactRowsPerTask - 1) / kExactRowsPerTask, [&](std::size_t task) {
      const std::size_t r1 = std::min(rows, (task + 1) * kExactRowsPerTask);
      for (std::size_t r = task * kExactRowsPerTask; r < r1; ++r) {
        const std::size_t off = r / inner * C * inner + r % inner;  // row (outer o, inner i): classes at stride inner
        const auto stride = static_cast<std::int64_t>(inner);
        const auto t = static_cast<std::int64_t>(tgt[r]);
        std::int64_t g1[ex::kMaxK1] = {}, g2[ex::kMaxK2] = {};
        ex::row_pass1(p, x + off, stride, 0, p.V, false, g1);
        ex::row_pass2(p, x + off, stride, 0, p.V, false, g1, t, g2);
        const ex::RowResult rr = ex::row_result(p, g1, g2, t);
        store(r, t, rr.ce);
        if (dx == nullptr) continue;
        double g_ce, g_z;
        upstream(r, t, &g_ce, &g_z);
        ex::row_grad(p, x + off, dx + off, stride, 0, p.V, false, t, rr.lse, g_ce, g_z);
      }
    });
  }
  if (loss != nullptr)
    detail::exact::finish<T>(o.reduction, tok_ce.data(), nullptr, static_cast<std::int64_t>(rows), up.div_ce, up.div_z,
                             loss, nullptr);
}

// The exact path's entry from the three public calls (validated; class-index targets, float32 or
// float64: validate).
Status exact_call(const Setup& s, const Common& o, ConstTensorView input, ConstTensorView target, TensorView loss,
                  TensorView dinput, ConstTensorView dloss) {
  auto go = [&](auto tag) {
    using T = decltype(tag);
    auto with = [&](const auto* tgt) {
      run_exact<T>(s, o, input.as<T>(), tgt, loss.empty_view() ? nullptr : loss.as<T>(),
                   dinput.empty_view() ? nullptr : dinput.as<T>(), dloss.empty_view() ? nullptr : dloss.as<T>());
    };
    if (s.kind == Kind::kIndex32) with(target.as<std::int32_t>());
    else with(target.as<std::int64_t>());
  };
  if (input.dtype == DType::kF64) go(double{});
  else go(float{});
  return ok_status();
}

// One run over all rows: per-row losses (reduced or stored) and/or the gradient.
template <class T>
void run(const Setup& s, const Common& o, bool is_nll, const void* x_v, const void* t_v, T* loss, T* dx,
         const T* dloss_rows, double dloss_scale) {
  const auto& k = cpu::active_table<T>();
  const T* x = static_cast<const T*>(x_v);
  const T* w = o.weight.as<T>();
  const T* tw = is_nll ? nullptr : o.token_weight.as<T>();
  const bool want_loss = loss != nullptr;
  const bool none = o.reduction == Reduction::kNone;
  const Layout& L = s.L;
  if (const std::size_t n_chunks = detail::split_chunks(L, sizeof(T))) {
    auto split = [&](auto* tgt) {
      if (is_nll) run_split_nll(s, o, x, tgt, n_chunks, loss, dx, dloss_rows, dloss_scale);
      else run_split_ce(s, o, x, tgt, n_chunks, loss, dx, dloss_rows, dloss_scale);
    };
    if (s.kind == Kind::kProb)
      run_split_ce(s, o, x, static_cast<const T*>(t_v), n_chunks, loss, dx, dloss_rows, dloss_scale);
    else if (s.kind == Kind::kIndex32)
      split(static_cast<const std::int32_t*>(t_v));
    else
      split(static_cast<const std::int64_t*>(t_v));
    return;
  }
  std::vector<double> leaf_sums;
  if (want_loss && !none) leaf_sums.resize((L.rows() + detail::leaf_rows(L.C) - 1) / detail::leaf_rows(L.C));

  auto leaf_fn = [&](std::size_t leaf, std::size_t r0, std::size_t r1) {
    double buf[detail::kMaxLeafRows];
    double* row_loss = want_loss ? buf : nullptr;
    detail::for_each_piece(L, r0, r1, [&](const Piece& p) {
      const T* dl = dloss_rows ? dloss_rows + p.row_off : nullptr;
      double* rl = row_loss ? row_loss + p.dense_off : nullptr;
      T* d = dx ? dx + p.x_off : nullptr;
      if (s.kind == Kind::kProb) {
        cpu::CeProbArgs<T> a;
        a.x = x + p.x_off;
        a.target = static_cast<const T*>(t_v) + p.x_off;
        a.weight = w;
        a.smoothing = o.label_smoothing;
        a.row_loss = rl;
        a.dx = d;
        a.dloss = dl;
        a.dloss_scale = dloss_scale;
        k.ce_prob(a, p.b);
        return;
      }
      auto call = [&](auto* tgt, auto fn) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(tgt)>>;
        cpu::CeIndexArgs<T, I> a;
        a.x = x + p.x_off;
        a.target = tgt + p.row_off;
        a.weight = w;
        a.weight_sum = s.weight_sum;
        a.ignore_index = o.ignore_index;
        a.smoothing = is_nll ? 0.0 : o.label_smoothing;
        a.row_loss = rl;
        a.dx = d;
        a.dloss = dl;
        a.dloss_scale = dloss_scale;
        a.row_weight = tw != nullptr ? tw + p.row_off : nullptr;
        fn(a, p.b);
      };
      if (s.kind == Kind::kIndex32)
        call(static_cast<const std::int32_t*>(t_v), is_nll ? k.nll_i32 : k.ce_index_i32);
      else
        call(static_cast<const std::int64_t*>(t_v), is_nll ? k.nll_i64 : k.ce_index_i64);
    });
    if (!want_loss) return;
    const std::size_t n = r1 - r0;
    if (tw != nullptr) {  // class indices (validate); the dense rows r0 .. r1 are the targets' order
      if (s.kind == Kind::kIndex32)
        apply_token_weights(static_cast<const std::int32_t*>(t_v), tw, o.ignore_index, r0, n, buf);
      else
        apply_token_weights(static_cast<const std::int64_t*>(t_v), tw, o.ignore_index, r0, n, buf);
    }
    if (none) {
      for (std::size_t r = 0; r < n; ++r) loss[r0 + r] = static_cast<T>(buf[r]);
    } else {
      leaf_sums[leaf] = detail::pairwise_sum(buf, n);
    }
  };
  detail::for_each_leaf(L, leaf_fn);
  if (want_loss && !none) {
    double total = detail::pairwise_sum(leaf_sums.data(), leaf_sums.size());
    if (o.reduction == Reduction::kMean) total /= s.divisor;
    *loss = static_cast<T>(total);
  }
}

// The three entry points for both cross_entropy (is_nll false) and nll_loss (is_nll true).
Status do_forward(ConstTensorView input, ConstTensorView target, const Common& o, bool is_nll, TensorView loss) {
  Setup s;
  XENT_RETURN_IF_ERROR(validate(input, target, o, is_nll, &s));
  XENT_RETURN_IF_ERROR(detail::check_reduction_output(loss, input.dtype, s.loss_none_shape, o.reduction == Reduction::kNone));
  if (o.summation == Summation::kExact) return exact_call(s, o, input, target, loss, {}, {});
  detail::visit_float(input.dtype, [&](auto tag) {
    using T = decltype(tag);
    run<T>(s, o, is_nll, input.data, target.data, loss.as<T>(), nullptr, nullptr, 1);
  });
  return ok_status();
}

template <class T>
double upstream_scale(const Setup& s, Reduction r, const T* dloss) {
  if (r == Reduction::kNone) return 1.0;
  double g = static_cast<double>(dloss[0]);
  return r == Reduction::kMean ? g / s.divisor : g;
}

Status do_backward(ConstTensorView input, ConstTensorView target, const Common& o, bool is_nll, ConstTensorView dloss,
                   TensorView dinput) {
  Setup s;
  XENT_RETURN_IF_ERROR(validate(input, target, o, is_nll, &s));
  XENT_RETURN_IF_ERROR(check_dloss(dloss, input.dtype, s, o.reduction));
  XENT_RETURN_IF_ERROR(detail::check_like(dinput, input.dtype, input.shape, "input gradient", "the input"));
  if (o.summation == Summation::kExact) return exact_call(s, o, input, target, {}, dinput, dloss);
  const bool none = o.reduction == Reduction::kNone;
  detail::visit_float(input.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* dl = dloss.as<T>();
    run<T>(s, o, is_nll, input.data, target.data, nullptr, dinput.as<T>(), none ? dl : nullptr,
           upstream_scale(s, o.reduction, dl));
  });
  return ok_status();
}

Common common_of(const CrossEntropyOptions& o) {
  return {o.weight, o.ignore_index, o.reduction, o.label_smoothing, o.token_weight, o.summation};
}
Common common_of(const NllOptions& o) { return {o.weight, o.ignore_index, o.reduction, 0.0, {}, Summation::kFast}; }

}  // namespace

Status cross_entropy_forward(ConstTensorView input, ConstTensorView target, const CrossEntropyOptions& options,
                             TensorView loss) {
  return detail::guarded("cross_entropy_forward", [&]() -> Status {
    return do_forward(input, target, common_of(options), false, loss);
  });
}

Status cross_entropy_backward(ConstTensorView input, ConstTensorView target, const CrossEntropyOptions& options,
                              ConstTensorView dloss, TensorView dinput) {
  return detail::guarded("cross_entropy_backward", [&]() -> Status {
    return do_backward(input, target, common_of(options), false, dloss, dinput);
  });
}

Status cross_entropy_fused(ConstTensorView input, ConstTensorView target, const CrossEntropyOptions& options,
                           TensorView loss, TensorView dinput) {
  return detail::guarded("cross_entropy_fused", [&]() -> Status {
    const Common o = common_of(options);
    Setup s;
    XENT_RETURN_IF_ERROR(validate(input, target, o, false, &s));
    XENT_RETURN_IF_ERROR(detail::check_reduction_output(loss, input.dtype, s.loss_none_shape, o.reduction == Reduction::kNone));
    XENT_RETURN_IF_ERROR(detail::check_like(dinput, input.dtype, input.shape, "input gradient", "the input"));
    if (o.summation == Summation::kExact) return exact_call(s, o, input, target, loss, dinput, {});
    const double scale = o.reduction == Reduction::kMean ? 1.0 / s.divisor : 1.0;
    detail::visit_float(input.dtype, [&](auto tag) {
      using T = decltype(tag);
      run<T>(s, o, false, input.data, target.data, loss.as<T>(), dinput.as<T>(), nullptr, scale);
    });
    return ok_status();
  });
}

Status nll_loss_forward(ConstTensorView input, ConstTensorView target, const NllOptions& options, TensorView loss) {
  return detail::guarded("nll_loss_forward", [&]() -> Status {
    return do_forward(input, target, common_of(options), true, loss);
  });
}

Status nll_loss_backward(ConstTensorView input, ConstTensorView target, const NllOptions& options,
                         ConstTensorView dloss, TensorView dinput) {
  return detail::guarded("nll_loss_backward", [&]() -> Status {
    return do_backward(input, target, common_of(options), true, dloss, dinput);
  });
}

}  // namespace xent
