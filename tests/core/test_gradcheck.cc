// test_gradcheck.cc: central finite differences, in float64, on the library's own forward functions,
// for every backward and fused gradient (random dloss for reduction none). Independent of the oracle:
// if forward and backward disagree with each other, this fails whatever the reference says.
//
// f(x) = sum_k forward(x)_k * dloss_k; each input element is perturbed by +-h with
// h = 1e-6 * max(1, |x|). Truncation error is O(h^2 f''') ~ 1e-12 and rounding error
// O(eps |f| / h) ~ 1e-10, so |fd - grad| <= 1e-6 * (1 + max|grad|) leaves a wide margin while a wrong
// factor, sign or missing term (errors of order |grad|) cannot pass.
//
// Cases: the shared table (tests/cases/cases.json) entries with at most gradcheck_max_elements
// elements (two forward calls per element), in float64 (finite differences need its precision), with
// the table's reductions and label smoothings (the probability-target check skips a smoothing of 1,
// where the targets no longer matter).
#include <functional>
#include <optional>

#include "cases/cases.h"
#include "op_checks.h"
#include "test_util.h"

namespace xent::test {
namespace {

class Gradcheck : public IsaTest {};

bool small(const ref::Shape& shape) {
  const std::int64_t n = cases::numel(shape);
  return n > 0 && n <= cases::table().gradcheck_max_elements;
}

std::vector<ref::Shape> small_shapes(const std::vector<cases::Shape>& shapes) {
  std::vector<ref::Shape> out;
  for (const auto& s : shapes)
    if (small(s)) out.push_back(s);
  return out;
}

std::vector<ref::Reduction> reductions() {
  std::vector<ref::Reduction> out;
  for (cases::Reduction r : cases::table().reductions)
    out.push_back(r == cases::Reduction::kNone ? ref::Reduction::kNone
                  : r == cases::Reduction::kMean ? ref::Reduction::kMean
                                                 : ref::Reduction::kSum);
  return out;
}

using Forward = std::function<Status(const Buf<double>& x, Buf<double>& out)>;

// Sum of out * dloss for input x.
double objective(const Forward& f, const Buf<double>& x, const ref::Shape& out_shape, const Buf<double>& dloss) {
  Buf<double> out(out_shape);
  const Status s = f(x, out);
  EXPECT_TRUE(s.ok()) << s.to_string();
  long double acc = 0;
  for (std::size_t k = 0; k < out.v.size(); ++k) acc += static_cast<long double>(out.v[k]) * dloss.v[k];
  return static_cast<double>(acc);
}

::testing::AssertionResult matches_finite_differences(const Forward& f, const Buf<double>& x,
                                                      const ref::Shape& out_shape, const Buf<double>& dloss,
                                                      const std::vector<double>& grad) {
  double gmax = 0;
  for (double g : grad) gmax = std::max(gmax, std::fabs(g));
  const double tol = 1e-6 * (1 + gmax);
  Buf<double> xp = x;
  for (std::size_t k = 0; k < x.v.size(); ++k) {
    const double h = 1e-6 * std::max(1.0, std::fabs(x.v[k]));
    xp.v[k] = x.v[k] + h;
    const double fp = objective(f, xp, out_shape, dloss);
    xp.v[k] = x.v[k] - h;
    const double fm = objective(f, xp, out_shape, dloss);
    xp.v[k] = x.v[k];
    const double fd = (fp - fm) / (2 * h);
    if (!(std::fabs(fd - grad[k]) <= tol)) {
      return ::testing::AssertionFailure() << "element " << k << ": analytic " << grad[k] << ", finite difference "
                                           << fd << " (tolerance " << tol << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

TEST_P(Gradcheck, SoftmaxFamily) {
  Rng rng(101);
  std::vector<std::pair<ref::Shape, std::int64_t>> cases_here;
  for (const cases::SoftmaxCase& c : cases::table().softmax)
    if (small(c.shape))
      for (std::int64_t dim : c.dims) cases_here.emplace_back(c.shape, dim);
  ASSERT_FALSE(cases_here.empty());
  for (const auto& [shape, dim] : cases_here) {
    SCOPED_TRACE("shape " + shape_str(shape) + ", dim " + std::to_string(dim));
    const Buf<double> x = rng.uniform_buf<double>(shape, -3, 3);
    const Buf<double> dy = rng.uniform_buf<double>(shape, -1, 1);
    Buf<double> y(shape), dx(shape);

    ASSERT_TRUE(softmax_forward(x.cview(), dim, y.view()).ok());
    ASSERT_TRUE(softmax_backward(y.cview(), dy.cview(), dim, dx.view()).ok());
    EXPECT_TRUE(matches_finite_differences(
        [&](const Buf<double>& in, Buf<double>& out) { return softmax_forward(in.cview(), dim, out.view()); }, x, shape,
        dy, dx.v))
        << "softmax_backward";

    ASSERT_TRUE(log_softmax_forward(x.cview(), dim, y.view()).ok());
    ASSERT_TRUE(log_softmax_backward(y.cview(), dy.cview(), dim, dx.view()).ok());
    EXPECT_TRUE(matches_finite_differences(
        [&](const Buf<double>& in, Buf<double>& out) { return log_softmax_forward(in.cview(), dim, out.view()); }, x,
        shape, dy, dx.v))
        << "log_softmax_backward";

    const std::int64_t d = shape.empty() ? 0 : (dim < 0 ? dim + static_cast<std::int64_t>(shape.size()) : dim);
    const ref::Shape rshape = shape.empty() ? ref::Shape{} : ref::shape_without(shape, d);
    Buf<double> out(rshape);
    const Buf<double> dout = rng.uniform_buf<double>(rshape, -1, 1);
    ASSERT_TRUE(logsumexp_forward(x.cview(), dim, out.view()).ok());
    ASSERT_TRUE(logsumexp_backward(x.cview(), out.cview(), dout.cview(), dim, dx.view()).ok());
    EXPECT_TRUE(matches_finite_differences(
        [&](const Buf<double>& in, Buf<double>& o) { return logsumexp_forward(in.cview(), dim, o.view()); }, x, rshape,
        dout, dx.v))
        << "logsumexp_backward";
  }
}

TEST_P(Gradcheck, CrossEntropyClassIndices) {
  Rng rng(102);
  const std::vector<ref::Shape> shapes = small_shapes(cases::table().class_losses);
  ASSERT_FALSE(shapes.empty());
  for (const ref::Shape& shape : shapes) {
    const std::int64_t C = shape.size() == 1 ? shape[0] : shape[1];
    const ref::Shape tshape = shape.size() == 1 ? ref::Shape{} : ref::shape_without(shape, 1);
    const Buf<double> x = rng.uniform_buf<double>(shape, -3, 3);
    Buf<std::int64_t> t = random_targets<std::int64_t>(rng, tshape, C, std::nullopt);
    if (t.v.size() > 1) t.v[1] = -100;  // one ignored position
    for (int with_weight = 0; with_weight < 2; ++with_weight) {
      std::optional<Buf<double>> weight;
      if (with_weight) weight = rng.uniform_buf<double>({C}, 0.2, 2.0);
      for (ref::Reduction red : reductions()) {
        for (double eps : cases::table().label_smoothing) {
          SCOPED_TRACE("cross_entropy shape " + shape_str(shape) + (with_weight ? ", weight" : "") + ", reduction " +
                       name_of(red) + ", label_smoothing " + std::to_string(eps));
          CrossEntropyOptions o;
          if (weight) o.weight = weight->cview();
          o.reduction = to_xent(red);
          o.label_smoothing = eps;
          const ref::Shape lshape = red == ref::Reduction::kNone ? tshape : ref::Shape{};
          const Buf<double> dloss = rng.uniform_buf<double>(lshape, -2, 2);
          const Forward fwd = [&](const Buf<double>& in, Buf<double>& out) {
            return cross_entropy_forward(in.cview(), t.cview(), o, out.view());
          };
          Buf<double> dx(shape);
          ASSERT_TRUE(cross_entropy_backward(x.cview(), t.cview(), o, dloss.cview(), dx.view()).ok());
          EXPECT_TRUE(matches_finite_differences(fwd, x, lshape, dloss, dx.v)) << "cross_entropy_backward";
          // fused: gradient of sum(loss)
          Buf<double> loss(lshape), dxf(shape);
          ASSERT_TRUE(cross_entropy_fused(x.cview(), t.cview(), o, loss.view(), dxf.view()).ok());
          const Buf<double> ones(lshape, 1.0);
          EXPECT_TRUE(matches_finite_differences(fwd, x, lshape, ones, dxf.v)) << "cross_entropy_fused";
        }
      }
    }
  }
}

TEST_P(Gradcheck, CrossEntropyProbabilityTargets) {
  Rng rng(103);
  const std::vector<ref::Shape> shapes = small_shapes(cases::table().class_losses);
  ASSERT_FALSE(shapes.empty());
  for (const ref::Shape& shape : shapes) {
    const std::int64_t C = shape.size() == 1 ? shape[0] : shape[1];
    const std::int64_t cdim = shape.size() == 1 ? 0 : 1;
    const Buf<double> x = rng.uniform_buf<double>(shape, -3, 3);
    const Buf<double> t = rng.prob_buf<double>(shape);
    for (int with_weight = 0; with_weight < 2; ++with_weight) {
      std::optional<Buf<double>> weight;
      if (with_weight) weight = rng.uniform_buf<double>({C}, 0.2, 2.0);
      for (ref::Reduction red : reductions()) {
        for (double eps : cases::table().label_smoothing) {
          if (eps == 1.0) continue;
          SCOPED_TRACE("cross_entropy probabilities shape " + shape_str(shape) + (with_weight ? ", weight" : "") +
                       ", reduction " + name_of(red) + ", label_smoothing " + std::to_string(eps));
          CrossEntropyOptions o;
          if (weight) o.weight = weight->cview();
          o.reduction = to_xent(red);
          o.label_smoothing = eps;
          const ref::Shape lshape = red == ref::Reduction::kNone ? ref::shape_without(shape, cdim) : ref::Shape{};
          const Buf<double> dloss = rng.uniform_buf<double>(lshape, -2, 2);
          const Forward fwd = [&](const Buf<double>& in, Buf<double>& out) {
            return cross_entropy_forward(in.cview(), t.cview(), o, out.view());
          };
          Buf<double> dx(shape);
          ASSERT_TRUE(cross_entropy_backward(x.cview(), t.cview(), o, dloss.cview(), dx.view()).ok());
          EXPECT_TRUE(matches_finite_differences(fwd, x, lshape, dloss, dx.v)) << "cross_entropy_backward";
          Buf<double> loss(lshape), dxf(shape);
          ASSERT_TRUE(cross_entropy_fused(x.cview(), t.cview(), o, loss.view(), dxf.view()).ok());
          EXPECT_TRUE(matches_finite_differences(fwd, x, lshape, Buf<double>(lshape, 1.0), dxf.v)) << "cross_entropy_fused";
        }
      }
    }
  }
}

TEST_P(Gradcheck, NllLoss) {
  Rng rng(104);
  const std::vector<ref::Shape> shapes = small_shapes(cases::table().class_losses);
  ASSERT_FALSE(shapes.empty());
  for (const ref::Shape& shape : shapes) {
    const std::int64_t C = cases::classes(shape);
    const ref::Shape tshape = shape.size() == 1 ? ref::Shape{} : ref::shape_without(shape, 1);
    const Buf<double> x = rng.uniform_buf<double>(shape, -3, 0);
    Buf<std::int32_t> t = random_targets<std::int32_t>(rng, tshape, C, std::nullopt);
    if (t.v.size() > 2) t.v[2] = -100;  // one ignored position
    for (int with_weight = 0; with_weight < 2; ++with_weight) {
      std::optional<Buf<double>> weight;
      if (with_weight) weight = rng.uniform_buf<double>({C}, 0.2, 2.0);
      for (ref::Reduction red : reductions()) {
        SCOPED_TRACE("nll_loss shape " + shape_str(shape) + (with_weight ? ", weight" : "") + ", reduction " +
                     name_of(red));
        NllOptions o;
        if (weight) o.weight = weight->cview();
        o.reduction = to_xent(red);
        const ref::Shape lshape = red == ref::Reduction::kNone ? tshape : ref::Shape{};
        const Buf<double> dloss = rng.uniform_buf<double>(lshape, -2, 2);
        Buf<double> dx(shape);
        ASSERT_TRUE(nll_loss_backward(x.cview(), t.cview(), o, dloss.cview(), dx.view()).ok());
        EXPECT_TRUE(matches_finite_differences(
            [&](const Buf<double>& in, Buf<double>& out) { return nll_loss_forward(in.cview(), t.cview(), o, out.view()); },
            x, lshape, dloss, dx.v));
      }
    }
  }
}

TEST_P(Gradcheck, BinaryCrossEntropy) {
  Rng rng(105);
  const std::vector<ref::Shape> shapes = small_shapes(cases::table().elementwise_losses);
  ASSERT_FALSE(shapes.empty());
  for (const ref::Shape& shape : shapes) {
    const Buf<double> p = rng.uniform_buf<double>(shape, 0.05, 0.95);  // h stays inside (0, 1)
    const Buf<double> xl = rng.uniform_buf<double>(shape, -4, 4);
    const Buf<double> t = rng.uniform_buf<double>(shape, 0, 1);
    // Weights: none, the last dim (broadcast over rows), the first dim kept (N, 1, ...).
    ref::Shape first(shape.size(), 1);
    first[0] = shape[0];
    for (int wk = 0; wk < 3; ++wk) {
      std::optional<Buf<double>> weight;
      if (wk == 1) weight = rng.uniform_buf<double>({shape.back()}, 0.2, 2.0);
      if (wk == 2) weight = rng.uniform_buf<double>(first, 0.2, 2.0);
      for (ref::Reduction red : reductions()) {
        const ref::Shape lshape = red == ref::Reduction::kNone ? shape : ref::Shape{};
        const Buf<double> dloss = rng.uniform_buf<double>(lshape, -2, 2);
        SCOPED_TRACE("shape " + shape_str(shape) + ", weight kind " + std::to_string(wk) + ", reduction " +
                     name_of(red));
        {
          BceOptions o;
          if (weight) o.weight = weight->cview();
          o.reduction = to_xent(red);
          Buf<double> dx(shape);
          ASSERT_TRUE(binary_cross_entropy_backward(p.cview(), t.cview(), o, dloss.cview(), dx.view()).ok());
          EXPECT_TRUE(matches_finite_differences(
              [&](const Buf<double>& in, Buf<double>& out) {
                return binary_cross_entropy_forward(in.cview(), t.cview(), o, out.view());
              },
              p, lshape, dloss, dx.v))
              << "binary_cross_entropy_backward";
        }
        for (int with_pw = 0; with_pw < 2; ++with_pw) {
          BceOptions o;
          if (weight) o.weight = weight->cview();
          const Buf<double> pw = rng.uniform_buf<double>({shape.back()}, 0.3, 3.0);
          if (with_pw) o.pos_weight = pw.cview();
          o.reduction = to_xent(red);
          Buf<double> dx(shape);
          ASSERT_TRUE(binary_cross_entropy_with_logits_backward(xl.cview(), t.cview(), o, dloss.cview(), dx.view()).ok());
          EXPECT_TRUE(matches_finite_differences(
              [&](const Buf<double>& in, Buf<double>& out) {
                return binary_cross_entropy_with_logits_forward(in.cview(), t.cview(), o, out.view());
              },
              xl, lshape, dloss, dx.v))
              << "binary_cross_entropy_with_logits_backward" << (with_pw ? " with pos_weight" : "");
        }
      }
    }
  }
}

XENT_INSTANTIATE_FOR_EVERY_ISA(Gradcheck);

}  // namespace
}  // namespace xent::test
