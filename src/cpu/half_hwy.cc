// half_hwy.cc: the SIMD kernels for bfloat16 and float16 tensors (the softmax family, forward and
// backward, the per-chunk passes of split rows, cross-entropy with class indices or probabilities,
// NLL), compiled once per target through foreach_target; fills its entries of each ISA's 16-bit
// kernel tables (tables_hwy.cc). Shared with the float32 kernels, generic over the storage type:
// the short-row tiles (C <= kSmallC, kernels_small-inl.h) and the forward-only statistics
// (rows-inl.h ce_stats: long rows here, short ones across rows, strided blocks per group), and
// strided blocks (class dimension not last: kernels_strided-inl.h, every entry of the softmax
// family and of cross-entropy, NLL included). Not here: binary cross-entropy on probabilities and
// with logits (bce_hwy.cc) and soft-capping (softcap_hwy.cc), whose loads and stores take the
// storage type. What stays on the scalar twin: rows the vector formulas do not cover (below), rows
// of zero classes, and NLL's forward alone on contiguous rows (a gather of one value a row).
//
// Each value is loaded as 16 bits and widened exactly to float32 (rows-inl.h load_u), computed as
// the float32 kernels compute it (rows-inl.h's passes, exp-inl.h's exponential, sums of exps and
// dot products in float64 lanes, per-row scalars in double) and rounded ONCE to nearest even at the
// store (store_u). The exponential's argument x - m is not TwoSum-corrected (its rounding moves a
// result by at most ~104 u_float, far below a 16-bit ulp). Rows whose output is exp-based and that
// have at most tuning::kHalfOneExpMax classes take one exp per value: e = exp(x - m) is kept in a
// float32 row on the stack (never in the 16-bit output, which would round it twice), then scaled
// into the output. Rows the vector formulas do not cover (a NaN, a +-inf max, a non-finite x[t],
// a -inf logit with smoothing or probability targets) run the scalar twin on that row, decided
// before anything of the row is written (the output may alias the input). Every row's arithmetic
// depends only on C, so the bits are the same for any split of rows across threads.
#include "cpu/hwy_targets.h"  // first: the target set

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/half_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "cpu/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

#if XENT_TARGET_HAS_KERNELS
// Short rows (C <= kSmallC), across rows, shared with float32 (widen_f32 / narrow_f32 too).
#include "cpu/kernels_small-inl.h"
// Blocks with stride != 1 (class dimension not last), shared with float32: strided_softmax_fwd, ...
#include "cpu/kernels_strided-inl.h"

