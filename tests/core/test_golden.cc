// test_golden.cc: the project's seed facts, checked as published (4 decimals or the printed digits)
// and against the long-double oracle. These numbers come from the project brief and PyTorch 1.13,
// never from xent's own output.
#include <cmath>
#include <limits>

#include "test_util.h"

namespace xent::test {
namespace {

class Golden : public IsaTest {};

template <class T>
void seed_softmax_and_loss() {
  SCOPED_TRACE(type_name<T>());
  const Buf<T> x({2, 3}, {1, 2, 3, 2, 4, 6});
  const Buf<std::int64_t> t({2}, {0, 2});

  Buf<T> y({2, 3});
  ASSERT_TRUE(softmax_forward(x.cview(), 1, y.view()).ok());
  const double published[] = {0.0900, 0.2447, 0.6652, 0.0159, 0.1173, 0.8668};
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(y.v[k], published[k], 0.5e-4) << "softmax element " << k;
  const ref::Tensor ry = ref::softmax(x.to_ref(), 1);
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(y.v[k], static_cast<double>(ry.data[k]), unit<T>() * 4) << "softmax element " << k;

  Buf<T> loss(ref::Shape{});
  ASSERT_TRUE(cross_entropy_forward(x.cview(), t.cview(), {}, loss.view()).ok());
  EXPECT_NEAR(loss.v[0], 1.2753, 0.5e-4);
  const ref::Tensor rl = ref::cross_entropy(x.to_ref(), t.to_targets(), {});
  // Tolerance: 1e-12 for float64 (as promised), a few float32 ulp of a value near 1 for float32.
  const double tol = std::is_same_v<T, double> ? 1e-12 : 4 * 0x1p-23;
  EXPECT_NEAR(loss.v[0], static_cast<double>(rl.data[0]), tol);
}

TEST_P(Golden, SeedSoftmaxAndMeanLoss) {
  seed_softmax_and_loss<float>();
  seed_softmax_and_loss<double>();
}

// softmax([1, 100]) in float32 is [e^-99 / (1 + e^-99), 1] = [1.0089e-43 (a subnormal), 1].
TEST_P(Golden, StableSoftmaxOfWideRowFloat32) {
  const Buf<float> x({2}, {1.0f, 100.0f});
  Buf<float> y({2});
  ASSERT_TRUE(softmax_forward(x.cview(), 0, y.view()).ok());
  const float subnormal_step = std::numeric_limits<float>::denorm_min();  // 2^-149
  EXPECT_NEAR(y.v[0], 1.0089e-43, 2 * subnormal_step);
  const ref::Tensor ry = ref::softmax(x.to_ref(), 0);
  EXPECT_NEAR(y.v[0], static_cast<double>(ry.data[0]), subnormal_step);  // correctly rounded +- 1 step
  EXPECT_GT(y.v[0], 0.0f);
  EXPECT_EQ(y.v[1], 1.0f);

  // The naive float32 formula exp(x) / sum(exp(x)) overflows: exp(100) = inf gives [0, nan].
  volatile float e0 = std::exp(1.0f), e1 = std::exp(100.0f);
  const float sum = e0 + e1;
  EXPECT_TRUE(std::isinf(e1));
  EXPECT_EQ(e0 / sum, 0.0f);
  EXPECT_TRUE(std::isnan(e1 / sum));
}

// nll_loss(log([[.25,.25,.25,.25],[.01,.01,.01,.96]]), [3, 3]) = -(log .25 + log .96) / 2.
TEST_P(Golden, NllOnLogProbabilities) {
  const double probs[] = {.25, .25, .25, .25, .01, .01, .01, .96};
  Buf<double> logp({2, 4});
  for (int k = 0; k < 8; ++k) logp.v[k] = std::log(probs[k]);
  const Buf<std::int32_t> t32({2}, {3, 3});
  const Buf<std::int64_t> t64({2}, {3, 3});
  Buf<double> loss(ref::Shape{});
  ASSERT_TRUE(nll_loss_forward(logp.cview(), t32.cview(), {}, loss.view()).ok());
  EXPECT_NEAR(loss.v[0], 0.71355817782, 1e-11);
  const ref::Tensor rl = ref::nll_loss(logp.to_ref(), t64.to_targets(), {});
  EXPECT_NEAR(loss.v[0], static_cast<double>(rl.data[0]), 1e-15);
  ASSERT_TRUE(nll_loss_forward(logp.cview(), t64.cview(), {}, loss.view()).ok());
  EXPECT_NEAR(loss.v[0], 0.71355817782, 1e-11);

  Buf<float> logp32({2, 4});
  for (int k = 0; k < 8; ++k) logp32.v[k] = static_cast<float>(logp.v[k]);
  Buf<float> loss32(ref::Shape{});
  ASSERT_TRUE(nll_loss_forward(logp32.cview(), t32.cview(), {}, loss32.view()).ok());
  EXPECT_NEAR(loss32.v[0], 0.71355817782, 2 * 0x1p-24);
}

XENT_INSTANTIATE_FOR_EVERY_ISA(Golden);

}  // namespace
}  // namespace xent::test
