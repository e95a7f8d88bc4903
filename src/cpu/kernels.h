// kernels.h (internal): the per-ISA row-kernel table that the public entry points call.
//
// Layout. Every softmax-family and cross-entropy input is seen as (outer, C, inner): C is the
// reduced (class) dimension, outer the product of the dims before it, inner the product after it.
// A kernel call works on a Block of that tensor: n_outer outer indices by n_inner inner indices,
// with `stride` the full inner extent, so element (o, c, i) of the block is at
//     base[o * C * stride + c * stride + i]
// and a per-row value (target, lse, upstream gradient) for row (o, i) is at
//     base[o * stride + i]
// (base pointers already offset to the block's first row). When inner == 1 the rows are contiguous
// and stride == n_inner == 1. Per-row results that the front end reduces (losses) go to a dense
// double buffer: row (o, i) at row_out[o * n_inner + i].
//
// Contract. Kernels are noexcept, never allocate and assume validated input: targets are in
// [0, C) or equal to ignore_index, shapes agree, pointers are non-null where required. Each
// kernel's arithmetic for a row must not depend on which other rows share its block, so that the
// front end may split blocks across threads freely (results are then the same for any thread
// count). Every table must match the scalar table (kernels_scalar.cc) to a few ulp (the bfloat16 and
// float16 SIMD tables, which compute in float32: to one ulp of the 16-bit type); tests run every
// table the CPU supports against the scalar table and the long-double reference.
// This header is not public and names no ISA intrinsics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "half.h"

namespace xent::cpu {

using detail::BF16;
using detail::F16;

struct Block {
  std::size_t n_outer = 1;
  std::size_t C = 0;
  std::size_t n_inner = 1;
  std::size_t stride = 1;  // full inner extent (>= n_inner)
};

// Cross-entropy with class-index targets; also NLL (is_nll: input holds log-probabilities).
template <class T, class I>
struct CeIndexArgs {
  const T* x = nullptr;          // logits (or log-probs for NLL)
  const I* target = nullptr;     // per-row
  const T* weight = nullptr;     // (C) or nullptr for all ones
  double weight_sum = 0;         // sum of weight over all C (C when weight == nullptr); smoothing
  std::int64_t ignore_index = -100;
  double smoothing = 0;          // label_smoothing
  double* row_loss = nullptr;    // dense per-row loss out, or nullptr (backward only)
  T* dx = nullptr;               // gradient out, or nullptr (forward only); may alias x
  const T* dloss = nullptr;      // per-row upstream gradient, or nullptr to use dloss_scale
  double dloss_scale = 1;        // upstream gradient for every row (already divided by the mean's
                                 // divisor); multiplies dloss[row] too when dloss != nullptr
  const T* row_weight = nullptr; // per-row factor of the gradient (cross-entropy's token weights),
                                 // laid out as dloss, or nullptr; the losses are not multiplied
                                 // (the front end does that); NLL kernels ignore it
};

// A 16-bit or float value exactly as double.
template <class T>
inline double as_double(T v) noexcept {
  if constexpr (std::is_same_v<T, BF16> || std::is_same_v<T, F16>) return static_cast<double>(static_cast<float>(v));
  else return static_cast<double>(v);
}

// Row r's upstream gradient g = dloss_scale * dloss[r] * row_weight[r] (the factors that are
// given), in double, in that order: every kernel computes it this way.
template <class T, class I>
inline double row_upstream(const CeIndexArgs<T, I>& a, std::size_t r) noexcept {
  double g = a.dloss != nullptr ? a.dloss_scale * as_double(a.dloss[r]) : a.dloss_scale;
  if (a.row_weight != nullptr) g *= as_double(a.row_weight[r]);
  return g;
}

// Cross-entropy with probability targets (target has the input's layout).
template <class T>
struct CeProbArgs {
  const T* x = nullptr;
  const T* target = nullptr;
  const T* weight = nullptr;
  double smoothing = 0;
  double* row_loss = nullptr;
  T* dx = nullptr;
  const T* dloss = nullptr;
  double dloss_scale = 1;
};

// The per-class coefficients of label smoothing and probability targets, c[k] = w[k] * q[k], over a
// contiguous run (pointers already offset to the run's first class): w[k] = 1 when w == nullptr;
// q[k] = t[k] * keep + u with probability targets (keep = 1 - eps, u = eps / C), q[k] = 1 when
// t == nullptr (label smoothing on class indices, whose sums need w alone).
template <class T>
struct Coefs {
  const T* w = nullptr;
  const T* t = nullptr;
  double keep = 1;
  double u = 0;
};

// One run's normaliser and coefficient sums: m = max (NaN if any value is NaN, -inf for an all -inf
// run), s = sum exp(x - m), a = sum c[k] (x[k] - m), q = sum c[k], all in double. Unspecified but
// for m when m is not finite (the front end then runs the row unsplit); a or q not finite (a -inf
// logit, a non-finite coefficient) likewise sends the row to the unsplit kernel.
struct ChunkSums {
  double m = 0, s = 0, a = 0, q = 0;
};

// Elementwise binary cross-entropy over a contiguous run of n elements. weight and pos_weight are
// either nullptr, or advance by w_step / pw_step (0 or 1) per element (broadcasting is split into
// runs by the front end).
template <class T>
struct BceArgs {
  const T* x = nullptr;          // probabilities (bce) or logits (bce_with_logits)
  const T* target = nullptr;
  const T* weight = nullptr;
  std::size_t w_step = 1;
  const T* pos_weight = nullptr; // with_logits only
  std::size_t pw_step = 1;
  double* elem_loss = nullptr;   // dense per-element loss out, or nullptr
  T* dx = nullptr;
  const T* dloss = nullptr;      // per-element upstream gradient (same run), or nullptr
  double dloss_scale = 1;
};

template <class T>
struct KernelTable {
  const char* name = "scalar";

