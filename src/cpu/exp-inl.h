// exp-inl.h: the SIMD kernels' exponential, for every per-target unit (Highway foreach_target;
// include after hwy/highway.h). Not a general math library: exp_nonpos covers the softmax family's
// arguments (x - max <= 0), exp_reduced/exp_diff_any the few places whose argument may be positive.
//
// exp_nonpos(x, lo) = exp(x + lo), for x <= 0 (any such value, -inf and subnormal results
// included) and |lo| <= ulp(x) / 2 (lo is the TwoSum rounding error of the subtraction that made
// x, or 0). NaN propagates; -inf gives +0. Method (exp_nonpos_normal states the float form):
// k = round(x / ln 2) (float: round(4 x / ln 2), with a table of 2^(j/4)) by the 1.5 * 2^(p-1)
// trick (the low mantissa bits of the rounded sum hold k, so 2^n comes from a shift of those bits),
// r = x - k ln2 (float: ln2 / 4) with the constant split in two (Cody-Waite), then a polynomial in
// r: float 1 + r + r^2 P(r), P of degree 2 fitted here on |r| <= ln2 / 8; double the minimax
// polynomial of Highway's contrib Exp (degree 12, Estrin's scheme; its coefficients are written
// out in exp_poly so that xent depends on no Highway internals), scaled by 2^n. exp_reduced keeps
// Highway's polynomials for both types (degree 7 in float). Results below the
// normal range (x < -87.3 in float, x < -708.4 in double) are evaluated as exp(x + 64 ln 2) 2^-64,
// rounded once into the subnormal grid, as PyTorch's exp keeps them; below half the smallest
// subnormal the result is 0.
// Accuracy, measured by tests/kernels/test_tables.cc (ExpUlpBound) on every ISA against expl over
// a dense sweep of [-104, 0] (float) and [-746, 0] (double), lo = 0: at most 0.70 ulp (float, with
// FMA; 0.91 on SSE4) and 1.00 ulp (double) for x >= -87 (float) / x >= -708 (double), the range
// every row term that matters lies in. Below that, the reduced-range path adds the rounding of
// x + 64 ln 2 (lo is not carried into it): up to 1.9 ulp (float) and 38 ulp (double) for the normal
// results of that band, and 1.8 (float) / 26 (double) units of the smallest subnormal for
// subnormal results. Such terms are below 2^-125 (2^-1021) of the row's largest one: they never
// move a normaliser, only their own tiny outputs.

#if defined(XENT_CPU_EXP_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_CPU_EXP_INL_H_
#undef XENT_CPU_EXP_INL_H_
#else
#define XENT_CPU_EXP_INL_H_
#endif

#include <cstdint>
#include <limits>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class T> constexpr T kInf = std::numeric_limits<T>::infinity();

// exp(r) - 1 - r = r^2 P(r) on |r| <= ln2 / 2, plus r: the minimax polynomial of Highway's Exp.
template <class D, class V>
HWY_INLINE V exp_poly(D d, V x) {
  using T = hn::TFromD<D>;
  const V x2 = hn::Mul(x, x);
  const V x4 = hn::Mul(x2, x2);
  if constexpr (sizeof(T) == 4) {
    const V c0 = hn::Set(d, +0.5f);
    const V c1 = hn::Set(d, +0.166666671633720397949219f);
    const V c2 = hn::Set(d, +0.0416664853692054748535156f);
    const V c3 = hn::Set(d, +0.00833336077630519866943359f);
    const V c4 = hn::Set(d, +0.00139304355252534151077271f);
    const V c5 = hn::Set(d, +0.000198527617612853646278381f);
    const V p = hn::MulAdd(x4, hn::MulAdd(c5, x, c4), hn::MulAdd(x2, hn::MulAdd(c3, x, c2), hn::MulAdd(c1, x, c0)));
    return hn::MulAdd(p, hn::Mul(x, x), x);
  } else {
    const V c0 = hn::Set(d, +0.5);
    const V c1 = hn::Set(d, +0.166666666666666851703837);
    const V c2 = hn::Set(d, +0.0416666666666665047591422);
    const V c3 = hn::Set(d, +0.00833333333331652721664984);
    const V c4 = hn::Set(d, +0.00138888888889774492207962);
    const V c5 = hn::Set(d, +0.000198412698960509205564975);
    const V c6 = hn::Set(d, +2.4801587159235472998791e-5);
    const V c7 = hn::Set(d, +2.75572362911928827629423e-6);
    const V c8 = hn::Set(d, +2.75573911234900471893338e-7);
    const V c9 = hn::Set(d, +2.51112930892876518610661e-8);
    const V c10 = hn::Set(d, +2.08860621107283687536341e-9);
    const V x8 = hn::Mul(x4, x4);
    const V p = hn::MulAdd(x8, hn::MulAdd(x2, c10, hn::MulAdd(c9, x, c8)),
                           hn::MulAdd(x4, hn::MulAdd(x2, hn::MulAdd(c7, x, c6), hn::MulAdd(c5, x, c4)),
                                      hn::MulAdd(x2, hn::MulAdd(c3, x, c2), hn::MulAdd(c1, x, c0))));
    return hn::MulAdd(p, hn::Mul(x, x), x);
  }
}

