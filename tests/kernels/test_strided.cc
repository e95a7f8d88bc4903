// test_strided.cc: the SIMD kernels for class-dim-not-last layouts, (N, C, d) and (N, C, d1, d2)
// as in segmentation, against the scalar set through the public API, and bitwise thread-count
// determinism on such a layout.
//
// The strided kernels (src/cpu/kernels_strided-inl.h) work on groups of one vector of inner
// positions; the shapes here have inner sizes that are not multiples of any vector width (partial
// groups, groups of fewer rows than lanes), leaf boundaries inside the inner extent (blocks that
// start mid-row), -inf masks, and rows with NaN, +inf or only -inf at several lane positions (which
// must give exactly what the scalar set gives, and must not change the rows that share their group).
// Also probability targets, NLL (the same bits: the scalar twin's formulas) and the token statistics
// (strided, and contiguous rows shorter than two vectors, which take the across-rows tiles).
// Not here: other contiguous rows (test_kernels.cc), the long-double oracle (tests/core).
// Tolerance as test_kernels.cc: |simd - scalar| <= 16 ulp(T) * scale + 4 * min_normal(T); NaN must
// meet NaN and an infinity the same infinity.
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

#include "simd_check.h"
#include "xent/xent.h"

namespace xent {
namespace {

using namespace simd_check;  // NOLINT: the shared checks

// A layout (N, C, inner...) and its rows: row r = o * inner + i holds element (o, c, i) at
// o * C * inner + c * inner + i. Tests build and compare row-major copies (rows of C values).
struct Layout {
  std::int64_t N = 1, C = 1;
  std::vector<std::int64_t> inner_dims;
  std::int64_t inner() const {
    std::int64_t p = 1;
    for (auto d : inner_dims) p *= d;
    return p;
  }
  std::int64_t rows() const { return N * inner(); }
  Shape shape() const {
    Shape s{N, C};
    for (auto d : inner_dims) s = s.appended(d);
    return s;
  }
  Shape row_shape() const {  // the target's / per-row loss's shape
    Shape s{N};
    for (auto d : inner_dims) s = s.appended(d);
    return s;
  }
  std::string name() const {
    std::string s = "[" + std::to_string(N) + ", " + std::to_string(C);
    for (auto d : inner_dims) s += ", " + std::to_string(d);
    return s + "]";
  }
  std::size_t at(std::size_t r, std::size_t c) const {
    const std::size_t in = static_cast<std::size_t>(inner()), Cs = static_cast<std::size_t>(C);
    return (r / in) * Cs * in + c * in + r % in;
  }
};

// Row-major rows (rows x C) to the strided layout and back.
template <class T>
std::vector<T> to_strided(const Layout& L, const std::vector<T>& rm) {
  std::vector<T> s(rm.size());
  const std::size_t R = static_cast<std::size_t>(L.rows()), C = static_cast<std::size_t>(L.C);
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t c = 0; c < C; ++c) s[L.at(r, c)] = rm[r * C + c];
  return s;
}
template <class T>
std::vector<T> to_rows(const Layout& L, const std::vector<T>& st) {
  std::vector<T> rm(st.size());
  const std::size_t R = static_cast<std::size_t>(L.rows()), C = static_cast<std::size_t>(L.C);
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t c = 0; c < C; ++c) rm[r * C + c] = st[L.at(r, c)];
  return rm;
}

enum class Fill { kUniform, kOffset, kMasked };

// Rows of C values; with specials, rows at each of `at` get (in turn) all -inf, one NaN, one +inf.
template <class T>
std::vector<T> make_rows(std::int64_t R, std::int64_t C, Fill fill, std::uint64_t seed, const std::vector<std::size_t>& at) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> x(static_cast<std::size_t>(R * C));
  for (auto& v : x) {
    double w = u(rng);
    switch (fill) {
      case Fill::kUniform: w *= 5; break;
      case Fill::kOffset: w = 1000 + 5 * w; break;
      case Fill::kMasked: w = u(rng) < -0.4 ? -kInfD : 4 * w; break;
    }
    v = static_cast<T>(w);
  }
  const std::size_t Cs = static_cast<std::size_t>(C);
  for (std::size_t k = 0; k < at.size(); ++k) {
    const std::size_t r = at[k];
    if (r >= static_cast<std::size_t>(R)) continue;
    if (k % 3 == 0)
      for (std::size_t c = 0; c < Cs; ++c) x[r * Cs + c] = static_cast<T>(-kInfD);
    else if (k % 3 == 1) x[r * Cs + Cs / 2] = std::numeric_limits<T>::quiet_NaN();
    else x[r * Cs + Cs - 1] = static_cast<T>(kInfD);
  }
  return x;
}

// Special rows spread over lane positions and groups: the first rows, some in the middle, the last.
std::vector<std::size_t> special_rows(std::int64_t R) {
  const std::size_t n = static_cast<std::size_t>(R);
  std::vector<std::size_t> v = {0, 1, 2};
  for (std::size_t r : {n / 3, n / 2 + 1, n / 2 + 5, n - 2, n - 1}) v.push_back(r);
  return v;
}

// The layouts: inner sizes no vector width divides (a vector's worth or less, and more), and 2-d
// inner extents; N chosen so each case stays around 60k values (C = 1000 keeps N = 2 regardless).
std::vector<Layout> layouts(std::int64_t C) {
  std::vector<Layout> v;
  for (std::vector<std::int64_t> in : std::vector<std::vector<std::int64_t>>{{2}, {3}, {7}, {17}, {33}, {100}, {3, 7}, {5, 11}}) {
    Layout L;
    L.C = C;
    L.inner_dims = in;
    L.N = std::clamp<std::int64_t>(60000 / (C * L.inner()), 2, 9);
    v.push_back(L);
  }
  return v;
}

