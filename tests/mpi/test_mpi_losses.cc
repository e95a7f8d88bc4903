// test_mpi_losses.cc: the MPI layer (include/xent/mpi.h) under `mpirun -np K` for K = 1..4
// (tests/mpi/CMakeLists.txt runs it for each K). Oracles:
//   - the same function on ONE rank (MPI_COMM_SELF, the whole vocabulary): the vocabulary-parallel
//     loss, z-loss and each rank's gradient slice must be the same BITS for every K and split;
//   - single-process xent::cross_entropy with Summation::kExact: the same BITS (loss and gradient
//     slice) for every option it has (all but z-loss and soft-cap);
//   - the single-process library: xent::linear_cross_entropy with an identity weight (so its
//     logits are exactly the given ones; it has every option, z-loss and soft-cap included) and
//     xent::cross_entropy_fused, to within rounding.
// Not a speed test. Every rank runs every check; collectives are never skipped on a failure.
#include <cblas.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "xent/linear_cross_entropy.h"
#include "xent/losses.h"
#include "xent/mpi.h"

#include "../core/alloc_failure.h"

namespace {

int g_rank = 0, g_size = 1;

template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <class T>
double tol() {
  return sizeof(T) == 4 ? 2e-5 : 1e-11;
}

template <class T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, const std::string& what, double scale = 1) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(static_cast<double>(want[i]))) {
      EXPECT_TRUE(std::isnan(static_cast<double>(got[i]))) << what << " [" << i << "]";
      continue;
    }
    const double err = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    EXPECT_LE(err, tol<T>() * (scale + std::fabs(static_cast<double>(want[i])))) << what << " [" << i << "] got " << got[i]
                                                                                  << " want " << want[i];
  }
}

template <class T>
void expect_bits(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!same_bits(got[i], want[i]) && bad++ < 5)
      ADD_FAILURE() << what << " [" << i << "] differs in bits: " << got[i] << " vs " << want[i];
}

struct Case {
  std::string name;
  std::int64_t N = 37, V = 507;
  bool weights = false;
  double eps = 0, lam = 0, cap = 0;
  xent::Reduction red = xent::Reduction::kMean;
  bool dloss = false;
  int ignore_every = 0;  // every k-th target ignored (0: none); 1: all
  bool few = false;      // rank 0 holds a single class
};

std::vector<Case> cases() {
  std::vector<Case> v;
  using R = xent::Reduction;
  v.push_back({"plain_mean"});
  v.push_back({"plain_sum_dloss", 37, 507, false, 0, 0, 0, R::kSum, true});
  v.push_back({"none_dloss", 37, 507, false, 0, 0, 0, R::kNone, true});
  v.push_back({"weights_ignore_mean", 37, 507, true, 0, 0, 0, R::kMean, false, 3});
  v.push_back({"smoothing_mean", 37, 507, false, 0.1, 0, 0, R::kMean});
  v.push_back({"smoothing_weights_ignore_none", 37, 507, true, 0.2, 0, 0, R::kNone, true, 4});
  v.push_back({"zloss_softcap_mean", 37, 507, false, 0, 1e-3, 15, R::kMean});
  v.push_back({"everything_sum", 37, 507, true, 0.05, 2e-3, 10, R::kSum, true, 5, true});
  v.push_back({"everything_none", 37, 507, true, 0.05, 2e-3, 10, R::kNone, true, 5, true});
  v.push_back({"few_classes_on_rank0", 37, 507, true, 0.1, 0, 0, R::kMean, false, 0, true});
  v.push_back({"all_ignored_mean", 9, 507, false, 0.1, 0, 0, R::kMean, false, 1});
  v.push_back({"one_token", 1, 507, true, 0.1, 1e-3, 0, R::kMean});
  v.push_back({"small_vocab", 8, 5, false, 0.3, 0, 0, R::kMean});
  v.push_back({"one_token_smoothing_weights", 1, 507, true, 0.1, 0, 0, R::kMean});
  v.push_back({"one_token_none_dloss", 1, 507, false, 0, 0, 0, R::kNone, true});
  v.push_back({"all_ignored_sum_dloss", 9, 507, true, 0.2, 0, 0, R::kSum, true, 1});
  v.push_back({"all_ignored_few_none_dloss", 9, 507, true, 0.2, 0, 0, R::kNone, true, 1, true});
  v.push_back({"few_classes_sum_dloss", 37, 507, false, 0.05, 0, 0, R::kSum, true, 3, true});
  return v;
}

