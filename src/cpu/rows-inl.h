// rows-inl.h: the SIMD kernels' shared row machinery, for every per-target unit (Highway
// foreach_target; include after hwy/highway.h): float64 accumulators, padded loads, pass 1
// (row_stats: max and sum of exps, one read), pass 2 (map_row: one elementwise write), the
// one-exp scheme for cache-resident rows, the probability/smoothing coefficients, and the short-row
// tiles (C <= kSmallC, vectorised across rows). The op families (softmax_hwy.cc,
// cross_entropy_hwy.cc, bce_hwy.cc) build their kernels from these; nothing here is a kernel-table
// entry. Thresholds are tuning.h's; the exponential is exp-inl.h's.
//
// Shape of the work, per contiguous row:
//   pass 1 (row_stats): one read of the row from memory, in chunks of kChunkBytes that stay in L1:
//     chunk max, then sum of exp(x - running max) over the same chunk (online normaliser: the sum
//     is rescaled by exp(old - new) when the max grows). Gives m = max and S = sum exp(x - m).
//   pass 2 (map_row): recompute exp(x - m) from the row, now in L2, and write the output once,
//     with non-temporal stores for long rows so the output costs no read-for-ownership traffic.
// Rows of at most kOneExpRowBytes whose output is exp-based take one exp per value instead: max;
// e = exp(x - m) written into the output while summed (the next row's lines prefetched meanwhile);
// then the output, still in cache, scaled in place. Rows of C <= kSmallC are done across rows: a
// tile of one vector's worth of rows is transposed so each column is a vector and each row a lane
// (in registers on AVX-512 for rows up to one vector long), and each value costs one exp, kept in
// the tile between the sum and the output. Nothing allocates; tails use padded stack buffers.
//
// Numerics. Sums of exps and dot products accumulate float32 vectors of four-term partial sums into
// float64 lanes; per-row scalars are double. The order of every reduction depends only on C (and
// the target), never on the rows around it, so any split of rows across threads gives the same bits.

#ifndef XENT_CPU_ROWS_COMMON_
#define XENT_CPU_ROWS_COMMON_
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/kernels.h"
#include "cpu/tuning.h"

namespace xent::cpu::hwy_common {

template <class T> const KernelTable<T>& scalar_table() noexcept;
template <> inline const KernelTable<float>& scalar_table<float>() noexcept { return scalar_table_f32(); }
template <> inline const KernelTable<double>& scalar_table<double>() noexcept { return scalar_table_f64(); }
template <> inline const KernelTable<BF16>& scalar_table<BF16>() noexcept { return scalar_table_bf16(); }
template <> inline const KernelTable<F16>& scalar_table<F16>() noexcept { return scalar_table_f16(); }

// The arithmetic type of a storage type S: S itself for float and double, float for the 16-bit
// types (loaded and widened exactly, computed in float32, rounded once to nearest even at the store).
template <class S> struct ComputeOf { using type = S; };
template <> struct ComputeOf<BF16> { using type = float; };
template <> struct ComputeOf<F16> { using type = float; };
template <class S> using compute_t = typename ComputeOf<S>::type;

struct RowStats {
  double m = 0;   // max of the row (finite)
  double s = 0;   // sum of exp(x - m), >= 1
  double wx = 0;    // sum of w[c] * (x[c] - m) (w = 1 when absent; <= 0), label smoothing only
  double wsum = 0;  // sum of w[c], label smoothing only
};

}  // namespace xent::cpu::hwy_common
#endif  // XENT_CPU_ROWS_COMMON_

#if defined(XENT_CPU_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_CPU_ROWS_INL_H_
#undef XENT_CPU_ROWS_INL_H_
#else
#define XENT_CPU_ROWS_INL_H_
#endif

#include "cpu/exp-inl.h"
#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {

#if XENT_TARGET_HAS_KERNELS
using hwy_common::compute_t;
using hwy_common::RowStats;
using hwy_common::scalar_table;
using tuning::kChunkBytes;
using tuning::kExactOut;
using tuning::kExactSum;
using tuning::kOneExpRowBytes;
using tuning::kSmallC;
using tuning::kStreamRowBytes;
constexpr std::size_t kMaxLanesBytes = HWY_MAX_BYTES;

// ---------------------------------------------------------------------------------------------
// storage: float32/float64 vectors loaded and stored as they are; bfloat16 and float16 widened
// exactly to float32 on load and rounded to nearest even (one rounding) on store. Highway 1.0's
// own DemoteTo truncates to bfloat16 (and to float16 where the CPU has no conversion instruction),
// and its float16 PromoteTo without one maps inf/NaN to finite values, so those are written out
// here with integer operations, portable to every target; float16 uses Highway's conversions only
// on x86 targets that have F16C (vcvtph2ps / vcvtps2ph, round to nearest even).

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2 && !defined(HWY_DISABLE_F16C)
#define XENT_NATIVE_F16 1
#else
#define XENT_NATIVE_F16 0
#endif

template <class D>
HWY_INLINE hn::Vec<D> load_u(D d, const hn::TFromD<D>* p) { return hn::LoadU(d, p); }

template <class D>
HWY_INLINE hn::Vec<D> load_u(D d, const BF16* p) {
  const hn::Rebind<std::uint16_t, D> d16;
  const hn::Rebind<std::uint32_t, D> d32;
  const auto bits = hn::PromoteTo(d32, hn::LoadU(d16, reinterpret_cast<const std::uint16_t*>(p)));
  return hn::BitCast(d, hn::ShiftLeft<16>(bits));
}

