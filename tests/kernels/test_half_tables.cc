// test_half_tables.cc: the bfloat16 and float16 SIMD kernel tables (src/cpu/half_hwy.cc) against
// the scalar twin (kernels_scalar.cc), entry by entry, on every ISA this CPU runs. The SIMD tables
// compute in float32 and round once; the scalar one computes in double and rounds once. Bound: each
// 16-bit output within ONE ulp of the 16-bit type of the scalar result (plus 2^-20 of the size of
// the terms it was computed from, where terms cancel), NaN where the scalar is NaN, and at least
// 95% of them the same bits (a truncating or double-rounding store fails that); per-row losses
// (double) within 2^-17 relative. Exactly computable cases must be bit-exact: the identity round
// trip of all 65536 bit patterns (load and store of every value: subnormals, infinities, NaN) and
// y * dy products (exact in float32 and double alike, then rounded to nearest even, ties included).
// Rows: random, long (one-exp and two-pass paths, tails), and adversarial (huge magnitudes, -inf
// masks, ties, NaN, +inf). Internal: reaches src/cpu through cpu/kernels.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/tuning.h"
#include "simd_check.h"
#include "xent/xent.h"

namespace xent {
namespace {

using cpu::BF16;
using cpu::Block;
using cpu::F16;
using simd_check::simd_isas;
using simd_check::UnderIsa;

template <class H> constexpr bool kBrain = std::is_same_v<H, BF16>;
template <class H> const char* hname() { return kBrain<H> ? "bfloat16" : "float16"; }
template <class H> const cpu::KernelTable<H>& simd() {
  if constexpr (kBrain<H>) return cpu::active_table_bf16();
  else return cpu::active_table_f16();
}
template <class H> const cpu::KernelTable<H>& scalar() {
  if constexpr (kBrain<H>) return cpu::scalar_table_bf16();
  else return cpu::scalar_table_f16();
}

// Spacing of H at |v| (the subnormal spacing below the normal range).
template <class H> double ulp_h(double v) {
  const int digits = kBrain<H> ? 8 : 11, min_exp = kBrain<H> ? -126 : -14;
  int e = min_exp + 1;
  if (v != 0 && std::isfinite(v)) {
    std::frexp(v, &e);
    e = std::max(e, min_exp + 1);
  }
  return std::ldexp(1.0, e - digits);
}

template <class H> double f(H h) { return static_cast<double>(static_cast<float>(h)); }

// The bound of the file comment; scale[i] is the size of the terms output i was computed from.
template <class H>
::testing::AssertionResult close16(const std::vector<H>& a, const std::vector<H>& s, const std::vector<double>& scale,
                                   bool exact = false, double min_same = 0.95) {
  std::size_t bad = 0, same = 0;
  std::string first;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = f(a[i]), y = f(s[i]);
    bool ok;
    if (std::isnan(x) || std::isnan(y)) ok = std::isnan(x) && std::isnan(y);
    else if (exact) ok = a[i].bits == s[i].bits;
    else if (std::isinf(y)) ok = x == y || std::fabs(x) == std::numeric_limits<double>::max();
    else ok = std::fabs(x - y) <= ulp_h<H>(y) + 0x1p-20 * scale[i] || (std::isinf(x) && std::fabs(y) + ulp_h<H>(y) > 0x1p127);
    same += a[i].bits == s[i].bits || (std::isnan(x) && std::isnan(y));
    if (!ok && bad++ < 3) first += " [" + std::to_string(i) + "] simd " + simd_check::fmt(x) + " scalar " + simd_check::fmt(y) + ";";
  }
  if (bad != 0) return ::testing::AssertionFailure() << bad << " of " << a.size() << " beyond the bound:" << first;
  if (a.size() >= 64 && static_cast<double>(same) < min_same * static_cast<double>(a.size()))
    return ::testing::AssertionFailure() << "only " << same << " of " << a.size() << " have the scalar twin's bits";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult close_loss(const std::vector<double>& a, const std::vector<double>& s, double scale) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(s[i])) {
      if (std::isnan(a[i]) != std::isnan(s[i])) return ::testing::AssertionFailure() << "row " << i << " NaN mismatch";
      continue;
    }
    if (std::isinf(s[i]) ? a[i] != s[i] : std::fabs(a[i] - s[i]) > 0x1p-17 * (std::fabs(s[i]) + scale))
      return ::testing::AssertionFailure() << "row " << i << " loss simd " << simd_check::fmt(a[i]) << " scalar "
                                           << simd_check::fmt(s[i]);
  }
  return ::testing::AssertionSuccess();
}

template <class H>
std::vector<H> to_h(const std::vector<double>& v) {
  std::vector<H> h(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) h[i] = H(v[i]);
  return h;
}

// N rows of C logits: random in [-8, 8]; with adversarial, rows 0..4 are huge tied maxima, a -inf
// mask, all equal, a NaN and a +inf (when N >= 5). `big` defaults to near the type's max; the
// losses use 3e4: the scalar twin's gradient exp(x - lse) takes lse in double, which loses log S
// in m once |m| passes 2^40 or so (test_half.cc), and is then no reference.
template <class H>
std::vector<double> logits(std::size_t N, std::size_t C, std::mt19937_64& rng, bool adversarial, double big = 0) {
  std::uniform_real_distribution<double> u(-8, 8);
  std::vector<double> x(N * C);
  for (auto& v : x) v = u(rng);
  if (adversarial && N >= 5) {
    if (big == 0) big = kBrain<H> ? 3.0e38 : 6.0e4;
    for (std::size_t c = 0; c < C; ++c) {
      x[c] = c % 3 == 0 ? big : -big;
      x[C + c] = c % 2 ? -INFINITY : u(rng);
      x[2 * C + c] = 1.5;
    }
    x[3 * C + C / 2] = NAN;
    x[4 * C + C / 3] = INFINITY;
  }
  return x;
}

