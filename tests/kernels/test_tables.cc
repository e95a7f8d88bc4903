// test_tables.cc: the kernel tables as assembled from the op-family units (every ISA this CPU runs
// lists a table whose family entries are its own, not the scalar fallback's), the SIMD exponential's
// ulp bound over a dense sweep against expl, and the soft-cap entry on every ISA against the scalar
// table's double-precision tanh. Internal: reaches src/cpu through cpu/kernels.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa_tables.h"
#include "cpu/kernels.h"
#include "simd_check.h"
#include "table_of.h"
#include "xent/xent.h"

namespace xent {
namespace {

using simd_check::simd_isas;
using simd_check::UnderIsa;

using table_of::scalar;
using table_of::table;

class Tables : public UnderIsa {};

template <class T>
void expect_own_entries(const std::string& isa) {
  const auto& t = table<T>();
  const auto& s = scalar<T>();
  EXPECT_EQ(std::string(t.name), isa);
  if (isa == "scalar") return;
  // One entry per family unit: each must be the family's, not the copied scalar one.
  EXPECT_NE(t.softmax_fwd, s.softmax_fwd) << "softmax_hwy.cc";
  EXPECT_NE(t.chunk_log_softmax_bwd, s.chunk_log_softmax_bwd) << "softmax_hwy.cc";
  EXPECT_NE(t.ce_index_i64, s.ce_index_i64) << "cross_entropy_hwy.cc";
  EXPECT_NE(t.count_kept_i32, s.count_kept_i32) << "cross_entropy_hwy.cc";
  EXPECT_NE(t.bce_logits, s.bce_logits) << "bce_hwy.cc";
  EXPECT_NE(t.softcap, s.softcap) << "softcap_hwy.cc";
  EXPECT_NE(t.exp_nonpos, s.exp_nonpos) << "exp hook";
  // Entries whose strided blocks (and ce_stats's short rows) used to be handed whole to the scalar
  // twin: the SIMD units' own now (test_strided.cc compares their results).
  EXPECT_NE(t.logsumexp_bwd, s.logsumexp_bwd) << "softmax_hwy.cc";
  EXPECT_NE(t.ce_prob, s.ce_prob) << "cross_entropy_hwy.cc";
  EXPECT_NE(t.nll_i64, s.nll_i64) << "cross_entropy_hwy.cc";
  EXPECT_NE(t.ce_stats, s.ce_stats) << "cross_entropy_hwy.cc";
}

TEST_P(Tables, AssembledFromEveryFamily) {
  expect_own_entries<float>(GetParam());
  expect_own_entries<double>(GetParam());
}

// The compiled-in list is Highway's target list, best first, each name once; the names this CPU
// runs (supported_isas) are that list's entries in the same order, then "scalar". Only the tables
// the CPU supports are touched (the others' code may not run here).
TEST(Tables, ListDerivedFromHighwayTargets) {
  std::size_t n = 0;
  const cpu::IsaTables* list = cpu::simd_isa_tables(&n);
  ASSERT_GE(n, 1u);
  const auto isas = supported_isas();
  std::size_t next = 0;
  std::int64_t prev = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_NE(list[i].f32, nullptr);
    ASSERT_NE(list[i].f64, nullptr);
    EXPECT_GT(list[i].hwy_target, prev) << list[i].name << " listed after a worse target";
    prev = list[i].hwy_target;
    for (std::size_t j = 0; j < i; ++j) EXPECT_STRNE(list[j].name, list[i].name);
    if (next < isas.size() && isas[next] == list[i].name) {
      EXPECT_EQ(std::string(list[i].f32().name), list[i].name);
      EXPECT_EQ(std::string(list[i].f64().name), list[i].name);
      ++next;
    }
  }
  ASSERT_EQ(next + 1, isas.size()) << "supported_isas() is not the compiled list filtered, then scalar";
  EXPECT_EQ(isas.back(), "scalar");
}

// ulp error of y against the exact value r: |y - r| / ulp(r), where ulp(r) is the spacing of T at
// r's binade (the smallest subnormal's for results below the normal range).
template <class T>
long double ulp_error(T y, long double r) {
  constexpr int kDigits = std::numeric_limits<T>::digits;
  const long double min_normal = std::numeric_limits<T>::min();
  long double ulp;
  if (r < min_normal) {
    ulp = std::numeric_limits<T>::denorm_min();
  } else {
    int e;
    std::frexp(r, &e);
    ulp = std::ldexp(1.0L, e - kDigits);
  }
  return std::fabs(static_cast<long double>(y) - r) / ulp;
}

// The largest ulp errors of the table's exp_nonpos over a sweep, by range of x: `main` for x at or
// above the threshold `tiny_x` of exp-inl.h's reduced-range path (-87 float, -708 double), `band`
// for normal results below it, `sub` for subnormal results (in units of the smallest subnormal).
struct ExpErrors {
  long double main = 0, band = 0, sub = 0;
  double worst_main_x = 0;
};

// Sweeps [lo, 0] in n even steps plus n values evenly spaced in bit pattern from -0 down to lo
// (dense near 0, where x - m of near-tied logits lands, and through every binade), and -inf.
template <class T>
ExpErrors sweep_exp(T lo, T tiny_x, std::size_t n) {
  std::vector<T> x;
  x.reserve(2 * n + 16);
  for (std::size_t i = 0; i <= n; ++i) x.push_back(static_cast<T>(lo * (static_cast<long double>(i) / n)));
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  U lo_bits;
  std::memcpy(&lo_bits, &lo, sizeof(T));
  const U neg_zero = U{1} << (8 * sizeof(T) - 1);
  const U step = std::max<U>(1, (lo_bits - neg_zero) / static_cast<U>(n));
  for (U b = neg_zero; b <= lo_bits; b += step) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    x.push_back(v);
  }
  x.push_back(-std::numeric_limits<T>::infinity());
  std::vector<T> y(x.size());
  table<T>().exp_nonpos(x.data(), y.data(), x.size());
  ExpErrors e;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isinf(x[i])) {
      EXPECT_EQ(y[i], T(0));
      continue;
    }
    const long double r = std::exp(static_cast<long double>(x[i]));
    const long double err = ulp_error(y[i], r);
    if (r < std::numeric_limits<T>::min()) {
      e.sub = std::max(e.sub, err);
    } else if (x[i] < tiny_x) {
      e.band = std::max(e.band, err);
    } else if (err > e.main) {
      e.main = err;
      e.worst_main_x = static_cast<double>(x[i]);
    }
  }
  return e;
}

