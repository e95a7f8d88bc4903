// kernels_hwy.cc: the SIMD kernel tables (AVX-512, AVX2+FMA, SSE4, NEON), written once with
// Highway and compiled once per target through foreach_target.h; dispatch.cc picks one at run time.
//
// N = rows, C = classes; a row is C contiguous values (Block stride 1). Each table starts as a copy
// of the scalar table (kernels_scalar.cc) and replaces the entries written here; anything not
// vectorised (rows with +-inf max or NaN, rows with -inf under label smoothing or probability
// targets) runs the scalar twin on that row, so edge cases have exactly the scalar semantics.
// Blocks with stride != 1 (class dim not last) go to kernels_strided-inl.h, one lane per row
// (logsumexp backward, NLL and probability targets keep the scalar twin there).
//
// Shape of the work, per contiguous row:
//   pass 1 (row_stats): one read of the row from memory, in chunks of kChunkBytes that stay in L1:
//     chunk max, then sum of exp(x - running max) over the same chunk (online normaliser: the sum
//     is rescaled by exp(old - new) when the max grows). Gives m = max and S = sum exp(x - m).
//   pass 2 (map_row): recompute exp(x - m) from the row, now in L2, and write the output once,
//     with non-temporal stores for long rows so the output costs no read-for-ownership traffic.
// Long rows that the front end splits across threads (reduce.h split_chunks) run the same two
// passes per chunk through chunk_stats and chunk_exp_scale / chunk_shift (backward: chunk_dot, then
// chunk_softmax_bwd / chunk_log_softmax_bwd); the front end combines the chunks' (max, sum) and
// dot products in chunk order.
// Rows of at most kOneExpRowBytes (32 KiB) whose output is exp-based (softmax, the cross-entropy
// gradient) take one exp per value instead: max; e = exp(x - m) written into the output while
// summed (the next row's lines prefetched meanwhile); then the output, still in cache, scaled in
// place. Past that bound the output no longer stays in L1/L2 and the streamed two-exp scheme wins.
// Rows of C <= kSmallC (32) are done across rows instead: a tile of one vector's worth of rows is
// transposed so each column is a vector and each row a lane (in registers on AVX-512 for rows up
// to one vector long), and each value costs one exp, kept in the tile between the sum and the
// output. Nothing allocates; tails use padded stack buffers.
//
// Numerics. exp(x - m) uses exp_nonpos (Highway contrib's polynomial, 1 ulp, cheaper argument
// reduction since the argument is never positive; subnormal results kept, as PyTorch keeps them) and,
// for values written out, the rounding error of x - m recovered with TwoSum, so each output is
// within ~2 ulp. NaN propagates. Sums of exps and dot products accumulate float32 vectors of
// four-term partial sums into float64 lanes; per-row scalars (log S, the loss) are double. Results
// match the scalar table to a few ulp. The order of every reduction depends only on C and the
// target, never on the rows around it, so any split of rows across threads gives the same bits.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/isa_tables.h"
#include "cpu/kernels.h"

// Targets: AVX-512 (AVX3), AVX2+FMA, SSE4 on x86; NEON on Arm. SSSE3 is dropped to keep the build
// small; EMU128 (the baseline Highway requires) compiles to nothing here: "scalar" is the twin.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/kernels_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

#ifndef XENT_CPU_KERNELS_HWY_COMMON_
#define XENT_CPU_KERNELS_HWY_COMMON_
namespace xent::cpu::hwy_common {

template <class T> const KernelTable<T>& scalar_table() noexcept;
template <> inline const KernelTable<float>& scalar_table<float>() noexcept { return scalar_table_f32(); }
template <> inline const KernelTable<double>& scalar_table<double>() noexcept { return scalar_table_f64(); }

// Pass 1 works on chunks of this many bytes (L1-resident between the max and the exp-sum).
constexpr std::size_t kChunkBytes = 8192;
// Rows at least this long are written with non-temporal stores: such tensors do not fit in cache,
// and streaming avoids reading each output line before overwriting it.
constexpr std::size_t kStreamRowBytes = 64 * 1024;

struct RowStats {
  double m = 0;   // max of the row (finite)
  double s = 0;   // sum of exp(x - m), >= 1
  double wx = 0;    // sum of w[c] * (x[c] - m) (w = 1 when absent; <= 0), label smoothing only
  double wsum = 0;  // sum of w[c], label smoothing only
};

}  // namespace xent::cpu::hwy_common
#endif  // XENT_CPU_KERNELS_HWY_COMMON_

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {

#if HWY_TARGET != HWY_EMU128 && HWY_TARGET != HWY_SCALAR && HWY_HAVE_FLOAT64
#define XENT_HWY_HAS_KERNELS 1
namespace hn = hwy::HWY_NAMESPACE;
using hwy_common::kChunkBytes;
using hwy_common::kStreamRowBytes;
using hwy_common::RowStats;
using hwy_common::scalar_table;

template <class T> constexpr T kInf = std::numeric_limits<T>::infinity();
// TwoSum'd exp arguments in the normaliser's sum (pass 1). Off: the sum's relative error is a
// p-weighted mean of u * |x - m| over the row, small because the terms that matter have x near m.
#ifndef XENT_EXACT_SUM
#define XENT_EXACT_SUM 0
#endif
constexpr bool kExactSum = XENT_EXACT_SUM != 0;
// TwoSum'd exp arguments for the values written out (pass 2): each output within ~2 ulp.
#ifndef XENT_EXACT_OUT
#define XENT_EXACT_OUT 1
#endif
constexpr bool kExactOut = XENT_EXACT_OUT != 0;
#ifndef XENT_PREFETCH
#define XENT_PREFETCH 1
#endif
constexpr std::size_t kMaxLanesBytes = HWY_MAX_BYTES;

// ---------------------------------------------------------------------------------------------
// exp

// exp(x + lo) for x below the overflow bound, |lo| << ulp(x): Highway's contrib Exp with the
// correction lo added to the reduced argument, and NaN propagated (x < bound is false for NaN).
template <class D, class V>
HWY_INLINE V exp_reduced(D d, V x, V lo) {
  using T = hn::TFromD<D>;
  hn::impl::ExpImpl<T> impl;
  const V kHalf = hn::Set(d, T(0.5));
  const V kNegZero = hn::Set(d, T(-0.0));
  const V kOne = hn::Set(d, T(1));
  const V kOneOverLog2 = hn::Set(d, T(1.442695040888963407359924681));
  const V kLowerBound = hn::Set(d, T(sizeof(T) == 4 ? -104.0 : -1000.0));
  const auto q = impl.ToInt32(d, hn::MulAdd(x, kOneOverLog2, hn::Or(kHalf, hn::And(x, kNegZero))));
  const V r = hn::Add(impl.ExpReduce(d, x, q), lo);
  const V y = impl.LoadExpShortRange(d, hn::Add(impl.ExpPoly(d, r), kOne), q);
  return hn::IfThenZeroElse(hn::Lt(x, kLowerBound), y);
}

template <class D, class V>
HWY_INLINE V exp_nonpos(D d, V x, V lo);

// The rare lanes of exp_nonpos whose result is subnormal (x < -87 in float, x < -708 in double):
// PyTorch's exp returns subnormals there, so evaluate exp(x + 64 ln 2) in the normal range and
// scale by 2^-64 (one rounding into the subnormal grid). Below the smallest subnormal's half
// (and for -inf) the result is 0. Not inlined into the hot loop: no row that is not extremely
// spread ever takes it.
template <class D, class V, class M>
HWY_NOINLINE V exp_nonpos_tiny(D d, V x, V lo, M tiny, V y) {
  using T = hn::TFromD<D>;
  const V k64ln2 = hn::Set(d, T(44.361419555836499802702855773323));
  // Clamped so the inner call never takes this path again (-inf and x below the zero bound are
  // zeroed below anyway).
  const V floor = hn::Set(d, T(sizeof(T) == 4 ? -60.0 : -700.0));
  const V x2 = hn::IfThenElse(tiny, hn::Max(hn::Add(x, k64ln2), floor), hn::Zero(d));
  const V y2 = hn::Mul(exp_nonpos(d, x2, lo), hn::Set(d, T(5.42101086242752217003726400434970855712890625e-20)));
  const V zero_below = hn::Set(d, T(sizeof(T) == 4 ? -104.0 : -746.0));
  return hn::IfThenZeroElse(hn::Lt(x, zero_below), hn::IfThenElse(tiny, y2, y));
}

// exp(x + lo) for x <= 0, |lo| << ulp(x): the softmax family's exp, whose argument is never
// positive. Cheaper than exp_reduced: x / ln2 is rounded with the 1.5 * 2^(p-1) trick, whose low
// mantissa bits then hold q + bias, so 2^q is one shift of those bits (no float/int conversions).
// Same polynomial and ln 2 split as Highway's Exp (1 ulp). Subnormal results (x < -87 in float,
// x < -708 in double) come from exp_nonpos_tiny, as PyTorch's exp gives them. NaN propagates;
// -inf gives 0.
template <class D, class V>
HWY_INLINE V exp_nonpos(D d, V x, V lo) {
  using T = hn::TFromD<D>;
  hn::impl::ExpImpl<T> impl;
  const hn::RebindToSigned<D> di;
  if constexpr (sizeof(T) == 4) {
    const V kMagic = hn::Set(d, 12582912.0f + 127.0f);  // 1.5 * 2^23 + bias
    const V t = hn::MulAdd(x, hn::Set(d, 1.44269504088896341f), kMagic);
    const V qf = hn::Sub(t, kMagic);
    V r = hn::MulAdd(qf, hn::Set(d, -0.693145751953125f), x);
    r = hn::MulAdd(qf, hn::Set(d, -1.428606765330187045e-6f), r);
    r = hn::Add(r, lo);
    const V scale = hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(di, t)));
    const V y = hn::Mul(hn::Add(impl.ExpPoly(d, r), hn::Set(d, 1.0f)), scale);
    const auto tiny = hn::Lt(x, hn::Set(d, -87.0f));
    if (HWY_LIKELY(hn::AllFalse(d, tiny))) return y;
    return exp_nonpos_tiny(d, x, lo, tiny, y);
  } else {
    const V kMagic = hn::Set(d, 6755399441055744.0 + 1023.0);  // 1.5 * 2^52 + bias
    const V t = hn::MulAdd(x, hn::Set(d, 1.4426950408889634073599), kMagic);
    const V qf = hn::Sub(t, kMagic);
    V r = hn::MulAdd(qf, hn::Set(d, -0.6931471805596629565116018), x);
    r = hn::MulAdd(qf, hn::Set(d, -0.28235290563031577122588448175e-12), r);
    r = hn::Add(r, lo);
    const V scale = hn::BitCast(d, hn::ShiftLeft<52>(hn::BitCast(di, t)));
    const V y = hn::Mul(hn::Add(impl.ExpPoly(d, r), hn::Set(d, 1.0)), scale);
    const auto tiny = hn::Lt(x, hn::Set(d, -708.0));
    if (HWY_LIKELY(hn::AllFalse(d, tiny))) return y;
    return exp_nonpos_tiny(d, x, lo, tiny, y);
  }
}

