// softmax_hwy.cc: the SIMD softmax family (softmax, log_softmax, logsumexp, forward and backward,
// and the per-chunk passes of rows split across threads), compiled once per target through
// foreach_target; fills its entries of each ISA's kernel table (tables_hwy.cc). The row machinery
// is rows-inl.h's, short rows (across rows) kernels_small-inl.h's, strided blocks (class dim not
// last) kernels_strided-inl.h's.
//
// Rows with a +-inf max or a NaN run the scalar twin (kernels_scalar.cc) on that row, so edge cases
// have exactly the scalar semantics. Long rows split across threads run the same two passes per
// chunk (chunk_stats, then chunk_exp_scale / chunk_shift; backward chunk_dot, then
// chunk_softmax_bwd / chunk_log_softmax_bwd); the front end combines the chunks in chunk order.
// log_softmax's output keeps m and log S apart: y = (x - m) - log S.
#include "cpu/hwy_targets.h"  // first: the target set

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/softmax_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "cpu/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

#if XENT_TARGET_HAS_KERNELS
// Blocks with stride != 1 (class dimension not last): strided_softmax_fwd, ...
#include "cpu/kernels_strided-inl.h"
// Short rows (C <= kSmallC), across rows: softmax_small, ..., ce_index_small, ce_prob_small.
#include "cpu/kernels_small-inl.h"

// ---------------------------------------------------------------------------------------------
// softmax family

// softmax (kLog false) and log_softmax (kLog true) forward: the same two passes, different map.
template <class T, bool kLog>
void softmax_like_fwd(const T* x, T* y, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  const auto scalar_fn = kLog ? scalar.log_softmax_fwd : scalar.softmax_fwd;
  if (b.C == 0) return scalar_fn(x, y, b);
  if (b.stride != 1) return strided_softmax_like_fwd<T, kLog>(x, y, b);
  if (b.C <= kSmallC) return softmax_small(x, y, b.n_outer, b.C, kLog);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  if (!kLog && one_exp_rows<T>(C)) {  // softmax, row in cache: e written once, then scaled in place
    for (std::size_t r = 0; r < b.n_outer; ++r) {
      const T* xr = x + r * C;
      T* yr = y + r * C;
      T m;
      if (!row_max(xr, C, &m)) {
        scalar_fn(xr, yr, Block{1, C, 1, 1});
        continue;
      }
      const V vinv = hn::Set(d, static_cast<T>(1.0 / exp_store_sum(xr, yr, C, m)));
      map_row<1>(yr, C, false, {yr}, [&](V v) HWY_ATTR { return hn::Mul(v, vinv); });
    }
    return;
  }
  const bool stream = stream_rows<T>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    RowStats st;
    if (!row_stats<T, false>(xr, C, nullptr, &st)) {
      scalar_fn(xr, yr, Block{1, C, 1, 1});
      continue;
    }
    const V vm = hn::Set(d, static_cast<T>(st.m));
    if constexpr (kLog) {
      // y = (x - m) - log S, as PyTorch and the scalar table: m is a T value, so x - m is one
      // rounding of a small number and log S is not lost in m's magnitude (folding the two into
      // one shift m + log S would drop log S entirely when |m| >> log S, e.g. three tied logits
      // of 1e30).
      const V vlo = hn::Set(d, static_cast<T>(std::log(st.s)));
      map_row<1>(yr, C, stream, {xr}, [&](V v) HWY_ATTR { return hn::Sub(hn::Sub(v, vm), vlo); });
    } else {
      const V vinv = hn::Set(d, static_cast<T>(1.0 / st.s));
      map_row<1>(yr, C, stream, {xr}, [&](V v) HWY_ATTR { return hn::Mul(exp_diff<kExactOut>(d, v, vm), vinv); });
    }
  }
  if (stream) hwy::FlushStream();
}

template <class T>
void softmax_fwd(const T* x, T* y, Block b) noexcept { softmax_like_fwd<T, false>(x, y, b); }
template <class T>
void log_softmax_fwd(const T* x, T* y, Block b) noexcept { softmax_like_fwd<T, true>(x, y, b); }