// 2^q for int32 lanes q in the normal exponent range.
template <class D, class VI>
HWY_INLINE hn::Vec<D> pow2i(D d, VI q) {
  using T = hn::TFromD<D>;
  const hn::Rebind<std::int32_t, D> di32;
  if constexpr (sizeof(T) == 4) {
    return hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(q, hn::Set(di32, 0x7F))));
  } else {
    const hn::Rebind<std::int64_t, D> di64;
    return hn::BitCast(d, hn::ShiftLeft<52>(hn::PromoteTo(di64, hn::Add(q, hn::Set(di32, 0x3FF)))));
  }
}

// exp(x + lo) for x below the overflow bound, |lo| << ulp(x): the general range reduction (q by a
// float-to-int conversion, 2^q applied in two halves so that q may exceed the exponent range of one
// factor), the correction lo added to the reduced argument, NaN propagated (x < bound is false for
// NaN), 0 below -104 (float) / -1000 (double).
template <class D, class V>
HWY_INLINE V exp_reduced(D d, V x, V lo) {
  using T = hn::TFromD<D>;
  const hn::Rebind<std::int32_t, D> di32;
  const V kHalf = hn::Set(d, T(0.5));
  const V kNegZero = hn::Set(d, T(-0.0));
  const V kOne = hn::Set(d, T(1));
  const V kOneOverLog2 = hn::Set(d, T(1.442695040888963407359924681));
  const V kLowerBound = hn::Set(d, T(sizeof(T) == 4 ? -104.0 : -1000.0));
  const V qx = hn::MulAdd(x, kOneOverLog2, hn::Or(kHalf, hn::And(x, kNegZero)));  // rounded toward 0 below
  V r;
  hn::Vec<decltype(di32)> q;
  if constexpr (sizeof(T) == 4) {
    q = hn::ConvertTo(di32, qx);
    const V qf = hn::ConvertTo(d, q);
    r = hn::MulAdd(qf, hn::Set(d, -0.693145751953125f), x);
    r = hn::MulAdd(qf, hn::Set(d, -1.428606765330187045e-6f), r);
  } else {
    q = hn::DemoteTo(di32, qx);
    const V qf = hn::PromoteTo(d, q);
    r = hn::MulAdd(qf, hn::Set(d, -0.6931471805596629565116018), x);
    r = hn::MulAdd(qf, hn::Set(d, -0.28235290563031577122588448175e-12), r);
  }
  r = hn::Add(r, lo);
  const auto q_half = hn::ShiftRight<1>(q);
  const V y = hn::Mul(hn::Mul(hn::Add(exp_poly(d, r), kOne), pow2i(d, q_half)), pow2i(d, hn::Sub(q, q_half)));
  return hn::IfThenZeroElse(hn::Lt(x, kLowerBound), y);
}

// 2^(j/4) for j = 0..3 as a float (hi) and its relative rest rho = (2^(j/4) - hi) / hi, each
// repeated to fill a vector of up to 16 lanes: exp_nonpos_normal's float table, read by a lane
// permutation with index j on every target.
alignas(64) inline constexpr float kExp2QuarterHi[16] = {
    1.0f, 1.18920707702636719f, 1.41421353816986084f, 1.68179285526275635f,
    1.0f, 1.18920707702636719f, 1.41421353816986084f, 1.68179285526275635f,
    1.0f, 1.18920707702636719f, 1.41421353816986084f, 1.68179285526275635f,
    1.0f, 1.18920707702636719f, 1.41421353816986084f, 1.68179285526275635f};
alignas(64) inline constexpr float kExp2QuarterRho[16] = {
    0.0f, 3.19341815e-08f, 1.71142709e-08f, -1.47196051e-08f,
    0.0f, 3.19341815e-08f, 1.71142709e-08f, -1.47196051e-08f,
    0.0f, 3.19341815e-08f, 1.71142709e-08f, -1.47196051e-08f,
    0.0f, 3.19341815e-08f, 1.71142709e-08f, -1.47196051e-08f};

