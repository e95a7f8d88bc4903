// test_kernels.cc: every SIMD kernel set this CPU supports against the scalar set, through the
// public API, and bitwise thread-count determinism.
//
// The scalar set is the semantics twin (kernels_scalar.cc); the long-double oracle tests live in
// tests/core. Here the shapes aim at the SIMD code's own paths: rows shorter than a vector (the
// across-rows tiles), tails of every width, rows spanning several pass-1 chunks (the online max
// rescale), rows long enough for streamed stores, misaligned pointers, in-place gradients, -inf
// masks, and rows with NaN, +inf or only -inf (which must give exactly what the scalar set gives).
// Tolerance: |simd - scalar| <= 16 ulp(T) * scale + 4 * min_normal(T), where scale is the size of
// the terms the value is computed from (so cancellation is not mistaken for error); NaN must meet
// NaN and an infinity the same infinity.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu/tuning.h"
#include "simd_check.h"
#include "xent/xent.h"

namespace xent {
namespace {

using namespace simd_check;  // NOLINT: the shared checks

// Row data of every kind the kernels special-case.
enum class Fill { kUniform, kWide, kOffset, kRamp, kMasked };

template <class T>
std::vector<T> make_rows(std::int64_t N, std::int64_t C, Fill fill, std::uint64_t seed, bool specials, std::size_t at = 0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> x(static_cast<std::size_t>(N * C));
  for (std::int64_t r = 0; r < N; ++r) {
    for (std::int64_t c = 0; c < C; ++c) {
      double v = u(rng);
      switch (fill) {
        case Fill::kUniform: v *= 5; break;
        case Fill::kWide: v *= 100; break;
        case Fill::kOffset: v = 1000 + 5 * v; break;
        case Fill::kRamp: v = (r % 2 == 0 ? 1.0 : -1.0) * 30.0 * static_cast<double>(c) / static_cast<double>(C) + 0.1 * v; break;
        case Fill::kMasked: v = u(rng) < -0.4 ? -kInfD : 4 * v; break;
      }
      x[static_cast<std::size_t>(r * C + c)] = static_cast<T>(v);
    }
  }
  // Special rows at at + 1, 2, 3 (at = 0: in the first tile; the short-row tests also put them in a
  // later full tile, whose register transposes then give way to the scalar twin row by row).
  if (specials && static_cast<std::size_t>(N) >= at + 5) {
    const std::size_t C_ = static_cast<std::size_t>(C);
    for (std::size_t c = 0; c < C_; ++c) x[(at + 1) * C_ + c] = static_cast<T>(-kInfD);              // all -inf
    x[(at + 2) * C_ + C_ / 2] = std::numeric_limits<T>::quiet_NaN();                                 // one NaN
    x[(at + 3) * C_ + (C_ > 1 ? C_ - 1 : 0)] = static_cast<T>(kInfD);                                // one +inf
  }
  return x;
}

// Row lengths on both sides of every cost-model threshold of cpu/tuning.h, for both element sizes
// (so each scheme, and each switch between schemes, runs on every ISA whatever the constants are),
// plus short lengths for every tail width: C <= kSmallC takes the across-rows tiles; rows of at most
// kOneExpRowBytes the one-exp scheme; rows of kChunkBytes or more several pass-1 chunks (the online
// max rescale); rows of kStreamRowBytes or more streamed stores.
const std::vector<std::int64_t>& row_lengths() {
  static const std::vector<std::int64_t> v = [] {
    using namespace cpu::tuning;  // NOLINT
    std::vector<std::int64_t> r = {1, 2, 3, 5, 8, 10, 15, 16, 17, 63, 64, 65, 100, 1000, 20000};
    auto around = [&](std::size_t n) {
      for (std::size_t k : {n - 1, n, n + 1}) r.push_back(static_cast<std::int64_t>(k));
    };
    around(kSmallC);
    for (std::size_t bytes : {sizeof(float), sizeof(double)}) {
      around(kChunkBytes / bytes);
      around(kOneExpRowBytes / bytes);
      around(kStreamRowBytes / bytes);
    }
    std::sort(r.begin(), r.end());
    r.erase(std::unique(r.begin(), r.end()), r.end());
    return r;
  }();
  return v;
}

class SimdVsScalar : public IsaVsScalar {};

template <class T>
void softmax_family_case(SimdVsScalar* t, std::int64_t N, std::int64_t C, Fill fill, bool specials, std::size_t offset,
                         std::size_t at = 0) {
  SCOPED_TRACE(type_name<T>() + " softmax family [" + std::to_string(N) + ", " + std::to_string(C) + "] fill " +
               std::to_string(static_cast<int>(fill)) + (specials ? " with special rows" : "") + " offset " +
               std::to_string(offset));
  const std::vector<T> x0 = make_rows<T>(N, C, fill, static_cast<std::uint64_t>(N * 131 + C), specials, at);
  const std::size_t n = x0.size();
  std::vector<T> xs(n + offset);  // offset shifts every pointer off its natural alignment
  std::copy(x0.begin(), x0.end(), xs.begin() + static_cast<std::ptrdiff_t>(offset));
  const T* x = xs.data() + offset;
  const Shape sh{N, C};
  std::vector<T> dy = make_rows<T>(N, C, Fill::kUniform, 7, false);
  std::vector<T> dl(static_cast<std::size_t>(N), T(0.75));
  // out[k]: k = 0 SIMD, 1 scalar; entries: softmax, log_softmax, softmax bwd, log_softmax bwd,
  // logsumexp bwd. Backward passes of both sets read the scalar forward outputs.
  std::vector<T> out[2][5], lse[2];
  for (int k : {1, 0}) {
    ASSERT_TRUE(set_isa(k == 0 ? t->GetParam() : "scalar").ok());
    for (auto& v : out[k]) v.assign(n + offset, T(0));
    lse[k].assign(static_cast<std::size_t>(N), T(0));
    ASSERT_TRUE(softmax_forward({x, sh}, 1, {out[k][0].data() + offset, sh}).ok());
    ASSERT_TRUE(log_softmax_forward({x, sh}, 1, {out[k][1].data() + offset, sh}).ok());
    ASSERT_TRUE(logsumexp_forward({x, sh}, 1, {lse[k].data(), Shape{N}}).ok());
    const T* y = out[1][0].data() + offset;
    const T* ly = out[1][1].data() + offset;
    ASSERT_TRUE(softmax_backward({y, sh}, {dy.data(), sh}, 1, {out[k][2].data() + offset, sh}).ok());
    ASSERT_TRUE(log_softmax_backward({ly, sh}, {dy.data(), sh}, 1, {out[k][3].data() + offset, sh}).ok());
    ASSERT_TRUE(logsumexp_backward({x, sh}, {lse[1].data(), Shape{N}}, {dl.data(), Shape{N}}, 1,
                                   {out[k][4].data() + offset, sh})
                    .ok());
    if (k == 0) {  // in place (y is x): the same bits as out of place
      std::vector<T> inplace = xs;
      ASSERT_TRUE(softmax_forward({inplace.data() + offset, sh}, 1, {inplace.data() + offset, sh}).ok());
      EXPECT_TRUE(same_bits(inplace, out[0][0])) << "in-place softmax_forward";
      inplace = xs;
      ASSERT_TRUE(log_softmax_forward({inplace.data() + offset, sh}, 1, {inplace.data() + offset, sh}).ok());
      EXPECT_TRUE(same_bits(inplace, out[0][1])) << "in-place log_softmax_forward";
    }
  }
  auto strip = [&](const std::vector<T>& v) { return std::vector<T>(v.begin() + static_cast<std::ptrdiff_t>(offset), v.end()); };
  std::vector<double> sc(n), sc_log(n), sc_sbwd(n), sc_lbwd(n), sc_lse(static_cast<std::size_t>(N));
  const std::size_t Cs = static_cast<std::size_t>(C);
  std::vector<double> range(static_cast<std::size_t>(N));  // finite max - min: exp(x - m) carries u * range
  for (std::size_t r = 0; r < range.size(); ++r) range[r] = row_range(x0.data() + r * Cs, Cs) + row_absmax(x0.data() + r * Cs, Cs);
  for (std::size_t r = 0; r < static_cast<std::size_t>(N); ++r) {
    double dot = 0, sum = 0;
    for (std::size_t c = 0; c < Cs; ++c) {
      const std::size_t i = r * Cs + c;
      dot += std::fabs(static_cast<double>(out[1][0][i + offset]) * static_cast<double>(dy[i]));
      sum += std::fabs(static_cast<double>(dy[i]));
    }
    for (std::size_t c = 0; c < Cs; ++c) {
      const std::size_t i = r * Cs + c;
      const double xv = x0[i], ys = out[1][0][i + offset], ls = out[1][1][i + offset];
      sc[i] = std::fabs(ys) * (1 + range[r]);
      // log S is a sum of C exps added in another order by each table: they differ by ~sqrt(C) u.
      sc_log[i] = std::fabs(xv) + std::fabs(xv - ls) + std::sqrt(static_cast<double>(Cs));
      sc_sbwd[i] = std::fabs(ys) * (std::fabs(static_cast<double>(dy[i])) + dot);
      sc_lbwd[i] = std::fabs(static_cast<double>(dy[i])) + std::exp(ls) * sum;
    }
    sc_lse[r] = std::fabs(static_cast<double>(lse[1][r])) + 1;
  }
  std::vector<double> sc_lse_bwd(n);
  for (std::size_t i = 0; i < n; ++i)
    sc_lse_bwd[i] = std::fabs(static_cast<double>(out[1][4][i + offset])) * (1 + range[i / Cs]);
  EXPECT_TRUE(close(strip(out[0][0]), strip(out[1][0]), sc)) << "softmax_forward";
  EXPECT_TRUE(close(strip(out[0][1]), strip(out[1][1]), sc_log)) << "log_softmax_forward";
  EXPECT_TRUE(close(lse[0], lse[1], sc_lse)) << "logsumexp_forward";
  EXPECT_TRUE(close(strip(out[0][2]), strip(out[1][2]), sc_sbwd)) << "softmax_backward";
  EXPECT_TRUE(close(strip(out[0][3]), strip(out[1][3]), sc_lbwd)) << "log_softmax_backward";
  EXPECT_TRUE(close(strip(out[0][4]), strip(out[1][4]), sc_lse_bwd)) << "logsumexp_backward";
  ASSERT_TRUE(set_isa(t->GetParam()).ok());
}

TEST_P(SimdVsScalar, SoftmaxFamily) {
  for (std::int64_t C : row_lengths()) {
    for (Fill f : {Fill::kUniform, Fill::kWide, Fill::kOffset, Fill::kRamp, Fill::kMasked}) {
      const std::int64_t N = C <= 64 ? 37 : 5;
      softmax_family_case<float>(this, N, C, f, f == Fill::kUniform, 0);
      softmax_family_case<double>(this, N, C, f, f == Fill::kUniform, 0);
    }
    softmax_family_case<float>(this, 5, C, Fill::kUniform, true, 1);
    softmax_family_case<double>(this, 5, C, Fill::kUniform, true, 1);
  }
}

struct CeOpts {
  bool weight = false;
  double eps = 0;
  bool ignore = false;  // some targets equal ignore_index
  std::int64_t ignore_index = -100;
  bool cyclic = false;  // targets r % C (every column) instead of random ones
};

template <class T, class I>
void cross_entropy_case(SimdVsScalar* t, std::int64_t N, std::int64_t C, Fill fill, bool specials, CeOpts co,
                        std::size_t at = 0) {
  SCOPED_TRACE(type_name<T>() + " cross_entropy [" + std::to_string(N) + ", " + std::to_string(C) + "] fill " +
               std::to_string(static_cast<int>(fill)) + (specials ? " with special rows" : "") + " weight " +
               std::to_string(co.weight) + " eps " + std::to_string(co.eps) + " ignore " + std::to_string(co.ignore) +
               " index bytes " + std::to_string(sizeof(I)));
  std::vector<T> x = make_rows<T>(N, C, fill, static_cast<std::uint64_t>(N * 17 + C), specials, at);
  std::mt19937_64 rng(static_cast<std::uint64_t>(C));
  std::vector<I> tgt(static_cast<std::size_t>(N));
  for (std::size_t r = 0; r < tgt.size(); ++r)
    tgt[r] = static_cast<I>(co.cyclic ? r % static_cast<std::uint64_t>(C) : rng() % static_cast<std::uint64_t>(C));
  const bool fits = static_cast<std::int64_t>(static_cast<I>(co.ignore_index)) == co.ignore_index;
  if (co.ignore && fits)
    for (std::size_t r = 0; r < tgt.size(); r += 3) tgt[r] = static_cast<I>(co.ignore_index);
  std::vector<T> w(static_cast<std::size_t>(C));
  double wmax = 1, W = static_cast<double>(C);
  if (co.weight) {
    W = 0;
    for (auto& v : w) {
      v = static_cast<T>(0.25 + static_cast<double>(rng() % 1000) / 400.0);
      W += v;
      wmax = std::max(wmax, static_cast<double>(v));
    }
  }
  std::vector<T> dloss(static_cast<std::size_t>(N));
  for (auto& v : dloss) v = static_cast<T>(0.5 + static_cast<double>(rng() % 100) / 50.0);
  CrossEntropyOptions o;
  if (co.weight) o.weight = ConstTensorView(w.data(), Shape{C});
  o.label_smoothing = co.eps;
  o.ignore_index = co.ignore_index;
  o.reduction = Reduction::kNone;
  const Shape sh{N, C}, rs{N};
  const ConstTensorView tv(tgt.data(), rs);
  std::vector<T> loss[2], dx[2], dxf[2], lossf[2], inplace(x.size());
  t->both([&](bool simd) {
    const int k = simd ? 0 : 1;
    loss[k].assign(tgt.size(), T(0));
    dx[k].assign(x.size(), T(0));
    dxf[k].assign(x.size(), T(0));
    lossf[k].assign(tgt.size(), T(0));
    ASSERT_TRUE(cross_entropy_forward({x.data(), sh}, tv, o, {loss[k].data(), rs}).ok());
    ASSERT_TRUE(cross_entropy_backward({x.data(), sh}, tv, o, {dloss.data(), rs}, {dx[k].data(), sh}).ok());
    ASSERT_TRUE(cross_entropy_fused({x.data(), sh}, tv, o, {lossf[k].data(), rs}, {dxf[k].data(), sh}).ok());
    if (simd) {  // in place: dinput aliases input; must equal the out-of-place result bit for bit
      inplace = x;
      std::vector<T> l(tgt.size());
      ASSERT_TRUE(cross_entropy_fused({inplace.data(), sh}, tv, o, {l.data(), rs}, {inplace.data(), sh}).ok());
      EXPECT_TRUE(same_bits(inplace, dxf[0])) << "in-place fused gradient";
      EXPECT_TRUE(same_bits(l, lossf[0])) << "in-place fused loss";
    }
  });
  const std::size_t Cs = static_cast<std::size_t>(C);
  std::vector<double> sl(tgt.size()), sd(x.size()), sdf(x.size());
  for (std::size_t r = 0; r < tgt.size(); ++r) {
    double xmax = 0;
    for (std::size_t c = 0; c < Cs; ++c) {
      const double v = x[r * Cs + c];
      if (std::isfinite(v)) xmax = std::max(xmax, std::fabs(v));
    }
    const double rg = 1 + row_range(x.data() + r * Cs, Cs) + row_absmax(x.data() + r * Cs, Cs);
    sl[r] = std::fabs(static_cast<double>(loss[1][r])) + wmax * (2 * xmax + 1) * (1 + co.eps * W);
    for (std::size_t c = 0; c < Cs; ++c) {
      const std::size_t i = r * Cs + c;
      const double extra = wmax * ((static_cast<std::int64_t>(c) == static_cast<std::int64_t>(tgt[r]) ? 1.0 : 0.0) +
                                   co.eps * (1 + W) / static_cast<double>(C));
      sd[i] = (std::fabs(static_cast<double>(dx[1][i])) + std::fabs(static_cast<double>(dloss[r])) * extra) * rg;
      sdf[i] = (std::fabs(static_cast<double>(dxf[1][i])) + extra) * rg;
    }
  }
  EXPECT_TRUE(close(loss[0], loss[1], sl)) << "cross_entropy_forward";
  EXPECT_TRUE(close(dx[0], dx[1], sd)) << "cross_entropy_backward";
  EXPECT_TRUE(close(lossf[0], lossf[1], sl)) << "cross_entropy_fused loss";
  EXPECT_TRUE(close(dxf[0], dxf[1], sdf)) << "cross_entropy_fused gradient";
}

TEST_P(SimdVsScalar, CrossEntropy) {
  for (std::int64_t C : row_lengths()) {
    const std::int64_t N = C <= 64 ? 37 : 5;
    for (Fill f : {Fill::kUniform, Fill::kWide, Fill::kRamp, Fill::kMasked}) {
      cross_entropy_case<float, std::int64_t>(this, N, C, f, f == Fill::kUniform, {});
      cross_entropy_case<double, std::int32_t>(this, N, C, f, f == Fill::kUniform, {});
    }
    for (CeOpts co : {CeOpts{true, 0, true}, CeOpts{false, 0.1, false}, CeOpts{true, 0.2, true}, CeOpts{true, 1.0, false}}) {
      cross_entropy_case<float, std::int32_t>(this, N, C, Fill::kUniform, true, co);
      cross_entropy_case<double, std::int64_t>(this, N, C, Fill::kOffset, false, co);
    }
    // Special rows at 2, 3, 4: the NaN row (3) has an ignored target, so its gradient is NaN only
    // if the NaN is seen before the zero fill; the +inf row (4) has label smoothing.
    cross_entropy_case<float, std::int64_t>(this, 7, C, Fill::kUniform, true, CeOpts{false, 0, true}, 1);
    cross_entropy_case<double, std::int32_t>(this, 7, C, Fill::kMasked, true, CeOpts{true, 0.1, true}, 1);
  }
}

// Probability targets: q = t (1 - eps) + eps / C, loss = -sum_c w[c] q[c] (x[c] - lse),
// dx = g (p[c] Q - w[c] q[c]) with Q = sum_c w[c] q[c].
struct ProbOpts {
  bool weight = false;
  double eps = 0;
};

template <class T>
void prob_case(SimdVsScalar* t, std::int64_t N, std::int64_t C, Fill fill, bool specials, ProbOpts po,
               std::size_t offset = 0) {
  SCOPED_TRACE(type_name<T>() + " cross_entropy (probabilities) [" + std::to_string(N) + ", " + std::to_string(C) +
               "] fill " + std::to_string(static_cast<int>(fill)) + (specials ? " with special rows" : "") + " weight " +
               std::to_string(po.weight) + " eps " + std::to_string(po.eps) + " offset " + std::to_string(offset));
  const std::vector<T> x0 = make_rows<T>(N, C, fill, static_cast<std::uint64_t>(N * 29 + C), specials);
  const std::size_t n = x0.size(), Ns = static_cast<std::size_t>(N), Cs = static_cast<std::size_t>(C);
  const std::vector<T> tg0 = make_prob_targets(x0, Ns, Cs, static_cast<std::uint64_t>(C * 3 + 1));
  // offset shifts every pointer (x, target, weight, dloss, loss, dx) off its natural alignment.
  auto shifted = [&](const std::vector<T>& v) {
    std::vector<T> s(v.size() + offset, T(0));
    std::copy(v.begin(), v.end(), s.begin() + static_cast<std::ptrdiff_t>(offset));
    return s;
  };
  const std::vector<T> xs = shifted(x0), ts = shifted(tg0);
  std::mt19937_64 rng(static_cast<std::uint64_t>(C * 7 + N));
  std::vector<T> w0(Cs, T(1));
  if (po.weight)
    for (auto& v : w0) v = static_cast<T>(0.25 + static_cast<double>(rng() % 1000) / 400.0);
  std::vector<T> dl0(Ns);
  for (auto& v : dl0) v = static_cast<T>(0.5 + static_cast<double>(rng() % 100) / 50.0);
  const std::vector<T> ws = shifted(w0), dls = shifted(dl0);
  CrossEntropyOptions o;
  if (po.weight) o.weight = ConstTensorView(ws.data() + offset, Shape{C});
  o.label_smoothing = po.eps;
  o.reduction = Reduction::kNone;
  const Shape sh{N, C}, rs{N};
  const T* x = xs.data() + offset;
  const ConstTensorView tv(ts.data() + offset, sh);
  const ConstTensorView dlv(dls.data() + offset, rs);
  std::vector<T> loss[2], dx[2], dxf[2], lossf[2];
  t->both([&](bool simd) {
    const int k = simd ? 0 : 1;
    loss[k].assign(Ns + offset, T(-7));
    dx[k].assign(n + offset, T(-7));
    dxf[k].assign(n + offset, T(-7));
    lossf[k].assign(Ns + offset, T(-7));
    ASSERT_TRUE(cross_entropy_forward({x, sh}, tv, o, {loss[k].data() + offset, rs}).ok());
    ASSERT_TRUE(cross_entropy_backward({x, sh}, tv, o, dlv, {dx[k].data() + offset, sh}).ok());
    ASSERT_TRUE(cross_entropy_fused({x, sh}, tv, o, {lossf[k].data() + offset, rs}, {dxf[k].data() + offset, sh}).ok());
    if (simd) {  // in place: dinput aliases input; must equal the out-of-place result bit for bit
      std::vector<T> inplace = xs, l(Ns + offset, T(-7));
      ASSERT_TRUE(cross_entropy_fused({inplace.data() + offset, sh}, tv, o, {l.data() + offset, rs},
                                      {inplace.data() + offset, sh})
                      .ok());
      std::copy(dxf[0].begin(), dxf[0].begin() + static_cast<std::ptrdiff_t>(offset), inplace.begin());  // padding
      EXPECT_TRUE(same_bits(inplace, dxf[0])) << "in-place fused gradient (probabilities)";
      EXPECT_TRUE(same_bits(l, lossf[0])) << "in-place fused loss (probabilities)";
    }
  });
  auto strip = [&](const std::vector<T>& v) { return std::vector<T>(v.begin() + static_cast<std::ptrdiff_t>(offset), v.end()); };
  for (int k = 0; k < 2; ++k) {
    loss[k] = strip(loss[k]);
    dx[k] = strip(dx[k]);
    dxf[k] = strip(dxf[k]);
    lossf[k] = strip(lossf[k]);
  }
  // Scales: simd_check.h prob_target_scales.
  const ProbScales ps = prob_target_scales(x0, tg0, w0, dl0, Ns, Cs, po.eps, loss[1], dx[1], dxf[1]);
  const std::vector<double>&sl = ps.loss, &sd = ps.grad, &sdf = ps.fused_grad;
  for (const auto* v : {&sl, &sd, &sdf})  // a NaN scale would fail equal finite values
    EXPECT_TRUE(std::none_of(v->begin(), v->end(), [](double e) { return std::isnan(e); })) << "NaN tolerance scale";
  EXPECT_TRUE(close(loss[0], loss[1], sl)) << "cross_entropy_forward (probabilities)";
  EXPECT_TRUE(close(dx[0], dx[1], sd)) << "cross_entropy_backward (probabilities)";
  EXPECT_TRUE(close(lossf[0], lossf[1], sl)) << "cross_entropy_fused loss (probabilities)";
  EXPECT_TRUE(close(dxf[0], dxf[1], sdf)) << "cross_entropy_fused gradient (probabilities)";
  // Fused and separate passes of one table agree to the same tolerance (the fused loss and the
  // gradient of sum(loss) are those of forward and of backward with dloss = 1).
  EXPECT_TRUE(close(lossf[0], loss[0], sl)) << "fused loss vs forward (probabilities), vector table";
}

TEST_P(SimdVsScalar, ProbabilityTargets) {
  for (std::int64_t C : row_lengths()) {
    const std::int64_t N = C <= 64 ? 37 : 5;
    for (Fill f : {Fill::kUniform, Fill::kWide, Fill::kOffset, Fill::kRamp, Fill::kMasked}) {
      for (ProbOpts po : {ProbOpts{false, 0}, ProbOpts{true, 0}, ProbOpts{false, 0.1}, ProbOpts{true, 0.1},
                          ProbOpts{false, 1.0}, ProbOpts{true, 1.0}}) {
        const bool specials = f == Fill::kUniform || f == Fill::kMasked;
        prob_case<float>(this, N, C, f, specials, po);
        prob_case<double>(this, N, C, f, specials, po);
      }
    }
    // Misaligned pointers (offset 1) with special rows.
    prob_case<float>(this, 7, C, Fill::kMasked, true, ProbOpts{true, 0.1}, 1);
    prob_case<double>(this, 7, C, Fill::kMasked, true, ProbOpts{true, 0}, 1);
    prob_case<float>(this, 7, C, Fill::kUniform, true, ProbOpts{false, 0}, 1);
  }
}

// Short rows, several full tiles (16 float or 8 double rows on AVX-512) and a partial one: rows of
// one vector or less take the register transposes, longer ones the scalar copies; special rows sit
// in a full tile after the first, and in the partial tile.
TEST_P(SimdVsScalar, ShortRowTiles) {
  for (std::int64_t C = 1; C <= 33; ++C) {
    for (std::size_t at : {std::size_t{16}, std::size_t{44}}) {
      const std::int64_t N = 49;
      softmax_family_case<float>(this, N, C, Fill::kMasked, true, 0, at);
      softmax_family_case<double>(this, N, C, Fill::kRamp, true, 0, at);
      cross_entropy_case<float, std::int64_t>(this, N, C, Fill::kMasked, true, {}, at);
      cross_entropy_case<double, std::int32_t>(this, N, C, Fill::kUniform, true, {}, at);
      cross_entropy_case<float, std::int32_t>(this, N, C, Fill::kUniform, true, CeOpts{true, 0, true}, at);
      cross_entropy_case<double, std::int64_t>(this, N, C, Fill::kWide, true, CeOpts{true, 0.1, true}, at);
    }
  }
}

// Full tiles read their targets as one vector: every column as a target, both index widths,
// ignore_index below the classes, equal to a class (then those targets are ignored), and outside
// the int32 range (int32 targets can never equal it).
TEST_P(SimdVsScalar, TileTargets) {
  for (std::int64_t C : {1, 2, 3, 10, 15, 16, 17, 32}) {
    for (std::int64_t ign : {std::int64_t{-100}, std::int64_t{0}, C - 1, std::int64_t{1} << 40, -(std::int64_t{1} << 40)}) {
      const std::int64_t N = 69;  // four full float tiles, then a partial one
      const CeOpts plain{false, 0, true, ign, true}, weighted{true, 0, true, ign, true};
      cross_entropy_case<float, std::int64_t>(this, N, C, Fill::kUniform, false, plain);
      cross_entropy_case<float, std::int32_t>(this, N, C, Fill::kUniform, false, plain);
      cross_entropy_case<double, std::int64_t>(this, N, C, Fill::kUniform, false, weighted);
      cross_entropy_case<double, std::int32_t>(this, N, C, Fill::kMasked, false, plain);
      cross_entropy_case<float, std::int64_t>(this, N, C, Fill::kRamp, false, weighted);
    }
  }
}

// p[target] -> 1 (the target's logit far above the rest): the gradient's target entry
// p[t] - 1 = -(sum of the other exps) / S is tiny and must keep its relative accuracy (no
// cancellation in 1 - p[t]). Oracle: long double sums on the row. (The scalar twin, like PyTorch,
// forms exp(x[t] - lse) - 1 and does not meet this bound; the short-row SIMD path does.)
template <class T>
void near_one_case(std::int64_t C, double margin) {
  SCOPED_TRACE(type_name<T>() + " p[t] near 1, C " + std::to_string(C) + " margin " + fmt(margin));
  const std::int64_t N = 37;
  std::mt19937_64 rng(static_cast<std::uint64_t>(C * 31 + static_cast<std::int64_t>(margin)));
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> x(static_cast<std::size_t>(N * C));
  std::vector<std::int64_t> tgt(static_cast<std::size_t>(N));
  for (std::int64_t r = 0; r < N; ++r) {
    tgt[static_cast<std::size_t>(r)] = r % C;
    for (std::int64_t c = 0; c < C; ++c)
      x[static_cast<std::size_t>(r * C + c)] = static_cast<T>(u(rng) + (c == r % C ? margin : 0.0));
  }
  CrossEntropyOptions o;
  o.reduction = Reduction::kNone;
  const Shape sh{N, C}, rs{N};
  std::vector<T> loss(static_cast<std::size_t>(N)), dx(x.size());
  ASSERT_TRUE(cross_entropy_fused({x.data(), sh}, {tgt.data(), rs}, o, {loss.data(), rs}, {dx.data(), sh}).ok());
  std::size_t bad = 0;
  std::string first;
  for (std::int64_t r = 0; r < N; ++r) {
    const std::size_t t = static_cast<std::size_t>(r * C + r % C);
    long double others = 0, m = x[t];
    for (std::int64_t c = 0; c < C; ++c)
      if (c != r % C) others += std::exp(static_cast<long double>(x[static_cast<std::size_t>(r * C + c)]) - m);
    const double want = static_cast<double>(-others / (1 + others));
    const double got = dx[t];
    if (!(std::fabs(got - want) <= 8 * kUlp<T> * std::fabs(want) + kTiny<T>) && bad++ < 3)
      first += " row " + std::to_string(r) + ": " + fmt(got) + " want " + fmt(want) + ";";
  }
  EXPECT_EQ(bad, 0u) << first;
}

TEST_P(SimdVsScalar, TargetProbabilityNearOne) {
  ASSERT_TRUE(set_isa(GetParam()).ok());
  for (std::int64_t C : {2, 10, 16, 31}) {
    for (double margin : {5.0, 15.0, 30.0}) near_one_case<float>(C, margin);
    for (double margin : {5.0, 30.0, 300.0}) near_one_case<double>(C, margin);
  }
}

// NLL's vector path uses the scalar formulas exactly: same bits.
TEST_P(SimdVsScalar, NllSameBits) {
  for (std::int64_t C : {1, 7, 16, 1000, 20000}) {
    const std::int64_t N = 9;
    std::vector<float> x = make_rows<float>(N, C, Fill::kUniform, 3, false);
    std::vector<std::int64_t> tgt(static_cast<std::size_t>(N));
    for (std::size_t r = 0; r < tgt.size(); ++r) tgt[r] = r % 4 == 0 ? -100 : static_cast<std::int64_t>((r * 7) % static_cast<std::size_t>(C));
    std::vector<float> dloss(tgt.size(), 0.5f);
    NllOptions o;
    o.reduction = Reduction::kNone;
    std::vector<float> loss[2], dx[2];
    both([&](bool simd) {
      const int k = simd ? 0 : 1;
      loss[k].assign(tgt.size(), 0.f);
      dx[k].assign(x.size(), 1.f);
      ASSERT_TRUE(nll_loss_forward({x.data(), Shape{N, C}}, {tgt.data(), Shape{N}}, o, {loss[k].data(), Shape{N}}).ok());
      ASSERT_TRUE(nll_loss_backward({x.data(), Shape{N, C}}, {tgt.data(), Shape{N}}, o, {dloss.data(), Shape{N}},
                                    {dx[k].data(), Shape{N, C}})
                      .ok());
    });
    EXPECT_TRUE(same_bits(loss[0], loss[1])) << "nll forward, C " << C;
    EXPECT_TRUE(same_bits(dx[0], dx[1])) << "nll backward, C " << C;
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, SimdVsScalar, ::testing::ValuesIn(simd_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---------------------------------------------------------------------------------------------
// Same bits for 1, 2 and 7 threads, every ISA.

class ThreadBits : public UnderIsa {};

template <class T>
void thread_case(std::int64_t N, std::int64_t C) {
  SCOPED_TRACE(type_name<T>() + " [" + std::to_string(N) + ", " + std::to_string(C) + "]");
  const Shape sh{N, C}, rs{N};
  std::vector<T> x = make_rows<T>(N, C, Fill::kMasked, 5, true);
  std::vector<std::int64_t> tgt(static_cast<std::size_t>(N));
  for (std::size_t r = 0; r < tgt.size(); ++r) tgt[r] = r % 11 == 0 ? -100 : static_cast<std::int64_t>((r * 31) % static_cast<std::size_t>(C));
  expect_same_bits_for_1_2_7_threads(x, sh, rs, tgt);
}

TEST_P(ThreadBits, SameBitsFor1_2_7Threads) {
  thread_case<float>(3000, 100);
  thread_case<float>(9, 40000);
  thread_case<float>(5000, 10);
  thread_case<float>(4099, 16);
  thread_case<double>(4099, 7);
  thread_case<double>(2000, 33);
}

INSTANTIATE_TEST_SUITE_P(Isa, ThreadBits, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---------------------------------------------------------------------------------------------
// The ISA setting itself.

TEST(IsaSetting, ListsScalarLastAndRejectsUnknownNames) {
  const auto isas = supported_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.back(), "scalar");
  for (const auto& name : isas) {
    ASSERT_TRUE(set_isa(name).ok()) << name;
    EXPECT_EQ(active_isa(), name);
  }
  const Status s = set_isa("no-such-isa");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("scalar"), std::string::npos) << s.message();
  ASSERT_TRUE(set_isa("auto").ok());
  EXPECT_EQ(active_isa(), isas.front());
}

TEST(ThreadSetting, DefaultAndOverride) {
  set_num_threads(3);
  EXPECT_EQ(num_threads(), 3);
  set_num_threads(0);
  EXPECT_GE(num_threads(), 1);
}

}  // namespace
}  // namespace xent