// This rank's slice of V classes: even, or with rank 0 holding one class.
void slice_of(const Case& c, int rank, int size, std::int64_t* v0, std::int64_t* vr) {
  if (c.few && size > 1) {
    if (rank == 0) {
      *v0 = 0;
      *vr = 1;
      return;
    }
    xent::mpi::VocabShard s = xent::mpi::even_shard(c.V - 1, rank - 1, size - 1, vr);
    *v0 = s.first_class + 1;
    return;
  }
  *v0 = xent::mpi::even_shard(c.V, rank, size, vr).first_class;
}

template <class T>
struct Data {
  std::vector<T> x, cw, dl;
  std::vector<std::int64_t> t;
};

template <class T>
Data<T> make(const Case& c) {
  std::mt19937_64 rng(1234 + static_cast<unsigned>(c.N * 7 + c.V));
  std::normal_distribution<double> nd(0, 3);
  std::uniform_real_distribution<double> ud(0.2, 2);
  Data<T> d;
  d.x.resize(static_cast<std::size_t>(c.N * c.V));
  for (auto& v : d.x) v = static_cast<T>(nd(rng));
  d.t.resize(static_cast<std::size_t>(c.N));
  for (std::int64_t n = 0; n < c.N; ++n) {
    d.t[static_cast<std::size_t>(n)] = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(c.V));
    if (c.ignore_every > 0 && n % c.ignore_every == 0) d.t[static_cast<std::size_t>(n)] = -100;
  }
  if (c.weights) {
    d.cw.resize(static_cast<std::size_t>(c.V));
    for (auto& v : d.cw) v = static_cast<T>(ud(rng));
  }
  const std::size_t nl = c.red == xent::Reduction::kNone ? static_cast<std::size_t>(c.N) : 1;
  if (c.dloss) {
    d.dl.resize(nl);
    for (auto& v : d.dl) v = static_cast<T>(ud(rng));
  }
  return d;
}

struct Out {};

template <class T>
struct Result {
  xent::Status s;
  std::vector<T> loss, z, grad;
};

template <class T>
Result<T> run_vp(const Case& c, const Data<T>& d, std::int64_t v0, std::int64_t vr, MPI_Comm comm) {
  std::vector<T> x(static_cast<std::size_t>(c.N * vr));
  for (std::int64_t n = 0; n < c.N; ++n)
    for (std::int64_t j = 0; j < vr; ++j) x[static_cast<std::size_t>(n * vr + j)] = d.x[static_cast<std::size_t>(n * c.V + v0 + j)];
  xent::mpi::VocabParallelOptions o;
  o.comm = comm;
  std::vector<T> cw;
  if (c.weights) {
    cw.assign(d.cw.begin() + v0, d.cw.begin() + v0 + vr);
    o.class_weight = {cw.data(), {vr}};
  }
  o.reduction = c.red;
  o.label_smoothing = c.eps;
  o.lse_square_scale = c.lam;
  o.softcap = c.cap;
  o.token_block = 16;  // several rounds of collectives
  const bool none = c.red == xent::Reduction::kNone;
  const xent::Shape ls = none ? xent::Shape{c.N} : xent::Shape{};
  Result<T> r;
  r.loss.assign(none ? static_cast<std::size_t>(c.N) : 1, T(-7));
  r.z.assign(r.loss.size(), T(-7));
  r.grad.assign(x.size(), T(-7));
  xent::ConstTensorView dl;
  if (c.dloss) dl = {d.dl.data(), ls};
  r.s = xent::mpi::vocab_parallel_cross_entropy({x.data(), {c.N, vr}}, {d.t.data(), {c.N}}, {c.V, v0}, o,
                                                {r.loss.data(), ls}, {r.z.data(), ls}, dl, {r.grad.data(), {c.N, vr}});
  return r;
}