// exp(x - m) for x <= m (m finite). With kExact, x - m is split into its rounded value and the
// exact rounding error (Knuth's TwoSum), so the result does not inherit the rounding of the
// subtraction (relative error u * |x - m| otherwise, as in PyTorch). x = -inf gives 0, NaN gives NaN.
template <bool kExact = true, class D, class V>
HWY_INLINE V exp_diff(D d, V x, V m) {
  const V s = hn::Sub(x, m);
  if constexpr (kExact) {
    const V bb = hn::Sub(s, x);
    const V lo = hn::Sub(hn::Sub(x, hn::Sub(s, bb)), hn::Add(m, bb));
    return exp_nonpos(d, s, lo);
  } else {
    return exp_nonpos(d, s, hn::Zero(d));
  }
}

// exp(x - m) for any x (the argument may be positive): Highway's range handling, TwoSum'd
// argument, +inf above the overflow bound.
template <class D, class V>
HWY_INLINE V exp_diff_any(D d, V x, V m) {
  using T = hn::TFromD<D>;
  const V kUpper = hn::Set(d, T(sizeof(T) == 4 ? 104.0 : 710.0));
  const V s0 = hn::Sub(x, m);
  const auto over = hn::Gt(s0, kUpper);  // false for NaN, which must propagate
  const V xc = hn::IfThenElse(over, m, x);
  const V s = hn::Sub(xc, m);
  const V bb = hn::Sub(s, xc);
  const V lo = hn::Sub(hn::Sub(xc, hn::Sub(s, bb)), hn::Add(m, bb));
  return hn::IfThenElse(over, hn::Set(d, kInf<T>), exp_reduced(d, s, lo));
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
};

// Loads the n < Lanes(d) values at p into a vector padded with `pad`.
template <class D, class T = hn::TFromD<D>>
HWY_INLINE hn::Vec<D> load_padded(D d, const T* p, std::size_t n, T pad) {
  HWY_ALIGN T buf[kMaxLanesBytes / sizeof(T)];
  const std::size_t N = hn::Lanes(d);
  for (std::size_t i = 0; i < N; ++i) buf[i] = i < n ? p[i] : pad;
  return hn::Load(d, buf);
}

// ---------------------------------------------------------------------------------------------
// pass 1: max and sum of exp(x - max) of one contiguous row, read once

// The coefficient c = w q of kernels.h Coefs from loaded t and w vectors (either unused when its
// pointer is null): the one expression every vector path uses, so sums and gradients agree.
template <class D, class T = hn::TFromD<D>>
HWY_INLINE hn::Vec<D> coef_of(D d, const Coefs<T>& k, hn::Vec<D> tv, hn::Vec<D> wv) {
  if (k.t == nullptr) return k.w != nullptr ? wv : hn::Set(d, T(1));
  const hn::Vec<D> q = hn::MulAdd(tv, hn::Set(d, static_cast<T>(k.keep)), hn::Set(d, static_cast<T>(k.u)));
  return k.w != nullptr ? hn::Mul(wv, q) : q;
}