namespace half {

using tuning::kHalfOneExpMax;
constexpr bool kExact = false;  // exp_diff without TwoSum: see the file comment

template <class S>
HWY_INLINE bool stream_half(std::size_t C) { return C * sizeof(float) >= kStreamRowBytes; }

template <class S>
HWY_INLINE bool one_exp_half(std::size_t C) { return C <= kHalfOneExpMax; }

// Writes zeros over a row.
template <class S>
HWY_INLINE void zero_row(S* dx, std::size_t C, bool stream) {
  const hn::ScalableTag<float> d;
  map_row_v(dx, C, stream, [&]() HWY_ATTR { return hn::Zero(d); });
}

// Sum of a[c] b[c] (b == nullptr: sum of a[c]) in float64 lanes (exact products of floats).
template <class S>
double dot(const S* a, const S* b, std::size_t n) noexcept {
  const hn::ScalableTag<float> d;
  const std::size_t N = hn::Lanes(d);
  WideSum<float> acc;
  std::size_t i = 0;
  if (b == nullptr) {
    for (; i + N <= n; i += N) acc.add(load_u(d, a + i));
    if (i < n) acc.add(load_padded(d, a + i, n - i, 0.0f));
  } else {
    for (; i + N <= n; i += N) acc.add_mul(load_u(d, a + i), load_u(d, b + i));
    if (i < n) acc.add_mul(load_padded(d, a + i, n - i, 0.0f), load_padded(d, b + i, n - i, 0.0f));
  }
  return acc.total();
}

// ---------------------------------------------------------------------------------------------
// one-exp rows: max, then e = exp(x - m) into a float32 row while summed (rows-inl.h
// exp_store_sum<S, false, false>: x - m is not TwoSum-corrected here), then e scaled into the
// output. NaN is not tracked in the max: a NaN makes the sum NaN, and the caller, which has written
// nothing yet, hands such a row (S not finite) to the scalar twin.

// Max of a row (a NaN may be dropped; -inf for an all -inf row), on the 16-bit patterns, 2N values
// a vector: read as signed 16-bit integers, the non-negative values order as their patterns and
// lie above every negative one, and the negative ones order in reverse (-0 is the least integer).
// So the largest pattern is the max when it is >= 0, else the least one is; one integer max and
// one min per 2N values instead of two widenings and two float maxes (the max pass took 14% of
// bfloat16 cross-entropy's time at 8192x32000). A positive NaN may win (the caller then takes the
// scalar twin), a negative one never does; -0 and +0 are the same m to every use of it.
template <class S>
HWY_INLINE float row_max_plain(const S* HWY_RESTRICT x, std::size_t C) {
  const hn::ScalableTag<std::int16_t> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  const auto* xi = reinterpret_cast<const std::int16_t*>(x);
  constexpr std::int16_t kNegInf = static_cast<std::int16_t>(std::is_same_v<S, BF16> ? 0xFF80 : 0xFC00);
  V hi0 = hn::Set(d, kNegInf), hi1 = hi0, lo0 = hi0, lo1 = hi0;
  std::size_t i = 0;
  for (; i + 2 * N <= C; i += 2 * N) {
    const V v0 = hn::LoadU(d, xi + i), v1 = hn::LoadU(d, xi + i + N);
    hi0 = hn::Max(hi0, v0);
    lo0 = hn::Min(lo0, v0);
    hi1 = hn::Max(hi1, v1);
    lo1 = hn::Min(lo1, v1);
  }
  HWY_ALIGN std::int16_t hi[hn::MaxLanes(d)], lo[hn::MaxLanes(d)];
  hn::Store(hn::Max(hi0, hi1), d, hi);
  hn::Store(hn::Min(lo0, lo1), d, lo);
  std::int16_t h = kNegInf, l = kNegInf;
  for (std::size_t k = 0; k < N; ++k) {
    h = std::max(h, hi[k]);
    l = std::min(l, lo[k]);
  }
  for (; i < C; ++i) {
    h = std::max(h, xi[i]);
    l = std::min(l, xi[i]);
  }
  return static_cast<float>(S::from_bits(static_cast<std::uint16_t>(h >= 0 ? h : l)));
}

// bfloat16 out = e * scale for a finite scale, two float vectors per 16-bit store: the rounding
// bias (rows-inl.h demote_bits) added in 32-bit lanes, the upper halves gathered by ConcatOdd (one
// pack for two vectors). stream: the values before the first vector-aligned one go through
// map_row_finite, the aligned middle is streamed, the tail through map_row_finite. (The middle
// was once stored plainly whenever the row did not start aligned, i.e. every row but one in 32 when
// C is not a multiple of 32: each line was then read before it was written, and BERT's 30522
// classes took 1.3-1.5x the time of 30528.)
HWY_INLINE void scale_row_bf16(BF16* out, std::size_t C, bool stream, const float* e, float scale) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const hn::RebindToUnsigned<decltype(d)> du;
  const hn::Repartition<std::uint16_t, decltype(d)> d16;
  const std::size_t N = hn::Lanes(d);
  const V vs = hn::Set(d, scale);
  const auto bias = hn::Set(du, 0x7FFFu), one = hn::Set(du, 1u);
  auto rounded = [&](std::size_t i) HWY_ATTR {
    const auto b = hn::BitCast(du, hn::Mul(hn::LoadU(d, e + i), vs));
    return hn::BitCast(d16, hn::Add(b, hn::Add(bias, hn::And(hn::ShiftRight<16>(b), one))));
  };
  auto* o = reinterpret_cast<std::uint16_t*>(out);
  auto f = [&](V v) HWY_ATTR { return hn::Mul(v, vs); };
  std::size_t i = stream_start(out, C, 2 * N * sizeof(std::uint16_t), &stream);
  if (i != 0) map_row_finite(out, i, false, f, e);
  for (; i + 2 * N <= C; i += 2 * N) {
    const auto v = hn::ConcatOdd(d16, rounded(i + N), rounded(i));
    if (stream) hn::Stream(v, d16, o + i);
    else hn::StoreU(v, d16, o + i);
  }
  if (i < C) map_row_finite(out + i, C - i, false, f, e + i);
}