// The single-process fused layer with an identity weight: logits = x exactly.
template <class T>
Result<T> run_single(const Case& c, const Data<T>& d) {
  std::vector<T> I(static_cast<std::size_t>(c.V * c.V), T(0));
  for (std::int64_t j = 0; j < c.V; ++j) I[static_cast<std::size_t>(j * c.V + j)] = T(1);
  xent::LinearCrossEntropyOptions o;
  if (c.weights) o.class_weight = {d.cw.data(), {c.V}};
  o.reduction = c.red;
  o.label_smoothing = c.eps;
  o.lse_square_scale = c.lam;
  o.softcap = c.cap;
  const bool none = c.red == xent::Reduction::kNone;
  const xent::Shape ls = none ? xent::Shape{c.N} : xent::Shape{};
  Result<T> r;
  r.loss.assign(none ? static_cast<std::size_t>(c.N) : 1, T(0));
  r.z.assign(r.loss.size(), T(0));
  r.grad.assign(d.x.size(), T(0));
  xent::ConstTensorView dl;
  if (c.dloss) dl = {d.dl.data(), ls};
  r.s = xent::linear_cross_entropy(
      {.hidden = {d.x.data(), {c.N, c.V}}, .weight = {I.data(), {c.V, c.V}}, .target = {d.t.data(), {c.N}}, .dloss = dl},
      o, {.loss = {r.loss.data(), ls}, .z_loss = {r.z.data(), ls}, .dhidden = {r.grad.data(), {c.N, c.V}}});
  return r;
}

template <class T>
void check_case(const Case& c) {
  SCOPED_TRACE(c.name + (sizeof(T) == 4 ? " float32" : " float64") + " on " + std::to_string(g_size) + " ranks");
  const Data<T> d = make<T>(c);
  std::int64_t v0 = 0, vr = 0;
  slice_of(c, g_rank, g_size, &v0, &vr);
  Result<T> par = run_vp(c, d, v0, vr, MPI_COMM_WORLD);
  Result<T> one = run_vp(c, d, 0, c.V, MPI_COMM_SELF);
  ASSERT_TRUE(par.s.ok()) << par.s.to_string();
  ASSERT_TRUE(one.s.ok()) << one.s.to_string();
  // Same bits as the one-rank run: loss, z-loss, and this rank's slice of the gradient.
  expect_bits(par.loss, one.loss, "loss vs 1 rank");
  expect_bits(par.z, one.z, "z_loss vs 1 rank");
  std::vector<T> slice(static_cast<std::size_t>(c.N * vr));
  for (std::int64_t n = 0; n < c.N; ++n)
    for (std::int64_t j = 0; j < vr; ++j) slice[static_cast<std::size_t>(n * vr + j)] = one.grad[static_cast<std::size_t>(n * c.V + v0 + j)];
  expect_bits(par.grad, slice, "gradient slice vs 1 rank");
  // The same bits as single-process cross_entropy with Summation::kExact (the options it has: all
  // but z-loss and soft-cap): loss, and this rank's slice of the gradient (backward with the
  // upstream gradient, or fused).
  if (c.lam == 0 && c.cap == 0) {
    xent::CrossEntropyOptions o;
    if (c.weights) o.weight = {d.cw.data(), {c.V}};
    o.reduction = c.red;
    o.label_smoothing = c.eps;
    o.summation = xent::Summation::kExact;
    const xent::Shape ls = c.red == xent::Reduction::kNone ? xent::Shape{c.N} : xent::Shape{};
    std::vector<T> loss(par.loss.size(), T(-5)), grad(d.x.size(), T(-5));
    const xent::ConstTensorView x{d.x.data(), {c.N, c.V}}, t{d.t.data(), {c.N}};
    if (c.dloss) {
      ASSERT_TRUE(xent::cross_entropy_forward(x, t, o, {loss.data(), ls}).ok());
      ASSERT_TRUE(xent::cross_entropy_backward(x, t, o, {d.dl.data(), ls}, {grad.data(), {c.N, c.V}}).ok());
    } else {
      ASSERT_TRUE(xent::cross_entropy_fused(x, t, o, {loss.data(), ls}, {grad.data(), {c.N, c.V}}).ok());
    }
    expect_bits(par.loss, loss, "loss vs single-process exact cross_entropy");
    for (std::int64_t n = 0; n < c.N; ++n)
      for (std::int64_t j = 0; j < vr; ++j) slice[static_cast<std::size_t>(n * vr + j)] = grad[static_cast<std::size_t>(n * c.V + v0 + j)];
    expect_bits(par.grad, slice, "gradient slice vs single-process exact cross_entropy");
    if (!c.dloss) {  // fused and forward give the same loss bits
      std::vector<T> fwd(loss.size(), T(-5));
      ASSERT_TRUE(xent::cross_entropy_forward(x, t, o, {fwd.data(), ls}).ok());
      expect_bits(fwd, loss, "exact forward vs exact fused");
    }
  }
  // Within rounding of the single-process fused layer (every option).
  Result<T> ref = run_single(c, d);
  ASSERT_TRUE(ref.s.ok()) << ref.s.to_string();
  expect_close(one.loss, ref.loss, "loss vs linear_cross_entropy");
  expect_close(one.z, ref.z, "z_loss vs linear_cross_entropy");
  expect_close(one.grad, ref.grad, "gradient vs linear_cross_entropy", 1e-3);
  // And the plain cross_entropy where it has the options.
  if (c.lam == 0 && c.cap == 0 && !c.dloss) {
    xent::CrossEntropyOptions o;
    if (c.weights) o.weight = {d.cw.data(), {c.V}};
    o.reduction = c.red;
    o.label_smoothing = c.eps;
    std::vector<T> loss(one.loss.size()), grad(d.x.size());
    const xent::Shape ls = c.red == xent::Reduction::kNone ? xent::Shape{c.N} : xent::Shape{};
    ASSERT_TRUE(xent::cross_entropy_fused({d.x.data(), {c.N, c.V}}, {d.t.data(), {c.N}}, o, {loss.data(), ls},
                                          {grad.data(), {c.N, c.V}})
                    .ok());
    expect_close(one.loss, loss, "loss vs cross_entropy_fused");
    expect_close(one.grad, grad, "gradient vs cross_entropy_fused", 1e-3);
  }
}

