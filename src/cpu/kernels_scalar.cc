// kernels_scalar.cc: the portable scalar kernel table, float32, float64, bfloat16 and float16.
//
// It defines the semantics every SIMD table must reproduce (to a few ulp): rows are shifted by
// their maximum (NaN-propagating), exp/log and every sum run in double, and results are rounded
// once to T at the end. It is the fallback on CPUs without SIMD and the twin the fast paths are
// tested against; it is NOT the test oracle (that is src/reference/, in long double).
// Shapes (kernels.h): N rows of C classes in blocks of n_outer x n_inner rows, element stride
// `stride` along C.
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/kernels.h"

namespace xent::cpu {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Visits every row of a block: fn(row_ptr_offset, row_index_offset, dense_index).
template <class F>
inline void for_rows(const Block& b, F&& fn) {
  std::size_t dense = 0;
  for (std::size_t o = 0; o < b.n_outer; ++o)
    for (std::size_t i = 0; i < b.n_inner; ++i, ++dense) fn(o * b.C * b.stride + i, o * b.stride + i, dense);
}

// Neumaier's compensated sum: the coefficient sums of probability targets and label smoothing add
// C terms of one sign, often of equal size (eps / C), where a plain double sum drifts by up to
// C u; this keeps them within a few u whatever C.
struct CompensatedSum {
  double s = 0, comp = 0;
  void add(double v) {
    const double t = s + v;
    comp += std::fabs(s) >= std::fabs(v) ? (s - t) + v : (v - t) + s;
    s = t;
  }
  // A non-finite sum is the plain sum's (the compensation is NaN once an infinity is added).
  double total() const { return std::isfinite(s) ? s + comp : s; }
};

// Maximum of a row; NaN if any element is NaN; -inf for an empty row.
template <class T>
inline double row_max(const T* x, std::size_t C, std::size_t s) {
  double m = -kInf;
  for (std::size_t c = 0; c < C; ++c) {
    double v = static_cast<double>(x[c * s]);
    if (v > m || std::isnan(v)) {
      m = v;
      if (std::isnan(v)) break;
    }
  }
  return m;
}

template <class T>
inline double row_sum_exp(const T* x, std::size_t C, std::size_t s, double m) {
  double sum = 0;
  for (std::size_t c = 0; c < C; ++c) sum += std::exp(static_cast<double>(x[c * s]) - m);
  return sum;
}

// log(sum(exp(x))) as softmax and cross-entropy need it: NaN for an all -inf row.
template <class T>
inline double row_lse(const T* x, std::size_t C, std::size_t s) {
  double m = row_max(x, C, s);
  return m + std::log(row_sum_exp(x, C, s, m));
}

template <class T>
void softmax_fwd(const T* x, T* y, Block b) noexcept {
  for_rows(b, [&](std::size_t xo, std::size_t, std::size_t) {
    const std::size_t s = b.stride;
    double m = row_max(x + xo, b.C, s);
    double inv = 1.0 / row_sum_exp(x + xo, b.C, s, m);
    for (std::size_t c = 0; c < b.C; ++c) y[xo + c * s] = static_cast<T>(std::exp(static_cast<double>(x[xo + c * s]) - m) * inv);
  });
}

template <class T>
void log_softmax_fwd(const T* x, T* y, Block b) noexcept {
  for_rows(b, [&](std::size_t xo, std::size_t, std::size_t) {
    const std::size_t s = b.stride;
    double m = row_max(x + xo, b.C, s);
    double ls = std::log(row_sum_exp(x + xo, b.C, s, m));
    for (std::size_t c = 0; c < b.C; ++c) y[xo + c * s] = static_cast<T>((static_cast<double>(x[xo + c * s]) - m) - ls);
  });
}

template <class T>
void logsumexp_fwd(const T* x, T* lse, Block b) noexcept {
  for_rows(b, [&](std::size_t xo, std::size_t ro, std::size_t) {
    double m = row_max(x + xo, b.C, b.stride);
    if (std::isinf(m)) m = 0;  // PyTorch: an infinite max is replaced by 0 (all -inf → -inf, +inf → +inf)
    lse[ro] = static_cast<T>(std::log(row_sum_exp(x + xo, b.C, b.stride, m)) + m);
  });
}

template <class T>
void chunk_stats(const T* x, std::size_t n, double* m, double* s) noexcept {
  *m = row_max(x, n, 1);
  *s = *m == -kInf ? 0.0 : row_sum_exp(x, n, 1, *m);
}

// The unsplit kernels' pass 2 on a run (softmax_fwd with inv = scale, log_softmax_fwd with ls = shift).
template <class T>
void chunk_exp_scale(const T* x, T* y, std::size_t n, double m, double scale) noexcept {
  for (std::size_t c = 0; c < n; ++c) y[c] = static_cast<T>(std::exp(static_cast<double>(x[c]) - m) * scale);
}

template <class T>
void chunk_shift(const T* x, T* y, std::size_t n, double m, double shift) noexcept {
  for (std::size_t c = 0; c < n; ++c) y[c] = static_cast<T>((static_cast<double>(x[c]) - m) - shift);
}

// c[k] of kernels.h Coefs, in double.
template <class T>
inline double coef_at(const Coefs<T>& k, std::size_t c) {
  const double q = k.t ? static_cast<double>(k.t[c]) * k.keep + k.u : 1.0;
  return k.w ? static_cast<double>(k.w[c]) * q : q;
}

template <class T>
void chunk_sums(const T* x, const Coefs<T>& k, std::size_t n, ChunkSums* out) noexcept {
  ChunkSums r;
  r.m = row_max(x, n, 1);
  r.s = r.m == -kInf ? 0.0 : row_sum_exp(x, n, 1, r.m);
  for (std::size_t c = 0; c < n; ++c) {
    const double cc = coef_at(k, c);
    r.a += cc * (static_cast<double>(x[c]) - r.m);
    r.q += cc;
  }
  *out = r;
}

template <class T>
void chunk_ce_grad(const T* x, const Coefs<T>& k, T* dx, std::size_t n, double m, double scale, double gb) noexcept {
  for (std::size_t c = 0; c < n; ++c)
    dx[c] = static_cast<T>(std::exp(static_cast<double>(x[c]) - m) * scale - gb * coef_at(k, c));
}

template <class T>
double chunk_dot(const T* a, const T* b, std::size_t n) noexcept {
  double s = 0;
  if (b == nullptr) {
    for (std::size_t c = 0; c < n; ++c) s += static_cast<double>(a[c]);
  } else {
    for (std::size_t c = 0; c < n; ++c) s += static_cast<double>(a[c]) * static_cast<double>(b[c]);
  }
  return s;
}

template <class T>
void chunk_softmax_bwd(const T* y, const T* dy, T* dx, std::size_t n, double dot) noexcept {
  for (std::size_t c = 0; c < n; ++c)
    dx[c] = static_cast<T>(static_cast<double>(y[c]) * (static_cast<double>(dy[c]) - dot));
}

template <class T>
void chunk_log_softmax_bwd(const T* y, const T* dy, T* dx, std::size_t n, double sum) noexcept {
  for (std::size_t c = 0; c < n; ++c)
    dx[c] = static_cast<T>(static_cast<double>(dy[c]) - std::exp(static_cast<double>(y[c])) * sum);
}

template <class T>
void softmax_bwd(const T* y, const T* dy, T* dx, Block b) noexcept {
  for_rows(b, [&](std::size_t xo, std::size_t, std::size_t) {
    const std::size_t s = b.stride;
    double dot = 0;
    for (std::size_t c = 0; c < b.C; ++c) dot += static_cast<double>(dy[xo + c * s]) * static_cast<double>(y[xo + c * s]);
    for (std::size_t c = 0; c < b.C; ++c) {
      double yc = static_cast<double>(y[xo + c * s]);
      dx[xo + c * s] = static_cast<T>(yc * (static_cast<double>(dy[xo + c * s]) - dot));
    }
  });
}

template <class T>
void log_softmax_bwd(const T* y, const T* dy, T* dx, Block b) noexcept {
  for_rows(b, [&](std::size_t xo, std::size_t, std::size_t) {
    const std::size_t s = b.stride;
    double sum = 0;
    for (std::size_t c = 0; c < b.C; ++c) sum += static_cast<double>(dy[xo + c * s]);
    for (std::size_t c = 0; c < b.C; ++c)
      dx[xo + c * s] = static_cast<T>(static_cast<double>(dy[xo + c * s]) - std::exp(static_cast<double>(y[xo + c * s])) * sum);
  });
}

template <class T>
void logsumexp_bwd(const T* x, const T* lse, const T* dlse, T* dx, Block b) noexcept {
  for_rows(b, [&](std::size_t xo, std::size_t ro, std::size_t) {
    const std::size_t s = b.stride;
    double l = static_cast<double>(lse[ro]), g = static_cast<double>(dlse[ro]);
    for (std::size_t c = 0; c < b.C; ++c) dx[xo + c * s] = static_cast<T>(g * std::exp(static_cast<double>(x[xo + c * s]) - l));
  });
}

// Cross-entropy with class-index targets (PyTorch's label-smoothing decomposition):
//   loss = (1 - eps) * w_t * (lse - x_t) + (eps / C) * sum_c w_c * (lse - x_c)
//   dx_c = g * ((1 - eps) * w_t * (p_c - [c == t]) + (eps / C) * (p_c * sum(w) - w_c))
// An ignored row has loss 0 and gradient 0 * p_c (NaN where p_c is, as PyTorch's autograd gives).
template <class T, class I>
void ce_index(const CeIndexArgs<T, I>& a, Block b) noexcept {
  const std::size_t s = b.stride, C = b.C;
  const double eps = a.smoothing;
  for_rows(b, [&](std::size_t xo, std::size_t ro, std::size_t dense) {
    const T* x = a.x + xo;
    const std::int64_t t = static_cast<std::int64_t>(a.target[ro]);
    if (t == a.ignore_index) {
      if (a.row_loss) a.row_loss[dense] = 0;
      if (a.dx) {
        double lse = row_lse(x, C, s);
        for (std::size_t c = 0; c < C; ++c) a.dx[xo + c * s] = static_cast<T>(std::isnan(static_cast<double>(x[c * s]) - lse) ? kNaN : 0.0);
      }
      return;
    }
    const double lse = row_lse(x, C, s);
    const double wt = a.weight ? static_cast<double>(a.weight[t]) : 1.0;
    if (a.row_loss) {
      double loss = wt * (lse - static_cast<double>(x[t * s]));
      if (eps > 0) {
        CompensatedSum smooth;
        for (std::size_t c = 0; c < C; ++c) {
          double wc = a.weight ? static_cast<double>(a.weight[c]) : 1.0;
          smooth.add(wc * (lse - static_cast<double>(x[c * s])));
        }
        loss = (1 - eps) * loss + (eps / static_cast<double>(C)) * smooth.total();
      }
      a.row_loss[dense] = loss;
    }
    if (a.dx) {
      const double g = row_upstream(a, ro);
      const double k_hard = (1 - eps) * wt, k_soft = eps / static_cast<double>(C);
      for (std::size_t c = 0; c < C; ++c) {
        const bool is_t = static_cast<std::int64_t>(c) == t;
        double p = std::exp(static_cast<double>(x[c * s]) - lse);
        // p[t] - 1 as expm1(x[t] - lse): no cancellation as p[t] -> 1.
        double d = k_hard * (is_t ? std::expm1(static_cast<double>(x[c * s]) - lse) : p);
        if (eps > 0) {
          double wc = a.weight ? static_cast<double>(a.weight[c]) : 1.0;
          d += k_soft * (p * a.weight_sum - wc);
        }
        a.dx[xo + c * s] = static_cast<T>(g * d);
      }
    }
  });
}

// NLL on log-probabilities: loss = -w_t * x_t; dx_t = -w_t * g, every other dx_c = 0.
template <class T, class I>
void nll(const CeIndexArgs<T, I>& a, Block b) noexcept {
  const std::size_t s = b.stride, C = b.C;
  for_rows(b, [&](std::size_t xo, std::size_t ro, std::size_t dense) {
    const std::int64_t t = static_cast<std::int64_t>(a.target[ro]);
    const bool ignored = t == a.ignore_index;
    const double wt = ignored ? 0.0 : (a.weight ? static_cast<double>(a.weight[t]) : 1.0);
    if (a.row_loss) a.row_loss[dense] = ignored ? 0.0 : -wt * static_cast<double>(a.x[xo + t * s]);
    if (a.dx) {
      for (std::size_t c = 0; c < C; ++c) a.dx[xo + c * s] = T(0);
      if (!ignored) {
        const double g = a.dloss ? a.dloss_scale * static_cast<double>(a.dloss[ro]) : a.dloss_scale;
        a.dx[xo + t * s] = static_cast<T>(-wt * g);
      }
    }
  });
}

// Cross-entropy with probability targets q = t * (1 - eps) + eps / C:
//   loss = -sum_c w_c * q_c * (x_c - lse);  dx_c = g * (p_c * sum_k(w_k q_k) - w_c q_c)
template <class T>
void ce_prob(const CeProbArgs<T>& a, Block b) noexcept {
  const std::size_t s = b.stride, C = b.C;
  const double eps = a.smoothing, u = eps / static_cast<double>(C);
  auto q = [&](const T* t, std::size_t c) {
    double v = static_cast<double>(t[c * s]);
    return eps > 0 ? v * (1 - eps) + u : v;
  };
  for_rows(b, [&](std::size_t xo, std::size_t ro, std::size_t dense) {
    const T* x = a.x + xo;
    const T* t = a.target + xo;
    const double lse = row_lse(x, C, s);
    if (a.row_loss) {
      CompensatedSum loss;
      for (std::size_t c = 0; c < C; ++c) {
        double wc = a.weight ? static_cast<double>(a.weight[c]) : 1.0;
        loss.add(-((static_cast<double>(x[c * s]) - lse) * q(t, c)) * wc);
      }
      a.row_loss[dense] = loss.total();
    }
    if (a.dx) {
      const double g = a.dloss ? a.dloss_scale * static_cast<double>(a.dloss[ro]) : a.dloss_scale;
      CompensatedSum wq_sum;
      for (std::size_t c = 0; c < C; ++c) wq_sum.add((a.weight ? static_cast<double>(a.weight[c]) : 1.0) * q(t, c));
      const double wq = wq_sum.total();
      for (std::size_t c = 0; c < C; ++c) {
        double wc = a.weight ? static_cast<double>(a.weight[c]) : 1.0;
        double p = std::exp(static_cast<double>(x[c * s]) - lse);
        a.dx[xo + c * s] = static_cast<T>(g * (p * wq - wc * q(t, c)));
      }
    }
  });
}

// BCE on probabilities, PyTorch's clamps: each log at >= -100, the gradient's denominator at >= 1e-12,
// where PyTorch's constant is a float (`constexpr float EPSILON = 1e-12`), 9.99999996e-13 in double.
constexpr double kBceGradEps = static_cast<double>(1e-12f);
template <class T>
void bce(const BceArgs<T>& a, std::size_t n) noexcept {
  for (std::size_t e = 0; e < n; ++e) {
    const double p = static_cast<double>(a.x[e]), t = static_cast<double>(a.target[e]);
    const double w = a.weight ? static_cast<double>(a.weight[e * a.w_step]) : 1.0;
    if (a.elem_loss) {
      double l = (t - 1) * std::max(std::log1p(-p), -100.0) - t * std::max(std::log(p), -100.0);
      a.elem_loss[e] = a.weight ? l * w : l;
    }
    if (a.dx) {
      const double g = a.dloss ? a.dloss_scale * static_cast<double>(a.dloss[e]) : a.dloss_scale;
      double d = (p - t) / std::max((1 - p) * p, kBceGradEps);
      a.dx[e] = static_cast<T>(a.weight ? g * d * w : g * d);
    }
  }
}

// BCE with logits: PyTorch's (1 - t) * x + lw * (log(exp(-m) + exp(-x - m)) + m), m = max(-x, 0),
// lw = 1 + (pw - 1) * t (1 without pos_weight), rearranged exactly: its softplus is
// m + log1p(exp(-|x|)), and for x < 0 the terms (1 - t) * x + lw * m = -x (pw * t) are taken
// together, so that neither cancels against the other (a confident right answer, x = -30, t = 0,
// costs exp(-30) to the last bit, not what is left of 30 - 30 + 9e-14). x = -inf stays NaN, as in
// PyTorch (-x - m = inf - inf there); x = +inf gives (1 - t) * inf as PyTorch.
//   loss = (x >= 0 ? (1 - t) * x : -(pw * t) * x) + lw * log1p(exp(-|x|))
//   dx   = ((pw * t + 1 - t) * sigmoid(x) - pw * t) * g   (pw = 1 without pos_weight)
template <class T>
void bce_logits(const BceArgs<T>& a, std::size_t n) noexcept {
  for (std::size_t e = 0; e < n; ++e) {
    const double x = static_cast<double>(a.x[e]), t = static_cast<double>(a.target[e]);
    const double w = a.weight ? static_cast<double>(a.weight[e * a.w_step]) : 1.0;
    const bool has_pw = a.pos_weight != nullptr;
    const double pw = has_pw ? static_cast<double>(a.pos_weight[e * a.pw_step]) : 1.0;
    if (a.elem_loss) {
      const double lp = std::log1p(std::exp(-std::fabs(x)));
      const double lin = x >= 0 ? (1 - t) * x : -(pw * t) * x;
      double l = x == -kInf ? kNaN : has_pw ? lin + ((pw - 1) * t + 1) * lp : lin + lp;
      a.elem_loss[e] = a.weight ? l * w : l;
    }
    if (a.dx) {
      const double g = a.dloss ? a.dloss_scale * static_cast<double>(a.dloss[e]) : a.dloss_scale;
      // sigmoid from e = exp(-|x|): no overflow of exp(-x) for x < -709 (float64 data), whose
      // sigmoid is e itself, a subnormal, not 0.
      const double e_abs = std::exp(-std::fabs(x));
      const double sig = (x >= 0 ? 1.0 : e_abs) / (1.0 + e_abs);
      double d;
      if (has_pw) {
        const double pt = pw * t;
        d = ((pt + 1 - t) * sig - pt) * g;
      } else {
        d = (sig - t) * g;
      }
      a.dx[e] = static_cast<T>(a.weight ? d * w : d);
    }
  }
}

template <class I>
std::int64_t count_kept(const I* t, std::size_t n, std::int64_t C, std::int64_t ignore_index, bool* bad) noexcept {
  const std::uint64_t uC = static_cast<std::uint64_t>(C);
  bool any_bad = false;
  std::int64_t kept = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const std::int64_t v = t[k];
    const bool ignored = v == ignore_index;
    any_bad |= !ignored & (static_cast<std::uint64_t>(v) >= uC);
    kept += !ignored;
  }
  *bad = any_bad;
  return kept;
}

