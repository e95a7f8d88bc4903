// test_linear_cross_entropy.cc: xent::linear_cross_entropy against three oracles on small shapes:
//   1. a naive long-double model of F.cross_entropy(F.linear(h, W, b), t, ...) with z-loss and
//      soft-capping (this file), whose gradients are taken by central finite differences in long
//      double, so no gradient formula is shared with the library;
//   2. the unfused computation through xent itself: logits materialised in double, then
//      xent::cross_entropy_forward / _backward, then the two products (options PyTorch has);
//   3. finite differences of xent's own float64 loss.
// Plus edge cases (all tokens ignored, one token, N = 0, V not a multiple of the block, blocks of
// one), bad input (nothing written), workspace handling and bit-identical results across thread
// counts and block shapes that share a plan. Every case runs for every ISA the CPU supports.
// Not a benchmark: shapes are tiny; PyTorch itself is compared in test_linear_vs_torch.py.
#include <cblas.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "xent/linear_cross_entropy.h"
#include "xent/losses.h"
#include "xent/runtime.h"

namespace {

using xent::Reduction;
using LD = long double;

struct Case {
  std::int64_t N = 5, H = 4, V = 7;
  bool bias = false;
  bool class_weight = false;
  double eps = 0;       // label_smoothing
  double lam = 0;       // lse_square_scale
  double softcap = 0;
  Reduction red = Reduction::kMean;
  int ignore_every = 0;     // every k-th token ignored (0: none)
  std::int64_t ignore_index = -100;
  bool dloss = false;       // an upstream gradient other than 1
  std::int64_t Nb = 0, Vb = 0;
  bool t32 = false;
  std::uint64_t seed = 1;

  std::string str() const {
    std::ostringstream os;
    os << "N=" << N << " H=" << H << " V=" << V << " bias=" << bias << " cw=" << class_weight << " eps=" << eps
       << " lam=" << lam << " softcap=" << softcap << " red=" << xent::reduction_name(red)
       << " ignore_every=" << ignore_every << " ignore_index=" << ignore_index << " dloss=" << dloss
       << " Nb=" << Nb << " Vb=" << Vb << " t32=" << t32 << " seed=" << seed << " isa=" << xent::active_isa();
    return os.str();
  }
};

template <class T>
struct Data {
  std::vector<T> h, w, b, cw, dloss;
  std::vector<std::int64_t> t;
  std::vector<std::int32_t> t32;
};

template <class T>
Data<T> make_data(const Case& c) {
  std::mt19937_64 g(c.seed);
  auto u = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g); };
  Data<T> d;
  d.h.resize(static_cast<std::size_t>(c.N * c.H));
  d.w.resize(static_cast<std::size_t>(c.V * c.H));
  for (auto& x : d.h) x = static_cast<T>(u(-1.5, 1.5));
  for (auto& x : d.w) x = static_cast<T>(u(-1.0, 1.0));
  if (c.bias) {
    d.b.resize(static_cast<std::size_t>(c.V));
    for (auto& x : d.b) x = static_cast<T>(u(-0.5, 0.5));
  }
  if (c.class_weight) {
    d.cw.resize(static_cast<std::size_t>(c.V));
    for (auto& x : d.cw) x = static_cast<T>(u(0.2, 2.0));
  }
  d.t.resize(static_cast<std::size_t>(c.N));
  for (std::int64_t n = 0; n < c.N; ++n) {
    d.t[n] = std::uniform_int_distribution<std::int64_t>(0, c.V - 1)(g);
    if (c.ignore_every > 0 && n % c.ignore_every == c.ignore_every - 1) d.t[n] = c.ignore_index;
  }
  d.t32.assign(d.t.begin(), d.t.end());
  if (c.dloss) {
    d.dloss.resize(c.red == Reduction::kNone ? static_cast<std::size_t>(c.N) : 1);
    for (auto& x : d.dloss) x = static_cast<T>(u(-1.0, 2.0));
  }
  return d;
}

// ---- oracle 1: long-double model ------------------------------------------------------------------

struct RefOut {
  std::vector<LD> loss;  // per token (kNone) or one value
  std::vector<LD> zloss;
  LD objective = 0;      // sum(loss * dloss), the function whose gradient xent returns
};