// Both sides of every threshold: short rows (across-rows tiles up to kSmallC; in registers up to
// 16 on AVX2 and AVX-512), the one-exp rows (kHalfOneExpMax) and longer ones. kHalfOneExpMax - 7:
// one-exp rows with streamed stores that start at every 16-bit offset within a vector.
const std::size_t kLengths[] = {1,    3,    8,    9,    10, 16, 17, cpu::tuning::kSmallC, 33, 100, 1000,
                                4099, cpu::tuning::kHalfOneExpMax - 7, cpu::tuning::kHalfOneExpMax,
                                cpu::tuning::kHalfOneExpMax + 5};

template <class H>
void softmax_family(std::size_t N, std::size_t C, std::uint64_t seed) {
  SCOPED_TRACE(std::string(hname<H>()) + " softmax family " + std::to_string(N) + "x" + std::to_string(C));
  std::mt19937_64 rng(seed);
  const std::vector<H> x = to_h<H>(logits<H>(N, C, rng, true));
  const Block b{N, C, 1, 1};
  const auto &t = simd<H>(), &s = scalar<H>();
  std::vector<H> ya(x.size()), ys(x.size());
  t.softmax_fwd(x.data(), ya.data(), b);
  s.softmax_fwd(x.data(), ys.data(), b);
  EXPECT_TRUE(close16(ya, ys, std::vector<double>(x.size(), 1.0))) << "softmax";
  std::vector<H> la(x.size()), ls(x.size());
  t.log_softmax_fwd(x.data(), la.data(), b);
  s.log_softmax_fwd(x.data(), ls.data(), b);
  std::vector<double> sc(x.size());
  for (std::size_t r = 0; r < N; ++r) {
    const double absmax = simd_check::row_absmax(&x[r * C], C);
    for (std::size_t c = 0; c < C; ++c) sc[r * C + c] = std::fabs(f(x[r * C + c])) + absmax + 16;
  }
  EXPECT_TRUE(close16(la, ls, sc)) << "log_softmax";
  std::vector<H> lsea(N), lses(N);
  t.logsumexp_fwd(x.data(), lsea.data(), b);
  s.logsumexp_fwd(x.data(), lses.data(), b);
  std::vector<double> lsc(N);
  for (std::size_t r = 0; r < N; ++r) lsc[r] = simd_check::row_absmax(&x[r * C], C) + 16;
  EXPECT_TRUE(close16(lsea, lses, lsc)) << "logsumexp";
  // Backward from the scalar forward's outputs.
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> dyd(x.size());
  for (auto& v : dyd) v = u(rng);
  const std::vector<H> dy = to_h<H>(dyd);
  std::vector<H> da(x.size()), ds(x.size());
  t.softmax_bwd(ys.data(), dy.data(), da.data(), b);
  s.softmax_bwd(ys.data(), dy.data(), ds.data(), b);
  EXPECT_TRUE(close16(da, ds, std::vector<double>(x.size(), 4.0))) << "softmax backward";
  t.log_softmax_bwd(ls.data(), dy.data(), da.data(), b);
  s.log_softmax_bwd(ls.data(), dy.data(), ds.data(), b);
  EXPECT_TRUE(close16(da, ds, std::vector<double>(x.size(), 4.0 * static_cast<double>(C)))) << "log_softmax backward";
  const std::vector<H> dl = to_h<H>(std::vector<double>(N, 0.75));
  t.logsumexp_bwd(x.data(), lses.data(), dl.data(), da.data(), b);
  s.logsumexp_bwd(x.data(), lses.data(), dl.data(), ds.data(), b);
  EXPECT_TRUE(close16(da, ds, std::vector<double>(x.size(), 1.0))) << "logsumexp backward";
}