// out = e * scale over a row: the 16-bit stores skip the NaN test when scale is finite (e is in
// [0, 1]).
template <class S>
HWY_INLINE void scale_row(S* out, std::size_t C, bool stream, const float* e, float scale) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const V vs = hn::Set(d, scale);
  auto f = [&](V v) HWY_ATTR { return hn::Mul(v, vs); };
  if constexpr (std::is_same_v<S, BF16>) {
    if (std::isfinite(scale)) return scale_row_bf16(out, C, stream, e, scale);
  }
  if (std::isfinite(scale)) map_row_finite(out, C, stream, f, e);
  else map_row_v(out, C, stream, f, e);
}

// ---------------------------------------------------------------------------------------------
// softmax family

// softmax, one exp per value: e into the float32 scratch row while summed, then e / S stored.
template <class S>
HWY_NOINLINE void softmax_one_exp(const S* x, S* y, Block b) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  HWY_ALIGN float e[kHalfOneExpMax + hn::MaxLanes(d)];
  const std::size_t C = b.C;
  const bool stream = stream_half<S>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const S* xr = x + r * C;
    S* yr = y + r * C;
    const float m = row_max_plain(xr, C);
    const double s = std::isfinite(m) ? exp_store_sum<S, false, false>(xr, e, C, m) : kInf<double>;
    if (!std::isfinite(s)) {
      if (stream) hwy::FlushStream();
      scalar_table<S>().softmax_fwd(xr, yr, Block{1, C, 1, 1});
      continue;
    }
    scale_row(yr, C, stream, e, static_cast<float>(1.0 / s));
  }
  if (stream) hwy::FlushStream();
}

template <class S, bool kLog>
void softmax_like_fwd(const S* x, S* y, Block b) noexcept {
  const auto& scalar = scalar_table<S>();
  const auto scalar_fn = kLog ? scalar.log_softmax_fwd : scalar.softmax_fwd;
  if (b.C == 0) return scalar_fn(x, y, b);
  if (b.stride != 1) return strided_softmax_like_fwd<S, kLog>(x, y, b);
  if (b.C <= kSmallC) return softmax_small(x, y, b.n_outer, b.C, kLog);
  if (!kLog && one_exp_half<S>(b.C)) return softmax_one_exp(x, y, b);
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const bool stream = stream_half<S>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const S* xr = x + r * C;
    S* yr = y + r * C;
    RowStats st;
    if (!row_stats<S, false>(xr, C, nullptr, &st)) {
      if (stream) hwy::FlushStream();
      scalar_fn(xr, yr, Block{1, C, 1, 1});
      continue;
    }
    const V vm = hn::Set(d, static_cast<float>(st.m));
    if constexpr (kLog) {
      // y = (x - m) - log S, as the float32 kernels (log S is not lost in m's magnitude).
      const V vlo = hn::Set(d, static_cast<float>(std::log(st.s)));
      map_row_v(yr, C, stream, [&](V v) HWY_ATTR { return hn::Sub(hn::Sub(v, vm), vlo); }, xr);
    } else {
      const V vinv = hn::Set(d, static_cast<float>(1.0 / st.s));
      map_row_v(yr, C, stream, [&](V v) HWY_ATTR { return hn::Mul(exp_diff<kExact>(d, v, vm), vinv); }, xr);
    }
  }
  if (stream) hwy::FlushStream();
}

template <class S>
void softmax_fwd(const S* x, S* y, Block b) noexcept { softmax_like_fwd<S, false>(x, y, b); }
template <class S>
void log_softmax_fwd(const S* x, S* y, Block b) noexcept { softmax_like_fwd<S, true>(x, y, b); }

template <class S>
void logsumexp_fwd(const S* x, S* lse, Block b) noexcept {
  const auto& scalar = scalar_table<S>();
  if (b.C == 0) return scalar.logsumexp_fwd(x, lse, b);
  if (b.stride != 1) return strided_logsumexp_fwd(x, lse, b);
  if (b.C <= kSmallC) return logsumexp_small(x, lse, b.n_outer, b.C);
  const std::size_t C = b.C;
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const S* xr = x + r * C;
    RowStats st;
    if (!row_stats<S, false>(xr, C, nullptr, &st)) {
      scalar.logsumexp_fwd(xr, lse + r, Block{1, C, 1, 1});
      continue;
    }
    lse[r] = static_cast<S>(st.m + std::log(st.s));
  }
}