TEST(VocabParallelCE, EveryOptionFloat32) {
  for (const Case& c : cases()) check_case<float>(c);
}
TEST(VocabParallelCE, EveryOptionFloat64) {
  for (const Case& c : cases()) check_case<double>(c);
}

// Logits with -inf (masked classes) and a +inf/NaN row: the same bits on every split.
TEST(VocabParallelCE, NonFiniteLogits) {
  Case c{"nonfinite", 6, 23, false, 0.1, 0, 0, xent::Reduction::kNone};
  Data<double> d = make<double>(c);
  for (std::int64_t j = 0; j < c.V; j += 2) d.x[static_cast<std::size_t>(j)] = -INFINITY;  // row 0: masked
  d.t[0] = 1;
  d.x[static_cast<std::size_t>(1 * c.V + 3)] = INFINITY;   // row 1
  d.x[static_cast<std::size_t>(2 * c.V + 4)] = NAN;        // row 2
  for (std::int64_t j = 0; j < c.V; ++j) d.x[static_cast<std::size_t>(3 * c.V + j)] = -INFINITY;  // row 3: all
  std::int64_t v0, vr;
  slice_of(c, g_rank, g_size, &v0, &vr);
  Result<double> par = run_vp(c, d, v0, vr, MPI_COMM_WORLD);
  Result<double> one = run_vp(c, d, 0, c.V, MPI_COMM_SELF);
  ASSERT_TRUE(par.s.ok() && one.s.ok());
  expect_bits(par.loss, one.loss, "loss vs 1 rank");
  EXPECT_TRUE(std::isinf(one.loss[0])) << one.loss[0];  // smoothing sees the -inf logits
  EXPECT_TRUE(std::isnan(one.loss[1])) << "a +inf logit: NaN, as PyTorch";
  EXPECT_TRUE(std::isnan(one.loss[2]));
  // The same bits as single-process exact cross_entropy, gradient slice included (NaN rows too).
  d.t[4] = -100;  // an ignored row with finite logits: zero gradient
  d.t[3] = -100;  // an ignored row of -inf: NaN gradient (0 times a NaN softmax, as PyTorch)
  par = run_vp(c, d, v0, vr, MPI_COMM_WORLD);
  ASSERT_TRUE(par.s.ok());
  xent::CrossEntropyOptions o;
  o.reduction = c.red;
  o.label_smoothing = c.eps;
  o.summation = xent::Summation::kExact;
  std::vector<double> loss(static_cast<std::size_t>(c.N)), grad(d.x.size());
  ASSERT_TRUE(xent::cross_entropy_fused({d.x.data(), {c.N, c.V}}, {d.t.data(), {c.N}}, o, {loss.data(), {c.N}},
                                        {grad.data(), {c.N, c.V}})
                  .ok());
  expect_bits(par.loss, loss, "loss vs single-process exact cross_entropy");
  std::vector<double> slice(static_cast<std::size_t>(c.N * vr));
  for (std::int64_t n = 0; n < c.N; ++n)
    for (std::int64_t j = 0; j < vr; ++j) slice[static_cast<std::size_t>(n * vr + j)] = grad[static_cast<std::size_t>(n * c.V + v0 + j)];
  expect_bits(par.grad, slice, "gradient slice vs single-process exact cross_entropy");
  EXPECT_TRUE(std::isnan(grad[static_cast<std::size_t>(3 * c.V)]));
  EXPECT_EQ(grad[static_cast<std::size_t>(4 * c.V)], 0.0);
}

