// test_bce_tables.cc: the BCE-with-logits kernel pieces on every ISA this CPU runs (and the scalar
// table): log1p on [0, 1] (log1p-inl.h) against log1pl over a dense sweep, sum_terms' bits against
// an independent restatement of its order, and the bce_logits entry against the scalar twin on
// logits that reach every path (vectors whose exponentials are normal, vectors with |x| past the
// normal range of exp(-|x|), vectors handed to the scalar twin for a non-finite x, the tail), with
// and without pos_weight, weights and per-element upstream gradients. Internal: reaches src/cpu.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/kernels.h"
#include "simd_check.h"
#include "table_of.h"
#include "xent/xent.h"

namespace xent {
namespace {

using simd_check::UnderIsa;

using table_of::scalar;
using table_of::table;

class BceTables : public UnderIsa {};

// |y - r| in ulps of T at r (the smallest subnormal's below the normal range).
template <class T>
long double ulp_error(T y, long double r) {
  long double ulp = std::numeric_limits<T>::denorm_min();
  if (r >= std::numeric_limits<T>::min()) {
    int e;
    std::frexp(r, &e);
    ulp = std::ldexp(1.0L, e - std::numeric_limits<T>::digits);
  }
  return std::fabs(static_cast<long double>(y) - r) / ulp;
}

// Sweeps [0, 1] in n even steps and n values evenly spaced in bit pattern from +0 to 1 (every
// binade, subnormals included); returns the largest ulp error against log1pl.
template <class T>
long double sweep_log1p(std::size_t n, T* worst_x) {
  std::vector<T> x;
  x.reserve(2 * n + 4);
  for (std::size_t i = 0; i <= n; ++i) x.push_back(static_cast<T>(static_cast<long double>(i) / n));
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  const T one = 1;
  U one_bits;
  std::memcpy(&one_bits, &one, sizeof(T));
  for (U b = 0; b <= one_bits; b += std::max<U>(1, one_bits / static_cast<U>(n))) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    x.push_back(v);
  }
  std::vector<T> y(x.size());
  table<T>().log1p_unit(x.data(), y.data(), x.size());
  long double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const long double err = ulp_error(y[i], std::log1p(static_cast<long double>(x[i])));
    if (err > worst) worst = err, *worst_x = x[i];
    // Below the normal range log1p(x) is x itself; the polynomial's leading term is exact.
    if (x[i] < std::numeric_limits<T>::min()) {
      EXPECT_EQ(y[i], x[i]) << "log1p of a subnormal";
    }
  }
  return worst;
}

// The bounds log1p-inl.h and docs/numerics.md state: measured 1.34 ulp (float) and 1.56 (float64)
// with FMA (AVX2), 1.82 and 2.03 without (SSE4, where MulAdd rounds twice), 0.83 / 0.73 for the
// scalar table's std::log1p.
TEST_P(BceTables, Log1pUnitUlpBound) {
  float wf = 0;
  double wd = 0;
  const long double ef = sweep_log1p<float>(std::size_t{1} << 22, &wf);
  const long double ed = sweep_log1p<double>(std::size_t{1} << 21, &wd);
  std::printf("[%s] log1p_unit max error: float32 %.3Lf ulp (x = %.9g), float64 %.3Lf ulp (x = %.17g)\n",
              GetParam().c_str(), ef, static_cast<double>(wf), ed, wd);
  const bool fma = GetParam() != "sse4";
  EXPECT_LE(ef, fma ? 1.45L : 1.95L);
  EXPECT_LE(ed, fma ? 1.65L : 2.15L);
}

// sum_terms restated from its definition (kernels.h), independently of the kernels' code: lane k
// is the subsequence v[k], v[k + 8], ... summed by pairwise_sum's rule; then the lanes in pairs,
// then the tail in order.
double pairwise(const std::vector<double>& s, std::size_t lo, std::size_t n) {
  if (n <= 8) {
    double acc = 0;
    for (std::size_t i = 0; i < n; ++i) acc += s[lo + i];
    return acc;
  }
  return pairwise(s, lo, n / 2) + pairwise(s, lo + n / 2, n - n / 2);
}
double sum_terms_restated(const std::vector<double>& v) {
  const std::size_t m = v.size() / 8;
  double lane[8];
  for (std::size_t k = 0; k < 8; ++k) {
    std::vector<double> s;
    for (std::size_t g = 0; g < m; ++g) s.push_back(v[8 * g + k]);
    lane[k] = pairwise(s, 0, m);
  }
  double total = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  for (std::size_t i = 8 * m; i < v.size(); ++i) total += v[i];
  return total;
}