template <class S>
void chunk_stats(const S* x, std::size_t n, double* m, double* s) noexcept {
  RowStats st;
  if (n != 0 && row_stats<S, false>(x, n, nullptr, &st)) {
    *m = st.m;
    *s = st.s;
    return;
  }
  scalar_table<S>().chunk_stats(x, n, m, s);
}

template <class S>
void chunk_exp_scale(const S* x, S* y, std::size_t n, double m, double scale) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_half<S>(n);
  const V vm = hn::Set(d, static_cast<float>(m));
  const V vscale = hn::Set(d, static_cast<float>(scale));
  map_row_v(y, n, stream, [&](V v) HWY_ATTR { return hn::Mul(exp_diff<kExact>(d, v, vm), vscale); }, x);
  if (stream) hwy::FlushStream();
}

template <class S>
void chunk_shift(const S* x, S* y, std::size_t n, double m, double shift) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_half<S>(n);
  const V vm = hn::Set(d, static_cast<float>(m));
  const V vlo = hn::Set(d, static_cast<float>(shift));
  map_row_v(y, n, stream, [&](V v) HWY_ATTR { return hn::Sub(hn::Sub(v, vm), vlo); }, x);
  if (stream) hwy::FlushStream();
}

template <class S>
void chunk_softmax_bwd(const S* y, const S* dy, S* dx, std::size_t n, double dotv) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_half<S>(n);
  const V vdot = hn::Set(d, static_cast<float>(dotv));
  map_row_v(dx, n, stream, [&](V yv, V dyv) HWY_ATTR { return hn::Mul(yv, hn::Sub(dyv, vdot)); }, y, dy);
  if (stream) hwy::FlushStream();
}

template <class S>
void chunk_log_softmax_bwd(const S* y, const S* dy, S* dx, std::size_t n, double sum) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_half<S>(n);
  const V vsum = hn::Set(d, static_cast<float>(sum));
  const V zero = hn::Zero(d);
  map_row_v(dx, n, stream, [&](V yv, V dyv) HWY_ATTR { return hn::NegMulAdd(exp_diff_any(d, yv, zero), vsum, dyv); },
            y, dy);
  if (stream) hwy::FlushStream();
}

template <class S>
void softmax_bwd(const S* y, const S* dy, S* dx, Block b) noexcept {
  if (b.C == 0) return scalar_table<S>().softmax_bwd(y, dy, dx, b);
  if (b.stride != 1) return strided_softmax_bwd(y, dy, dx, b);
  if (b.C <= kSmallC) return softmax_small_bwd(y, dy, dx, b.n_outer, b.C, false);
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const bool stream = stream_half<S>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const S* yr = y + r * C;
    const S* dyr = dy + r * C;
    const V vdot = hn::Set(d, static_cast<float>(dot(yr, dyr, C)));
    map_row_v(dx + r * C, C, stream, [&](V yv, V dyv) HWY_ATTR { return hn::Mul(yv, hn::Sub(dyv, vdot)); }, yr, dyr);
  }
  if (stream) hwy::FlushStream();
}

template <class S>
void log_softmax_bwd(const S* y, const S* dy, S* dx, Block b) noexcept {
  if (b.C == 0) return scalar_table<S>().log_softmax_bwd(y, dy, dx, b);
  if (b.stride != 1) return strided_log_softmax_bwd(y, dy, dx, b);
  if (b.C <= kSmallC) return softmax_small_bwd(y, dy, dx, b.n_outer, b.C, true);
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const bool stream = stream_half<S>(C);
  const V zero = hn::Zero(d);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const S* yr = y + r * C;
    const S* dyr = dy + r * C;
    const V vsum = hn::Set(d, static_cast<float>(dot(dyr, static_cast<const S*>(nullptr), C)));
    map_row_v(dx + r * C, C, stream,
              [&](V yv, V dyv) HWY_ATTR { return hn::NegMulAdd(exp_diff_any(d, yv, zero), vsum, dyv); }, yr, dyr);
  }
  if (stream) hwy::FlushStream();
}