template <class T>
void logsumexp_fwd(const T* x, T* lse, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  if (b.C == 0) return scalar.logsumexp_fwd(x, lse, b);
  if (b.stride != 1) return strided_logsumexp_fwd(x, lse, b);
  if (b.C <= kSmallC) return logsumexp_small(x, lse, b.n_outer, b.C);
  const std::size_t C = b.C;
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* xr = x + r * C;
    RowStats st;
    if (!row_stats<T, false>(xr, C, nullptr, &st)) {
      scalar.logsumexp_fwd(xr, lse + r, Block{1, C, 1, 1});
      continue;
    }
    lse[r] = static_cast<T>(st.m + std::log(st.s));
  }
}

// Long rows split into chunks by the front end: pass 1 and pass 2 of softmax_like_fwd on one run.
// A run row_stats declines (a NaN, a +inf, all -inf) gets the scalar twin's stats, which say which.
template <class T>
void chunk_stats(const T* x, std::size_t n, double* m, double* s) noexcept {
  RowStats st;
  if (n != 0 && row_stats<T, false>(x, n, nullptr, &st)) {
    *m = st.m;
    *s = st.s;
    return;
  }
  scalar_table<T>().chunk_stats(x, n, m, s);
}

template <class T>
void chunk_exp_scale(const T* x, T* y, std::size_t n, double m, double scale) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_rows<T>(n);
  const V vm = hn::Set(d, static_cast<T>(m));
  const V vscale = hn::Set(d, static_cast<T>(scale));
  map_row<1>(y, n, stream, {x}, [&](V v) HWY_ATTR { return hn::Mul(exp_diff<kExactOut>(d, v, vm), vscale); });
  if (stream) hwy::FlushStream();
}

template <class T>
void chunk_shift(const T* x, T* y, std::size_t n, double m, double shift) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_rows<T>(n);
  const V vm = hn::Set(d, static_cast<T>(m));
  const V vlo = hn::Set(d, static_cast<T>(shift));
  map_row<1>(y, n, stream, {x}, [&](V v) HWY_ATTR { return hn::Sub(hn::Sub(v, vm), vlo); });
  if (stream) hwy::FlushStream();
}

template <class T>
double chunk_dot(const T* a, const T* b, std::size_t n) noexcept {
  const hn::ScalableTag<T> d;
  const std::size_t N = hn::Lanes(d);
  WideSum<T> acc;
  std::size_t i = 0;
  if (b == nullptr) {
    for (; i + N <= n; i += N) acc.add(hn::LoadU(d, a + i));
    if (i < n) acc.add(load_padded(d, a + i, n - i, T(0)));
  } else {
    for (; i + N <= n; i += N) acc.add_mul(hn::LoadU(d, a + i), hn::LoadU(d, b + i));
    if (i < n) acc.add_mul(load_padded(d, a + i, n - i, T(0)), load_padded(d, b + i, n - i, T(0)));
  }
  return acc.total();
}

template <class T>
void chunk_softmax_bwd(const T* y, const T* dy, T* dx, std::size_t n, double dot) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_rows<T>(n);
  const V vdot = hn::Set(d, static_cast<T>(dot));
  map_row<2>(dx, n, stream, {y, dy}, [&](V yv, V dyv) HWY_ATTR { return hn::Mul(yv, hn::Sub(dyv, vdot)); });
  if (stream) hwy::FlushStream();
}

template <class T>
void chunk_log_softmax_bwd(const T* y, const T* dy, T* dx, std::size_t n, double sum) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_rows<T>(n);
  const V vsum = hn::Set(d, static_cast<T>(sum));
  const V zero = hn::Zero(d);
  map_row<2>(dx, n, stream, {y, dy}, [&](V yv, V dyv) HWY_ATTR { return hn::NegMulAdd(exp_diff_any(d, yv, zero), vsum, dyv); });
  if (stream) hwy::FlushStream();
}

template <class T>
void softmax_bwd(const T* y, const T* dy, T* dx, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  if (b.C == 0) return scalar.softmax_bwd(y, dy, dx, b);
  if (b.stride != 1) return strided_softmax_bwd(y, dy, dx, b);
  if (b.C <= kSmallC) return softmax_small_bwd(y, dy, dx, b.n_outer, b.C, false);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const bool stream = stream_rows<T>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* yr = y + r * C;
    const T* dyr = dy + r * C;
    const V vdot = hn::Set(d, static_cast<T>(chunk_dot(yr, dyr, C)));
    map_row<2>(dx + r * C, C, stream, {yr, dyr}, [&](V yv, V dyv) HWY_ATTR { return hn::Mul(yv, hn::Sub(dyv, vdot)); });
  }
  if (stream) hwy::FlushStream();
}

