// log1p-inl.h: log1p on [0, 1] for the SIMD binary cross-entropy with logits, where the argument
// is e = exp(-|x|) (softplus(-x) = max(-x, 0) + log1p(e)); for every per-target unit (Highway
// foreach_target; include after hwy/highway.h). Not a general log1p: arguments outside [0, 1]
// give unspecified results (the callers send NaN and infinities to the scalar twin).
//
// Why not Highway's contrib Log1p: it is a general Log (exponent extraction, a division) behind a
// second division for the correction term, built for any argument. On [0, 1] no range reduction is
// needed: log1p(e) = e + e^2 Q(e), with Q a polynomial of degree 8 (float) or 19 (double) fitted
// by the Remez exchange to the relative error of the result (minimax; fit error 5.1e-9 (float),
// 9.5e-18 (double), i.e. under 0.1 ulp), evaluated by Estrin's scheme with FMAs (a short
// dependency chain) but for the last Horner step. No division, no branch, no table. The leading
// term e is exact, so tiny and subnormal e give e exactly (e^2 Q underflows to 0), and e = 0 gives 0.
// Accuracy, measured by tests/kernels/test_bce_tables.cc (Log1pUnitUlpBound) on every ISA against
// log1pl over a dense sweep of [0, 1] and every binade down to the smallest subnormal: at most
// 1.34 ulp (float) and 1.56 ulp (double) with FMA (AVX2), 1.82 and 2.03 on SSE4 (no FMA: each
// MulAdd rounds twice); the worst near e = 1.

#if defined(XENT_CPU_LOG1P_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_CPU_LOG1P_INL_H_
#undef XENT_CPU_LOG1P_INL_H_
#else
#define XENT_CPU_LOG1P_INL_H_
#endif

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// log1p(e) for e in [0, 1]: see the file comment. Q = c0 + e * P(e), P by Estrin's scheme (pairs
// with e, then e^2, e^4, ...; an odd last coefficient carried up a level).
template <class D, class V>
HWY_INLINE V log1p_unit(D d, V e) {
  using T = hn::TFromD<D>;
  const V e2 = hn::Mul(e, e);
  const V e4 = hn::Mul(e2, e2);
  V q;
  if constexpr (sizeof(T) == 4) {
    const V b0 = hn::MulAdd(hn::Set(d, -0.24958588f), e, hn::Set(d, 0.33330512f));
    const V b1 = hn::MulAdd(hn::Set(d, -0.15355398f), e, hn::Set(d, 0.19695401f));
    const V b2 = hn::MulAdd(hn::Set(d, -0.05766447f), e, hn::Set(d, 0.106805585f));
    const V b3 = hn::MulAdd(hn::Set(d, -0.0033184749f), e, hn::Set(d, 0.020204596f));
    const V p = hn::MulAdd(hn::MulAdd(b3, e2, b2), e4, hn::MulAdd(b1, e2, b0));
    q = hn::MulAdd(p, e, hn::Set(d, -0.4999993f));
  } else {
    const V e8 = hn::Mul(e4, e4);
    const V e16 = hn::Mul(e8, e8);
    const V b0 = hn::MulAdd(hn::Set(d, -0.24999999993676375), e, hn::Set(d, 0.3333333333323504));
    const V b1 = hn::MulAdd(hn::Set(d, -0.1666666249839119), e, hn::Set(d, 0.199999997913169));
    const V b2 = hn::MulAdd(hn::Set(d, -0.1249947960035139), e, hn::Set(d, 0.14285658895807604));
    const V b3 = hn::MulAdd(hn::Set(d, -0.09981014578351935), e, hn::Set(d, 0.11107505918862724));
    const V b4 = hn::MulAdd(hn::Set(d, -0.08081208927035664), e, hn::Set(d, 0.09013152541910345));
    const V b5 = hn::MulAdd(hn::Set(d, -0.05750196784887139), e, hn::Set(d, 0.0703553793779362));
    const V b6 = hn::MulAdd(hn::Set(d, -0.0267439368922443), e, hn::Set(d, 0.04230007666807265));
    const V b7 = hn::MulAdd(hn::Set(d, -0.005543101286742804), e, hn::Set(d, 0.013838573996996622));
    const V b8 = hn::MulAdd(hn::Set(d, -0.00029176067546794304), e, hn::Set(d, 0.0015957384992385981));
    const V b9 = hn::Set(d, 2.5329887761684827e-05);
    const V c0 = hn::MulAdd(b1, e2, b0);
    const V c1 = hn::MulAdd(b3, e2, b2);
    const V c2 = hn::MulAdd(b5, e2, b4);
    const V c3 = hn::MulAdd(b7, e2, b6);
    const V c4 = hn::MulAdd(b9, e2, b8);
    const V f0 = hn::MulAdd(hn::MulAdd(c3, e4, c2), e8, hn::MulAdd(c1, e4, c0));
    const V p = hn::MulAdd(c4, e16, f0);
    q = hn::MulAdd(p, e, hn::Set(d, -0.4999999999999946));
  }
  return hn::MulAdd(e2, q, e);
}

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();

#endif  // XENT_CPU_LOG1P_INL_H_