// exp(x + lo) for x <= 0 whose result is normal (x >= -87 in float, x >= -708 in double); other
// lanes are unspecified (exp_nonpos below fixes them). kLo false: lo is 0 and not added (the same
// bits, one add fewer).
// Float: k = round(4 x / ln 2) = 4 n + j by the 1.5 * 2^23 trick, r = x - k ln2/4 (Cody-Waite,
// |r| <= ln2/8), exp(r) - 1 = r + r^2 P(r) with P of degree 2 (fitted by iterated reweighted least
// squares to the relative error of exp(r) on |r| <= ln2/8: 5.5e-9 with the float coefficients,
// 0.09 ulp; scripts/fit-exp-table.py derives every constant here), then exp(x) = 2^n hi_j (1 + (exp(r) - 1 + rho_j)). 2^n hi_j is one integer add to
// hi_j's exponent (hi_j is in [1, 2) and n >= -126 here, so it stays normal), and a NaN x reaches
// the result through r (the last FMA multiplies it), whatever its payload does to n. Eight
// FMA-unit operations per vector where the table-free form with Highway's degree-7 polynomial
// (exp_reduced's) takes twelve, and one rounding (the last FMA) on top of ~0.1 ulp: 0.70 ulp
// measured, where that form measured 1.01.
// kNeg: x holds the argument's negation (a >= 0, exp(-a) is returned; lo must be 0 and kLo
// false). Float then runs the same operations with the constants' signs flipped, so r and the
// inner polynomial step are exact negations of the kNeg = false ones (rounding to nearest is
// symmetric) and the bits are those of exp_nonpos_normal(-a), without the negation.
template <bool kLo = true, bool kNeg = false, class D, class V>
HWY_INLINE V exp_nonpos_normal(D d, V x, V lo) {
  using T = hn::TFromD<D>;
  const hn::RebindToSigned<D> di;
  static_assert(!(kNeg && kLo), "kNeg takes no lo");
  if constexpr (sizeof(T) == 4) {
    static_assert(HWY_LANES(float) <= 16, "the exp table fills at most 16 lanes");
    constexpr float s = kNeg ? -1.0f : 1.0f;  // r below is s times the reduced argument
    const V kMagic = hn::Set(d, 12582912.0f);  // 1.5 * 2^23: t's low mantissa bits hold k
    const V t = hn::MulAdd(x, hn::Set(d, s * 5.77078008651733398f), kMagic);  // 4 / ln 2
    const V kf = hn::Sub(t, kMagic);
    V r = hn::MulAdd(kf, hn::Set(d, s * -0.17328643798828125f), x);  // ln2/4's leading 15 bits: exact
    r = hn::MulAdd(kf, hn::Set(d, s * -3.57151691e-07f), r);
    if constexpr (kLo) r = hn::Add(r, lo);
    const auto ti = hn::BitCast(di, t);
    const auto idx = hn::IndicesFromVec(d, hn::And(ti, hn::Set(di, 3)));
    const V hi = hn::TableLookupLanes(hn::LoadU(d, kExp2QuarterHi), idx);
    const V rho = hn::TableLookupLanes(hn::LoadU(d, kExp2QuarterRho), idx);
    const V p = hn::MulAdd(hn::MulAdd(hn::Set(d, 0.0416417532f), r, hn::Set(d, s * 0.166721046f)), r,
                           hn::Set(d, 0.500000179f));
    const V em1 = kNeg ? hn::MulSub(p, hn::Mul(r, r), r) : hn::MulAdd(p, hn::Mul(r, r), r);  // exp(r) - 1
    // n << 23 from k's bits 2..10 (t's low mantissa bits are k + 2^22, so k mod 2^11 is exact):
    // two's complement, so the add lowers the exponent by -n.
    const auto n23 = hn::ShiftLeft<21>(hn::AndNot(hn::Set(di, 3), ti));
    const V scaled = hn::BitCast(d, hn::Add(hn::BitCast(di, hi), n23));
    return hn::MulAdd(scaled, hn::Add(em1, rho), scaled);
  } else {
    if constexpr (kNeg) x = hn::Neg(x);
    const V kMagic = hn::Set(d, 6755399441055744.0 + 1023.0);  // 1.5 * 2^52 + bias
    const V t = hn::MulAdd(x, hn::Set(d, 1.4426950408889634073599), kMagic);
    const V qf = hn::Sub(t, kMagic);
    V r = hn::MulAdd(qf, hn::Set(d, -0.6931471805596629565116018), x);
    r = hn::MulAdd(qf, hn::Set(d, -0.28235290563031577122588448175e-12), r);
    if constexpr (kLo) r = hn::Add(r, lo);
    const V scale = hn::BitCast(d, hn::ShiftLeft<52>(hn::BitCast(di, t)));
    return hn::Mul(hn::Add(exp_poly(d, r), hn::Set(d, 1.0)), scale);
  }
}

