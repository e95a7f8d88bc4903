// test_lbfgs.cc: the full-batch objective and L-BFGS of `--optimizer lbfgs`, and the validation
// split. Oracles: the objective and its gradient written out here in long double (loops, no BLAS),
// central finite differences, the optimality condition (an independent gradient ~ 0 at the
// result of a strongly convex problem), agreement of float32/float64 and of the three changes of
// variables (none, inputs, curvature), the curvature preconditioner's transforms against their
// definitions (inverse, symmetric, finite differences of f(T q)), and bit equality across thread
// counts.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "train/lbfgs.h"
#include "train_test_util.h"
#include "xent/runtime.h"
#include "xent/train/train.h"

namespace xent {
using namespace ::xent::io;     // LabeledImages
using namespace ::xent::train;  // the objective and L-BFGS
namespace {

// f and grad in long double: mean CE + ||W||^2 / (2 C N).
long double reference_objective(const LabeledImages& d, std::int64_t C, double Cinv_strength, const std::vector<double>& p,
                                std::vector<long double>* grad) {
  const std::int64_t N = d.n, D = d.features();
  if (grad) grad->assign(p.size(), 0.0L);
  long double loss = 0;
  for (std::int64_t i = 0; i < N; ++i) {
    std::vector<long double> z(static_cast<std::size_t>(C));
    for (std::int64_t c = 0; c < C; ++c) {
      long double s = p[static_cast<std::size_t>(D * C + c)];
      for (std::int64_t k = 0; k < D; ++k) s += d.pixels.data()[i * D + k] / 255.0L * p[static_cast<std::size_t>(k * C + c)];
      z[static_cast<std::size_t>(c)] = s;
    }
    long double mx = z[0];
    for (auto v : z) mx = std::max(mx, v);
    long double se = 0;
    for (auto v : z) se += std::exp(v - mx);
    const long double lse = mx + std::log(se);
    const auto y = d.labels[static_cast<std::size_t>(i)];
    loss += lse - z[static_cast<std::size_t>(y)];
    if (grad) {
      for (std::int64_t c = 0; c < C; ++c) {
        const long double dz = (std::exp(z[static_cast<std::size_t>(c)] - lse) - (c == y)) / N;
        (*grad)[static_cast<std::size_t>(D * C + c)] += dz;
        for (std::int64_t k = 0; k < D; ++k) (*grad)[static_cast<std::size_t>(k * C + c)] += d.pixels.data()[i * D + k] / 255.0L * dz;
      }
    }
  }
  long double w2 = 0;
  for (std::int64_t j = 0; j < D * C; ++j) {
    w2 += static_cast<long double>(p[static_cast<std::size_t>(j)]) * p[static_cast<std::size_t>(j)];
    if (grad) (*grad)[static_cast<std::size_t>(j)] += p[static_cast<std::size_t>(j)] / (Cinv_strength * N);
  }
  return loss / N + w2 / (2 * Cinv_strength * N);
}

std::vector<double> random_params(std::size_t n, double scale, std::uint64_t seed) {
  std::vector<double> p(n);
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (auto& v : p) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    v = scale * (static_cast<double>(x >> 11) / 9007199254740992.0 - 0.5);
  }
  return p;
}

TEST(LbfgsObjective, ValueAndGradientMatchALongDoubleReference) {
  const int h = 4, w = 5, C = 3;
  // 1100 rows: three chunks of 512 rows, the last one partial.
  LabeledImages d = test::to_labeled(test::make_synthetic(1100, h, w, C, 3), h, w);
  const double Cs = 0.7;
  train::SoftmaxObjective<double> f64(d, C, Cs);
  train::SoftmaxObjective<float> f32(d, C, Cs);
  const auto p = random_params(static_cast<std::size_t>(f64.size()), 0.6, 1);
  std::vector<long double> gref;
  const long double fref = reference_objective(d, C, Cs, p, &gref);
  std::vector<double> g64(p.size()), g32(p.size());
  train::ObjectiveValue v64, v32;
  ASSERT_TRUE(f64.evaluate(p.data(), g64.data(), &v64).ok());
  ASSERT_TRUE(f32.evaluate(p.data(), g32.data(), &v32).ok());
  EXPECT_NEAR(v64.f, static_cast<double>(fref), 1e-13 * std::fabs(static_cast<double>(fref)));
  EXPECT_NEAR(v32.f, static_cast<double>(fref), 2e-6 * std::fabs(static_cast<double>(fref)));
  double gmax = 0;
  for (std::size_t j = 0; j < p.size(); ++j) {
    EXPECT_NEAR(g64[j], static_cast<double>(gref[j]), 1e-13) << j;
    EXPECT_NEAR(g32[j], static_cast<double>(gref[j]), 2e-6) << j;
    gmax = std::max(gmax, std::fabs(static_cast<double>(gref[j])));
  }
  EXPECT_NEAR(v64.grad_max, gmax, 1e-13);
}

TEST(LbfgsObjective, GradientMatchesCentralDifferences) {
  const int h = 3, w = 3, C = 4;
  LabeledImages d = test::to_labeled(test::make_synthetic(300, h, w, C, 5), h, w);
  train::SoftmaxObjective<double> f(d, C, 0.3);
  auto p = random_params(static_cast<std::size_t>(f.size()), 1.0, 2);
  std::vector<double> g(p.size());
  train::ObjectiveValue v;
  ASSERT_TRUE(f.evaluate(p.data(), g.data(), &v).ok());
  for (std::size_t j = 0; j < p.size(); ++j) {
    const double h_step = 1e-5, keep = p[j];
    train::ObjectiveValue up, down;
    p[j] = keep + h_step;
    ASSERT_TRUE(f.evaluate(p.data(), nullptr, &up).ok());
    p[j] = keep - h_step;
    ASSERT_TRUE(f.evaluate(p.data(), nullptr, &down).ok());
    p[j] = keep;
    EXPECT_NEAR(g[j], (up.f - down.f) / (2 * h_step), 1e-8) << "parameter " << j;
  }
}

struct Solved {
  std::vector<double> p;
  train::LbfgsResult r;
};
template <class T>
Solved solve(const LabeledImages& d, std::int64_t C, double Cs, Precondition precondition, double gtol) {
  train::SoftmaxObjective<T> f(d, C, Cs);
  Solved s;
  s.p.assign(static_cast<std::size_t>(f.size()), 0.0);
  train::LbfgsSettings st;
  st.max_iter = 5000, st.gtol = gtol, st.ftol = 0;
  EXPECT_TRUE(train::minimize_softmax(f, d, precondition, s.p, st, nullptr, &s.r).ok());
  return s;
}

TEST(Lbfgs, ReachesTheOptimumOfAStronglyConvexProblem) {
  const int h = 4, w = 4, C = 3;
  LabeledImages d = test::to_labeled(test::make_synthetic(700, h, w, C, 9), h, w);
  const double Cs = 0.05;  // enough penalty that the optimum is finite and well inside float range
  for (Precondition pre : {Precondition::kCurvature, Precondition::kInputs, Precondition::kNone}) {
    // At gradients near 1e-9 a step changes f (about 0.1 here) by less than double's resolution;
    // the run ends there ("ftol": no decrease) or by gtol.
    Solved s = solve<double>(d, C, Cs, pre, 1e-9);
    EXPECT_TRUE(s.r.stop_reason == "gtol" || s.r.stop_reason == "ftol") << s.r.stop_reason;
    // The independent long-double gradient vanishes there (it is ~0.1 at the start).
    std::vector<long double> g;
    reference_objective(d, C, Cs, s.p, &g);
    for (std::size_t j = 0; j < g.size(); ++j)
      EXPECT_NEAR(static_cast<double>(g[j]), 0.0, 1e-8)
          << j << " precondition " << static_cast<int>(pre) << " after " << s.r.iterations;
  }
  // Every change of variables, and float32, reach the same point.
  Solved a = solve<double>(d, C, Cs, Precondition::kCurvature, 1e-9);
  Solved b = solve<double>(d, C, Cs, Precondition::kNone, 1e-9);
  Solved i = solve<double>(d, C, Cs, Precondition::kInputs, 1e-9);
  Solved c = solve<float>(d, C, Cs, Precondition::kCurvature, 1e-6);
  EXPECT_GT(a.r.iterations, kCurvatureStages[0]) << "the run must reach a curvature stage";
  const long double fa = reference_objective(d, C, Cs, a.p, nullptr);
  for (std::size_t j = 0; j < a.p.size(); ++j) {  // |p - p*| <= |g| / mu, mu = 1 / (C N)
    EXPECT_NEAR(a.p[j], b.p[j], 1e-5) << j;
    EXPECT_NEAR(a.p[j], i.p[j], 1e-5) << j;
  }
  const long double fc = reference_objective(d, C, Cs, c.p, nullptr);
  EXPECT_GE(fc, fa - 1e-14L);
  EXPECT_LT((fc - fa) / fa, 1e-6L) << "float32 run stopped by " << c.r.stop_reason;
}

// The curvature change of variables p = T q: to_q inverts to_params, T is symmetric (to_q_grad
// applies the same T), and the gradient L-BFGS sees, T grad f(T q), matches central differences
// of q -> f(T q). Built at a point where the softmax is far from uniform, so that A and G are not
// multiples of the inputs' Gram matrix.
TEST(LbfgsPreconditioner, CurvatureTransformIsInvertibleSymmetricAndDifferentiable) {
  const int h = 3, w = 4, C = 4;
  LabeledImages d = test::to_labeled(test::make_synthetic(900, h, w, C, 13), h, w);
  train::SoftmaxObjective<double> f(d, C, 0.4);
  const auto n = static_cast<std::size_t>(f.size());
  train::Preconditioner pre;
  ASSERT_TRUE(pre.build(d, C).ok());
  const auto at = random_params(n, 3.0, 5);
  ASSERT_TRUE(pre.build_curvature(at.data(), f.penalty()).ok());
  const auto q = random_params(n, 1.0, 6), r = random_params(n, 1.0, 7);
  std::vector<double> p(n), back(n), tr(r);
  pre.to_params(q.data(), p.data());
  pre.to_q(p.data(), back.data());
  double qmax = 0, diff = 0;
  for (std::size_t j = 0; j < n; ++j) qmax = std::max(qmax, std::fabs(q[j])), diff = std::max(diff, std::fabs(back[j] - q[j]));
  EXPECT_LT(diff, 1e-9 * qmax);
  // Symmetry: r . T q == (T r) . q, with T r from to_q_grad.
  pre.to_q_grad(tr.data());
  long double lhs = 0, rhs = 0, scale = 0;
  for (std::size_t j = 0; j < n; ++j) lhs += r[j] * p[j], rhs += tr[j] * q[j], scale += std::fabs(r[j] * p[j]);
  EXPECT_NEAR(static_cast<double>(lhs), static_cast<double>(rhs), 1e-10 * static_cast<double>(scale));
  // It is not the inputs' whitening: T differs from R^-1 on q.
  train::Preconditioner inputs_only;
  ASSERT_TRUE(inputs_only.build(d, C).ok());
  std::vector<double> p_in(n);
  inputs_only.to_params(q.data(), p_in.data());
  double change = 0;
  for (std::size_t j = 0; j < n; ++j) change = std::max(change, std::fabs(p_in[j] - p[j]));
  EXPECT_GT(change, 1e-3);
  // Finite differences of g(q) = f(T q).
  std::vector<double> grad(n), qq(q);
  train::ObjectiveValue v;
  ASSERT_TRUE(f.evaluate(p.data(), grad.data(), &v).ok());
  pre.to_q_grad(grad.data());
  for (std::size_t j = 0; j < n; j += 3) {
    const double step = 1e-5, keep = qq[j];
    train::ObjectiveValue up, down;
    std::vector<double> pp(n);
    qq[j] = keep + step;
    pre.to_params(qq.data(), pp.data());
    ASSERT_TRUE(f.evaluate(pp.data(), nullptr, &up).ok());
    qq[j] = keep - step;
    pre.to_params(qq.data(), pp.data());
    ASSERT_TRUE(f.evaluate(pp.data(), nullptr, &down).ok());
    qq[j] = keep;
    EXPECT_NEAR(grad[j], (up.f - down.f) / (2 * step), 1e-6 * std::max(1.0, std::fabs(grad[j]))) << "parameter " << j;
  }
}

TEST(Lbfgs, TrainerGivesTheSameModelBitsForAnyThreadCount) {
  auto tr = test::make_synthetic(1500, 8, 8, 4, 21), te = test::make_synthetic(200, 8, 8, 4, 22);
  LabeledImages train = test::to_labeled(tr, 8, 8), test_set = test::to_labeled(te, 8, 8);
  std::string first;
  for (bool f64 : {false, true}) {
    first.clear();
    for (int threads : {1, 2, 3, 7}) {
      TrainOptions o;
      o.optimizer = Optimizer::kLbfgs, o.C = 0.5, o.max_iter = 40, o.threads = threads, o.float64 = f64;
      auto st = init_train_state(8, 8, 4, o);
      ASSERT_TRUE(st.ok());
      bool interrupted = true;
      ASSERT_TRUE(train_softmax_regression(train, test_set, o, *st, {}, &interrupted).ok());
      EXPECT_FALSE(interrupted);
      ASSERT_FALSE(st->history.empty());
      EXPECT_TRUE(std::isfinite(st->history.back().objective));
      EXPECT_TRUE(std::isfinite(st->history.back().test_loss));
      const std::string bytes = serialize_model(st->model).value();
      if (first.empty()) first = bytes;
      else EXPECT_EQ(bytes, first) << threads << " threads, float64 " << f64;
    }
  }
}

TEST(ValidationSplit, StratifiedSeededAndComplete) {
  const int C = 5;
  LabeledImages d = test::to_labeled(test::make_synthetic(1003, 3, 2, C, 4), 3, 2);
  LabeledImages tr, va, tr2, va2, tr3, va3;
  ASSERT_TRUE(split_validation(d, 0.2, 7, &tr, &va).ok());
  ASSERT_TRUE(split_validation(d, 0.2, 7, &tr2, &va2).ok());
  ASSERT_TRUE(split_validation(d, 0.2, 8, &tr3, &va3).ok());
  std::map<int, int> all, in_val;
  for (auto y : d.labels) ++all[y];
  for (auto y : va.labels) ++in_val[y];
  for (auto [c, n] : all) EXPECT_EQ(in_val[c], static_cast<int>(std::llround(0.2 * n))) << "class " << c;
  EXPECT_EQ(tr.n + va.n, d.n);
  EXPECT_EQ(va.labels, va2.labels);
  EXPECT_TRUE(std::equal(va.pixels.data(), va.pixels.data() + va.pixels.size(), va2.pixels.data()));
  EXPECT_FALSE(std::equal(va.pixels.data(), va.pixels.data() + va.pixels.size(), va3.pixels.data()))
      << "another seed holds out other images";
  // Every image lands in exactly one part: the multisets of (label, pixels) rows agree.
  std::multiset<std::string> rows, parts;
  auto add = [](std::multiset<std::string>& m, const LabeledImages& s) {
    for (std::int64_t i = 0; i < s.n; ++i)
      m.insert(std::to_string(s.labels[static_cast<std::size_t>(i)]) + ":" +
               std::string(reinterpret_cast<const char*>(s.pixels.data() + i * 6), 6));
  };
  add(rows, d), add(parts, tr), add(parts, va);
  EXPECT_EQ(rows, parts);
  EXPECT_FALSE(split_validation(d, 1.0, 0, &tr, &va).ok());
  EXPECT_FALSE(split_validation(d, -0.1, 0, &tr, &va).ok());
}

TEST(ValidationSplit, TrainerReportsValidationAndTestLoss) {
  auto tr = test::make_synthetic(600, 8, 8, 4, 11), te = test::make_synthetic(200, 8, 8, 4, 12);
  LabeledImages all = test::to_labeled(tr, 8, 8), test_set = test::to_labeled(te, 8, 8), train, val;
  ASSERT_TRUE(split_validation(all, 0.25, 0, &train, &val).ok());
  TrainOptions o;
  o.epochs = 3, o.batch_size = 32, o.val_split = 0.25;
  auto st = init_train_state(8, 8, 4, o);
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(train_softmax_regression(train, &val, test_set, o, *st, {}, nullptr).ok());
  ASSERT_EQ(st->history.size(), 3u);
  for (const auto& e : st->history) {
    EXPECT_TRUE(std::isfinite(e.val_loss) && std::isfinite(e.val_accuracy) && std::isfinite(e.test_loss)) << e.epoch;
  }
  // The recorded test loss is the model's mean cross-entropy on the test set.
  std::vector<float> z(static_cast<std::size_t>(test_set.n * 4));
  ASSERT_TRUE(compute_logits(st->model, test_set.pixels.data(), test_set.n, 1, z.data()).ok());
  double loss = 0;
  for (std::int64_t i = 0; i < test_set.n; ++i) {
    const float* r = z.data() + i * 4;
    double mx = r[0], se = 0;
    for (int c = 1; c < 4; ++c) mx = std::max(mx, static_cast<double>(r[c]));
    for (int c = 0; c < 4; ++c) se += std::exp(r[c] - mx);
    loss += mx + std::log(se) - r[test_set.labels[static_cast<std::size_t>(i)]];
  }
  EXPECT_NEAR(st->history.back().test_loss, loss / static_cast<double>(test_set.n), 1e-5);
}

}  // namespace
}  // namespace xent