// F.cross_entropy(F.linear(h, W, b), t, weight=cw, ignore_index, label_smoothing, reduction) plus
// z-loss lam * lse^2 (kMean: over kept tokens) with logits capped by s * tanh(a / s).
RefOut ref_forward(const Case& c, const std::vector<LD>& h, const std::vector<LD>& w, const std::vector<LD>& b,
                   const std::vector<LD>& cw, const std::vector<std::int64_t>& t, const std::vector<LD>& dloss) {
  const std::int64_t N = c.N, H = c.H, V = c.V;
  std::vector<LD> ce(N, 0), zl(N, 0), z(V);
  LD picked = 0, kept = 0, wsum = 0;
  for (std::int64_t j = 0; j < V; ++j) wsum += cw.empty() ? 1 : cw[j];
  for (std::int64_t n = 0; n < N; ++n) {
    if (t[n] == c.ignore_index) continue;
    for (std::int64_t j = 0; j < V; ++j) {
      LD a = b.empty() ? 0 : b[j];
      for (std::int64_t k = 0; k < H; ++k) a += h[n * H + k] * w[j * H + k];
      z[j] = c.softcap > 0 ? c.softcap * std::tanh(a / c.softcap) : a;
    }
    LD m = -std::numeric_limits<LD>::infinity();
    for (LD x : z) m = std::max(m, x);
    LD s = 0;
    for (LD x : z) s += std::exp(x - m);
    const LD lse = m + std::log(s);
    const LD wt = cw.empty() ? 1 : cw[t[n]];
    LD smooth = 0;
    for (std::int64_t j = 0; j < V; ++j) smooth += (cw.empty() ? 1 : cw[j]) * (lse - z[j]);
    ce[n] = (1 - c.eps) * wt * (lse - z[t[n]]) + c.eps / V * smooth;
    zl[n] = c.lam * lse * lse;
    picked += wt;
    kept += 1;
  }
  RefOut r;
  if (c.red == Reduction::kNone) {
    for (std::int64_t n = 0; n < N; ++n) {
      r.loss.push_back(ce[n] + zl[n]);
      r.zloss.push_back(zl[n]);
      r.objective += (ce[n] + zl[n]) * (dloss.empty() ? 1 : dloss[n]);
    }
  } else {
    LD cs = 0, zs = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      cs += ce[n];
      zs += zl[n];
    }
    if (c.red == Reduction::kMean) {
      cs /= picked;
      zs /= kept;
    }
    r.loss.push_back(cs + zs);
    r.zloss.push_back(zs);
    r.objective = (cs + zs) * (dloss.empty() ? 1 : dloss[0]);
  }
  return r;
}

template <class T>
std::vector<LD> to_ld(const std::vector<T>& v) {
  return std::vector<LD>(v.begin(), v.end());
}

// Central differences of the objective in long double: d/dx ~ (f(x + e) - f(x - e)) / 2e.
std::vector<LD> fd_grad(std::vector<LD>* param, const std::function<LD()>& f) {
  std::vector<LD> g(param->size());
  for (std::size_t i = 0; i < param->size(); ++i) {
    const LD x = (*param)[i];
    const LD e = 1e-7L * std::max<LD>(1, std::fabs(x));
    (*param)[i] = x + e;
    const LD fp = f();
    (*param)[i] = x - e;
    const LD fm = f();
    (*param)[i] = x;
    g[i] = (fp - fm) / (2 * e);
  }
  return g;
}

// ---- calling xent ---------------------------------------------------------------------------------

template <class T>
struct Out {
  std::vector<T> loss, zloss, dh, dw, db;
  xent::Status status;
};

template <class T>
xent::LinearCrossEntropyOptions options_for(const Case& c, const Data<T>& d) {
  xent::LinearCrossEntropyOptions o;
  if (c.class_weight) o.class_weight = xent::ConstTensorView(d.cw.data(), {c.V});
  o.ignore_index = c.ignore_index;
  o.reduction = c.red;
  o.label_smoothing = c.eps;
  o.lse_square_scale = c.lam;
  o.softcap = c.softcap;
  o.token_block = c.Nb;
  o.vocab_block = c.Vb;
  return o;
}