// The bound below which exp_nonpos_normal's result is not normal (exp_nonpos takes the tiny path).
template <class D>
HWY_INLINE hn::Vec<D> exp_tiny_bound(D d) {
  using T = hn::TFromD<D>;
  return hn::Set(d, T(sizeof(T) == 4 ? -87.0 : -708.0));
}

// The rare lanes of exp_nonpos whose result is subnormal (x < -87 in float, x < -708 in double):
// PyTorch's exp returns subnormals there, so evaluate exp(x + 64 ln 2) in the normal range and
// scale by 2^-64 (one rounding into the subnormal grid). Below the smallest subnormal's half
// (and for -inf) the result is 0. Inlined, not called: a call in the hot loops (which never take
// this branch unless a row is extremely spread) makes the compiler keep their accumulators and
// constants in memory across the whole loop, since every vector register is caller-saved.
template <class D, class V, class M>
HWY_INLINE V exp_nonpos_tiny(D d, V x, V lo, M tiny, V y) {
  using T = hn::TFromD<D>;
  const V k64ln2 = hn::Set(d, T(44.361419555836499802702855773323));
  // Clamped into the normal path's range (-inf and x below the zero bound are zeroed below anyway).
  const V floor = hn::Set(d, T(sizeof(T) == 4 ? -60.0 : -700.0));
  const V x2 = hn::IfThenElse(tiny, hn::Max(hn::Add(x, k64ln2), floor), hn::Zero(d));
  const V y2 = hn::Mul(exp_nonpos_normal<true>(d, x2, lo), hn::Set(d, T(5.42101086242752217003726400434970855712890625e-20)));
  const V zero_below = hn::Set(d, T(sizeof(T) == 4 ? -104.0 : -746.0));
  return hn::IfThenZeroElse(hn::Lt(x, zero_below), hn::IfThenElse(tiny, y2, y));
}

// exp(x + lo) for x <= 0: see the file comment.
template <bool kLo = true, class D, class V>
HWY_INLINE V exp_nonpos(D d, V x, V lo) {
  const V y = exp_nonpos_normal<kLo>(d, x, lo);
  const auto tiny = hn::Lt(x, exp_tiny_bound(d));
  if (HWY_LIKELY(hn::AllFalse(d, tiny))) return y;
  return exp_nonpos_tiny(d, x, lo, tiny, y);
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
    return exp_nonpos<false>(d, s, hn::Zero(d));
  }
}

// exp_diff on K vectors at once, the same bits vector for vector: the K arguments first, one
// subnormal-result test for all K, then the K exponentials stage by stage (K independent chains
// side by side for the core's FP scheduler, where one vector's chain at a time leaves it waiting).
template <bool kExact, std::size_t K, class D, class V>
HWY_INLINE void exp_diff_k(D d, const V* x, V m, V* out) {
  V s[K], lo[K];
  HWY_UNROLL(8)
  for (std::size_t k = 0; k < K; ++k) {
    s[k] = hn::Sub(x[k], m);
    if constexpr (kExact) {
      const V bb = hn::Sub(s[k], x[k]);
      lo[k] = hn::Sub(hn::Sub(x[k], hn::Sub(s[k], bb)), hn::Add(m, bb));
    } else {
      lo[k] = hn::Zero(d);
    }
  }
  V least = s[0];
  HWY_UNROLL(8)
  for (std::size_t k = 1; k < K; ++k) least = hn::Min(least, s[k]);
  if (HWY_LIKELY(hn::AllFalse(d, hn::Lt(least, exp_tiny_bound(d))))) {
    HWY_UNROLL(8)
    for (std::size_t k = 0; k < K; ++k) out[k] = exp_nonpos_normal<kExact>(d, s[k], lo[k]);
  } else {
    HWY_UNROLL(8)
    for (std::size_t k = 0; k < K; ++k) out[k] = exp_nonpos<kExact>(d, s[k], lo[k]);
  }
}

// exp(x - m) for any x (the argument may be positive): exp_reduced's range handling, TwoSum'd
// argument, +inf above the overflow bound (x - m > 104 in float, > 710 in double).
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

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();

#endif  // XENT_CPU_EXP_INL_H_
