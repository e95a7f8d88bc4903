// exact_sum.h (internal): exact summation for cross-entropy, shared by the single-process library
// (CrossEntropyOptions::summation = Summation::kExact, cross_entropy.cc) and the vocabulary-parallel
// layer of xent_mpi (src/mpi/vocab_parallel.cc), so that both give the same bits. It holds
//   - the pure-integer pieces: an order-preserving int64 key of a double (an exact max in any
//     order, MPI_MAX included) and a fixed-point accumulator of signed 32-bit digits in int64 limbs
//     (integer addition: exact, associative, so the total does not depend on the order or on how
//     the terms are split between threads or ranks);
//   - the per-row arithmetic of the exact cross-entropy, cut at the points where the MPI layer
//     combines over ranks: pass 1 (max key, exponent bound and non-finite flags of the smoothing
//     terms; combined by max), pass 2 (the fixed-point sums and the target logit's bits; combined
//     by integer addition), the row's lse and loss, its gradient, and the final reduction.
// What it is not: MPI (the core never depends on it), nor the fast SIMD kernels (src/cpu/), which
// sum in floating point in their own order. Formulas: docs/numerics.md ("Exact summation") and
// docs/distributed.md ("the exact combine").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "xent/losses.h"

namespace xent::detail::exact {

// ---- order keys and fixed point (inline; fx_value in exact_sum.cc) ------------------------------

// Total order on doubles as int64: max over keys is the exact max in any order; NaN is the
// largest key, kNoKey (no value) the smallest.
constexpr std::int64_t kNoKey = INT64_MIN;
inline std::int64_t max_key(double d) noexcept;
inline double from_key(std::int64_t k) noexcept;

// Fixed point: kLimbs signed 64-bit limbs of 32-bit digits. fx_add adds round(v 2^shift) (which
// must be below 2^121 in magnitude; smaller than half a unit rounds to 0). Adding limbs is exact
// integer addition (no overflow for fewer than 2^28 terms), so the total does not depend on the
// order or the split. fx_value is a fixed sequence of operations on the carry-normalised (unique)
// representation of the exact integer: a deterministic function of the exact sum.
constexpr int kLimbs = 4;
inline void fx_add(std::int64_t* acc, double v, int shift) noexcept;
double fx_value(const std::int64_t* acc, int shift) noexcept;

// (Inline: they run once or twice per logit.)
inline std::int64_t max_key(double d) noexcept {
  if (std::isnan(d)) return INT64_MAX;
  std::int64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b < 0 ? (b ^ INT64_MAX) : b;
}

inline double from_key(std::int64_t k) noexcept {
  if (k == INT64_MAX) return std::numeric_limits<double>::quiet_NaN();
  if (k == kNoKey) return -std::numeric_limits<double>::infinity();
  const std::int64_t b = k < 0 ? (k ^ INT64_MAX) : k;
  double d;
  std::memcpy(&d, &b, sizeof d);
  return d;
}

inline void fx_add(std::int64_t* acc, double v, int shift) noexcept {
  // |v| = M 2^s0 from the bits (no frexp/ldexp calls: this runs once per logit): M the 53-bit
  // significand with its implicit bit, or the raw one of a subnormal. The rounded value
  // round(M 2^(s0 + shift)) (half away from zero) does not depend on how M is normalised.
  std::uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  const int eb = static_cast<int>((b >> 52) & 0x7ff);
  if (eb == 0x7ff) return;  // inf or NaN: callers handle them apart
  std::uint64_t M = b & ((std::uint64_t{1} << 52) - 1);
  if (M == 0 && eb == 0) return;  // +-0
  int s = shift - 1074;
  if (eb != 0) {
    M |= std::uint64_t{1} << 52;
    s += eb - 1;
  }
  unsigned __int128 X;
  if (s >= 0) {
    if (s + (64 - __builtin_clzll(M)) > 127) return;  // out of range: callers keep |v| 2^shift < 2^121
    X = static_cast<unsigned __int128>(M) << s;
  } else {
    if (-s > 60) return;  // below half a unit of the last digit: rounds to 0
    X = (static_cast<unsigned __int128>(M) + (static_cast<unsigned __int128>(1) << (-s - 1))) >> (-s);
  }
  const std::int64_t sign = (b >> 63) != 0 ? -1 : 1;
  for (int i = 0; i < kLimbs; ++i) acc[i] += sign * static_cast<std::int64_t>((X >> (32 * i)) & 0xffffffffu);
}

// ---- the exact cross-entropy of one row ------------------------------------------------------------

constexpr int kShiftS = 120;                // S's grid: terms exp(z - M) in [0, 1] as multiples of 2^-120
constexpr std::int64_t kNoExp = INT64_MIN;  // no finite nonzero smoothing term

inline std::int64_t bits_of(double d) noexcept {
  std::int64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}
inline double double_of(std::int64_t b) noexcept {
  double d;
  std::memcpy(&d, &b, sizeof d);
  return d;
}

// The per-call constants. e = eps (label smoothing), lam (z-loss), cap (soft-cap, 0 = none),
// cw all V class weights as doubles (null: ones), W their sum in class order (weight_total).
struct CeParams {
  std::int64_t V = 0;
  const double* cw = nullptr;
  double W = 0;
  double eps = 0, lam = 0, cap = 0;
  std::int64_t ignore = -100;
  int k1() const noexcept { return eps != 0 ? 5 : 1; }                      // pass-1 words per row
  int k2() const noexcept { return kLimbs + (eps != 0 ? kLimbs : 0) + 1; }  // pass-2 words per row
  double wt(std::int64_t c) const noexcept { return cw == nullptr ? 1.0 : cw[c]; }
};
constexpr int kMaxK1 = 5, kMaxK2 = 2 * kLimbs + 1;

// W = sum of the class weights in class order (V without weights).
double weight_total(const double* cw, std::int64_t V) noexcept;

// The (capped) logit: with apply_cap and a soft-cap, cap tanh(x / cap) rounded to T (as the fused
// layer stores it), else x.
template <class T>
inline double logit(const CeParams& p, const T* row, std::int64_t stride, std::int64_t j, bool apply_cap) noexcept {
  const double x = static_cast<double>(row[j * stride]);
  if (!apply_cap || p.cap == 0) return x;
  return static_cast<double>(static_cast<T>(p.cap * std::tanh(x / p.cap)));
}

// Pass 1 over classes [v0, v0 + n) of one row (row[j * stride] is class v0 + j): writes k1() words,
// o[0] the max key, with smoothing o[1] the largest binary exponent of the terms w_j z_j and three
// flags (a NaN, +inf, -inf term). The words of several slices combine by max.
template <class T>
void row_pass1(const CeParams& p, const T* row, std::int64_t stride, std::int64_t v0, std::int64_t n, bool apply_cap,
               std::int64_t* o) noexcept {
  std::int64_t key = kNoKey, E = kNoExp, fnan = 0, fpinf = 0, fninf = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    const double z = logit(p, row, stride, j, apply_cap);
    key = std::max(key, max_key(z));
    if (p.eps != 0) {
      const double t = p.wt(v0 + j) * z;
      if (std::isnan(t)) fnan = 1;
      else if (t == std::numeric_limits<double>::infinity()) fpinf = 1;
      else if (t == -std::numeric_limits<double>::infinity()) fninf = 1;
      else if (t != 0) E = std::max<std::int64_t>(E, std::ilogb(t));
    }
  }
  o[0] = key;
  if (p.eps != 0) {
    o[1] = E;
    o[2] = fnan;
    o[3] = fpinf;
    o[4] = fninf;
  }
}