template <class T>
Out<T> run_xent(const Case& c, const Data<T>& d, bool grads = true, T fill = T(12345)) {
  const xent::LinearCrossEntropyOptions o = options_for(c, d);
  Out<T> out;
  const std::size_t nl = c.red == Reduction::kNone ? static_cast<std::size_t>(c.N) : 1;
  const xent::Shape ls = c.red == Reduction::kNone ? xent::Shape{c.N} : xent::Shape{};
  out.loss.assign(nl, fill);
  out.zloss.assign(nl, fill);
  out.dh.assign(static_cast<std::size_t>(c.N * c.H), fill);
  out.dw.assign(static_cast<std::size_t>(c.V * c.H), fill);
  out.db.assign(c.bias ? static_cast<std::size_t>(c.V) : 0, fill);
  // Non-null pointers even for zero elements, so that an empty tensor is not an absent one.
  static T dummy[1];
  auto p = [](std::vector<T>& v) { return v.empty() ? dummy : v.data(); };
  auto cp = [](const std::vector<T>& v) { return v.empty() ? static_cast<const T*>(dummy) : v.data(); };
  xent::ConstTensorView tv = c.t32 ? xent::ConstTensorView(d.t32.empty() ? nullptr : d.t32.data(), {c.N})
                                   : xent::ConstTensorView(d.t.empty() ? nullptr : d.t.data(), {c.N});
  if (c.N == 0) tv = c.t32 ? xent::ConstTensorView(reinterpret_cast<const std::int32_t*>(dummy), {0})
                           : xent::ConstTensorView(reinterpret_cast<const std::int64_t*>(dummy), {0});
  xent::ConstTensorView bias, dl;
  if (c.bias) bias = xent::ConstTensorView(d.b.data(), {c.V});
  if (c.dloss) dl = xent::ConstTensorView(cp(d.dloss), ls);
  xent::TensorView dh, dw, db;
  if (grads) {
    dh = xent::TensorView(p(out.dh), {c.N, c.H});
    dw = xent::TensorView(p(out.dw), {c.V, c.H});
    if (c.bias) db = xent::TensorView(p(out.db), {c.V});
  }
  out.status = xent::linear_cross_entropy(
      {.hidden = {cp(d.h), {c.N, c.H}}, .weight = {cp(d.w), {c.V, c.H}}, .bias = bias, .target = tv, .dloss = dl}, o,
      {.loss = {p(out.loss), ls}, .z_loss = {p(out.zloss), ls}, .dhidden = dh, .dweight = dw, .dbias = db});
  return out;
}

template <class T>
constexpr double tol() {
  return std::is_same_v<T, float> ? 3e-5 : 1e-10;
}

// |a - e| <= tol * (scale + |e|) elementwise, where scale is the largest |e| of the output (the
// gradients are sums of terms of that size, so their absolute error is relative to it).
template <class T>
::testing::AssertionResult close(const char* what, const std::vector<T>& a, const std::vector<LD>& e,
                                 double rel) {
  if (a.size() != e.size())
    return ::testing::AssertionFailure() << what << ": size " << a.size() << " vs " << e.size();
  LD scale = 1e-3L;
  for (LD x : e)
    if (std::isfinite(x)) scale = std::max(scale, std::fabs(x));
  int bad = 0;
  std::ostringstream os;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const LD x = a[i];
    bool ok;
    if (std::isnan(e[i]) || std::isnan(x))
      ok = std::isnan(e[i]) && std::isnan(x);
    else
      ok = std::fabs(x - e[i]) <= rel * (scale + std::fabs(e[i]));
    if (!ok && bad++ < 4)
      os << "\n  " << what << "[" << i << "] = " << static_cast<double>(x) << ", oracle " << static_cast<double>(e[i])
         << ", diff " << static_cast<double>(std::fabs(x - e[i])) << ", scale " << static_cast<double>(scale);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << a.size() << " elements of " << what << " differ" << os.str();
}

