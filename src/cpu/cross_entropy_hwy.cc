// cross_entropy_hwy.cc: the SIMD cross-entropy kernels (class indices, with weights, ignore_index
// and label smoothing; probability targets; NLL; the per-chunk sums and gradient of split rows) and
// the vectorised target scan, compiled once per target through foreach_target; fills its entries of
// each ISA's kernel table (tables_hwy.cc). Row machinery: rows-inl.h; short rows (across rows):
// kernels_small-inl.h; strided blocks: kernels_strided-inl.h.
//
// Loss as logsumexp - x[t]. Rows the vector formulas do not cover (a NaN, +-inf max, a non-finite
// x[t], a -inf logit with smoothing or probability targets) run the scalar twin on that row, decided
// before the row's dx is written (dx may alias x).
#include "cpu/hwy_targets.h"  // first: the target set

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/cross_entropy_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "cpu/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

#if XENT_TARGET_HAS_KERNELS
// Blocks with stride != 1 (class dimension not last): strided_ce_index, ...
#include "cpu/kernels_strided-inl.h"
// Short rows (C <= kSmallC), across rows: softmax_small, ..., ce_index_small, ce_prob_small.
#include "cpu/kernels_small-inl.h"

// ---------------------------------------------------------------------------------------------
// cross-entropy with class indices, and NLL

template <class T>
HWY_INLINE void zero_row(T* dx, std::size_t C, bool stream) {
  const hn::ScalableTag<T> d;
  map_row<0>(dx, C, stream, std::array<const T*, 0>{}, [&]() HWY_ATTR { return hn::Zero(d); });
}


// Fused forward and backward (or backward alone) for rows in cache (one_exp_rows): the formulas of
// ce_index below, each exp computed once and written into dx, then scaled in place. Every check
// that sends a row to the scalar twin (non-finite x[t], a NaN, +inf or all -inf row, a -inf with
// label smoothing) is made before the row's dx is written, since dx may alias x.
template <class T, class I, class ScalarFn>
void ce_index_one_exp(const CeIndexArgs<T, I>& a, Block b, ScalarFn scalar_fn) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const double eps = a.smoothing;
  const double W = a.weight_sum;
  const double Cd = static_cast<double>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* xr = a.x + r * C;
    T* dxr = a.dx + r * C;
    const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
    T m;
    bool ok = row_max(xr, C, &m);
    if (t == a.ignore_index) {
      // Loss 0; gradient 0 * p, which is NaN for the whole row when its normaliser is not finite.
      if (!ok) {
        scalar_fn(ce_row_args(a, r, C), Block{1, C, 1, 1});
        continue;
      }
      if (a.row_loss != nullptr) a.row_loss[r] = 0;
      zero_row(dxr, C, false);
      continue;
    }
    const double xt = static_cast<double>(xr[t]);
    double A = 0, Wr = 0;
    ok = ok && std::isfinite(xt) && (eps == 0 || row_coef_sums(xr, C, Coefs<T>{a.weight}, m, &A, &Wr));
    if (!ok) {
      scalar_fn(ce_row_args(a, r, C), Block{1, C, 1, 1});
      continue;
    }
    const double S = exp_store_sum(xr, dxr, C, m);
    const double logS = std::log(S);
    const double wt = a.weight != nullptr ? static_cast<double>(a.weight[t]) : 1.0;
    const double lse = static_cast<double>(m) + logS;
    if (a.row_loss != nullptr) {
      const double nll = wt * (lse - xt);
      a.row_loss[r] = eps == 0 ? nll : (1 - eps) * nll + eps / Cd * (Wr * logS - A);
    }
    const double g = row_upstream(a, r);
    const double coef = (1 - eps) * wt + eps * W / Cd;  // multiplies p[c]
    const V vscale = hn::Set(d, static_cast<T>(g * coef / S));
    if (eps == 0) {
      map_row<1>(dxr, C, false, {dxr}, [&](V e) HWY_ATTR { return hn::Mul(e, vscale); });
    } else {
      ce_grad_row(dxr, C, false, dxr, Coefs<T>{a.weight}, [](V e) HWY_ATTR { return e; }, static_cast<T>(g * coef / S),
                  static_cast<T>(g * eps / Cd));
    }
    // The target's entry, accurately: p[t] - 1 = expm1(x[t] - lse).
    const double pt_m1 = std::expm1(xt - lse);
    double dt = (1 - eps) * wt * pt_m1;
    if (eps != 0) dt += eps / Cd * (W * (pt_m1 + 1) - wt);
    dxr[t] = static_cast<T>(g * dt);
  }
}