  void (*softmax_fwd)(const T* x, T* y, Block b) noexcept = nullptr;
  void (*log_softmax_fwd)(const T* x, T* y, Block b) noexcept = nullptr;
  void (*logsumexp_fwd)(const T* x, T* lse, Block b) noexcept = nullptr;
  // Long rows split into chunks (the front end's split_chunks in reduce.h), each a contiguous run of
  // n values. chunk_stats: *m = the run's max (NaN if any value is NaN, -inf for an all -inf run)
  // and, when *m is finite, *s = sum of exp(x - *m) in double (0 when *m is -inf; unspecified for a
  // NaN or +inf max, which the front end hands to the unsplit kernel). The front end combines runs
  // in chunk order: M = max m_i, S = sum s_i exp(m_i - M).
  void (*chunk_stats)(const T* x, std::size_t n, double* m, double* s) noexcept = nullptr;
  // Pass 2 with the row's finite M (a T value >= every x) and per-row constants, as the unsplit
  // kernels write them: y = T(exp(x - m) * scale) (softmax: scale = 1 / S) and
  // y = T((x - m) - shift) (log_softmax: shift = log S). y may alias x.
  void (*chunk_exp_scale)(const T* x, T* y, std::size_t n, double m, double scale) noexcept = nullptr;
  void (*chunk_shift)(const T* x, T* y, std::size_t n, double m, double shift) noexcept = nullptr;
  // Backward on split rows: chunk_dot = sum of a[c] * b[c] (b == nullptr: sum of a[c]) in double,
  // combined in chunk order by the front end; then dx = y (dy - dot) (softmax) or
  // dx = dy - exp(y) sum (log_softmax) per chunk, as softmax_bwd / log_softmax_bwd write them.
  double (*chunk_dot)(const T* a, const T* b, std::size_t n) noexcept = nullptr;
  // Split cross-entropy with label smoothing or probability targets: chunk_sums fills ChunkSums
  // (combined in chunk order by the front end: M = max m_i, S = sum s_i exp(m_i - M),
  // A = sum (a_i + q_i (m_i - M)), Q = sum q_i); chunk_ce_grad then writes
  // dx = T(exp(x - m) * scale - gb * c), in ce_prob's and ce_index's expression. dx may alias x.
  void (*chunk_sums)(const T* x, const Coefs<T>& k, std::size_t n, ChunkSums* out) noexcept = nullptr;
  void (*chunk_ce_grad)(const T* x, const Coefs<T>& k, T* dx, std::size_t n, double m, double scale,
                        double gb) noexcept = nullptr;
  void (*chunk_softmax_bwd)(const T* y, const T* dy, T* dx, std::size_t n, double dot) noexcept = nullptr;
  void (*chunk_log_softmax_bwd)(const T* y, const T* dy, T* dx, std::size_t n, double sum) noexcept = nullptr;