template <class T>
void softcap(T* z, std::size_t n, T s) noexcept {
  for (std::size_t i = 0; i < n; ++i) z[i] = static_cast<T>(s * std::tanh(static_cast<double>(z[i]) / s));
}

// kernels.h byte_affine / byte_affine_grad: each sum in double, in index order, rounded once.
template <class T>
void byte_affine(const std::uint8_t* const* x, std::size_t rows, std::size_t D, const T* wt, std::size_t C, T scale,
                 const T* bias, T* z) noexcept {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < C; ++c) {
      double s = 0;
      for (std::size_t d = 0; d < D; ++d) s += static_cast<double>(x[r][d]) * static_cast<double>(wt[c * D + d]);
      z[r * C + c] = static_cast<T>(static_cast<double>(bias[c]) + static_cast<double>(scale) * s);
    }
}
template <class T>
void byte_affine_grad(const std::uint8_t* const* x, std::size_t rows, std::size_t D, const T* dz, std::size_t C,
                      T scale, T* gt) noexcept {
  for (std::size_t c = 0; c < C; ++c)
    for (std::size_t d = 0; d < D; ++d) {
      double s = 0;
      for (std::size_t r = 0; r < rows; ++r) s += static_cast<double>(x[r][d]) * static_cast<double>(dz[r * C + c]);
      gt[c * D + d] = static_cast<T>(static_cast<double>(scale) * s);
    }
}