// loss_row = (1 - eps) w[t] (lse - x[t]) + eps/C sum_c w[c] (lse - x[c])
// dx[c]    = g ((1 - eps) w[t] (p[c] - [c == t]) + eps/C (W p[c] - w[c])),  W = sum_c w[c]
// with p[t] - 1 taken as expm1(x[t] - lse), which keeps its relative accuracy as p[t] -> 1.
template <class T, class I>
void ce_index(const CeIndexArgs<T, I>& a, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  auto* scalar_fn = [&] {
    if constexpr (sizeof(I) == 4) return scalar.ce_index_i32;
    else return scalar.ce_index_i64;
  }();
  if (b.C == 0) return scalar_fn(a, b);
  if (b.stride != 1) return strided_ce_index(a, b);
  if (b.C <= kSmallC) return ce_index_small(a, b.n_outer, b.C, scalar_fn);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const bool stream = a.dx != nullptr && stream_rows<T>(C);
  const double eps = a.smoothing;
  const double W = a.weight_sum;
  if (a.dx != nullptr && one_exp_rows<T>(C)) return ce_index_one_exp(a, b, scalar_fn);
  const Coefs<T> wk{a.weight};
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* xr = a.x + r * C;
    const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
    if (t == a.ignore_index) {
      // Loss 0; gradient 0 * p, which is NaN for the whole row when its normaliser is not finite.
      if (a.row_loss != nullptr) a.row_loss[r] = 0;
      if (a.dx == nullptr) continue;
      RowStats st;
      if (row_stats<T, false>(xr, C, nullptr, &st)) {
        zero_row(a.dx + r * C, C, stream);
      } else {
        if (stream) hwy::FlushStream();
        scalar_fn(ce_row_args(a, r, C), Block{1, C, 1, 1});
      }
      continue;
    }
    const double xt = static_cast<double>(xr[t]);
    RowStats st;
    const bool ok = std::isfinite(xt) && (eps == 0 ? row_stats<T, false>(xr, C, nullptr, &st)
                                                   : row_stats<T, true>(xr, C, &wk, &st));
    if (!ok) {
      if (stream) hwy::FlushStream();
      scalar_fn(ce_row_args(a, r, C), Block{1, C, 1, 1});
      continue;
    }
    const double wt = a.weight != nullptr ? static_cast<double>(a.weight[t]) : 1.0;
    const double lse = st.m + std::log(st.s);
    if (a.row_loss != nullptr) {
      const double nll = wt * (lse - xt);
      // Smoothing term: sum_c w[c] (lse - x[c]) = (sum w) log S - sum_c w[c] (x[c] - m), both >= 0.
      a.row_loss[r] = eps == 0 ? nll : (1 - eps) * nll + eps / static_cast<double>(C) * (st.wsum * std::log(st.s) - st.wx);
    }
    if (a.dx == nullptr) continue;
    const double g = row_upstream(a, r);
    const double coef = (1 - eps) * wt + eps * W / static_cast<double>(C);  // multiplies p[c]
    const V vm = hn::Set(d, static_cast<T>(st.m));
    const V vscale = hn::Set(d, static_cast<T>(g * coef / st.s));
    T* dxr = a.dx + r * C;
    if (eps == 0) {
      map_row<1>(dxr, C, stream, {xr}, [&](V v) HWY_ATTR { return hn::Mul(exp_diff<kExactOut>(d, v, vm), vscale); });
    } else {
      ce_grad_row(dxr, C, stream, xr, wk, [&](V v) HWY_ATTR { return exp_diff<kExactOut>(d, v, vm); },
                  static_cast<T>(g * coef / st.s), static_cast<T>(g * eps / static_cast<double>(C)));
    }
    // The target's entry, accurately: p[t] - 1 = expm1(x[t] - lse).
    const double pt_m1 = std::expm1(xt - lse);
    double dt = (1 - eps) * wt * pt_m1;
    if (eps != 0) dt += eps / static_cast<double>(C) * (W * (pt_m1 + 1) - wt);
    if (stream) hwy::FlushStream();
    dxr[t] = static_cast<T>(g * dt);
  }
  if (stream) hwy::FlushStream();
}