template <class D>
HWY_INLINE hn::Vec<D> load_u(D d, const F16* p) {
#if XENT_NATIVE_F16
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(d, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
#else
  // |h| << 13 is h's exponent and fraction in float's fields with float's bias short by 112:
  // times 2^112 it is exact for normal and subnormal h; inf/NaN get the all-ones exponent.
  const hn::Rebind<std::uint16_t, D> d16;
  const hn::Rebind<std::uint32_t, D> d32;
  const auto h = hn::PromoteTo(d32, hn::LoadU(d16, reinterpret_cast<const std::uint16_t*>(p)));
  const auto mag = hn::And(h, hn::Set(d32, 0x7FFFu));
  const auto shifted = hn::ShiftLeft<13>(mag);
  const auto special = hn::RebindMask(d, hn::Eq(hn::Min(mag, hn::Set(d32, 0x7C00u)), hn::Set(d32, 0x7C00u)));
  const hn::Vec<D> finite = hn::Mul(hn::BitCast(d, shifted), hn::Set(d, 0x1p112f));
  const hn::Vec<D> inf_nan = hn::BitCast(d, hn::Or(shifted, hn::Set(d32, 0x7F800000u)));
  const auto sign = hn::BitCast(d, hn::ShiftLeft<16>(hn::And(h, hn::Set(d32, 0x8000u))));
  return hn::Or(sign, hn::IfThenElse(special, inf_nan, finite));
#endif
}

// float32 lanes rounded to nearest even as bfloat16 bits, NaN quieted with its sign kept (as
// half.h's scalar conversion).
// kFinite: the caller knows no lane is NaN (the NaN test is skipped; infinities round to themselves).
template <bool kFinite = false, class D>
HWY_INLINE hn::Vec<hn::Rebind<std::uint16_t, D>> demote_bits(D d, hn::Vec<D> v, const BF16*) {
  const hn::Rebind<std::uint16_t, D> d16;
  const hn::Rebind<std::uint32_t, D> d32;
  const hn::Rebind<std::int32_t, D> di32;
  const auto b = hn::BitCast(d32, v);
  auto r = hn::Add(b, hn::Add(hn::Set(d32, 0x7FFFu), hn::And(hn::ShiftRight<16>(b), hn::Set(d32, 1u))));
  if constexpr (!kFinite) r = hn::IfThenElse(hn::RebindMask(d32, hn::IsNaN(v)), hn::Or(b, hn::Set(d32, 0x00400000u)), r);
  return hn::DemoteTo(d16, hn::BitCast(di32, hn::ShiftRight<16>(r)));
}

// float32 lanes rounded to nearest even as float16 bits (overflow to inf, subnormals rounded once).
template <bool kFinite = false, class D>
HWY_INLINE hn::Vec<hn::Rebind<std::uint16_t, D>> demote_bits(D d, hn::Vec<D> v, const F16*) {
  const hn::Rebind<std::uint16_t, D> d16;
#if XENT_NATIVE_F16
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::BitCast(d16, hn::DemoteTo(dh, v));
#else
  // F. Giesen's float_to_half_fast3_rtne, lane-wise.
  const hn::Rebind<std::int32_t, D> di32;
  const auto b = hn::BitCast(di32, v);
  const auto sign = hn::And(b, hn::Set(di32, std::int32_t{-0x7FFFFFFF - 1}));
  const auto a = hn::Xor(b, sign);  // |v|, as int32 >= 0
  const auto inf_nan = hn::IfThenElse(hn::Gt(a, hn::Set(di32, 0x7F800000)), hn::Set(di32, 0x7E00), hn::Set(di32, 0x7C00));
  const auto magic = hn::Set(di32, 126 << 23);  // 0.5f: adding it rounds into the subnormal grid
  const auto sub = hn::Sub(hn::BitCast(di32, hn::Add(hn::BitCast(d, a), hn::BitCast(d, magic))), magic);
  const auto odd = hn::And(hn::ShiftRight<13>(a), hn::Set(di32, 1));
  const auto norm = hn::ShiftRight<13>(hn::Add(hn::Add(a, hn::Set(di32, ((15 - 127) * (1 << 23)) + 0xFFF)), odd));
  auto o = hn::IfThenElse(hn::Lt(a, hn::Set(di32, 113 << 23)), sub, norm);
  o = hn::IfThenElse(hn::Lt(a, hn::Set(di32, (127 + 16) << 23)), o, inf_nan);
  const hn::Rebind<std::uint32_t, D> d32;
  o = hn::Or(o, hn::BitCast(di32, hn::ShiftRight<16>(hn::BitCast(d32, sign))));
  return hn::DemoteTo(d16, o);
#endif
}

template <bool kFinite = false, class D>
HWY_INLINE void store_u(hn::Vec<D> v, D d, hn::TFromD<D>* p) { hn::StoreU(v, d, p); }
template <bool kFinite = false, class D>
HWY_INLINE void stream_u(hn::Vec<D> v, D d, hn::TFromD<D>* p) { hn::Stream(v, d, p); }
template <bool kFinite = false, class D, class S, class = std::enable_if_t<::xent::detail::kIsHalf<S>>>
HWY_INLINE void store_u(hn::Vec<D> v, D d, S* p) {
  hn::StoreU(demote_bits<kFinite>(d, v, p), hn::Rebind<std::uint16_t, D>(), reinterpret_cast<std::uint16_t*>(p));
}
// p aligned to the 16-bit vector (half the float vector's bytes). A 16-bit vector narrower than 16
// bytes (SSE4's four lanes) is stored plainly: a non-temporal store writes whole 16-byte vectors.
template <bool kFinite = false, class D, class S, class = std::enable_if_t<::xent::detail::kIsHalf<S>>>
HWY_INLINE void stream_u(hn::Vec<D> v, D d, S* p) {
  const hn::Rebind<std::uint16_t, D> d16;
  if constexpr (hn::MaxLanes(d16) * sizeof(std::uint16_t) >= 16) {
    hn::Stream(demote_bits<kFinite>(d, v, p), d16, reinterpret_cast<std::uint16_t*>(p));
  } else {
    hn::StoreU(demote_bits<kFinite>(d, v, p), d16, reinterpret_cast<std::uint16_t*>(p));
  }
}

// ---------------------------------------------------------------------------------------------
// float64 accumulators (fixed lane order: the total depends only on the sequence of adds)

template <class T> struct WideSum;

template <>
struct WideSum<double> {
  using D = hn::ScalableTag<double>;
  using V = hn::Vec<D>;
  D d;
  V acc;
  HWY_INLINE WideSum() : acc(hn::Zero(D())) {}
  static HWY_INLINE V splat(double m) { return hn::Set(D(), m); }
  HWY_INLINE void add(V v) { acc = hn::Add(acc, v); }
  HWY_INLINE void add_mul(V a, V b) { acc = hn::MulAdd(a, b, acc); }
  // (x - m) and w * (x - m); the subtraction rounds in double.
  HWY_INLINE void add_shifted(V x, V m) { acc = hn::Add(acc, hn::Sub(x, m)); }
  HWY_INLINE void add_shifted_mul(V x, V m, V w) { acc = hn::MulAdd(hn::Sub(x, m), w, acc); }
  HWY_INLINE double total() const { return hn::GetLane(hn::SumOfLanes(d, acc)); }
  // Each lane's own sum (no reduction across lanes: the across-rows tiles, one row per lane).
  HWY_INLINE void store_lanes(double* out) const { hn::StoreU(acc, d, out); }
};

template <>
struct WideSum<float> {
  using D = hn::ScalableTag<float>;
  using DH = hn::Half<D>;
  using DW = hn::Rebind<double, DH>;
  using V = hn::Vec<D>;
  using VW = hn::Vec<DW>;
  DH dh;
  DW dw;
  VW lo, hi;
  HWY_INLINE WideSum() : lo(hn::Zero(DW())), hi(hn::Zero(DW())) {}
  static HWY_INLINE VW splat(double m) { return hn::Set(DW(), m); }
  HWY_INLINE void add(V v) {
    lo = hn::Add(lo, hn::PromoteTo(dw, hn::LowerHalf(dh, v)));
    hi = hn::Add(hi, hn::PromoteTo(dw, hn::UpperHalf(dh, v)));
  }
  // a * b in float64 (exact product of two floats).
  HWY_INLINE void add_mul(V a, V b) {
    lo = hn::MulAdd(hn::PromoteTo(dw, hn::LowerHalf(dh, a)), hn::PromoteTo(dw, hn::LowerHalf(dh, b)), lo);
    hi = hn::MulAdd(hn::PromoteTo(dw, hn::UpperHalf(dh, a)), hn::PromoteTo(dw, hn::UpperHalf(dh, b)), hi);
  }
  // (x - m) and w * (x - m) in float64, where x - m is exact.
  HWY_INLINE void add_shifted(V x, VW m) {
    lo = hn::Add(lo, hn::Sub(hn::PromoteTo(dw, hn::LowerHalf(dh, x)), m));
    hi = hn::Add(hi, hn::Sub(hn::PromoteTo(dw, hn::UpperHalf(dh, x)), m));
  }
  HWY_INLINE void add_shifted_mul(V x, VW m, V w) {
    lo = hn::MulAdd(hn::Sub(hn::PromoteTo(dw, hn::LowerHalf(dh, x)), m), hn::PromoteTo(dw, hn::LowerHalf(dh, w)), lo);
    hi = hn::MulAdd(hn::Sub(hn::PromoteTo(dw, hn::UpperHalf(dh, x)), m), hn::PromoteTo(dw, hn::UpperHalf(dh, w)), hi);
  }
  HWY_INLINE double total() const { return hn::GetLane(hn::SumOfLanes(dw, hn::Add(lo, hi))); }
  // Each lane's own sum, in lane order (the across-rows tiles, one row per lane).
  HWY_INLINE void store_lanes(double* out) const {
    hn::StoreU(lo, dw, out);
    hn::StoreU(hi, dw, out + hn::Lanes(dw));
  }
};

// Loads the n < Lanes(d) values at p (any storage type) into a vector padded with `pad`.
template <class D, class S, class T = hn::TFromD<D>>
HWY_INLINE hn::Vec<D> load_padded(D d, const S* p, std::size_t n, T pad) {
  HWY_ALIGN T buf[kMaxLanesBytes / sizeof(T)];
  const std::size_t N = hn::Lanes(d);
  for (std::size_t i = 0; i < N; ++i) buf[i] = i < n ? static_cast<T>(p[i]) : pad;
  return hn::Load(d, buf);
}

// ---------------------------------------------------------------------------------------------
// pass 1: max and sum of exp(x - max) of one contiguous row, read once

// The coefficient c = w q of kernels.h Coefs from loaded t and w vectors (either unused when its
// pointer is null): the one expression every vector path uses, so sums and gradients agree.
template <class D, class S>
HWY_INLINE hn::Vec<D> coef_of(D d, const Coefs<S>& k, hn::Vec<D> tv, hn::Vec<D> wv) {
  using T = hn::TFromD<D>;
  if (k.t == nullptr) return k.w != nullptr ? wv : hn::Set(d, T(1));
  const hn::Vec<D> q = hn::MulAdd(tv, hn::Set(d, static_cast<T>(k.keep)), hn::Set(d, static_cast<T>(k.u)));
  return k.w != nullptr ? hn::Mul(wv, q) : q;
}

// Coefficients c[j .. j + Lanes) (rem == 0) or the rem < Lanes ones left at j, zero past them.
template <class D, class S>
HWY_INLINE hn::Vec<D> coef_at(D d, const Coefs<S>& k, std::size_t j, std::size_t rem = 0) {
  using T = hn::TFromD<D>;
  if (rem == 0) {
    const hn::Vec<D> tv = k.t != nullptr ? load_u(d, k.t + j) : hn::Zero(d);
    const hn::Vec<D> wv = k.w != nullptr ? load_u(d, k.w + j) : hn::Zero(d);
    return coef_of(d, k, tv, wv);
  }
  const hn::Vec<D> tv = k.t != nullptr ? load_padded(d, k.t + j, rem, T(0)) : hn::Zero(d);
  const hn::Vec<D> wv = k.w != nullptr ? load_padded(d, k.w + j, rem, T(0)) : hn::Zero(d);
  return hn::IfThenElseZero(hn::FirstN(d, rem), coef_of(d, k, tv, wv));
}

// Returns false when the row must take the scalar path: a NaN, a +inf, all -inf, or (kSumX) any
// -inf or a non-finite coefficient sum. kSumX also sums c[k] (x[k] - m) and c[k] for label
// smoothing and probability targets (c of kernels.h Coefs, *k): every term has one sign for c >= 0
// (x <= m), so the sum has no cancellation; chunks add c (x - running max) and the total is shifted
// by (sum of c so far) * (old max - new max) when the max grows.
template <class St, bool kSumX>
HWY_INLINE bool row_stats(const St* HWY_RESTRICT x, std::size_t C, const Coefs<St>* k, RowStats* st) {
  using T = compute_t<St>;
  constexpr bool kExact = kExactSum;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  constexpr std::size_t kChunk = kChunkBytes / sizeof(St);
  double m_run = -kInf<double>;
  double S = 0;
  double A = 0, W_seen = 0;  // kSumX: sum of w (x - m_run), sum of w
  for (std::size_t c0 = 0; c0 < C; c0 += kChunk) {
    const std::size_t len = std::min(kChunk, C - c0);
    const St* HWY_RESTRICT xc = x + c0;
    const std::size_t full = len - len % N;
    const std::size_t rem = len - full;

    // Chunk max (four accumulators for throughput). Max may drop a NaN; the exp-sum catches it.
    V m0 = hn::Set(d, -kInf<T>), m1 = m0, m2 = m0, m3 = m0;
    std::size_t i = 0;
    for (; i + 4 * N <= full; i += 4 * N) {
      m0 = hn::Max(m0, load_u(d, xc + i));
      m1 = hn::Max(m1, load_u(d, xc + i + N));
      m2 = hn::Max(m2, load_u(d, xc + i + 2 * N));
      m3 = hn::Max(m3, load_u(d, xc + i + 3 * N));
    }
    for (; i < full; i += N) m0 = hn::Max(m0, load_u(d, xc + i));
    V vtail = hn::Set(d, -kInf<T>);
    if (rem != 0) {
      vtail = load_padded(d, xc + full, rem, -kInf<T>);
      m1 = hn::Max(m1, vtail);
    }
    const T cm = hn::GetLane(hn::MaxOfLanes(d, hn::Max(hn::Max(m0, m1), hn::Max(m2, m3))));
    if (std::isnan(cm) || cm == kInf<T>) return false;
    if (cm > m_run) {
      S *= std::exp(m_run - static_cast<double>(cm));  // 0 on the first finite chunk
      if constexpr (kSumX) {
        if (W_seen != 0) A += W_seen * (m_run - static_cast<double>(cm));
      }
      m_run = cm;
    }
    if (m_run == -kInf<double>) {
      // Everything so far is -inf: nothing to add. A NaN could hide behind -inf (Max drops it).
      if constexpr (kSumX) return false;
      for (std::size_t j = 0; j < len; ++j)
        if (std::isnan(static_cast<T>(xc[j]))) return false;
      continue;
    }

    // Sum of exp(x - m_run) over the chunk, now in L1.
    const V vm = hn::Set(d, static_cast<T>(m_run));
    WideSum<T> acc;
    i = 0;
    // Eight vectors per step (exp_diff_k); the sums enter as two groups of four, in the order of
    // the four-vector loop below, so the bits do not depend on which loop took them.
    for (; i + 8 * N <= full; i += 8 * N) {
      for (std::size_t k = 0; k < 8 * N * sizeof(St); k += 64) hwy::Prefetch(reinterpret_cast<const char*>(xc + kChunk + i) + k);
      V xv[8], ev[8];
      HWY_UNROLL(8)
      for (std::size_t k = 0; k < 8; ++k) xv[k] = load_u(d, xc + i + k * N);
      exp_diff_k<kExact, 8>(d, xv, vm, ev);
      acc.add(hn::Add(hn::Add(ev[0], ev[1]), hn::Add(ev[2], ev[3])));
      acc.add(hn::Add(hn::Add(ev[4], ev[5]), hn::Add(ev[6], ev[7])));
    }
    for (; i + 4 * N <= full; i += 4 * N) {
      // Keep memory busy while the exps run: request the next chunk (or the next row; prefetching
      // past the end of the buffer is harmless).
      for (std::size_t k = 0; k < 4 * N * sizeof(St); k += 64) hwy::Prefetch(reinterpret_cast<const char*>(xc + kChunk + i) + k);
      const V x0 = load_u(d, xc + i), x1 = load_u(d, xc + i + N);
      const V x2 = load_u(d, xc + i + 2 * N), x3 = load_u(d, xc + i + 3 * N);
      const V e0 = exp_diff<kExact>(d, x0, vm), e1 = exp_diff<kExact>(d, x1, vm);
      const V e2 = exp_diff<kExact>(d, x2, vm), e3 = exp_diff<kExact>(d, x3, vm);
      acc.add(hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
    }
    for (; i < full; i += N) acc.add(exp_diff<kExact>(d, load_u(d, xc + i), vm));
    if (rem != 0) acc.add(exp_diff<kExact>(d, vtail, vm));  // padding is -inf: adds 0
    S += acc.total();

    if constexpr (kSumX) {
      // Sum of c (x - m_run) and of c over the chunk, in float64.
      const bool ones = k->w == nullptr && k->t == nullptr;
      const auto vm_wide = WideSum<T>::splat(m_run);
      WideSum<T> ax, aw;
      for (i = 0; i < full; i += N) {
        const V xv = load_u(d, xc + i);
        if (ones) {
          ax.add_shifted(xv, vm_wide);
        } else {
          const V cv = coef_at(d, *k, c0 + i);
          ax.add_shifted_mul(xv, vm_wide, cv);
          aw.add(cv);
        }
      }
      if (rem != 0) {
        const V xv = load_padded(d, xc + full, rem, static_cast<T>(m_run));  // pads add 0
        if (ones) {
          ax.add_shifted(xv, vm_wide);
        } else {
          const V cv = coef_at(d, *k, c0 + full, rem);
          ax.add_shifted_mul(xv, vm_wide, cv);
          aw.add(cv);
        }
      }
      A += ax.total();
      W_seen += ones ? static_cast<double>(len) : aw.total();
    }
  }
  if (!(m_run > -kInf<double>) || !std::isfinite(S)) return false;
  st->m = m_run;
  st->s = S;
  if constexpr (kSumX) {
    if (!std::isfinite(A) || !std::isfinite(W_seen)) return false;
    st->wx = A;
    st->wsum = W_seen;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// pass 2: out[c] = f(in_0[c], ..., in_{K-1}[c]) over one row

// Where a row's non-temporal stores can begin: the number of S values before the first address
// of out aligned to vec_bytes (the values before it are stored plainly). Clears *stream when out
// is not even S-aligned, so no store is ever aligned. At most C.
template <class S>
HWY_INLINE std::size_t stream_start(const S* out, std::size_t C, std::size_t vec_bytes, bool* stream) {
  if (!*stream) return 0;
  const std::size_t mis = reinterpret_cast<std::uintptr_t>(out) % vec_bytes;
  if (mis % sizeof(S) != 0) {
    *stream = false;
    return 0;
  }
  return mis == 0 ? 0 : std::min(C, (vec_bytes - mis) / sizeof(S));
}

// Elementwise with per-row constants only, so each value is the same whether it is computed in the
// main loop, the first vector or the last (overlapping) vector; the first and last are computed
// before any store, so out may alias an input. stream: non-temporal stores in the aligned middle.
// Inputs and output may be of any storage type (map_row_v: one pointer per input, each loaded as
// compute_t<S> vectors; out of storage type S); map_row is the form with K inputs of out's type.
// kFinite (map_row_finite): the caller knows f gives no NaN, which the 16-bit stores then skip.
template <bool kFinite, class S, class F, class... In>
HWY_INLINE void map_row_impl(S* out, std::size_t C, bool stream, const F& f, const In*... in) {
  using T = compute_t<S>;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  if (C < N) {
    HWY_ALIGN T obuf[kMaxLanesBytes / sizeof(T)];
    const V v = f(load_padded(d, in, C, T(0))...);
    hn::Store(v, d, obuf);
    for (std::size_t i = 0; i < C; ++i) out[i] = static_cast<S>(obuf[i]);
    return;
  }
  auto at = [&](std::size_t i) HWY_ATTR { return f(load_u(d, in + i)...); };
  const std::size_t start = stream_start(out, C, N * sizeof(S), &stream);
  const V last = at(C - N);
  const V first = start != 0 ? at(0) : hn::Zero(d);
  std::size_t i = start;
  if (stream) {
    for (; i + N <= C; i += N) stream_u<kFinite>(at(i), d, out + i);
  } else {
    for (; i + N <= C; i += N) store_u<kFinite>(at(i), d, out + i);
  }
  if (start != 0) store_u<kFinite>(first, d, out);
  store_u<kFinite>(last, d, out + C - N);
}

template <class S, class F, class... In>
HWY_INLINE void map_row_v(S* out, std::size_t C, bool stream, const F& f, const In*... in) {
  map_row_impl<false>(out, C, stream, f, in...);
}
template <class S, class F, class... In>
HWY_INLINE void map_row_finite(S* out, std::size_t C, bool stream, const F& f, const In*... in) {
  map_row_impl<true>(out, C, stream, f, in...);
}

template <std::size_t K, class T, class F>
HWY_INLINE void map_row(T* out, std::size_t C, bool stream, const std::array<const T*, K>& in, const F& f) {
  if constexpr (K == 0) map_row_v(out, C, stream, f);
  else if constexpr (K == 1) map_row_v(out, C, stream, f, in[0]);
  else if constexpr (K == 2) map_row_v(out, C, stream, f, in[0], in[1]);
  else map_row_v(out, C, stream, f, in[0], in[1], in[2]);
}

template <class T>
HWY_INLINE bool stream_rows(std::size_t C) { return C * sizeof(T) >= kStreamRowBytes; }

// ---------------------------------------------------------------------------------------------
// rows whose output stays in cache: one exp per value
//
// pass 1 (row_max): the max, and whether the row must take the scalar twin (a NaN, a +inf, all
// -inf), decided before anything is written, since the output may alias the input;
// pass 2 (exp_store_sum): e = exp(x - m), TwoSum'd argument as map_row's outputs, written into the
// output row while summed (float32 vectors of four-term partial sums into float64 lanes);
// pass 3: the output, still in L1/L2, scaled in place (map_row over itself).
// The outputs are the same expressions of e as the two-exp path's; only S differs, now the sum of
// the ~2 ulp values that are written out instead of a second evaluation.

template <class T>
HWY_INLINE bool one_exp_rows(std::size_t C) { return C * sizeof(T) <= kOneExpRowBytes; }

template <class S, class T = compute_t<S>>
HWY_INLINE bool row_max(const S* HWY_RESTRICT x, std::size_t C, T* m_out) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  V m0 = hn::Set(d, -kInf<T>), m1 = m0, m2 = m0, m3 = m0;
  auto nan = hn::FirstN(d, 0);  // Max may drop a NaN: tracked on the side
  std::size_t i = 0;
  for (; i + 4 * N <= C; i += 4 * N) {
    const V x0 = load_u(d, x + i), x1 = load_u(d, x + i + N);
    const V x2 = load_u(d, x + i + 2 * N), x3 = load_u(d, x + i + 3 * N);
    m0 = hn::Max(m0, x0);
    m1 = hn::Max(m1, x1);
    m2 = hn::Max(m2, x2);
    m3 = hn::Max(m3, x3);
    nan = hn::Or(nan, hn::Or(hn::Or(hn::IsNaN(x0), hn::IsNaN(x1)), hn::Or(hn::IsNaN(x2), hn::IsNaN(x3))));
  }
  for (; i + N <= C; i += N) {
    const V v = load_u(d, x + i);
    m0 = hn::Max(m0, v);
    nan = hn::Or(nan, hn::IsNaN(v));
  }
  if (i < C) {
    const V v = load_padded(d, x + i, C - i, -kInf<T>);
    m1 = hn::Max(m1, v);
    nan = hn::Or(nan, hn::IsNaN(v));
  }
  const T m = hn::GetLane(hn::MaxOfLanes(d, hn::Max(hn::Max(m0, m1), hn::Max(m2, m3))));
  *m_out = m;
  return hn::AllFalse(d, nan) && m > -kInf<T> && m < kInf<T>;
}

// y[c] = exp(x[c] - m) for a row whose max m is finite; returns the sum of the y[c] (>= 1).
// y may alias x (each vector is read before it is written). While the exps run, the input two rows
// ahead and the next row's output lines are requested (x + 2C, y + C: prefetching past a buffer is
// harmless). Two rows, not one: the lines of the next row, requested while the other thread
// streams its stores out, often arrived after its max pass began (that pass took 16% of bfloat16
// cross-entropy's time at 8192x32000 on 2 threads, 6% with the rows in L3); two rows ahead gave
// 8-13% on that case (paired medians of 9 interleaved rounds), nothing measurable on 1 thread.
// x of any storage type; y of its compute type (a float32 scratch row for the 16-bit types, whose
// e must not be rounded before it is scaled). kExact: exp_diff's TwoSum'd argument. kNextOut
// false: y is a scratch row reused for every row, so y + C is not requested (5% of the 16-bit
// cross-entropy's time at 8192x32000 went to those useless requests).
template <class S, bool kExact = kExactOut, bool kNextOut = true, class T = compute_t<S>>
HWY_INLINE double exp_store_sum(const S* x, T* y, std::size_t C, T m) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  const V vm = hn::Set(d, m);
  WideSum<T> acc;
  std::size_t i = 0;
  // Eight vectors per step (exp_diff_k), the sums in the four-vector loop's order: the same bits.
  for (; i + 8 * N <= C; i += 8 * N) {
    for (std::size_t k = 0; k < 8 * N * sizeof(S); k += 64) hwy::Prefetch(reinterpret_cast<const char*>(x + 2 * C + i) + k);
    if constexpr (kNextOut)
      for (std::size_t k = 0; k < 8 * N * sizeof(T); k += 64) __builtin_prefetch(reinterpret_cast<const char*>(y + C + i) + k, 1);
    V xv[8], ev[8];
    HWY_UNROLL(8)
    for (std::size_t k = 0; k < 8; ++k) xv[k] = load_u(d, x + i + k * N);
    exp_diff_k<kExact, 8>(d, xv, vm, ev);
    HWY_UNROLL(8)
    for (std::size_t k = 0; k < 8; ++k) hn::StoreU(ev[k], d, y + i + k * N);
    acc.add(hn::Add(hn::Add(ev[0], ev[1]), hn::Add(ev[2], ev[3])));
    acc.add(hn::Add(hn::Add(ev[4], ev[5]), hn::Add(ev[6], ev[7])));
  }
  for (; i + 4 * N <= C; i += 4 * N) {
    for (std::size_t k = 0; k < 4 * N * sizeof(S); k += 64) hwy::Prefetch(reinterpret_cast<const char*>(x + 2 * C + i) + k);
    if constexpr (kNextOut)
      for (std::size_t k = 0; k < 4 * N * sizeof(T); k += 64) __builtin_prefetch(reinterpret_cast<const char*>(y + C + i) + k, 1);
    const V e0 = exp_diff<kExact>(d, load_u(d, x + i), vm);
    const V e1 = exp_diff<kExact>(d, load_u(d, x + i + N), vm);
    const V e2 = exp_diff<kExact>(d, load_u(d, x + i + 2 * N), vm);
    const V e3 = exp_diff<kExact>(d, load_u(d, x + i + 3 * N), vm);
    hn::StoreU(e0, d, y + i);
    hn::StoreU(e1, d, y + i + N);
    hn::StoreU(e2, d, y + i + 2 * N);
    hn::StoreU(e3, d, y + i + 3 * N);
    acc.add(hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
  }
  for (; i + N <= C; i += N) {
    const V e = exp_diff<kExact>(d, load_u(d, x + i), vm);
    hn::StoreU(e, d, y + i);
    acc.add(e);
  }
  if (i < C) {
    HWY_ALIGN T buf[kMaxLanesBytes / sizeof(T)];
    const V e = exp_diff<kExact>(d, load_padded(d, x + i, C - i, -kInf<T>), vm);  // pads add 0
    hn::Store(e, d, buf);
    for (std::size_t k = 0; k < C - i; ++k) y[i + k] = buf[k];
    acc.add(e);
  }
  return acc.total();
}

// kernels.h chunk_sums for every storage type: a split row's run through row_stats<S, true>; a
// run the vector sums decline gets the scalar twin's sums (which the front end sees are not
// finite). Shared by cross_entropy_hwy.cc (float32/float64) and half_hwy.cc (16-bit).
template <class S>
void chunk_sums(const S* x, const Coefs<S>& k, std::size_t n, ChunkSums* out) noexcept {
  RowStats st;
  if (n != 0 && row_stats<S, true>(x, n, &k, &st)) {
    out->m = st.m;
    out->s = st.s;
    out->a = st.wx;
    out->q = st.wsum;
    return;
  }
  scalar_table<S>().chunk_sums(x, k, n, out);
}

// Label smoothing and probability targets: A = sum_c c[c] (x[c] - m) and Q = sum_c c[c] (c of
// kernels.h Coefs), float64, for a row with max m, as row_stats<T, true> sums them. False when
// either is not finite (a -inf logit, a non-finite coefficient).
template <class S, class T = compute_t<S>>
HWY_INLINE bool row_coef_sums(const S* HWY_RESTRICT x, std::size_t C, const Coefs<S>& k, T m, double* A_out,
                              double* Q_out) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  const bool ones = k.w == nullptr && k.t == nullptr;
  const auto vm = WideSum<T>::splat(static_cast<double>(m));
  WideSum<T> ax, aq;
  std::size_t i = 0;
  for (; i + N <= C; i += N) {
    const V xv = load_u(d, x + i);
    if (ones) {
      ax.add_shifted(xv, vm);
    } else {
      const V cv = coef_at(d, k, i);
      ax.add_shifted_mul(xv, vm, cv);
      aq.add(cv);
    }
  }
  if (i < C) {
    const V xv = load_padded(d, x + i, C - i, m);  // pads add 0
    if (ones) {
      ax.add_shifted(xv, vm);
    } else {
      const V cv = coef_at(d, k, i, C - i);
      ax.add_shifted_mul(xv, vm, cv);
      aq.add(cv);
    }
  }
  *A_out = ax.total();
  *Q_out = ones ? static_cast<double>(C) : aq.total();
  return std::isfinite(*A_out) && std::isfinite(*Q_out);
}

// The smoothed or probability-target gradient of one row, dx = e * scale - gb * c, where e =
// exp_of(v) for v read from src (exp(x - m) from the logits, or the identity on exps already in
// dx). Without coefficients (label smoothing, no weights) c = 1.
// src may be of dx's storage type or (the 16-bit types' one-exp rows) its compute type.
template <class S, class In, class ExpOf, class T = compute_t<S>>
HWY_INLINE void ce_grad_row(S* dx, std::size_t C, bool stream, const In* src, const Coefs<S>& k, const ExpOf& exp_of,
                            T scale, T gb) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const V vs = hn::Set(d, scale), vg = hn::Set(d, gb);
  if (k.t == nullptr && k.w == nullptr) {
    map_row_v(dx, C, stream, [&](V v) HWY_ATTR { return hn::MulSub(exp_of(v), vs, vg); }, src);
  } else if (k.t == nullptr) {
    map_row_v(dx, C, stream,
              [&](V v, V wv) HWY_ATTR { return hn::NegMulAdd(coef_of(d, k, wv, wv), vg, hn::Mul(exp_of(v), vs)); }, src,
              k.w);
  } else if (k.w == nullptr) {
    map_row_v(dx, C, stream,
              [&](V v, V tv) HWY_ATTR { return hn::NegMulAdd(coef_of(d, k, tv, tv), vg, hn::Mul(exp_of(v), vs)); }, src,
              k.t);
  } else {
    map_row_v(dx, C, stream,
              [&](V v, V tv, V wv) HWY_ATTR { return hn::NegMulAdd(coef_of(d, k, tv, wv), vg, hn::Mul(exp_of(v), vs)); },
              src, k.t, k.w);
  }
}

// ---------------------------------------------------------------------------------------------
// short rows (C <= kSmallC): vectorised across rows

// A tile is L = Lanes rows of C columns held column-major (tile[c * L + lane]), so each column is
// one vector and every per-row quantity is one lane. A full tile of rows no longer than a vector
// is transposed in registers where the target has the shuffles for it (AVX-512: 16 x 16 floats,
// 8 x 8 doubles); other tiles are copied with scalar moves (C is small), a partial tile repeating
// its last row in the unused lanes, which are never stored. Per-row work depends neither on the
// lane a row lands in nor on how the tile was filled, so the split of rows is free.

template <class T>
HWY_INLINE void tile_load_scalar(const T* x, std::size_t C, std::size_t n, std::size_t L, T* tile) {
  for (std::size_t lane = 0; lane < L; ++lane) {
    const T* row = x + (lane < n ? lane : n - 1) * C;
    for (std::size_t c = 0; c < C; ++c) tile[c * L + lane] = row[c];
  }
}

// Stores the first n lanes except those with !ok[lane] (rows the scalar twin has written); ok may
// be null (every lane).
template <class T>
HWY_INLINE void tile_store_scalar(const T* tile, std::size_t C, std::size_t n, std::size_t L, const bool* ok, T* y) {
  for (std::size_t lane = 0; lane < n; ++lane) {
    if (ok != nullptr && !ok[lane]) continue;
    T* row = y + lane * C;
    for (std::size_t c = 0; c < C; ++c) row[c] = tile[c * L + lane];
  }
}

#if HWY_TARGET == HWY_AVX3
// The tile loops below are unrolled in full so that the rows stay in registers (a loop over an
// array of vectors otherwise goes through the stack, and the column stores become a memcpy call).
#define XENT_UNROLL _Pragma("GCC unroll 16")
// In-register transpose of L rows of L lanes: r[i] lane j and r[j] lane i swap.
HWY_INLINE void transpose(hn::Vec<hn::ScalableTag<float>>* r) {
  using V = hn::Vec<hn::ScalableTag<float>>;
  V t[16];
  XENT_UNROLL
  for (int i = 0; i < 16; i += 2) {  // 2 x 2 blocks of lanes within each 128-bit block
    t[i] = V{_mm512_unpacklo_ps(r[i].raw, r[i + 1].raw)};
    t[i + 1] = V{_mm512_unpackhi_ps(r[i].raw, r[i + 1].raw)};
  }
  XENT_UNROLL
  for (int i = 0; i < 16; i += 4) {  // 4 x 4 within each 128-bit block
    r[i] = V{_mm512_shuffle_ps(t[i].raw, t[i + 2].raw, 0x44)};
    r[i + 1] = V{_mm512_shuffle_ps(t[i].raw, t[i + 2].raw, 0xEE)};
    r[i + 2] = V{_mm512_shuffle_ps(t[i + 1].raw, t[i + 3].raw, 0x44)};
    r[i + 3] = V{_mm512_shuffle_ps(t[i + 1].raw, t[i + 3].raw, 0xEE)};
  }
  XENT_UNROLL
  for (int k = 0; k < 4; ++k) {  // the 128-bit blocks, 4 x 4
    const __m512 u0 = _mm512_shuffle_f32x4(r[k].raw, r[4 + k].raw, 0x88);
    const __m512 u1 = _mm512_shuffle_f32x4(r[k].raw, r[4 + k].raw, 0xDD);
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + k].raw, r[12 + k].raw, 0x88);
    const __m512 u3 = _mm512_shuffle_f32x4(r[8 + k].raw, r[12 + k].raw, 0xDD);
    t[k] = V{_mm512_shuffle_f32x4(u0, u2, 0x88)};
    t[8 + k] = V{_mm512_shuffle_f32x4(u0, u2, 0xDD)};
    t[4 + k] = V{_mm512_shuffle_f32x4(u1, u3, 0x88)};
    t[12 + k] = V{_mm512_shuffle_f32x4(u1, u3, 0xDD)};
  }
  XENT_UNROLL
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