// Same bits as the restatement on every table (so for any ISA, and for the float16/bfloat16 tables
// that borrow the float32 entry), for lengths around the group, run and leaf sizes, on terms whose
// order matters (magnitudes over 12 decades, both signs); inf and NaN propagate.
TEST_P(BceTables, SumTermsSameBitsAsItsDefinition) {
  std::mt19937_64 rng(91);
  std::uniform_real_distribution<double> mant(-1, 1), expo(-6, 6);
  for (std::size_t n : std::initializer_list<std::size_t>{0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 200, 512,
                                                          1000, 1023, 1024, 1025, 2048, 4096, 5000}) {
    std::vector<double> v(n);
    for (auto& x : v) x = mant(rng) * std::pow(10.0, expo(rng));
    const double want = sum_terms_restated(v);
    for (auto* fn : {table<float>().sum_terms, table<double>().sum_terms, cpu::active_table_bf16().sum_terms,
                           cpu::active_table_f16().sum_terms}) {
      const double got = fn(v.data(), n);
      EXPECT_EQ(std::memcmp(&got, &want, sizeof(double)), 0) << GetParam() << " n " << n << ": " << got << " vs " << want;
    }
    // Accuracy: a pairwise sum, so within (log2 n + 4) u of the sum of |terms|.
    long double exact = 0, mag = 0;
    for (double x : v) exact += x, mag += std::fabs(x);
    EXPECT_LE(std::fabs(static_cast<long double>(want) - exact), (std::log2(n + 1.0) + 4) * 0x1p-53 * mag) << n;
    if (n >= 20) {
      std::vector<double> w = v;
      w[n / 2] = std::numeric_limits<double>::infinity();
      EXPECT_EQ(table<double>().sum_terms(w.data(), n), std::numeric_limits<double>::infinity());
      w[n - 3] = std::numeric_limits<double>::quiet_NaN();
      EXPECT_TRUE(std::isnan(table<double>().sum_terms(w.data(), n)));
    }
  }
}

// Logits that reach every path of the SIMD kernel, in blocks: ordinary (-4, 4); confident answers
// far past exp's normal range (|x| up to 120 in float, 760 in float64) with the target agreeing,
// so the loss is a tiny exp(-|x|); huge |x| = 1e4; tiny and signed-zero logits; and one block with
// +-inf and NaN (the scalar twin's). Blocks of 16 mix the paths inside each multi-vector step of
// the kernel (its per-vector fallback); blocks of 256 give whole steps of one kind (its fast path).
template <class T>
void logit_data(std::size_t n, std::mt19937_64& rng, std::vector<T>* x, std::vector<T>* t, std::size_t block = 16) {
  std::uniform_real_distribution<double> u(0, 1), small(-4, 4);
  const double far = sizeof(T) == 4 ? 120 : 760;
  x->resize(n);
  t->resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    double xv, tv = u(rng);
    switch ((i / block) % 5) {
      case 0: xv = small(rng); break;
      case 1: {
        const double mag = 20 + (far - 20) * u(rng);
        xv = u(rng) < 0.5 ? -mag : mag;
        tv = i % 4 == 0 ? u(rng) : (xv > 0 ? 1.0 : 0.0);  // mostly the right answer, confidently
        break;
      }
      case 2: xv = (i % 2 ? 1e4 : -1e4) * (0.5 + u(rng)); tv = i % 3 == 0 ? u(rng) : (xv > 0 ? 1.0 : 0.0); break;
      case 3: xv = i % 3 == 0 ? 0.0 : i % 3 == 1 ? -0.0 : 1e-30 * small(rng); break;
      default: xv = small(rng) * 8; break;
    }
    (*x)[i] = static_cast<T>(xv);
    (*t)[i] = static_cast<T>(tv);
  }
  if (n > 70) {
    (*x)[65] = std::numeric_limits<T>::infinity();
    (*x)[66] = -std::numeric_limits<T>::infinity();
    (*x)[69] = std::numeric_limits<T>::quiet_NaN();
  }
}

