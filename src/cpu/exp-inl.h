// exp-inl.h: the SIMD kernels' exponential, for every per-target unit (Highway foreach_target;
// include after hwy/highway.h). Not a general math library: exp_nonpos covers the softmax family's
// arguments (x - max <= 0), exp_reduced/exp_diff_any the few places whose argument may be positive.
//
// exp_nonpos(x, lo) = exp(x + lo), for x <= 0 (any such value, -inf and subnormal results
// included) and |lo| <= ulp(x) / 2 (lo is the TwoSum rounding error of the subtraction that made
// x, or 0). NaN propagates; -inf gives +0. Method: n = round(x / ln 2) by the 1.5 * 2^(p-1) trick
// (the low mantissa bits of the rounded sum hold n + bias, so 2^n is one shift of those bits),
// r = x - n ln2 with ln 2 split in two (Cody-Waite), then exp(r) = 1 + r + r^2 P(r) with the
// minimax polynomials of Highway's contrib Exp (degree 7 in float, 12 in double, Estrin's scheme),
// scaled by 2^n. Results below the normal range (x < -87.3 in float, x < -708.4 in double) are
// evaluated as exp(x + 64 ln 2) 2^-64, rounded once into the subnormal grid, as PyTorch's exp keeps
// them; below half the smallest subnormal the result is 0.
// Accuracy, measured by tests/kernels/test_tables.cc (ExpUlpBound) on every ISA against expl over
// a dense sweep of [-104, 0] (float) and [-746, 0] (double), lo = 0: at most 1.01 ulp for
// x >= -87 (float) / x >= -708 (double), the range every row term that matters lies in. Below that,
// the reduced-range path adds the rounding of x + 64 ln 2 (lo is not carried into it): up to 2.1 ulp
// (float) and 38 ulp (double) for the normal results of that band, and 1.8 (float) / 26 (double)
// units of the smallest subnormal for subnormal results. Such terms are below 2^-125 (2^-1021) of
// the row's largest one: they never move a normaliser, only their own tiny outputs.
//
// The polynomial coefficients are Highway's (hwy/contrib/math/math-inl.h, ExpImpl), written out
// here so that xent depends on no Highway internals; the evaluation order is the same.

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

template <bool kLo = true, class D, class V>
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

// exp(x + lo) for x <= 0 whose result is normal (x >= -87 in float, x >= -708 in double); other
// lanes are unspecified (exp_nonpos below fixes them). kLo false: lo is 0 and not added (the same
// bits, one add fewer).
template <bool kLo = true, class D, class V>
HWY_INLINE V exp_nonpos_normal(D d, V x, V lo) {
  using T = hn::TFromD<D>;
  const hn::RebindToSigned<D> di;
  if constexpr (sizeof(T) == 4) {
    const V kMagic = hn::Set(d, 12582912.0f + 127.0f);  // 1.5 * 2^23 + bias
    const V t = hn::MulAdd(x, hn::Set(d, 1.44269504088896341f), kMagic);
    const V qf = hn::Sub(t, kMagic);
    V r = hn::MulAdd(qf, hn::Set(d, -0.693145751953125f), x);
    r = hn::MulAdd(qf, hn::Set(d, -1.428606765330187045e-6f), r);
    if constexpr (kLo) r = hn::Add(r, lo);
    const V scale = hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(di, t)));
    return hn::Mul(hn::Add(exp_poly(d, r), hn::Set(d, 1.0f)), scale);
  } else {
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

// exp(x + lo) for x <= 0: see the file comment.
template <bool kLo, class D, class V>
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
