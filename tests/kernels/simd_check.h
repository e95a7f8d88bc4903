// simd_check.h (tests/kernels): what the SIMD-vs-scalar kernel tests share: the tolerance check
// (|simd - scalar| <= 16 ulp(T) * scale + 4 * min_normal(T), NaN meets NaN, an infinity the same
// infinity), bitwise equality, the row measures that scales are built from, the targets and
// scales of the probability-target cases (test_kernels.cc, test_strided.cc), the ISA-vs-scalar
// fixture and the thread-count determinism check. Not a test.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "xent/xent.h"

namespace xent::simd_check {

template <class T> constexpr double kUlp = std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
template <class T> constexpr double kTiny = 4.0 * static_cast<double>(std::numeric_limits<T>::min());
constexpr double kInfD = std::numeric_limits<double>::infinity();

template <class T>
std::string type_name() {
  return std::is_same_v<T, float> ? "float32" : "float64";
}

inline std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

// Compares a (SIMD) to s (scalar) elementwise; scale[i] is the magnitude the error is relative to.
template <class T>
::testing::AssertionResult close(const std::vector<T>& a, const std::vector<T>& s, const std::vector<double>& scale) {
  if (a.size() != s.size()) return ::testing::AssertionFailure() << "sizes differ";
  std::size_t bad = 0;
  std::string first;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = s[i];
    bool ok;
    if (std::isnan(y) || std::isnan(x)) ok = std::isnan(x) && std::isnan(y);
    else if (std::isinf(y) || std::isinf(x)) ok = x == y;
    else ok = std::fabs(x - y) <= 16 * kUlp<T> * scale[i] + kTiny<T>;
    if (!ok && bad++ < 3)
      first += " [" + std::to_string(i) + "] simd " + fmt(x) + " scalar " + fmt(y) + ";";
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << a.size() << " differ:" << first;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Largest minus smallest finite value of a row (0 if none).
template <class T>
double row_range(const T* x, std::size_t C) {
  double lo = kInfD, hi = -kInfD;
  for (std::size_t c = 0; c < C; ++c) {
    const double v = x[c];
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  return hi >= lo ? hi - lo : 0.0;
}

// Largest finite |x| of a row: the scalar twin's exp(x - lse) carries u * |lse|.
template <class T>
double row_absmax(const T* x, std::size_t C) {
  double m = 0;
  for (std::size_t c = 0; c < C; ++c)
    if (std::isfinite(static_cast<double>(x[c]))) m = std::max(m, std::fabs(static_cast<double>(x[c])));
  return m;
}


// |v|, or 0 where v is not finite (such outputs are compared exactly, not within a scale).
template <class T>
double finite_abs(T v) {
  return std::isfinite(static_cast<double>(v)) ? std::fabs(static_cast<double>(v)) : 0.0;
}

// Probability targets for `rows` rows of C (row-major, like x): mostly non-negative rows normalised
// to sum 1; every fifth row unnormalised (sum 3), every seventh with zeros at about half its
// classes, every eleventh all zero. Where a row of x is -inf, rows r % 4 == 1 put target 0 there
// (loss NaN without smoothing, -inf * 0, as in PyTorch), rows r % 4 == 3 a positive target (loss +inf).
template <class T>
std::vector<T> make_prob_targets(const std::vector<T>& x, std::size_t rows, std::size_t C, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<T> t(x.size());
  for (std::size_t r = 0; r < rows; ++r) {
    T* row = t.data() + r * C;
    const T* xr = x.data() + r * C;
    double sum = 0;
    for (std::size_t c = 0; c < C; ++c) {
      double v = u(rng);
      if (r % 7 == 2 && u(rng) < 0.5) v = 0;
      if (r % 11 == 6) v = 0;
      if (std::isinf(static_cast<double>(xr[c])) && xr[c] < 0) {
        if (r % 4 == 1) v = 0;
        if (r % 4 == 3 && v == 0) v = 0.5;
      }
      row[c] = static_cast<T>(v);
      sum += static_cast<double>(row[c]);
    }
    const double norm = r % 5 == 4 ? 3.0 : 1.0;
    if (sum > 0)
      for (std::size_t c = 0; c < C; ++c) row[c] = static_cast<T>(static_cast<double>(row[c]) * norm / sum);
  }
  return t;
}

// Tolerance scales of cross-entropy with probability targets, from the rows of x and the targets
// (row-major), the class weights w, the per-row dloss dl, smoothing eps and the scalar table's
// results. With q[c] = t (1 - eps) + eps / C and Q = sum |w q|, the loss is a sum of terms
// |w q| (|x| + |lse|) (plus the row's range for x - max), and each gradient element g (p Q - w q)
// cancels between terms of size p Q and |w q|, each carrying u (range + absmax). No allowance
// grows with C: both tables sum Q and the loss accurately (the scalar twin with a compensated sum,
// which a plain double sum of 20000 equal terms eps / C would miss by ~1e-13).
struct ProbScales {
  std::vector<double> loss, grad, fused_grad;  // per row; per element (backward with dl; fused, dloss 1)
};
template <class T>
ProbScales prob_target_scales(const std::vector<T>& x, const std::vector<T>& tg, const std::vector<T>& w,
                              const std::vector<T>& dl, std::size_t rows, std::size_t C, double eps,
                              const std::vector<T>& scalar_loss, const std::vector<T>& scalar_dx,
                              const std::vector<T>& scalar_dxf) {
  const double uC = eps / static_cast<double>(C);
  ProbScales s{std::vector<double>(rows), std::vector<double>(rows * C), std::vector<double>(rows * C)};
  std::vector<double> wq(C);
  for (std::size_t r = 0; r < rows; ++r) {
    const T* xr = x.data() + r * C;
    const T* tr = tg.data() + r * C;
    const double rg = 1 + row_range(xr, C) + row_absmax(xr, C);
    double Q = 0;
    for (std::size_t c = 0; c < C; ++c) {
      const double q = eps > 0 ? static_cast<double>(tr[c]) * (1 - eps) + uC : static_cast<double>(tr[c]);
      wq[c] = std::fabs(static_cast<double>(w[c]) * q);
      Q += wq[c];
    }
    // lse <= max + log C: its size and rounding enter every term.
    s.loss[r] = finite_abs(scalar_loss[r]) + Q * (2 * row_absmax(xr, C) + 1 + std::log(static_cast<double>(C))) * rg;
    // p from the scalar fused gradient would be circular; recompute it in double from x.
    double m = -kInfD;
    for (std::size_t c = 0; c < C; ++c) m = std::max(m, static_cast<double>(xr[c]));
    double S = 0;
    if (std::isfinite(m))
      for (std::size_t c = 0; c < C; ++c) S += std::exp(static_cast<double>(xr[c]) - m);
    for (std::size_t c = 0; c < C; ++c) {
      const std::size_t i = r * C + c;
      const double p = std::isfinite(m) && S > 0 ? std::exp(static_cast<double>(xr[c]) - m) / S : 0.0;
      const double e = (p * Q + wq[c]) * rg;
      s.grad[i] = finite_abs(scalar_dx[i]) + std::fabs(static_cast<double>(dl[r])) * e;
      s.fused_grad[i] = finite_abs(scalar_dxf[i]) + e;
    }
  }
  return s;
}

// Softmax, log_softmax and cross-entropy (fused with and without label smoothing, forward with
// reduction none) on x of shape sh with class-index targets tgt of shape rs, with 1, 2 and 7
// threads: every output must be the same bits.
template <class T>
void expect_same_bits_for_1_2_7_threads(const std::vector<T>& x, const Shape& sh, const Shape& rs,
                                        const std::vector<std::int64_t>& tgt) {
  std::vector<T> ref[7];
  for (int threads : {1, 2, 7}) {
    set_num_threads(threads);
    std::vector<T> y(x.size()), ly(x.size()), dx(x.size()), loss(1), loss_none(tgt.size()), dxp(x.size()), lossp(1);
    ASSERT_TRUE(softmax_forward({x.data(), sh}, 1, {y.data(), sh}).ok());
    ASSERT_TRUE(log_softmax_forward({x.data(), sh}, 1, {ly.data(), sh}).ok());
    CrossEntropyOptions o;
    ASSERT_TRUE(cross_entropy_fused({x.data(), sh}, {tgt.data(), rs}, o, {lossp.data(), Shape{}}, {dxp.data(), sh}).ok());
    o.label_smoothing = 0.05;
    ASSERT_TRUE(cross_entropy_fused({x.data(), sh}, {tgt.data(), rs}, o, {loss.data(), Shape{}}, {dx.data(), sh}).ok());
    o.reduction = Reduction::kNone;
    ASSERT_TRUE(cross_entropy_forward({x.data(), sh}, {tgt.data(), rs}, o, {loss_none.data(), rs}).ok());
    std::vector<T>* outs[7] = {&y, &ly, &dx, &loss, &loss_none, &dxp, &lossp};
    const char* names[7] = {"softmax", "log_softmax", "fused gradient", "mean loss", "per-row loss",
                            "fused gradient without smoothing", "mean loss without smoothing"};
    for (int k = 0; k < 7; ++k) {
      if (threads == 1) ref[k] = *outs[k];
      else EXPECT_TRUE(same_bits(*outs[k], ref[k])) << names[k] << " with " << threads << " threads";
    }
  }
}


// The SIMD kernel sets this CPU supports ("scalar" alone on a CPU without any, so that a suite
// instantiated over them is never empty).
inline std::vector<std::string> simd_isas() {
  std::vector<std::string> v;
  for (const auto& name : supported_isas())
    if (name != "scalar") v.push_back(name);
  if (v.empty()) v.push_back("scalar");
  return v;
}

// A test parameterised by a SIMD kernel set's name; both(fn) runs fn(true) under that set, then
// fn(false) under the scalar set. Restores the automatic choice and thread count afterwards.
class IsaVsScalar : public ::testing::TestWithParam<std::string> {
 public:
  void TearDown() override {
    set_isa("auto").ignore_error();
    set_num_threads(0);
  }
  template <class F>
  void both(F fn) {
    ASSERT_TRUE(set_isa(GetParam()).ok());
    fn(true);
    ASSERT_TRUE(set_isa("scalar").ok());
    fn(false);
    ASSERT_TRUE(set_isa(GetParam()).ok());
  }
};


// A test parameterised by a kernel set's name that runs under that set; restores the automatic
// choice and thread count afterwards.
class UnderIsa : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { ASSERT_TRUE(set_isa(GetParam()).ok()); }
  void TearDown() override {
    set_isa("auto").ignore_error();
    set_num_threads(0);
  }
};

}  // namespace xent::simd_check