  void (*softmax_bwd)(const T* y, const T* dy, T* dx, Block b) noexcept = nullptr;
  void (*log_softmax_bwd)(const T* y, const T* dy, T* dx, Block b) noexcept = nullptr;
  void (*logsumexp_bwd)(const T* x, const T* lse, const T* dlse, T* dx, Block b) noexcept = nullptr;

  // Forward, backward or fused, selected by which of row_loss / dx are non-null.
  void (*ce_index_i32)(const CeIndexArgs<T, std::int32_t>& a, Block b) noexcept = nullptr;
  void (*ce_index_i64)(const CeIndexArgs<T, std::int64_t>& a, Block b) noexcept = nullptr;
  void (*nll_i32)(const CeIndexArgs<T, std::int32_t>& a, Block b) noexcept = nullptr;
  void (*nll_i64)(const CeIndexArgs<T, std::int64_t>& a, Block b) noexcept = nullptr;
  void (*ce_prob)(const CeProbArgs<T>& a, Block b) noexcept = nullptr;

  void (*bce)(const BceArgs<T>& a, std::size_t n) noexcept = nullptr;
  void (*bce_logits)(const BceArgs<T>& a, std::size_t n) noexcept = nullptr;
  // The sum of n double terms (the elementwise losses of one BCE leaf) in one fixed order, the same
  // bits in every table (T unused): terms 8 apart first, as eight interleaved pairwise sums (lane k
  // adds v[k], v[k + 8], ..., v[k + 8 (m - 1)], m = n / 8, over pairwise_sum's tree of m groups:
  // runs of at most 8 groups in order from 0, longer ones split at m / 2), then the lanes as
  // ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), then the n mod 8 last terms in order.
  double (*sum_terms)(const double* v, std::size_t n) noexcept = nullptr;

  // Forward-only per-row statistics of the softmax (cross_entropy_token_stats), dense per-row
  // outputs as row_loss: lse as logsumexp_fwd computes it (an infinite max replaced by 0),
  // entropy = log S - sum_c e_c (x_c - m) / S with e = exp(x - m) (a -inf logit adds 0; NaN for a
  // row whose max is not finite or that holds a NaN), argmax = the first maximum, the first NaN if
  // any (torch.argmax's rule), -1 for C == 0.
  void (*ce_stats)(const T* x, Block b, double* lse, double* entropy, std::int64_t* argmax) noexcept = nullptr;

  // Target scan for validation (unvalidated input, T unused): the number of t[0..n) that differ
  // from ignore_index; *bad is set when any of those lies outside [0, C).
  std::int64_t (*count_kept_i32)(const std::int32_t* t, std::size_t n, std::int64_t C, std::int64_t ignore_index,
                                 bool* bad) noexcept = nullptr;
  std::int64_t (*count_kept_i64)(const std::int64_t* t, std::size_t n, std::int64_t C, std::int64_t ignore_index,
                                 bool* bad) noexcept = nullptr;

  // Logit soft-capping z = s * tanh(z / s) over n contiguous values, in place (s > 0): the fused
  // linear layer's (linear_cross_entropy.cc). SIMD: Highway's contrib Tanh, a few ulp.
  void (*softcap)(T* z, std::size_t n, T s) noexcept = nullptr;