template <class T>
void check_against_model(const Case& c) {
  SCOPED_TRACE(c.str() + (std::is_same_v<T, float> ? " float32" : " float64"));
  const Data<T> d = make_data<T>(c);
  const Out<T> out = run_xent(c, d);
  ASSERT_TRUE(out.status.ok()) << out.status.to_string();

  std::vector<LD> h = to_ld(d.h), w = to_ld(d.w), b = to_ld(d.b), cw = to_ld(d.cw), dl = to_ld(d.dloss);
  const RefOut r = ref_forward(c, h, w, b, cw, d.t, dl);
  EXPECT_TRUE(close("loss", out.loss, r.loss, tol<T>()));
  EXPECT_TRUE(close("z_loss", out.zloss, r.zloss, tol<T>()));
  auto f = [&] { return ref_forward(c, h, w, b, cw, d.t, dl).objective; };
  // Finite differences carry ~1e-13 relative error in long double; float64 is checked to 1e-8.
  const double gtol = std::is_same_v<T, float> ? 1e-4 : 1e-8;
  EXPECT_TRUE(close("dhidden", out.dh, fd_grad(&h, f), gtol));
  EXPECT_TRUE(close("dweight", out.dw, fd_grad(&w, f), gtol));
  if (c.bias) {
    EXPECT_TRUE(close("dbias", out.db, fd_grad(&b, f), gtol));
  }

  // Forward only must give the same loss bits.
  const Out<T> fwd = run_xent(c, d, /*grads=*/false);
  ASSERT_TRUE(fwd.status.ok()) << fwd.status.to_string();
  EXPECT_EQ(0, std::memcmp(fwd.loss.data(), out.loss.data(), out.loss.size() * sizeof(T)));
}

// Every ISA the CPU supports, then back to automatic choice.
void for_each_isa(const std::function<void()>& body) {
  for (const std::string& isa : xent::supported_isas()) {
    ASSERT_TRUE(xent::set_isa(isa).ok());
    body();
  }
  ASSERT_TRUE(xent::set_isa("auto").ok());
}

std::vector<Case> option_grid() {
  std::vector<Case> cases;
  std::uint64_t seed = 100;
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone})
    for (int bias = 0; bias < 2; ++bias)
      for (int cw = 0; cw < 2; ++cw)
        for (double eps : {0.0, 0.15})
          for (double lam : {0.0, 0.02})
            for (double cap : {0.0, 2.5}) {
              Case c;
              c.N = 6;
              c.H = 5;
              c.V = 11;
              c.red = red;
              c.bias = bias;
              c.class_weight = cw;
              c.eps = eps;
              c.lam = lam;
              c.softcap = cap;
              c.ignore_every = 3;
              c.dloss = (seed % 2) == 0;
              c.t32 = (seed % 3) == 0;
              // Alternate whole-row blocks, recomputed vocabulary blocks and the automatic plan.
              const int mode = static_cast<int>(seed % 3);
              c.Nb = mode == 0 ? 0 : mode == 1 ? 4 : 2;
              c.Vb = mode == 0 ? 0 : mode == 1 ? 4 : 11;
              c.seed = seed++;
              cases.push_back(c);
            }
  return cases;
}

TEST(LinearCrossEntropy, EveryOptionMatchesLongDoubleModelF64) {
  for_each_isa([] {
    for (const Case& c : option_grid()) check_against_model<double>(c);
  });
}

TEST(LinearCrossEntropy, EveryOptionMatchesLongDoubleModelF32) {
  for_each_isa([] {
    for (const Case& c : option_grid()) check_against_model<float>(c);
  });
}

TEST(LinearCrossEntropy, EdgeShapes) {
  for_each_isa([] {
    std::vector<Case> cases;
    Case one;  // one token
    one.N = 1;
    one.bias = true;
    cases.push_back(one);
    Case tail;  // V and N not multiples of the blocks
    tail.N = 10;
    tail.V = 37;
    tail.H = 3;
    tail.Nb = 3;
    tail.Vb = 8;
    tail.bias = true;
    tail.eps = 0.1;
    tail.lam = 0.01;
    cases.push_back(tail);
    Case ones = tail;  // blocks of one token and one class
    ones.Nb = 1;
    ones.Vb = 1;
    ones.red = Reduction::kNone;
    ones.dloss = true;
    ones.softcap = 4;
    cases.push_back(ones);
    Case v1;  // a single class
    v1.V = 1;
    v1.eps = 0.2;
    v1.bias = true;
    cases.push_back(v1);
    Case valid_ignore;  // ignore_index that is also a valid class
    valid_ignore.V = 3;
    valid_ignore.N = 12;
    valid_ignore.ignore_index = 1;
    valid_ignore.class_weight = true;
    valid_ignore.eps = 0.3;
    cases.push_back(valid_ignore);
    Case big_logits;  // logits of hundreds: the shift by the maximum matters
    big_logits.H = 400;
    big_logits.N = 4;
    big_logits.Vb = 3;
    big_logits.seed = 7;
    cases.push_back(big_logits);
    for (Case c : cases) {
      check_against_model<double>(c);
      check_against_model<float>(c);
      c.t32 = true;
      check_against_model<float>(c);
    }
  });
}