template <class T>
void logits_case(const std::string& isa) {
  constexpr double u = simd_check::kUlp<T>;
  // Results in the subnormal range carry exp_nonpos's error there (exp-inl.h: up to 1.8 (float) and
  // 26 (float64) units of the smallest subnormal), times the factors applied after it.
  const double sub = (sizeof(T) == 4 ? 2.0 : 32.0) * static_cast<double>(std::numeric_limits<T>::denorm_min());
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> wpos(0.25, 3);
  for (const auto& [n, block] : {std::pair<std::size_t, std::size_t>{1, 16}, {13, 16}, {203, 16}, {1100, 256}}) {
    std::vector<T> x, t;
    logit_data<T>(n, rng, &x, &t, block);
    std::vector<T> w(n), pw(n), dl(n);
    for (std::size_t i = 0; i < n; ++i) w[i] = T(wpos(rng)), pw[i] = T(wpos(rng)), dl[i] = T(wpos(rng) - 1);
    for (int variant = 0; variant < 6; ++variant) {
      cpu::BceArgs<T> a;
      a.x = x.data();
      a.target = t.data();
      if (variant == 1 || variant == 4) a.weight = w.data(), a.w_step = 1;
      if (variant == 5) a.weight = w.data(), a.w_step = 0;
      if (variant == 2 || variant == 4) a.pos_weight = pw.data(), a.pw_step = 1;
      if (variant == 3 || variant == 5) a.pos_weight = pw.data(), a.pw_step = 0;
      const std::string what = isa + " " + simd_check::type_name<T>() + " n " + std::to_string(n) + " variant " +
                               std::to_string(variant);
      // Forward: every term of the rearranged form is >= 0 here (t in [0, 1], pw > 0), so the loss
      // is accurate relative to itself: a few ulp of T (the SIMD path computes in T).
      std::vector<double> ls(n), lv(n);
      cpu::BceArgs<T> f = a;
      f.elem_loss = ls.data();
      scalar<T>().bce_logits(f, n);
      f.elem_loss = lv.data();
      table<T>().bce_logits(f, n);
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(ls[i])) {
          EXPECT_TRUE(std::isnan(ls[i]) ? std::isnan(lv[i]) : lv[i] == ls[i]) << what << " x " << x[i];
          continue;
        }
        const double lw = a.pos_weight ? (static_cast<double>(pw[a.pw_step * i]) - 1) * static_cast<double>(t[i]) + 1 : 1;
        const double wi = a.weight ? static_cast<double>(w[a.w_step * i]) : 1.0;
        EXPECT_LE(std::fabs(lv[i] - ls[i]), 8 * u * std::fabs(ls[i]) + sub * (1 + std::fabs(lw * wi)))
            << what << " loss at x " << x[i] << " t " << t[i] << ": " << lv[i] << " vs " << ls[i];
      }
      // Backward, with per-element upstream gradients and with a scale only.
      for (int per_elem = 0; per_elem < 2; ++per_elem) {
        std::vector<T> ds(n), dv(n);
        cpu::BceArgs<T> b = a;
        b.dloss = per_elem ? dl.data() : nullptr;
        b.dloss_scale = per_elem ? 1.0 : 0.37;
        b.dx = ds.data();
        scalar<T>().bce_logits(b, n);
        b.dx = dv.data();
        table<T>().bce_logits(b, n);
        for (std::size_t i = 0; i < n; ++i) {
          const double xi = static_cast<double>(x[i]);
          if (std::isnan(xi)) {
            EXPECT_TRUE(std::isnan(static_cast<double>(dv[i]))) << what;
            continue;
          }
          const double sig = 1 / (1 + std::exp(-xi)), ti = static_cast<double>(t[i]);
          const double p = a.pos_weight ? static_cast<double>(pw[a.pw_step * i]) : 1.0;
          const double wi = a.weight ? static_cast<double>(w[a.w_step * i]) : 1.0;
          const double g = per_elem ? static_cast<double>(dl[i]) : 0.37;
          const double scale = (std::fabs(p * ti + 1 - ti) * sig + std::fabs(p * ti)) * std::fabs(g * wi);
          EXPECT_LE(std::fabs(static_cast<double>(dv[i]) - static_cast<double>(ds[i])),
                    8 * u * scale + sub * (1 + std::fabs((p * ti + 1 - ti) * g * wi)))
              << what << " dx at x " << x[i] << " t " << t[i];
        }
      }
    }
  }
}