template <class T>
void exp_nonpos(const T* x, T* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<T>(std::exp(x[i]));
}
template <class T>
void log1p_unit(const T* x, T* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<T>(std::log1p(x[i]));
}

// kernels.h sum_terms: eight interleaved pairwise sums. pairwise_lanes adds the m groups of 8 at v
// lane by lane over pairwise_sum's tree (reduce.cc): at most 8 groups in order from 0, else the two
// halves split at m / 2. The SIMD tables add the same groups
// in the same order, a vector of lanes at a time, so every table gives the same bits.
void pairwise_lanes(const double* v, std::size_t m, double out[8]) noexcept {
  if (m <= 8) {
    for (std::size_t k = 0; k < 8; ++k) out[k] = 0;
    for (std::size_t g = 0; g < m; ++g)
      for (std::size_t k = 0; k < 8; ++k) out[k] += v[8 * g + k];
    return;
  }
  const std::size_t h = m / 2;
  double hi[8];
  pairwise_lanes(v, h, out);
  pairwise_lanes(v + 8 * h, m - h, hi);
  for (std::size_t k = 0; k < 8; ++k) out[k] += hi[k];
}

double sum_terms(const double* v, std::size_t n) noexcept {
  const std::size_t m = n / 8;
  double s[8];
  pairwise_lanes(v, m, s);
  double total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (std::size_t i = 8 * m; i < n; ++i) total += v[i];
  return total;
}
// Per-row softmax statistics (kernels.h ce_stats): lse, entropy = log S - B / S with
// B = sum_c e_c (x_c - m) (terms with e_c = 0 are 0: p log p -> 0), and the first argmax.
template <class T>
void ce_stats(const T* x, Block b, double* lse, double* entropy, std::int64_t* argmax) noexcept {
  const std::size_t s = b.stride, C = b.C;
  for_rows(b, [&](std::size_t xo, std::size_t, std::size_t dense) {
    const T* r = x + xo;
    std::int64_t am = C == 0 ? -1 : 0;
    double best = 0;
    for (std::size_t c = 0; c < C; ++c) {
      const double v = static_cast<double>(r[c * s]);
      if (std::isnan(v)) {
        am = static_cast<std::int64_t>(c);
        break;
      }
      if (c == 0 || v > best) {
        best = v;
        am = static_cast<std::int64_t>(c);
      }
    }
    const double m = row_max(r, C, s);
    const double mm = std::isinf(m) ? 0.0 : m;
    double S = 0, B = 0;
    for (std::size_t c = 0; c < C; ++c) {
      const double d = static_cast<double>(r[c * s]) - mm;
      const double e = std::exp(d);
      S += e;
      if (e != 0) B += e * d;
    }
    lse[dense] = mm + std::log(S);
    entropy[dense] = std::isfinite(m) ? std::log(S) - B / S : kNaN;
    argmax[dense] = am;
  });
}