// Pass 2 over the same classes, given the combined pass-1 words g1: ADDS to o's k2() words the
// fixed-point sum S = sum exp(z_j - M) (grid 2^-120), with smoothing A = sum w_j z_j (grid
// 2^(E-119)), and the bits of z_t into the last word when target t is in [v0, v0 + n). The words
// of several slices combine by integer addition.
template <class T>
void row_pass2(const CeParams& p, const T* row, std::int64_t stride, std::int64_t v0, std::int64_t n, bool apply_cap,
               const std::int64_t* g1, std::int64_t t, std::int64_t* o) noexcept {
  const double M = from_key(g1[0]);
  const bool sum_s = std::isfinite(M);
  const std::int64_t E = p.eps != 0 ? g1[1] : kNoExp;
  const int shift_a = E == kNoExp ? 0 : static_cast<int>(119 - E);
  for (std::int64_t j = 0; j < n; ++j) {
    const double z = logit(p, row, stride, j, apply_cap);
    if (sum_s) fx_add(o, std::exp(z - M), kShiftS);
    if (E != kNoExp) fx_add(o + kLimbs, p.wt(v0 + j) * z, shift_a);
  }
  if (t != p.ignore && t >= v0 && t < v0 + n) o[p.k2() - 1] += bits_of(logit(p, row, stride, t - v0, apply_cap));
}

struct RowResult {
  double lse = 0;  // logsumexp of the (capped) row
  double ce = 0;   // (1-e) w_t (lse - z_t) + (e/V)(W lse - A); 0 for an ignored target
  double z = 0;    // lam lse^2 (0 without z-loss or for an ignored target)
};