const std::vector<std::int64_t>& class_counts() {
  static const std::vector<std::int64_t> v = {1, 2, 5, 21, 100, 1000};
  return v;
}

class StridedSimdVsScalar : public IsaVsScalar {};

template <class T>
void softmax_case(StridedSimdVsScalar* t, const Layout& L, Fill fill, bool specials) {
  SCOPED_TRACE(type_name<T>() + " softmax family " + L.name() + " fill " + std::to_string(static_cast<int>(fill)) +
               (specials ? " with special rows" : ""));
  const std::int64_t R = L.rows(), C = L.C;
  const std::size_t Cs = static_cast<std::size_t>(C), Rs = static_cast<std::size_t>(R);
  const std::vector<T> x0 = make_rows<T>(R, C, fill, static_cast<std::uint64_t>(R * 131 + C),
                                         specials ? special_rows(R) : std::vector<std::size_t>{});
  const std::vector<T> x = to_strided(L, x0);
  const std::vector<T> dy = to_strided(L, make_rows<T>(R, C, Fill::kUniform, 7, {}));
  const Shape sh = L.shape(), rs = L.row_shape();
  std::vector<T> dl(Rs, T(0.75));
  // out[k]: k = 0 SIMD, 1 scalar: softmax, log_softmax, softmax bwd, log_softmax bwd, logsumexp bwd.
  // Backward passes of both sets read the scalar forward outputs.
  std::vector<T> out[2][5], lse[2];
  for (int k : {1, 0}) {
    ASSERT_TRUE(set_isa(k == 0 ? t->GetParam() : "scalar").ok());
    for (auto& v : out[k]) v.assign(x.size(), T(0));
    lse[k].assign(Rs, T(0));
    ASSERT_TRUE(softmax_forward({x.data(), sh}, 1, {out[k][0].data(), sh}).ok());
    ASSERT_TRUE(log_softmax_forward({x.data(), sh}, 1, {out[k][1].data(), sh}).ok());
    ASSERT_TRUE(logsumexp_forward({x.data(), sh}, 1, {lse[k].data(), rs}).ok());
    ASSERT_TRUE(softmax_backward({out[1][0].data(), sh}, {dy.data(), sh}, 1, {out[k][2].data(), sh}).ok());
    ASSERT_TRUE(log_softmax_backward({out[1][1].data(), sh}, {dy.data(), sh}, 1, {out[k][3].data(), sh}).ok());
    ASSERT_TRUE(logsumexp_backward({x.data(), sh}, {lse[1].data(), rs}, {dl.data(), rs}, 1, {out[k][4].data(), sh}).ok());
    if (k == 0) {  // in place (y is x; dx is dy): the same bits as out of place
      std::vector<T> inplace = x;
      ASSERT_TRUE(softmax_forward({inplace.data(), sh}, 1, {inplace.data(), sh}).ok());
      EXPECT_TRUE(same_bits(inplace, out[0][0])) << "in-place softmax_forward";
      inplace = x;
      ASSERT_TRUE(log_softmax_forward({inplace.data(), sh}, 1, {inplace.data(), sh}).ok());
      EXPECT_TRUE(same_bits(inplace, out[0][1])) << "in-place log_softmax_forward";
      inplace = dy;
      ASSERT_TRUE(softmax_backward({out[1][0].data(), sh}, {inplace.data(), sh}, 1, {inplace.data(), sh}).ok());
      EXPECT_TRUE(same_bits(inplace, out[0][2])) << "in-place softmax_backward";
    }
  }
  std::vector<T> r[2][5];
  for (int k = 0; k < 2; ++k)
    for (int j = 0; j < 5; ++j) r[k][j] = to_rows(L, out[k][j]);
  const std::vector<T> dyr = to_rows(L, dy);
  const std::size_t n = x0.size();
  std::vector<double> sc(n), sc_log(n), sc_sbwd(n), sc_lbwd(n), sc_lse_bwd(n), sc_lse(Rs);
  for (std::size_t row = 0; row < Rs; ++row) {
    const T* xr = x0.data() + row * Cs;
    const double range = row_range(xr, Cs) + row_absmax(xr, Cs);
    double dot = 0, sum = 0;
    for (std::size_t c = 0; c < Cs; ++c) {
      const std::size_t i = row * Cs + c;
      dot += std::fabs(static_cast<double>(r[1][0][i]) * static_cast<double>(dyr[i]));
      sum += std::fabs(static_cast<double>(dyr[i]));
    }
    for (std::size_t c = 0; c < Cs; ++c) {
      const std::size_t i = row * Cs + c;
      const double xv = x0[i], ys = r[1][0][i], ls = r[1][1][i];
      sc[i] = std::fabs(ys) * (1 + range);
      sc_log[i] = std::fabs(xv) + std::fabs(xv - ls) + std::sqrt(static_cast<double>(Cs));
      sc_sbwd[i] = std::fabs(ys) * (std::fabs(static_cast<double>(dyr[i])) + dot);
      sc_lbwd[i] = std::fabs(static_cast<double>(dyr[i])) + std::exp(ls) * sum;
      sc_lse_bwd[i] = std::fabs(static_cast<double>(r[1][4][i])) * (1 + range);
    }
    sc_lse[row] = std::fabs(static_cast<double>(lse[1][row])) + 1;
  }
  EXPECT_TRUE(close(r[0][0], r[1][0], sc)) << "softmax_forward";
  EXPECT_TRUE(close(r[0][1], r[1][1], sc_log)) << "log_softmax_forward";
  EXPECT_TRUE(close(lse[0], lse[1], sc_lse)) << "logsumexp_forward";
  EXPECT_TRUE(close(r[0][2], r[1][2], sc_sbwd)) << "softmax_backward";
  EXPECT_TRUE(close(r[0][3], r[1][3], sc_lbwd)) << "log_softmax_backward";
  EXPECT_TRUE(close(r[0][4], r[1][4], sc_lse_bwd)) << "logsumexp_backward";
  ASSERT_TRUE(set_isa(t->GetParam()).ok());
}