HWY_INLINE void transpose(hn::Vec<hn::ScalableTag<double>>* r) {
  using V = hn::Vec<hn::ScalableTag<double>>;
  V t[8];
  XENT_UNROLL
  for (int i = 0; i < 8; i += 2) {  // 2 x 2 within each 128-bit block
    t[i] = V{_mm512_unpacklo_pd(r[i].raw, r[i + 1].raw)};
    t[i + 1] = V{_mm512_unpackhi_pd(r[i].raw, r[i + 1].raw)};
  }
  XENT_UNROLL
  for (int k = 0; k < 2; ++k) {  // the 128-bit blocks, 4 x 4
    const __m512d u0 = _mm512_shuffle_f64x2(t[k].raw, t[2 + k].raw, 0x88);
    const __m512d u1 = _mm512_shuffle_f64x2(t[k].raw, t[2 + k].raw, 0xDD);
    const __m512d u2 = _mm512_shuffle_f64x2(t[4 + k].raw, t[6 + k].raw, 0x88);
    const __m512d u3 = _mm512_shuffle_f64x2(t[4 + k].raw, t[6 + k].raw, 0xDD);
    r[k] = V{_mm512_shuffle_f64x2(u0, u2, 0x88)};
    r[4 + k] = V{_mm512_shuffle_f64x2(u0, u2, 0xDD)};
    r[2 + k] = V{_mm512_shuffle_f64x2(u1, u3, 0x88)};
    r[6 + k] = V{_mm512_shuffle_f64x2(u1, u3, 0xDD)};
  }
}

