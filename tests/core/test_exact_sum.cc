// test_exact_sum.cc: cross_entropy with CrossEntropyOptions::summation = Summation::kExact (the
// fixed-point row sums of src/exact_sum.h). Oracles: the long-double reference (every option,
// shapes with an inner dimension, non-finite rows, through op_checks.h's check_cross_entropy),
// a per-row error bound of a few ulps of the result in float64 (no worse than the fast kernels),
// the fast path with token weights, and itself at other thread counts (the same bits). What it does
// not test: equality with xent_mpi (tests/mpi/test_mpi_losses.cc does, bit for bit).
#include <optional>

#include <algorithm>

#include "exact_sum.h"  // src/: the accumulator itself
#include "op_checks.h"
#include "test_util.h"

namespace xent::test {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

CeCase exact(std::int64_t ignore, ref::Reduction red, double eps) {
  CeCase c{ignore, red, eps};
  c.summation = Summation::kExact;
  return c;
}

// N class indices in [0, C), about one in `ignore_one_in` of them the ignore_index -100.
Buf<std::int64_t> random_targets(Rng& rng, std::int64_t N, std::int64_t C, std::int64_t ignore_one_in) {
  Buf<std::int64_t> t({N});
  for (auto& v : t.v) v = rng.integer(0, ignore_one_in - 1) == 0 ? -100 : rng.integer(0, C - 1);
  return t;
}

template <class T, class I>
void every_option(const ref::Shape& shape, std::uint64_t seed) {
  Rng rng(seed);
  const Buf<T> x = rng.uniform_buf<T>(shape, -8, 8);
  const std::int64_t C = shape.size() == 1 ? shape[0] : shape[1];
  ref::Shape tshape = shape;
  tshape.erase(tshape.begin() + (shape.size() == 1 ? 0 : 1));
  Buf<I> t(tshape);
  for (std::size_t k = 0; k < t.v.size(); ++k) t.v[k] = static_cast<I>(k % 5 == 2 ? -100 : rng.integer(0, C - 1));
  const Buf<T> w = rng.uniform_buf<T>({C}, 0.2, 2);
  for (ref::Reduction red : kAllReductions) {
    for (double eps : {0.0, 0.15}) {
      for (int with_w = 0; with_w < 2; ++with_w) {
        SCOPED_TRACE(std::string(type_name<T>()) + " exact, shape " + shape_str(shape) + ", reduction " + name_of(red) +
                     ", label_smoothing " + std::to_string(eps) + (with_w ? ", class weights" : ""));
        std::optional<Buf<T>> weight;
        if (with_w) weight = w;
        check_cross_entropy<T, I>(x, t, weight, exact(-100, red, eps), rng);
      }
    }
  }
}

TEST(ExactSummation, EveryOptionAgainstTheReference) {
  every_option<float, std::int64_t>({23, 507}, 1);
  every_option<double, std::int32_t>({23, 507}, 2);
  every_option<float, std::int32_t>({4, 9, 3, 2}, 3);  // classes at stride 6 (an inner dimension)
  every_option<double, std::int64_t>({11}, 4);         // one row: input (C), target ()
  every_option<double, std::int64_t>({2, 70000}, 5);   // long rows (split into chunks)
}

// Non-finite logits (PyTorch's semantics, as the fast path: the reference decides), ignored rows
// among them, and degenerate shapes.
template <class T>
void nonfinite() {
  Rng rng(6);
  // Rows: -inf mask, all -inf, +inf, two +inf, NaN, +-1e4, large offset, ordinary.
  // clang-format off
  const std::vector<double> v = {1,    -kInf,    3,        -kInf,    -kInf, -kInf, -kInf, -kInf,
                                 1,    kInf,     2,        0,        kInf,  kInf,  1,     -kInf,
                                 kNaN, 1,        2,        3,        1e4,   -1e4,  0,     5,
                                 -1e4, -1e4 + 1, -1e4 + 2, -1e4 + 3, 0.5,   -0.25, 2,     1};
  // clang-format on
  Buf<T> x({8, 4});
  for (std::size_t k = 0; k < v.size(); ++k) x.v[k] = static_cast<T>(v[k]);
  const Buf<std::int64_t> t({8}, {0, 1, 2, 2, 1, 1, 3, 2});
  const Buf<std::int64_t> t_ign({8}, {0, -100, -100, -100, -100, 1, 3, 2});
  for (ref::Reduction red : kAllReductions) {
    for (double eps : {0.0, 0.1}) {
      SCOPED_TRACE(std::string(type_name<T>()) + " exact, non-finite rows, reduction " + name_of(red) + ", eps " +
                   std::to_string(eps));
      check_cross_entropy<T, std::int64_t>(x, t, std::nullopt, exact(-100, red, eps), rng);
      check_cross_entropy<T, std::int64_t>(x, t_ign, std::nullopt, exact(-100, red, eps), rng);
    }
    // No rows; every target ignored; one class.
    check_cross_entropy<T, std::int64_t>(Buf<T>({0, 4}), Buf<std::int64_t>({0}), std::nullopt, exact(-100, red, 0.2),
                                         rng);
    check_cross_entropy<T, std::int64_t>(rng.uniform_buf<T>({4, 3}, -3, 3),
                                         Buf<std::int64_t>({4}, {-100, -100, -100, -100}), std::nullopt,
                                         exact(-100, red, 0.3), rng);
    check_cross_entropy<T, std::int64_t>(rng.uniform_buf<T>({5, 1}, -3, 3), Buf<std::int64_t>({5}), std::nullopt,
                                         exact(-100, red, 0.5), rng);
  }
}

TEST(ExactSummation, NonFiniteAndDegenerate) {
  nonfinite<float>();
  nonfinite<double>();
}

// float64, long rows of spread logits: every row's loss within a few ulps of the exact value (each
// term is rounded once; the only roundings are the final conversion, log, the additions and exp),
// and no worse than the fast kernels'.
TEST(ExactSummation, AtLeastAsAccurateAsFast) {
  Rng rng(7);
  const std::int64_t N = 64, C = 20000;
  // Logits in [-4, 4] (thousands of terms matter) and the target at the row's max: the loss is
  // log S, small, so its error shows the error of the sum S.
  const Buf<double> x = rng.uniform_buf<double>({N, C}, -4, 4);
  Buf<std::int64_t> t({N});
  for (std::int64_t n = 0; n < N; ++n)
    t.v[n] = std::max_element(x.v.begin() + n * C, x.v.begin() + (n + 1) * C) - (x.v.begin() + n * C);
  const ref::Tensor want = ref::cross_entropy(x.to_ref(), t.to_targets(), {.reduction = ref::Reduction::kNone});
  const ref::Tensor lse = ref::logsumexp(x.to_ref(), 1);
  double worst_exact = 0, worst_fast = 0, total_exact = 0, total_fast = 0;
  for (Summation sm : {Summation::kExact, Summation::kFast}) {
    CrossEntropyOptions o;
    o.reduction = Reduction::kNone;
    o.summation = sm;
    Buf<double> loss({N});
    ASSERT_TRUE(cross_entropy_forward(x.cview(), t.cview(), o, loss.view()).ok());
    for (std::int64_t n = 0; n < N; ++n) {
      const Real e = std::fabs(static_cast<Real>(loss.v[n]) - want.data[n]);
      const Real bound =
          4 * 0x1p-53 * std::max<Real>({std::fabs(lse.data[n]), std::fabs(static_cast<Real>(x.v[n * C + t.v[n]])), 1});
      if (sm == Summation::kExact) {
        EXPECT_LE(e, bound) << "row " << n;
        worst_exact = std::max(worst_exact, static_cast<double>(e));
        total_exact += static_cast<double>(e);
      } else {
        worst_fast = std::max(worst_fast, static_cast<double>(e));
        total_fast += static_cast<double>(e);
      }
    }
  }
  // The ulp bound above is the promise; the fast kernels accumulate in double too, so on such data
  // both are dominated by the final roundings: "no worse" with a margin for another ISA's luck.
  EXPECT_LE(total_exact, 1.1 * total_fast);
  std::printf("|loss error| over %lld rows of %lld classes: exact worst %.3g total %.3g, fast worst %.3g total %.3g\n",
              static_cast<long long>(N), static_cast<long long>(C), worst_exact, total_exact, worst_fast, total_fast);
}

// Same bits for 1, 2 and 7 threads: loss (every reduction), gradient, backward with dloss.
template <class T>
void thread_bits() {
  Rng rng(8);
  const std::int64_t N = 301, C = 257;
  const Buf<T> x = rng.uniform_buf<T>({N, C}, -10, 10);
  const Buf<T> w = rng.uniform_buf<T>({C}, 0.1, 3);
  const Buf<std::int64_t> t = random_targets(rng, N, C, 10);
  const Buf<T> dl_rows = rng.uniform_buf<T>({N}, -1, 1);
  for (ref::Reduction rr : kAllReductions) {
    const Reduction red = to_xent(rr);
    CrossEntropyOptions o;
    o.weight = w.cview();
    o.label_smoothing = 0.1;
    o.reduction = red;
    o.summation = Summation::kExact;
    const ref::Shape ls = red == Reduction::kNone ? ref::Shape{N} : ref::Shape{};
    const Buf<T> dl = red == Reduction::kNone ? dl_rows : Buf<T>(ls, T(0.75));
    std::vector<std::vector<T>> first;
    for (int threads : {1, 2, 7}) {
      xent::set_num_threads(threads);
      Buf<T> loss(ls, T(-3)), dx({N, C}, T(-3)), dxb({N, C}, T(-3));
      ASSERT_TRUE(cross_entropy_fused(x.cview(), t.cview(), o, loss.view(), dx.view()).ok());
      ASSERT_TRUE(cross_entropy_backward(x.cview(), t.cview(), o, dl.cview(), dxb.view()).ok());
      if (first.empty()) {
        first = {loss.v, dx.v, dxb.v};
        continue;
      }
      EXPECT_TRUE(same_bits(first[0], loss.v)) << "loss, " << threads << " threads, reduction " << name_of(rr);
      EXPECT_TRUE(same_bits(first[1], dx.v)) << "fused gradient, " << threads << " threads";
      EXPECT_TRUE(same_bits(first[2], dxb.v)) << "backward, " << threads << " threads";
    }
    xent::set_num_threads(0);
  }
}

TEST(ExactSummation, SameBitsForAnyThreadCount) {
  thread_bits<float>();
  thread_bits<double>();
}

// A few long rows are split into chunks on several threads (reduce.h split_chunks): the same bits
// as the same rows among enough rows not to be split, at any thread count.
TEST(ExactSummation, LongRowsSplitOverThreadsKeepTheBits) {
  Rng rng(11);
  const std::int64_t C = 200000;  // float32 rows of 800 KB, fewer than 8: chunks of 65536 classes
  const Buf<float> many = rng.uniform_buf<float>({8, C}, -20, 20);
  const Buf<float> w = rng.uniform_buf<float>({C}, 0.5, 2);
  Buf<float> two({2, C});
  std::copy(many.v.begin(), many.v.begin() + 2 * C, two.v.begin());
  Buf<std::int64_t> t8({8});
  for (auto& v : t8.v) v = rng.integer(0, C - 1);
  t8.v[1] = 70000;  // in the second chunk
  const Buf<std::int64_t> t2({2}, {t8.v[0], t8.v[1]});
  CrossEntropyOptions o;
  o.weight = w.cview();
  o.label_smoothing = 0.1;
  o.reduction = Reduction::kNone;
  o.summation = Summation::kExact;
  Buf<float> l8({8}), d8({8, C}), l2({2}), d2({2, C});
  ASSERT_TRUE(cross_entropy_fused(many.cview(), t8.cview(), o, l8.view(), d8.view()).ok());
  for (int threads : {1, 3}) {
    xent::set_num_threads(threads);
    ASSERT_TRUE(cross_entropy_fused(two.cview(), t2.cview(), o, l2.view(), d2.view()).ok());
    EXPECT_TRUE(same_bits(l2.v, std::vector<float>(l8.v.begin(), l8.v.begin() + 2))) << threads << " threads";
    EXPECT_TRUE(same_bits(d2.v, std::vector<float>(d8.v.begin(), d8.v.begin() + 2 * C))) << threads << " threads";
  }
  xent::set_num_threads(0);
}

// Token weights (not in PyTorch 1.13, so no reference): the exact path agrees with the fast path.
TEST(ExactSummation, TokenWeightsAgreeWithFast) {
  Rng rng(9);
  const std::int64_t N = 40, C = 33;
  const Buf<double> x = rng.uniform_buf<double>({N, C}, -5, 5);
  const Buf<double> tw = rng.uniform_buf<double>({N}, 0, 2);
  const Buf<std::int64_t> t = random_targets(rng, N, C, 7);
  for (ref::Reduction rr : kAllReductions) {
    const ref::Shape ls = rr == ref::Reduction::kNone ? ref::Shape{N} : ref::Shape{};
    std::vector<double> loss[2], dx[2];
    for (int k = 0; k < 2; ++k) {
      CrossEntropyOptions o;
      o.token_weight = tw.cview();
      o.label_smoothing = 0.05;
      o.reduction = to_xent(rr);
      o.summation = k == 0 ? Summation::kFast : Summation::kExact;
      Buf<double> l(ls), d({N, C});
      ASSERT_TRUE(cross_entropy_fused(x.cview(), t.cview(), o, l.view(), d.view()).ok());
      loss[k] = l.v;
      dx[k] = d.v;
    }
    for (std::size_t i = 0; i < loss[0].size(); ++i)
      EXPECT_NEAR(loss[1][i], loss[0][i], 1e-12 * (1 + std::fabs(loss[0][i])));
    for (std::size_t i = 0; i < dx[0].size(); ++i) EXPECT_NEAR(dx[1][i], dx[0][i], 1e-13);
  }
}

// The accumulator: order-independent and exact where floating point is not.
TEST(ExactSummation, FixedPointIsExactAndOrderFree) {
  namespace ex = xent::detail::exact;
  auto value = [](const std::vector<double>& v, int shift) {
    std::int64_t acc[ex::kLimbs] = {};
    for (double d : v) ex::fx_add(acc, d, shift);
    return ex::fx_value(acc, shift);
  };
  // 1 + 2^-100 - 1 = 2^-100 on the 2^-120 grid (a double sum gives 0).
  EXPECT_EQ(value({1.0, 0x1p-100, -1.0}, 120), 0x1p-100);
  // Terms below half a unit vanish; half a unit rounds away from zero.
  EXPECT_EQ(value({0x1p-122}, 120), 0.0);
  EXPECT_EQ(value({0x1p-121}, 120), 0x1p-120);
  // 10^5 terms in [0, 1]: every permutation, and any split into parts added as integers, gives
  // the same limbs and the exact sum's double.
  Rng rng(10);
  std::vector<double> v(100000);
  for (double& d : v) d = std::exp(-rng.uniform(0, 40));
  std::int64_t a[ex::kLimbs] = {}, b[ex::kLimbs] = {}, c1[ex::kLimbs] = {}, c2[ex::kLimbs] = {};
  for (double d : v) ex::fx_add(a, d, 120);
  std::vector<double> w = v;
  std::reverse(w.begin(), w.end());
  std::swap(w[5], w[99990]);
  for (double d : w) ex::fx_add(b, d, 120);
  for (std::size_t i = 0; i < v.size(); ++i) ex::fx_add(i % 3 == 0 ? c1 : c2, v[i], 120);
  for (int k = 0; k < ex::kLimbs; ++k) c1[k] += c2[k];
  EXPECT_EQ(ex::fx_value(a, 120), ex::fx_value(b, 120));
  EXPECT_EQ(ex::fx_value(a, 120), ex::fx_value(c1, 120));
  long double exact = 0;  // 64-bit significand: within 2^-64 relative of the true sum
  for (double d : v) exact += static_cast<long double>(d);
  EXPECT_NEAR(static_cast<double>((static_cast<long double>(ex::fx_value(a, 120)) - exact) / exact), 0.0, 1.2e-16);
  // Keys: the max of keys is the key of the max, NaN above everything, -0 below +0.
  EXPECT_LT(ex::max_key(-0.0), ex::max_key(0.0));
  EXPECT_LT(ex::max_key(-kInf), ex::max_key(-1e308));
  EXPECT_LT(ex::max_key(kInf), ex::max_key(kNaN));
  EXPECT_EQ(ex::from_key(ex::max_key(-3.5)), -3.5);
  EXPECT_EQ(ex::from_key(ex::kNoKey), -kInf);
}

TEST(ExactSummation, RefusesWhatItDoesNotCover) {
  CrossEntropyOptions o;
  o.summation = Summation::kExact;
  std::vector<std::uint16_t> h(6, 0);
  std::vector<std::int64_t> t = {0, 1};
  float loss = 0;
  Status s = cross_entropy_forward({h.data(), DType::kBF16, {2, 3}}, {t.data(), {2}}, o, scalar_view(&loss));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("summation exact needs float32 or float64 input, found bfloat16"), std::string::npos)
      << s.message();
  std::vector<float> x(6, 0.5f), p(6, 1.0f / 3);
  s = cross_entropy_forward({x.data(), {2, 3}}, {p.data(), {2, 3}}, o, scalar_view(&loss));
  EXPECT_NE(s.message().find("class-index targets only"), std::string::npos) << s.message();
  o.summation = static_cast<Summation>(9);
  s = cross_entropy_forward({x.data(), {2, 3}}, {t.data(), {2}}, o, scalar_view(&loss));
  EXPECT_NE(s.message().find("summation must be fast or exact"), std::string::npos) << s.message();
  EXPECT_EQ(loss, 0.0f) << "nothing written on error";
}

}  // namespace
}  // namespace xent::test