  // Test hook (tests/kernels/test_tables.cc): y = exp(x) over n values x <= 0, by the SIMD kernels'
  // exponential (exp-inl.h exp_nonpos); the scalar table's is std::exp.
  void (*exp_nonpos)(const T* x, T* y, std::size_t n) noexcept = nullptr;

  // 16-bit tables only (null in the float32 and float64 ones): n values widened exactly to float32,
  // and n float32 values rounded once to nearest even (NaN quieted). The fused linear layer's block
  // conversions (linear_cross_entropy.cc).
  void (*widen_f32)(const T* x, float* y, std::size_t n) noexcept = nullptr;
  void (*narrow_f32)(const float* x, T* y, std::size_t n) noexcept = nullptr;

  // Test hook: y = log1p(x) over n values x in [0, 1], by the SIMD BCE kernels' log1p
  // (log1p-inl.h log1p_unit); the scalar table's is std::log1p.
  void (*log1p_unit)(const T* x, T* y, std::size_t n) noexcept = nullptr;

  // float32 and float64 tables only (null in the 16-bit ones): the dense layer of unsigned-byte
  // inputs (xent train's pixels), without a float copy of them. Row r of X is D bytes at x[r];
  // wt is the weight as C x D (class-major), bias has C values.
  //   byte_affine:      z[r * C + c] = bias[c] + scale * sum_d X[r][d] wt[c * D + d]
  //   byte_affine_grad: gt[c * D + d] = scale * sum_r X[r][d] dz[r * C + c]
  // Each sum is taken in one order fixed by the table (not by which rows share a call or by the
  // thread count); tables differ from each other in the last bits. The scalar twin sums in double.
  void (*byte_affine)(const std::uint8_t* const* x, std::size_t rows, std::size_t D, const T* wt, std::size_t C,
                      T scale, const T* bias, T* z) noexcept = nullptr;
  void (*byte_affine_grad)(const std::uint8_t* const* x, std::size_t rows, std::size_t D, const T* dz,
                           std::size_t C, T scale, T* gt) noexcept = nullptr;

  // BCE with logits, forward, reduced (SIMD tables; null in the scalar ones): sum_terms of the n
  // elementwise losses bce_logits would write (a.elem_loss and a.dx unused), the same bits as that
  // call followed by sum_terms, without the per-element buffer where the sum's tree allows
  // (n = 64 * 2^k: the losses go into the sum's lanes as they are computed). n <= kBceSumMaxTerms.
  double (*bce_logits_sum)(const BceArgs<T>& a, std::size_t n) noexcept = nullptr;
};
inline constexpr std::size_t kBceSumMaxTerms = 1024;

// The portable scalar tables (always available; the fallback and the fast paths' twin). The
// bfloat16 and float16 tables read and write 16-bit values and compute as the float32 one does
// (double inside, one rounding of each result).
const KernelTable<float>& scalar_table_f32() noexcept;
const KernelTable<double>& scalar_table_f64() noexcept;
const KernelTable<BF16>& scalar_table_bf16() noexcept;
const KernelTable<F16>& scalar_table_f16() noexcept;

// The active tables, chosen by runtime dispatch (dispatch.cc).
const KernelTable<float>& active_table_f32() noexcept;
const KernelTable<double>& active_table_f64() noexcept;
const KernelTable<BF16>& active_table_bf16() noexcept;
const KernelTable<F16>& active_table_f16() noexcept;

template <class T> const KernelTable<T>& active_table() noexcept;
template <> inline const KernelTable<float>& active_table<float>() noexcept { return active_table_f32(); }
template <> inline const KernelTable<double>& active_table<double>() noexcept { return active_table_f64(); }
template <> inline const KernelTable<BF16>& active_table<BF16>() noexcept { return active_table_bf16(); }
template <> inline const KernelTable<F16>& active_table<F16>() noexcept { return active_table_f16(); }

}  // namespace xent::cpu