// Coefficients c[j .. j + Lanes) (rem == 0) or the rem < Lanes ones left at j, zero past them.
template <class D, class T = hn::TFromD<D>>
HWY_INLINE hn::Vec<D> coef_at(D d, const Coefs<T>& k, std::size_t j, std::size_t rem = 0) {
  if (rem == 0) {
    const hn::Vec<D> tv = k.t != nullptr ? hn::LoadU(d, k.t + j) : hn::Zero(d);
    const hn::Vec<D> wv = k.w != nullptr ? hn::LoadU(d, k.w + j) : hn::Zero(d);
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
template <class T, bool kSumX>
HWY_INLINE bool row_stats(const T* HWY_RESTRICT x, std::size_t C, const Coefs<T>* k, RowStats* st) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  constexpr std::size_t kChunk = kChunkBytes / sizeof(T);
  double m_run = -kInf<double>;
  double S = 0;
  double A = 0, W_seen = 0;  // kSumX: sum of w (x - m_run), sum of w
  for (std::size_t c0 = 0; c0 < C; c0 += kChunk) {
    const std::size_t len = std::min(kChunk, C - c0);
    const T* HWY_RESTRICT xc = x + c0;
    const std::size_t full = len - len % N;
    const std::size_t rem = len - full;

    // Chunk max (four accumulators for throughput). Max may drop a NaN; the exp-sum catches it.
    V m0 = hn::Set(d, -kInf<T>), m1 = m0, m2 = m0, m3 = m0;
    std::size_t i = 0;
    for (; i + 4 * N <= full; i += 4 * N) {
      m0 = hn::Max(m0, hn::LoadU(d, xc + i));
      m1 = hn::Max(m1, hn::LoadU(d, xc + i + N));
      m2 = hn::Max(m2, hn::LoadU(d, xc + i + 2 * N));
      m3 = hn::Max(m3, hn::LoadU(d, xc + i + 3 * N));
    }
    for (; i < full; i += N) m0 = hn::Max(m0, hn::LoadU(d, xc + i));
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
        if (std::isnan(xc[j])) return false;
      continue;
    }

    // Sum of exp(x - m_run) over the chunk, now in L1.
    const V vm = hn::Set(d, static_cast<T>(m_run));
    WideSum<T> acc;
    i = 0;
    for (; i + 4 * N <= full; i += 4 * N) {
#if XENT_PREFETCH
      // Keep memory busy while the exps run: request the next chunk (or the next row; prefetching
      // past the end of the buffer is harmless).
      for (std::size_t k = 0; k < 4 * N * sizeof(T); k += 64) hwy::Prefetch(reinterpret_cast<const char*>(xc + kChunk + i) + k);
#endif
      const V x0 = hn::LoadU(d, xc + i), x1 = hn::LoadU(d, xc + i + N);
      const V x2 = hn::LoadU(d, xc + i + 2 * N), x3 = hn::LoadU(d, xc + i + 3 * N);
      const V e0 = exp_diff<kExactSum>(d, x0, vm), e1 = exp_diff<kExactSum>(d, x1, vm);
      const V e2 = exp_diff<kExactSum>(d, x2, vm), e3 = exp_diff<kExactSum>(d, x3, vm);
      acc.add(hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
    }
    for (; i < full; i += N) acc.add(exp_diff<kExactSum>(d, hn::LoadU(d, xc + i), vm));
    if (rem != 0) acc.add(exp_diff<kExactSum>(d, vtail, vm));  // padding is -inf: adds 0
    S += acc.total();

    if constexpr (kSumX) {
      // Sum of c (x - m_run) and of c over the chunk, in float64.
      const bool ones = k->w == nullptr && k->t == nullptr;
      const auto vm_wide = WideSum<T>::splat(m_run);
      WideSum<T> ax, aw;
      for (i = 0; i < full; i += N) {
        const V xv = hn::LoadU(d, xc + i);
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

// Elementwise with per-row constants only, so each value is the same whether it is computed in the
// main loop, the first vector or the last (overlapping) vector; the first and last are computed
// before any store, so out may alias an input. stream: non-temporal stores in the aligned middle.
template <std::size_t K, class T, class F>
HWY_INLINE void map_row(T* out, std::size_t C, bool stream, const std::array<const T*, K>& in, const F& f) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  auto apply = [&](auto load) HWY_ATTR -> V {
    if constexpr (K == 0) return f();
    else if constexpr (K == 1) return f(load(0));
    else if constexpr (K == 2) return f(load(0), load(1));
    else return f(load(0), load(1), load(2));
  };
  if (C < N) {
    HWY_ALIGN T bufs[K + 1][kMaxLanesBytes / sizeof(T)];
    for (std::size_t k = 0; k < K; ++k)
      for (std::size_t i = 0; i < N; ++i) bufs[k][i] = i < C ? in[k][i] : T(0);
    const V v = apply([&](std::size_t k) HWY_ATTR { return hn::Load(d, bufs[k]); });
    hn::Store(v, d, bufs[K]);
    for (std::size_t i = 0; i < C; ++i) out[i] = bufs[K][i];
    return;
  }
  auto at = [&](std::size_t i) HWY_ATTR {
    return apply([&](std::size_t k) HWY_ATTR { return hn::LoadU(d, in[k] + i); });
  };
  std::size_t start = 0;
  if (stream) {
    const std::size_t vec_bytes = N * sizeof(T);
    const std::size_t mis = reinterpret_cast<std::uintptr_t>(out) % vec_bytes;
    if (mis % sizeof(T) != 0) stream = false;
    else if (mis != 0) start = (vec_bytes - mis) / sizeof(T);
  }
  const V last = at(C - N);
  const V first = start != 0 ? at(0) : hn::Zero(d);
  std::size_t i = start;
  if (stream) {
    for (; i + N <= C; i += N) hn::Stream(at(i), d, out + i);
  } else {
    for (; i + N <= C; i += N) hn::StoreU(at(i), d, out + i);
  }
  if (start != 0) hn::StoreU(first, d, out);
  hn::StoreU(last, d, out + C - N);
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
#ifndef XENT_ONE_EXP_ROW_BYTES
#define XENT_ONE_EXP_ROW_BYTES (32 * 1024)
#endif
constexpr std::size_t kOneExpRowBytes = XENT_ONE_EXP_ROW_BYTES;
// Probability targets take the one-exp scheme too (off: the two-exp scheme at every length).
#ifndef XENT_PROB_ONE_EXP
#define XENT_PROB_ONE_EXP 1
#endif

template <class T>
HWY_INLINE bool one_exp_rows(std::size_t C) { return C * sizeof(T) <= kOneExpRowBytes; }

template <class T>
HWY_INLINE bool row_max(const T* HWY_RESTRICT x, std::size_t C, T* m_out) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  V m0 = hn::Set(d, -kInf<T>), m1 = m0, m2 = m0, m3 = m0;
  auto nan = hn::FirstN(d, 0);  // Max may drop a NaN: tracked on the side
  std::size_t i = 0;
  for (; i + 4 * N <= C; i += 4 * N) {
    const V x0 = hn::LoadU(d, x + i), x1 = hn::LoadU(d, x + i + N);
    const V x2 = hn::LoadU(d, x + i + 2 * N), x3 = hn::LoadU(d, x + i + 3 * N);
    m0 = hn::Max(m0, x0);
    m1 = hn::Max(m1, x1);
    m2 = hn::Max(m2, x2);
    m3 = hn::Max(m3, x3);
    nan = hn::Or(nan, hn::Or(hn::Or(hn::IsNaN(x0), hn::IsNaN(x1)), hn::Or(hn::IsNaN(x2), hn::IsNaN(x3))));
  }
  for (; i + N <= C; i += N) {
    const V v = hn::LoadU(d, x + i);
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
// y may alias x (each vector is read before it is written). While the exps run, the next row's
// input and output lines are requested (x + C, y + C: prefetching past a buffer is harmless).
template <class T>
HWY_INLINE double exp_store_sum(const T* x, T* y, std::size_t C, T m) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  const V vm = hn::Set(d, m);
  WideSum<T> acc;
  std::size_t i = 0;
  for (; i + 4 * N <= C; i += 4 * N) {
#if XENT_PREFETCH
    for (std::size_t k = 0; k < 4 * N * sizeof(T); k += 64) {
      hwy::Prefetch(reinterpret_cast<const char*>(x + C + i) + k);
      __builtin_prefetch(reinterpret_cast<const char*>(y + C + i) + k, 1);
    }
#endif
    const V e0 = exp_diff<kExactOut>(d, hn::LoadU(d, x + i), vm);
    const V e1 = exp_diff<kExactOut>(d, hn::LoadU(d, x + i + N), vm);
    const V e2 = exp_diff<kExactOut>(d, hn::LoadU(d, x + i + 2 * N), vm);
    const V e3 = exp_diff<kExactOut>(d, hn::LoadU(d, x + i + 3 * N), vm);
    hn::StoreU(e0, d, y + i);
    hn::StoreU(e1, d, y + i + N);
    hn::StoreU(e2, d, y + i + 2 * N);
    hn::StoreU(e3, d, y + i + 3 * N);
    acc.add(hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
  }
  for (; i + N <= C; i += N) {
    const V e = exp_diff<kExactOut>(d, hn::LoadU(d, x + i), vm);
    hn::StoreU(e, d, y + i);
    acc.add(e);
  }
  if (i < C) {
    HWY_ALIGN T buf[kMaxLanesBytes / sizeof(T)];
    const V e = exp_diff<kExactOut>(d, load_padded(d, x + i, C - i, -kInf<T>), vm);  // pads add 0
    hn::Store(e, d, buf);
    for (std::size_t k = 0; k < C - i; ++k) y[i + k] = buf[k];
    acc.add(e);
  }
  return acc.total();
}

// Label smoothing and probability targets: A = sum_c c[c] (x[c] - m) and Q = sum_c c[c] (c of
// kernels.h Coefs), float64, for a row with max m, as row_stats<T, true> sums them. False when
// either is not finite (a -inf logit, a non-finite coefficient).
template <class T>
HWY_INLINE bool row_coef_sums(const T* HWY_RESTRICT x, std::size_t C, const Coefs<T>& k, T m, double* A_out,
                              double* Q_out) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t N = hn::Lanes(d);
  const bool ones = k.w == nullptr && k.t == nullptr;
  const auto vm = WideSum<T>::splat(static_cast<double>(m));
  WideSum<T> ax, aq;
  std::size_t i = 0;
  for (; i + N <= C; i += N) {
    const V xv = hn::LoadU(d, x + i);
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
template <class T, class ExpOf>
HWY_INLINE void ce_grad_row(T* dx, std::size_t C, bool stream, const T* src, const Coefs<T>& k, const ExpOf& exp_of,
                            T scale, T gb) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const V vs = hn::Set(d, scale), vg = hn::Set(d, gb);
  if (k.t == nullptr && k.w == nullptr) {
    map_row<1>(dx, C, stream, {src}, [&](V v) HWY_ATTR { return hn::MulSub(exp_of(v), vs, vg); });
  } else if (k.t == nullptr) {
    map_row<2>(dx, C, stream, {src, k.w},
               [&](V v, V wv) HWY_ATTR { return hn::NegMulAdd(coef_of(d, k, wv, wv), vg, hn::Mul(exp_of(v), vs)); });
  } else if (k.w == nullptr) {
    map_row<2>(dx, C, stream, {src, k.t},
               [&](V v, V tv) HWY_ATTR { return hn::NegMulAdd(coef_of(d, k, tv, tv), vg, hn::Mul(exp_of(v), vs)); });
  } else {
    map_row<3>(dx, C, stream, {src, k.t, k.w},
               [&](V v, V tv, V wv) HWY_ATTR { return hn::NegMulAdd(coef_of(d, k, tv, wv), vg, hn::Mul(exp_of(v), vs)); });
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
constexpr std::size_t kSmallC = 32;

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
#ifndef XENT_UNROLL
#define XENT_UNROLL _Pragma("GCC unroll 16")
#endif
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

// Whether full tiles of rows of C values are transposed in registers.
template <class T>
HWY_INLINE bool fast_tiles(std::size_t C) { return C <= hn::Lanes(hn::ScalableTag<T>()); }

// Full tile in: row r is one vector (rows that would read past the tile load only their C values).
template <class T>
HWY_INLINE void tile_load_fast(const T* x, std::size_t C, T* tile) {
  const hn::ScalableTag<T> d;
  constexpr std::size_t L = 64 / sizeof(T);
  hn::Vec<decltype(d)> r[L];
  const auto first = hn::FirstN(d, C);
  XENT_UNROLL
  for (std::size_t i = 0; i < L; ++i) r[i] = i * C + L <= L * C ? hn::LoadU(d, x + i * C) : hn::MaskedLoad(first, d, x + i * C);
  transpose(r);
  XENT_UNROLL
  for (std::size_t c = 0; c < L; ++c)
    if (c < C) hn::Store(r[c], d, tile + c * L);
}

// Full tile out, every row.
template <class T>
HWY_INLINE void tile_store_fast(const T* tile, std::size_t C, T* y) {
  const hn::ScalableTag<T> d;
  constexpr std::size_t L = 64 / sizeof(T);
  hn::Vec<decltype(d)> r[L];
  XENT_UNROLL
  for (std::size_t c = 0; c < L; ++c) r[c] = c < C ? hn::Load(d, tile + c * L) : hn::Zero(d);
  transpose(r);
  const auto first = hn::FirstN(d, C);
  XENT_UNROLL
  for (std::size_t i = 0; i < L; ++i) hn::BlendedStore(r[i], first, d, y + i * C);
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

template <class T>
void softmax_small(const T* x, T* y, std::size_t rows, std::size_t C, bool log_softmax) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T m[kL], a[kL];
  HWY_ALIGN double S[kL], logS[kL];
  bool ok[kL];
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const bool fast = tile_load(x + r0 * C, C, n, tile);
    // log_softmax: y = (x - m) - log S, as the long-row path (log S must not vanish into m);
    // softmax: y = e * (1 / S).
    const bool all = log_softmax ? tile_stats<T, false>(tile, C, m, S, logS, ok) : tile_stats<T, true>(tile, C, m, S, logS, ok);
    for (std::size_t k = 0; k < L; k += LD)
      store_narrow(log_softmax ? hn::Load(dd, logS + k) : hn::Div(hn::Set(dd, 1.0), hn::Load(dd, S + k)), a + k);
    const V vm = hn::Load(d, m), va = hn::Load(d, a);
    for (std::size_t c = 0; c < C; ++c) {
      const V v = hn::Load(d, tile + c * L);
      hn::Store(log_softmax ? hn::Sub(hn::Sub(v, vm), va) : hn::Mul(v, va), d, tile + c * L);
    }
    // Rows the scalar twin redoes are done before the tile is stored: y may alias x.
    if (!all) {
      for (std::size_t lane = 0; lane < n; ++lane) {
        if (ok[lane]) continue;
        const T* xr = x + (r0 + lane) * C;
        T* yr = y + (r0 + lane) * C;
        if (log_softmax) scalar_table<T>().log_softmax_fwd(xr, yr, Block{1, C, 1, 1});
        else scalar_table<T>().softmax_fwd(xr, yr, Block{1, C, 1, 1});
      }
    }
    tile_store(tile, C, n, fast, all ? nullptr : ok, y + r0 * C);
  }
}

template <class T>
void logsumexp_small(const T* x, T* lse, std::size_t rows, std::size_t C) {
  const hn::ScalableTag<T> d;
  const hn::ScalableTag<double> dd;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T m[kL], out[kL];
  HWY_ALIGN double S[kL], logS[kL];
  bool ok[kL];
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    tile_load(x + r0 * C, C, n, tile);
    const bool all = tile_stats<T, false>(tile, C, m, S, logS, ok);
    for (std::size_t k = 0; k < L; k += LD) store_narrow(hn::Add(load_wide(m + k), hn::Load(dd, logS + k)), out + k);
    for (std::size_t lane = 0; lane < n; ++lane) {
      if (all || ok[lane]) lse[r0 + lane] = out[lane];
      else scalar_table<T>().logsumexp_fwd(x + (r0 + lane) * C, lse + r0 + lane, Block{1, C, 1, 1});
    }
  }
}

// Blocks with stride != 1 (class dimension not last): strided_softmax_fwd, strided_ce_index, ...
#include "cpu/kernels_strided-inl.h"

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
  if (b.stride != 1 || b.C == 0) return scalar.logsumexp_bwd(x, lse, dlse, dx, b);
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

// ---------------------------------------------------------------------------------------------
// cross-entropy with class indices, and NLL

template <class T>
HWY_INLINE void zero_row(T* dx, std::size_t C, bool stream) {
  const hn::ScalableTag<T> d;
  map_row<0>(dx, C, stream, std::array<const T*, 0>{}, [&]() HWY_ATTR { return hn::Zero(d); });
}

template <class T, class I>
HWY_INLINE CeIndexArgs<T, I> ce_row_args(const CeIndexArgs<T, I>& a, std::size_t r, std::size_t C) {
  CeIndexArgs<T, I> s = a;
  s.x = a.x + r * C;
  s.target = a.target + r;
  if (a.row_loss != nullptr) s.row_loss = a.row_loss + r;
  if (a.dx != nullptr) s.dx = a.dx + r * C;
  if (a.dloss != nullptr) s.dloss = a.dloss + r;
  return s;
}

// The targets of a full tile (L rows) as T values, -1 where ignored (it then matches no column):
// one vector load, no per-row loop. Targets are valid here (the front end checked the range).
template <class T, class I>
HWY_INLINE hn::Vec<hn::ScalableTag<T>> tile_targets_full(const I* t, std::int64_t ignore) {
  const hn::ScalableTag<T> d;
  if constexpr (sizeof(I) == 4) {
    const hn::Rebind<std::int32_t, decltype(d)> di;
    auto v = hn::LoadU(di, reinterpret_cast<const std::int32_t*>(t));
    if (ignore >= std::numeric_limits<std::int32_t>::min() && ignore <= std::numeric_limits<std::int32_t>::max())
      v = hn::IfThenElse(hn::Eq(v, hn::Set(di, static_cast<std::int32_t>(ignore))), hn::Set(di, -1), v);
    if constexpr (sizeof(T) == 4) return hn::ConvertTo(d, v);
    else return hn::PromoteTo(d, v);
  } else {
    // int64 lanes -> int32 (the values fit: [-1, C)).
    auto narrow = [&](auto d64, const I* p) HWY_ATTR {
      auto v = hn::LoadU(d64, reinterpret_cast<const std::int64_t*>(p));
      v = hn::IfThenElse(hn::Eq(v, hn::Set(d64, ignore)), hn::Set(d64, std::int64_t{-1}), v);
      const hn::RebindToUnsigned<decltype(d64)> du64;
      const hn::Rebind<std::uint32_t, decltype(d64)> du32;
      return hn::BitCast(hn::RebindToSigned<decltype(du32)>(), hn::TruncateTo(du32, hn::BitCast(du64, v)));
    };
    if constexpr (sizeof(T) == 8) {
      return hn::PromoteTo(d, narrow(hn::RebindToSigned<decltype(d)>(), t));
    } else {
      const hn::Half<decltype(d)> dh;
      const hn::Rebind<std::int64_t, decltype(dh)> d64;
      const auto lo = hn::ConvertTo(dh, narrow(d64, t));
      const auto hi = hn::ConvertTo(dh, narrow(d64, t + hn::Lanes(dh)));
      return hn::Combine(d, hi, lo);
    }
  }
}

// Cross-entropy without label smoothing on short rows, across rows (see tile_load): the formulas
// of ce_index below, per-row scalars in double vectors, one exp per value. The normaliser is summed
// as S_o (every column but the target's) plus e[t], so p[t] - 1 = -S_o / S needs neither expm1 nor
// a cancellation as p[t] -> 1: one division per row gives both the gradient's scale and its target
// entry.
template <class T, class I, class ScalarFn>
void ce_index_small_plain(const CeIndexArgs<T, I>& a, std::size_t rows, std::size_t C, ScalarFn scalar_fn) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  using VD = hn::Vec<decltype(dd)>;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  constexpr bool kExact = kExactOut;
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T m[kL], xt[kL], et[kL], wt[kL], tf[kL], keep[kL], dl[kL], scale[kL], tgrad[kL];
  HWY_ALIGN double S[kL], So[kL], loss[kL];
  bool ok[kL];
  const VD vscale = hn::Set(dd, a.dloss_scale);
  const bool want_dx = a.dx != nullptr;
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const bool fast = tile_load(a.x + r0 * C, C, n, tile);
    // Per row: the target as a T value (-1 when ignored), its weight (0 when ignored) and the
    // upstream gradient.
    V vt;
    if (n == L) {
      vt = tile_targets_full<T>(a.target + r0, a.ignore_index);
      const auto kept = hn::Ge(vt, hn::Zero(d));
      hn::Store(hn::IfThenElseZero(kept, hn::Set(d, T(1))), d, keep);
      if (a.weight != nullptr) {
        hn::Store(vt, d, tf);
        for (std::size_t lane = 0; lane < L; ++lane)
          wt[lane] = tf[lane] < T(0) ? T(0) : a.weight[static_cast<std::size_t>(tf[lane])];
      } else {
        hn::Store(hn::Load(d, keep), d, wt);
      }
      if (a.dloss != nullptr) hn::Store(hn::LoadU(d, a.dloss + r0), d, dl);
    } else {
      for (std::size_t lane = 0; lane < L; ++lane) {
        const std::size_t r = r0 + (lane < n ? lane : n - 1);
        const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
        const bool ignored = t == a.ignore_index;
        tf[lane] = ignored ? T(-1) : static_cast<T>(t);
        keep[lane] = ignored ? T(0) : T(1);
        wt[lane] = ignored ? T(0) : (a.weight != nullptr ? a.weight[t] : T(1));
        if (a.dloss != nullptr) dl[lane] = a.dloss[r];
      }
      vt = hn::Load(d, tf);
    }
    // Max and x[t] (picked before the columns turn into exps).
    V vm = hn::Load(d, tile), vxt = hn::IfThenElseZero(hn::Eq(vt, hn::Zero(d)), vm);
    for (std::size_t c = 1; c < C; ++c) {
      const V x = hn::Load(d, tile + c * L);
      vm = hn::Max(vm, x);
      vxt = hn::IfThenElse(hn::Eq(vt, hn::Set(d, static_cast<T>(c))), x, vxt);
    }
    // e = exp(x - m): e[t] kept apart, the others summed in double.
    V vet = hn::Zero(d);
    VD so_lo = hn::Zero(dd), so_hi = hn::Zero(dd);
    V so = hn::Zero(d);
    for (std::size_t c = 0; c < C; ++c) {
      const V e = exp_diff<kExact>(d, hn::Load(d, tile + c * L), vm);
      if (want_dx) hn::Store(e, d, tile + c * L);
      const auto is_t = hn::Eq(vt, hn::Set(d, static_cast<T>(c)));
      vet = hn::IfThenElse(is_t, e, vet);
      const V eo = hn::IfThenZeroElse(is_t, e);
      if constexpr (sizeof(T) == 4) {
        const hn::Half<decltype(d)> dh;
        so_lo = hn::Add(so_lo, hn::PromoteTo(dd, hn::LowerHalf(dh, eo)));
        so_hi = hn::Add(so_hi, hn::PromoteTo(dd, hn::UpperHalf(dh, eo)));
      } else {
        so = hn::Add(so, eo);
      }
    }
    if constexpr (sizeof(T) == 4) {
      hn::Store(so_lo, dd, So);
      hn::Store(so_hi, dd, So + LD);
    } else {
      hn::Store(so, d, So);
    }
    hn::Store(vm, d, m);
    hn::Store(vxt, d, xt);
    hn::Store(vet, d, et);
    bool all = hn::AllTrue(d, hn::IsFinite(vm)) &&
               hn::AllTrue(d, hn::Or(hn::IsFinite(vxt), hn::Eq(hn::Load(d, keep), hn::Zero(d))));
    double* out_loss = a.row_loss != nullptr && n == L ? a.row_loss + r0 : loss;
    for (std::size_t k = 0; k < L; k += LD) {
      const auto kept = hn::Ne(load_wide(keep + k), hn::Zero(dd));
      const VD sod = hn::Load(dd, So + k);
      const VD s = hn::Add(sod, load_wide(et + k));
      hn::Store(s, dd, S + k);
      all = all && hn::AllTrue(dd, hn::IsFinite(s));
      const VD xtd = load_wide(xt + k), wtd = load_wide(wt + k);
      if (a.row_loss != nullptr) {
        const VD lse = hn::Add(load_wide(m + k), hn::Log(dd, s));
        hn::StoreU(hn::IfThenElseZero(kept, hn::Mul(wtd, hn::Sub(lse, xtd))), dd, out_loss + k);
      }
      if (!want_dx) continue;
      const VD g = a.dloss != nullptr ? hn::Mul(vscale, load_wide(dl + k)) : vscale;
      const VD q = hn::IfThenElseZero(kept, hn::Div(hn::Mul(g, wtd), s));  // w[t] g / S
      store_narrow(q, scale + k);
      store_narrow(hn::Neg(hn::Mul(sod, q)), tgrad + k);  // w[t] g (p[t] - 1)
    }
    if (a.row_loss != nullptr && out_loss == loss)
      for (std::size_t lane = 0; lane < n; ++lane) a.row_loss[r0 + lane] = loss[lane];
    if (!all)
      for (std::size_t lane = 0; lane < L; ++lane)
        ok[lane] = std::isfinite(static_cast<double>(m[lane])) && std::isfinite(S[lane]) &&
                   (keep[lane] == T(0) || std::isfinite(static_cast<double>(xt[lane])));
    if (want_dx) {  // the tile holds exp(x - m): p = e * (w[t] g / S), the target's entry apart
      const V vs = hn::Load(d, scale), vg = hn::Load(d, tgrad);
      for (std::size_t c = 0; c < C; ++c) {
        const V p = hn::Mul(hn::Load(d, tile + c * L), vs);
        hn::Store(hn::IfThenElse(hn::Eq(vt, hn::Set(d, static_cast<T>(c))), vg, p), d, tile + c * L);
      }
    }
    // Rows the scalar twin redoes go first: dx may alias x, and the tile store skips them.
    if (!all)
      for (std::size_t lane = 0; lane < n; ++lane)
        if (!ok[lane]) scalar_fn(ce_row_args(a, r0 + lane, C), Block{1, C, 1, 1});
    if (want_dx) tile_store(tile, C, n, fast, all ? nullptr : ok, a.dx + r0 * C);
  }
}

// Cross-entropy with label smoothing on short rows, across rows (see tile_load): same formulas as
// ce_index below, one exp per value when a gradient is wanted (tile_stats keeps the exps).
template <class T, class I, class ScalarFn>
void ce_index_small(const CeIndexArgs<T, I>& a, std::size_t rows, std::size_t C, ScalarFn scalar_fn) {
  if (a.smoothing == 0) return ce_index_small_plain(a, rows, C, scalar_fn);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  using VD = hn::Vec<decltype(dd)>;
  const std::size_t LD = hn::Lanes(dd);
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T m[kL], scale[kL], bb[kL];
  HWY_ALIGN double S[kL], logS[kL], A[kL], arg[kL], pm1[kL];
  bool ok[kL];
  const double eps = a.smoothing;
  const double Cd = static_cast<double>(C);
  double W = 0;  // sum of class weights, for the smoothing term of the loss
  for (std::size_t c = 0; c < C; ++c) W += a.weight != nullptr ? static_cast<double>(a.weight[c]) : 1.0;
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const T* x = a.x + r0 * C;
    const bool fast = tile_load(x, C, n, tile);
    // A = sum_c w[c] (x[c] - m) per row, in double (every term <= 0), before the tile turns into
    // exps (tile_stats keeps e = exp(x - m) when a gradient is wanted: one exp per value).
    V vmax = hn::Load(d, tile);
    for (std::size_t c = 1; c < C; ++c) vmax = hn::Max(vmax, hn::Load(d, tile + c * L));
    hn::Store(vmax, d, m);
    for (std::size_t j = 0; j < L; j += LD) hn::Store(hn::Zero(dd), dd, A + j);
    for (std::size_t c = 0; c < C; ++c) {
      const VD wc = hn::Set(dd, a.weight != nullptr ? static_cast<double>(a.weight[c]) : 1.0);
      for (std::size_t j = 0; j < L; j += LD)
        hn::Store(hn::MulAdd(wc, hn::Sub(load_wide(tile + c * L + j), load_wide(m + j)), hn::Load(dd, A + j)), dd, A + j);
    }
    const bool all = a.dx != nullptr ? tile_stats<T, true>(tile, C, m, S, logS, ok) : tile_stats<T, false>(tile, C, m, S, logS, ok);
    if (all)
      for (std::size_t lane = 0; lane < L; ++lane) ok[lane] = true;
    // p[t] - 1 = expm1(x[t] - lse) for every lane at once.
    for (std::size_t lane = 0; lane < L; ++lane) {
      arg[lane] = 0;
      if (lane >= n) continue;
      const std::int64_t t = static_cast<std::int64_t>(a.target[r0 + lane]);
      if (t == a.ignore_index) continue;
      const double xt = static_cast<double>(x[lane * C + static_cast<std::size_t>(t)]);
      if (!std::isfinite(xt) || !std::isfinite(A[lane])) ok[lane] = false;
      if (ok[lane]) arg[lane] = xt - (static_cast<double>(m[lane]) + logS[lane]);
    }
    if (a.dx != nullptr)
      for (std::size_t k = 0; k < L; k += LD) hn::Store(hn::Expm1(dd, hn::Load(dd, arg + k)), dd, pm1 + k);
    for (std::size_t lane = 0; lane < L; ++lane) {
      scale[lane] = T(0);
      bb[lane] = T(0);
      if (lane >= n || !ok[lane]) continue;
      const std::size_t r = r0 + lane;
      const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
      if (t == a.ignore_index) {
        if (a.row_loss != nullptr) a.row_loss[r] = 0;
        continue;
      }
      const double wt = a.weight != nullptr ? static_cast<double>(a.weight[t]) : 1.0;
      if (a.row_loss != nullptr) {
        const double lse = static_cast<double>(m[lane]) + logS[lane];
        const double nll = wt * (lse - static_cast<double>(x[lane * C + static_cast<std::size_t>(t)]));
        a.row_loss[r] = (1 - eps) * nll + eps / Cd * (W * logS[lane] - A[lane]);
      }
      if (a.dx == nullptr) continue;
      const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(a.dloss[r]) : a.dloss_scale;
      scale[lane] = static_cast<T>(g * ((1 - eps) * wt + eps * a.weight_sum / Cd) / S[lane]);
      bb[lane] = static_cast<T>(g * eps / Cd);
      double dt = (1 - eps) * wt * pm1[lane];
      if (eps != 0) dt += eps / Cd * (a.weight_sum * (pm1[lane] + 1) - wt);
      pm1[lane] = g * dt;  // reused: the target's gradient
    }
    if (a.dx != nullptr) {  // the tile holds e = exp(x - m)
      const V vs = hn::Load(d, scale), vb = hn::Load(d, bb);
      for (std::size_t c = 0; c < C; ++c) {
        const V wc = hn::Set(d, a.weight != nullptr ? a.weight[c] : T(1));
        hn::Store(hn::NegMulAdd(wc, vb, hn::Mul(hn::Load(d, tile + c * L), vs)), d, tile + c * L);
      }
    }
    // Rows the scalar twin redoes go first: dx may alias x, and the tile store skips them.
    for (std::size_t lane = 0; lane < n; ++lane)
      if (!ok[lane]) scalar_fn(ce_row_args(a, r0 + lane, C), Block{1, C, 1, 1});
    if (a.dx != nullptr) {
      T* dx = a.dx + r0 * C;
      bool every = true;  // ok may have dropped lanes since tile_stats (x[t] or A not finite)
      for (std::size_t lane = 0; lane < n; ++lane) every = every && ok[lane];
      tile_store(tile, C, n, fast, every ? nullptr : ok, dx);
      for (std::size_t lane = 0; lane < n; ++lane) {
        const std::int64_t t = static_cast<std::int64_t>(a.target[r0 + lane]);
        if (ok[lane] && t != a.ignore_index) dx[lane * C + static_cast<std::size_t>(t)] = static_cast<T>(pm1[lane]);
      }
    }
  }
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
    const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(a.dloss[r]) : a.dloss_scale;
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
    const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(a.dloss[r]) : a.dloss_scale;
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

// Probability targets on short rows (C <= kSmallC), across rows: the logits and the targets are
// loaded as tiles (see tile_load), so every per-row quantity is a lane. The formulas are ce_prob's:
// the column max m, then A = sum c (x - m) and Q = sum c in double (c = w q), then tile_stats
// (which keeps e = exp(x - m) in the tile when a gradient is wanted), then dx = e (g Q / S) - g c.
// Both tiles are read before anything is stored, so dx may alias the logits or the targets.
template <class T>
void ce_prob_small(const CeProbArgs<T>& a, std::size_t rows, std::size_t C) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  using VD = hn::Vec<decltype(dd)>;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T ttile[kSmallC * kL];
  HWY_ALIGN T m[kL], col[kL], scale[kL], gb[kL];
  HWY_ALIGN double S[kL], logS[kL], A[kL], Q[kL];
  bool ok[kL];
  const double eps = a.smoothing;
  const Coefs<T> k{a.weight, a.target, 1 - eps, eps / static_cast<double>(C)};
  auto coef_col = [&](std::size_t c) HWY_ATTR {
    return coef_of(d, k, hn::Load(d, ttile + c * L), hn::Set(d, a.weight != nullptr ? a.weight[c] : T(1)));
  };
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const bool fast = tile_load(a.x + r0 * C, C, n, tile);
    tile_load(a.target + r0 * C, C, n, ttile);
    V vm = hn::Load(d, tile);
    for (std::size_t c = 1; c < C; ++c) vm = hn::Max(vm, hn::Load(d, tile + c * L));
    hn::Store(vm, d, m);
    for (std::size_t j = 0; j < L; j += LD) {
      hn::Store(hn::Zero(dd), dd, A + j);
      hn::Store(hn::Zero(dd), dd, Q + j);
    }
    for (std::size_t c = 0; c < C; ++c) {
      hn::Store(coef_col(c), d, col);
      for (std::size_t j = 0; j < L; j += LD) {
        const VD cw = load_wide(col + j);
        const VD xm = hn::Sub(load_wide(tile + c * L + j), load_wide(m + j));
        hn::Store(hn::MulAdd(cw, xm, hn::Load(dd, A + j)), dd, A + j);
        hn::Store(hn::Add(cw, hn::Load(dd, Q + j)), dd, Q + j);
      }
    }
    bool all = a.dx != nullptr ? tile_stats<T, true>(tile, C, m, S, logS, ok) : tile_stats<T, false>(tile, C, m, S, logS, ok);
    if (all)
      for (std::size_t lane = 0; lane < L; ++lane) ok[lane] = true;
    for (std::size_t lane = 0; lane < n; ++lane) {
      ok[lane] = ok[lane] && std::isfinite(A[lane]) && std::isfinite(Q[lane]);
      all = all && ok[lane];
      scale[lane] = gb[lane] = T(0);
      if (!ok[lane]) continue;
      const std::size_t r = r0 + lane;
      if (a.row_loss != nullptr) a.row_loss[r] = Q[lane] * logS[lane] - A[lane];
      if (a.dx == nullptr) continue;
      const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(a.dloss[r]) : a.dloss_scale;
      scale[lane] = static_cast<T>(g * Q[lane] / S[lane]);
      gb[lane] = static_cast<T>(g);
    }
    if (a.dx != nullptr) {
      const V vs = hn::Load(d, scale), vg = hn::Load(d, gb);
      for (std::size_t c = 0; c < C; ++c)
        hn::Store(hn::NegMulAdd(coef_col(c), vg, hn::Mul(hn::Load(d, tile + c * L), vs)), d, tile + c * L);
    }
    // Rows the scalar twin redoes go first: dx may alias x, and the tile store skips them.
    for (std::size_t lane = 0; lane < n; ++lane) {
      if (ok[lane]) continue;
      const std::size_t r = r0 + lane;
      CeProbArgs<T> ra = a;
      ra.x = a.x + r * C;
      ra.target = a.target + r * C;
      ra.row_loss = a.row_loss != nullptr ? a.row_loss + r : nullptr;
      ra.dx = a.dx != nullptr ? a.dx + r * C : nullptr;
      ra.dloss = a.dloss != nullptr ? a.dloss + r : nullptr;
      scalar_table<T>().ce_prob(ra, Block{1, C, 1, 1});
    }
    if (a.dx != nullptr) tile_store(tile, C, n, fast, all ? nullptr : ok, a.dx + r0 * C);
  }
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
  if (b.stride != 1 || b.C == 0) return scalar.ce_prob(a, b);
  if (b.C <= kSmallC) return ce_prob_small(a, b.n_outer, b.C);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const double eps = a.smoothing;
  const bool stream = a.dx != nullptr && stream_rows<T>(C);
  const bool one_exp = XENT_PROB_ONE_EXP && a.dx != nullptr && one_exp_rows<T>(C) && a.dx != a.target;
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

// Split rows with coefficients (kernels.h chunk_sums / chunk_ce_grad): row_stats<T, true> and
// ce_grad_row on one run; a run the vector sums decline gets the scalar twin's sums, which the
// front end sees are not finite.
template <class T>
void chunk_sums(const T* x, const Coefs<T>& k, std::size_t n, ChunkSums* out) noexcept {
  RowStats st;
  if (n != 0 && row_stats<T, true>(x, n, &k, &st)) {
    out->m = st.m;
    out->s = st.s;
    out->a = st.wx;
    out->q = st.wsum;
    return;
  }
  scalar_table<T>().chunk_sums(x, k, n, out);
}

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
// so the bits are the same). The work is the zero fill, streamed for long rows.
template <class T, class I>
void nll(const CeIndexArgs<T, I>& a, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  auto* scalar_fn = [&] {
    if constexpr (sizeof(I) == 4) return scalar.nll_i32;
    else return scalar.nll_i64;
  }();
  if (b.stride != 1 || b.C == 0 || a.dx == nullptr) return scalar_fn(a, b);
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
// binary cross-entropy (elementwise)
//
// One vector of T at a time with Highway's Exp / Log / Log1p (<= 4 ulp), the scalar twin's
// formulas term for term; each element's loss goes out as double. A vector holding an input the
// vector formulas do not reproduce exactly as the scalar twin does (BCE: p below the smallest
// normal number, including 0, or p == 1, where the -100 clamps act; with logits: a non-finite x,
// PyTorch's NaN cases) is handed to the scalar twin whole, as is the tail of the run.

template <class T>
BceArgs<T> bce_args_at(const BceArgs<T>& a, std::size_t i) noexcept {
  BceArgs<T> b = a;
  b.x += i;
  b.target += i;
  if (b.weight != nullptr) b.weight += i * a.w_step;
  if (b.pos_weight != nullptr) b.pos_weight += i * a.pw_step;
  if (b.elem_loss != nullptr) b.elem_loss += i;
  if (b.dx != nullptr) b.dx += i;
  if (b.dloss != nullptr) b.dloss += i;
  return b;
}

// A broadcast operand: p[i] (step 1) or p[0] (step 0).
template <class D>
HWY_INLINE hn::Vec<D> load_bcast(D d, const hn::TFromD<D>* p, std::size_t step, std::size_t i) {
  return step == 0 ? hn::Set(d, p[0]) : hn::LoadU(d, p + i);
}

template <class T, bool kLogits>
void bce_vec(const BceArgs<T>& a, std::size_t n) noexcept {
  const auto& scalar = scalar_table<T>();
  const auto scalar_fn = kLogits ? scalar.bce_logits : scalar.bce;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t L = hn::Lanes(d);
  HWY_ALIGN T lbuf[kMaxLanesBytes / sizeof(T)];
  const V one = hn::Set(d, T(1)), zero = hn::Zero(d);
  const V vscale = hn::Set(d, static_cast<T>(a.dloss_scale));
  std::size_t i = 0;
  for (; i + L <= n; i += L) {
    const V x = hn::LoadU(d, a.x + i);
    bool ok;
    if constexpr (kLogits) {
      ok = hn::AllTrue(d, hn::IsFinite(x));
    } else {
      ok = hn::AllTrue(d, hn::And(hn::Ge(x, hn::Set(d, std::numeric_limits<T>::min())), hn::Lt(x, one)));
    }
    if (!ok) {
      scalar_fn(bce_args_at(a, i), L);
      continue;
    }
    const V t = hn::LoadU(d, a.target + i);
    const V w = a.weight != nullptr ? load_bcast(d, a.weight, a.w_step, i) : one;
    const V pw = a.pos_weight != nullptr ? load_bcast(d, a.pos_weight, a.pw_step, i) : one;
    if (a.elem_loss != nullptr) {
      V l;
      if constexpr (kLogits) {
        // m = max(-x, 0); softplus(-x) = log(exp(-m) + exp(-x - m)) + m; both exps' arguments <= 0.
        const V m = hn::Max(hn::Neg(x), zero);
        const V sp = hn::Add(hn::Log(d, hn::Add(hn::Exp(d, hn::Neg(m)), hn::Exp(d, hn::Sub(hn::Neg(x), m)))), m);
        const V lw = a.pos_weight != nullptr ? hn::MulAdd(hn::Sub(pw, one), t, one) : one;
        l = hn::MulAdd(lw, sp, hn::Mul(hn::Sub(one, t), x));
      } else {
        const V clamp = hn::Set(d, T(-100));
        const V lp = hn::Max(hn::Log(d, x), clamp);
        const V l1p = hn::Max(hn::Log1p(d, hn::Neg(x)), clamp);
        l = hn::Sub(hn::Mul(hn::Sub(t, one), l1p), hn::Mul(t, lp));
      }
      if (a.weight != nullptr) l = hn::Mul(l, w);
      hn::Store(l, d, lbuf);
      for (std::size_t k = 0; k < L; ++k) a.elem_loss[i + k] = static_cast<double>(lbuf[k]);
    }
    if (a.dx != nullptr) {
      const V g = a.dloss != nullptr ? hn::Mul(hn::LoadU(d, a.dloss + i), vscale) : vscale;
      V dd;
      if constexpr (kLogits) {
        // sigmoid(x) from e = exp(-|x|) in (0, 1]: 1 / (1 + e) for x >= 0, e / (1 + e) below.
        const V e = hn::Exp(d, hn::Neg(hn::Abs(x)));
        const V inv = hn::Div(one, hn::Add(one, e));
        const V sig = hn::IfThenElse(hn::Ge(x, zero), inv, hn::Mul(e, inv));
        if (a.pos_weight != nullptr) {
          const V pt = hn::Mul(pw, t);
          dd = hn::Mul(hn::Sub(hn::Mul(hn::Sub(hn::Add(pt, one), t), sig), pt), g);
        } else {
          dd = hn::Mul(hn::Sub(sig, t), g);
        }
      } else {
        // PyTorch's denominator clamp is a float constant even for double data.
        const V eps = hn::Set(d, static_cast<T>(static_cast<double>(1e-12f)));
        dd = hn::Mul(g, hn::Div(hn::Sub(x, t), hn::Max(hn::Mul(hn::Sub(one, x), x), eps)));
      }
      if (a.weight != nullptr) dd = hn::Mul(dd, w);
      hn::StoreU(dd, d, a.dx + i);
    }
  }
  if (i < n) scalar_fn(bce_args_at(a, i), n - i);
}

template <class T>
void bce(const BceArgs<T>& a, std::size_t n) noexcept { bce_vec<T, false>(a, n); }
template <class T>
void bce_logits(const BceArgs<T>& a, std::size_t n) noexcept { bce_vec<T, true>(a, n); }

// ---------------------------------------------------------------------------------------------
// the table

inline const char* isa_name() {
#if HWY_TARGET == HWY_AVX3
  return "avx512";
#elif HWY_TARGET == HWY_AVX2
  return "avx2";
#elif HWY_TARGET == HWY_SSE4
  return "sse4";
#elif HWY_TARGET == HWY_NEON
  return "neon";
#else
  return hwy::TargetName(HWY_TARGET);
#endif
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
KernelTable<T> make_table() {
  KernelTable<T> t = scalar_table<T>();
  t.name = isa_name();
  t.softmax_fwd = &softmax_fwd<T>;
  t.log_softmax_fwd = &log_softmax_fwd<T>;
  t.logsumexp_fwd = &logsumexp_fwd<T>;
  t.chunk_stats = &chunk_stats<T>;
  t.chunk_exp_scale = &chunk_exp_scale<T>;
  t.chunk_shift = &chunk_shift<T>;
  t.chunk_dot = &chunk_dot<T>;
  t.chunk_sums = &chunk_sums<T>;
  t.chunk_ce_grad = &chunk_ce_grad<T>;
  t.chunk_softmax_bwd = &chunk_softmax_bwd<T>;
  t.chunk_log_softmax_bwd = &chunk_log_softmax_bwd<T>;
  t.softmax_bwd = &softmax_bwd<T>;
  t.log_softmax_bwd = &log_softmax_bwd<T>;
  t.logsumexp_bwd = &logsumexp_bwd<T>;
  t.ce_index_i32 = &ce_index<T, std::int32_t>;
  t.ce_index_i64 = &ce_index<T, std::int64_t>;
  t.nll_i32 = &nll<T, std::int32_t>;
  t.nll_i64 = &nll<T, std::int64_t>;
  t.ce_prob = &ce_prob<T>;
  t.bce = &bce<T>;
  t.bce_logits = &bce_logits<T>;
  t.count_kept_i32 = &count_kept<std::int32_t>;
  t.count_kept_i64 = &count_kept<std::int64_t>;
  return t;
}

const KernelTable<float>& table_f32() noexcept {
  static const KernelTable<float> t = make_table<float>();
  return t;
}
const KernelTable<double>& table_f64() noexcept {
  static const KernelTable<double> t = make_table<double>();
  return t;
}
#endif  // kernels for this target

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent::cpu {

const IsaTables* simd_isa_tables(std::size_t* count) noexcept {
  static const IsaTables kTables[] = {
#if HWY_TARGETS & HWY_AVX3
      {"avx512", HWY_AVX3, &N_AVX3::table_f32, &N_AVX3::table_f64},
#endif
#if HWY_TARGETS & HWY_AVX2
      {"avx2", HWY_AVX2, &N_AVX2::table_f32, &N_AVX2::table_f64},
#endif
#if HWY_TARGETS & HWY_SSE4
      {"sse4", HWY_SSE4, &N_SSE4::table_f32, &N_SSE4::table_f64},
#endif
#if (HWY_TARGETS & HWY_NEON) && defined(XENT_HWY_HAS_KERNELS)
      {"neon", HWY_NEON, &N_NEON::table_f32, &N_NEON::table_f64},
#endif
      {nullptr, 0, nullptr, nullptr},  // sentinel (keeps the array non-empty)
  };
  *count = sizeof(kTables) / sizeof(kTables[0]) - 1;
  return kTables;
}

}  // namespace xent::cpu
#endif  // HWY_ONCE