template <class T>
void check_all_ignored(Reduction red) {
  Case c;
  c.N = 4;
  c.bias = true;
  c.eps = 0.1;
  c.lam = 0.1;
  c.red = red;
  c.ignore_every = 1;
  SCOPED_TRACE(c.str());
  const Data<T> d = make_data<T>(c);
  const Out<T> out = run_xent(c, d);
  ASSERT_TRUE(out.status.ok()) << out.status.to_string();
  for (T x : out.loss) {
    if (red == Reduction::kMean)
      EXPECT_TRUE(std::isnan(x)) << "a mean over no tokens is NaN, as in PyTorch";
    else
      EXPECT_EQ(x, T(0));
  }
  for (T x : out.dh) EXPECT_EQ(x, T(0));
  for (T x : out.dw) EXPECT_EQ(x, T(0));
  for (T x : out.db) EXPECT_EQ(x, T(0));
}

TEST(LinearCrossEntropy, AllTokensIgnored) {
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    check_all_ignored<float>(red);
    check_all_ignored<double>(red);
  }
}

TEST(LinearCrossEntropy, NoTokens) {
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    Case c;
    c.N = 0;
    c.bias = true;
    c.red = red;
    SCOPED_TRACE(c.str());
    const Data<double> d = make_data<double>(c);
    const Out<double> out = run_xent(c, d);
    ASSERT_TRUE(out.status.ok()) << out.status.to_string();
    if (red == Reduction::kMean) {
      EXPECT_TRUE(std::isnan(out.loss[0]));
    }
    if (red == Reduction::kSum) {
      EXPECT_EQ(out.loss[0], 0.0);
    }
    for (double x : out.dw) EXPECT_EQ(x, 0.0);
    for (double x : out.db) EXPECT_EQ(x, 0.0);
  }
}

// Oracle 2: logits materialised in double, then xent's own cross-entropy, then the products.
void check_vs_unfused(const Case& c) {
  {
    SCOPED_TRACE(c.str());
    const Data<double> d = make_data<double>(c);
    const Out<double> out = run_xent(c, d);
    ASSERT_TRUE(out.status.ok()) << out.status.to_string();
    const std::int64_t N = c.N, H = c.H, V = c.V;
    std::vector<double> z(static_cast<std::size_t>(N * V));
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < V; ++j) {
        double a = c.bias ? d.b[j] : 0.0;
        for (std::int64_t k = 0; k < H; ++k) a += d.h[n * H + k] * d.w[j * H + k];
        z[n * V + j] = a;
      }
    xent::CrossEntropyOptions o;
    if (c.class_weight) o.weight = xent::ConstTensorView(d.cw.data(), {V});
    o.ignore_index = c.ignore_index;
    o.reduction = c.red;
    o.label_smoothing = c.eps;
    const xent::Shape ls = c.red == Reduction::kNone ? xent::Shape{N} : xent::Shape{};
    std::vector<double> loss(c.red == Reduction::kNone ? N : 1), dz(z.size());
    std::vector<double> ones(loss.size(), 1.0);
    const std::vector<double>& dl = c.dloss ? d.dloss : ones;
    const xent::ConstTensorView tv(d.t.data(), {N});
    ASSERT_TRUE(xent::cross_entropy_forward({z.data(), {N, V}}, tv, o, {loss.data(), ls}).ok());
    ASSERT_TRUE(xent::cross_entropy_backward({z.data(), {N, V}}, tv, o, {dl.data(), ls}, {dz.data(), {N, V}}).ok());
    std::vector<LD> dh(static_cast<std::size_t>(N * H), 0), dw(static_cast<std::size_t>(V * H), 0), db(V, 0);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < V; ++j) {
        db[j] += dz[n * V + j];
        for (std::int64_t k = 0; k < H; ++k) {
          dh[n * H + k] += static_cast<LD>(dz[n * V + j]) * d.w[j * H + k];
          dw[j * H + k] += static_cast<LD>(dz[n * V + j]) * d.h[n * H + k];
        }
      }
    EXPECT_TRUE(close("loss", out.loss, to_ld(loss), 1e-12));
    EXPECT_TRUE(close("dhidden", out.dh, dh, 1e-12));
    EXPECT_TRUE(close("dweight", out.dw, dw, 1e-12));
    if (c.bias) {
      EXPECT_TRUE(close("dbias", out.db, db, 1e-12));
    }
  }
}