template <class S>
void logsumexp_bwd(const S* x, const S* lse, const S* dlse, S* dx, Block b) noexcept {
  const auto& scalar = scalar_table<S>();
  if (b.C == 0) return scalar.logsumexp_bwd(x, lse, dlse, dx, b);
  if (b.stride != 1) return strided_logsumexp_bwd(x, lse, dlse, dx, b);
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const bool stream = stream_half<S>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const S* xr = x + r * C;
    S* dxr = dx + r * C;
    const float l = static_cast<float>(lse[r]);
    if (!std::isfinite(l)) {
      if (stream) hwy::FlushStream();
      scalar.logsumexp_bwd(xr, lse + r, dlse + r, dxr, Block{1, C, 1, 1});
      continue;
    }
    const V vl = hn::Set(d, l);
    const V vg = hn::Set(d, static_cast<float>(dlse[r]));
    map_row_v(dxr, C, stream, [&](V v) HWY_ATTR { return hn::Mul(exp_diff_any(d, v, vl), vg); }, xr);
  }
  if (stream) hwy::FlushStream();
}

// ---------------------------------------------------------------------------------------------
// cross-entropy with class indices, and NLL

// The float32 kernel's formulas (cross_entropy_hwy.cc ce_index):
//   loss_row = (1 - eps) w[t] (lse - x[t]) + eps/C sum_c w[c] (lse - x[c])
//   dx[c]    = g ((1 - eps) w[t] (p[c] - [c == t]) + eps/C (W p[c] - w[c])),  W = sum_c w[c]
// with p[t] - 1 = expm1(x[t] - lse). kOneExp: e = exp(x - m) kept in a float32 row (C <=
// kHalfOneExpMax, a gradient wanted), else the gradient recomputes exp(x - m) from the row.
template <class S, class I, bool kOneExp>
HWY_NOINLINE void ce_index_rows(const CeIndexArgs<S, I>& a, Block b) {
  const auto& scalar = scalar_table<S>();
  auto* scalar_fn = [&] {
    if constexpr (sizeof(I) == 4) return scalar.ce_index_i32;
    else return scalar.ce_index_i64;
  }();
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  HWY_ALIGN float e[kOneExp ? kHalfOneExpMax + hn::MaxLanes(d) : 1];
  const std::size_t C = b.C;
  const bool stream = a.dx != nullptr && stream_half<S>(C);
  const double eps = a.smoothing;
  const double W = a.weight_sum;
  const double Cd = static_cast<double>(C);
  const Coefs<S> wk{a.weight};
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const S* xr = a.x + r * C;
    S* dxr = a.dx != nullptr ? a.dx + r * C : nullptr;
    auto row_scalar = [&] {
      if (stream) hwy::FlushStream();
      scalar_fn(ce_row_args(a, r, C), Block{1, C, 1, 1});
    };
    const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
    if (t == a.ignore_index && dxr == nullptr) {  // loss 0, nothing to read
      if (a.row_loss != nullptr) a.row_loss[r] = 0;
      continue;
    }
    double m = 0, s = 0, A = 0, Wr = 0;
    bool ok;
    float mf = 0;
    if (kOneExp) {
      // NaN is caught by the sum below, but an ignored row is zeroed without one.
      if (t == a.ignore_index) {
        ok = row_max(xr, C, &mf);
      } else {
        mf = row_max_plain(xr, C);
        ok = std::isfinite(mf);
      }
      m = mf;
    } else {
      RowStats st;
      ok = t == a.ignore_index || eps == 0 ? row_stats<S, false>(xr, C, nullptr, &st) : row_stats<S, true>(xr, C, &wk, &st);
      m = st.m;
      s = st.s;
      A = st.wx;
      Wr = st.wsum;
    }
    if (t == a.ignore_index) {
      // Loss 0; gradient 0 * p, which is NaN for the whole row when its normaliser is not finite.
      if (!ok) {
        row_scalar();
        continue;
      }
      if (a.row_loss != nullptr) a.row_loss[r] = 0;
      if (dxr != nullptr) zero_row(dxr, C, stream);
      continue;
    }
    const double xt = static_cast<double>(static_cast<float>(xr[t]));
    ok = ok && std::isfinite(xt);
    if (kOneExp && ok && eps != 0) ok = row_coef_sums(xr, C, wk, mf, &A, &Wr);
    if (!ok) {
      row_scalar();
      continue;
    }
    if (kOneExp) {
      s = exp_store_sum<S, false, false>(xr, e, C, mf);
      if (!std::isfinite(s)) {
        row_scalar();
        continue;
      }
    }
    const double logS = std::log(s);
    const double wt = a.weight != nullptr ? static_cast<double>(static_cast<float>(a.weight[t])) : 1.0;
    const double lse = m + logS;
    if (a.row_loss != nullptr) {
      const double nll = wt * (lse - xt);
      a.row_loss[r] = eps == 0 ? nll : (1 - eps) * nll + eps / Cd * (Wr * logS - A);
    }
    if (dxr == nullptr) continue;
    const double g = row_upstream(a, r);
    const double coef = (1 - eps) * wt + eps * W / Cd;  // multiplies p[c]
    const float scale = static_cast<float>(g * coef / s);
    const V vscale = hn::Set(d, scale);
    const V vm = hn::Set(d, mf = static_cast<float>(m));
    if constexpr (kOneExp) {
      const float* er = e;
      if (eps == 0) scale_row(dxr, C, stream, er, scale);
      else ce_grad_row(dxr, C, stream, er, wk, [](V v) HWY_ATTR { return v; }, scale, static_cast<float>(g * eps / Cd));
    } else {
      auto exp_of = [&](V v) HWY_ATTR { return exp_diff<kExact>(d, v, vm); };
      if (eps == 0) map_row_v(dxr, C, stream, [&](V v) HWY_ATTR { return hn::Mul(exp_of(v), vscale); }, xr);
      else ce_grad_row(dxr, C, stream, xr, wk, exp_of, scale, static_cast<float>(g * eps / Cd));
    }
    // The target's entry, accurately: p[t] - 1 = expm1(x[t] - lse), rounded once from double.
    const double pt_m1 = std::expm1(xt - lse);
    double dt = (1 - eps) * wt * pt_m1;
    if (eps != 0) dt += eps / Cd * (W * (pt_m1 + 1) - wt);
    if (stream) hwy::FlushStream();
    dxr[t] = static_cast<S>(g * dt);
  }
  if (stream) hwy::FlushStream();
}

