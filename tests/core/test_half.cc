// test_half.cc: bfloat16 and float16 inputs and outputs for the softmax family, cross-entropy
// (class indices with weight / ignore_index / label smoothing / every reduction, probability
// targets), NLL and binary cross-entropy (with logits and on probabilities), against the
// long-double oracle: each 16-bit result must be the exact result rounded ONCE to the output type
// (within half an ulp of that type, plus a float64-sized slack for xent's double arithmetic) by the
// scalar table, and within one ulp (float32 arithmetic rounded once) by the SIMD tables, on
// every ISA, on ordinary and adversarial rows (magnitudes near the type's max, -inf masks, exact
// ties), with the same bits for 1, 2 and 7 threads. Also the public conversions' rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "reference/reference.h"
#include "xent/xent.h"

namespace xent {
namespace {

using Real = long double;

template <class H> constexpr int kDigits = std::is_same_v<H, bfloat16> ? 8 : 11;
template <class H> constexpr int kMinExp = std::is_same_v<H, bfloat16> ? -126 : -14;  // of the smallest normal
template <class H> const char* hname() { return std::is_same_v<H, bfloat16> ? "bfloat16" : "float16"; }

template <class H> H from_real(Real v) {
  if constexpr (std::is_same_v<H, bfloat16>) return to_bfloat16(static_cast<double>(v));
  else return to_float16(static_cast<double>(v));
}
template <class H> Real to_real(H h) { return static_cast<Real>(to_float(h)); }

// Spacing of H at |v| (the subnormal spacing below the normal range).
template <class H> Real ulp_of(Real v) {
  int e = kMinExp<H> + 1;
  if (v != 0 && std::isfinite(v)) {
    std::frexp(v, &e);
    e = std::max(e, kMinExp<H> + 1);
  }
  return std::ldexp(1.0L, e - kDigits<H>);
}

// Whether the active kernels are a SIMD table. The scalar table computes in double and must round
// the exact result correctly; the SIMD tables (src/cpu/half_hwy.cc) compute in float32 and round
// that once, so their results are within ONE ulp of H (faithful: one of the two H values around the
// exact one), with a float32-sized slack (2^-23 of `scale`) where terms cancel.
bool g_simd = false;

// got == exact rounded once to H: |got - exact| <= ulp / 2 (+ slack for xent's double arithmetic,
// relative to `scale`, the size of the terms the value was computed from); NaN / inf must match.
// On a SIMD table: |got - exact| <= ulp + 2^-23 scale (see g_simd).
template <class H>
::testing::AssertionResult rounded_once(const std::vector<H>& got, const ref::Tensor& exact, const std::vector<Real>& scale,
                                        const std::string& what) {
  if (got.size() != exact.data.size()) return ::testing::AssertionFailure() << what << ": sizes differ";
  std::size_t bad = 0;
  std::string first;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const Real g = to_real(got[i]), r = exact.data[i];
    bool ok;
    if (std::isnan(r) || std::isnan(g)) {
      ok = std::isnan(r) && std::isnan(g);
    } else if (std::isinf(r)) {
      ok = g == r;
    } else {
      const Real rr = to_real(from_real<H>(r));  // the correctly rounded value (overflow -> inf)
      const Real tol = g_simd ? ulp_of<H>(r) + 0x1p-23L * scale[i] : 0.5L * ulp_of<H>(r) + 1e-13L * scale[i];
      if (std::isinf(rr)) ok = g == rr || std::fabs(g - r) <= tol;
      else ok = std::fabs(g - r) <= tol;
    }
    if (!ok && bad++ < 3) {
      char buf[160];
      std::snprintf(buf, sizeof buf, " [%zu] got %.9Lg exact %.12Lg;", i, g, r);
      first += buf;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << got.size() << " not rounded once:" << first;
}

template <class H>
std::vector<H> to_h(const std::vector<Real>& v) {
  std::vector<H> h(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) h[i] = from_real<H>(v[i]);
  return h;
}
// The values as the library sees them (H read exactly), for the oracle.
template <class H>
ref::Tensor exact_of(const std::vector<H>& h, const ref::Shape& s) {
  std::vector<Real> d(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) d[i] = to_real(h[i]);
  return ref::Tensor(s, d);
}
std::vector<Real> scale_like(const ref::Tensor& t, Real s) { return std::vector<Real>(t.data.size(), s); }

// Rows: random, then adversarial ones (near-max magnitudes and ties, -inf masks, equal logits).
// `big` defaults to near the type's max (the softmax family keeps max and sum apart, so any finite
// magnitude works); the losses' gradients take exp(x - lse) with lse in double, exact while
// |x| < 2^40 or so, so their tests use 3e4 (still beyond every ordinary logit, and tied).
template <class H>
std::vector<Real> logits(std::int64_t N, std::int64_t C, std::mt19937_64& rng, bool adversarial, Real big_in = 0) {
  std::uniform_real_distribution<double> u(-6, 6);
  std::vector<Real> x(static_cast<std::size_t>(N * C));
  for (auto& v : x) v = u(rng);
  if (adversarial && N >= 4) {
    const Real big = to_real(from_real<H>(big_in != 0 ? big_in : std::is_same_v<H, bfloat16> ? 3.0e38L : 6.0e4L));
    for (std::int64_t c = 0; c < C; ++c) {
      x[static_cast<std::size_t>(0 * C + c)] = c % 3 == 0 ? big : -big;    // huge, tied maxima
      x[static_cast<std::size_t>(1 * C + c)] = c % 2 ? -INFINITY : u(rng);  // -inf mask
      x[static_cast<std::size_t>(2 * C + c)] = 1.5L;                        // all equal
      x[static_cast<std::size_t>(3 * C + c)] = c == 0 ? big / 4 : u(rng);   // one dominant logit
    }
  }
  return x;
}

class Half : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(set_isa(GetParam()).ok());
    g_simd = GetParam() != "scalar";
  }
  void TearDown() override {
    g_simd = false;
    set_isa("auto").ignore_error();
    set_num_threads(0);
  }
};

template <class H>
void softmax_family(std::int64_t N, std::int64_t C, std::uint64_t seed, bool adversarial) {
  SCOPED_TRACE(std::string(hname<H>()) + " softmax family [" + std::to_string(N) + ", " + std::to_string(C) + "]");
  std::mt19937_64 rng(seed);
  const ref::Shape s = {N, C}, rs = {N};
  const Shape xs{N, C}, xrs{N};
  const std::vector<H> x = to_h<H>(logits<H>(N, C, rng, adversarial));
  const ref::Tensor X = exact_of(x, s);
  std::vector<H> y(x.size()), ly(x.size()), lse(static_cast<std::size_t>(N));
  ASSERT_TRUE(softmax_forward({x.data(), xs}, 1, {y.data(), xs}).ok());
  ASSERT_TRUE(log_softmax_forward({x.data(), xs}, 1, {ly.data(), xs}).ok());
  ASSERT_TRUE(logsumexp_forward({x.data(), xs}, 1, {lse.data(), xrs}).ok());
  EXPECT_TRUE(rounded_once(y, ref::softmax(X, 1), scale_like(X, 1), "softmax"));
  const ref::Tensor LY = ref::log_softmax(X, 1);
  std::vector<Real> sc(LY.data.size());
  for (std::size_t i = 0; i < sc.size(); ++i) sc[i] = std::isfinite(X.data[i]) ? std::fabs(X.data[i]) + 16 : 0;
  EXPECT_TRUE(rounded_once(ly, LY, sc, "log_softmax"));
  const ref::Tensor LSE = ref::logsumexp(X, 1);
  std::vector<Real> lsc(LSE.data.size());
  for (std::size_t i = 0; i < lsc.size(); ++i) lsc[i] = std::fabs(LSE.data[i]) + 16;
  EXPECT_TRUE(rounded_once(lse, LSE, lsc, "logsumexp"));
  // Backward from 16-bit y and dy.
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<Real> dyr(x.size());
  for (auto& v : dyr) v = u(rng);
  const std::vector<H> dy = to_h<H>(dyr), dl = to_h<H>(std::vector<Real>(rs[0], 0.75L));
  std::vector<H> dx(x.size());
  ASSERT_TRUE(softmax_backward({y.data(), xs}, {dy.data(), xs}, 1, {dx.data(), xs}).ok());
  EXPECT_TRUE(rounded_once(dx, ref::softmax_backward(exact_of(y, s), exact_of(dy, s), 1), scale_like(X, 4), "softmax backward"));
  ASSERT_TRUE(log_softmax_backward({ly.data(), xs}, {dy.data(), xs}, 1, {dx.data(), xs}).ok());
  EXPECT_TRUE(rounded_once(dx, ref::log_softmax_backward(exact_of(ly, s), exact_of(dy, s), 1), scale_like(X, 4 * C),
                           "log_softmax backward"));
  ASSERT_TRUE(logsumexp_backward({x.data(), xs}, {lse.data(), xrs}, {dl.data(), xrs}, 1, {dx.data(), xs}).ok());
  EXPECT_TRUE(rounded_once(dx, ref::logsumexp_backward(X, exact_of(lse, rs), exact_of(dl, rs), 1), scale_like(X, 4),
                           "logsumexp backward"));
}

ref::Reduction ref_red(Reduction r) {
  return r == Reduction::kNone ? ref::Reduction::kNone : r == Reduction::kMean ? ref::Reduction::kMean : ref::Reduction::kSum;
}

template <class H>
void cross_entropy(std::int64_t N, std::int64_t C, std::uint64_t seed, bool adversarial) {
  std::mt19937_64 rng(seed);
  const ref::Shape s = {N, C}, rs = {N};
  const Shape xs{N, C}, xrs{N};
  std::vector<Real> xr = logits<H>(N, C, rng, adversarial, 3.0e4L);
  if (adversarial)  // a -inf logit is NaN under smoothing; keep the masks for the plain loss only
    for (auto& v : xr) v = std::isinf(v) ? -30 : v;
  const std::vector<H> x = to_h<H>(xr);
  const ref::Tensor X = exact_of(x, s);
  std::vector<std::int64_t> t(static_cast<std::size_t>(N));
  for (std::int64_t r = 0; r < N; ++r) t[static_cast<std::size_t>(r)] = r % 5 == 4 ? -100 : (r * 7) % C;
  std::uniform_real_distribution<double> uw(0.25, 2);
  std::vector<Real> wr(static_cast<std::size_t>(C));
  for (auto& v : wr) v = uw(rng);
  const std::vector<H> w = to_h<H>(wr);
  std::vector<Real> pr(x.size());
  for (std::int64_t r = 0; r < N; ++r) {
    Real sum = 0;
    for (std::int64_t c = 0; c < C; ++c) sum += pr[static_cast<std::size_t>(r * C + c)] = uw(rng);
    for (std::int64_t c = 0; c < C; ++c) pr[static_cast<std::size_t>(r * C + c)] /= sum;
  }
  const std::vector<H> p = to_h<H>(pr);
  for (Reduction red : {Reduction::kNone, Reduction::kMean, Reduction::kSum}) {
    for (int opt = 0; opt < 4; ++opt) {
      const bool weighted = opt & 1;
      const double eps = (opt & 2) ? 0.1 : 0.0;
      SCOPED_TRACE(std::string(hname<H>()) + " cross-entropy [" + std::to_string(N) + ", " + std::to_string(C) +
                   "] reduction " + reduction_name(red) + (weighted ? " weighted" : "") + (eps != 0 ? " smoothing 0.1" : ""));
      CrossEntropyOptions o;
      if (weighted) o.weight = {w.data(), Shape{C}};
      o.label_smoothing = eps;
      o.reduction = red;
      ref::CrossEntropyOptions ro;
      if (weighted) ro.weight = exact_of(w, {C});
      ro.label_smoothing = eps;
      ro.reduction = ref_red(red);
      const bool none = red == Reduction::kNone;
      const Shape ls = none ? xrs : Shape{};
      std::vector<H> loss(none ? static_cast<std::size_t>(N) : 1), dx(x.size());
      // Class indices, fused.
      ASSERT_TRUE(cross_entropy_fused({x.data(), xs}, {t.data(), xrs}, o, {loss.data(), ls}, {dx.data(), xs}).ok());
      const ref::Targets T{rs, t};
      const ref::Tensor L = ref::cross_entropy(X, T, ro);
      std::vector<Real> lsc(L.data.size(), 64 * 1e5L);
      EXPECT_TRUE(rounded_once(loss, L, lsc, "loss"));
      const ref::Tensor ones = none ? ref::Tensor(rs, std::vector<Real>(static_cast<std::size_t>(N), 1)) : ref::Tensor::scalar(1);
      EXPECT_TRUE(rounded_once(dx, ref::cross_entropy_backward(X, T, ro, ones), scale_like(X, 4), "gradient"));
      // Probability targets (no ignore_index), forward and backward with an upstream gradient.
      std::vector<H> dl(loss.size(), from_real<H>(0.5L));
      ASSERT_TRUE(cross_entropy_forward({x.data(), xs}, {p.data(), xs}, o, {loss.data(), ls}).ok());
      const ref::Tensor P = exact_of(p, s);
      EXPECT_TRUE(rounded_once(loss, ref::cross_entropy(X, P, ro), lsc, "probability-target loss"));
      ASSERT_TRUE(cross_entropy_backward({x.data(), xs}, {p.data(), xs}, o, {dl.data(), ls}, {dx.data(), xs}).ok());
      EXPECT_TRUE(rounded_once(dx, ref::cross_entropy_backward(X, P, ro, exact_of(dl, none ? rs : ref::Shape{})),
                               scale_like(X, 4), "probability-target gradient"));
      if (eps != 0) continue;
      // NLL on the 16-bit log-probabilities.
      std::vector<H> lp(x.size());
      ASSERT_TRUE(log_softmax_forward({x.data(), xs}, 1, {lp.data(), xs}).ok());
      NllOptions no;
      no.weight = o.weight;
      no.reduction = red;
      ref::NllOptions rno;
      rno.weight = ro.weight;
      rno.reduction = ro.reduction;
      ASSERT_TRUE(nll_loss_forward({lp.data(), xs}, {t.data(), xrs}, no, {loss.data(), ls}).ok());
      EXPECT_TRUE(rounded_once(loss, ref::nll_loss(exact_of(lp, s), T, rno), lsc, "nll loss"));
      ASSERT_TRUE(nll_loss_backward({lp.data(), xs}, {t.data(), xrs}, no, {dl.data(), ls}, {dx.data(), xs}).ok());
      EXPECT_TRUE(rounded_once(dx, ref::nll_loss_backward(exact_of(lp, s), T, rno, exact_of(dl, none ? rs : ref::Shape{})),
                               scale_like(X, 4), "nll gradient"));
    }
  }
}

template <class H>
void bce(std::int64_t N, std::int64_t C, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const ref::Shape s = {N, C};
  const Shape xs{N, C};
  std::uniform_real_distribution<double> u(-12, 12), u01(0, 1);
  std::vector<Real> xr(static_cast<std::size_t>(N * C)), tr(xr.size()), pr(xr.size());
  for (std::size_t i = 0; i < xr.size(); ++i) xr[i] = u(rng), tr[i] = u01(rng), pr[i] = u01(rng);
  const std::vector<H> x = to_h<H>(xr), t = to_h<H>(tr), p = to_h<H>(pr);
  std::vector<Real> pwr(static_cast<std::size_t>(C));
  for (auto& v : pwr) v = 0.5 + 2 * u01(rng);
  const std::vector<H> pw = to_h<H>(pwr);
  const ref::Tensor X = exact_of(x, s), Tt = exact_of(t, s), P = exact_of(p, s);
  for (Reduction red : {Reduction::kNone, Reduction::kMean}) {
    for (bool with_pw : {false, true}) {
      SCOPED_TRACE(std::string(hname<H>()) + " bce reduction " + reduction_name(red) + (with_pw ? " pos_weight" : ""));
      BceOptions o;
      o.reduction = red;
      ref::BceOptions ro;
      ro.reduction = ref_red(red);
      if (with_pw) o.pos_weight = {pw.data(), Shape{C}}, ro.pos_weight = exact_of(pw, {C});
      const bool none = red == Reduction::kNone;
      const Shape ls = none ? xs : Shape{};
      std::vector<H> loss(none ? x.size() : 1), dx(x.size()), dl(loss.size(), from_real<H>(0.5L));
      const ref::Tensor dL = exact_of(dl, none ? s : ref::Shape{});
      ASSERT_TRUE(binary_cross_entropy_with_logits_forward({x.data(), xs}, {t.data(), xs}, o, {loss.data(), ls}).ok());
      EXPECT_TRUE(rounded_once(loss, ref::binary_cross_entropy_with_logits(X, Tt, ro), std::vector<Real>(loss.size(), 64), "with-logits loss"));
      ASSERT_TRUE(binary_cross_entropy_with_logits_backward({x.data(), xs}, {t.data(), xs}, o, {dl.data(), ls}, {dx.data(), xs}).ok());
      EXPECT_TRUE(rounded_once(dx, ref::binary_cross_entropy_with_logits_backward(X, Tt, ro, dL), scale_like(X, 8), "with-logits gradient"));
      if (with_pw) continue;
      ASSERT_TRUE(binary_cross_entropy_forward({p.data(), xs}, {t.data(), xs}, o, {loss.data(), ls}).ok());
      EXPECT_TRUE(rounded_once(loss, ref::binary_cross_entropy(P, Tt, ro), std::vector<Real>(loss.size(), 256), "bce loss"));
      ASSERT_TRUE(binary_cross_entropy_backward({p.data(), xs}, {t.data(), xs}, o, {dl.data(), ls}, {dx.data(), xs}).ok());
      const ref::Tensor G = ref::binary_cross_entropy_backward(P, Tt, ro, dL);
      std::vector<Real> gsc(G.data.size());
      for (std::size_t i = 0; i < gsc.size(); ++i) gsc[i] = 8 * std::fabs(G.data[i]);  // float32's few ulps (SIMD)
      EXPECT_TRUE(rounded_once(dx, G, gsc, "bce gradient"));
    }
  }
}

TEST_P(Half, SoftmaxFamilyRoundedOnce) {
  for (std::int64_t C : {1, 3, 16, 33, 100, 1000}) {
    softmax_family<bfloat16>(9, C, 1 + C, C >= 3);
    softmax_family<float16>(9, C, 2 + C, C >= 3);
  }
}

TEST_P(Half, CrossEntropyRoundedOnce) {
  for (std::int64_t C : {3, 17, 100, 1000}) {
    cross_entropy<bfloat16>(10, C, 3 + C, true);
    cross_entropy<float16>(10, C, 4 + C, true);
  }
}

TEST_P(Half, BinaryCrossEntropyRoundedOnce) {
  bce<bfloat16>(7, 33, 5);
  bce<float16>(7, 33, 6);
}

// Same bits for 1, 2 and 7 threads, rows long enough to be split across threads too.
template <class H>
void thread_bits(std::int64_t N, std::int64_t C) {
  SCOPED_TRACE(std::string(hname<H>()) + " threads [" + std::to_string(N) + ", " + std::to_string(C) + "]");
  std::mt19937_64 rng(9);
  const std::vector<H> x = to_h<H>(logits<H>(N, C, rng, false));
  const Shape xs{N, C}, xrs{N};
  std::vector<std::int64_t> t(static_cast<std::size_t>(N));
  for (std::int64_t r = 0; r < N; ++r) t[static_cast<std::size_t>(r)] = (r * 13) % C;
  std::vector<std::uint16_t> ref_bits;
  for (int threads : {1, 2, 7}) {
    set_num_threads(threads);
    std::vector<H> y(x.size()), dx(x.size()), loss(1);
    ASSERT_TRUE(softmax_forward({x.data(), xs}, 1, {y.data(), xs}).ok());
    CrossEntropyOptions o;
    o.label_smoothing = 0.05;
    ASSERT_TRUE(cross_entropy_fused({x.data(), xs}, {t.data(), xrs}, o, {loss.data(), Shape{}}, {dx.data(), xs}).ok());
    std::vector<H> dxp(x.size()), lossp(1);  // without label smoothing (its own short-row kernel)
    ASSERT_TRUE(
        cross_entropy_fused({x.data(), xs}, {t.data(), xrs}, {}, {lossp.data(), Shape{}}, {dxp.data(), xs}).ok());
    std::vector<H> lse(static_cast<std::size_t>(N)), ent(lse.size());  // token statistics (short rows: tiles)
    std::vector<std::int64_t> correct(lse.size());
    ASSERT_TRUE(cross_entropy_token_stats({x.data(), xs}, {t.data(), xrs}, {}, {lse.data(), xrs}, {ent.data(), xrs},
                                          {correct.data(), xrs})
                    .ok());
    std::vector<std::uint16_t> bits;
    for (const auto* v : {&y, &dx, &loss, &dxp, &lossp, &lse, &ent})
      for (const H& h : *v) bits.push_back(h.bits);
    for (std::int64_t c : correct) bits.push_back(static_cast<std::uint16_t>(c + 1));
    if (threads == 1) ref_bits = bits;
    else EXPECT_EQ(bits, ref_bits) << threads << " threads";
  }
}

// Class dimension not last ((N, C, D), the strided kernels): the same bits for 1, 2 and 7 threads,
// which split the D positions of each n differently across threads and vector groups; every op
// with a strided kernel (probability targets, NLL, logsumexp backward, token statistics too).
template <class H>
void thread_bits_strided(std::int64_t N, std::int64_t C, std::int64_t D) {
  SCOPED_TRACE(std::string(hname<H>()) + " strided threads [" + std::to_string(N) + ", " + std::to_string(C) + ", " +
               std::to_string(D) + "]");
  std::mt19937_64 rng(11);
  const std::vector<H> x = to_h<H>(logits<H>(N * D, C, rng, false));  // values only; layout (N, C, D)
  const Shape xs{N, C, D}, ts{N, D}, ls{N, D};
  std::vector<std::int64_t> t(static_cast<std::size_t>(N * D));
  for (std::size_t r = 0; r < t.size(); ++r)
    t[r] = r % 9 == 4 ? -100 : static_cast<std::int64_t>((r * 13) % static_cast<std::size_t>(C));
  std::vector<std::uint16_t> ref_bits;
  for (int threads : {1, 2, 7}) {
    set_num_threads(threads);
    std::vector<H> y(x.size()), ly(x.size()), dx(x.size()), dxs(x.size()), lse(t.size()), loss(t.size()), dy(x.size());
    ASSERT_TRUE(softmax_forward({x.data(), xs}, 1, {y.data(), xs}).ok());
    ASSERT_TRUE(log_softmax_forward({x.data(), xs}, 1, {ly.data(), xs}).ok());
    ASSERT_TRUE(logsumexp_forward({x.data(), xs}, 1, {lse.data(), ls}).ok());
    ASSERT_TRUE(softmax_backward({y.data(), xs}, {x.data(), xs}, 1, {dy.data(), xs}).ok());
    CrossEntropyOptions o;
    o.reduction = Reduction::kNone;
    ASSERT_TRUE(cross_entropy_fused({x.data(), xs}, {t.data(), ts}, o, {loss.data(), ls}, {dx.data(), xs}).ok());
    o.label_smoothing = 0.05;
    ASSERT_TRUE(cross_entropy_fused({x.data(), xs}, {t.data(), ts}, o, {loss.data(), ls}, {dxs.data(), xs}).ok());
    // logsumexp backward, probability targets (the softmax as targets, smoothed), NLL and the
    // token statistics.
    std::vector<H> dlse(x.size()), dxp(x.size()), lossp(t.size()), dxn(x.size()), lossn(1), ent(t.size());
    ASSERT_TRUE(logsumexp_backward({x.data(), xs}, {lse.data(), ls}, {lse.data(), ls}, 1, {dlse.data(), xs}).ok());
    ASSERT_TRUE(cross_entropy_fused({x.data(), xs}, {y.data(), xs}, o, {lossp.data(), ls}, {dxp.data(), xs}).ok());
    NllOptions no;
    ASSERT_TRUE(nll_loss_forward({ly.data(), xs}, {t.data(), ts}, no, {lossn.data(), Shape{}}).ok());
    ASSERT_TRUE(nll_loss_backward({ly.data(), xs}, {t.data(), ts}, no, {lossn.data(), Shape{}}, {dxn.data(), xs}).ok());
    std::vector<H> lse2(t.size());
    std::vector<std::int64_t> correct(t.size());
    ASSERT_TRUE(cross_entropy_token_stats({x.data(), xs}, {t.data(), ts}, {}, {lse2.data(), ls}, {ent.data(), ls},
                                          {correct.data(), ls})
                    .ok());
    std::vector<std::uint16_t> bits;
    for (const auto* v : {&y, &ly, &lse, &dy, &dx, &dxs, &loss, &dlse, &dxp, &lossp, &dxn, &lossn, &lse2, &ent})
      for (const H& h : *v) bits.push_back(h.bits);
    for (std::int64_t c : correct) bits.push_back(static_cast<std::uint16_t>(c + 1));
    if (threads == 1) ref_bits = bits;
    else EXPECT_EQ(bits, ref_bits) << threads << " threads";
  }
}

TEST_P(Half, SameBitsFor1_2_7Threads) {
  thread_bits<bfloat16>(3000, 100);
  thread_bits<bfloat16>(3001, 10);  // short rows: across-rows tiles, a partial last tile
  thread_bits<float16>(3001, 10);
  thread_bits_strided<bfloat16>(3, 10, 1001);  // class dim not last
  thread_bits_strided<float16>(2, 40, 333);
  thread_bits<float16>(4, 70000);
  thread_bits<bfloat16>(4, 70000);
}

INSTANTIATE_TEST_SUITE_P(Isa, Half, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The public conversions round once to nearest even, from double (not through float first).
TEST(HalfConversions, RoundOnceToNearestEven) {
  // bfloat16: 1 + 2^-8 is a tie (-> 1), a hair above it rounds up; via float it would tie to 1.
  EXPECT_EQ(to_bfloat16(1.0 + 0x1p-8).bits, 0x3F80);
  EXPECT_EQ(to_bfloat16(1.0 + 0x1p-8 + 0x1p-40).bits, 0x3F81);
  EXPECT_EQ(to_bfloat16(1.0 + 3 * 0x1p-8).bits, 0x3F82);  // tie to even, upwards
  // A hair below a tie: float would round onto the tie (then to even, 0x3F82); once, it is 0x3F81.
  EXPECT_EQ(to_bfloat16(1.0 + 3 * 0x1p-8 - 0x1p-40).bits, 0x3F81);
  EXPECT_EQ(to_bfloat16(-(1.0 + 3 * 0x1p-8 - 0x1p-40)).bits, 0xBF81);
  EXPECT_EQ(to_float16(1.0 + 3 * 0x1p-11 - 0x1p-40).bits, 0x3C01);
  EXPECT_EQ(to_float16(1.0 + 0x1p-11 + 0x1p-40).bits, 0x3C01);
  EXPECT_EQ(to_float16(1.0 + 0x1p-11).bits, 0x3C00);
  EXPECT_EQ(to_float16(65520.0).bits, 0x7C00);       // rounds to inf
  EXPECT_EQ(to_float16(65519.99).bits, 0x7BFF);
  EXPECT_EQ(to_float16(0x1p-25 + 0x1p-40).bits, 0x0001);  // above half the smallest subnormal
  EXPECT_EQ(to_float16(0x1p-25).bits, 0x0000);            // tie to even (zero)
  EXPECT_TRUE(std::isnan(to_float(to_bfloat16(NAN))));
  EXPECT_TRUE(std::isnan(to_float(to_float16(NAN))));
  EXPECT_EQ(to_bfloat16(-3.39e38).bits, 0xFF7F);  // the largest finite bfloat16 (3.3895e38)
  EXPECT_EQ(to_bfloat16(3.4e38).bits, 0x7F80);    // past max + half an ulp: inf
  for (std::uint32_t b = 0; b < 0x10000; ++b) {  // every value widens and narrows back exactly
    const float f = to_float(bfloat16{static_cast<std::uint16_t>(b)});
    if (!std::isnan(f)) {
      ASSERT_EQ(to_bfloat16(f).bits, b);
    }
    const float g = to_float(float16{static_cast<std::uint16_t>(b)});
    if (!std::isnan(g)) {
      ASSERT_EQ(to_float16(g).bits, b);
    }
  }
}

}  // namespace
}  // namespace xent