// One rank's options or shapes disagree: every rank gets the same error (and nobody hangs; the
// ctest TIMEOUT bounds it).
TEST(VocabParallelCE, MismatchMakesEveryRankFail) {
  Case c{"mismatch", 5, 50};
  Data<float> d = make<float>(c);
  std::int64_t v0, vr;
  slice_of(c, g_rank, g_size, &v0, &vr);
  for (int variant = 0; variant < 4; ++variant) {
    std::vector<float> x(static_cast<std::size_t>(c.N * vr), 0.5f), loss(1), grad(x.size());
    std::vector<std::int64_t> t = d.t;
    xent::mpi::VocabParallelOptions o;
    const bool odd = g_rank == g_size - 1;
    std::int64_t N = c.N;
    if (variant == 0 && odd) o.ignore_index = 3;
    if (variant == 1 && odd) t[2] = (t[2] + 1) % c.V;           // different targets
    if (variant == 2 && odd) t[1] = c.V + 4;                    // out of range on one rank
    if (variant == 3 && odd) N = c.N - 1;                       // different N
    xent::Status s = xent::mpi::vocab_parallel_cross_entropy({x.data(), {N, vr}}, {t.data(), {N}}, {c.V, v0}, o,
                                                             {loss.data(), {}}, {}, {}, {grad.data(), {N, vr}});
    // The check that this variant fails is only meaningful with a disagreeing rank; on one rank
    // variants 0, 1 and 3 are consistent calls.
    const bool expect_fail = variant == 2 || g_size > 1;
    EXPECT_EQ(!s.ok(), expect_fail) << "variant " << variant << ": " << s.to_string();
    // The message is the same on every rank.
    std::uint64_t h = 1469598103934665603ull;
    for (char ch : s.to_string()) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    std::uint64_t lo = h, hi = h;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    EXPECT_EQ(lo, hi) << "variant " << variant << ": ranks got different errors; this one: " << s.to_string();
    if (g_rank == 0 && !s.ok()) std::printf("variant %d: %s\n", variant, s.to_string().c_str());
  }
}

TEST(VocabParallelCE, BadSliceTilingFails) {
  std::vector<double> x(3 * 4, 0.0), loss(1);
  std::vector<std::int64_t> t = {0, 1, 2};
  // Every rank claims classes [0, 4) of 4 * size: a tiling error when size > 1.
  xent::Status s = xent::mpi::vocab_parallel_cross_entropy({x.data(), {3, 4}}, {t.data(), {3}},
                                                           {4 * static_cast<std::int64_t>(g_size), 0}, {},
                                                           {loss.data(), {}}, {}, {}, {});
  EXPECT_EQ(s.ok(), g_size == 1) << s.to_string();
}

// ---- the fused linear layer -----------------------------------------------------------------------