template <class S, class I>
void ce_index(const CeIndexArgs<S, I>& a, Block b) noexcept {
  const auto& scalar = scalar_table<S>();
  auto* scalar_fn = [&] {
    if constexpr (sizeof(I) == 4) return scalar.ce_index_i32;
    else return scalar.ce_index_i64;
  }();
  if (b.C == 0) return scalar_fn(a, b);
  if (b.stride != 1) return strided_ce_index(a, b);
  if (b.C <= kSmallC) return ce_index_small(a, b.n_outer, b.C, scalar_fn);
  if (a.dx != nullptr && one_exp_half<S>(b.C)) return ce_index_rows<S, I, true>(a, b);
  ce_index_rows<S, I, false>(a, b);
}

// NLL: the scalar twin's formulas (loss_row = -w[t] x[t]; dx zero but dx[t] = -g w[t]); the work
// is the zero fill.
template <class S, class I>
void nll(const CeIndexArgs<S, I>& a, Block b) noexcept {
  const auto& scalar = scalar_table<S>();
  auto* scalar_fn = [&] {
    if constexpr (sizeof(I) == 4) return scalar.nll_i32;
    else return scalar.nll_i64;
  }();
  if (b.C == 0) return scalar_fn(a, b);
  if (b.stride != 1) return strided_nll(a, b);
  // Forward only: a gather of one value per row, no vector work (the scalar twin's loop).
  if (a.dx == nullptr) return scalar_fn(a, b);
  const std::size_t C = b.C;
  const bool stream = stream_half<S>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
    const bool ignored = t == a.ignore_index;
    const double wt = ignored ? 0.0 : (a.weight != nullptr ? static_cast<double>(static_cast<float>(a.weight[t])) : 1.0);
    if (a.row_loss != nullptr) a.row_loss[r] = ignored ? 0.0 : -wt * static_cast<double>(static_cast<float>(a.x[r * C + t]));
    S* dxr = a.dx + r * C;
    zero_row(dxr, C, stream);
    if (!ignored) {
      const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(static_cast<float>(a.dloss[r])) : a.dloss_scale;
      if (stream) hwy::FlushStream();
      dxr[t] = static_cast<S>(-wt * g);
    }
  }
  if (stream) hwy::FlushStream();
}