TEST_P(StridedSimdVsScalar, SoftmaxFamily) {
  for (std::int64_t C : class_counts()) {
    for (const Layout& L : layouts(C)) {
      softmax_case<float>(this, L, Fill::kUniform, true);
      softmax_case<double>(this, L, Fill::kUniform, true);
      softmax_case<float>(this, L, Fill::kMasked, true);
      softmax_case<double>(this, L, Fill::kOffset, false);
    }
  }
}

struct CeOpts {
  bool weight = false;
  double eps = 0;
  bool ignore = false;  // every third target equals ignore_index
  Reduction reduction = Reduction::kNone;
};

template <class T, class I>
void cross_entropy_case(StridedSimdVsScalar* t, const Layout& L, Fill fill, bool specials, CeOpts co) {
  SCOPED_TRACE(type_name<T>() + " cross_entropy " + L.name() + " fill " + std::to_string(static_cast<int>(fill)) +
               (specials ? " with special rows" : "") + " weight " + std::to_string(co.weight) + " eps " +
               std::to_string(co.eps) + " ignore " + std::to_string(co.ignore) + " reduction " +
               reduction_name(co.reduction) + " index bytes " + std::to_string(sizeof(I)));
  const std::int64_t R = L.rows(), C = L.C;
  const std::size_t Cs = static_cast<std::size_t>(C), Rs = static_cast<std::size_t>(R);
  std::vector<std::size_t> at = specials ? special_rows(R) : std::vector<std::size_t>{};
  const std::vector<T> x0 = make_rows<T>(R, C, fill, static_cast<std::uint64_t>(R * 17 + C), at);
  const std::vector<T> x = to_strided(L, x0);
  std::mt19937_64 rng(static_cast<std::uint64_t>(C + 3 * R));
  std::vector<I> tgt(Rs);  // per row, row-major = the target tensor's own order
  for (std::size_t r = 0; r < Rs; ++r) tgt[r] = static_cast<I>(rng() % static_cast<std::uint64_t>(C));
  if (co.ignore)
    for (std::size_t r = 1; r < Rs; r += 3) tgt[r] = static_cast<I>(-100);
  std::vector<T> w(Cs, T(1));
  double wmax = 1, W = static_cast<double>(C);
  if (co.weight) {
    W = 0;
    for (auto& v : w) {
      v = static_cast<T>(0.25 + static_cast<double>(rng() % 1000) / 400.0);
      W += v;
      wmax = std::max(wmax, static_cast<double>(v));
    }
  }
  const bool none = co.reduction == Reduction::kNone;
  std::vector<T> dloss(none ? Rs : 1);
  for (auto& v : dloss) v = static_cast<T>(0.5 + static_cast<double>(rng() % 100) / 50.0);
  CrossEntropyOptions o;
  if (co.weight) o.weight = ConstTensorView(w.data(), Shape{C});
  o.label_smoothing = co.eps;
  o.reduction = co.reduction;
  const Shape sh = L.shape(), ls = none ? L.row_shape() : Shape{};
  const ConstTensorView tv(tgt.data(), L.row_shape());
  const std::size_t nl = none ? Rs : 1;
  std::vector<T> loss[2], dx[2], dxf[2], lossf[2];
  t->both([&](bool simd) {
    const int k = simd ? 0 : 1;
    loss[k].assign(nl, T(0));
    dx[k].assign(x.size(), T(0));
    dxf[k].assign(x.size(), T(0));
    lossf[k].assign(nl, T(0));
    ASSERT_TRUE(cross_entropy_forward({x.data(), sh}, tv, o, {loss[k].data(), ls}).ok());
    ASSERT_TRUE(cross_entropy_backward({x.data(), sh}, tv, o, {dloss.data(), ls}, {dx[k].data(), sh}).ok());
    ASSERT_TRUE(cross_entropy_fused({x.data(), sh}, tv, o, {lossf[k].data(), ls}, {dxf[k].data(), sh}).ok());
    if (simd) {  // in place: dinput aliases input; must equal the out-of-place result bit for bit
      std::vector<T> inplace = x, l(nl);
      ASSERT_TRUE(cross_entropy_fused({inplace.data(), sh}, tv, o, {l.data(), ls}, {inplace.data(), sh}).ok());
      EXPECT_TRUE(same_bits(inplace, dxf[0])) << "in-place fused gradient";
      EXPECT_TRUE(same_bits(l, lossf[0])) << "in-place fused loss";
    }
  });
  for (int k = 0; k < 2; ++k) {
    dx[k] = to_rows(L, dx[k]);
    dxf[k] = to_rows(L, dxf[k]);
  }
  // Scales (test_kernels.cc's): the loss's terms are w (|x| + |lse|); each gradient value carries
  // u (range + absmax) of the row. The mean's divisor is the sum of the picked weights (>= 0.25 per
  // kept row), so the mean's scale is at most the rows' scales over 0.25 kept.
  std::vector<double> sl(Rs), sd(x0.size()), sdf(x0.size());
  double kept = 0;
  for (std::size_t r = 0; r < Rs; ++r) {
    const T* xr = x0.data() + r * Cs;
    kept += tgt[r] != static_cast<I>(-100);
    const double xmax = row_absmax(xr, Cs);
    const double rg = 1 + row_range(xr, Cs) + xmax;
    const double g = none ? std::fabs(static_cast<double>(dloss[r])) : std::fabs(static_cast<double>(dloss[0]));
    sl[r] = (none ? std::fabs(static_cast<double>(loss[1][r])) : 0.0) + wmax * (2 * xmax + 1) * (1 + co.eps * W);
    for (std::size_t c = 0; c < Cs; ++c) {
      const std::size_t i = r * Cs + c;
      const double extra = wmax * ((static_cast<std::int64_t>(c) == static_cast<std::int64_t>(tgt[r]) ? 1.0 : 0.0) +
                                   co.eps * (1 + W) / static_cast<double>(C));
      sd[i] = (std::fabs(static_cast<double>(dx[1][i])) + g * extra) * rg;
      sdf[i] = (std::fabs(static_cast<double>(dxf[1][i])) + extra) * rg;
    }
  }
  if (!none) {
    double s = 0;
    for (double v : sl) s += v;
    sl.assign(1, std::fabs(static_cast<double>(loss[1][0])) + s / std::max(1.0, 0.25 * kept));
  }
  EXPECT_TRUE(close(loss[0], loss[1], sl)) << "cross_entropy_forward";
  EXPECT_TRUE(close(dx[0], dx[1], sd)) << "cross_entropy_backward";
  EXPECT_TRUE(close(lossf[0], lossf[1], sl)) << "cross_entropy_fused loss";
  EXPECT_TRUE(close(dxf[0], dxf[1], sdf)) << "cross_entropy_fused gradient";
}