template <class T>
void check_linear(bool everything, bool with_bias) {
  SCOPED_TRACE(std::string(sizeof(T) == 4 ? "float32" : "float64") + (everything ? " all options" : " plain"));
  const std::int64_t N = 29, H = 16, V = 507;
  std::mt19937_64 rng(99);
  std::normal_distribution<double> nd(0, 1);
  std::vector<T> h(N * H), w(V * H), b(V), cw(V);
  for (auto& v : h) v = static_cast<T>(nd(rng));
  for (auto& v : w) v = static_cast<T>(nd(rng));
  for (auto& v : b) v = static_cast<T>(nd(rng));
  for (auto& v : cw) v = static_cast<T>(0.5 + std::fabs(nd(rng)));
  std::vector<std::int64_t> t(N);
  for (std::int64_t n = 0; n < N; ++n) t[n] = n % 6 == 0 ? -100 : static_cast<std::int64_t>(rng() % V);
  auto run = [&](std::int64_t v0, std::int64_t vr, MPI_Comm comm, std::vector<T>* loss, std::vector<T>* dh,
                 std::vector<T>* dw, std::vector<T>* db) {
    xent::mpi::VocabParallelOptions o;
    o.comm = comm;
    o.token_block = 8;
    if (everything) {
      o.class_weight = {cw.data() + v0, {vr}};
      o.label_smoothing = 0.1;
      o.lse_square_scale = 1e-3;
      o.softcap = 5;
    }
    loss->assign(1, T(0));
    dh->assign(N * H, T(0));
    dw->assign(vr * H, T(0));
    db->assign(vr, T(0));
    xent::ConstTensorView bias;
    xent::TensorView dbias;
    if (with_bias) {
      bias = {b.data() + v0, {vr}};
      dbias = {db->data(), {vr}};
    }
    return xent::mpi::vocab_parallel_linear_cross_entropy({h.data(), {N, H}}, {w.data() + v0 * H, {vr, H}}, bias,
                                                          {t.data(), {N}}, {V, v0}, o, {loss->data(), {}}, {}, {},
                                                          {dh->data(), {N, H}}, {dw->data(), {vr, H}}, dbias);
  };
  std::int64_t vr;
  const std::int64_t v0 = xent::mpi::even_shard(V, g_rank, g_size, &vr).first_class;
  std::vector<T> l1, dh1, dw1, db1, lk, dhk, dwk, dbk;
  ASSERT_TRUE(run(0, V, MPI_COMM_SELF, &l1, &dh1, &dw1, &db1).ok());
  xent::Status s = run(v0, vr, MPI_COMM_WORLD, &lk, &dhk, &dwk, &dbk);
  ASSERT_TRUE(s.ok()) << s.to_string();
  // The loss: same bits as one rank when the BLAS's logits do not depend on the column split.
  expect_bits(lk, l1, "linear loss vs 1 rank");
  std::vector<T> dw_slice(dw1.begin() + v0 * H, dw1.begin() + (v0 + vr) * H);
  expect_bits(dwk, dw_slice, "dweight slice vs 1 rank");
  if (with_bias) {
    std::vector<T> db_slice(db1.begin() + v0, db1.begin() + v0 + vr);
    expect_bits(dbk, db_slice, "dbias slice vs 1 rank");
  }
  expect_close(dhk, dh1, "dhidden vs 1 rank", 1e-2);
  // Twice on K ranks: the same bits (dhidden's rank-ordered sum included).
  std::vector<T> l2, dh2, dw2, db2;
  ASSERT_TRUE(run(v0, vr, MPI_COMM_WORLD, &l2, &dh2, &dw2, &db2).ok());
  expect_bits(dh2, dhk, "dhidden run to run");
  // The single-process layer.
  xent::LinearCrossEntropyOptions o;
  if (everything) {
    o.class_weight = {cw.data(), {V}};
    o.label_smoothing = 0.1;
    o.lse_square_scale = 1e-3;
    o.softcap = 5;
  }
  std::vector<T> L(1), DH(N * H), DW(V * H), DB(V);
  xent::ConstTensorView bias;
  xent::TensorView dbias;
  if (with_bias) {
    bias = {b.data(), {V}};
    dbias = {DB.data(), {V}};
  }
  ASSERT_TRUE(xent::linear_cross_entropy(
                  {.hidden = {h.data(), {N, H}}, .weight = {w.data(), {V, H}}, .bias = bias, .target = {t.data(), {N}}},
                  o,
                  {.loss = xent::scalar_view(L.data()), .dhidden = {DH.data(), {N, H}}, .dweight = {DW.data(), {V, H}},
                   .dbias = dbias})
                  .ok());
  expect_close(l1, L, "linear loss vs linear_cross_entropy");
  expect_close(dh1, DH, "dhidden vs linear_cross_entropy", 1e-2);
  expect_close(dw1, DW, "dweight vs linear_cross_entropy", 1e-2);
  if (with_bias) expect_close(db1, DB, "dbias vs linear_cross_entropy", 1e-2);
}