template <class H>
void cross_entropy(std::size_t N, std::size_t C, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> xd = logits<H>(N, C, rng, true, 3.0e4);
  const std::vector<H> x = to_h<H>(xd);
  std::vector<std::int64_t> t64(N);
  std::vector<std::int32_t> t32(N);
  for (std::size_t r = 0; r < N; ++r) t32[r] = static_cast<std::int32_t>(t64[r] = r % 7 == 6 ? -100 : static_cast<std::int64_t>((r * 31 + 5) % C));
  std::uniform_real_distribution<double> uw(0.5, 2), up(0, 1);
  std::vector<double> wd(C), dld(N), pd(N * C);
  for (auto& v : wd) v = uw(rng);
  for (auto& v : dld) v = uw(rng);
  for (std::size_t r = 0; r < N; ++r) {
    double sum = 0;
    for (std::size_t c = 0; c < C; ++c) sum += pd[r * C + c] = up(rng);
    for (std::size_t c = 0; c < C; ++c) pd[r * C + c] /= sum;
  }
  const std::vector<H> w = to_h<H>(wd), dl = to_h<H>(dld), p = to_h<H>(pd);
  double wsum = 0;
  for (const H& v : w) wsum += f(v);
  const Block b{N, C, 1, 1};
  const auto &ta = simd<H>(), &ts = scalar<H>();
  const double lscale = 16;
  for (int opt = 0; opt < 8; ++opt) {
    const bool weighted = opt & 1, smooth = opt & 2, per_row = opt & 4;
    SCOPED_TRACE(std::string(hname<H>()) + " cross-entropy " + std::to_string(N) + "x" + std::to_string(C) +
                 (weighted ? " weighted" : "") + (smooth ? " smoothing" : "") + (per_row ? " per-row dloss" : ""));
    cpu::CeIndexArgs<H, std::int64_t> a;
    a.x = x.data();
    a.target = t64.data();
    a.weight = weighted ? w.data() : nullptr;
    a.weight_sum = weighted ? wsum : static_cast<double>(C);
    a.smoothing = smooth ? 0.1 : 0.0;
    a.dloss = per_row ? dl.data() : nullptr;
    a.dloss_scale = per_row ? 0.5 : 0.25;
    std::vector<double> la(N), ls(N);
    std::vector<H> ga(x.size()), gs(x.size());
    // Fused.
    auto A = a, S = a;
    A.row_loss = la.data(), A.dx = ga.data();
    S.row_loss = ls.data(), S.dx = gs.data();
    ta.ce_index_i64(A, b);
    ts.ce_index_i64(S, b);
    EXPECT_TRUE(close_loss(la, ls, lscale)) << "fused loss";
    EXPECT_TRUE(close16(ga, gs, std::vector<double>(x.size(), 4.0))) << "fused gradient";
    // Forward only, and backward only (int32 targets).
    std::fill(la.begin(), la.end(), 0.0);
    A.dx = nullptr;
    ta.ce_index_i64(A, b);
    EXPECT_TRUE(close_loss(la, ls, lscale)) << "forward-only loss";
    cpu::CeIndexArgs<H, std::int32_t> a32;
    a32.x = a.x;
    a32.target = t32.data();
    a32.weight = a.weight;
    a32.weight_sum = a.weight_sum;
    a32.smoothing = a.smoothing;
    a32.dloss = a.dloss;
    a32.dloss_scale = a.dloss_scale;
    a32.row_loss = nullptr;
    a32.dx = ga.data();
    ta.ce_index_i32(a32, b);
    EXPECT_TRUE(close16(ga, gs, std::vector<double>(x.size(), 4.0))) << "backward-only gradient (int32 targets)";
    // Probability targets.
    cpu::CeProbArgs<H> pa;
    pa.x = x.data();
    pa.target = p.data();
    pa.weight = a.weight;
    pa.smoothing = a.smoothing;
    pa.dloss = a.dloss;
    pa.dloss_scale = a.dloss_scale;
    auto PA = pa, PS = pa;
    PA.row_loss = la.data(), PA.dx = ga.data();
    PS.row_loss = ls.data(), PS.dx = gs.data();
    ta.ce_prob(PA, b);
    ts.ce_prob(PS, b);
    EXPECT_TRUE(close_loss(la, ls, lscale)) << "probability-target loss";
    EXPECT_TRUE(close16(ga, gs, std::vector<double>(x.size(), 4.0))) << "probability-target gradient";
    if (smooth) continue;
    // NLL on the logits read as log-probabilities.
    A = a, S = a;
    A.row_loss = la.data(), A.dx = ga.data();
    S.row_loss = ls.data(), S.dx = gs.data();
    ta.nll_i64(A, b);
    ts.nll_i64(S, b);
    EXPECT_TRUE(close_loss(la, ls, 0)) << "nll loss";
    EXPECT_TRUE(close16(ga, gs, std::vector<double>(x.size(), 0.0), true)) << "nll gradient";
  }
}

// The forward-only statistics (ce_stats): lse and entropy (double) within 2^-17 of the scalar
// twin's (relative to |lse| + 16, the size of the terms), the argmax the same index. Rows: random,
// adversarial (huge tied maxima: the first wins; a -inf mask; all equal; a NaN: its index, as
// torch.argmax; +inf), a late tie with an earlier maximum in another vector lane, and a NaN in the
// tail after the last full vector.
template <class H>
void token_stats(std::size_t N, std::size_t C, std::uint64_t seed) {
  SCOPED_TRACE(std::string(hname<H>()) + " ce_stats " + std::to_string(N) + "x" + std::to_string(C));
  std::mt19937_64 rng(seed);
  std::vector<double> xd = logits<H>(N, C, rng, true, kBrain<H> ? 1.0e30 : 3.0e4);
  if (N >= 7 && C >= 3) {
    for (std::size_t c = 0; c < C; ++c) xd[5 * C + c] = -1.0 - static_cast<double>(c % 5);
    xd[5 * C + 1] = xd[5 * C + C - 1] = 4.0;  // tie: index 1 wins over the last
    xd[6 * C + C - 1] = NAN;                  // NaN in the tail (after a random row)
  }
  const std::vector<H> x = to_h<H>(xd);
  std::vector<double> la(N, -1), ls(N, -2), ea(N, -1), es(N, -2);
  std::vector<std::int64_t> aa(N, -7), as(N, -8);
  const Block b{N, C, 1, 1};
  simd<H>().ce_stats(x.data(), b, la.data(), ea.data(), aa.data());
  scalar<H>().ce_stats(x.data(), b, ls.data(), es.data(), as.data());
  EXPECT_EQ(aa, as) << "argmax";
  std::vector<double> sc(N);
  for (std::size_t r = 0; r < N; ++r) sc[r] = simd_check::row_absmax(&xd[r * C], C) + 16;
  for (std::size_t r = 0; r < N; ++r) {
    for (int k = 0; k < 2; ++k) {
      const double a = k == 0 ? la[r] : ea[r], s = k == 0 ? ls[r] : es[r];
      const bool ok = std::isnan(a) || std::isnan(s) ? std::isnan(a) && std::isnan(s)
                      : std::isinf(s)               ? a == s
                                                    : std::fabs(a - s) <= 0x1p-17 * sc[r];
      EXPECT_TRUE(ok) << "row " << r << (k == 0 ? " lse " : " entropy ") << simd_check::fmt(a) << " scalar "
                      << simd_check::fmt(s);
    }
  }
}