TEST(LinearCrossEntropy, MatchesUnfusedXent) {
  for (const Case& c0 : option_grid()) {
    if (c0.lam != 0 || c0.softcap != 0) continue;  // options that cross_entropy does not have
    Case c = c0;
    c.N = 9;
    c.V = 23;
    check_vs_unfused(c);
  }
}

// dhidden is summed over chunks of 2048 classes (linear_cross_entropy.cc kDhChunkK): whole rows of
// 4500 classes (three chunks) and vocabulary blocks of 2500 (two chunks, then one).
TEST(LinearCrossEntropy, MatchesUnfusedXentOverSeveralClassChunks) {
  for (std::int64_t Vb : {0, 2500}) {
    Case c;
    c.N = 9;
    c.H = 5;
    c.V = 4500;
    c.bias = true;
    c.class_weight = true;
    c.eps = 0.1;
    c.ignore_every = 4;
    c.dloss = true;
    c.red = Reduction::kNone;
    c.Vb = Vb;
    check_vs_unfused(c);
  }
}

// Oracle 3: finite differences of xent's own float64 loss, every option on.
TEST(LinearCrossEntropy, FiniteDifferencesOfXent) {
  for (Reduction red : {Reduction::kMean, Reduction::kNone}) {
    Case c;
    c.N = 7;
    c.H = 3;
    c.V = 9;
    c.bias = true;
    c.class_weight = true;
    c.eps = 0.2;
    c.lam = 0.05;
    c.softcap = 3;
    c.red = red;
    c.ignore_every = 4;
    c.dloss = true;
    c.Nb = 3;
    c.Vb = 4;
    SCOPED_TRACE(c.str());
    Data<double> d = make_data<double>(c);
    const Out<double> out = run_xent(c, d);
    ASSERT_TRUE(out.status.ok());
    auto objective = [&] {
      const Out<double> o = run_xent(c, d, false);
      double s = 0;
      for (std::size_t i = 0; i < o.loss.size(); ++i) s += o.loss[i] * d.dloss[i];
      return static_cast<LD>(s);
    };
    auto fd = [&](std::vector<double>* v) {
      std::vector<LD> g(v->size());
      for (std::size_t i = 0; i < v->size(); ++i) {
        const double x = (*v)[i], e = 1e-6;
        (*v)[i] = x + e;
        const LD fp = objective();
        (*v)[i] = x - e;
        const LD fm = objective();
        (*v)[i] = x;
        g[i] = (fp - fm) / (2 * e);
      }
      return g;
    };
    EXPECT_TRUE(close("dhidden", out.dh, fd(&d.h), 1e-7));
    EXPECT_TRUE(close("dweight", out.dw, fd(&d.w), 1e-7));
    EXPECT_TRUE(close("dbias", out.db, fd(&d.b), 1e-7));
  }
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// Big enough for the BLAS and xent's pool to use several threads.
TEST(LinearCrossEntropy, SameBitsForAnyThreadCount) {
  for (std::int64_t Vb : {0, 200}) {
    Case c;
    c.N = 300;
    c.H = 96;
    c.V = 1500;
    c.bias = true;
    c.eps = 0.1;
    c.lam = 1e-3;
    c.ignore_every = 5;
    c.Nb = 64;
    c.Vb = Vb;
    SCOPED_TRACE(c.str());
    const Data<float> d = make_data<float>(c);
    xent::set_num_threads(1);
    const Out<float> one = run_xent(c, d);
    xent::set_num_threads(2);
    const Out<float> two = run_xent(c, d);
    xent::set_num_threads(3);
    const Out<float> three = run_xent(c, d);
    xent::set_num_threads(0);
    ASSERT_TRUE(one.status.ok() && two.status.ok() && three.status.ok());
    for (const Out<float>* o : {&two, &three}) {
      EXPECT_TRUE(same_bits(one.loss, o->loss));
      EXPECT_TRUE(same_bits(one.dh, o->dh));
      EXPECT_TRUE(same_bits(one.dw, o->dw));
      EXPECT_TRUE(same_bits(one.db, o->db));
    }
  }
}

// The BLAS thread count is process-wide: concurrent calls must not restore each other's setting
// (which left it at 1 for good, or multi-threaded under a running call) and must give the same bits
// as a call made alone.
TEST(LinearCrossEntropy, ConcurrentCallsKeepTheBlasThreadSetting) {
  Case c;
  c.N = 64;
  c.H = 32;
  c.V = 300;
  c.bias = true;
  const Data<float> d = make_data<float>(c);
  const Out<float> alone = run_xent(c, d);
  ASSERT_TRUE(alone.status.ok());
  const int before = openblas_get_num_threads();
  openblas_set_num_threads(3);
  const int set = openblas_get_num_threads();
  std::vector<std::thread> callers;
  std::vector<int> same(4, 1);
  for (int k = 0; k < 4; ++k) {
    callers.emplace_back([&, k] {
      for (int rep = 0; rep < 20; ++rep) {
        const Out<float> o = run_xent(c, d);
        if (!o.status.ok() || !same_bits(alone.loss, o.loss) || !same_bits(alone.dw, o.dw)) same[k] = 0;
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(openblas_get_num_threads(), set) << "the BLAS thread count was not restored";
  for (int k = 0; k < 4; ++k) EXPECT_EQ(same[k], 1) << "caller " << k << " got other bits";
  openblas_set_num_threads(before);
}

TEST(LinearCrossEntropy, CallerWorkspace) {
  Case c;
  c.N = 20;
  c.V = 50;
  c.bias = true;
  c.Nb = 8;
  c.Vb = 16;
  const Data<float> d = make_data<float>(c);
  const Out<float> own = run_xent(c, d);
  ASSERT_TRUE(own.status.ok());
  xent::LinearCrossEntropyOptions o = options_for(c, d);
  const std::size_t need = xent::linear_cross_entropy_workspace_bytes(c.N, c.H, c.V, xent::DType::kF32, o);
  ASSERT_GT(need, std::size_t{8 * 16 * 4});
  auto plan = xent::linear_cross_entropy_plan(c.N, c.H, c.V, xent::DType::kF32, o);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->token_block, 8);
  EXPECT_EQ(plan->vocab_block, 16);
  EXPECT_TRUE(plan->recompute);
  alignas(64) static std::byte buf[1 << 16];
  ASSERT_LE(need, sizeof(buf));
  std::vector<float> loss(1), dh(c.N * c.H), dw(c.V * c.H), db(c.V);
  o.workspace = buf;
  o.workspace_bytes = need;
  auto call = [&] {
    return xent::linear_cross_entropy(
        {.hidden = {d.h, {c.N, c.H}}, .weight = {d.w, {c.V, c.H}}, .bias = {d.b, {c.V}}, .target = {d.t, {c.N}}}, o,
        {.loss = {loss, {}}, .dhidden = {dh, {c.N, c.H}}, .dweight = {dw, {c.V, c.H}}, .dbias = {db, {c.V}}});
  };
  ASSERT_TRUE(call().ok());
  EXPECT_TRUE(same_bits(loss, own.loss));
  EXPECT_TRUE(same_bits(dh, own.dh));
  EXPECT_TRUE(same_bits(dw, own.dw));
  EXPECT_TRUE(same_bits(db, own.db));
  o.workspace_bytes = need - 1;
  loss[0] = -7;
  const xent::Status s = call();
  EXPECT_EQ(s.code(), xent::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("workspace"), std::string::npos) << s.message();
  EXPECT_EQ(loss[0], -7);
}

TEST(LinearCrossEntropy, AutomaticPlan) {
  xent::LinearCrossEntropyOptions o;
  // Whole rows fit the default 64 MiB: no recomputation.
  auto p = xent::linear_cross_entropy_plan(8192, 1024, 32000, xent::DType::kF32, o);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->recompute);
  EXPECT_EQ(p->vocab_block, 32000);
  EXPECT_LE(p->workspace_bytes, o.workspace_limit_bytes + (1u << 20));
  // A small limit forces vocabulary blocks; the workspace stays within it.
  o.workspace_limit_bytes = 4u << 20;
  p = xent::linear_cross_entropy_plan(8192, 1024, 128256, xent::DType::kF32, o);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->recompute);
  EXPECT_LE(p->workspace_bytes, o.workspace_limit_bytes + 128256 * 8 + (64u << 10));
  // The workspace does not grow with N.
  auto p2 = xent::linear_cross_entropy_plan(1 << 20, 1024, 128256, xent::DType::kF32, o);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(p->workspace_bytes, p2->workspace_bytes);
}

TEST(LinearCrossEntropy, BadInputWritesNothing) {
  Case c;
  c.bias = true;
  const Data<float> good = make_data<float>(c);
  auto expect_error = [&](const Data<float>& d, const Case& cc, xent::StatusCode code, const char* needle) {
    const Out<float> out = run_xent(cc, d, true, -7.0f);
    EXPECT_EQ(out.status.code(), code) << out.status.to_string();
    EXPECT_NE(out.status.message().find(needle), std::string::npos) << out.status.message();
    for (const auto* v : {&out.loss, &out.zloss, &out.dh, &out.dw, &out.db})
      for (float x : *v) ASSERT_EQ(x, -7.0f) << "an output was written although the call failed";
  };
  Data<float> d = good;
  d.t[3] = c.V;
  expect_error(d, c, xent::StatusCode::kOutOfRange, "position 3");
  d = good;
  d.t[0] = -1;
  expect_error(d, c, xent::StatusCode::kOutOfRange, "target -1");
  Case cc = c;
  cc.eps = 1.5;
  expect_error(good, cc, xent::StatusCode::kInvalidArgument, "label_smoothing");
  cc = c;
  cc.softcap = -1;
  expect_error(good, cc, xent::StatusCode::kInvalidArgument, "softcap");
  cc = c;
  cc.lam = std::numeric_limits<double>::quiet_NaN();
  expect_error(good, cc, xent::StatusCode::kInvalidArgument, "lse_square_scale");

  // Shape and dtype mismatches through the raw API.
  std::vector<float> loss(1, -7.0f), dw(c.V * c.H, -7.0f);
  std::vector<double> wd(good.w.begin(), good.w.end());
  xent::LinearCrossEntropyOptions o;
  auto loss_only = [&](const xent::LinearCrossEntropyInputs& in, xent::TensorView l) {
    return xent::linear_cross_entropy(in, o, {.loss = l});
  };
  xent::Status s = loss_only({.hidden = {good.h.data(), {c.N, c.H}}, .weight = {good.w.data(), {c.V, c.H + 1}},
                              .target = {good.t.data(), {c.N}}},
                             {loss.data(), {}});
  EXPECT_EQ(s.code(), xent::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("weight must have shape"), std::string::npos) << s.message();
  s = loss_only({.hidden = {good.h.data(), {c.N, c.H}}, .weight = {wd.data(), {c.V, c.H}},
                 .target = {good.t.data(), {c.N}}},
                {loss.data(), {}});
  EXPECT_NE(s.message().find("float32"), std::string::npos) << s.message();
  s = loss_only({.hidden = {good.h.data(), {c.N, c.H}}, .weight = {good.w.data(), {c.V, c.H}},
                 .target = {good.t.data(), {c.N - 1}}},
                {loss.data(), {}});
  EXPECT_NE(s.message().find("target must have shape"), std::string::npos) << s.message();
  s = loss_only({.hidden = {good.h.data(), {c.N, c.H}}, .weight = {good.w.data(), {c.V, c.H}},
                 .target = {good.t.data(), {c.N}}},
                {loss.data(), {1}});
  EXPECT_NE(s.message().find("0-d"), std::string::npos) << s.message();
  std::vector<float> db(c.V);
  s = xent::linear_cross_entropy(
      {.hidden = {good.h.data(), {c.N, c.H}}, .weight = {good.w.data(), {c.V, c.H}}, .target = {good.t.data(), {c.N}}},
      o, {.loss = {loss.data(), {}}, .dweight = {dw.data(), {c.V, c.H}}, .dbias = {db.data(), {c.V}}});
  EXPECT_NE(s.message().find("no bias"), std::string::npos) << s.message();
  EXPECT_EQ(loss[0], -7.0f);
  for (float x : dw) ASSERT_EQ(x, -7.0f);
}

}  // namespace