TEST(VocabParallelLinear, Float32) {
  check_linear<float>(false, true);
  check_linear<float>(true, true);
}
TEST(VocabParallelLinear, Float64) {
  check_linear<double>(false, false);
  check_linear<double>(true, true);
}
// The layer runs the BLAS single-threaded (its products are tasks of xent's pool) and gives the
// caller's setting back (src/blas_threads.h, shared with linear_cross_entropy).
TEST(VocabParallelLinear, KeepsTheBlasThreadSetting) {
  const int before = openblas_get_num_threads();
  openblas_set_num_threads(2);
  const int set = openblas_get_num_threads();
  check_linear<float>(true, true);
  EXPECT_EQ(openblas_get_num_threads(), set) << "the BLAS thread count was not restored";
  openblas_set_num_threads(before);
}

template <class T>
void check_token_parallel(xent::Reduction red) {
  const std::int64_t N = 40, H = 8, V = 33;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd(0, 1);
  std::vector<T> h(N * H), w(V * H), b(V);
  for (auto& v : h) v = static_cast<T>(nd(rng));
  for (auto& v : w) v = static_cast<T>(nd(rng));
  for (auto& v : b) v = static_cast<T>(nd(rng));
  std::vector<std::int64_t> t(N);
  for (std::int64_t n = 0; n < N; ++n) t[n] = n % 7 == 3 ? -100 : static_cast<std::int64_t>(rng() % V);
  // Rank r: tokens [n0, n1) (uneven).
  const std::int64_t n0 = N * g_rank / g_size, n1 = N * (g_rank + 1) / g_size, nr = n1 - n0;
  xent::mpi::VocabParallelOptions o;
  o.reduction = red;
  o.label_smoothing = 0.1;
  o.lse_square_scale = 1e-3;
  o.softcap = 4;
  const bool none = red == xent::Reduction::kNone;
  std::vector<T> loss(none ? nr : 1), dh(nr * H), dw(V * H), db(V);
  const xent::Shape ls = none ? xent::Shape{nr} : xent::Shape{};
  xent::Status s = xent::mpi::token_parallel_linear_cross_entropy(
      {h.data() + n0 * H, {nr, H}}, {w.data(), {V, H}}, {b.data(), {V}}, {t.data() + n0, {nr}}, o,
      {loss.data(), ls}, {}, {}, {dh.data(), {nr, H}}, {dw.data(), {V, H}}, {db.data(), {V}});
  ASSERT_TRUE(s.ok()) << s.to_string();
  xent::LinearCrossEntropyOptions lo;
  lo.reduction = red;
  lo.label_smoothing = 0.1;
  lo.lse_square_scale = 1e-3;
  lo.softcap = 4;
  std::vector<T> L(none ? N : 1), DH(N * H), DW(V * H), DB(V);
  const xent::Shape LS = none ? xent::Shape{N} : xent::Shape{};
  ASSERT_TRUE(xent::linear_cross_entropy({.hidden = {h.data(), {N, H}},
                                          .weight = {w.data(), {V, H}},
                                          .bias = {b.data(), {V}},
                                          .target = {t.data(), {N}}},
                                         lo,
                                         {.loss = {L.data(), LS},
                                          .dhidden = {DH.data(), {N, H}},
                                          .dweight = {DW.data(), {V, H}},
                                          .dbias = {DB.data(), {V}}})
                  .ok());
  if (none) L = std::vector<T>(L.begin() + n0, L.begin() + n1);
  expect_close(loss, L, "token-parallel loss");
  expect_close(dh, std::vector<T>(DH.begin() + n0 * H, DH.begin() + n1 * H), "token-parallel dhidden", 1e-2);
  expect_close(dw, DW, "token-parallel dweight", 1e-2);
  expect_close(db, DB, "token-parallel dbias", 1e-2);
}

TEST(TokenParallelLinear, MeanSumNone) {
  check_token_parallel<float>(xent::Reduction::kMean);
  check_token_parallel<double>(xent::Reduction::kSum);
  check_token_parallel<double>(xent::Reduction::kNone);
}

TEST(OrderedAllreduce, RankOrderSum) {
  std::vector<double> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = (g_rank + 1) * 0.1 + static_cast<double>(i) * 1e-17;
  ASSERT_TRUE(xent::mpi::allreduce_sum_ordered(v.data(), v.size(), MPI_COMM_WORLD).ok());
  for (std::size_t i = 0; i < v.size(); ++i) {
    double want = 0.1 + static_cast<double>(i) * 1e-17;
    for (int r = 1; r < g_size; ++r) want += (r + 1) * 0.1 + static_cast<double>(i) * 1e-17;
    ASSERT_TRUE(same_bits(v[i], want)) << i;
  }
}

