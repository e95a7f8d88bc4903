// test_token_stats.cc: cross_entropy_token_stats (forward-only per-token logsumexp, softmax entropy
// and argmax == target) on every ISA, in float32, float64, bfloat16 and float16, contiguous and
// strided, against a direct long-double computation written here (entropy as -sum p log p, argmax
// by a plain first-maximum scan), each SIMD table against the scalar twin, thread counts, special
// rows (NaN, +inf, all -inf, -inf masks, ties) and bad input. Not the CLI (test_cli_token_stats.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "test_util.h"

namespace xent::test {
namespace {

template <class T>
double unit_of() {
  if constexpr (std::is_same_v<T, bfloat16>) return 0x1p-8;  // half an ulp: rounded once from ~float32
  else if constexpr (std::is_same_v<T, float16>) return 0x1p-11;
  else return unit<T>();
}

// The statistics of one row, directly: lse = log sum exp (an infinite max replaced by 0, as
// torch.logsumexp), entropy = -sum p log p over p > 0, argmax = first max (first NaN).
struct RowStats {
  Real lse, entropy;
  std::int64_t argmax;
};
RowStats direct(const std::vector<Real>& row) {
  RowStats s{0, 0, row.empty() ? -1 : 0};
  Real m = -INFINITY;
  bool nan = false;
  for (std::size_t c = 0; c < row.size(); ++c) {
    if (std::isnan(row[c])) {
      if (!nan) s.argmax = static_cast<std::int64_t>(c);
      nan = true;
    } else if (!nan && row[c] > row[static_cast<std::size_t>(s.argmax)]) {
      s.argmax = static_cast<std::int64_t>(c);
    }
    m = std::max(m, row[c]);
  }
  if (nan) return {NAN, NAN, s.argmax};
  const Real mm = std::isinf(m) ? 0 : m;
  Real S = 0;
  for (Real v : row) S += std::exp(v - mm);
  s.lse = mm + std::log(S);
  if (!std::isfinite(m)) {
    s.entropy = NAN;
    return s;
  }
  Real H = 0;
  for (Real v : row) {
    const Real p = std::exp(v - m) / S;
    if (p > 0) H -= p * std::log(p);
  }
  s.entropy = H;
  return s;
}

struct Data {
  ref::Shape shape, tshape;
  std::int64_t C = 0, inner = 1;
};

template <class T>
std::vector<T> make_x(const ref::Shape& shape, std::uint64_t seed, bool specials) {
  Rng rng(seed);
  const std::int64_t n = ref::numel(shape);
  std::vector<T> x(static_cast<std::size_t>(n));
  for (auto& v : x) v = from_double<T>(rng.uniform(-5, 5));
  if (!specials || shape.size() != 2 || shape[0] < 8) return x;
  const std::int64_t C = shape[1];
  auto at = [&](std::int64_t r, std::int64_t c) -> T& { return x[static_cast<std::size_t>(r * C + c)]; };
  const T inf = from_double<T>(INFINITY), nan = from_double<T>(NAN);
  for (std::int64_t c = 0; c < C; ++c) at(1, c) = from_double<T>(-INFINITY);         // all -inf
  at(2, C / 2) = nan;                                                                // a NaN
  at(2, C - 1) = inf;                                                                // and a later +inf
  at(3, C - 1) = inf;                                                                // +inf
  for (std::int64_t c = 0; c < C; c += 2) at(5, c) = from_double<T>(-INFINITY);     // -inf mask
  for (std::int64_t c = 0; c < C; ++c) at(4, c) = from_double<T>(c % 3 == 1 ? 7 : 1);  // ties at 1, 4, ...
  at(6, C - 1) = from_double<T>(50);                                                 // max in the tail
  at(7, 0) = from_double<T>(50);                                                     // max first
  if (C > 1) at(7, C - 1) = from_double<T>(50);                                      // and tied last
  return x;
}

template <class T, class I>
struct Out {
  std::vector<T> lse, ent;
  std::vector<I> correct;
};

template <class T, class I>
Out<T, I> run_stats(const ref::Shape& shape, const std::vector<T>& x, const std::vector<I>& t, const ref::Shape& ts) {
  Out<T, I> o;
  o.lse.assign(t.size(), T{});
  o.ent.assign(t.size(), T{});
  o.correct.assign(t.size(), I{7});
  const Status s = cross_entropy_token_stats({x.data(), to_shape(shape)}, {t.data(), to_shape(ts)}, {},
                                             {o.lse.data(), to_shape(ts)}, {o.ent.data(), to_shape(ts)},
                                             {o.correct.data(), to_shape(ts)});
  EXPECT_TRUE(s.ok()) << s.to_string();
  return o;
}

template <class T, class I>
void check_case(const ref::Shape& shape, std::uint64_t seed, bool specials) {
  SCOPED_TRACE(std::string(std::is_same_v<T, float> ? "float32" : std::is_same_v<T, double> ? "float64" : "16-bit") +
               " " + shape_str(shape) + (specials ? " with special rows" : ""));
  const bool one_d = shape.size() == 1;
  const std::int64_t C = one_d ? shape[0] : shape[1];
  const ref::Shape ts = one_d ? ref::Shape{} : ref::shape_without(shape, 1);
  const std::int64_t rows = ref::numel(ts), inner = shape.size() <= 2 ? 1 : ref::numel(shape) / (shape[0] * C);
  const std::vector<T> x = make_x<T>(shape, seed, specials);
  // Targets: the argmax (so "correct" is 1 there: a wrong tie rule shows), another class on every
  // fourth row, every seventh ignored.
  std::vector<I> t(static_cast<std::size_t>(rows));
  std::vector<RowStats> want(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    std::vector<Real> row;
    for (std::int64_t c = 0; c < C; ++c) row.push_back(real_of(x[static_cast<std::size_t>((r / inner * C + c) * inner + r % inner)]));
    want[r] = direct(row);
    t[r] = static_cast<I>(r % 7 == 6 ? -100 : r % 4 != 3 ? want[r].argmax : (want[r].argmax + 1) % C);
  }
  const Out<T, I> got = run_stats<T, I>(shape, x, t, ts);
  int bad = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const RowStats& w = want[r];
    const I expect_correct = static_cast<I>(t[r] == -100 ? -1 : t[r] == w.argmax ? 1 : 0);
    auto near = [&](Real g, Real e, Real scale) {
      if (std::isnan(e) || std::isnan(g)) return std::isnan(e) && std::isnan(g);
      if (std::isinf(e) || std::isinf(g)) return g == e;
      return std::fabs(g - e) <= unit_of<T>() * scale + 1e-30L;
    };
    const Real lse_scale = std::fabs(w.lse) + 2, ent_scale = std::fabs(w.entropy) + 4 * std::log(static_cast<Real>(C) + 1) + 1;
    const bool ok = got.correct[r] == expect_correct && near(real_of(got.lse[r]), w.lse, lse_scale) &&
                    near(real_of(got.ent[r]), w.entropy, ent_scale * (std::is_same_v<T, float> ? 4 : 1));
    if (!ok && bad++ < 5)
      ADD_FAILURE() << "row " << r << ": lse " << static_cast<double>(real_of(got.lse[r])) << " vs "
                    << static_cast<double>(w.lse) << ", entropy " << static_cast<double>(real_of(got.ent[r])) << " vs "
                    << static_cast<double>(w.entropy) << ", correct " << static_cast<std::int64_t>(got.correct[r])
                    << " vs " << static_cast<std::int64_t>(expect_correct) << " (argmax " << w.argmax << ")";
  }
}

const std::vector<ref::Shape>& shapes() {
  static const std::vector<ref::Shape> v = {{16, 3},  {16, 8},  {16, 17}, {16, 33}, {9, 100},
                                            {9, 1001}, {3, 70000}, {5, 7, 3}, {2, 40, 9}, {13}};
  return v;
}

class TokenStats : public IsaTest {};

TEST_P(TokenStats, VsDirectComputation) {
  std::uint64_t seed = 1;
  for (const auto& s : shapes()) {
    for (bool specials : {false, true}) {
      check_case<float, std::int64_t>(s, seed++, specials);
      check_case<double, std::int32_t>(s, seed++, specials);
      check_case<bfloat16, std::int64_t>(s, seed++, specials);
      check_case<float16, std::int32_t>(s, seed++, specials);
    }
  }
}

// Each SIMD table against the scalar twin: correct's bits equal, lse and entropy within a few ulp.
TEST_P(TokenStats, SimdMatchesScalarTwin) {
  if (GetParam() == "scalar") GTEST_SKIP() << "the scalar table is the twin";
  std::uint64_t seed = 50;
  for (const auto& s : shapes()) {
    for (bool specials : {false, true}) {
      SCOPED_TRACE(shape_str(s) + (specials ? " with special rows" : ""));
      const std::vector<float> x = make_x<float>(s, seed++, specials);
      const ref::Shape ts = s.size() == 1 ? ref::Shape{} : ref::shape_without(s, 1);
      std::vector<std::int64_t> t(static_cast<std::size_t>(ref::numel(ts)));
      for (std::size_t r = 0; r < t.size(); ++r) t[r] = static_cast<std::int64_t>(r % 3);
      const auto simd = run_stats<float, std::int64_t>(s, x, t, ts);
      ASSERT_TRUE(set_isa("scalar").ok());
      const auto scalar = run_stats<float, std::int64_t>(s, x, t, ts);
      ASSERT_TRUE(set_isa(GetParam()).ok());
      EXPECT_EQ(simd.correct, scalar.correct);
      for (std::size_t r = 0; r < t.size(); ++r) {
        for (const auto* pair : {&simd.lse, &simd.ent}) {
          const float a = (*pair)[r], b = pair == &simd.lse ? scalar.lse[r] : scalar.ent[r];
          const bool ok = std::isnan(a) || std::isnan(b) ? std::isnan(a) && std::isnan(b)
                          : std::isinf(a) || std::isinf(b) ? a == b
                                                           : std::fabs(a - b) <= 64 * 0x1p-24 * (std::fabs(b) + 4);
          EXPECT_TRUE(ok) << "row " << r << (pair == &simd.lse ? " lse " : " entropy ") << a << " vs scalar " << b;
        }
      }
    }
  }
}

TEST_P(TokenStats, SameBitsForAnyThreadCount) {
  const ref::Shape s{700, 300};
  const std::vector<float> x = make_x<float>(s, 9, true);
  std::vector<std::int32_t> t(700);
  for (std::size_t r = 0; r < t.size(); ++r) t[r] = static_cast<std::int32_t>(r % 300);
  std::vector<Out<float, std::int32_t>> outs;
  for (int threads : {1, 2, 5}) {
    set_num_threads(threads);
    outs.push_back(run_stats<float, std::int32_t>(s, x, t, {700}));
  }
  set_num_threads(0);
  for (std::size_t k = 1; k < outs.size(); ++k) {
    EXPECT_TRUE(same_bits(outs[k].lse, outs[0].lse));
    EXPECT_TRUE(same_bits(outs[k].ent, outs[0].ent));
    EXPECT_EQ(outs[k].correct, outs[0].correct);
  }
}

XENT_INSTANTIATE_FOR_EVERY_ISA(TokenStats);

// lse is logsumexp_forward's value; the entropy of a uniform row is log C; outputs are optional.
TEST(TokenStatsApi, AgreesWithLogsumexpAndKnownValuesAndSkipsEmptyViews) {
  const std::vector<double> x = {0, 0, 0, 0, 1, 2, 3, 4};
  const std::vector<std::int64_t> t = {2, 3};
  std::vector<double> lse(2), ent(2), want_lse(2);
  ASSERT_TRUE(cross_entropy_token_stats({x.data(), Shape{2, 4}}, {t.data(), Shape{2}}, {}, {lse.data(), Shape{2}},
                                        {ent.data(), Shape{2}}, {})
                  .ok());
  ASSERT_TRUE(logsumexp_forward({x.data(), Shape{2, 4}}, 1, {want_lse.data(), Shape{2}}).ok());
  EXPECT_DOUBLE_EQ(lse[0], want_lse[0]);
  EXPECT_DOUBLE_EQ(lse[1], want_lse[1]);
  EXPECT_NEAR(ent[0], std::log(4.0), 1e-15);
  std::vector<std::int32_t> correct(2, 9);
  ASSERT_TRUE(cross_entropy_token_stats({x.data(), Shape{2, 4}}, {t.data(), Shape{2}}, {}, {}, {},
                                        {correct.data(), Shape{2}})
                  .ok());
  EXPECT_EQ(correct[0], 0) << "all tied: the first maximum (class 0) is not the target 2";
  EXPECT_EQ(correct[1], 1);
}

TEST(TokenStatsApi, BadInput) {
  const std::vector<float> x(12, 0.f);
  const std::vector<std::int64_t> t = {0, 1, 2, 5}, ok_t = {0, 1, 2, 0};
  std::vector<float> lse(4, -1.f), lse3(3);
  std::vector<double> lse_d(4);
  std::vector<float> corr_f(4);
  auto call = [&](ConstTensorView tt, TensorView l, TensorView e, TensorView c) {
    return cross_entropy_token_stats({x.data(), Shape{4, 3}}, tt, {}, l, e, c);
  };
  Status s = call({t.data(), Shape{4}}, {lse.data(), Shape{4}}, {}, {});
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("target 5 at position 3 is outside [0, 3)"), std::string::npos) << s.message();
  EXPECT_EQ(lse[0], -1.f) << "nothing written on error";
  s = call({ok_t.data(), Shape{4}}, {}, {}, {});
  EXPECT_NE(s.message().find("at least one of lse, entropy and correct"), std::string::npos) << s.message();
  s = call({ok_t.data(), Shape{4}}, {lse3.data(), Shape{3}}, {}, {});
  EXPECT_NE(s.message().find("lse must have shape [4], found [3]"), std::string::npos) << s.message();
  s = call({ok_t.data(), Shape{4}}, {lse_d.data(), Shape{4}}, {}, {});
  EXPECT_NE(s.message().find("lse must have the input's dtype float32, found float64"), std::string::npos)
      << s.message();
  s = call({ok_t.data(), Shape{4}}, {}, {}, {corr_f.data(), Shape{4}});
  EXPECT_NE(s.message().find("correct must be int32 or int64, found float32"), std::string::npos) << s.message();
  s = call({x.data(), Shape{4}}, {lse.data(), Shape{4}}, {}, {});
  EXPECT_NE(s.message().find("class indices"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace xent::test