// The bounds exp-inl.h and docs/numerics.md state, as measured by this sweep (with a margin for
// the values it does not visit): over the main range <= 1.0 ulp in float (the table form:
// measured 0.70 with FMA, 0.91 without, on AVX2 and SSE4) and <= 1.1 in double (measured 1.00 and
// 0.95); in the narrow band below -87 / -708
// (results under 2^-125 / 2^-1021 of the row's largest term) the reduced-range path adds the
// rounding of x + 64 ln 2: measured 2.1 ulp (float) and 38 ulp (double) there, 1.8 and 26 units of
// the smallest subnormal for subnormal results. The scalar table (std::exp) is checked too.
TEST_P(Tables, ExpUlpBound) {
  const ExpErrors f = sweep_exp<float>(-104.0f, -87.0f, std::size_t{1} << 22);
  const ExpErrors d = sweep_exp<double>(-746.0, -708.0, std::size_t{1} << 20);
  std::printf("[%s] exp_nonpos max error: float32 %.3Lf ulp (x = %.9g), band %.3Lf ulp, subnormal %.3Lf; "
              "float64 %.3Lf ulp (x = %.17g), band %.3Lf ulp, subnormal %.3Lf\n",
              GetParam().c_str(), f.main, f.worst_main_x, f.band, f.sub, d.main, d.worst_main_x, d.band, d.sub);
  EXPECT_LE(f.main, 1.0L);
  EXPECT_LE(d.main, 1.1L);
  EXPECT_LE(f.band, 3.0L);
  EXPECT_LE(d.band, 48.0L);
  EXPECT_LE(f.sub, 2.0L);
  EXPECT_LE(d.sub, 32.0L);
  // NaN stays NaN whatever its sign and payload: the float path builds 2^n from the integer bits
  // of a sum that holds x's payload when x is NaN, so every payload bit pattern is tried (quiet
  // and signalling, both signs), in whole vectors and the tail, mixed with ordinary lanes.
  std::vector<float> nan_in;
  for (std::uint32_t sign : {0u, 0x80000000u})
    for (std::uint32_t payload = 1; payload < (1u << 23); payload = payload * 3 + 1) {
      const std::uint32_t bits = sign | 0x7F800000u | payload;
      float v;
      std::memcpy(&v, &bits, sizeof v);
      nan_in.push_back(v);
      nan_in.push_back(-1.5f);
    }
  nan_in.push_back(std::numeric_limits<float>::quiet_NaN());
  std::vector<float> nan_out(nan_in.size(), 0.0f);
  table<float>().exp_nonpos(nan_in.data(), nan_out.data(), nan_in.size());
  for (std::size_t i = 0; i < nan_in.size(); ++i) {
    if (std::isnan(nan_in[i])) {
      EXPECT_TRUE(std::isnan(nan_out[i])) << "lane " << i;
    } else {
      EXPECT_LE(ulp_error(nan_out[i], std::exp(static_cast<long double>(nan_in[i]))), 1.0L) << "lane " << i;
    }
  }
}

// Soft-cap on every ISA against the scalar table (tanh in double, rounded once).
template <class T>
void softcap_case(const std::string& isa) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-60, 60);
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{16}, std::size_t{67}, std::size_t{1000}}) {
    for (double s : {1.0, 15.0, 30.0}) {
      std::vector<T> z(n);
      for (auto& v : z) v = static_cast<T>(u(rng));
      if (n > 3) z[2] = T(0), z[3] = static_cast<T>(1e-3);
      std::vector<T> a = z, b = z;
      table<T>().softcap(a.data(), n, static_cast<T>(s));
      scalar<T>().softcap(b.data(), n, static_cast<T>(s));
      for (std::size_t i = 0; i < n; ++i) {
        // Highway's Tanh is a few ulp; 8 ulp of the capped value (relative to s for tiny ones).
        const double tol = 8 * simd_check::kUlp<T> * std::max<double>(std::fabs(b[i]), 1e-3 * s);
        ASSERT_LE(std::fabs(static_cast<double>(a[i]) - b[i]), tol)
            << isa << " " << simd_check::type_name<T>() << " z " << z[i] << " s " << s;
      }
    }
  }
}

TEST_P(Tables, SoftcapMatchesScalar) {
  softcap_case<float>(GetParam());
  softcap_case<double>(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Isa, Tables, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace xent