TEST_P(StridedSimdVsScalar, CrossEntropy) {
  const CeOpts opts[] = {
      CeOpts{false, 0, false, Reduction::kNone}, CeOpts{true, 0, true, Reduction::kNone},
      CeOpts{false, 0.1, false, Reduction::kNone}, CeOpts{true, 0.1, true, Reduction::kNone},
      CeOpts{false, 0, true, Reduction::kMean}, CeOpts{true, 0.1, true, Reduction::kMean},
  };
  for (std::int64_t C : class_counts()) {
    std::size_t k = 0;
    for (const Layout& L : layouts(C)) {
      for (const CeOpts& co : opts) {
        // Alternate types, index widths and fills over the cases (every combination appears for
        // some layout); special rows in every case.
        const Fill f = (k % 3 == 0) ? Fill::kMasked : (k % 3 == 1 ? Fill::kUniform : Fill::kOffset);
        if (k % 2 == 0) cross_entropy_case<float, std::int64_t>(this, L, f, true, co);
        else cross_entropy_case<double, std::int32_t>(this, L, f, true, co);
        ++k;
      }
      // p[t] near 1 would need other data; the uniform float / int32 pair with masks:
      cross_entropy_case<float, std::int32_t>(this, L, Fill::kMasked, true, CeOpts{false, 0, true, Reduction::kNone});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Probability targets, NLL and the token statistics on the same layouts.

template <class T>
void prob_case(StridedSimdVsScalar* t, const Layout& L, Fill fill, bool weight, double eps) {
  SCOPED_TRACE(type_name<T>() + " cross_entropy (probabilities) " + L.name() + " fill " +
               std::to_string(static_cast<int>(fill)) + " weight " + std::to_string(weight) + " eps " + std::to_string(eps));
  const std::int64_t R = L.rows(), C = L.C;
  const std::size_t Cs = static_cast<std::size_t>(C), Rs = static_cast<std::size_t>(R);
  const std::vector<T> x0 = make_rows<T>(R, C, fill, static_cast<std::uint64_t>(R * 23 + C), special_rows(R));
  const std::vector<T> tg0 = make_prob_targets(x0, Rs, Cs, static_cast<std::uint64_t>(C * 3 + R));
  const std::vector<T> x = to_strided(L, x0), tg = to_strided(L, tg0);
  std::mt19937_64 rng(static_cast<std::uint64_t>(C * 7 + R));
  std::vector<T> w(Cs, T(1)), dl(Rs);
  if (weight)
    for (auto& v : w) v = static_cast<T>(0.25 + static_cast<double>(rng() % 1000) / 400.0);
  for (auto& v : dl) v = static_cast<T>(0.5 + static_cast<double>(rng() % 100) / 50.0);
  CrossEntropyOptions o;
  if (weight) o.weight = ConstTensorView(w.data(), Shape{C});
  o.label_smoothing = eps;
  o.reduction = Reduction::kNone;
  const Shape sh = L.shape(), rs = L.row_shape();
  const ConstTensorView tv(tg.data(), sh);
  std::vector<T> loss[2], dx[2], dxf[2], lossf[2];
  t->both([&](bool simd) {
    const int k = simd ? 0 : 1;
    loss[k].assign(Rs, T(-7));
    lossf[k].assign(Rs, T(-7));
    dx[k].assign(x.size(), T(-7));
    dxf[k].assign(x.size(), T(-7));
    ASSERT_TRUE(cross_entropy_forward({x.data(), sh}, tv, o, {loss[k].data(), rs}).ok());
    ASSERT_TRUE(cross_entropy_backward({x.data(), sh}, tv, o, {dl.data(), rs}, {dx[k].data(), sh}).ok());
    ASSERT_TRUE(cross_entropy_fused({x.data(), sh}, tv, o, {lossf[k].data(), rs}, {dxf[k].data(), sh}).ok());
    if (simd) {  // in place over the logits, and over the targets: the out-of-place bits
      std::vector<T> inplace = x, l(Rs);
      ASSERT_TRUE(cross_entropy_fused({inplace.data(), sh}, tv, o, {l.data(), rs}, {inplace.data(), sh}).ok());
      EXPECT_TRUE(same_bits(inplace, dxf[0])) << "in-place fused gradient over the logits";
      EXPECT_TRUE(same_bits(l, lossf[0])) << "in-place fused loss";
      std::vector<T> over_t = tg;
      ASSERT_TRUE(cross_entropy_backward({x.data(), sh}, {over_t.data(), sh}, o, {dl.data(), rs}, {over_t.data(), sh}).ok());
      EXPECT_TRUE(same_bits(over_t, dx[0])) << "backward written over the targets";
    }
  });
  for (int k = 0; k < 2; ++k) {
    dx[k] = to_rows(L, dx[k]);
    dxf[k] = to_rows(L, dxf[k]);
  }
  // Scales: simd_check.h prob_target_scales.
  const ProbScales ps = prob_target_scales(x0, tg0, w, dl, Rs, Cs, eps, loss[1], dx[1], dxf[1]);
  const std::vector<double>&sl = ps.loss, &sd = ps.grad, &sdf = ps.fused_grad;
  EXPECT_TRUE(close(loss[0], loss[1], sl)) << "cross_entropy_forward (probabilities)";
  EXPECT_TRUE(close(dx[0], dx[1], sd)) << "cross_entropy_backward (probabilities)";
  EXPECT_TRUE(close(lossf[0], lossf[1], sl)) << "cross_entropy_fused loss (probabilities)";
  EXPECT_TRUE(close(dxf[0], dxf[1], sdf)) << "cross_entropy_fused gradient (probabilities)";
}

TEST_P(StridedSimdVsScalar, ProbabilityTargets) {
  std::size_t k = 0;
  for (std::int64_t C : class_counts()) {
    for (const Layout& L : layouts(C)) {
      const Fill f = k % 3 == 0 ? Fill::kMasked : (k % 3 == 1 ? Fill::kUniform : Fill::kOffset);
      const bool weight = k % 2 == 1;
      const double eps = (k / 2) % 2 == 1 ? 0.1 : 0.0;
      prob_case<float>(this, L, f, weight, eps);
      prob_case<double>(this, L, f, !weight, 0.1 - eps);
      ++k;
    }
  }
}

// NLL: the SIMD kernels use the scalar twin's formulas, so every output has its bits (losses with
// reduction none and mean, the gradient with per-row and scalar upstream gradients).
template <class T, class I>
void nll_case(StridedSimdVsScalar* t, const Layout& L, bool weight) {
  SCOPED_TRACE(type_name<T>() + " nll " + L.name() + " weight " + std::to_string(weight) + " index bytes " +
               std::to_string(sizeof(I)));
  const std::int64_t R = L.rows(), C = L.C;
  const std::size_t Cs = static_cast<std::size_t>(C), Rs = static_cast<std::size_t>(R);
  const std::vector<T> x = to_strided(L, make_rows<T>(R, C, Fill::kMasked, static_cast<std::uint64_t>(R + C), special_rows(R)));
  std::mt19937_64 rng(static_cast<std::uint64_t>(C * 5 + R));
  std::vector<I> tgt(Rs);
  for (std::size_t r = 0; r < Rs; ++r) tgt[r] = r % 4 == 1 ? static_cast<I>(-100) : static_cast<I>(rng() % Cs);
  std::vector<T> w(Cs), dl(Rs);
  for (auto& v : w) v = static_cast<T>(0.25 + static_cast<double>(rng() % 1000) / 400.0);
  for (auto& v : dl) v = static_cast<T>(0.5 + static_cast<double>(rng() % 100) / 50.0);
  NllOptions o;
  if (weight) o.weight = ConstTensorView(w.data(), Shape{C});
  const Shape sh = L.shape(), rs = L.row_shape();
  const ConstTensorView tv(tgt.data(), rs);
  std::vector<T> loss[2], mean[2], dx[2], dxm[2];
  t->both([&](bool simd) {
    const int k = simd ? 0 : 1;
    loss[k].assign(Rs, T(-7));
    mean[k].assign(1, T(-7));
    dx[k].assign(x.size(), T(-7));
    dxm[k].assign(x.size(), T(-7));
    o.reduction = Reduction::kNone;
    ASSERT_TRUE(nll_loss_forward({x.data(), sh}, tv, o, {loss[k].data(), rs}).ok());
    ASSERT_TRUE(nll_loss_backward({x.data(), sh}, tv, o, {dl.data(), rs}, {dx[k].data(), sh}).ok());
    o.reduction = Reduction::kMean;
    ASSERT_TRUE(nll_loss_forward({x.data(), sh}, tv, o, {mean[k].data(), Shape{}}).ok());
    ASSERT_TRUE(nll_loss_backward({x.data(), sh}, tv, o, {dl.data(), Shape{}}, {dxm[k].data(), sh}).ok());
  });
  EXPECT_TRUE(same_bits(loss[0], loss[1])) << "nll_loss_forward (none)";
  EXPECT_TRUE(same_bits(mean[0], mean[1])) << "nll_loss_forward (mean)";
  EXPECT_TRUE(same_bits(dx[0], dx[1])) << "nll_loss_backward (none)";
  EXPECT_TRUE(same_bits(dxm[0], dxm[1])) << "nll_loss_backward (mean)";
}

TEST_P(StridedSimdVsScalar, Nll) {
  for (std::int64_t C : class_counts()) {
    for (const Layout& L : layouts(C)) {
      nll_case<float, std::int64_t>(this, L, true);
      nll_case<double, std::int32_t>(this, L, false);
    }
  }
}

// The token statistics (cross_entropy_token_stats): targets are each row's argmax by a plain scan
// here (the first NaN, else the first maximum: torch.argmax), so `correct` must be 1 on every kept
// row under both sets (-1 on ignored ones); lse and entropy within the tolerance of the scalar
// set. Rows r % 4 == 2 are rounded to integers (ties at the maximum).
template <class T>
void stats_case(StridedSimdVsScalar* t, const Layout& L, Fill fill) {
  SCOPED_TRACE(type_name<T>() + " token stats " + L.name() + " fill " + std::to_string(static_cast<int>(fill)));
  const std::int64_t R = L.rows(), C = L.C;
  const std::size_t Cs = static_cast<std::size_t>(C), Rs = static_cast<std::size_t>(R);
  const std::vector<std::size_t> at = special_rows(R);
  std::vector<T> x0 = make_rows<T>(R, C, fill, static_cast<std::uint64_t>(R * 3 + C), at);
  for (std::size_t r = 2; r < Rs; r += 4)
    if (std::find(at.begin(), at.end(), r) == at.end())
      for (std::size_t c = 0; c < Cs; ++c) x0[r * Cs + c] = static_cast<T>(std::round(static_cast<double>(x0[r * Cs + c])));
  const std::vector<T> x = to_strided(L, x0);
  std::vector<std::int64_t> tgt(Rs);
  for (std::size_t r = 0; r < Rs; ++r) {
    std::int64_t am = 0;
    for (std::size_t c = 0; c < Cs; ++c) {
      const double v = static_cast<double>(x0[r * Cs + c]);
      if (std::isnan(v)) {
        am = static_cast<std::int64_t>(c);
        break;
      }
      if (v > static_cast<double>(x0[r * Cs + static_cast<std::size_t>(am)])) am = static_cast<std::int64_t>(c);
    }
    tgt[r] = r % 7 == 6 ? -100 : am;
  }
  const Shape sh = L.shape(), rs = L.row_shape();
  std::vector<T> lse[2], ent[2];
  std::vector<std::int64_t> cor[2];
  t->both([&](bool simd) {
    const int k = simd ? 0 : 1;
    lse[k].assign(Rs, T(-7));
    ent[k].assign(Rs, T(-7));
    cor[k].assign(Rs, 7);
    ASSERT_TRUE(cross_entropy_token_stats({x.data(), sh}, {tgt.data(), rs}, {}, {lse[k].data(), rs}, {ent[k].data(), rs},
                                          {cor[k].data(), rs})
                    .ok());
  });
  std::vector<std::int64_t> want(Rs);
  for (std::size_t r = 0; r < Rs; ++r) want[r] = tgt[r] == -100 ? -1 : 1;
  EXPECT_EQ(cor[0], want) << "argmax == target (SIMD)";
  EXPECT_EQ(cor[1], want) << "argmax == target (scalar)";
  std::vector<double> sc(Rs);
  for (std::size_t r = 0; r < Rs; ++r) {
    const T* xr = x0.data() + r * Cs;
    sc[r] = (1 + row_range(xr, Cs) + row_absmax(xr, Cs)) * (1 + std::log(static_cast<double>(C)));
  }
  EXPECT_TRUE(close(lse[0], lse[1], sc)) << "lse";
  EXPECT_TRUE(close(ent[0], ent[1], sc)) << "entropy";
}

TEST_P(StridedSimdVsScalar, TokenStats) {
  std::size_t k = 0;
  for (std::int64_t C : class_counts()) {
    for (const Layout& L : layouts(C)) {
      stats_case<float>(this, L, k % 2 ? Fill::kMasked : Fill::kUniform);
      stats_case<double>(this, L, k % 2 ? Fill::kOffset : Fill::kMasked);
      ++k;
    }
  }
}

// Contiguous rows shorter than two vectors take the across-rows tiles (full ones and a partial one).
TEST_P(StridedSimdVsScalar, TokenStatsShortRows) {
  for (std::int64_t C = 1; C <= 33; ++C) {
    Layout L;
    L.N = 49;
    L.C = C;
    stats_case<float>(this, L, Fill::kMasked);
    stats_case<double>(this, L, C % 2 ? Fill::kUniform : Fill::kMasked);
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, StridedSimdVsScalar, ::testing::ValuesIn(simd_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---------------------------------------------------------------------------------------------
// A row's result does not depend on the rows that share its vector group: each row of a tensor
// with special rows (NaN, +inf, all -inf: their groups take another path) gives the same bits as
// the same row placed between two ordinary rows in a (1, C, 3) tensor (softmax, cross-entropy with
// indices and with probabilities, logsumexp backward, token statistics).

template <class T>
void neighbour_case(std::int64_t C, double eps) {
  Layout L;
  L.N = 3;
  L.C = C;
  L.inner_dims = {17};
  SCOPED_TRACE(type_name<T>() + " " + L.name() + " eps " + std::to_string(eps));
  const std::int64_t R = L.rows();
  const std::size_t Cs = static_cast<std::size_t>(C);
  const std::vector<T> x0 = make_rows<T>(R, C, Fill::kUniform, 11, special_rows(R));
  const std::vector<T> clean = make_rows<T>(2, C, Fill::kUniform, 12, {});
  std::vector<std::int64_t> tgt(static_cast<std::size_t>(R));
  for (std::size_t r = 0; r < tgt.size(); ++r) tgt[r] = r % 5 == 3 ? -100 : static_cast<std::int64_t>((r * 7) % Cs);
  CrossEntropyOptions o;
  o.reduction = Reduction::kNone;
  o.label_smoothing = eps;
  const std::vector<T> tp0 = make_prob_targets(x0, static_cast<std::size_t>(R), Cs, 13);
  const std::vector<T> tp_clean = make_prob_targets(clean, 2, Cs, 14);
  // Per layout: softmax, cross-entropy (indices; probabilities tp), logsumexp backward, token stats.
  struct Outs {
    std::vector<T> y, loss, dx, ploss, pdx, lse_dx, lse, ent;
    std::vector<std::int64_t> correct;
  };
  auto run = [&](const Layout& l, const std::vector<T>& rows, const std::vector<T>& tp, const std::vector<std::int64_t>& t,
                 Outs* out) {
    const std::vector<T> x = to_strided(l, rows), tps = to_strided(l, tp);
    const Shape sh = l.shape(), rs = l.row_shape();
    for (auto* v : {&out->y, &out->dx, &out->pdx, &out->lse_dx}) v->assign(x.size(), T(0));
    for (auto* v : {&out->loss, &out->ploss, &out->lse, &out->ent}) v->assign(t.size(), T(0));
    out->correct.assign(t.size(), 7);
    ASSERT_TRUE(softmax_forward({x.data(), sh}, 1, {out->y.data(), sh}).ok());
    ASSERT_TRUE(cross_entropy_fused({x.data(), sh}, {t.data(), rs}, o, {out->loss.data(), rs}, {out->dx.data(), sh}).ok());
    ASSERT_TRUE(cross_entropy_fused({x.data(), sh}, {tps.data(), sh}, o, {out->ploss.data(), rs}, {out->pdx.data(), sh}).ok());
    ASSERT_TRUE(cross_entropy_token_stats({x.data(), sh}, {t.data(), rs}, {}, {out->lse.data(), rs}, {out->ent.data(), rs},
                                          {out->correct.data(), rs})
                    .ok());
    const std::vector<T> dl(t.size(), T(0.75));
    ASSERT_TRUE(logsumexp_backward({x.data(), sh}, {out->lse.data(), rs}, {dl.data(), rs}, 1, {out->lse_dx.data(), sh}).ok());
    for (auto* v : {&out->y, &out->dx, &out->pdx, &out->lse_dx}) *v = to_rows(l, *v);
  };
  Outs full;
  run(L, x0, tp0, tgt, &full);
  Layout l3;
  l3.N = 1;
  l3.C = C;
  l3.inner_dims = {3};
  for (std::size_t r = 0; r < static_cast<std::size_t>(R); ++r) {
    std::vector<T> rows(3 * Cs);
    std::copy(clean.begin(), clean.begin() + static_cast<std::ptrdiff_t>(Cs), rows.begin());
    std::copy(x0.begin() + static_cast<std::ptrdiff_t>(r * Cs), x0.begin() + static_cast<std::ptrdiff_t>((r + 1) * Cs),
              rows.begin() + static_cast<std::ptrdiff_t>(Cs));
    std::copy(clean.begin() + static_cast<std::ptrdiff_t>(Cs), clean.end(), rows.begin() + static_cast<std::ptrdiff_t>(2 * Cs));
    std::vector<T> tp3 = tp_clean;
    tp3.insert(tp3.begin() + static_cast<std::ptrdiff_t>(Cs), tp0.begin() + static_cast<std::ptrdiff_t>(r * Cs),
               tp0.begin() + static_cast<std::ptrdiff_t>((r + 1) * Cs));
    Outs three;
    run(l3, rows, tp3, {0, tgt[r], static_cast<std::int64_t>(Cs - 1)}, &three);
    auto row_of = [&](const std::vector<T>& v, std::size_t k) {
      return std::vector<T>(v.begin() + static_cast<std::ptrdiff_t>(k * Cs), v.begin() + static_cast<std::ptrdiff_t>((k + 1) * Cs));
    };
    auto same_at = [&](const std::vector<T>& a, std::size_t i, const std::vector<T>& b, std::size_t j) {
      return std::memcmp(&a[i], &b[j], sizeof(T)) == 0;
    };
    EXPECT_TRUE(same_bits(row_of(full.y, r), row_of(three.y, 1))) << "softmax, row " << r;
    EXPECT_TRUE(same_bits(row_of(full.dx, r), row_of(three.dx, 1))) << "cross-entropy gradient, row " << r;
    EXPECT_TRUE(same_at(full.loss, r, three.loss, 1)) << "cross-entropy loss, row " << r;
    EXPECT_TRUE(same_bits(row_of(full.pdx, r), row_of(three.pdx, 1))) << "probability-target gradient, row " << r;
    EXPECT_TRUE(same_at(full.ploss, r, three.ploss, 1)) << "probability-target loss, row " << r;
    EXPECT_TRUE(same_bits(row_of(full.lse_dx, r), row_of(three.lse_dx, 1))) << "logsumexp backward, row " << r;
    EXPECT_TRUE(same_at(full.lse, r, three.lse, 1) && same_at(full.ent, r, three.ent, 1) &&
                full.correct[r] == three.correct[1])
        << "token statistics, row " << r;
  }
}

TEST_P(StridedSimdVsScalar, RowsIndependentOfNeighbours) {
  ASSERT_TRUE(set_isa(GetParam()).ok());
  for (std::int64_t C : {2, 21, 100}) {
    neighbour_case<float>(C, 0);
    neighbour_case<double>(C, 0.1);
  }
}

// ---------------------------------------------------------------------------------------------
// Same bits for 1, 2 and 7 threads on a strided layout, every ISA (leaf boundaries fall inside the
// inner extent, at offsets no vector width divides).

class StridedThreadBits : public UnderIsa {};

template <class T>
void strided_thread_case(const Layout& L) {
  SCOPED_TRACE(type_name<T>() + " " + L.name());
  const std::int64_t R = L.rows(), C = L.C;
  const Shape sh = L.shape(), rs = L.row_shape();
  const std::vector<T> x = to_strided(L, make_rows<T>(R, C, Fill::kMasked, 5, special_rows(R)));
  std::vector<std::int64_t> tgt(static_cast<std::size_t>(R));
  for (std::size_t r = 0; r < tgt.size(); ++r)
    tgt[r] = r % 11 == 0 ? -100 : static_cast<std::int64_t>((r * 31) % static_cast<std::size_t>(C));
  expect_same_bits_for_1_2_7_threads(x, sh, rs, tgt);
}

// The other strided kernels: probability targets (weights, smoothing), NLL, logsumexp backward and
// the token statistics, 1, 2 and 7 threads.
template <class T>
void strided_thread_case_more(const Layout& L) {
  SCOPED_TRACE(type_name<T>() + " " + L.name() + " (probabilities, nll, logsumexp backward, token stats)");
  const std::int64_t R = L.rows(), C = L.C;
  const std::size_t Rs = static_cast<std::size_t>(R), Cs = static_cast<std::size_t>(C);
  const Shape sh = L.shape(), rs = L.row_shape();
  const std::vector<T> x0 = make_rows<T>(R, C, Fill::kMasked, 6, special_rows(R));
  const std::vector<T> x = to_strided(L, x0), tg = to_strided(L, make_prob_targets(x0, Rs, Cs, 8));
  std::vector<std::int64_t> ti(Rs);
  for (std::size_t r = 0; r < Rs; ++r) ti[r] = r % 11 == 0 ? -100 : static_cast<std::int64_t>((r * 31) % Cs);
  std::vector<T> w(Cs), dl(Rs, T(0.5));
  for (std::size_t c = 0; c < Cs; ++c) w[c] = static_cast<T>(0.5 + static_cast<double>(c % 7) / 4);
  std::vector<std::vector<T>> ref;
  std::vector<std::int64_t> cref;
  for (int threads : {1, 2, 7}) {
    set_num_threads(threads);
    std::vector<std::vector<T>> out;
    auto add = [&](std::size_t n) -> T* {
      out.emplace_back(n, T(-7));
      return out.back().data();
    };
    CrossEntropyOptions o;
    o.weight = ConstTensorView(w.data(), Shape{C});
    o.label_smoothing = 0.1;
    ASSERT_TRUE(cross_entropy_fused({x.data(), sh}, {tg.data(), sh}, o, {add(1), Shape{}}, {add(x.size()), sh}).ok());
    o.reduction = Reduction::kNone;
    ASSERT_TRUE(cross_entropy_forward({x.data(), sh}, {tg.data(), sh}, o, {add(Rs), rs}).ok());
    NllOptions no;
    no.weight = o.weight;
    ASSERT_TRUE(nll_loss_forward({x.data(), sh}, {ti.data(), rs}, no, {add(1), Shape{}}).ok());
    ASSERT_TRUE(nll_loss_backward({x.data(), sh}, {ti.data(), rs}, no, {dl.data(), Shape{}}, {add(x.size()), sh}).ok());
    T* lse = add(Rs);
    ASSERT_TRUE(logsumexp_forward({x.data(), sh}, 1, {lse, rs}).ok());
    ASSERT_TRUE(logsumexp_backward({x.data(), sh}, {lse, rs}, {dl.data(), rs}, 1, {add(x.size()), sh}).ok());
    std::vector<std::int64_t> cor(Rs, 7);
    ASSERT_TRUE(cross_entropy_token_stats({x.data(), sh}, {ti.data(), rs}, {}, {add(Rs), rs}, {add(Rs), rs}, {cor.data(), rs}).ok());
    if (threads == 1) {
      ref = out;
      cref = cor;
      continue;
    }
    for (std::size_t k = 0; k < out.size(); ++k) EXPECT_TRUE(same_bits(out[k], ref[k])) << "output " << k << ", " << threads << " threads";
    EXPECT_EQ(cor, cref) << threads << " threads";
  }
}

TEST_P(StridedThreadBits, SameBitsFor1_2_7Threads) {
  Layout a;  // leaf rows 780 for C = 21: leaf boundaries at inner offsets no vector width divides
  a.N = 4;
  a.C = 21;
  a.inner_dims = {37, 29};
  strided_thread_case<float>(a);
  Layout b;
  b.N = 3;
  b.C = 100;
  b.inner_dims = {203};
  strided_thread_case<double>(b);
  strided_thread_case_more<float>(a);
  strided_thread_case_more<double>(b);
}

INSTANTIATE_TEST_SUITE_P(Isa, StridedThreadBits, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace xent
