// test_errors.cc: every kind of bad input returns a non-ok Status whose message names the problem,
// and leaves every output buffer exactly as it was (each is filled with a sentinel first).
// Messages are checked for the words a reader needs (the bad value, its position, "weight",
// "shape", ...), not for exact wording.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <new>

#include "test_util.h"

#include "alloc_failure.h"

namespace xent::test {
namespace {

constexpr float kSentinelF = -12345.0f;
constexpr double kSentinelD = -12345.0;

// Runs `call`, expects failure with a message mentioning one of `words`, and outputs unchanged.
template <class Out1, class Out2 = Out1>
void expect_refused(const std::string& what, const std::function<Status()>& call,
                    std::initializer_list<const char*> words, Buf<Out1>* out1, Buf<Out2>* out2 = nullptr) {
  SCOPED_TRACE(what);
  const Buf<Out1> before1 = *out1;
  std::optional<Buf<Out2>> before2;
  if (out2) before2 = *out2;
  const Status s = call();
  EXPECT_FALSE(s.ok()) << "accepted bad input";
  EXPECT_FALSE(s.message().empty());
  EXPECT_TRUE(mentions(s.message(), words)) << "message does not name the problem: " << s.to_string();
  EXPECT_TRUE(same_bits(before1.v, out1->v)) << "output written on error";
  if (out2) {
    EXPECT_TRUE(same_bits(before2->v, out2->v)) << "second output written on error";
  }
}

TEST(Errors, TargetOutOfRange) {
  const Buf<double> x({6, 5}, 0.5);
  Buf<double> loss({6}, kSentinelD), dx({6, 5}, kSentinelD), dloss({6}, 1.0);
  CrossEntropyOptions o;
  o.reduction = Reduction::kNone;
  for (std::int64_t bad : {7, 5, -1, -101}) {
    Buf<std::int64_t> t({6}, {0, 1, 2, 3, 4, 0});
    t.v[4] = bad;  // a late position: nothing may have been written for rows 0..3 either
    const std::string val = std::to_string(bad);
    const char* v = val.c_str();
    expect_refused<double>("cross_entropy_forward target " + val,
                           [&] { return cross_entropy_forward(x.cview(), t.cview(), o, loss.view()); }, {v}, &loss);
    expect_refused<double>("cross_entropy_backward target " + val,
                           [&] { return cross_entropy_backward(x.cview(), t.cview(), o, dloss.cview(), dx.view()); },
                           {v}, &dx);
    expect_refused<double>("cross_entropy_fused target " + val,
                           [&] { return cross_entropy_fused(x.cview(), t.cview(), o, loss.view(), dx.view()); }, {v},
                           &loss, &dx);
    NllOptions no;
    no.reduction = Reduction::kMean;
    Buf<double> scalar({}, kSentinelD);
    expect_refused<double>("nll_loss_forward target " + val,
                           [&] { return nll_loss_forward(x.cview(), t.cview(), no, scalar.view()); }, {v}, &scalar);
    expect_refused<double>("nll_loss_backward target " + val,
                           [&] { return nll_loss_backward(x.cview(), t.cview(), no, Buf<double>({}, 1.0).cview(), dx.view()); },
                           {v}, &dx);
  }
  // The message names the position too.
  Buf<std::int32_t> t({6}, {0, 1, 2, 3, 9, 0});
  const Status s = cross_entropy_forward(x.cview(), t.cview(), o, loss.view());
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(mentions(s.message(), {"9"})) << s.message();
  EXPECT_TRUE(mentions(s.message(), {"4"})) << "position 4 not named: " << s.message();
  // The same target is fine when it equals ignore_index.
  o.ignore_index = 9;
  EXPECT_TRUE(cross_entropy_forward(x.cview(), t.cview(), o, loss.view()).ok());
  // With class weights (the divisor is a weighted sum, scanned by another loop), for both index
  // types, after an ignored target.
  const Buf<double> w({5}, 2.0);
  CrossEntropyOptions ow;
  ow.weight = w.cview();
  for (std::int64_t bad : {5, -1}) {
    Buf<std::int64_t> t64({6}, {0, -100, 2, 3, bad, 0});
    Buf<std::int32_t> t32({6}, {0, -100, 2, 3, static_cast<std::int32_t>(bad), 0});
    Buf<double> mean({}, kSentinelD);
    const std::string val = std::to_string(bad);
    expect_refused<double>("weighted cross_entropy_forward int64 target " + val,
                           [&] { return cross_entropy_forward(x.cview(), t64.cview(), ow, mean.view()); },
                           {val.c_str()}, &mean);
    expect_refused<double>("weighted cross_entropy_forward int32 target " + val,
                           [&] { return cross_entropy_forward(x.cview(), t32.cview(), ow, mean.view()); },
                           {val.c_str()}, &mean);
  }
}

TEST(Errors, WeightLength) {
  const Buf<float> x({4, 3}, 0.5f);
  const Buf<std::int64_t> t({4}, {0, 1, 2, 0});
  Buf<float> loss({}, kSentinelF), dx({4, 3}, kSentinelF);
  for (std::int64_t len : {2, 4}) {
    const Buf<float> w({len}, 1.0f);
    CrossEntropyOptions o;
    o.weight = w.cview();
    expect_refused<float>("cross_entropy weight of length " + std::to_string(len),
                          [&] { return cross_entropy_forward(x.cview(), t.cview(), o, loss.view()); }, {"weight"}, &loss);
    expect_refused<float>("cross_entropy_fused weight of length " + std::to_string(len),
                          [&] { return cross_entropy_fused(x.cview(), t.cview(), o, loss.view(), dx.view()); }, {"weight"},
                          &loss, &dx);
    NllOptions no;
    no.weight = w.cview();
    expect_refused<float>("nll_loss weight of length " + std::to_string(len),
                          [&] { return nll_loss_forward(x.cview(), t.cview(), no, loss.view()); }, {"weight"}, &loss);
  }
  const Buf<float> w2({3, 1}, 1.0f);  // right count, wrong rank
  CrossEntropyOptions o;
  o.weight = w2.cview();
  expect_refused<float>("cross_entropy weight of shape [3, 1]",
                        [&] { return cross_entropy_forward(x.cview(), t.cview(), o, loss.view()); }, {"weight"}, &loss);
  // BCE weight / pos_weight that do not broadcast to the input.
  const Buf<float> p({4, 3}, 0.5f);
  for (const ref::Shape& ws : std::vector<ref::Shape>{{2}, {4}, {5, 3}, {2, 4, 3}}) {
    const Buf<float> w(ws, 1.0f);
    BceOptions b;
    b.weight = w.cview();
    expect_refused<float>("binary_cross_entropy weight " + shape_str(ws),
                          [&] { return binary_cross_entropy_forward(p.cview(), p.cview(), b, loss.view()); },
                          {"weight", "broadcast"}, &loss);
    BceOptions bl;
    bl.pos_weight = w.cview();
    expect_refused<float>("binary_cross_entropy_with_logits pos_weight " + shape_str(ws),
                          [&] { return binary_cross_entropy_with_logits_forward(p.cview(), p.cview(), bl, loss.view()); },
                          {"pos_weight", "broadcast"}, &loss);
  }
}

TEST(Errors, ShapeMismatch) {
  const Buf<double> x({4, 3}, 0.5);
  Buf<double> y({4, 3}, kSentinelD), y_bad({3, 4}, kSentinelD), lse_bad({3}, kSentinelD);
  expect_refused<double>("softmax output shape", [&] { return softmax_forward(x.cview(), 1, y_bad.view()); }, {"shape"},
                         &y_bad);
  expect_refused<double>("log_softmax output shape", [&] { return log_softmax_forward(x.cview(), 1, y_bad.view()); },
                         {"shape"}, &y_bad);
  expect_refused<double>("logsumexp output shape", [&] { return logsumexp_forward(x.cview(), 1, lse_bad.view()); },
                         {"shape"}, &lse_bad);
  const Buf<double> dy_bad({4, 4}, 1.0);
  expect_refused<double>("softmax_backward dy shape",
                         [&] { return softmax_backward(x.cview(), dy_bad.cview(), 1, y.view()); }, {"shape"}, &y);

  const Buf<std::int64_t> t_bad({5}, {0, 1, 2, 0, 1});
  const Buf<std::int64_t> t({4}, {0, 1, 2, 0});
  Buf<double> loss({}, kSentinelD), loss_none_bad({5}, kSentinelD), dx({4, 3}, kSentinelD), dx_bad({4, 2}, kSentinelD);
  expect_refused<double>("cross_entropy target shape",
                         [&] { return cross_entropy_forward(x.cview(), t_bad.cview(), {}, loss.view()); }, {"shape"}, &loss);
  CrossEntropyOptions none;
  none.reduction = Reduction::kNone;
  expect_refused<double>("cross_entropy loss shape (reduction none)",
                         [&] { return cross_entropy_forward(x.cview(), t.cview(), none, loss_none_bad.view()); },
                         {"shape"}, &loss_none_bad);
  expect_refused<double>("cross_entropy mean into a non-scalar",
                         [&] { return cross_entropy_forward(x.cview(), t.cview(), {}, loss_none_bad.view()); },
                         {"shape"}, &loss_none_bad);
  expect_refused<double>("cross_entropy_backward dinput shape",
                         [&] { return cross_entropy_backward(x.cview(), t.cview(), {}, Buf<double>({}, 1.0).cview(), dx_bad.view()); },
                         {"shape"}, &dx_bad);
  expect_refused<double>("cross_entropy_backward dloss shape (reduction none)",
                         [&] { return cross_entropy_backward(x.cview(), t.cview(), none, Buf<double>({3}, 1.0).cview(), dx.view()); },
                         {"shape"}, &dx);
  const Buf<double> probs_bad({4, 4}, 0.25);
  expect_refused<double>("probability target shape",
                         [&] { return cross_entropy_forward(x.cview(), probs_bad.cview(), {}, loss.view()); }, {"shape"},
                         &loss);
  const Buf<double> p({4, 3}, 0.5), tb_bad({4, 2}, 0.5);
  expect_refused<double>("binary_cross_entropy target shape",
                         [&] { return binary_cross_entropy_forward(p.cview(), tb_bad.cview(), {}, loss.view()); }, {"shape"},
                         &loss);
  expect_refused<double>("binary_cross_entropy_with_logits target shape",
                         [&] { return binary_cross_entropy_with_logits_forward(p.cview(), tb_bad.cview(), {}, loss.view()); },
                         {"shape"}, &loss);
}

TEST(Errors, DtypeMismatch) {
  const Buf<float> x({4, 3}, 0.5f);
  const Buf<std::int64_t> t({4}, {0, 1, 2, 0});
  Buf<double> yd({4, 3}, kSentinelD), lossd({}, kSentinelD);
  Buf<float> lossf({}, kSentinelF), yf({4, 3}, kSentinelF);
  expect_refused<double>("softmax float32 -> float64",
                         [&] { return softmax_forward(x.cview(), 1, yd.view()); }, {"dtype", "float"}, &yd);
  expect_refused<double>("cross_entropy float32 input, float64 loss",
                         [&] { return cross_entropy_forward(x.cview(), t.cview(), {}, lossd.view()); }, {"dtype", "float"},
                         &lossd);
  const Buf<double> wd({3}, 1.0);
  CrossEntropyOptions o;
  o.weight = wd.cview();
  expect_refused<float>("cross_entropy float64 weight with float32 input",
                        [&] { return cross_entropy_forward(x.cview(), t.cview(), o, lossf.view()); }, {"dtype", "float", "weight"},
                        &lossf);
  const Buf<double> probs_d({4, 3}, 0.25);
  expect_refused<float>("float64 probability targets with float32 input",
                        [&] { return cross_entropy_forward(x.cview(), probs_d.cview(), {}, lossf.view()); },
                        {"dtype", "float"}, &lossf);
  const Buf<float> t_float({4}, 1.0f);
  expect_refused<float>("float class-index targets",
                        [&] { return cross_entropy_forward(x.cview(), t_float.cview(), {}, lossf.view()); },
                        {"dtype", "int", "float", "target"}, &lossf);
  const Buf<std::int32_t> xi({4, 3}, 1);
  Buf<std::int32_t> yi({4, 3}, 77);
  expect_refused<std::int32_t>("softmax of int32", [&] { return softmax_forward(xi.cview(), 1, yi.view()); },
                               {"dtype", "int", "float"}, &yi);
  const Buf<float> pd({4, 3}, 0.5f);
  const Buf<double> tbd({4, 3}, 0.5);
  expect_refused<float>("binary_cross_entropy float64 target with float32 input",
                        [&] { return binary_cross_entropy_forward(pd.cview(), tbd.cview(), {}, lossf.view()); },
                        {"dtype", "float"}, &lossf);
}

TEST(Errors, LabelSmoothingOutsideUnitInterval) {
  const Buf<float> x({4, 3}, 0.5f);
  const Buf<std::int64_t> t({4}, {0, 1, 2, 0});
  const Buf<float> probs({4, 3}, 1.0f / 3);
  Buf<float> loss({}, kSentinelF), dx({4, 3}, kSentinelF);
  for (double eps : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    CrossEntropyOptions o;
    o.label_smoothing = eps;
    expect_refused<float>("label_smoothing " + std::to_string(eps),
                          [&] { return cross_entropy_forward(x.cview(), t.cview(), o, loss.view()); },
                          {"label_smoothing", "smoothing"}, &loss);
    expect_refused<float>("label_smoothing (fused) " + std::to_string(eps),
                          [&] { return cross_entropy_fused(x.cview(), t.cview(), o, loss.view(), dx.view()); },
                          {"label_smoothing", "smoothing"}, &loss, &dx);
    expect_refused<float>("label_smoothing with probabilities " + std::to_string(eps),
                          [&] { return cross_entropy_forward(x.cview(), probs.cview(), o, loss.view()); },
                          {"label_smoothing", "smoothing"}, &loss);
  }
}

TEST(Errors, BceInputOutsideUnitInterval) {
  const Buf<double> t({2, 3}, 0.5);
  Buf<double> loss({2, 3}, kSentinelD), dx({2, 3}, kSentinelD);
  BceOptions o;
  o.reduction = Reduction::kNone;
  const std::pair<double, const char*> bad[] = {{1.5, "1.5"}, {-0.25, "-0.25"}, {std::numeric_limits<double>::quiet_NaN(), "nan"}};
  for (const auto& [v, text] : bad) {
    Buf<double> p({2, 3}, 0.5);
    p.v[4] = v;
    expect_refused<double>(std::string("binary_cross_entropy input ") + text,
                           [&] { return binary_cross_entropy_forward(p.cview(), t.cview(), o, loss.view()); }, {text}, &loss);
    expect_refused<double>(std::string("binary_cross_entropy_backward input ") + text,
                           [&] { return binary_cross_entropy_backward(p.cview(), t.cview(), o, t.cview(), dx.view()); },
                           {text}, &dx);
  }
  Buf<float> p32({3}, 0.5f), t32({3}, 0.5f), l32({3}, kSentinelF);
  p32.v[2] = 2.0f;
  expect_refused<float>("binary_cross_entropy float32 input 2",
                        [&] { return binary_cross_entropy_forward(p32.cview(), t32.cview(), o, l32.view()); }, {"2"}, &l32);
}

TEST(Errors, IgnoreIndexWithProbabilityTargets) {
  const Buf<double> x({4, 3}, 0.5);
  const Buf<double> probs({4, 3}, 1.0 / 3);
  Buf<double> loss({}, kSentinelD), dx({4, 3}, kSentinelD);
  for (std::int64_t ig : {0, 1, 5}) {
    CrossEntropyOptions o;
    o.ignore_index = ig;
    expect_refused<double>("probability targets with ignore_index " + std::to_string(ig),
                           [&] { return cross_entropy_forward(x.cview(), probs.cview(), o, loss.view()); }, {"ignore_index"},
                           &loss);
    expect_refused<double>("probability targets (fused) with ignore_index " + std::to_string(ig),
                           [&] { return cross_entropy_fused(x.cview(), probs.cview(), o, loss.view(), dx.view()); },
                           {"ignore_index"}, &loss, &dx);
  }
  CrossEntropyOptions neg;
  neg.ignore_index = -1;
  EXPECT_TRUE(cross_entropy_forward(x.cview(), probs.cview(), neg, loss.view()).ok()) << "negative ignore_index is fine";
}

TEST(Errors, BadDim) {
  const Buf<float> x({4, 3}, 0.5f);
  Buf<float> y({4, 3}, kSentinelF), out({4}, kSentinelF);
  for (std::int64_t dim : {2, -3, 100}) {
    const std::string d = std::to_string(dim);
    expect_refused<float>("softmax dim " + d, [&] { return softmax_forward(x.cview(), dim, y.view()); }, {"dim"}, &y);
    expect_refused<float>("log_softmax dim " + d, [&] { return log_softmax_forward(x.cview(), dim, y.view()); }, {"dim"}, &y);
    expect_refused<float>("logsumexp dim " + d, [&] { return logsumexp_forward(x.cview(), dim, out.view()); }, {"dim"}, &out);
    expect_refused<float>("softmax_backward dim " + d,
                          [&] { return softmax_backward(x.cview(), x.cview(), dim, y.view()); }, {"dim"}, &y);
  }
  const Buf<float> s({}, 1.0f);
  Buf<float> sy({}, kSentinelF);
  for (std::int64_t dim : {1, -2}) {
    expect_refused<float>("0-d softmax dim " + std::to_string(dim),
                          [&] { return softmax_forward(s.cview(), dim, sy.view()); }, {"dim"}, &sy);
  }
}

TEST(Errors, NullDataWithElements) {
  Buf<float> y({4, 3}, kSentinelF), loss({}, kSentinelF);
  const ConstTensorView null_x(static_cast<const float*>(nullptr), xent::Shape{4, 3});
  expect_refused<float>("softmax of a null pointer with 12 elements",
                        [&] { return softmax_forward(null_x, 1, y.view()); }, {"null", "data", "pointer"}, &y);
  const Buf<std::int64_t> t({4}, {0, 1, 2, 0});
  expect_refused<float>("cross_entropy of a null pointer",
                        [&] { return cross_entropy_forward(null_x, t.cview(), {}, loss.view()); }, {"null", "data", "pointer"},
                        &loss);
}

// The unweighted target scan runs a vector at a time (per kernel set): a bad target in the first
// vector, mid-body, in the last full vector and in the scalar tail is found and named, for both
// index types; ignored targets never count; and the mean's divisor (kept rows) is exact, checked
// as mean * kept == sum on rows of distinct losses.
template <class I>
void scan_case(const std::string& isa) {
  SCOPED_TRACE(isa + " index bytes " + std::to_string(sizeof(I)));
  constexpr std::int64_t N = 203, C = 7;
  std::vector<float> xv(static_cast<std::size_t>(N * C));
  for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<float>((i * 37) % 11) * 0.25f;
  const ConstTensorView x(xv.data(), Shape{N, C});
  std::vector<I> t(static_cast<std::size_t>(N));
  std::int64_t kept = 0;
  for (std::int64_t r = 0; r < N; ++r) {
    t[static_cast<std::size_t>(r)] = static_cast<I>(r % 5 == 0 ? -100 : r % C);
    kept += r % 5 != 0;
  }
  const ConstTensorView tv(t.data(), Shape{N});
  CrossEntropyOptions o;
  float mean = 0, sum = 0;
  ASSERT_TRUE(cross_entropy_forward(x, tv, o, TensorView(&mean, Shape{})).ok());
  o.reduction = Reduction::kSum;
  ASSERT_TRUE(cross_entropy_forward(x, tv, o, TensorView(&sum, Shape{})).ok());
  EXPECT_NEAR(static_cast<double>(mean) * static_cast<double>(kept), sum, 1e-5 * std::fabs(sum));
  o.reduction = Reduction::kMean;
  for (std::int64_t pos : {0, 3, 8, 16, 100, 191, 192, 200, 202}) {
    for (std::int64_t bad : {C, std::int64_t{-1}, std::int64_t{-101}, std::int64_t{1} << 31, -(std::int64_t{1} << 40)}) {
      if (static_cast<std::int64_t>(static_cast<I>(bad)) != bad) continue;
      std::vector<I> tb = t;
      tb[static_cast<std::size_t>(pos)] = static_cast<I>(bad);
      float out = kSentinelF;
      const Status st = cross_entropy_forward(x, ConstTensorView(tb.data(), Shape{N}), o, TensorView(&out, Shape{}));
      ASSERT_FALSE(st.ok()) << "target " << bad << " at " << pos << " accepted";
      EXPECT_TRUE(mentions(st.message(), {std::to_string(bad).c_str()})) << st.message();
      EXPECT_TRUE(mentions(st.message(), {std::to_string(pos).c_str()})) << st.message();
      EXPECT_EQ(out, kSentinelF);
    }
  }
  // ignore_index outside the int32 range: int32 targets never equal it, -100 is then out of range.
  o.ignore_index = std::int64_t{1} << 40;
  float out = kSentinelF;
  const Status st = cross_entropy_forward(x, tv, o, TensorView(&out, Shape{}));
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(mentions(st.message(), {"-100"})) << st.message();
}

TEST(Errors, TargetScanEveryKernelSet) {
  for (const std::string& isa : supported_isas()) {
    ASSERT_TRUE(set_isa(isa).ok());
    scan_case<std::int32_t>(isa);
    scan_case<std::int64_t>(isa);
  }
  ASSERT_TRUE(set_isa("auto").ok());
}

TEST(Errors, ShapeWithMoreThanEightDims) {
  const Shape nine{1, 1, 1, 1, 1, 1, 1, 2, 3};
  EXPECT_FALSE(nine.valid());
  EXPECT_EQ(nine.declared_rank(), 9);
  const Shape eight{1, 1, 1, 1, 1, 1, 2, 3};
  EXPECT_TRUE(eight.valid());
  EXPECT_FALSE(eight.appended(4).valid());
  EXPECT_NE(nine, eight.appended(3));  // the clipped dims do not make it equal to a valid shape
  std::int64_t n = 0;
  EXPECT_FALSE(nine.numel_checked(&n));

  std::vector<float> x(6, 1.0f), y(6, kSentinelF);
  Status s = softmax_forward({x.data(), nine}, -1, {y.data(), nine});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_TRUE(mentions(s.message(), {"9 dimensions"})) << s.message();
  for (float v : y) EXPECT_EQ(v, kSentinelF);
  // The same data as 8 dims is fine.
  EXPECT_TRUE(softmax_forward({x.data(), eight}, -1, {y.data(), eight}).ok());

  std::vector<std::int64_t> t(6, 0);
  float loss = kSentinelF;
  s = cross_entropy_forward({x.data(), {6, 1}}, {t.data(), {6, 1, 1, 1, 1, 1, 1, 1, 1}}, {}, scalar_view(&loss));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_EQ(loss, kSentinelF);
}

TEST(Errors, ViewLargerThanItsBuffer) {
  std::vector<float> x = {1, 2, 3, 2, 4, 6}, y(6, kSentinelF), short_y(5, kSentinelF);
  std::vector<float> short_x(x.begin(), x.begin() + 5);
  Status s = softmax_forward({short_x, {2, 3}}, 1, {y, {2, 3}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(mentions(s.message(), {"buffer holds 5"})) << s.message();
  for (float v : y) EXPECT_EQ(v, kSentinelF);
  s = softmax_forward({x, {2, 3}}, 1, {short_y, {2, 3}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(mentions(s.message(), {"buffer holds 5"})) << s.message();
  for (float v : short_y) EXPECT_EQ(v, kSentinelF);

  std::vector<std::int64_t> one_target = {0};
  float loss = kSentinelF;
  s = cross_entropy_forward({x, {2, 3}}, {one_target, {2}}, {}, scalar_view(&loss));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(mentions(s.message(), {"buffer holds 1"})) << s.message();
  EXPECT_TRUE(mentions(s.message(), {"target"})) << s.message();
  EXPECT_EQ(loss, kSentinelF);

  // Views from containers compute what pointer views compute, bit for bit; a span works too.
  std::vector<float> y_ptr(6);
  ASSERT_TRUE(softmax_forward({x, {2, 3}}, 1, {y, {2, 3}}).ok());
  ASSERT_TRUE(softmax_forward({x.data(), {2, 3}}, 1, {y_ptr.data(), {2, 3}}).ok());
  EXPECT_TRUE(same_bits(y, y_ptr));
  ASSERT_TRUE(softmax_forward({std::span<const float>(x), {2, 3}}, 1, {std::span<float>(y_ptr), {2, 3}}).ok());
  EXPECT_TRUE(same_bits(y, y_ptr));
}

TEST(Errors, ScalarViewIsTheZeroDimOutput) {
  std::vector<float> x = {1, 2, 3, 2, 4, 6};
  std::vector<std::int64_t> t = {0, 2};
  float a = kSentinelF, b = kSentinelF;
  const TensorView v = scalar_view(&a);
  EXPECT_EQ(v.shape.rank(), 0);
  EXPECT_EQ(v.dtype, DType::kF32);
  EXPECT_EQ(v.capacity, 1);
  ASSERT_TRUE(cross_entropy_forward({x, {2, 3}}, {t, {2}}, {}, scalar_view(&a)).ok());
  ASSERT_TRUE(cross_entropy_forward({x.data(), {2, 3}}, {t.data(), {2}}, {}, {&b, {}}).ok());
  EXPECT_TRUE(same_bits(std::vector<float>{a}, std::vector<float>{b}));
  double d = kSentinelD;
  EXPECT_EQ(scalar_view(&d).dtype, DType::kF64);
  // A 0-d view where (N) is expected names the shapes.
  CrossEntropyOptions none;
  none.reduction = Reduction::kNone;
  const Status s = cross_entropy_forward({x, {2, 3}}, {t, {2}}, none, scalar_view(&a));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

// Every entry point turns a failed allocation into kResourceExhausted instead of letting
// std::bad_alloc cross the library boundary. Shapes are chosen so that each call allocates (split
// rows, per-row loss buffers, thread tasks); the test checks that an allocation was attempted.
TEST(Errors, AllocationFailureIsResourceExhausted) {
  set_num_threads(2);
  const std::int64_t N = 2, C = 1 << 20;
  std::vector<float> x(static_cast<std::size_t>(N * C), 0.5f), y(x.size(), kSentinelF);
  std::vector<std::int64_t> t(static_cast<std::size_t>(N), 3);
  float loss = kSentinelF;
  const std::vector<std::pair<const char*, std::function<Status()>>> calls = {
      {"softmax_forward", [&] { return softmax_forward({x, {N, C}}, 1, {y, {N, C}}); }},
      {"cross_entropy_fused",
       [&] { return cross_entropy_fused({x, {N, C}}, {t, {N}}, {}, scalar_view(&loss), {y, {N, C}}); }},
  };
  for (const auto& [name, call] : calls) {
    SCOPED_TRACE(name);
    // First use builds the kernel-set table (src/cpu/dispatch.cc) and starts the pool's threads;
    // what is measured here is a call on an initialised library.
    ASSERT_TRUE(call().ok());
    g_failed_news = 0;
    g_fail_new = true;
    Status s;
    try {
      s = call();
    } catch (...) {
      g_fail_new = false;
      ADD_FAILURE() << "an exception crossed the library boundary";
      continue;
    }
    g_fail_new = false;
    EXPECT_GT(g_failed_news.load(), 0) << "the call allocated nothing; pick a shape that allocates";
    EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
    EXPECT_TRUE(mentions(s.message(), {"out of memory"})) << s.message();  // every allocation fails: no room for the name
    EXPECT_TRUE(call().ok()) << "the same call with memory available";
  }
  set_num_threads(0);
}

}  // namespace
}  // namespace xent::test