TEST_P(BceTables, LogitsMatchScalarOnEveryPath) {
  logits_case<float>(GetParam());
  logits_case<double>(GetParam());
}

// bce_logits_sum (SIMD tables): the same bits as bce_logits into a buffer and then sum_terms, for
// lengths whose tree the kernel follows as it goes (64 * 2^k) and others (a buffer), over losses from
// 1e-35 to 80 (order-sensitive sums) with weights and pos_weight; runs of 64 whose logits are all
// below exp's tiny bound (the in-register path) beside runs holding huge or non-finite logits (the
// run's buffer).
template <class S>
void logits_sum_case(const std::string& isa, const cpu::KernelTable<S>& tab, const char* name) {
  if (isa == "scalar") {
    EXPECT_EQ(tab.bce_logits_sum, nullptr) << "the scalar tables sum in two passes";
    return;
  }
  ASSERT_NE(tab.bce_logits_sum, nullptr) << isa << " " << name;
  std::mt19937_64 rng(23);
  std::uniform_real_distribution<double> u(0, 1), expo(-3, 1.9), wpos(0.25, 3);
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{64}, std::size_t{128}, std::size_t{512},
                        std::size_t{960}, std::size_t{1000}, std::size_t{1024}}) {
    std::vector<S> x(n), t(n), w(n), pw(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t run = i / 64;
      double mag = std::pow(10.0, expo(rng));
      if (run % 5 == 3) mag = i % 7 == 0 ? 100 + 1e4 * u(rng) : mag;  // a run with huge logits
      const double xv = u(rng) < 0.5 ? -mag : mag;
      const double tv = i % 3 == 0 ? (xv > 0 ? 1.0 : 0.0) : u(rng);  // a third confidently right
      x[i] = S(static_cast<float>(xv));
      t[i] = S(static_cast<float>(tv));
      w[i] = S(static_cast<float>(wpos(rng)));
      pw[i] = S(static_cast<float>(wpos(rng)));
    }
    for (int variant = 0; variant < 6; ++variant) {
      // Last: +inf with t < 1 in a run of otherwise ordinary logits, an infinite loss (scalar twin).
      if (variant == 5 && n > 200) x[200] = S(std::numeric_limits<float>::infinity()), t[200] = S(0.5f);
      cpu::BceArgs<S> a;
      a.x = x.data();
      a.target = t.data();
      if (variant == 1 || variant == 4) a.weight = w.data(), a.w_step = variant == 4 ? 0 : 1;
      if (variant == 2 || variant == 3) a.pos_weight = pw.data(), a.pw_step = variant == 3 ? 0 : 1;
      if (variant == 4) a.pos_weight = pw.data(), a.pw_step = 1;
      std::vector<double> buf(n);
      cpu::BceArgs<S> f = a;
      f.elem_loss = buf.data();
      tab.bce_logits(f, n);
      const double want = tab.sum_terms(buf.data(), n);
      const double got = tab.bce_logits_sum(a, n);
      EXPECT_EQ(std::memcmp(&got, &want, sizeof(double)), 0)
          << isa << " " << name << " n " << n << " variant " << variant << ": " << got << " vs " << want;
      if (variant == 5 && n > 200) {
        EXPECT_EQ(got, std::numeric_limits<double>::infinity());
      }
    }
  }
}

TEST_P(BceTables, LogitsSumSameBitsAsTwoPasses) {
  logits_sum_case<float>(GetParam(), table<float>(), "float32");
  logits_sum_case<double>(GetParam(), table<double>(), "float64");
  logits_sum_case<cpu::BF16>(GetParam(), cpu::active_table_bf16(), "bfloat16");
  logits_sum_case<cpu::F16>(GetParam(), cpu::active_table_f16(), "float16");
}