template <class T>
void widen_f32(const T* x, float* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<float>(x[i]);
}

template <class T>
void narrow_f32(const float* x, T* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = T(x[i]);
}

template <class T>
KernelTable<T> make_table() {
  KernelTable<T> k;
  k.name = "scalar";
  k.softmax_fwd = softmax_fwd<T>;
  k.log_softmax_fwd = log_softmax_fwd<T>;
  k.logsumexp_fwd = logsumexp_fwd<T>;
  k.chunk_stats = chunk_stats<T>;
  k.chunk_exp_scale = chunk_exp_scale<T>;
  k.chunk_shift = chunk_shift<T>;
  k.chunk_dot = chunk_dot<T>;
  k.chunk_sums = chunk_sums<T>;
  k.chunk_ce_grad = chunk_ce_grad<T>;
  k.chunk_softmax_bwd = chunk_softmax_bwd<T>;
  k.chunk_log_softmax_bwd = chunk_log_softmax_bwd<T>;
  k.softmax_bwd = softmax_bwd<T>;
  k.log_softmax_bwd = log_softmax_bwd<T>;
  k.logsumexp_bwd = logsumexp_bwd<T>;
  k.ce_index_i32 = ce_index<T, std::int32_t>;
  k.ce_index_i64 = ce_index<T, std::int64_t>;
  k.nll_i32 = nll<T, std::int32_t>;
  k.nll_i64 = nll<T, std::int64_t>;
  k.ce_prob = ce_prob<T>;
  k.bce = bce<T>;
  k.bce_logits = bce_logits<T>;
  k.ce_stats = ce_stats<T>;
  k.count_kept_i32 = count_kept<std::int32_t>;
  k.count_kept_i64 = count_kept<std::int64_t>;
  k.softcap = softcap<T>;
  k.exp_nonpos = exp_nonpos<T>;
  if constexpr (detail::kIsHalf<T>) {
    k.widen_f32 = widen_f32<T>;
    k.narrow_f32 = narrow_f32<T>;
  }
  k.log1p_unit = log1p_unit<T>;
  k.sum_terms = sum_terms;
  if constexpr (!detail::kIsHalf<T>) {
    k.byte_affine = byte_affine<T>;
    k.byte_affine_grad = byte_affine_grad<T>;
  }
  return k;
}

}  // namespace

const KernelTable<float>& scalar_table_f32() noexcept {
  static const KernelTable<float> t = make_table<float>();
  return t;
}
const KernelTable<double>& scalar_table_f64() noexcept {
  static const KernelTable<double> t = make_table<double>();
  return t;
}
const KernelTable<BF16>& scalar_table_bf16() noexcept {
  static const KernelTable<BF16> t = make_table<BF16>();
  return t;
}
const KernelTable<F16>& scalar_table_f16() noexcept {
  static const KernelTable<F16> t = make_table<F16>();
  return t;
}

}  // namespace xent::cpu