// Short rows (across-rows tiles) in place: the output over its input gives the bits of the
// out-of-place call, rows the scalar twin redoes (NaN, +inf, -inf masks) included, for softmax,
// log_softmax, their backward (dx over dy) and the fused cross-entropy (dx over x), with and
// without label smoothing.
template <class H>
void in_place_short(std::size_t N, std::size_t C, std::uint64_t seed) {
  SCOPED_TRACE(std::string(hname<H>()) + " in place " + std::to_string(N) + "x" + std::to_string(C));
  std::mt19937_64 rng(seed);
  const std::vector<H> x = to_h<H>(logits<H>(N, C, rng, true, 3.0e4));
  const Block b{N, C, 1, 1};
  const auto& t = simd<H>();
  auto bits = [](const std::vector<H>& v) {
    std::vector<std::uint16_t> o(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) o[i] = v[i].bits;
    return o;
  };
  for (auto fn : {t.softmax_fwd, t.log_softmax_fwd}) {
    std::vector<H> y(x.size()), z = x;
    fn(x.data(), y.data(), b);
    fn(z.data(), z.data(), b);
    EXPECT_EQ(bits(z), bits(y)) << "forward in place";
    std::vector<H> dy = to_h<H>(std::vector<double>(x.size(), 0.25)), d(x.size());
    for (std::size_t i = 0; i < dy.size(); i += 3) dy[i] = H(-0.5);
    auto bwd = fn == t.softmax_fwd ? t.softmax_bwd : t.log_softmax_bwd;
    bwd(y.data(), dy.data(), d.data(), b);
    bwd(y.data(), dy.data(), dy.data(), b);
    EXPECT_EQ(bits(dy), bits(d)) << "backward in place";
  }
  std::vector<std::int64_t> tg(N);
  for (std::size_t r = 0; r < N; ++r) tg[r] = r % 5 == 4 ? -100 : static_cast<std::int64_t>((r * 7) % C);
  for (double eps : {0.0, 0.1}) {
    cpu::CeIndexArgs<H, std::int64_t> a;
    a.target = tg.data();
    a.weight_sum = static_cast<double>(C);
    a.smoothing = eps;
    std::vector<double> l1(N), l2(N);
    std::vector<H> d(x.size()), z = x;
    a.x = x.data(), a.dx = d.data(), a.row_loss = l1.data();
    t.ce_index_i64(a, b);
    a.x = z.data(), a.dx = z.data(), a.row_loss = l2.data();
    t.ce_index_i64(a, b);
    EXPECT_EQ(bits(z), bits(d)) << "cross-entropy gradient in place, smoothing " << eps;
    for (std::size_t r = 0; r < N; ++r)
      EXPECT_TRUE(l1[r] == l2[r] || (std::isnan(l1[r]) && std::isnan(l2[r]))) << "row " << r;
  }
}

// Soft-capping in place: every output within one 16-bit ulp of the scalar twin's (tanh in double,
// rounded once), most of them the same bits; values across the cap's range, zero, tiny, huge, the
// type's largest, +-inf (+-s) and NaN, at lengths with vector tails.
template <class H>
void softcap(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-80, 80);
  for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{67}, std::size_t{1000}}) {
    for (double s : {1.0, 15.0, 30.0}) {
      SCOPED_TRACE(std::string(hname<H>()) + " softcap n=" + std::to_string(n) + " s=" + std::to_string(s));
      std::vector<double> zd(n);
      for (auto& v : zd) v = u(rng);
      const double specials[] = {0.0, 1e-3, -2.5e-5, 1e4, -6e4, INFINITY, -INFINITY, NAN};
      for (std::size_t k = 0; k < n && k < 8; ++k) zd[(k * 5 + 2) % n] = specials[k];
      std::vector<H> a = to_h<H>(zd), b = a;
      simd<H>().softcap(a.data(), n, H(s));
      scalar<H>().softcap(b.data(), n, H(s));
      EXPECT_TRUE(close16(a, b, std::vector<double>(n, 0.0)));
    }
  }
}