template <class T>
void log_softmax_bwd(const T* y, const T* dy, T* dx, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  if (b.C == 0) return scalar.log_softmax_bwd(y, dy, dx, b);
  if (b.stride != 1) return strided_log_softmax_bwd(y, dy, dx, b);
  if (b.C <= kSmallC) return softmax_small_bwd(y, dy, dx, b.n_outer, b.C, true);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const bool stream = stream_rows<T>(C);
  const V zero = hn::Zero(d);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* yr = y + r * C;
    const T* dyr = dy + r * C;
    const V vsum = hn::Set(d, static_cast<T>(chunk_dot(dyr, static_cast<const T*>(nullptr), C)));
    map_row<2>(dx + r * C, C, stream, {yr, dyr},
               [&](V yv, V dyv) HWY_ATTR { return hn::NegMulAdd(exp_diff_any(d, yv, zero), vsum, dyv); });
  }
  if (stream) hwy::FlushStream();
}

template <class T>
void logsumexp_bwd(const T* x, const T* lse, const T* dlse, T* dx, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  if (b.C == 0) return scalar.logsumexp_bwd(x, lse, dlse, dx, b);
  if (b.stride != 1) return strided_logsumexp_bwd(x, lse, dlse, dx, b);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const bool stream = stream_rows<T>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* xr = x + r * C;
    T* dxr = dx + r * C;
    if (!std::isfinite(lse[r])) {
      scalar.logsumexp_bwd(xr, lse + r, dlse + r, dxr, Block{1, C, 1, 1});
      continue;
    }
    const V vl = hn::Set(d, lse[r]);
    const V vg = hn::Set(d, dlse[r]);
    map_row<1>(dxr, C, stream, {xr}, [&](V v) HWY_ATTR { return hn::Mul(exp_diff_any(d, v, vl), vg); });
  }
  if (stream) hwy::FlushStream();
}
template <class T>
void fill_softmax_t(KernelTable<T>* t) noexcept {
  t->softmax_fwd = &softmax_fwd<T>;
  t->log_softmax_fwd = &log_softmax_fwd<T>;
  t->logsumexp_fwd = &logsumexp_fwd<T>;
  t->chunk_stats = &chunk_stats<T>;
  t->chunk_exp_scale = &chunk_exp_scale<T>;
  t->chunk_shift = &chunk_shift<T>;
  t->chunk_dot = &chunk_dot<T>;
  t->chunk_softmax_bwd = &chunk_softmax_bwd<T>;
  t->chunk_log_softmax_bwd = &chunk_log_softmax_bwd<T>;
  t->softmax_bwd = &softmax_bwd<T>;
  t->log_softmax_bwd = &log_softmax_bwd<T>;
  t->logsumexp_bwd = &logsumexp_bwd<T>;
}

void fill_softmax(KernelTable<float>* t) noexcept { fill_softmax_t(t); }
void fill_softmax(KernelTable<double>* t) noexcept { fill_softmax_t(t); }

// exp_nonpos over n values (the ulp test's hook).
template <class T>
void exp_nonpos_n(const T* x, T* y, std::size_t n) noexcept {
  const hn::ScalableTag<T> d;
  const std::size_t L = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(exp_nonpos(d, hn::LoadU(d, x + i), hn::Zero(d)), d, y + i);
  for (; i < n; ++i) {
    HWY_ALIGN T buf[kMaxLanesBytes / sizeof(T)] = {};
    buf[0] = x[i];
    hn::Store(exp_nonpos(d, hn::Load(d, buf), hn::Zero(d)), d, buf);
    y[i] = buf[0];
  }
}

void fill_exp(KernelTable<float>* t) noexcept { t->exp_nonpos = &exp_nonpos_n<float>; }
void fill_exp(KernelTable<double>* t) noexcept { t->exp_nonpos = &exp_nonpos_n<double>; }

#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();