// bfloat16 and float16 (computed in float32, dx rounded once): the loss within a few float32 ulps
// of the scalar twin's (double inside), dx within one ulp of the 16-bit type plus float32's error.
template <class H>
void logits_half_case(const std::string& isa, const cpu::KernelTable<H>& simd, const cpu::KernelTable<H>& twin,
                      double ulp16, const char* name) {
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> wpos(0.25, 3);
  const double sub = 2.0 * static_cast<double>(std::numeric_limits<float>::denorm_min());
  const double sub16 = std::is_same_v<H, cpu::F16> ? 0x1p-24 : 0.0;
  for (const auto& [n, block] : {std::pair<std::size_t, std::size_t>{5, 16}, {203, 16}, {1100, 256}}) {
    std::vector<float> xf, tf;
    logit_data<float>(n, rng, &xf, &tf, block);
    std::vector<H> x(n), t(n), w(n), pw(n), dl(n);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = H(xf[i]), t[i] = H(tf[i]);
      w[i] = H(wpos(rng)), pw[i] = H(wpos(rng)), dl[i] = H(wpos(rng) - 1);
    }
    for (int variant = 0; variant < 3; ++variant) {
      cpu::BceArgs<H> a;
      a.x = x.data();
      a.target = t.data();
      if (variant >= 1) a.weight = w.data(), a.w_step = 1;
      if (variant == 2) a.pos_weight = pw.data(), a.pw_step = 1;
      const std::string what = isa + " " + name + " n " + std::to_string(n) + " variant " + std::to_string(variant);
      std::vector<double> ls(n), lv(n);
      cpu::BceArgs<H> f = a;
      f.elem_loss = ls.data();
      twin.bce_logits(f, n);
      f.elem_loss = lv.data();
      simd.bce_logits(f, n);
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(ls[i])) {
          EXPECT_TRUE(std::isnan(ls[i]) ? std::isnan(lv[i]) : lv[i] == ls[i]) << what;
          continue;
        }
        EXPECT_LE(std::fabs(lv[i] - ls[i]), 8 * 0x1p-24 * std::fabs(ls[i]) + 16 * sub) << what << " loss at x " << float(x[i]);
      }
      std::vector<H> ds(n), dv(n);
      cpu::BceArgs<H> b = a;
      b.dloss = dl.data();
      b.dx = ds.data();
      twin.bce_logits(b, n);
      b.dx = dv.data();
      simd.bce_logits(b, n);
      for (std::size_t i = 0; i < n; ++i) {
        const double xi = static_cast<double>(static_cast<float>(x[i]));
        const double got = static_cast<float>(dv[i]), want = static_cast<float>(ds[i]);
        if (std::isnan(xi)) {
          EXPECT_TRUE(std::isnan(got)) << what;
          continue;
        }
        const double sig = 1 / (1 + std::exp(-xi)), ti = static_cast<float>(t[i]);
        const double p = a.pos_weight ? static_cast<double>(static_cast<float>(pw[i])) : 1.0;
        const double wi = a.weight ? static_cast<double>(static_cast<float>(w[i])) : 1.0;
        const double g = static_cast<float>(dl[i]);
        const double scale = (std::fabs(p * ti + 1 - ti) * sig + std::fabs(p * ti)) * std::fabs(g * wi);
        EXPECT_LE(std::fabs(got - want), ulp16 * std::fabs(want) + 8 * 0x1p-24 * scale + sub16 + 16 * sub)
            << what << " dx at x " << xi << ": " << got << " vs " << want;
      }
    }
  }
}