// Probability targets, q[c] = t[c] (1 - eps) + eps / C, c[c] = w[c] q[c], Q = sum_c c[c]:
//   loss_row = sum_c c[c] (lse - x[c]) = Q log S - sum_c c[c] (x[c] - m)   (both terms >= 0 for c >= 0)
//   dx[c]    = g (p[c] Q - c[c]) = exp(x[c] - m) (g Q / S) - g c[c]
// Rows in cache with a gradient take one exp per value (ce_index_one_exp's scheme), unless dx
// aliases the target, which the scaling pass still reads; longer rows read x and t once for the
// sums (row_stats) and once for the gradient. A row the vector sums decline (a NaN, an infinite
// logit, a non-finite coefficient) runs the scalar twin, whose NaN for a -inf logit is PyTorch's.
template <class T>
void ce_prob(const CeProbArgs<T>& a, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  if (b.C == 0) return scalar.ce_prob(a, b);
  if (b.stride != 1) return strided_ce_prob(a, b);
  if (b.C <= kSmallC) return ce_prob_small(a, b.n_outer, b.C);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const double eps = a.smoothing;
  const bool stream = a.dx != nullptr && stream_rows<T>(C);
  const bool one_exp = a.dx != nullptr && one_exp_rows<T>(C) && a.dx != a.target;
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* xr = a.x + r * C;
    T* dxr = a.dx != nullptr ? a.dx + r * C : nullptr;
    const Coefs<T> k{a.weight, a.target + r * C, 1 - eps, eps / static_cast<double>(C)};
    auto row_scalar = [&] {
      if (stream) hwy::FlushStream();
      CeProbArgs<T> ra = a;
      ra.x = xr;
      ra.target = k.t;
      ra.row_loss = a.row_loss != nullptr ? a.row_loss + r : nullptr;
      ra.dx = dxr;
      ra.dloss = a.dloss != nullptr ? a.dloss + r : nullptr;
      scalar.ce_prob(ra, Block{1, C, 1, 1});
    };
    double m, S, A, Q;
    if (one_exp) {
      T mt;
      if (!row_max(xr, C, &mt) || !row_coef_sums(xr, C, k, mt, &A, &Q)) {
        row_scalar();
        continue;
      }
      m = static_cast<double>(mt);
      S = exp_store_sum(xr, dxr, C, mt);
    } else {
      RowStats st;
      if (!row_stats<T, true>(xr, C, &k, &st)) {
        row_scalar();
        continue;
      }
      m = st.m;
      S = st.s;
      A = st.wx;
      Q = st.wsum;
    }
    if (a.row_loss != nullptr) a.row_loss[r] = Q * std::log(S) - A;
    if (dxr == nullptr) continue;
    const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(a.dloss[r]) : a.dloss_scale;
    const T scale = static_cast<T>(g * Q / S), gb = static_cast<T>(g);
    if (one_exp) {
      ce_grad_row(dxr, C, false, dxr, k, [](V e) HWY_ATTR { return e; }, scale, gb);
    } else {
      const V vm = hn::Set(d, static_cast<T>(m));
      ce_grad_row(dxr, C, stream, xr, k, [&](V v) HWY_ATTR { return exp_diff<kExactOut>(d, v, vm); }, scale, gb);
    }
  }
  if (stream) hwy::FlushStream();
}

// Split rows with coefficients (kernels.h chunk_ce_grad): ce_grad_row on one run; its sums are
// rows-inl.h chunk_sums.
template <class T>
void chunk_ce_grad(const T* x, const Coefs<T>& k, T* dx, std::size_t n, double m, double scale, double gb) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_rows<T>(n);
  const V vm = hn::Set(d, static_cast<T>(m));
  ce_grad_row(dx, n, stream, x, k, [&](V v) HWY_ATTR { return exp_diff<kExactOut>(d, v, vm); }, static_cast<T>(scale),
              static_cast<T>(gb));
  if (stream) hwy::FlushStream();
}