// The last rank runs out of memory (every allocation of 256 KiB or more fails there): every rank
// must return the same resource-exhausted Status naming it, and none may be left waiting in a
// collective (the test would hang until ctest's timeout).
TEST(AllocationFailure, OneRankOutOfMemoryFailsEveryRank) {
  const int last = g_size - 1;
  const std::int64_t N = 40000, V = 64, H = 16;  // per-token buffers of 320 KB and more
  std::int64_t v0, vr;
  Case c{"oom", N, V};
  slice_of(c, g_rank, g_size, &v0, &vr);
  std::vector<float> x(static_cast<std::size_t>(N * vr), 0.25f), grad(x.size()), loss(1);
  std::vector<std::int64_t> t(static_cast<std::size_t>(N));
  for (std::int64_t n = 0; n < N; ++n) t[static_cast<std::size_t>(n)] = n % V;
  std::vector<float> hidden(static_cast<std::size_t>(N * H), 0.5f), w(static_cast<std::size_t>(vr * H), 0.1f),
      dh(hidden.size()), dw(w.size());
  std::vector<float> wfull(static_cast<std::size_t>(V * 1024), 0.1f), dwfull(wfull.size()), h1(1024, 0.5f), dh1(1024);
  std::vector<std::int64_t> t1 = {static_cast<std::int64_t>(g_rank % V)};
  std::vector<double> sums(100000, 1.0);
  xent::mpi::VocabParallelOptions o;
  const std::vector<std::pair<const char*, std::function<xent::Status()>>> calls = {
      {"vocab_parallel_cross_entropy",
       [&] {
         return xent::mpi::vocab_parallel_cross_entropy({x.data(), {N, vr}}, {t.data(), {N}}, {V, v0}, o,
                                                        {loss.data(), {}}, {}, {}, {grad.data(), {N, vr}});
       }},
      {"vocab_parallel_linear_cross_entropy",
       [&] {
         return xent::mpi::vocab_parallel_linear_cross_entropy({hidden.data(), {N, H}}, {w.data(), {vr, H}}, {},
                                                               {t.data(), {N}}, {V, v0}, o, {loss.data(), {}}, {}, {},
                                                               {dh.data(), {N, H}}, {dw.data(), {vr, H}}, {});
       }},
      {"token_parallel_linear_cross_entropy",
       [&] {
         return xent::mpi::token_parallel_linear_cross_entropy({h1.data(), {1, 1024}}, {wfull.data(), {V, 1024}}, {},
                                                               {t1.data(), {1}}, o, {loss.data(), {}}, {}, {},
                                                               {dh1.data(), {1, 1024}}, {dwfull.data(), {V, 1024}}, {});
       }},
      {"allreduce_sum_ordered",
       [&] { return xent::mpi::allreduce_sum_ordered(sums.data(), sums.size(), MPI_COMM_WORLD); }},
  };
  for (const auto& [name, call] : calls) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(call().ok()) << "must succeed with memory available";
    xent::test::g_fail_min_bytes = 256 * 1024;
    if (g_rank == last) xent::test::g_fail_new = true;
    xent::Status s;
    try {
      s = call();
    } catch (...) {
      xent::test::g_fail_new = false;
      ADD_FAILURE() << "an exception crossed the library boundary";
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    xent::test::g_fail_new = false;
    EXPECT_EQ(s.code(), xent::StatusCode::kResourceExhausted) << s.to_string();
    EXPECT_NE(s.message().find("rank " + std::to_string(last) + " of " + std::to_string(g_size)), std::string::npos)
        << s.message();
    std::uint64_t h = 1469598103934665603ull;
    for (char ch : s.code() == xent::StatusCode::kResourceExhausted ? std::string("same") : s.to_string())
      h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    std::uint64_t lo = h, hi = h;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    EXPECT_EQ(lo, hi) << "some ranks did not fail";
    if (g_rank == 0) std::printf("%s: %s\n", name, s.to_string().c_str());
    EXPECT_TRUE(call().ok()) << "the same call with memory available";
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  if (g_rank != 0) {  // one rank's report is enough; failures on any rank set the exit code
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  int any = rc;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rc != 0) std::fprintf(stderr, "rank %d: tests failed\n", g_rank);
  MPI_Finalize();
  return any;
}