// Strided blocks (class dimension not last, kernels.h Block with stride != 1): the softmax family
// forward and backward (logsumexp's too), cross-entropy with class indices (every option) and with
// probability targets (weights, smoothing, per-row upstream gradients; also written over the
// targets), NLL (bit-exact) and the token statistics against the scalar twin, on whole blocks and
// on a block of the middle n_inner - 2 positions (as a thread's share); rows (o, i) hold random
// logits and, at i = 0..4 of o = 0, huge tied maxima, a -inf mask, a NaN, a +inf and small ties. Groups are full vectors, partial ones and single rows.
template <class H>
void strided(std::size_t n_outer, std::size_t C, std::size_t inner, std::uint64_t seed) {
  SCOPED_TRACE(std::string(hname<H>()) + " strided " + std::to_string(n_outer) + "x" + std::to_string(C) + "x" +
               std::to_string(inner));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-8, 8);
  const std::size_t n = n_outer * C * inner;
  std::vector<double> xd(n);
  for (auto& v : xd) v = u(rng);
  auto at = [&](std::size_t o, std::size_t c, std::size_t i) -> double& { return xd[o * C * inner + c * inner + i]; };
  if (inner >= 4) {
    for (std::size_t c = 0; c < C; ++c) {
      at(0, c, 0) = c % 3 == 0 ? 3.0e4 : -3.0e4;
      if (c % 2) at(0, c, 1) = -INFINITY;
    }
    at(0, C / 2, 2) = NAN;
    at(0, C / 3, 3) = INFINITY;
  }
  if (inner >= 5)
    for (std::size_t c = 0; c < C; ++c) at(0, c, 4) = c % 3 == 1 ? 7.0 : 1.0;  // ties at the maximum
  const std::vector<H> x = to_h<H>(xd);
  const auto &t = simd<H>(), &sc = scalar<H>();
  for (int part = 0; part < 2; ++part) {
    if (part == 1 && inner < 3) continue;
    const std::size_t i0 = part, ni = part ? inner - 2 : inner;
    SCOPED_TRACE(part ? "middle positions" : "whole block");
    const Block b{n_outer, C, ni, inner};
    std::vector<H> ya(n), ys(n), la(n), ls(n);
    t.softmax_fwd(x.data() + i0, ya.data() + i0, b);
    sc.softmax_fwd(x.data() + i0, ys.data() + i0, b);
    EXPECT_TRUE(close16(ya, ys, std::vector<double>(n, 1.0))) << "softmax";
    t.log_softmax_fwd(x.data() + i0, la.data() + i0, b);
    sc.log_softmax_fwd(x.data() + i0, ls.data() + i0, b);
    EXPECT_TRUE(close16(la, ls, std::vector<double>(n, 3.0e4 + 16))) << "log_softmax";
    std::vector<H> lsea(n_outer * inner), lses(n_outer * inner);
    t.logsumexp_fwd(x.data() + i0, lsea.data() + i0, b);
    sc.logsumexp_fwd(x.data() + i0, lses.data() + i0, b);
    EXPECT_TRUE(close16(lsea, lses, std::vector<double>(lsea.size(), 3.0e4 + 16))) << "logsumexp";
    std::vector<double> dyd(n);
    for (auto& v : dyd) v = u(rng) / 8;
    const std::vector<H> dy = to_h<H>(dyd);
    std::vector<H> da(n), ds(n);
    t.softmax_bwd(ys.data() + i0, dy.data() + i0, da.data() + i0, b);
    sc.softmax_bwd(ys.data() + i0, dy.data() + i0, ds.data() + i0, b);
    EXPECT_TRUE(close16(da, ds, std::vector<double>(n, 4.0))) << "softmax backward";
    t.log_softmax_bwd(ls.data() + i0, dy.data() + i0, da.data() + i0, b);
    sc.log_softmax_bwd(ls.data() + i0, dy.data() + i0, ds.data() + i0, b);
    EXPECT_TRUE(close16(da, ds, std::vector<double>(n, 4.0 * static_cast<double>(C)))) << "log_softmax backward";
    // Cross-entropy: targets and upstream gradients at o * inner + i, losses dense.
    std::vector<std::int64_t> tg(n_outer * inner);
    std::vector<std::int32_t> tg32(tg.size());
    for (std::size_t r = 0; r < tg.size(); ++r)
      tg32[r] = static_cast<std::int32_t>(tg[r] = r % 7 == 5 ? -100 : static_cast<std::int64_t>((r * 31 + 3) % C));
    std::uniform_real_distribution<double> uw(0.5, 2);
    std::vector<double> wd(C), dld(tg.size());
    for (auto& v : wd) v = uw(rng);
    for (auto& v : dld) v = uw(rng);
    const std::vector<H> w = to_h<H>(wd), dl = to_h<H>(dld);
    double wsum = 0;
    for (const H& v : w) wsum += f(v);
    for (int opt = 0; opt < 8; ++opt) {
      const bool weighted = opt & 1, smooth = opt & 2, per_row = opt & 4;
      SCOPED_TRACE(std::string("cross-entropy") + (weighted ? " weighted" : "") + (smooth ? " smoothing" : "") +
                   (per_row ? " per-row dloss" : ""));
      cpu::CeIndexArgs<H, std::int64_t> a;
      a.x = x.data() + i0;
      a.target = tg.data() + i0;
      a.weight = weighted ? w.data() : nullptr;
      a.weight_sum = weighted ? wsum : static_cast<double>(C);
      a.smoothing = smooth ? 0.1 : 0.0;
      a.dloss = per_row ? dl.data() + i0 : nullptr;
      a.dloss_scale = per_row ? 0.5 : 0.25;
      std::vector<double> lossa(n_outer * ni), losss(n_outer * ni);
      std::vector<H> ga(n), gs(n);
      auto A = a, S = a;
      A.row_loss = lossa.data(), A.dx = ga.data() + i0;
      S.row_loss = losss.data(), S.dx = gs.data() + i0;
      t.ce_index_i64(A, b);
      sc.ce_index_i64(S, b);
      EXPECT_TRUE(close_loss(lossa, losss, 16)) << "fused loss";
      EXPECT_TRUE(close16(ga, gs, std::vector<double>(n, 4.0))) << "fused gradient";
      cpu::CeIndexArgs<H, std::int32_t> a32;
      a32.x = a.x;
      a32.target = tg32.data() + i0;
      a32.weight = a.weight;
      a32.weight_sum = a.weight_sum;
      a32.smoothing = a.smoothing;
      a32.dloss = a.dloss;
      a32.dloss_scale = a.dloss_scale;
      a32.row_loss = lossa.data();
      std::fill(lossa.begin(), lossa.end(), -1.0);
      t.ce_index_i32(a32, b);
      EXPECT_TRUE(close_loss(lossa, losss, 16)) << "forward-only loss (int32 targets)";
    }
    // logsumexp backward on the scalar twin's lse (its -inf and NaN rows included).
    {
      std::vector<H> ea(n), es(n);
      t.logsumexp_bwd(x.data() + i0, lses.data() + i0, dl.data() + i0, ea.data() + i0, b);
      sc.logsumexp_bwd(x.data() + i0, lses.data() + i0, dl.data() + i0, es.data() + i0, b);
      EXPECT_TRUE(close16(ea, es, std::vector<double>(n, 4.0))) << "logsumexp backward";
    }
    // Probability targets: random in [0, 2 / C); where row (0, 1) is -inf, a zero target at odd
    // c = 1 mod 4 (NaN loss) and a positive one elsewhere (+inf loss).
    std::vector<double> tpd(n);
    for (auto& v : tpd) v = (u(rng) + 8) / (8 * static_cast<double>(C));
    if (inner >= 4)
      for (std::size_t c = 1; c < C; c += 4) tpd[c * inner + 1] = 0;
    const std::vector<H> tp = to_h<H>(tpd);
    for (int opt = 0; opt < 8; ++opt) {
      const bool weighted = opt & 1, smooth = opt & 2, per_row = opt & 4;
      SCOPED_TRACE(std::string("probability targets") + (weighted ? " weighted" : "") + (smooth ? " smoothing" : "") +
                   (per_row ? " per-row dloss" : ""));
      cpu::CeProbArgs<H> a;
      a.x = x.data() + i0;
      a.target = tp.data() + i0;
      a.weight = weighted ? w.data() : nullptr;
      a.smoothing = smooth ? 0.1 : 0.0;
      a.dloss = per_row ? dl.data() + i0 : nullptr;
      a.dloss_scale = per_row ? 0.5 : 0.25;
      std::vector<double> lossa(n_outer * ni), losss(n_outer * ni);
      std::vector<H> ga(n), gs(n);
      auto A = a, S = a;
      A.row_loss = lossa.data(), A.dx = ga.data() + i0;
      S.row_loss = losss.data(), S.dx = gs.data() + i0;
      t.ce_prob(A, b);
      sc.ce_prob(S, b);
      EXPECT_TRUE(close_loss(lossa, losss, 16)) << "fused loss";
      // With C = 1 the gradient g (p Q - c) cancels exactly (p = 1): the scalar twin's is 0, the
      // float32 formula's (the contiguous kernels' too) a residue of the rounding of g Q / S and g,
      // within the bound but not the same bits.
      EXPECT_TRUE(close16(ga, gs, std::vector<double>(n, 4.0), false, C == 1 ? 0.0 : 0.95)) << "fused gradient";
      std::vector<H> over = tp;  // the gradient written over the targets: the same bits
      A.target = over.data() + i0, A.dx = over.data() + i0, A.row_loss = nullptr;
      t.ce_prob(A, b);
      for (std::size_t j = 0; j < n; ++j)  // positions outside the block keep their targets
        if (j % inner < i0 || j % inner >= i0 + ni) over[j] = ga[j];
      EXPECT_TRUE(close16(over, ga, std::vector<double>(n, 0.0), true)) << "gradient over the targets";
      std::fill(lossa.begin(), lossa.end(), -1.0);
      A = a;
      A.row_loss = lossa.data();
      t.ce_prob(A, b);
      EXPECT_TRUE(close_loss(lossa, losss, 16)) << "forward-only loss";
    }
    // NLL (the scalar twin's formulas: the same bits), int64 and int32 targets.
    for (int weighted = 0; weighted < 2; ++weighted) {
      cpu::CeIndexArgs<H, std::int64_t> a;
      a.x = x.data() + i0;
      a.target = tg.data() + i0;
      a.weight = weighted ? w.data() : nullptr;
      a.dloss = weighted ? dl.data() + i0 : nullptr;
      a.dloss_scale = 0.5;
      std::vector<double> lossa(n_outer * ni, -1), losss(n_outer * ni, -2);
      std::vector<H> ga(n, H(-7.0)), gs(n, H(-7.0));
      auto A = a, S = a;
      A.row_loss = lossa.data(), A.dx = ga.data() + i0;
      S.row_loss = losss.data(), S.dx = gs.data() + i0;
      t.nll_i64(A, b);
      sc.nll_i64(S, b);
      EXPECT_EQ(0, std::memcmp(lossa.data(), losss.data(), lossa.size() * sizeof(double))) << "nll loss";
      EXPECT_TRUE(close16(ga, gs, std::vector<double>(n, 0.0), true)) << "nll gradient";
      cpu::CeIndexArgs<H, std::int32_t> a32;
      a32.x = a.x;
      a32.target = tg32.data() + i0;
      a32.weight = a.weight;
      a32.dloss = a.dloss;
      a32.dloss_scale = a.dloss_scale;
      a32.dx = ga.data() + i0;
      std::fill(ga.begin(), ga.end(), H(-7.0));
      t.nll_i32(a32, b);
      EXPECT_TRUE(close16(ga, gs, std::vector<double>(n, 0.0), true)) << "nll gradient (int32 targets)";
    }
    // Token statistics: argmax the same index (ties: the first; NaN: its index), lse and entropy
    // within 2^-17 of the scalar twin's.
    {
      const std::size_t nr = n_outer * ni;
      std::vector<double> lsa(nr, -1), lss(nr, -2), ena(nr, -1), ens(nr, -2);
      std::vector<std::int64_t> ama(nr, -7), ams(nr, -8);
      t.ce_stats(x.data() + i0, b, lsa.data(), ena.data(), ama.data());
      sc.ce_stats(x.data() + i0, b, lss.data(), ens.data(), ams.data());
      EXPECT_EQ(ama, ams) << "token stats argmax";
      for (std::size_t r = 0; r < nr; ++r)
        for (int k = 0; k < 2; ++k) {
          const double va = k == 0 ? lsa[r] : ena[r], vs = k == 0 ? lss[r] : ens[r];
          const bool ok = std::isnan(va) || std::isnan(vs) ? std::isnan(va) && std::isnan(vs)
                          : std::isinf(vs)                 ? va == vs
                                                           : std::fabs(va - vs) <= 0x1p-17 * (3.0e4 + 16);
          EXPECT_TRUE(ok) << "token stats row " << r << (k == 0 ? " lse " : " entropy ") << simd_check::fmt(va)
                          << " scalar " << simd_check::fmt(vs);
        }
    }
  }
}

