// test_edge_cases.cc: non-finite and extreme values, degenerate shapes, aliasing and long
// reductions, for every ISA. Expected values are PyTorch 1.13's (the oracle reproduces them, and
// the contracts that matter are also asserted explicitly: NaN for all -inf rows, -inf from
// logsumexp, NaN for a mean over no targets...).
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>

#include "op_checks.h"
#include "test_util.h"

namespace xent::test {
namespace {

class EdgeCases : public IsaTest {};

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Rows: -inf mask, all -inf, +inf, two +inf, NaN, +-1e4, large offset, ordinary.
template <class T>
Buf<T> nasty_rows() {
  const std::vector<double> v = {
      1,    -kInf, 3,    -kInf,  // masked
      -kInf, -kInf, -kInf, -kInf,  // all masked
      1,    kInf, 2,    0,      // +inf
      kInf, kInf, 1,    -kInf,  // two +inf
      kNaN, 1,    2,    3,      // NaN
      1e4,  -1e4, 0,    5,      // +-1e4
      -1e4, -1e4 + 1, -1e4 + 2, -1e4 + 3,
      0.5,  -0.25, 2,   1,
  };
  Buf<T> b({8, 4});
  for (std::size_t k = 0; k < v.size(); ++k) b.v[k] = static_cast<T>(v[k]);
  return b;
}

template <class T>
void softmax_nonfinite() {
  Rng rng(201);
  const Buf<T> x = nasty_rows<T>();
  {
    SCOPED_TRACE(std::string(type_name<T>()) + " softmax family on non-finite rows");
    check_softmax_family(x, 1, rng);
  }
  // Explicit contracts.
  Buf<T> y({8, 4}), lsm({8, 4}), lse({8});
  ASSERT_TRUE(softmax_forward(x.cview(), 1, y.view()).ok());
  ASSERT_TRUE(log_softmax_forward(x.cview(), 1, lsm.view()).ok());
  ASSERT_TRUE(logsumexp_forward(x.cview(), 1, lse.view()).ok());
  EXPECT_EQ(y.v[1], T(0));                     // exp(-inf) = 0 exactly
  EXPECT_EQ(lsm.v[1], -std::numeric_limits<T>::infinity());
  for (int c = 0; c < 4; ++c) {
    EXPECT_TRUE(std::isnan(y.v[4 + c])) << "all -inf row: softmax is NaN (0/0), as in PyTorch";
    EXPECT_TRUE(std::isnan(lsm.v[4 + c])) << "all -inf row: log_softmax is NaN";
    EXPECT_TRUE(std::isnan(y.v[8 + c])) << "+inf logit: softmax is NaN (inf - inf), as in PyTorch";
    EXPECT_TRUE(std::isnan(y.v[16 + c])) << "NaN propagates to the whole row";
  }
  EXPECT_EQ(lse.v[1], -std::numeric_limits<T>::infinity()) << "all -inf row: logsumexp is -inf";
  EXPECT_EQ(lse.v[2], std::numeric_limits<T>::infinity()) << "+inf logit: logsumexp is +inf";
  EXPECT_TRUE(std::isnan(lse.v[4]));
  EXPECT_NEAR(lse.v[5], 1e4, 1e4 * unit<T>());
  EXPECT_NEAR(y.v[5 * 4 + 0], 1.0, unit<T>()) << "row [1e4, -1e4, 0, 5]: all the mass on 1e4";
  EXPECT_EQ(y.v[5 * 4 + 1], T(0)) << "exp(-2e4) underflows to 0, not NaN";
}

TEST_P(EdgeCases, SoftmaxFamilyNonFinite) {
  softmax_nonfinite<float>();
  softmax_nonfinite<double>();
}

template <class T>
void cross_entropy_nonfinite() {
  Rng rng(202);
  const Buf<T> x = nasty_rows<T>();
  // Targets avoid the masked logit of row 0 (its loss would be +inf).
  const Buf<std::int64_t> t({8}, {0, 1, 2, 2, 1, 1, 3, 2});
  for (ref::Reduction red : kAllReductions) {
    for (double eps : {0.0, 0.1}) {
      SCOPED_TRACE(std::string(type_name<T>()) + " cross_entropy non-finite rows, reduction " + name_of(red) +
                   ", label_smoothing " + std::to_string(eps));
      check_cross_entropy<T, std::int64_t>(x, t, std::nullopt, CeCase{-100, red, eps}, rng);
    }
  }
  // Per-row contracts (reduction none).
  Buf<T> loss({8});
  CrossEntropyOptions o;
  o.reduction = Reduction::kNone;
  ASSERT_TRUE(cross_entropy_forward(x.cview(), t.cview(), o, loss.view()).ok());
  EXPECT_TRUE(std::isfinite(loss.v[0])) << "a -inf mask on another class is harmless without smoothing";
  EXPECT_TRUE(std::isnan(loss.v[1])) << "all -inf row: NaN, as PyTorch's log_softmax";
  EXPECT_TRUE(std::isnan(loss.v[2])) << "+inf logit: NaN, as PyTorch";
  EXPECT_TRUE(std::isnan(loss.v[4]));
  EXPECT_NEAR(loss.v[5], 1e4 + 1e4, 2e4 * unit<T>()) << "target logit -1e4 against max 1e4";
  o.label_smoothing = 0.1;
  ASSERT_TRUE(cross_entropy_forward(x.cview(), t.cview(), o, loss.view()).ok());
  EXPECT_EQ(loss.v[0], std::numeric_limits<T>::infinity()) << "label smoothing over a -inf logit is +inf (PyTorch)";

  // A row that is ignored contributes 0 to the loss even when its logits are NaN or all -inf.
  const Buf<std::int64_t> t_ign({8}, {0, -100, -100, -100, -100, 1, 3, 2});
  o.label_smoothing = 0;
  ASSERT_TRUE(cross_entropy_forward(x.cview(), t_ign.cview(), o, loss.view()).ok());
  for (int r = 1; r <= 4; ++r) EXPECT_EQ(loss.v[r], T(0)) << "ignored row " << r;

  // Probability targets: 0 * (-inf) = NaN where a zero-probability class has a -inf logit.
  Buf<T> probs({8, 4}, T(0.25));
  CrossEntropyOptions po;
  po.reduction = Reduction::kNone;
  ASSERT_TRUE(cross_entropy_forward(x.cview(), probs.cview(), po, loss.view()).ok());
  EXPECT_EQ(loss.v[0], std::numeric_limits<T>::infinity());
  Buf<T> onehot({8, 4}, T(0));
  for (int r = 0; r < 8; ++r) onehot.v[r * 4 + (r == 0 ? 0 : 2)] = 1;
  ASSERT_TRUE(cross_entropy_forward(x.cview(), onehot.cview(), po, loss.view()).ok());
  EXPECT_TRUE(std::isnan(loss.v[0])) << "0 * log_softmax(-inf) = 0 * -inf = NaN, as PyTorch";
  for (ref::Reduction red : kAllReductions) {
    SCOPED_TRACE(std::string(type_name<T>()) + " cross_entropy probability targets, non-finite rows, reduction " + name_of(red));
    check_cross_entropy_probs<T>(x, onehot, std::nullopt, red, 0.0, rng);
    check_cross_entropy_probs<T>(x, probs, std::nullopt, red, 0.1, rng);
  }
}

TEST_P(EdgeCases, CrossEntropyNonFinite) {
  cross_entropy_nonfinite<float>();
  cross_entropy_nonfinite<double>();
}

// PyTorch's autograd gives an ignored row dx = 0 - softmax * 0, which is NaN when the row's
// softmax is NaN (all -inf or NaN logits). Kept separate so a deliberate deviation is visible.
TEST_P(EdgeCases, IgnoredRowWithNonFiniteLogitsGradient) {
  Rng rng(203);
  const Buf<double> x = nasty_rows<double>();
  const Buf<std::int64_t> t({8}, {0, -100, -100, -100, -100, 1, 3, 2});
  for (ref::Reduction red : kAllReductions) {
    SCOPED_TRACE(std::string("reduction ") + name_of(red));
    check_cross_entropy<double, std::int64_t>(x, t, std::nullopt, CeCase{-100, red, 0.0}, rng);
  }
}

template <class T>
void degenerate_shapes() {
  Rng rng(204);
  // C = 1: softmax 1, log_softmax 0, loss 0 and zero gradient.
  {
    const Buf<T> x = rng.uniform_buf<T>({5, 1}, -3, 3);
    SCOPED_TRACE(std::string(type_name<T>()) + " C = 1");
    check_softmax_family(x, 1, rng);
    const Buf<std::int32_t> t({5}, std::vector<std::int32_t>(5, 0));
    for (ref::Reduction red : kAllReductions) {
      for (double eps : {0.0, 0.5}) check_cross_entropy<T, std::int32_t>(x, t, std::nullopt, CeCase{-100, red, eps}, rng);
    }
    Buf<T> loss(ref::Shape{}), dx({5, 1}, T(9));
    ASSERT_TRUE(cross_entropy_fused(x.cview(), t.cview(), {}, loss.view(), dx.view()).ok());
    EXPECT_EQ(loss.v[0], T(0));
    for (T g : dx.v) EXPECT_EQ(g, T(0));
  }
  // N = 0: mean is NaN (0 / 0), sum is 0, none is empty; gradients write nothing.
  {
    SCOPED_TRACE(std::string(type_name<T>()) + " N = 0");
    const Buf<T> x({0, 4});
    const Buf<std::int64_t> t({0});
    const Buf<T> probs({0, 4});
    for (ref::Reduction red : kAllReductions) {
      check_cross_entropy<T, std::int64_t>(x, t, std::nullopt, CeCase{-100, red, 0.0}, rng);
      check_cross_entropy<T, std::int64_t>(x, t, std::nullopt, CeCase{-100, red, 0.2}, rng);
      check_cross_entropy_probs<T>(x, probs, std::nullopt, red, 0.0, rng);
      check_nll<T, std::int64_t>(x, t, std::nullopt, -100, red, rng);
      check_bce<T>(Buf<T>({0}), Buf<T>({0}), std::nullopt, red, rng);
      check_bce_logits<T>(Buf<T>({0}), Buf<T>({0}), std::nullopt, std::nullopt, red, rng);
    }
    Buf<T> loss(ref::Shape{});
    CrossEntropyOptions o;
    ASSERT_TRUE(cross_entropy_forward(x.cview(), t.cview(), o, loss.view()).ok());
    EXPECT_TRUE(std::isnan(loss.v[0])) << "mean over no rows";
    o.reduction = Reduction::kSum;
    ASSERT_TRUE(cross_entropy_forward(x.cview(), t.cview(), o, loss.view()).ok());
    EXPECT_EQ(loss.v[0], T(0)) << "sum over no rows";
    ASSERT_TRUE(cross_entropy_forward(x.cview(), probs.cview(), {}, loss.view()).ok());
    EXPECT_TRUE(std::isnan(loss.v[0])) << "mean over no rows, probability targets";
    BceOptions b;
    ASSERT_TRUE(binary_cross_entropy_forward(Buf<T>({0}).cview(), Buf<T>({0}).cview(), b, loss.view()).ok());
    EXPECT_TRUE(std::isnan(loss.v[0])) << "BCE mean over no elements";
    Buf<T> y({0, 4}), lse({0});
    EXPECT_TRUE(softmax_forward(x.cview(), 1, y.view()).ok());
    EXPECT_TRUE(logsumexp_forward(x.cview(), 1, lse.view()).ok());
  }
  // All targets ignored: mean NaN, sum 0, gradient exactly zero (finite logits), with and without
  // smoothing and weights.
  {
    SCOPED_TRACE(std::string(type_name<T>()) + " all targets ignored");
    const Buf<T> x = rng.uniform_buf<T>({4, 3}, -3, 3);
    const Buf<std::int64_t> t({4}, std::vector<std::int64_t>(4, -100));
    const Buf<T> w = rng.uniform_buf<T>({3}, 0.5, 2);
    for (ref::Reduction red : kAllReductions) {
      for (double eps : {0.0, 0.3}) {
        for (int with_w = 0; with_w < 2; ++with_w) {
          std::optional<Buf<T>> weight;
          if (with_w) weight = w;
          check_cross_entropy<T, std::int64_t>(x, t, weight, CeCase{-100, red, eps}, rng);
          CrossEntropyOptions o;
          if (with_w) o.weight = w.cview();
          o.reduction = to_xent(red);
          o.label_smoothing = eps;
          const ref::Shape lshape = red == ref::Reduction::kNone ? ref::Shape{4} : ref::Shape{};
          Buf<T> loss(lshape), dx({4, 3}, T(9));
          ASSERT_TRUE(cross_entropy_fused(x.cview(), t.cview(), o, loss.view(), dx.view()).ok());
          if (red == ref::Reduction::kMean) {
            EXPECT_TRUE(std::isnan(loss.v[0])) << "mean over no targets";
          }
          if (red == ref::Reduction::kSum) {
            EXPECT_EQ(loss.v[0], T(0));
          }
          for (T g : dx.v) EXPECT_EQ(g, T(0));
        }
      }
      check_nll<T, std::int64_t>(x, t, std::nullopt, -100, red, rng);
    }
  }
}

TEST_P(EdgeCases, DegenerateShapes) {
  degenerate_shapes<float>();
  degenerate_shapes<double>();
}

template <class T>
void row_lengths() {
  Rng rng(205);
  std::vector<std::int64_t> lengths;
  for (std::int64_t C = 1; C <= 67; ++C) lengths.push_back(C);
  lengths.push_back(1023);
  lengths.push_back(1025);
  for (std::int64_t C : lengths) {
    SCOPED_TRACE(std::string(type_name<T>()) + " cross_entropy with C = " + std::to_string(C));
    const Buf<T> x = rng.uniform_buf<T>({3, C}, -5, 5);
    const Buf<std::int64_t> t = random_targets<std::int64_t>(rng, {3}, C, std::nullopt);
    check_cross_entropy<T, std::int64_t>(x, t, std::nullopt, CeCase{-100, ref::Reduction::kNone, 0.1}, rng);
    check_cross_entropy_probs<T>(x, rng.prob_buf<T>({3, C}), std::nullopt, ref::Reduction::kNone, 0.0, rng);
  }
}

TEST_P(EdgeCases, RowLengthsAroundVectorWidths) {
  row_lengths<float>();
  row_lengths<double>();
}

template <class T>
void bce_extremes() {
  Rng rng(206);
  // p at 0 and 1 against hard and soft targets: the -100 clamps and the epsilon of the gradient.
  const Buf<T> p({6}, {0, 1, 0, 1, 0, 1});
  const Buf<T> t({6}, {0, 0, 1, 1, T(0.5), T(0.5)});
  for (ref::Reduction red : kAllReductions) {
    SCOPED_TRACE(std::string(type_name<T>()) + " binary_cross_entropy at p in {0, 1}, reduction " + name_of(red));
    check_bce<T>(p, t, std::nullopt, red, rng);
  }
  Buf<T> loss({6});
  BceOptions o;
  o.reduction = Reduction::kNone;
  ASSERT_TRUE(binary_cross_entropy_forward(p.cview(), t.cview(), o, loss.view()).ok());
  EXPECT_EQ(loss.v[0], T(0));
  EXPECT_EQ(loss.v[2], T(100)) << "log(0) clamped at -100";
  EXPECT_EQ(loss.v[1], T(100));
  // Logits: +-inf give NaN in PyTorch 1.13's stable form (kept for compatibility), large finite
  // logits are exact.
  const Buf<T> x({8}, {T(kInf), T(-kInf), T(kInf), T(-kInf), T(100), T(-100), T(1e4), T(-1e4)});
  const Buf<T> tl({8}, {1, 0, T(0.5), T(0.5), 1, 0, 0, 1});
  for (ref::Reduction red : kAllReductions) {
    for (int with_pw = 0; with_pw < 2; ++with_pw) {
      std::optional<Buf<T>> pw;
      if (with_pw) pw = Buf<T>({1}, {T(2)});
      SCOPED_TRACE(std::string(type_name<T>()) + " binary_cross_entropy_with_logits extremes, reduction " +
                   name_of(red) + (with_pw ? ", pos_weight" : ""));
      check_bce_logits<T>(x, tl, std::nullopt, pw, red, rng);
    }
  }
  Buf<T> ll({8});
  ASSERT_TRUE(binary_cross_entropy_with_logits_forward(x.cview(), tl.cview(), o, ll.view()).ok());
  EXPECT_TRUE(std::isnan(ll.v[0])) << "x = +inf, t = 1: (1 - t) * x = 0 * inf";
  EXPECT_TRUE(std::isnan(ll.v[1])) << "x = -inf: inf - inf in the stable form";
  EXPECT_EQ(ll.v[2], std::numeric_limits<T>::infinity());
  // x = 100, t = 1 costs log1p(exp(-100)) = 3.72e-44 (PyTorch 1.13's log(1 + exp(-100)) rounds it
  // to 0): a subnormal in float, within two of its smallest steps; a few ulp in double.
  const long double tiny = std::exp(-100.0L);
  const long double tol = std::is_same_v<T, float> ? 2.0L * std::numeric_limits<float>::denorm_min() : 4.0L * tiny * 0x1p-52L;
  EXPECT_NEAR(static_cast<long double>(ll.v[4]), tiny, tol) << "x = 100, t = 1";
  EXPECT_NEAR(static_cast<long double>(ll.v[5]), tiny, tol) << "x = -100, t = 0";
  EXPECT_EQ(ll.v[6], T(1e4));
}

TEST_P(EdgeCases, BinaryCrossEntropyExtremes) {
  bce_extremes<float>();
  bce_extremes<double>();
}

// y may alias x, dx may alias dy, and the fused dinput may alias the input.
template <class T>
void aliasing() {
  Rng rng(207);
  const Buf<T> x = rng.uniform_buf<T>({7, 19}, -4, 4);
  Buf<T> y(x.shape), inplace = x;
  ASSERT_TRUE(softmax_forward(x.cview(), 1, y.view()).ok());
  ASSERT_TRUE(softmax_forward(inplace.cview(), 1, inplace.view()).ok());
  EXPECT_TRUE(same_bits(y.v, inplace.v)) << "softmax in place";
  inplace = x;
  ASSERT_TRUE(log_softmax_forward(x.cview(), 1, y.view()).ok());
  ASSERT_TRUE(log_softmax_forward(inplace.cview(), 1, inplace.view()).ok());
  EXPECT_TRUE(same_bits(y.v, inplace.v)) << "log_softmax in place";

  const Buf<T> dy = rng.uniform_buf<T>(x.shape, -1, 1);
  Buf<T> dx(x.shape), dy_inplace = dy;
  ASSERT_TRUE(softmax_backward(y.cview(), dy.cview(), 1, dx.view()).ok());
  ASSERT_TRUE(softmax_backward(y.cview(), dy_inplace.cview(), 1, dy_inplace.view()).ok());
  EXPECT_TRUE(same_bits(dx.v, dy_inplace.v)) << "softmax_backward with dx = dy";

  const Buf<std::int64_t> t = random_targets<std::int64_t>(rng, {7}, 19, -100);
  for (double eps : {0.0, 0.2}) {
    CrossEntropyOptions o;
    o.label_smoothing = eps;
    Buf<T> loss(ref::Shape{}), loss2(ref::Shape{}), dxf(x.shape), xin = x;
    ASSERT_TRUE(cross_entropy_fused(x.cview(), t.cview(), o, loss.view(), dxf.view()).ok());
    ASSERT_TRUE(cross_entropy_fused(xin.cview(), t.cview(), o, loss2.view(), xin.view()).ok());
    EXPECT_TRUE(same_bits(loss.v, loss2.v)) << "fused loss with dinput aliasing input";
    EXPECT_TRUE(same_bits(dxf.v, xin.v)) << "fused dinput aliasing input";
    const Buf<T> dl({}, {T(1.5)});
    Buf<T> dxb(x.shape), xb = x;
    ASSERT_TRUE(cross_entropy_backward(x.cview(), t.cview(), o, dl.cview(), dxb.view()).ok());
    ASSERT_TRUE(cross_entropy_backward(xb.cview(), t.cview(), o, dl.cview(), xb.view()).ok());
    EXPECT_TRUE(same_bits(dxb.v, xb.v)) << "backward dinput aliasing input";
  }
}

TEST_P(EdgeCases, Aliasing) {
  aliasing<float>();
  aliasing<double>();
}

// Mean loss of 10^6 rows against the oracle: float64 to 1e-14 relative; float32 to ~1 ulp of the
// result (2^-23 relative: float64 accumulation leaves the final rounding, <= 2^-24, plus the
// per-row float32 evaluation errors, which average out over a million rows). Both dtypes get the
// same values (float32-representable), so one oracle evaluation serves both.
TEST_P(EdgeCases, MillionRowReduction) {
  Rng rng(208);
  const std::int64_t N = 1000000, C = 3;
  const Buf<float> x32 = rng.uniform_buf<float>({N, C}, -4, 4);
  const Buf<double> x64(x32.shape, std::vector<double>(x32.v.begin(), x32.v.end()));
  const Buf<std::int32_t> t = random_targets<std::int32_t>(rng, {N}, C, std::nullopt);
  const double want = static_cast<double>(ref::cross_entropy(x64.to_ref(), t.to_targets(), {}).data[0]);
  CrossEntropyOptions sum;
  sum.reduction = Reduction::kSum;

  Buf<double> l64(ref::Shape{});
  ASSERT_TRUE(cross_entropy_forward(x64.cview(), t.cview(), {}, l64.view()).ok());
  EXPECT_NEAR(l64.v[0], want, 1e-14 * want) << "float64 mean of 10^6 rows";
  ASSERT_TRUE(cross_entropy_forward(x64.cview(), t.cview(), sum, l64.view()).ok());
  EXPECT_NEAR(l64.v[0], want * N, 1e-14 * want * N) << "float64 sum of 10^6 rows";

  Buf<float> l32(ref::Shape{});
  ASSERT_TRUE(cross_entropy_forward(x32.cview(), t.cview(), {}, l32.view()).ok());
  EXPECT_NEAR(l32.v[0], want, 0x1p-23 * want) << "float32 mean of 10^6 rows";
  ASSERT_TRUE(cross_entropy_forward(x32.cview(), t.cview(), sum, l32.view()).ok());
  EXPECT_NEAR(l32.v[0], want * N, 0x1p-23 * want * N) << "float32 sum of 10^6 rows";
}

XENT_INSTANTIATE_FOR_EVERY_ISA(EdgeCases);

}  // namespace
}  // namespace xent::test
