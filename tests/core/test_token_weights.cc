// test_token_weights.cc: cross_entropy's per-token loss weights (CrossEntropyOptions::token_weight)
// on every ISA: forward, backward and fused, every reduction, with class weights, ignored targets
// and label smoothing, in float32, float64, bfloat16 and float16, on shapes that reach each kernel
// path (across-rows tiles, one-exp rows, streamed long rows, split rows, strided layouts).
// Oracles: the long-double reference (ref::cross_entropy_token_weighted), central finite
// differences of the loss (float64), the scalar twin (each SIMD table against it), and the thread
// count (same bits). Bad token weights get an invalid-argument status. Not the CLI (test_cli.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "test_util.h"

namespace xent::test {
namespace {

// Relative accuracy unit per type: the core tests' for float/double; one ulp of a 16-bit type
// (xent rounds each 16-bit result once from a float32-or-better value: within one ulp).
template <class T>
double unit_of() {
  if constexpr (std::is_same_v<T, bfloat16>) return 0x1p-7;
  else if constexpr (std::is_same_v<T, float16>) return 0x1p-10;
  else return unit<T>();
}

struct Case {
  ref::Shape shape;  // input shape; classes along dim 1 (dim 0 of a 1-d input)
  bool class_weight = false;
  double eps = 0;
  ref::Reduction reduction = ref::Reduction::kMean;
};

std::string describe(const Case& c) {
  return shape_str(c.shape) + (c.class_weight ? " class weights" : "") + " smoothing " + std::to_string(c.eps) +
         " reduction " + name_of(c.reduction);
}

template <class T, class I>
struct Data {
  std::vector<T> x, w, tw, dl;
  std::vector<I> t;
  ref::Shape tshape;
  std::int64_t C = 0;
};

template <class T, class I>
Data<T, I> make_data(const Case& c, std::uint64_t seed) {
  Rng rng(seed);
  Data<T, I> d;
  const bool one_d = c.shape.size() == 1;
  d.C = one_d ? c.shape[0] : c.shape[1];
  d.tshape = one_d ? ref::Shape{} : ref::shape_without(c.shape, 1);
  const std::int64_t n = ref::numel(c.shape), rows = ref::numel(d.tshape);
  for (std::int64_t k = 0; k < n; ++k) d.x.push_back(from_double<T>(rng.uniform(-6, 6)));
  for (std::int64_t k = 0; k < d.C; ++k) d.w.push_back(from_double<T>(rng.uniform(0.25, 2)));
  for (std::int64_t r = 0; r < rows; ++r) {
    // Every fifth token ignored (its weight NaN: an ignored token contributes nothing whatever its
    // weight), one weight 0, the others in [0, 3).
    const bool ignored = r % 5 == 3;
    d.t.push_back(static_cast<I>(ignored ? -100 : rng.integer(0, d.C - 1)));
    double tw = ignored ? std::nan("") : r == 1 ? 0.0 : rng.uniform(0, 3);
    d.tw.push_back(from_double<T>(tw));
    d.dl.push_back(from_double<T>(rng.uniform(-2, 2)));
  }
  return d;
}

template <class T, class I>
struct Outputs {
  std::vector<T> loss, dx_bwd, loss_fused, dx_fused;
};

// Forward, backward (upstream dl, or dl[0] when reduced) and fused through the public API.
template <class T, class I>
Outputs<T, I> run_xent(const Case& c, const Data<T, I>& d) {
  const Shape xs = to_shape(c.shape), ts = to_shape(d.tshape);
  const bool none = c.reduction == ref::Reduction::kNone;
  const Shape ls = none ? ts : Shape{};
  const std::size_t nl = none ? d.t.size() : 1;
  CrossEntropyOptions o;
  if (c.class_weight) o.weight = ConstTensorView(d.w.data(), Shape{d.C});
  o.reduction = to_xent(c.reduction);
  o.label_smoothing = c.eps;
  o.token_weight = ConstTensorView(d.tw.data(), ts);
  Outputs<T, I> out;
  out.loss.assign(nl, T{});
  out.loss_fused.assign(nl, T{});
  out.dx_bwd.assign(d.x.size(), T{});
  out.dx_fused.assign(d.x.size(), T{});
  Status s = cross_entropy_forward({d.x.data(), xs}, {d.t.data(), ts}, o, {out.loss.data(), ls});
  EXPECT_TRUE(s.ok()) << s.to_string();
  s = cross_entropy_backward({d.x.data(), xs}, {d.t.data(), ts}, o, {d.dl.data(), ls}, {out.dx_bwd.data(), xs});
  EXPECT_TRUE(s.ok()) << s.to_string();
  s = cross_entropy_fused({d.x.data(), xs}, {d.t.data(), ts}, o, {out.loss_fused.data(), ls}, {out.dx_fused.data(), xs});
  EXPECT_TRUE(s.ok()) << s.to_string();
  return out;
}

template <class T>
::testing::AssertionResult close16(const std::vector<T>& got, const ref::Tensor& want, const std::vector<Real>& scale,
                                   double mult) {
  // One ulp of the subnormal range (float16's subnormals are spaced 2^-24; bfloat16's far finer).
  const Real tiny16 = std::is_same_v<T, float16> ? 0x1p-24L : 0x1p-133L;
  std::vector<double> g;
  for (const T& v : got) g.push_back(static_cast<double>(real_of(v)));
  int bad = 0;
  std::ostringstream os;
  if (static_cast<std::int64_t>(g.size()) != want.numel()) return ::testing::AssertionFailure() << "size";
  for (std::size_t k = 0; k < g.size(); ++k) {
    const Real a = g[k], e = want.data[k];
    const bool ok = std::isnan(e) || std::isnan(a) ? (std::isnan(e) && std::isnan(a))
                    : std::isinf(e) || std::isinf(a) ? a == e
                                                     : std::fabs(a - e) <= unit_of<T>() * mult * scale[k] + tiny16;
    if (!ok && bad++ < 5)
      os << "\n  [" << k << "] got " << static_cast<double>(a) << ", oracle " << static_cast<double>(e) << ", allowed "
         << unit_of<T>() * mult * static_cast<double>(scale[k]);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << g.size() << " differ" << os.str();
}

// xent against the long-double oracle. Scales: a row's loss carries |tw| (|lse| + |x_t| + range),
// reduced losses the sum of those (over the divisor for the mean); a gradient element its row's
// largest gradient times (1 + the row's range).
template <class T, class I>
void check_vs_reference(const Case& c, std::uint64_t seed) {
  SCOPED_TRACE(describe(c));
  const Data<T, I> d = make_data<T, I>(c, seed);
  const Outputs<T, I> out = run_xent(c, d);
  std::vector<Real> xr, wr, twr, dlr;
  for (const T& v : d.x) xr.push_back(real_of(v));
  for (const T& v : d.w) wr.push_back(real_of(v));
  for (const T& v : d.tw) twr.push_back(real_of(v));
  for (const T& v : d.dl) dlr.push_back(real_of(v));
  const ref::Tensor X(c.shape, xr), TW(d.tshape, twr);
  const ref::Targets Tg{d.tshape, std::vector<std::int64_t>(d.t.begin(), d.t.end())};
  ref::CrossEntropyOptions ro;
  if (c.class_weight) ro.weight = ref::Tensor(ref::Shape{d.C}, wr);
  ro.reduction = c.reduction;
  ro.label_smoothing = c.eps;
  const bool none = c.reduction == ref::Reduction::kNone;
  const ref::Tensor L = ref::cross_entropy_token_weighted(X, Tg, ro, TW);
  const ref::Tensor DL = none ? ref::Tensor(d.tshape, dlr) : ref::Tensor::scalar(dlr[0]);
  const ref::Tensor DX = ref::cross_entropy_token_weighted_backward(X, Tg, ro, TW, DL);
  const ref::Tensor DXF =
      ref::cross_entropy_token_weighted_backward(X, Tg, ro, TW, none ? ref::Tensor(d.tshape, std::vector<Real>(d.t.size(), 1)) : ref::Tensor::scalar(1));

  // Per-row magnitudes: layout (outer, C, inner) with rows (o, i).
  const std::int64_t C = d.C, rows = static_cast<std::int64_t>(d.t.size());
  const std::int64_t inner = c.shape.size() <= 2 ? 1 : ref::numel(c.shape) / (c.shape[0] * C);
  auto at = [&](std::int64_t r, std::int64_t k) { return (r / inner * C + k) * inner + r % inner; };
  std::vector<Real> row_scale(static_cast<std::size_t>(rows)), range(static_cast<std::size_t>(rows));
  Real total = 0, divisor = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    Real mx = -INFINITY, mn = INFINITY;
    for (std::int64_t k = 0; k < C; ++k) {
      mx = std::max(mx, xr[at(r, k)]);
      mn = std::min(mn, xr[at(r, k)]);
    }
    range[r] = mx - mn + std::fabs(mx) + std::log(static_cast<Real>(C)) + 1;
    const bool kept = d.t[r] != -100;
    const Real wmax = c.class_weight ? 2 : 1;
    row_scale[r] = kept ? std::fabs(twr[r]) * wmax * range[r] * 2 : 0;
    total += row_scale[r];
    if (kept) divisor += twr[r] * (c.class_weight ? wr[d.t[r]] : 1);
  }
  std::vector<Real> lscale = none ? row_scale : std::vector<Real>{c.reduction == ref::Reduction::kMean ? total / std::fabs(divisor) : total};
  for (std::size_t k = 0; k < lscale.size(); ++k) lscale[k] += std::fabs(L.data[k]);
  auto grad_scale = [&](const ref::Tensor& G) {
    std::vector<Real> s(G.data.size());
    for (std::int64_t r = 0; r < rows; ++r) {
      Real gmax = 0;
      for (std::int64_t k = 0; k < C; ++k) gmax = std::max(gmax, std::fabs(G.data[at(r, k)]));
      for (std::int64_t k = 0; k < C; ++k) s[at(r, k)] = gmax * range[r] + std::fabs(G.data[at(r, k)]);
    }
    return s;
  };
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    EXPECT_TRUE(close_to(out.loss, L, lscale)) << "forward loss";
    EXPECT_TRUE(close_to(out.loss_fused, L, lscale)) << "fused loss";
    EXPECT_TRUE(close_to(out.dx_bwd, DX, grad_scale(DX))) << "backward";
    EXPECT_TRUE(close_to(out.dx_fused, DXF, grad_scale(DXF))) << "fused gradient";
  } else {  // one rounding to 16 bits of a value a few float32 ulps from exact
    std::vector<Real> l16(L.data.size()), g16(DX.data.size()), f16(DXF.data.size());
    for (std::size_t k = 0; k < l16.size(); ++k) l16[k] = std::fabs(L.data[k]) + lscale[k] * 1e-4;
    const std::vector<Real> gs = grad_scale(DX), fs = grad_scale(DXF);
    for (std::size_t k = 0; k < g16.size(); ++k) g16[k] = std::fabs(DX.data[k]) + gs[k] * 1e-4;
    for (std::size_t k = 0; k < f16.size(); ++k) f16[k] = std::fabs(DXF.data[k]) + fs[k] * 1e-4;
    EXPECT_TRUE(close16(out.loss, L, l16, 1)) << "forward loss";
    EXPECT_TRUE(close16(out.loss_fused, L, l16, 1)) << "fused loss";
    EXPECT_TRUE(close16(out.dx_bwd, DX, g16, 1)) << "backward";
    EXPECT_TRUE(close16(out.dx_fused, DXF, f16, 1)) << "fused gradient";
  }
}

// Shapes that reach every kernel path (float32 lanes: tiles for C <= 32, one exp per value up to
// 32 KiB rows, streamed rows beyond, split rows from 256 KiB on at most 7 rows, strided layouts).
std::vector<Case> cases_for(std::size_t elem_bytes) {
  const std::int64_t split_c = static_cast<std::int64_t>(256 * 1024 / elem_bytes) + 17;
  std::vector<Case> v;
  for (ref::Reduction r : kAllReductions) {
    v.push_back({{37, 7}, false, 0, r});
    v.push_back({{37, 20}, true, 0.1, r});
    v.push_back({{6, 1000}, true, 0, r});
    v.push_back({{6, 1000}, false, 0.2, r});
    v.push_back({{3, static_cast<std::int64_t>(80 * 1024 / elem_bytes) + 3}, true, 0.1, r});
    v.push_back({{3, split_c}, true, 0, r});
    v.push_back({{2, split_c}, false, 0.1, r});
    v.push_back({{5, 7, 3}, true, 0, r});
    v.push_back({{3, 40, 9}, false, 0.1, r});
    v.push_back({{11}, false, 0, r});
  }
  return v;
}

class TokenWeights : public IsaTest {};

TEST_P(TokenWeights, Float32AndFloat64VsReference) {
  std::uint64_t seed = 1;
  for (const Case& c : cases_for(4)) check_vs_reference<float, std::int64_t>(c, seed++);
  for (const Case& c : cases_for(8)) check_vs_reference<double, std::int32_t>(c, seed++);
}

TEST_P(TokenWeights, SixteenBitVsReference) {
  std::uint64_t seed = 100;
  for (const Case& c : cases_for(2)) {
    if (c.shape.size() == 2 && c.shape[1] > 60000 && c.reduction != ref::Reduction::kMean) continue;  // time
    check_vs_reference<bfloat16, std::int64_t>(c, seed++);
    check_vs_reference<float16, std::int32_t>(c, seed++);
  }
}

// Each SIMD table against the scalar twin on the same calls (the tolerance of tests/kernels).
TEST_P(TokenWeights, SimdMatchesScalarTwin) {
  if (GetParam() == "scalar") GTEST_SKIP() << "the scalar table is the twin";
  std::uint64_t seed = 300;
  for (const Case& c : cases_for(4)) {
    SCOPED_TRACE(describe(c));
    const Data<float, std::int64_t> d = make_data<float, std::int64_t>(c, seed++);
    const Outputs<float, std::int64_t> simd = run_xent(c, d);
    ASSERT_TRUE(set_isa("scalar").ok());
    const Outputs<float, std::int64_t> scalar = run_xent(c, d);
    ASSERT_TRUE(set_isa(GetParam()).ok());
    auto same = [](const std::vector<float>& a, const std::vector<float>& b, const char* what) {
      ASSERT_EQ(a.size(), b.size());
      float amax = 0;
      for (float v : b) amax = std::isfinite(v) ? std::max(amax, std::fabs(v)) : amax;
      int bad = 0;
      for (std::size_t k = 0; k < a.size(); ++k) {
        const bool ok = std::isnan(a[k]) || std::isnan(b[k]) ? std::isnan(a[k]) && std::isnan(b[k])
                                                             : std::fabs(a[k] - b[k]) <= 64 * 0x1p-24 * (amax + std::fabs(b[k]));
        if (!ok && bad++ < 3) ADD_FAILURE() << what << " [" << k << "] simd " << a[k] << " scalar " << b[k];
      }
    };
    same(simd.loss, scalar.loss, "forward loss");
    same(simd.loss_fused, scalar.loss_fused, "fused loss");
    same(simd.dx_bwd, scalar.dx_bwd, "backward");
    same(simd.dx_fused, scalar.dx_fused, "fused gradient");
  }
}

// Same bits for 1, 2 and 5 threads (split rows and leaves of rows).
TEST_P(TokenWeights, SameBitsForAnyThreadCount) {
  std::uint64_t seed = 500;
  for (const Case& c : {Case{{2, 70000}, true, 0.1, ref::Reduction::kMean}, Case{{300, 64}, false, 0, ref::Reduction::kSum},
                        Case{{64, 50, 7}, true, 0, ref::Reduction::kMean}}) {
    SCOPED_TRACE(describe(c));
    const Data<float, std::int64_t> d = make_data<float, std::int64_t>(c, seed++);
    std::vector<Outputs<float, std::int64_t>> outs;
    for (int threads : {1, 2, 5}) {
      set_num_threads(threads);
      outs.push_back(run_xent(c, d));
    }
    set_num_threads(0);
    for (std::size_t k = 1; k < outs.size(); ++k) {
      EXPECT_TRUE(same_bits(outs[k].loss, outs[0].loss));
      EXPECT_TRUE(same_bits(outs[k].dx_bwd, outs[0].dx_bwd));
      EXPECT_TRUE(same_bits(outs[k].dx_fused, outs[0].dx_fused));
    }
  }
}

XENT_INSTANTIATE_FOR_EVERY_ISA(TokenWeights);

// Central differences of the float64 loss against the fused gradient (an oracle that shares nothing
// with the reference's formulas).
TEST(TokenWeightsGradcheck, FusedGradientIsTheLossDerivative) {
  for (const Case& c : {Case{{4, 6}, true, 0.1, ref::Reduction::kMean}, Case{{4, 6}, false, 0, ref::Reduction::kSum},
                        Case{{2, 5, 3}, true, 0.2, ref::Reduction::kMean}}) {
    SCOPED_TRACE(describe(c));
    Data<double, std::int64_t> d = make_data<double, std::int64_t>(c, 900);
    const Shape xs = to_shape(c.shape), ts = to_shape(d.tshape);
    CrossEntropyOptions o;
    if (c.class_weight) o.weight = ConstTensorView(d.w.data(), Shape{d.C});
    o.reduction = to_xent(c.reduction);
    o.label_smoothing = c.eps;
    o.token_weight = ConstTensorView(d.tw.data(), ts);
    double loss = 0;
    std::vector<double> dx(d.x.size());
    ASSERT_TRUE(cross_entropy_fused({d.x.data(), xs}, {d.t.data(), ts}, o, scalar_view(&loss), {dx.data(), xs}).ok());
    EXPECT_TRUE(std::isfinite(loss));
    for (std::size_t k = 0; k < d.x.size(); ++k) {
      const double h = 1e-6, x0 = d.x[k];
      double lp = 0, lm = 0;
      d.x[k] = x0 + h;
      ASSERT_TRUE(cross_entropy_forward({d.x.data(), xs}, {d.t.data(), ts}, o, scalar_view(&lp)).ok());
      d.x[k] = x0 - h;
      ASSERT_TRUE(cross_entropy_forward({d.x.data(), xs}, {d.t.data(), ts}, o, scalar_view(&lm)).ok());
      d.x[k] = x0;
      EXPECT_NEAR(dx[k], (lp - lm) / (2 * h), 1e-7 * (1 + std::fabs(dx[k]))) << "element " << k;
    }
  }
}

// The definition in words: token weights of all ones change nothing; weights scaled by a constant
// leave the mean unchanged; a zero weight removes the token from the mean, like ignore_index.
TEST(TokenWeightsSemantics, OnesScaleAndZero) {
  const std::vector<float> x = {1, 2, 3, 0.5f, -1, 2, 4, 4, 0, -2, 1, 1};
  const std::vector<std::int64_t> t = {2, 0, 1, 0};
  const std::vector<float> ones(4, 1.0f), threes(4, 3.0f), w = {0.5f, 2, 0, 1}, w3 = {1.5f, 6, 0, 3};
  auto mean = [&](const std::vector<float>* tw, std::vector<std::int64_t> tgt) {
    CrossEntropyOptions o;
    if (tw) o.token_weight = ConstTensorView(tw->data(), Shape{4});
    float l = 0;
    EXPECT_TRUE(cross_entropy_forward({x.data(), Shape{4, 3}}, {tgt.data(), Shape{4}}, o, scalar_view(&l)).ok());
    return l;
  };
  EXPECT_EQ(mean(&ones, t), mean(nullptr, t));
  EXPECT_EQ(mean(&threes, t), mean(nullptr, t));
  EXPECT_FLOAT_EQ(mean(&w3, t), mean(&w, t));
  std::vector<std::int64_t> t_ign = t;
  t_ign[2] = -100;
  const std::vector<float> ones_but_2 = {1, 1, 0, 1};
  EXPECT_FLOAT_EQ(mean(&ones_but_2, t), mean(nullptr, t_ign));
}

TEST(TokenWeightsErrors, ShapeDtypeAndTargetKind) {
  const std::vector<float> x(12, 0.5f), p(12, 0.25f);
  const std::vector<std::int64_t> t = {0, 1, 2, 0};
  const std::vector<float> tw3(3, 1.0f), tw4(4, 1.0f);
  const std::vector<double> tw4d(4, 1.0);
  float l = 0;
  auto call = [&](ConstTensorView tw, ConstTensorView target) {
    CrossEntropyOptions o;
    o.token_weight = tw;
    return cross_entropy_forward({x.data(), Shape{4, 3}}, target, o, scalar_view(&l));
  };
  Status s = call({tw3.data(), Shape{3}}, {t.data(), Shape{4}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token_weight must have shape [4], found [3]"), std::string::npos) << s.message();
  s = call({tw4d.data(), Shape{4}}, {t.data(), Shape{4}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token_weight must have the input's dtype float32, found float64"), std::string::npos)
      << s.message();
  s = call({tw4.data(), Shape{4}}, {p.data(), Shape{4, 3}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("class-index targets"), std::string::npos) << s.message();
  EXPECT_EQ(l, 0.0f) << "nothing written on error";
}

}  // namespace
}  // namespace xent::test