// NLL: loss_row = -w[t] x[t]; dx is zero but for dx[t] = -g w[t] (the scalar twin's formulas,
// so the bits are the same). The work is the zero fill, streamed for long rows; strided blocks:
// kernels_strided-inl.h strided_nll. The forward alone on contiguous rows is one gather a row, left
// to the scalar twin's loop.
template <class T, class I>
void nll(const CeIndexArgs<T, I>& a, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  auto* scalar_fn = [&] {
    if constexpr (sizeof(I) == 4) return scalar.nll_i32;
    else return scalar.nll_i64;
  }();
  if (b.C == 0) return scalar_fn(a, b);
  if (b.stride != 1) return strided_nll(a, b);
  // Forward only: a gather of one value per row, no vector work (the scalar twin's loop).
  if (a.dx == nullptr) return scalar_fn(a, b);
  const std::size_t C = b.C;
  const bool stream = stream_rows<T>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
    const bool ignored = t == a.ignore_index;
    const double wt = ignored ? 0.0 : (a.weight != nullptr ? static_cast<double>(a.weight[t]) : 1.0);
    if (a.row_loss != nullptr) a.row_loss[r] = ignored ? 0.0 : -wt * static_cast<double>(a.x[r * C + t]);
    T* dxr = a.dx + r * C;
    zero_row(dxr, C, stream);
    if (!ignored) {
      const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(a.dloss[r]) : a.dloss_scale;
      if (stream) hwy::FlushStream();
      dxr[t] = static_cast<T>(-wt * g);
    }
  }
  if (stream) hwy::FlushStream();
}

// ---------------------------------------------------------------------------------------------
// target scan (validation)

// The scalar table's count_kept, a vector of targets at a time: ignored lanes counted (a mask is
// -1 per lane), out-of-range lanes folded into one mask. Lane counts stay far below overflow:
// chunks of kChunk vectors are summed into the int64 total.
template <class I>
std::int64_t count_kept(const I* t, std::size_t n, std::int64_t C, std::int64_t ignore_index, bool* bad) noexcept {
  if (static_cast<std::int64_t>(static_cast<I>(ignore_index)) != ignore_index || C <= 0 ||
      static_cast<std::int64_t>(static_cast<I>(C)) != C)
  {
    if constexpr (sizeof(I) == 8) return scalar_table<float>().count_kept_i64(t, n, C, ignore_index, bad);
    else return scalar_table<float>().count_kept_i32(t, n, C, ignore_index, bad);
  }
  const hn::ScalableTag<I> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t L = hn::Lanes(d);
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  const V vign = hn::Set(d, static_cast<I>(ignore_index)), vC = hn::Set(d, static_cast<I>(C)), zero = hn::Zero(d);
  V good = hn::VecFromMask(d, hn::Eq(zero, zero));
  std::int64_t ignored = 0;
  std::size_t i = 0;
  while (i + L <= n) {
    const std::size_t end = std::min(n - (n - i) % L, i + kChunk * L);
    V cnt = zero;
    for (; i < end; i += L) {
      const V v = hn::LoadU(d, t + i);
      const auto ign = hn::Eq(v, vign);
      cnt = hn::Sub(cnt, hn::VecFromMask(d, ign));
      const V in_range = hn::AndNot(hn::VecFromMask(d, hn::Lt(v, zero)), hn::VecFromMask(d, hn::Lt(v, vC)));
      good = hn::And(good, hn::Or(hn::VecFromMask(d, ign), in_range));
    }
    ignored += static_cast<std::int64_t>(hn::GetLane(hn::SumOfLanes(d, cnt)));
  }
  bool any_bad = !hn::AllTrue(d, hn::Ne(good, zero));
  for (; i < n; ++i) {
    const std::int64_t v = t[i];
    const bool ign = v == ignore_index;
    any_bad |= !ign && (v < 0 || v >= C);
    ignored += ign;
  }
  *bad = any_bad;
  return static_cast<std::int64_t>(n) - ignored;
}
template <class T>
void fill_cross_entropy_t(KernelTable<T>* t) noexcept {
  t->chunk_sums = &chunk_sums<T>;
  t->chunk_ce_grad = &chunk_ce_grad<T>;
  t->ce_index_i32 = &ce_index<T, std::int32_t>;
  t->ce_index_i64 = &ce_index<T, std::int64_t>;
  t->nll_i32 = &nll<T, std::int32_t>;
  t->nll_i64 = &nll<T, std::int64_t>;
  t->ce_prob = &ce_prob<T>;
  t->ce_stats = &ce_stats<T>;
  t->count_kept_i32 = &count_kept<std::int32_t>;
  t->count_kept_i64 = &count_kept<std::int64_t>;
}

void fill_cross_entropy(KernelTable<float>* t) noexcept { fill_cross_entropy_t(t); }
void fill_cross_entropy(KernelTable<double>* t) noexcept { fill_cross_entropy_t(t); }

#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();