// The split-row passes on one run each.
template <class H>
void chunks(std::size_t n, std::uint64_t seed) {
  SCOPED_TRACE(std::string(hname<H>()) + " chunk passes n=" + std::to_string(n));
  std::mt19937_64 rng(seed);
  const std::vector<H> x = to_h<H>(logits<H>(1, n, rng, false));
  const auto &ta = simd<H>(), &ts = scalar<H>();
  double ma, sa, ms, ss;
  ta.chunk_stats(x.data(), n, &ma, &sa);
  ts.chunk_stats(x.data(), n, &ms, &ss);
  EXPECT_EQ(ma, ms);
  EXPECT_NEAR(sa, ss, 0x1p-20 * ss);
  std::vector<H> ya(n), ys(n);
  const double m = ms + 0.5, scale = 1 / (ss + 3);
  ta.chunk_exp_scale(x.data(), ya.data(), n, m, scale);
  ts.chunk_exp_scale(x.data(), ys.data(), n, m, scale);
  EXPECT_TRUE(close16(ya, ys, std::vector<double>(n, 1.0))) << "chunk_exp_scale";
  ta.chunk_shift(x.data(), ya.data(), n, m, 1.25);
  ts.chunk_shift(x.data(), ys.data(), n, m, 1.25);
  EXPECT_TRUE(close16(ya, ys, std::vector<double>(n, 32.0))) << "chunk_shift";
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> dyd(n);
  for (auto& v : dyd) v = u(rng);
  const std::vector<H> dy = to_h<H>(dyd);
  EXPECT_NEAR(ta.chunk_dot(ys.data(), dy.data(), n), ts.chunk_dot(ys.data(), dy.data(), n), 1e-12 * static_cast<double>(n));
  EXPECT_NEAR(ta.chunk_dot(dy.data(), nullptr, n), ts.chunk_dot(dy.data(), nullptr, n), 1e-12 * static_cast<double>(n));
  std::vector<H> da(n), ds(n);
  ta.chunk_softmax_bwd(ys.data(), dy.data(), da.data(), n, 0.3);
  ts.chunk_softmax_bwd(ys.data(), dy.data(), ds.data(), n, 0.3);
  EXPECT_TRUE(close16(da, ds, std::vector<double>(n, 4.0))) << "chunk_softmax_bwd";
  const std::vector<H> lp = to_h<H>(std::vector<double>(n, -3.0));
  ta.chunk_log_softmax_bwd(lp.data(), dy.data(), da.data(), n, 2.5);
  ts.chunk_log_softmax_bwd(lp.data(), dy.data(), ds.data(), n, 2.5);
  EXPECT_TRUE(close16(da, ds, std::vector<double>(n, 4.0))) << "chunk_log_softmax_bwd";
  std::vector<double> wd(n);
  for (auto& v : wd) v = 0.5 + std::fabs(u(rng));
  const std::vector<H> w = to_h<H>(wd);
  const cpu::Coefs<H> k{w.data(), dy.data(), 0.9, 0.1 / static_cast<double>(n)};
  cpu::ChunkSums csa, css;
  ta.chunk_sums(x.data(), k, n, &csa);
  ts.chunk_sums(x.data(), k, n, &css);
  EXPECT_EQ(csa.m, css.m);
  EXPECT_NEAR(csa.s, css.s, 0x1p-20 * css.s);
  EXPECT_NEAR(csa.a, css.a, 0x1p-20 * (std::fabs(css.a) + static_cast<double>(n)));
  EXPECT_NEAR(csa.q, css.q, 0x1p-20 * (std::fabs(css.q) + static_cast<double>(n)));
  ta.chunk_ce_grad(x.data(), k, da.data(), n, m, scale, 0.5);
  ts.chunk_ce_grad(x.data(), k, ds.data(), n, m, scale, 0.5);
  EXPECT_TRUE(close16(da, ds, std::vector<double>(n, 4.0))) << "chunk_ce_grad";
}