// Probability targets (cross_entropy_hwy.cc ce_prob's formulas), two passes: the sums (row_stats
// with the coefficients c = w q), then dx = exp(x - m) (g Q / S) - g c.
template <class S>
void ce_prob(const CeProbArgs<S>& a, Block b) noexcept {
  const auto& scalar = scalar_table<S>();
  if (b.C == 0) return scalar.ce_prob(a, b);
  if (b.stride != 1) return strided_ce_prob(a, b);
  if (b.C <= kSmallC) return ce_prob_small(a, b.n_outer, b.C);
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const double eps = a.smoothing;
  const bool stream = a.dx != nullptr && stream_half<S>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const S* xr = a.x + r * C;
    S* dxr = a.dx != nullptr ? a.dx + r * C : nullptr;
    const Coefs<S> k{a.weight, a.target + r * C, 1 - eps, eps / static_cast<double>(C)};
    RowStats st;
    if (!row_stats<S, true>(xr, C, &k, &st)) {
      if (stream) hwy::FlushStream();
      CeProbArgs<S> ra = a;
      ra.x = xr;
      ra.target = k.t;
      ra.row_loss = a.row_loss != nullptr ? a.row_loss + r : nullptr;
      ra.dx = dxr;
      ra.dloss = a.dloss != nullptr ? a.dloss + r : nullptr;
      scalar.ce_prob(ra, Block{1, C, 1, 1});
      continue;
    }
    if (a.row_loss != nullptr) a.row_loss[r] = st.wsum * std::log(st.s) - st.wx;
    if (dxr == nullptr) continue;
    const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(static_cast<float>(a.dloss[r])) : a.dloss_scale;
    const V vm = hn::Set(d, static_cast<float>(st.m));
    ce_grad_row(dxr, C, stream, xr, k, [&](V v) HWY_ATTR { return exp_diff<kExact>(d, v, vm); },
                static_cast<float>(g * st.wsum / st.s), static_cast<float>(g));
  }
  if (stream) hwy::FlushStream();
}

template <class S>
void chunk_ce_grad(const S* x, const Coefs<S>& k, S* dx, std::size_t n, double m, double scale, double gb) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_half<S>(n);
  const V vm = hn::Set(d, static_cast<float>(m));
  ce_grad_row(dx, n, stream, x, k, [&](V v) HWY_ATTR { return exp_diff<kExact>(d, v, vm); }, static_cast<float>(scale),
              static_cast<float>(gb));
  if (stream) hwy::FlushStream();
}

template <class S>
void fill(KernelTable<S>* t) noexcept {
  t->softmax_fwd = &softmax_fwd<S>;
  t->log_softmax_fwd = &log_softmax_fwd<S>;
  t->logsumexp_fwd = &logsumexp_fwd<S>;
  t->chunk_stats = &chunk_stats<S>;
  t->chunk_exp_scale = &chunk_exp_scale<S>;
  t->chunk_shift = &chunk_shift<S>;
  t->chunk_dot = &dot<S>;
  t->chunk_sums = &chunk_sums<S>;
  t->chunk_ce_grad = &chunk_ce_grad<S>;
  t->chunk_softmax_bwd = &chunk_softmax_bwd<S>;
  t->chunk_log_softmax_bwd = &chunk_log_softmax_bwd<S>;
  t->softmax_bwd = &softmax_bwd<S>;
  t->log_softmax_bwd = &log_softmax_bwd<S>;
  t->logsumexp_bwd = &logsumexp_bwd<S>;
  t->ce_index_i32 = &ce_index<S, std::int32_t>;
  t->ce_index_i64 = &ce_index<S, std::int64_t>;
  t->nll_i32 = &nll<S, std::int32_t>;
  t->nll_i64 = &nll<S, std::int64_t>;
  t->ce_prob = &ce_prob<S>;
  t->ce_stats = &ce_stats<S>;
  t->widen_f32 = &widen_f32<S>;
  t->narrow_f32 = &narrow_f32<S>;
}

}  // namespace half

void fill_half(KernelTable<BF16>* t) noexcept { half::fill(t); }
void fill_half(KernelTable<F16>* t) noexcept { half::fill(t); }

#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();