// One vector a row (C <= 16 floats / 8 doubles).
constexpr std::size_t kTileBlocks = 1;
#elif HWY_TARGET == HWY_AVX2
#define XENT_UNROLL _Pragma("GCC unroll 8")
// In-register transpose of L rows of L lanes (8 floats, 4 doubles): r[i] lane j and r[j] lane i swap.
HWY_INLINE void transpose(hn::Vec<hn::ScalableTag<float>>* r) {
  using V = hn::Vec<hn::ScalableTag<float>>;
  __m256 t[8], u[8];
  XENT_UNROLL
  for (int i = 0; i < 8; i += 2) {  // 2 x 2 blocks within each 128-bit half
    t[i] = _mm256_unpacklo_ps(r[i].raw, r[i + 1].raw);
    t[i + 1] = _mm256_unpackhi_ps(r[i].raw, r[i + 1].raw);
  }
  XENT_UNROLL
  for (int i = 0; i < 8; i += 4) {  // 4 x 4 within each 128-bit half
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  XENT_UNROLL
  for (int k = 0; k < 4; ++k) {  // the 128-bit halves
    r[k] = V{_mm256_permute2f128_ps(u[k], u[4 + k], 0x20)};
    r[4 + k] = V{_mm256_permute2f128_ps(u[k], u[4 + k], 0x31)};
  }
}

HWY_INLINE void transpose(hn::Vec<hn::ScalableTag<double>>* r) {
  using V = hn::Vec<hn::ScalableTag<double>>;
  const __m256d t0 = _mm256_unpacklo_pd(r[0].raw, r[1].raw), t1 = _mm256_unpackhi_pd(r[0].raw, r[1].raw);
  const __m256d t2 = _mm256_unpacklo_pd(r[2].raw, r[3].raw), t3 = _mm256_unpackhi_pd(r[2].raw, r[3].raw);
  r[0] = V{_mm256_permute2f128_pd(t0, t2, 0x20)};
  r[1] = V{_mm256_permute2f128_pd(t1, t3, 0x20)};
  r[2] = V{_mm256_permute2f128_pd(t0, t2, 0x31)};
  r[3] = V{_mm256_permute2f128_pd(t1, t3, 0x31)};
}

// Up to two vectors a row (C <= 16 floats / 8 doubles).
constexpr std::size_t kTileBlocks = 2;
#endif

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX2
// Whether full tiles of rows of C values are transposed in registers: up to kTileBlocks vectors a
// row, each block of L columns transposed on its own.
template <class T>
HWY_INLINE bool fast_tiles(std::size_t C) { return C <= kTileBlocks * hn::Lanes(hn::ScalableTag<T>()); }

// Full tile in, a block of L columns at a time. Loads never read past row L - 1's last value (the
// first block of a short row may read into the next row, which its lanes then ignore).
template <class T>
HWY_INLINE void tile_load_fast(const T* x, std::size_t C, T* tile) {
  const hn::ScalableTag<T> d;
  constexpr std::size_t L = HWY_LANES(T);
  hn::Vec<decltype(d)> r[L];
  for (std::size_t c0 = 0; c0 < C; c0 += L) {
    const auto cols = hn::FirstN(d, C - c0);
    XENT_UNROLL
    for (std::size_t i = 0; i < L; ++i)
      r[i] = c0 == 0 && i * C + L <= L * C ? hn::LoadU(d, x + i * C) : hn::MaskedLoad(cols, d, x + i * C + c0);
    transpose(r);
    XENT_UNROLL
    for (std::size_t c = 0; c < L; ++c)
      if (c0 + c < C) hn::Store(r[c], d, tile + (c0 + c) * L);
  }
}

// Full tile out, every row.
template <class T>
HWY_INLINE void tile_store_fast(const T* tile, std::size_t C, T* y) {
  const hn::ScalableTag<T> d;
  constexpr std::size_t L = HWY_LANES(T);
  hn::Vec<decltype(d)> r[L];
  for (std::size_t c0 = 0; c0 < C; c0 += L) {
    XENT_UNROLL
    for (std::size_t c = 0; c < L; ++c) r[c] = c0 + c < C ? hn::Load(d, tile + (c0 + c) * L) : hn::Zero(d);
    transpose(r);
    const auto cols = hn::FirstN(d, C - c0);
    XENT_UNROLL
    for (std::size_t i = 0; i < L; ++i) hn::BlendedStore(r[i], cols, d, y + i * C + c0);
  }
}
#else
template <class T>
HWY_INLINE bool fast_tiles(std::size_t) { return false; }
template <class T>
HWY_INLINE void tile_load_fast(const T*, std::size_t, T*) {}
template <class T>
HWY_INLINE void tile_store_fast(const T*, std::size_t, T*) {}
#endif

// Loads rows [0, n) of x into the tile; returns whether it was a fast full tile.
template <class T>
HWY_INLINE bool tile_load(const T* x, std::size_t C, std::size_t n, T* tile) {
  const std::size_t L = hn::Lanes(hn::ScalableTag<T>());
  if (n == L && fast_tiles<T>(C)) {
    tile_load_fast(x, C, tile);
    return true;
  }
  tile_load_scalar(x, C, n, L, tile);
  return false;
}

// Stores the tile's first n rows; ok as tile_store_scalar.
template <class T>
HWY_INLINE void tile_store(const T* tile, std::size_t C, std::size_t n, bool fast, const bool* ok, T* y) {
  if (fast && ok == nullptr) return tile_store_fast(tile, C, y);
  tile_store_scalar(tile, C, n, hn::Lanes(hn::ScalableTag<T>()), ok, y);
}

// LD = Lanes(double) values of T at p as doubles, and back (rounded to nearest).
template <class T>
HWY_INLINE hn::Vec<hn::ScalableTag<double>> load_wide(const T* p) {
  const hn::ScalableTag<double> dd;
  if constexpr (sizeof(T) == 4) return hn::PromoteTo(dd, hn::LoadU(hn::Rebind<float, decltype(dd)>(), p));
  else return hn::LoadU(dd, p);
}
template <class T>
HWY_INLINE void store_narrow(hn::Vec<hn::ScalableTag<double>> v, T* p) {
  const hn::ScalableTag<double> dd;
  if constexpr (sizeof(T) == 4) {
    const hn::Rebind<float, decltype(dd)> df;
    hn::StoreU(hn::DemoteTo(df, v), df, p);
  } else {
    hn::StoreU(v, dd, p);
  }
}

// Per-lane max m (as T), sum S of exp(x - m) (double) and log S (double). With kKeep the tile's
// columns become e = exp(x - m), each within ~2 ulp (TwoSum'd argument), and S is their sum; the
// caller scales them into the output, so each value costs one exp. Returns true when every lane is
// finite; otherwise ok[lane] is false for each row the scalar twin must redo (NaN, +inf, all -inf).
template <class T, bool kKeep>
HWY_INLINE bool tile_stats(T* tile, std::size_t C, T* m_out, double* s_out, double* logs_out, bool* ok) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t L = hn::Lanes(d);
  constexpr bool kExact = kKeep ? kExactOut : kExactSum;
  V m = hn::Load(d, tile);
  for (std::size_t c = 1; c < C; ++c) m = hn::Max(m, hn::Load(d, tile + c * L));
  hn::Store(m, d, m_out);
  const hn::ScalableTag<double> dd;
  const std::size_t LD = hn::Lanes(dd);
  auto exp_col = [&](std::size_t c) HWY_ATTR {
    const V e = exp_diff<kExact>(d, hn::Load(d, tile + c * L), m);
    if constexpr (kKeep) hn::Store(e, d, tile + c * L);
    return e;
  };
  if constexpr (sizeof(T) == 4) {
    const hn::Half<decltype(d)> dh;
    auto lo = hn::Zero(dd), hi = hn::Zero(dd);
    for (std::size_t c = 0; c < C; ++c) {
      const V e = exp_col(c);
      lo = hn::Add(lo, hn::PromoteTo(dd, hn::LowerHalf(dh, e)));
      hi = hn::Add(hi, hn::PromoteTo(dd, hn::UpperHalf(dh, e)));
    }
    hn::Store(lo, dd, s_out);
    hn::Store(hi, dd, s_out + LD);
  } else {
    V acc = hn::Zero(d);
    for (std::size_t c = 0; c < C; ++c) acc = hn::Add(acc, exp_col(c));
    hn::Store(acc, d, s_out);
  }
  bool all = hn::AllTrue(d, hn::IsFinite(m));
  for (std::size_t k = 0; k < L; k += LD) {
    const auto s = hn::Load(dd, s_out + k);
    all = all && hn::AllTrue(dd, hn::IsFinite(s));
    hn::Store(hn::Log(dd, s), dd, logs_out + k);
  }
  if (!all)
    for (std::size_t lane = 0; lane < L; ++lane)
      ok[lane] = std::isfinite(static_cast<double>(m_out[lane])) && std::isfinite(s_out[lane]);
  return all;
}