class HalfTables : public UnderIsa {};

TEST_P(HalfTables, EntriesAreVectorised) {
  if (GetParam() == "scalar") GTEST_SKIP() << "no SIMD kernel set on this CPU";
  EXPECT_NE(simd<BF16>().ce_index_i64, scalar<BF16>().ce_index_i64);
  EXPECT_NE(simd<F16>().softmax_fwd, scalar<F16>().softmax_fwd);
  EXPECT_NE(simd<BF16>().chunk_log_softmax_bwd, scalar<BF16>().chunk_log_softmax_bwd);
  EXPECT_EQ(std::string(simd<F16>().name), GetParam());
  EXPECT_NE(simd<F16>().widen_f32, scalar<F16>().widen_f32);
  EXPECT_NE(simd<BF16>().narrow_f32, scalar<BF16>().narrow_f32);
  EXPECT_NE(simd<BF16>().ce_stats, scalar<BF16>().ce_stats);
  EXPECT_NE(simd<F16>().ce_stats, scalar<F16>().ce_stats);
  EXPECT_NE(simd<BF16>().softcap, scalar<BF16>().softcap);
  EXPECT_NE(simd<F16>().softcap, scalar<F16>().softcap);
  // Strided blocks of these (and ce_stats's short rows) now run kernels_strided-inl.h /
  // kernels_small-inl.h: the entries are the SIMD units', not the scalar twin's.
  EXPECT_NE(simd<BF16>().logsumexp_bwd, scalar<BF16>().logsumexp_bwd);
  EXPECT_NE(simd<F16>().ce_prob, scalar<F16>().ce_prob);
  EXPECT_NE(simd<BF16>().nll_i64, scalar<BF16>().nll_i64);
  EXPECT_NE(simd<F16>().nll_i32, scalar<F16>().nll_i32);
}

TEST_P(HalfTables, SoftmaxFamilyMatchesScalar) {
  std::uint64_t seed = 1;
  for (std::size_t C : kLengths) {
    const std::size_t N = C >= 1000 ? 6 : 37;
    softmax_family<BF16>(N, C, seed++);
    softmax_family<F16>(N, C, seed++);
  }
}

TEST_P(HalfTables, CrossEntropyMatchesScalar) {
  std::uint64_t seed = 100;
  for (std::size_t C : kLengths) {
    const std::size_t N = C >= 1000 ? 6 : 37;
    cross_entropy<BF16>(N, C, seed++);
    cross_entropy<F16>(N, C, seed++);
  }
}

TEST_P(HalfTables, TokenStatsMatchScalar) {
  std::uint64_t seed = 300;
  for (std::size_t C : kLengths) {
    const std::size_t N = C >= 1000 ? 8 : 37;
    token_stats<BF16>(N, C, seed++);
    token_stats<F16>(N, C, seed++);
  }
}

TEST_P(HalfTables, ShortRowsInPlace) {
  for (std::size_t C : {2, 10, 16, 17, 32}) {
    in_place_short<BF16>(37, C, 400 + C);
    in_place_short<F16>(37, C, 500 + C);
  }
}

TEST_P(HalfTables, SoftcapMatchesScalar) {
  softcap<BF16>(11);
  softcap<F16>(12);
}

TEST_P(HalfTables, StridedBlocksMatchScalar) {
  std::uint64_t seed = 600;
  for (std::size_t C : {1, 5, 40}) {
    for (std::size_t inner : {2, 7, 16, 19, 37}) {
      strided<BF16>(2, C, inner, seed++);
      strided<F16>(2, C, inner, seed++);
    }
  }
}