// BCE on probabilities in bfloat16 and float16 (computed in float32 by Highway's Log / Log1p, dx
// rounded once): against the scalar twin (double inside). Probabilities spread over 20 decades on
// both sides of 1/2 (1 - p down to the type's epsilon; p down to 1e-20, 1e-7 in float16), and blocks holding 0, 1 and subnormals
// (the -100 clamps; those vectors go to the twin whole). The loss has no cancelling terms, so it is
// held to 16 float32 ulps of itself (Log's 4 ulp, times a few operations); dx to one 16-bit ulp
// plus the float32 error.
template <class H>
void bce_half_case(const std::string& isa, const cpu::KernelTable<H>& simd, const cpu::KernelTable<H>& twin,
                   double ulp16, const char* name) {
  std::mt19937_64 rng(29);
  // float16's smallest normal is 6e-5, its subnormals reach 6e-8: p from 1e-7 up (1e-20 in bfloat16).
  std::uniform_real_distribution<double> u(0, 1), expo(std::is_same_v<H, cpu::F16> ? -7 : -20, -0.31), wpos(0.25, 3);
  const double eps16 = 2 * ulp16;  // 1 - p >= the type's epsilon: p = 1 - eps16 is representable
  for (std::size_t n : {std::size_t{3}, std::size_t{203}, std::size_t{1100}}) {
    std::vector<H> x(n), t(n), w(n), dl(n);
    for (std::size_t i = 0; i < n; ++i) {
      double p = std::pow(10.0, expo(rng));  // (1e-20, 0.49)
      if (i % 2 == 1) p = 1 - std::max(p, eps16);
      if ((i / 64) % 4 == 3) p = i % 3 == 0 ? 0.0 : i % 3 == 1 ? 1.0 : 1e-41;  // clamps and subnormals
      x[i] = H(static_cast<float>(p));
      t[i] = H(static_cast<float>(i % 5 == 0 ? (i % 2 ? 1.0 : 0.0) : u(rng)));
      w[i] = H(static_cast<float>(wpos(rng)));
      dl[i] = H(static_cast<float>(wpos(rng) - 1));
    }
    for (int variant = 0; variant < 3; ++variant) {
      cpu::BceArgs<H> a;
      a.x = x.data();
      a.target = t.data();
      if (variant == 1) a.weight = w.data(), a.w_step = 1;
      if (variant == 2) a.weight = w.data(), a.w_step = 0;
      const std::string what = isa + " " + name + " n " + std::to_string(n) + " variant " + std::to_string(variant);
      std::vector<double> ls(n), lv(n);
      cpu::BceArgs<H> f = a;
      f.elem_loss = ls.data();
      twin.bce(f, n);
      f.elem_loss = lv.data();
      simd.bce(f, n);
      for (std::size_t i = 0; i < n; ++i) {
        EXPECT_LE(std::fabs(lv[i] - ls[i]), 16 * 0x1p-24 * std::fabs(ls[i])) << what << " loss at p " << float(x[i]);
      }
      for (int per_elem = 0; per_elem < 2; ++per_elem) {
        std::vector<H> ds(n), dv(n);
        cpu::BceArgs<H> b = a;
        b.dloss = per_elem ? dl.data() : nullptr;
        b.dloss_scale = per_elem ? 1.0 : 0.37;
        b.dx = ds.data();
        twin.bce(b, n);
        b.dx = dv.data();
        simd.bce(b, n);
        for (std::size_t i = 0; i < n; ++i) {
          const double got = static_cast<float>(dv[i]), want = static_cast<float>(ds[i]);
          if (std::isinf(want)) {
            EXPECT_EQ(got, want) << what;
            continue;
          }
          EXPECT_LE(std::fabs(got - want), (ulp16 + 16 * 0x1p-24) * std::fabs(want)) << what << " dx at p " << float(x[i]);
        }
      }
    }
  }
}

TEST_P(BceTables, SixteenBitBceMatchScalar) {
  if (GetParam() != "scalar") {
    EXPECT_NE(cpu::active_table_bf16().bce, cpu::scalar_table_bf16().bce) << "bce_hwy.cc 16-bit";
    EXPECT_NE(cpu::active_table_f16().bce, cpu::scalar_table_f16().bce) << "bce_hwy.cc 16-bit";
  }
  bce_half_case<cpu::BF16>(GetParam(), cpu::active_table_bf16(), cpu::scalar_table_bf16(), 0x1p-7, "bfloat16");
  bce_half_case<cpu::F16>(GetParam(), cpu::active_table_f16(), cpu::scalar_table_f16(), 0x1p-10, "float16");
}

TEST_P(BceTables, SixteenBitLogitsMatchScalar) {
  if (GetParam() != "scalar") {
    EXPECT_NE(cpu::active_table_bf16().bce_logits, cpu::scalar_table_bf16().bce_logits) << "bce_hwy.cc 16-bit";
  }
  logits_half_case<cpu::BF16>(GetParam(), cpu::active_table_bf16(), cpu::scalar_table_bf16(), 0x1p-7, "bfloat16");
  logits_half_case<cpu::F16>(GetParam(), cpu::active_table_f16(), cpu::scalar_table_f16(), 0x1p-10, "float16");
}

INSTANTIATE_TEST_SUITE_P(Isa, BceTables, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace xent
