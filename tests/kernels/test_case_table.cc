// test_case_table.cc: SIMD against scalar on the shared case table (tests/cases/cases.json), on
// every instruction set this CPU supports. Every shape of the table goes through the public API
// twice, once with the ISA under test and once with the scalar kernel set, with the same inputs;
// the results must agree to within simd_check.h's tolerance (16 ulp of the element's scale). The
// ops: softmax, log_softmax and logsumexp (forward and backward, every listed dim), cross-entropy
// (class indices; every reduction and label smoothing of the table, with and without class
// weights, an ignored target) and binary cross-entropy with logits (every reduction). The
// kernels' own row-length sweeps, tiles and non-finite rows stay in test_kernels.cc (they aim at
// thresholds of cpu/tuning.h, not at op semantics); the oracle and PyTorch checks of the same table
// are tests/core/test_vs_reference.cc and tests/torch/test_vs_torch.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cases/cases.h"
#include "simd_check.h"
#include "xent/xent.h"

namespace xent {
namespace {

namespace cases = xent::test::cases;
using CaseShape = cases::Shape;
using simd_check::close;

xent::Shape to_shape(const CaseShape& s) {
  xent::Shape out;
  EXPECT_TRUE(xent::Shape::from_dims(s.data(), static_cast<int>(s.size()), &out));
  return out;
}

std::string shape_str(const CaseShape& s) { return to_shape(s).to_string(); }

template <class T>
std::vector<T> uniform(std::mt19937_64& rng, std::int64_t n, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (T& x : v) x = static_cast<T>(d(rng));
  return v;
}

// Runs `op` (which writes its outputs into `outs`) with the ISA under test and with the scalar
// set, and compares every output. `scale` is the magnitude errors are measured against.
template <class T>
void compare(const std::string& isa, const std::string& what, double scale,
             const std::function<Status(std::vector<std::vector<T>>& outs)>& op, std::size_t n_outs) {
  SCOPED_TRACE(what);
  std::vector<std::vector<T>> simd(n_outs), scalar(n_outs);
  ASSERT_TRUE(set_isa(isa).ok());
  const Status a = op(simd);
  ASSERT_TRUE(set_isa("scalar").ok());
  const Status b = op(scalar);
  ASSERT_TRUE(set_isa(isa).ok());
  ASSERT_EQ(a.ok(), b.ok()) << a.to_string() << " vs " << b.to_string();
  ASSERT_TRUE(a.ok()) << a.to_string();
  for (std::size_t k = 0; k < n_outs; ++k) {
    std::vector<double> sc(scalar[k].size());
    for (std::size_t i = 0; i < sc.size(); ++i) sc[i] = scale * (1 + std::fabs(static_cast<double>(scalar[k][i])));
    EXPECT_TRUE(close(simd[k], scalar[k], sc)) << "output " << k;
  }
}

class CaseTable : public ::testing::TestWithParam<std::string> {
 protected:
  void TearDown() override { set_isa("auto").ignore_error(); }
};

template <class T>
void softmax_family(const std::string& isa) {
  std::mt19937_64 rng(21);
  for (const cases::SoftmaxCase& c : cases::table().softmax) {
    const std::int64_t n = cases::numel(c.shape);
    const xent::Shape s = to_shape(c.shape);
    const auto x = uniform<T>(rng, n, -8, 8), dy = uniform<T>(rng, n, -1, 1);
    for (std::int64_t dim : c.dims) {
      const std::string at = simd_check::type_name<T>() + " shape " + shape_str(c.shape) + " dim " + std::to_string(dim);
      compare<T>(isa, "softmax " + at, 1, [&](std::vector<std::vector<T>>& o) {
        o[0].assign(x.size(), T(0));
        o[1].assign(x.size(), T(0));
        XENT_RETURN_IF_ERROR(softmax_forward({x, s}, dim, {o[0], s}));
        return softmax_backward({o[0], s}, {dy, s}, dim, {o[1], s});
      }, 2);
      compare<T>(isa, "log_softmax " + at, 16, [&](std::vector<std::vector<T>>& o) {
        o[0].assign(x.size(), T(0));
        o[1].assign(x.size(), T(0));
        XENT_RETURN_IF_ERROR(log_softmax_forward({x, s}, dim, {o[0], s}));
        return log_softmax_backward({o[0], s}, {dy, s}, dim, {o[1], s});
      }, 2);
      if (c.shape.empty()) continue;  // logsumexp of a 0-d input: nothing to reduce along
      const int d = static_cast<int>(dim < 0 ? dim + static_cast<std::int64_t>(c.shape.size()) : dim);
      const xent::Shape rs = s.without(d);
      const std::int64_t rn = rs.numel();
      const auto dout = uniform<T>(rng, rn, -1, 1);
      compare<T>(isa, "logsumexp " + at, 16, [&](std::vector<std::vector<T>>& o) {
        o[0].assign(static_cast<std::size_t>(rn), T(0));
        o[1].assign(x.size(), T(0));
        XENT_RETURN_IF_ERROR(logsumexp_forward({x, s}, dim, {o[0], rs}));
        return logsumexp_backward({x, s}, {o[0], rs}, {dout, rs}, dim, {o[1], s});
      }, 2);
    }
  }
}

template <class T>
void cross_entropy(const std::string& isa) {
  std::mt19937_64 rng(22);
  const cases::Table& tab = cases::table();
  for (const CaseShape& shape : tab.class_losses) {
    const std::int64_t C = cases::classes(shape), n = cases::numel(shape);
    const xent::Shape s = to_shape(shape);
    const xent::Shape ts = shape.size() == 1 ? xent::Shape{} : s.without(1);
    const std::int64_t rows = ts.numel();
    const auto x = uniform<T>(rng, n, -6, 6);
    const auto w = uniform<T>(rng, C, 0.1, 3);
    std::vector<std::int64_t> t(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) t[static_cast<std::size_t>(r)] = r % 4 == 3 ? -100 : (r * 7 + 1) % C;
    for (cases::Reduction red : tab.reductions) {
      for (double eps : tab.label_smoothing) {
        for (int weighted = 0; weighted < 2; ++weighted) {
          CrossEntropyOptions o;
          o.reduction = red == cases::Reduction::kNone ? Reduction::kNone
                        : red == cases::Reduction::kMean ? Reduction::kMean
                                                         : Reduction::kSum;
          o.label_smoothing = eps;
          if (weighted) o.weight = {w, xent::Shape{C}};
          const bool none = o.reduction == Reduction::kNone;
          const xent::Shape ls = none ? ts : xent::Shape{};
          const std::int64_t ln = none ? rows : 1;
          const auto dloss = uniform<T>(rng, ln, 0.5, 1.5);
          const std::string what = simd_check::type_name<T>() + " cross_entropy " + shape_str(shape) + " " +
                                   reduction_name(o.reduction) + " eps " + std::to_string(eps) +
                                   (weighted ? " weighted" : "");
          // Scale: a row's loss is lse - z[t] with |x| <= 6 (a few units); a reduced loss sums the
          // rows' errors.
          const double scale = 8.0 * (none ? 1.0 : static_cast<double>(rows));
          compare<T>(isa, what, scale, [&](std::vector<std::vector<T>>& out) {
            out[0].assign(static_cast<std::size_t>(ln), T(0));
            out[1].assign(x.size(), T(0));
            out[2].assign(static_cast<std::size_t>(ln), T(0));
            out[3].assign(x.size(), T(0));
            XENT_RETURN_IF_ERROR(cross_entropy_fused({x, s}, {t, ts}, o, {out[0], ls}, {out[1], s}));
            XENT_RETURN_IF_ERROR(cross_entropy_forward({x, s}, {t, ts}, o, {out[2], ls}));
            return cross_entropy_backward({x, s}, {t, ts}, o, {dloss, ls}, {out[3], s});
          }, 4);
        }
      }
    }
  }
}

template <class T>
void bce_with_logits(const std::string& isa) {
  std::mt19937_64 rng(23);
  const cases::Table& tab = cases::table();
  for (const CaseShape& shape : tab.elementwise_losses) {
    const std::int64_t n = cases::numel(shape);
    const xent::Shape s = to_shape(shape);
    const auto x = uniform<T>(rng, n, -12, 12), t = uniform<T>(rng, n, 0, 1);
    for (cases::Reduction red : tab.reductions) {
      BceOptions o;
      o.reduction = red == cases::Reduction::kNone ? Reduction::kNone
                    : red == cases::Reduction::kMean ? Reduction::kMean
                                                     : Reduction::kSum;
      const bool none = o.reduction == Reduction::kNone;
      const xent::Shape ls = none ? s : xent::Shape{};
      const std::int64_t ln = none ? n : 1;
      const auto dloss = uniform<T>(rng, ln, 0.5, 1.5);
      const std::string what = simd_check::type_name<T>() + " bce_with_logits " + shape_str(shape) + " " +
                               reduction_name(o.reduction);
      compare<T>(isa, what, 16.0 * static_cast<double>(none ? 1 : n), [&](std::vector<std::vector<T>>& out) {
        out[0].assign(static_cast<std::size_t>(ln), T(0));
        out[1].assign(x.size(), T(0));
        XENT_RETURN_IF_ERROR(binary_cross_entropy_with_logits_forward({x, s}, {t, s}, o, {out[0], ls}));
        return binary_cross_entropy_with_logits_backward({x, s}, {t, s}, o, {dloss, ls}, {out[1], s});
      }, 2);
    }
  }
}

TEST_P(CaseTable, SoftmaxFamily) {
  if (cases::has_dtype("float32")) softmax_family<float>(GetParam());
  if (cases::has_dtype("float64")) softmax_family<double>(GetParam());
}

TEST_P(CaseTable, CrossEntropy) {
  if (cases::has_dtype("float32")) cross_entropy<float>(GetParam());
  if (cases::has_dtype("float64")) cross_entropy<double>(GetParam());
}

TEST_P(CaseTable, BinaryCrossEntropyWithLogits) {
  if (cases::has_dtype("float32")) bce_with_logits<float>(GetParam());
  if (cases::has_dtype("float64")) bce_with_logits<double>(GetParam());
}

// Every SIMD set this CPU runs (the scalar set is the reference, so it is not a parameter).
std::vector<std::string> simd_isas() {
  std::vector<std::string> v = supported_isas();
  v.erase(std::remove(v.begin(), v.end(), "scalar"), v.end());
  return v;
}

INSTANTIATE_TEST_SUITE_P(Isa, CaseTable, ::testing::ValuesIn(simd_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace xent