TEST_P(HalfTables, ChunkPassesMatchScalar) {
  for (std::size_t n : {1, 7, 64, 1001, 9000}) {
    chunks<BF16>(n, n);
    chunks<F16>(n, n + 1);
  }
}

// Load and store of every 16-bit pattern through a SIMD pass whose float32 arithmetic is exact:
// y = (x - 0) - 0.
template <class H>
void round_trip() {
  SCOPED_TRACE(hname<H>());
  std::vector<H> x(65536), ya(65536), ys(65536);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = H::from_bits(static_cast<std::uint16_t>(i));
  simd<H>().chunk_shift(x.data(), ya.data(), x.size(), 0.0, 0.0);
  scalar<H>().chunk_shift(x.data(), ys.data(), x.size(), 0.0, 0.0);
  EXPECT_TRUE(close16(ya, ys, std::vector<double>(x.size(), 0.0), true));
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!std::isnan(f(x[i]))) {
      ASSERT_EQ(ya[i].bits, x[i].bits) << "pattern " << i;
    }
}

TEST_P(HalfTables, EveryBitPatternRoundTrips) {
  round_trip<BF16>();
  round_trip<F16>();
}

// y * dy is exact in float32 for 16-bit operands, so the one rounding to nearest even must give the
// scalar twin's bits exactly: ties, subnormal results, overflow to infinity.
template <class H>
void exact_products() {
  SCOPED_TRACE(hname<H>());
  std::mt19937_64 rng(7);
  const std::size_t n = 20011;
  std::vector<H> y(n), dy(n), da(n), ds(n);
  for (std::size_t i = 0; i < n; ++i) {
    y[i] = H::from_bits(static_cast<std::uint16_t>(rng() & 0x7FFF));  // every positive pattern
    // Factors that keep most products finite, some tiny (subnormal) and some huge (overflow).
    const int e = static_cast<int>(rng() % 9) - 4;
    dy[i] = H(std::ldexp(1.0 + static_cast<double>(rng() % 256) / 256.0, e) * ((rng() & 1) ? 1 : -1));
  }
  simd<H>().chunk_softmax_bwd(y.data(), dy.data(), da.data(), n, 0.0);
  scalar<H>().chunk_softmax_bwd(y.data(), dy.data(), ds.data(), n, 0.0);
  EXPECT_TRUE(close16(da, ds, std::vector<double>(n, 0.0), true));
}

TEST_P(HalfTables, ExactProductsRoundToNearestEven) {
  exact_products<BF16>();
  exact_products<F16>();
}

// widen_f32 / narrow_f32 (the fused linear layer's block conversions): every 16-bit pattern widened
// to the scalar twin's float (exact: NaN stays NaN with its sign), and float32 values rounded once
// into the scalar twin's bits (a NaN: a NaN of its sign): every widened pattern, each one's midpoints with its neighbours
// (ties: nearest even), random floats across the range, at odd lengths (vector tails).
template <class H>
void widen_narrow() {
  SCOPED_TRACE(hname<H>());
  std::vector<H> x(65536);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = H::from_bits(static_cast<std::uint16_t>(i));
  for (std::size_t n : {std::size_t{65536}, std::size_t{65535}, std::size_t{13}}) {
    std::vector<float> ya(n, -1.0f), ys(n, 1.0f);
    simd<H>().widen_f32(x.data() + (65536 - n), ya.data(), n);
    scalar<H>().widen_f32(x.data() + (65536 - n), ys.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isnan(ys[i])) {
        ASSERT_TRUE(std::isnan(ya[i]) && std::signbit(ya[i]) == std::signbit(ys[i])) << "pattern " << i;
      } else {
        ASSERT_EQ(std::memcmp(&ya[i], &ys[i], 4), 0) << "pattern " << (65536 - n + i) << ": " << ya[i] << " vs " << ys[i];
      }
    }
  }
  std::vector<float> v;
  for (std::size_t i = 0; i + 1 < x.size(); ++i) {
    const float a = static_cast<float>(x[i]), b = static_cast<float>(x[i + 1]);
    v.push_back(a);
    if (std::isfinite(a) && std::isfinite(b) && (i & 0x7FFF) != 0x7FFF) v.push_back(0.5f * a + 0.5f * b);  // exact midpoint
  }
  std::mt19937_64 rng(16);
  for (int i = 0; i < 20000; ++i) {
    const std::uint32_t bits = static_cast<std::uint32_t>(rng());
    float r;
    std::memcpy(&r, &bits, 4);
    v.push_back(r);
  }
  v.push_back(std::numeric_limits<float>::infinity());
  v.push_back(-std::numeric_limits<float>::quiet_NaN());
  for (std::size_t n : {v.size(), v.size() - 1, std::size_t{5}}) {
    std::vector<H> za(n), zs(n);
    simd<H>().narrow_f32(v.data(), za.data(), n);
    scalar<H>().narrow_f32(v.data(), zs.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isnan(v[i])) {  // a NaN of v's sign; its payload is not kept alike by every target
        ASSERT_TRUE(std::isnan(f(za[i])) && (za[i].bits & 0x8000) == (zs[i].bits & 0x8000)) << "NaN at " << i;
        continue;
      }
      ASSERT_EQ(za[i].bits, zs[i].bits) << "value " << simd_check::fmt(static_cast<double>(v[i])) << " at " << i;
    }
  }
}

TEST_P(HalfTables, WidenAndNarrowMatchScalarBits) {
  ASSERT_NE(simd<BF16>().widen_f32, nullptr);
  ASSERT_NE(simd<F16>().narrow_f32, nullptr);
  widen_narrow<BF16>();
  widen_narrow<F16>();
}

INSTANTIATE_TEST_SUITE_P(Isa, HalfTables, ::testing::ValuesIn(simd_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace xent