// ---------------------------------------------------------------------------------------------
// forward-only statistics

// Per-lane forward-only statistics (kernels.h ce_stats) of n <= Lanes rows held as columns: col(c)
// is column c as a compute-type vector, one row per lane (a strided group, kernels_strided-inl.h,
// or a short-row tile, kernels_small-inl.h). The max and its first index per lane (replaced only
// on a strictly larger value: the first maximum), then e = exp(x - m) and e (x - m) summed in
// float64 lanes (a -inf logit adds 0 to both); lse = m + log S, entropy = log S - B / S. A lane
// holding a NaN or whose max is not finite gets row_scalar(lane) (the scalar twin: NaN-first
// argmax, the defined lse and NaN entropy there); outputs never alias the input.
template <class Col, class RowScalar>
HWY_INLINE void ce_stats_cols(std::size_t C, std::size_t n, const Col& col, double* lse, double* entropy,
                              std::int64_t* argmax, const RowScalar& row_scalar) {
  using V = std::decay_t<decltype(col(std::size_t{0}))>;
  using D = hn::DFromV<V>;
  using T = hn::TFromD<D>;
  const D d;
  const hn::RebindToSigned<D> di;
  using TI = hn::TFromD<decltype(di)>;
  const hn::ScalableTag<double> dd;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  V vmax = col(0);
  auto vidx = hn::Zero(di);
  auto nan = hn::IsNaN(vmax);
  for (std::size_t c = 1; c < C; ++c) {
    const V v = col(c);
    nan = hn::Or(nan, hn::IsNaN(v));
    const auto gt = hn::Gt(v, vmax);
    vmax = hn::IfThenElse(gt, v, vmax);
    vidx = hn::IfThenElse(hn::RebindMask(di, gt), hn::Set(di, static_cast<TI>(c)), vidx);
  }
  const auto bad = hn::Or(nan, hn::Not(hn::IsFinite(vmax)));
  const V m = hn::IfThenZeroElse(bad, vmax), ninf = hn::Set(d, -kInf<T>);
  WideSum<T> S, B;
  for (std::size_t c = 0; c < C; ++c) {
    const V v = col(c);
    const V e = exp_diff<kExactSum>(d, v, m);
    S.add(e);
    B.add(hn::IfThenZeroElse(hn::Eq(v, ninf), hn::Mul(e, hn::Sub(v, m))));
  }
  HWY_ALIGN double Sb[kL], Bb[kL], lb[kL], eb[kL];
  HWY_ALIGN T mb[kL], badb[kL];
  HWY_ALIGN TI ib[kL];
  S.store_lanes(Sb);
  B.store_lanes(Bb);
  hn::Store(m, d, mb);
  hn::Store(vidx, di, ib);
  hn::Store(hn::IfThenElseZero(bad, hn::Set(d, T(1))), d, badb);
  for (std::size_t j = 0; j < L; j += LD) {
    const auto Sv = hn::Load(dd, Sb + j);
    const auto logS = hn::Log(dd, Sv);
    hn::Store(hn::Add(load_wide(mb + j), logS), dd, lb + j);
    hn::Store(hn::Sub(logS, hn::Div(hn::Load(dd, Bb + j), Sv)), dd, eb + j);
  }
  for (std::size_t lane = 0; lane < n; ++lane) {
    if (badb[lane] != T(0)) {
      row_scalar(lane);
      continue;
    }
    lse[lane] = lb[lane];
    entropy[lane] = eb[lane];
    argmax[lane] = static_cast<std::int64_t>(ib[lane]);
  }
}