// The row's results from the combined words. PyTorch's semantics for non-finite rows: a NaN or a
// +inf logit makes the loss NaN (log_softmax is NaN there), a row of -inf gives NaN.
inline RowResult row_result(const CeParams& p, const std::int64_t* g1, const std::int64_t* g2,
                            std::int64_t t) noexcept {
  RowResult r;
  const double M = from_key(g1[0]);
  const double l = std::isfinite(M) ? M + std::log(fx_value(g2, kShiftS)) : M;
  r.lse = l;
  if (t == p.ignore) return r;
  if (M == std::numeric_limits<double>::infinity()) {
    r.ce = std::numeric_limits<double>::quiet_NaN();
  } else {
    const double zt = double_of(g2[p.k2() - 1]);
    r.ce = (1 - p.eps) * p.wt(t) * (l - zt);
    if (p.eps != 0) {
      double A;
      if (g1[2] || (g1[3] && g1[4])) A = std::numeric_limits<double>::quiet_NaN();
      else if (g1[3]) A = std::numeric_limits<double>::infinity();
      else if (g1[4]) A = -std::numeric_limits<double>::infinity();
      else A = g1[1] == kNoExp ? 0.0 : fx_value(g2 + kLimbs, static_cast<int>(119 - g1[1]));
      r.ce += p.eps / static_cast<double>(p.V) * (p.W * l - A);
    }
  }
  r.z = p.lam == 0 ? 0.0 : p.lam * l * l;
  return r;
}

// The upstream gradient of token n: g_ce of the cross-entropy part, g_z of the z-loss part.
// kNone: dloss[n] (1 without); kMean: g / div_ce and g / div_z (g the scalar upstream gradient,
// 1 without; div_ce the sum of the picked weights, div_z the kept tokens); kSum: g.
struct Upstream {
  Reduction red = Reduction::kMean;
  double g = 1, div_ce = 1, div_z = 1;
  template <class T>
  void at(const T* dloss_rows, std::int64_t n, double* g_ce, double* g_z) const noexcept {
    if (red == Reduction::kNone) {
      *g_ce = *g_z = dloss_rows != nullptr ? static_cast<double>(dloss_rows[n]) : 1.0;
    } else {
      *g_ce = red == Reduction::kMean ? g / div_ce : g;
      *g_z = red == Reduction::kMean ? g / div_z : g;
    }
  }
};

// d loss / d x over classes [v0, v0 + n) of one row into out (may alias row; same stride):
//   dz_j = p_j [g_ce ((1-e) w_t + e W / V) + 2 g_z lam lse] - g_ce (1-e) w_t [j == t] - g_ce (e/V) w_j,
//   dx_j = dz_j (1 - (z_j/cap)^2) with a soft-cap.
// An ignored row gets 0 (NaN where its softmax is NaN: lse not finite, PyTorch's 0 * NaN); a kept
// row whose lse is not finite gets NaN (its softmax is NaN).
template <class T>
void row_grad(const CeParams& p, const T* row, T* out, std::int64_t stride, std::int64_t v0, std::int64_t n,
              bool apply_cap, std::int64_t t, double l, double g_ce, double g_z) noexcept {
  if (t == p.ignore || !std::isfinite(l)) {
    const T fill = t == p.ignore && std::isfinite(l) ? T(0) : std::numeric_limits<T>::quiet_NaN();
    for (std::int64_t j = 0; j < n; ++j) out[j * stride] = fill;
    return;
  }
  const double Vd = static_cast<double>(p.V), w_t = p.wt(t);
  const double coef = g_ce * ((1 - p.eps) * w_t + p.eps * p.W / Vd) + 2.0 * g_z * p.lam * l;
  const double g_t = g_ce * (1 - p.eps) * w_t, g_s = g_ce * p.eps / Vd;
  for (std::int64_t j = 0; j < n; ++j) {
    const double z = logit(p, row, stride, j, apply_cap);
    double v = std::exp(z - l) * coef;
    if (v0 + j == t) v -= g_t;
    if (p.eps != 0) v -= g_s * p.wt(v0 + j);
    if (p.cap != 0) {
      const double u = z / p.cap;
      v *= 1 - u * u;
    }
    out[j * stride] = static_cast<T>(v);
  }
}

// The loss outputs from every token's parts (N of each; tok_z may be null: all zero): per token
// for kNone (ce + z), else the token-order pairwise sums, the mean dividing ce by div_ce and z by
// div_z. loss and zloss may be null.
template <class T>
void finish(Reduction red, const double* tok_ce, const double* tok_z, std::int64_t N, double div_ce, double div_z,
            T* loss, T* zloss) noexcept;

}  // namespace xent::detail::exact
