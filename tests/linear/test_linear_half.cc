// test_linear_half.cc: the fused linear + cross-entropy with bfloat16 / float16 hidden and weight
// (include/xent/linear_cross_entropy.h): every output against a direct float64 computation on the
// same 16-bit values (logits, softmax, gradients written out here), within the 16-bit rounding;
// the same outputs as the float32 layer on the widened values, rounded once; dweight in float32
// (the option that keeps its sum over tokens out of 16 bits) equal to the float32 layer's; and bad
// views. Not PyTorch (test_linear_vs_torch.py) and not the float32 layer itself
// (test_linear_cross_entropy.cc).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "xent/xent.h"

namespace xent {
namespace {

template <class H>
double wide(H v) {
  return static_cast<double>(to_float(v));
}
template <class H>
H narrow(double v) {
  if constexpr (std::is_same_v<H, bfloat16>) return to_bfloat16(v);
  else return to_float16(v);
}
template <class H>
double ulp_rel() {
  return std::is_same_v<H, bfloat16> ? 0x1p-8 : 0x1p-11;  // half an ulp, relative
}

struct Problem {
  std::int64_t N = 0, H = 0, V = 0;
  std::vector<double> h, w, b, cw;
  std::vector<std::int64_t> t;
};

// Float64 oracle: z = h w^T + b; per-token loss w[t](lse - z_t) (ignored: 0); mean by the picked
// class weights; dz = (p - onehot) w[t] / divisor; dh = dz w, dw = dz^T h, db = sum dz.
struct Oracle {
  double loss = 0;
  std::vector<double> dh, dw, db;
};
Oracle oracle(const Problem& q) {
  Oracle o;
  o.dh.assign(static_cast<std::size_t>(q.N * q.H), 0);
  o.dw.assign(static_cast<std::size_t>(q.V * q.H), 0);
  o.db.assign(static_cast<std::size_t>(q.V), 0);
  double divisor = 0;
  for (std::int64_t n = 0; n < q.N; ++n)
    if (q.t[n] != -100) divisor += q.cw[q.t[n]];
  std::vector<double> z(static_cast<std::size_t>(q.V));
  for (std::int64_t n = 0; n < q.N; ++n) {
    if (q.t[n] == -100) continue;
    double m = -INFINITY;
    for (std::int64_t v = 0; v < q.V; ++v) {
      double acc = q.b[v];
      for (std::int64_t k = 0; k < q.H; ++k) acc += q.h[n * q.H + k] * q.w[v * q.H + k];
      z[v] = acc;
      m = std::max(m, acc);
    }
    double S = 0;
    for (double zv : z) S += std::exp(zv - m);
    const double lse = m + std::log(S), wt = q.cw[q.t[n]];
    o.loss += wt * (lse - z[q.t[n]]) / divisor;
    for (std::int64_t v = 0; v < q.V; ++v) {
      const double dz = (std::exp(z[v] - lse) - (v == q.t[n] ? 1 : 0)) * wt / divisor;
      o.db[v] += dz;
      for (std::int64_t k = 0; k < q.H; ++k) {
        o.dh[n * q.H + k] += dz * q.w[v * q.H + k];
        o.dw[v * q.H + k] += dz * q.h[n * q.H + k];
      }
    }
  }
  return o;
}

template <class H>
void check_type() {
  SCOPED_TRACE((std::is_same_v<H, bfloat16> ? "bfloat16" : "float16"));
  Problem q;
  q.N = 37;
  q.H = 24;
  q.V = 300;
  std::mt19937_64 rng(16);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<H> h(static_cast<std::size_t>(q.N * q.H)), w(static_cast<std::size_t>(q.V * q.H)),
      b(static_cast<std::size_t>(q.V)), cw(static_cast<std::size_t>(q.V));
  for (auto& v : h) v = narrow<H>(u(rng));
  for (auto& v : w) v = narrow<H>(0.5 * u(rng));
  for (auto& v : b) v = narrow<H>(0.1 * u(rng));
  for (auto& v : cw) v = narrow<H>(1.25 + u(rng));
  for (const H& v : h) q.h.push_back(wide(v));
  for (const H& v : w) q.w.push_back(wide(v));
  for (const H& v : b) q.b.push_back(wide(v));
  for (const H& v : cw) q.cw.push_back(wide(v));
  for (std::int64_t n = 0; n < q.N; ++n) q.t.push_back(n % 9 == 4 ? -100 : static_cast<std::int64_t>(rng() % q.V));

  LinearCrossEntropyOptions opt;
  opt.class_weight = ConstTensorView(cw.data(), Shape{q.V});
  opt.vocab_block = 64;  // recompute path: several vocabulary blocks
  H loss{};
  std::vector<H> dh(h.size()), dw(w.size()), db(b.size());
  std::vector<float> dw32(w.size());
  const Shape hs{q.N, q.H}, ws{q.V, q.H}, vs{q.V}, ns{q.N};
  Status s = linear_cross_entropy({.hidden = {h.data(), hs}, .weight = {w.data(), ws}, .bias = {b.data(), vs},
                                   .target = {q.t.data(), ns}},
                                  opt,
                                  {.loss = {&loss, Shape{}}, .dhidden = {dh.data(), hs}, .dweight = {dw.data(), ws},
                                   .dbias = {db.data(), vs}});
  ASSERT_TRUE(s.ok()) << s.to_string();
  const Oracle o = oracle(q);
  // Each output: the float64 value on the same 16-bit inputs, rounded once to 16 bits (half an
  // ulp), plus the float32 layer's own error (a few float32 ulps of the terms: far below).
  auto near = [&](double got, double want, double scale) {
    return std::fabs(got - want) <= ulp_rel<H>() * std::fabs(want) + 1e-5 * scale + (std::is_same_v<H, float16> ? 0x1p-24 : 0);
  };
  EXPECT_TRUE(near(wide(loss), o.loss, 1)) << wide(loss) << " vs " << o.loss;
  auto all_near = [&](const std::vector<H>& got, const std::vector<double>& want, const char* what) {
    double amax = 0;
    for (double v : want) amax = std::max(amax, std::fabs(v));
    int bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      if (!near(wide(got[i]), want[i], amax) && bad++ < 3)
        ADD_FAILURE() << what << "[" << i << "] " << wide(got[i]) << " vs " << want[i];
  };
  all_near(dh, o.dh, "dhidden");
  all_near(dw, o.dw, "dweight");
  all_near(db, o.db, "dbias");

  // The float32 layer on the widened values: the 16-bit outputs are its results rounded once, and
  // a float32 dweight is its dweight exactly.
  std::vector<float> h32(q.h.begin(), q.h.end()), w32(q.w.begin(), q.w.end()), b32(q.b.begin(), q.b.end()),
      cw32(q.cw.begin(), q.cw.end());
  LinearCrossEntropyOptions o32 = opt;
  o32.class_weight = ConstTensorView(cw32.data(), Shape{q.V});
  float loss32 = 0;
  std::vector<float> dh_f(h.size()), dw_f(w.size()), db_f(b.size());
  ASSERT_TRUE(linear_cross_entropy({.hidden = {h32.data(), hs}, .weight = {w32.data(), ws}, .bias = {b32.data(), vs},
                                    .target = {q.t.data(), ns}},
                                   o32,
                                   {.loss = scalar_view(&loss32), .dhidden = {dh_f.data(), hs},
                                    .dweight = {dw_f.data(), ws}, .dbias = {db_f.data(), vs}})
                  .ok());
  EXPECT_EQ(narrow<H>(loss32).bits, loss.bits);
  for (std::size_t i = 0; i < dw.size(); ++i) ASSERT_EQ(narrow<H>(dw_f[i]).bits, dw[i].bits) << "dweight " << i;
  for (std::size_t i = 0; i < dh.size(); ++i) ASSERT_EQ(narrow<H>(dh_f[i]).bits, dh[i].bits) << "dhidden " << i;
  s = linear_cross_entropy({.hidden = {h.data(), hs}, .weight = {w.data(), ws}, .bias = {b.data(), vs},
                            .target = {q.t.data(), ns}},
                           opt, {.loss = {&loss, Shape{}}, .dweight = {dw32.data(), ws}});
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(dw32, dw_f) << "a float32 dweight is the float32 layer's, never rounded to 16 bits";

  // Bad views: a float64 dweight, a float32 dhidden, a float32 bias with 16-bit hidden.
  std::vector<double> dw64(w.size());
  s = linear_cross_entropy({.hidden = {h.data(), hs}, .weight = {w.data(), ws}, .target = {q.t.data(), ns}}, opt,
                           {.loss = {&loss, Shape{}}, .dweight = {dw64.data(), ws}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dweight must be"), std::string::npos) << s.message();
  s = linear_cross_entropy({.hidden = {h.data(), hs}, .weight = {w.data(), ws}, .target = {q.t.data(), ns}}, opt,
                           {.loss = {&loss, Shape{}}, .dhidden = {dh_f.data(), hs}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  s = linear_cross_entropy({.hidden = {h.data(), hs}, .weight = {w.data(), ws}, .bias = {b32.data(), vs},
                            .target = {q.t.data(), ns}},
                           opt, {.loss = {&loss, Shape{}}});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("bias must be"), std::string::npos) << s.message();
}

// The 16-bit layer widens its inputs by blocks (the token block's hidden rows, each BLAS tile's
// weight slice) into the same BLAS calls the float32 layer makes on the widened values, so each
// 16-bit output is the float32 layer's result rounded once, bit for bit, and a float32 dweight is
// the float32 layer's exactly: for 1 and 2 threads, whole rows and vocabulary blocks (not multiples
// of the 1024-class tile), several tiles of each product (H = 300: two dhidden tiles; V = 2100:
// three logits tiles), a token block of ignored tokens, every option, and a caller's workspace of
// the one-tile minimum (tiles then run one at a time) as well as one byte short of it.
template <class H>
void check_blocks_same_bits() {
  SCOPED_TRACE((std::is_same_v<H, bfloat16> ? "bfloat16" : "float16"));
  const std::int64_t N = 71, D = 300, V = 2100;
  std::mt19937_64 rng(1616);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<H> h(static_cast<std::size_t>(N * D)), w(static_cast<std::size_t>(V * D)), b(static_cast<std::size_t>(V)),
      cw(static_cast<std::size_t>(V)), dl(static_cast<std::size_t>(N));
  for (auto& v : h) v = narrow<H>(2 * u(rng));
  for (auto& v : w) v = narrow<H>(0.3 * u(rng));
  for (auto& v : b) v = narrow<H>(0.5 * u(rng));
  for (auto& v : cw) v = narrow<H>(1.0 + 0.75 * u(rng));
  for (auto& v : dl) v = narrow<H>(u(rng));
  std::vector<std::int64_t> t(static_cast<std::size_t>(N));
  for (std::int64_t n = 0; n < N; ++n)
    t[n] = (n >= 32 && n < 64) || n % 7 == 3 ? -100 : static_cast<std::int64_t>(rng() % V);  // 32..63: a whole block
  auto widened = [](const std::vector<H>& x) {
    std::vector<float> y;
    for (const H& v : x) y.push_back(to_float(v));
    return y;
  };
  const std::vector<float> h32 = widened(h), w32 = widened(w), b32 = widened(b), cw32 = widened(cw), dl32 = widened(dl);
  const Shape hs{N, D}, ws{V, D}, vs{V}, ns{N};

  struct Case {
    const char* name;
    std::int64_t vocab_block;
    Reduction reduction;
  };
  for (const Case& k : {Case{"whole rows, none", 0, Reduction::kNone}, Case{"vocab blocks of 1100, mean", 1100, Reduction::kMean},
                        Case{"whole rows, sum", 0, Reduction::kSum}}) {
    SCOPED_TRACE(k.name);
    LinearCrossEntropyOptions opt;
    opt.token_block = 32;
    opt.vocab_block = k.vocab_block;
    opt.reduction = k.reduction;
    opt.label_smoothing = 0.1;
    opt.lse_square_scale = 1e-3;
    opt.softcap = 20;
    opt.ignore_index = -100;
    const bool none = k.reduction == Reduction::kNone;
    const Shape ls = none ? ns : Shape{};
    const std::size_t nl = none ? static_cast<std::size_t>(N) : 1;

    // The float32 layer on the widened values.
    LinearCrossEntropyOptions o32 = opt;
    o32.class_weight = ConstTensorView(cw32.data(), vs);
    std::vector<float> loss_f(nl), zl_f(nl), dh_f(h.size()), dw_f(w.size()), db_f(b.size());
    set_num_threads(2);
    Status s = linear_cross_entropy({.hidden = {h32.data(), hs}, .weight = {w32.data(), ws}, .bias = {b32.data(), vs},
                                     .target = {t.data(), ns}, .dloss = {dl32.data(), ls}},
                                    o32,
                                    {.loss = {loss_f.data(), ls}, .z_loss = {zl_f.data(), ls}, .dhidden = {dh_f.data(), hs},
                                     .dweight = {dw_f.data(), ws}, .dbias = {db_f.data(), vs}});
    ASSERT_TRUE(s.ok()) << s.to_string();

    opt.class_weight = ConstTensorView(cw.data(), vs);
    set_num_threads(1);
    const std::size_t min_bytes = linear_cross_entropy_workspace_bytes(N, D, V, DTypeOf<H>::value, opt);
    ASSERT_GT(min_bytes, 0u);
    std::vector<std::byte> ws_mem(min_bytes + 64);
    void* ws_ptr = ws_mem.data() + (64 - reinterpret_cast<std::uintptr_t>(ws_mem.data()) % 64) % 64;
    for (int threads : {1, 2}) {
      for (bool caller_ws : {false, true}) {
        SCOPED_TRACE(testing::Message() << threads << " threads" << (caller_ws ? ", minimum caller workspace" : ""));
        set_num_threads(threads);
        LinearCrossEntropyOptions o16 = opt;
        if (caller_ws) {
          o16.workspace = ws_ptr;
          o16.workspace_bytes = min_bytes;
        }
        std::vector<H> loss(nl), zl(nl), dh(h.size()), dw(w.size()), db(b.size());
        std::vector<float> dw32(w.size());
        s = linear_cross_entropy({.hidden = {h.data(), hs}, .weight = {w.data(), ws}, .bias = {b.data(), vs},
                                  .target = {t.data(), ns}, .dloss = {dl.data(), ls}},
                                 o16,
                                 {.loss = {loss.data(), ls}, .z_loss = {zl.data(), ls}, .dhidden = {dh.data(), hs},
                                  .dweight = {dw.data(), ws}, .dbias = {db.data(), vs}});
        ASSERT_TRUE(s.ok()) << s.to_string();
        auto same = [](const std::vector<H>& got, const std::vector<float>& f32, const char* what) {
          int bad = 0;
          for (std::size_t i = 0; i < got.size(); ++i)
            if (narrow<H>(f32[i]).bits != got[i].bits && bad++ < 3)
              ADD_FAILURE() << what << "[" << i << "] " << wide(got[i]) << ", the float32 layer's rounded: "
                            << wide(narrow<H>(f32[i])) << " (" << f32[i] << ")";
        };
        same(loss, loss_f, "loss");
        same(zl, zl_f, "z_loss");
        same(dh, dh_f, "dhidden");
        same(dw, dw_f, "dweight");
        same(db, db_f, "dbias");
        // A float32 dweight: the float32 layer's, bit for bit.
        s = linear_cross_entropy({.hidden = {h.data(), hs}, .weight = {w.data(), ws}, .bias = {b.data(), vs},
                                  .target = {t.data(), ns}, .dloss = {dl.data(), ls}},
                                 o16, {.loss = {loss.data(), ls}, .dweight = {dw32.data(), ws}});
        ASSERT_TRUE(s.ok()) << s.to_string();
        EXPECT_EQ(dw32, dw_f) << "a float32 dweight is the float32 layer's";
      }
    }
    // A caller's workspace one byte short of the minimum: refused, nothing written.
    LinearCrossEntropyOptions o16 = opt;
    o16.workspace = ws_ptr;
    o16.workspace_bytes = min_bytes - 1;
    std::vector<H> loss(nl, narrow<H>(7.0));
    s = linear_cross_entropy({.hidden = {h.data(), hs}, .weight = {w.data(), ws}, .target = {t.data(), ns}}, o16,
                             {.loss = {loss.data(), ls}});
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("workspace has"), std::string::npos) << s.message();
    EXPECT_EQ(loss[0].bits, narrow<H>(7.0).bits);
  }
  set_num_threads(0);
}

TEST(LinearCrossEntropyHalf, BFloat16) { check_type<bfloat16>(); }
TEST(LinearCrossEntropyHalf, Float16) { check_type<float16>(); }
TEST(LinearCrossEntropyHalf, BlocksSameBitsAsFloat32LayerBFloat16) { check_blocks_same_bits<bfloat16>(); }
TEST(LinearCrossEntropyHalf, BlocksSameBitsAsFloat32LayerFloat16) { check_blocks_same_bits<float16>(); }

}  // namespace
}  // namespace xent