// Defined in kernels_small-inl.h and kernels_strided-inl.h (included after this file by the units
// that fill ce_stats).
template <class S>
void ce_stats_small(const S* x, std::size_t rows, std::size_t C, double* lse, double* entropy,
                    std::int64_t* argmax) noexcept;
template <class S>
void strided_ce_stats(const S* x, Block b, double* lse, double* entropy, std::int64_t* argmax) noexcept;

// kernels.h ce_stats (forward-only statistics) for every storage type: the float32/float64 tables'
// (cross_entropy_hwy.cc) and the 16-bit ones' (half_hwy.cc, which widen each value exactly to
// float32 and compute as the float32 kernel does). Strided blocks: strided_ce_stats; rows shorter
// than two vectors: ce_stats_small (across rows); both through ce_stats_cols.
// Contiguous rows of at least two vectors: pass 1 finds the max and its first index per lane
// (replaced only on a strictly larger value, so each lane keeps its first maximum), reduced over
// the lanes by the smallest index among the lanes holding the max; pass 2 sums e = exp(x - m) and
// e (x - m) in double lanes (a -inf logit adds 0 to both). Rows with a NaN or an infinite max, and
// rows too long for the index lanes, run the scalar twin, whose results are the defined ones there.
template <class S>
void ce_stats(const S* x, Block b, double* lse, double* entropy, std::int64_t* argmax) noexcept {
  using T = compute_t<S>;
  const auto& scalar = scalar_table<S>();
  const hn::ScalableTag<T> d;
  const hn::RebindToSigned<decltype(d)> di;
  using V = hn::Vec<decltype(d)>;
  using VI = hn::Vec<decltype(di)>;
  using TI = hn::TFromD<decltype(di)>;
  const hn::ScalableTag<double> dd;
  using VD = hn::Vec<decltype(dd)>;
  const std::size_t L = hn::Lanes(d), C = b.C;
  if (C == 0 || C > static_cast<std::size_t>(std::numeric_limits<TI>::max()) - L)
    return scalar.ce_stats(x, b, lse, entropy, argmax);
  if (b.stride != 1) return strided_ce_stats(x, b, lse, entropy, argmax);
  if (C < 2 * L && C <= kSmallC) return ce_stats_small(x, b.n_outer, C, lse, entropy, argmax);
  if (C < 2 * L) return scalar.ce_stats(x, b, lse, entropy, argmax);
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  HWY_ALIGN T mv[kL];
  HWY_ALIGN TI iv[kL];
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const S* xr = x + r * C;
    V vmax = load_u(d, xr);
    VI vidx = hn::Iota(di, 0), vcur = vidx;
    const VI step = hn::Set(di, static_cast<TI>(L));
    auto nan = hn::IsNaN(vmax);
    std::size_t c = L;
    for (; c + L <= C; c += L) {
      vcur = hn::Add(vcur, step);
      const V v = load_u(d, xr + c);
      nan = hn::Or(nan, hn::IsNaN(v));
      const auto gt = hn::Gt(v, vmax);
      vmax = hn::IfThenElse(gt, v, vmax);
      vidx = hn::IfThenElse(hn::RebindMask(di, gt), vcur, vidx);
    }
    hn::Store(vmax, d, mv);
    hn::Store(vidx, di, iv);
    T m = mv[0];
    for (std::size_t k = 1; k < L; ++k) m = mv[k] > m ? mv[k] : m;
    std::size_t am = C;
    for (std::size_t k = 0; k < L; ++k)
      if (mv[k] == m) am = std::min(am, static_cast<std::size_t>(iv[k]));
    bool tail_nan = false;
    for (std::size_t k = c; k < C; ++k) {
      const T v = static_cast<T>(xr[k]);
      tail_nan = tail_nan || std::isnan(v);
      if (v > m) {
        m = v;
        am = k;
      }
    }
    if (!hn::AllFalse(d, nan) || tail_nan || !std::isfinite(m)) {
      scalar.ce_stats(xr, Block{1, C, 1, 1}, lse + r, entropy + r, argmax + r);
      continue;
    }
    const V vm = hn::Set(d, m), ninf = hn::Set(d, -kInf<T>);
    VD s0 = hn::Zero(dd), s1 = hn::Zero(dd), b0 = hn::Zero(dd), b1 = hn::Zero(dd);
    std::size_t k = 0;
    for (; k + L <= C; k += L) {
      const V v = load_u(d, xr + k);
      const V e = exp_diff<kExactSum>(d, v, vm);
      const V be = hn::IfThenZeroElse(hn::Eq(v, ninf), hn::Mul(e, hn::Sub(v, vm)));
      if constexpr (sizeof(T) == 4) {
        const hn::Half<decltype(d)> dh;
        s0 = hn::Add(s0, hn::PromoteTo(dd, hn::LowerHalf(dh, e)));
        s1 = hn::Add(s1, hn::PromoteTo(dd, hn::UpperHalf(dh, e)));
        b0 = hn::Add(b0, hn::PromoteTo(dd, hn::LowerHalf(dh, be)));
        b1 = hn::Add(b1, hn::PromoteTo(dd, hn::UpperHalf(dh, be)));
      } else {
        s0 = hn::Add(s0, e);
        b0 = hn::Add(b0, be);
      }
    }
    double Se = hn::GetLane(hn::SumOfLanes(dd, hn::Add(s0, s1)));
    double B = hn::GetLane(hn::SumOfLanes(dd, hn::Add(b0, b1)));
    const double md = static_cast<double>(m);
    for (; k < C; ++k) {
      const double dv = static_cast<double>(static_cast<T>(xr[k])) - md;
      const double e = std::exp(dv);
      Se += e;
      if (e != 0) B += e * dv;
    }
    const double logS = std::log(Se);
    lse[r] = md + logS;
    entropy[r] = logS - B / Se;
    argmax[r] = static_cast<std::int64_t>(am);
  }
}

#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();

#endif  // XENT_CPU_ROWS_INL_H_
