// linear_cross_entropy.cc: the fused linear layer + cross-entropy (include/xent/linear_cross_entropy.h).
//
// What it is: a blocked driver. For each block of token_block tokens it forms the logits of one
// block of vocab_block classes with the BLAS, turns them into per-token logsumexp (the kernel
// table's vectorised logsumexp), and, for the gradient, into dlogits = d loss / d logits in place,
// which two more BLAS products turn into dhidden and dweight. When vocab_block covers the whole
// vocabulary the logits are kept and reused (three products, as the unfused computation has);
// otherwise a first sweep over the vocabulary blocks combines their logsumexps online and a
// second sweep recomputes each block's logits to form its gradient (four products), as Cut
// Cross-Entropy and Liger do on the GPU. bfloat16 / float16 inputs run the same driver in float32,
// widening the 16-bit values by blocks into the same BLAS calls ("16-bit inputs" below). What it
// is not: a general GEMM or an autograd.
//
// Shapes: N tokens, H hidden features, V classes; Nb/Vb the block sizes, n0/v0 a block's first
// token/class. Formulas (docs/linear_cross_entropy.md): with p = softmax(z), w the class
// weights (1 without), W = sum(w), e = label_smoothing, lam = lse_square_scale, per kept token
//     loss = (1-e) w_t (lse - z_t) + (e/V) (W lse - sum_j w_j z_j) + lam lse^2
//     dz_j = p_j [g_ce ((1-e) w_t + e W / V) + 2 g_z lam lse] - g_ce (1-e) w_t [j == t]
//            - g_ce (e/V) w_j
// where g_ce, g_z are the upstream gradient of that token's loss terms (g / divisor for kMean)
// and, with soft-capping z = s tanh(a / s), da = dz (1 - (z/s)^2).
// Determinism: every per-token and per-class reduction runs in a fixed order, and all work (the
// products included: fixed output tiles, one single-threaded BLAS call each) is split into tasks
// whose shapes depend on the problem alone, so the bits do not depend on the thread count.
#include "xent/linear_cross_entropy.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "blas_threads.h"
#include "cpu/kernels.h"
#include "frontend.h"
#include "half.h"
#include "parallel.h"
#include "xent/runtime.h"

namespace xent {
namespace {

constexpr std::size_t kAlign = 64;
constexpr std::int64_t kRowsPerTask = 4;      // rows of a block handled by one parallel task
constexpr std::int64_t kColsPerTask = 2048;   // classes of the bias gradient per task
constexpr std::int64_t kChunk = 256;          // row elements converted to gradient at a time
constexpr std::int64_t kMaxAutoTokenBlock = 256;
constexpr std::int64_t kMinFullRowTokenBlock = 64;
constexpr std::int64_t kRecomputeTokenBlock = 256;

std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Byte layout of the workspace: the logits block, per-token vectors, the bias accumulator, and for
// 16-bit inputs the float32 blocks they are widened into (layout_half).
struct Layout {
  std::size_t logits = 0;  // Nb * Vb * sizeof(T)
  std::size_t rows = 0;    // per-token: 3 doubles + 2 T
  std::size_t dbias = 0;   // V doubles (always reserved, so the size does not depend on outputs)
  // 16-bit inputs only (T = float):
  std::size_t hblk = 0;    // Nb * H floats: the token block's hidden rows, widened
  std::size_t dhacc = 0;   // Nb * H floats: the token block's dhidden, summed over vocabulary blocks
  std::size_t vecs = 0;    // 2 V floats: bias and class weights, widened
  std::size_t conv = 0;    // weight slices of the tiles being multiplied, widened (conv_floats)
  std::size_t total() const { return logits + rows + dbias + hblk + dhacc + vecs + conv; }
};

Layout layout_for(std::int64_t Nb, std::int64_t Vb, std::int64_t V, std::size_t elem) {
  Layout l;
  l.logits = align_up(static_cast<std::size_t>(Nb) * static_cast<std::size_t>(Vb) * elem);
  l.rows = align_up(static_cast<std::size_t>(Nb) * (3 * sizeof(double) + 2 * elem) + 5 * kAlign);
  l.dbias = align_up(static_cast<std::size_t>(V) * sizeof(double));
  return l;
}

std::int64_t round_down(std::int64_t x, std::int64_t m) { return x / m * m; }

// ---- BLAS ---------------------------------------------------------------------------------------

// C (m x n, ldc) = alpha * op(A) op(B) + beta * C, row-major. k == 0 is handled here because
// BLAS implementations disagree on whether beta still scales C then.
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* A, std::int64_t lda,
          const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) C[i * ldc + j] = beta == 0 ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const double* A, std::int64_t lda,
          const double* B, std::int64_t ldb, double beta, double* C, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) C[i * ldc + j] = beta == 0 ? 0.0 : beta * C[i * ldc + j];
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), 1.0, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

// C = op(A) op(B) + beta C split into fixed tiles of at most tm x tn outputs, one single-threaded
// BLAS call per tile, spread over xent's pool. The BLAS's own threading is not used because it
// does not give the same bits for different thread counts (its edge kernels and K blocking depend
// on the split); with tiles fixed by the shapes alone, every element is computed by the same
// calls whatever the thread count. No dot product is split, so no partial sums are combined.
template <class T>
void gemm_tiled(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* A, std::int64_t lda,
                const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc, std::int64_t tm, std::int64_t tn) {
  if (m == 0 || n == 0) return;
  tm = std::clamp<std::int64_t>(tm, 1, m);
  tn = std::clamp<std::int64_t>(tn, 1, n);
  const std::int64_t nt_m = (m + tm - 1) / tm, nt_n = (n + tn - 1) / tn;
  detail::parallel_for(static_cast<std::size_t>(nt_m * nt_n), [&](std::size_t task) {
    const std::int64_t i0 = static_cast<std::int64_t>(task) / nt_n * tm;
    const std::int64_t j0 = static_cast<std::int64_t>(task) % nt_n * tn;
    const std::int64_t mm = std::min(tm, m - i0), nn = std::min(tn, n - j0);
    const T* a = ta ? A + i0 : A + i0 * lda;  // op(A) rows i0.. are columns of a transposed A
    const T* b = tb ? B + j0 * ldb : B + j0;
    gemm(ta, tb, mm, nn, k, a, lda, b, ldb, beta, C + i0 * ldc + j0, ldc);
  });
}

// Tile shapes of the three products (outputs per single-threaded BLAS call); measured on 2-core
// Zen with OpenBLAS 0.3.21's Haswell kernels, see docs/linear_cross_entropy.md.
constexpr std::int64_t kLogitsTileN = 1024;  // logits: all token rows x 1024 classes
constexpr std::int64_t kDhTileN = 256;       // dhidden: all token rows x 256 features,
constexpr std::int64_t kDhChunkK = 2048;     //   summed over chunks of 2048 classes (beta = 1)
constexpr std::int64_t kDwTileM = 1024;      // dweight: 1024 classes x all features

// ---- 16-bit inputs ------------------------------------------------------------------------------
// bfloat16 / float16 hidden and weight run the float32 driver below with the same BLAS calls as the
// float32 layer makes on the exactly widened values, so the results are the float32 layer's bits.
// The 16-bit values are widened by blocks, never whole: the token block's hidden rows once per
// token block (Nb x H floats), and for each BLAS tile that reads the weight, the tile's slice of it
// just before the call (logits: min(1024, Vb) rows x H; dhidden: min(2048, Vb) rows x min(256, H)
// columns).
// Not OpenBLAS's sbgemm: Debian 12's OpenBLAS 0.3.21 does not export cblas_sbgemm (and its
// products would not be the float32 layer's bits).

// Exact widening of n 16-bit values (bfloat16: the upper half of a float32; float16: IEEE binary16),
// by the active kernel table (vectorised; the scalar twin under XENT_ISA=scalar: the same values).
void widen(const std::uint16_t* src, float* dst, std::size_t n, bool brain) {
  if (brain)
    cpu::active_table<detail::BF16>().widen_f32(reinterpret_cast<const detail::BF16*>(src), dst, n);
  else
    cpu::active_table<detail::F16>().widen_f32(reinterpret_cast<const detail::F16*>(src), dst, n);
}

float widen1(std::uint16_t v, bool brain) {
  float f;
  widen(&v, &f, 1, brain);
  return f;
}

// rows x cols values of a row-major 16-bit matrix (leading dimension ld_src) widened into dst (ld_dst).
void widen_2d(const std::uint16_t* src, std::int64_t ld_src, std::int64_t rows, std::int64_t cols, float* dst,
              std::int64_t ld_dst, bool brain) {
  for (std::int64_t r = 0; r < rows; ++r)
    widen(src + r * ld_src, dst + r * ld_dst, static_cast<std::size_t>(cols), brain);
}

// One float32 result rounded once to the 16-bit type, to nearest even (what to_bfloat16 /
// to_float16 give for a float: the value is exact in double, so their round-to-odd step is a no-op).
std::uint16_t narrow1(float f, bool brain) {
  return brain ? detail::bf16_bits_from_float(f) : detail::f16_bits_from_float(f);
}

// n float32 values rounded into 16 bits, split into fixed chunks over the pool.
void narrow_parallel(const float* src, std::uint16_t* dst, std::size_t n, bool brain) {
  constexpr std::size_t kPiece = std::size_t{1} << 16;
  detail::parallel_for((n + kPiece - 1) / kPiece, [&](std::size_t task) {
    const std::size_t i0 = task * kPiece, i1 = std::min(n, i0 + kPiece);
    if (brain)
      cpu::active_table<detail::BF16>().narrow_f32(src + i0, reinterpret_cast<detail::BF16*>(dst) + i0, i1 - i0);
    else
      cpu::active_table<detail::F16>().narrow_f32(src + i0, reinterpret_cast<detail::F16*>(dst) + i0, i1 - i0);
  });
}

// Floats of the weight-slice buffer for `slots` tiles at a time (at least one of each product).
std::size_t conv_floats(std::int64_t Vb, std::int64_t H, std::int64_t slots) {
  const auto logits_task = static_cast<std::size_t>(std::min(kLogitsTileN, Vb)) * static_cast<std::size_t>(H);
  const auto dh_task = static_cast<std::size_t>(std::min(kDhChunkK, Vb)) * static_cast<std::size_t>(std::min(kDhTileN, H));
  const std::int64_t logits_tiles = (Vb + kLogitsTileN - 1) / kLogitsTileN;
  const std::int64_t dh_tiles = std::max<std::int64_t>((H + kDhTileN - 1) / kDhTileN, 1);
  return std::max(static_cast<std::size_t>(std::clamp<std::int64_t>(slots, 1, logits_tiles)) * logits_task,
                  static_cast<std::size_t>(std::clamp<std::int64_t>(slots, 1, dh_tiles)) * dh_task);
}

// The 16-bit workspace: the float32 one plus the widened blocks, the weight slices for `slots`
// tiles at a time (slots = the pool's thread count when planned; any count >= 1 gives the same bits).
Layout layout_half(std::int64_t Nb, std::int64_t Vb, std::int64_t V, std::int64_t H, std::int64_t slots) {
  Layout l = layout_for(Nb, Vb, V, sizeof(float));
  const std::size_t block = static_cast<std::size_t>(Nb) * static_cast<std::size_t>(H) * sizeof(float);
  l.hblk = align_up(block);
  l.dhacc = align_up(block);
  l.vecs = 2 * align_up(static_cast<std::size_t>(V) * sizeof(float));
  l.conv = align_up(conv_floats(Vb, H, slots) * sizeof(float));
  return l;
}

// gemm_tiled's tiles (op(A) float32, B the 16-bit weight), each tile's slice of B widened into its
// own slot of `conv` just before the tile's BLAS call. The calls are gemm_tiled's (the same
// shapes, tiles and float values; only B's address and leading dimension differ, which the BLAS's
// packing reads past), so the results are the float32 layer's bits. Tiles run in waves of as many
// as `conv` holds slices; the waves change no result.
void gemm_tiled_b16(bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* A, std::int64_t lda,
                    const std::uint16_t* B, std::int64_t ldb, bool brain, float beta, float* C, std::int64_t ldc,
                    std::int64_t tm, std::int64_t tn, float* conv, std::size_t conv_n) {
  if (m == 0 || n == 0) return;
  tm = std::clamp<std::int64_t>(tm, 1, m);
  tn = std::clamp<std::int64_t>(tn, 1, n);
  const std::int64_t nt_m = (m + tm - 1) / tm, nt_n = (n + tn - 1) / tn;
  const std::size_t tasks = static_cast<std::size_t>(nt_m * nt_n);
  const std::size_t per = static_cast<std::size_t>(tn) * static_cast<std::size_t>(k);  // one slice's floats
  const std::size_t wave = per == 0 ? tasks : std::clamp<std::size_t>(conv_n / per, 1, tasks);
  for (std::size_t w0 = 0; w0 < tasks; w0 += wave) {
    detail::parallel_for(std::min(wave, tasks - w0), [&](std::size_t i) {
      const std::size_t task = w0 + i;
      const std::int64_t i0 = static_cast<std::int64_t>(task) / nt_n * tm;
      const std::int64_t j0 = static_cast<std::int64_t>(task) % nt_n * tn;
      const std::int64_t mm = std::min(tm, m - i0), nn = std::min(tn, n - j0);
      float* slot = conv + i * per;
      if (tb) {  // op(B) = B^T: rows j0.. of B (nn x k)
        widen_2d(B + j0 * ldb, ldb, nn, k, slot, k, brain);
        gemm(false, true, mm, nn, k, A + i0 * lda, lda, slot, std::max<std::int64_t>(k, 1), beta, C + i0 * ldc + j0,
             ldc);
      } else {  // columns j0.. of B (k x nn)
        widen_2d(B + j0, ldb, k, nn, slot, nn, brain);
        gemm(false, false, mm, nn, k, A + i0 * lda, lda, slot, nn, beta, C + i0 * ldc + j0, ldc);
      }
    });
  }
}

// ---- validation ---------------------------------------------------------------------------------

std::string shape_str(const Shape& s) { return s.to_string(); }

struct Problem {
  std::int64_t N = 0, H = 0, V = 0;
  DType dtype = DType::kF32;
  bool want_dh = false, want_dw = false, want_db = false;
  bool has_bias = false, has_weight = false, has_dloss = false, has_zloss = false;
};

Status check_options(const LinearCrossEntropyOptions& o) {
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0))
    return invalid_argument("label_smoothing must be in [0, 1], found " + std::to_string(o.label_smoothing));
  if (!(o.lse_square_scale >= 0.0) || !std::isfinite(o.lse_square_scale))
    return invalid_argument("lse_square_scale must be finite and >= 0, found " +
                            std::to_string(o.lse_square_scale));
  if (!(o.softcap >= 0.0) || !std::isfinite(o.softcap))
    return invalid_argument("softcap must be finite and >= 0 (0 disables it), found " + std::to_string(o.softcap));
  if (o.token_block < 0) return invalid_argument("token_block must be >= 0, found " + std::to_string(o.token_block));
  if (o.vocab_block < 0) return invalid_argument("vocab_block must be >= 0, found " + std::to_string(o.vocab_block));
  if (o.reduction != Reduction::kNone && o.reduction != Reduction::kMean && o.reduction != Reduction::kSum)
    return invalid_argument("reduction must be none, mean or sum");
  return ok_status();
}

Status check_float_view(const char* name, ConstTensorView v, DType dtype, const Shape& want) {
  XENT_RETURN_IF_ERROR(detail::check_present(v, name));
  if (v.dtype != dtype)
    return invalid_argument(std::string(name) + " must be " + dtype_name(dtype) + " like hidden, found " +
                            dtype_name(v.dtype));
  if (v.shape != want)
    return invalid_argument(std::string(name) + " must have shape " + shape_str(want) + ", found " +
                            shape_str(v.shape));
  if (v.data == nullptr && want.numel() > 0) return invalid_argument(std::string(name) + " has a null data pointer");
  return ok_status();
}

Status validate(ConstTensorView hidden, ConstTensorView weight, ConstTensorView bias, ConstTensorView target,
                const LinearCrossEntropyOptions& o, ConstTensorView loss, ConstTensorView z_loss,
                ConstTensorView dloss, ConstTensorView dhidden, ConstTensorView dweight, ConstTensorView dbias,
                Problem* p) {
  XENT_RETURN_IF_ERROR(check_options(o));
  if (!is_floating(hidden.dtype))
    return invalid_argument(std::string("hidden must be float32, float64, bfloat16 or float16, found ") +
                            dtype_name(hidden.dtype));
  if (hidden.shape.rank() != 2)
    return invalid_argument("hidden must have shape (N, H), found " + shape_str(hidden.shape));
  if (weight.shape.rank() != 2)
    return invalid_argument("weight must have shape (V, H), found " + shape_str(weight.shape));
  p->dtype = hidden.dtype;
  p->N = hidden.shape[0];
  p->H = hidden.shape[1];
  p->V = weight.shape[0];
  if (p->N < 0 || p->H < 0 || p->V < 0) return invalid_argument("negative dimension");
  if (p->V < 1) return invalid_argument("weight must have at least one row (class), found shape " + shape_str(weight.shape));
  if (weight.shape[1] != p->H)
    return invalid_argument("weight must have shape (V, " + std::to_string(p->H) + ") to match hidden " +
                            shape_str(hidden.shape) + ", found " + shape_str(weight.shape));
  std::int64_t total = 0;
  if (!hidden.shape.numel_checked(&total) || !weight.shape.numel_checked(&total) ||
      p->N > std::numeric_limits<std::int32_t>::max() || p->H > std::numeric_limits<std::int32_t>::max() ||
      p->V > std::numeric_limits<std::int32_t>::max())
    return invalid_argument("shapes too large for the BLAS (each dimension must fit in 32 bits)");
  XENT_RETURN_IF_ERROR(check_float_view("hidden", hidden, p->dtype, hidden.shape));
  XENT_RETURN_IF_ERROR(check_float_view("weight", weight, p->dtype, weight.shape));
  p->has_bias = !bias.empty_view();
  if (p->has_bias) XENT_RETURN_IF_ERROR(check_float_view("bias", bias, p->dtype, Shape{p->V}));
  p->has_weight = !o.class_weight.empty_view();
  if (p->has_weight) XENT_RETURN_IF_ERROR(check_float_view("class_weight", o.class_weight, p->dtype, Shape{p->V}));

  if (target.dtype != DType::kI32 && target.dtype != DType::kI64)
    return invalid_argument(std::string("target must be int32 or int64 class indices, found ") +
                            dtype_name(target.dtype));
  if (target.shape != Shape{p->N})
    return invalid_argument("target must have shape " + shape_str(Shape{p->N}) + " (one class per token), found " +
                            shape_str(target.shape));
  if (target.data == nullptr && p->N > 0) return invalid_argument("target has a null data pointer");
  XENT_RETURN_IF_ERROR(detail::check_present(target, "target"));

  const Shape loss_shape = o.reduction == Reduction::kNone ? Shape{p->N} : Shape{};
  const char* loss_what = o.reduction == Reduction::kNone ? " (reduction none)" : " (a 0-d scalar)";
  if (loss.empty_view() && !(o.reduction == Reduction::kNone && p->N == 0))
    return invalid_argument("loss output is required");
  if (!loss.empty_view()) {
    Status s = check_float_view("loss", loss, p->dtype, loss_shape);
    if (!s.ok()) return invalid_argument(s.message() + loss_what);
  }
  p->has_zloss = !z_loss.empty_view();
  if (p->has_zloss) {
    Status s = check_float_view("z_loss", z_loss, p->dtype, loss_shape);
    if (!s.ok()) return invalid_argument(s.message() + loss_what);
  }
  p->has_dloss = !dloss.empty_view();
  if (p->has_dloss) {
    Status s = check_float_view("dloss", dloss, p->dtype, loss_shape);
    if (!s.ok()) return invalid_argument(s.message() + loss_what);
  }
  p->want_dh = !dhidden.empty_view();
  p->want_dw = !dweight.empty_view();
  p->want_db = !dbias.empty_view();
  if (p->want_dh) XENT_RETURN_IF_ERROR(check_float_view("dhidden", dhidden, p->dtype, hidden.shape));
  // 16-bit inputs may take dweight in float32 (its sum over tokens kept unrounded: the "16-bit inputs" driver).
  const bool dw_f32 = p->want_dw && dweight.dtype == DType::kF32 &&
                      (p->dtype == DType::kBF16 || p->dtype == DType::kF16);
  if (p->want_dw) XENT_RETURN_IF_ERROR(check_float_view("dweight", dweight, dw_f32 ? DType::kF32 : p->dtype, weight.shape));
  if (p->want_db) {
    if (!p->has_bias) return invalid_argument("dbias was requested but there is no bias");
    XENT_RETURN_IF_ERROR(check_float_view("dbias", dbias, p->dtype, Shape{p->V}));
  }

  // Targets: every byte is the caller's; check them all before writing anything.
  for (std::int64_t n = 0; n < p->N; ++n) {
    const std::int64_t t = target.dtype == DType::kI32 ? static_cast<std::int64_t>(target.as<std::int32_t>()[n])
                                                       : target.as<std::int64_t>()[n];
    if (t == o.ignore_index) continue;
    if (t < 0 || t >= p->V)
      return out_of_range("target " + std::to_string(t) + " at position " + std::to_string(n) + " is outside [0, " +
                          std::to_string(p->V) + ") and is not ignore_index (" + std::to_string(o.ignore_index) + ")");
  }
  return ok_status();
}

Result<LinearCrossEntropyPlan> make_plan(std::int64_t N, std::int64_t V, std::size_t elem,
                                         const LinearCrossEntropyOptions& o) {
  LinearCrossEntropyPlan plan;
  const std::int64_t n_cap = std::max<std::int64_t>(N, 1);
  std::int64_t Nb = o.token_block, Vb = o.vocab_block;
  if (Vb >= V) Vb = V;
  if (Nb == 0 || Vb == 0) {
    const std::int64_t budget = static_cast<std::int64_t>(
        std::min<std::size_t>(o.workspace_limit_bytes, std::size_t{1} << 50) / elem);  // elements
    if (Nb == 0 && Vb == 0) {
      // Whole rows if at least kMinFullRowTokenBlock of them fit: no recomputation.
      std::int64_t rows = std::min<std::int64_t>(budget / V, kMaxAutoTokenBlock);
      if (rows >= kMinFullRowTokenBlock || rows >= n_cap) {
        Nb = std::max<std::int64_t>(rows >= 16 ? round_down(rows, 16) : rows, 1);
        Vb = V;
      } else {
        Nb = kRecomputeTokenBlock;
        Vb = std::max<std::int64_t>(round_down(budget / Nb, 64), 256);
      }
    } else if (Nb == 0) {
      Nb = std::clamp<std::int64_t>(budget / Vb, 1, kMaxAutoTokenBlock);
      if (Nb >= 16) Nb = round_down(Nb, 16);
    } else {
      Vb = std::max<std::int64_t>(budget / Nb, 1);
      if (Vb >= 64) Vb = round_down(Vb, 64);
    }
  }
  Nb = std::clamp<std::int64_t>(Nb, 1, n_cap);
  Vb = std::clamp<std::int64_t>(Vb, 1, V);
  plan.token_block = Nb;
  plan.vocab_block = Vb;
  plan.recompute = Vb < V;
  plan.workspace_bytes = layout_for(Nb, Vb, V, elem).total();
  return plan;
}

// ---- the driver ---------------------------------------------------------------------------------

template <class T>
struct Ctx {
  std::int64_t N, H, V, Nb, Vb;
  const T* h;
  const T* w;
  const T* b;
  const T* cw;  // class weights or nullptr
  const void* target;
  bool t64;
  std::int64_t ignore_index;
  Reduction reduction;
  double eps, lam, softcap;
  double weight_sum;   // sum of class weights over V (V without)
  double divisor_ce;   // kMean: sum of picked weights; else 1
  double divisor_z;    // kMean: kept tokens; else 1
  double g_scalar;     // upstream gradient for kMean / kSum
  const T* dloss;      // kNone: per-token upstream gradient or nullptr
  T* loss;
  T* zloss;
  T* dh;
  T* dw;
  T* db;
  bool want_grad;
  // workspace
  T* Z;               // Nb x Vb logits / dlogits
  double* row_lse;    // per token of the block
  double* row_zt;     // target logit (after capping)
  double* row_smooth; // sum_j w_j z_j
  T* row_lse_t;       // logsumexp of one vocab block / the final one, in T, for the kernels
  T* row_coef_t;      // per-token softmax coefficient, in T
  double* db_acc;     // V
  // 16-bit inputs (T = float; see "16-bit inputs" above): h and w are unused, the 16-bit views are
  // read instead and widened by blocks; the outputs in 16 bits (loss16 .. db16, null when absent)
  // are each rounded once from the float result. dw then points to a float32 accumulator (the
  // caller's float32 dweight, or an allocated one rounded into dw16 at the end); b and cw point
  // to widened copies (V floats each); kNone's dloss is read from dloss16.
  bool half = false;
  bool brain = false;  // bfloat16 (else float16)
  const std::uint16_t* h16 = nullptr;
  const std::uint16_t* w16 = nullptr;
  const std::uint16_t* dloss16 = nullptr;  // kNone's per-token upstream gradient
  std::uint16_t* loss16 = nullptr;
  std::uint16_t* zloss16 = nullptr;
  std::uint16_t* dh16 = nullptr;
  std::uint16_t* dw16 = nullptr;
  std::uint16_t* db16 = nullptr;
  T* hblk = nullptr;     // Nb x H: the token block's hidden rows, widened
  T* dhacc = nullptr;    // Nb x H: the token block's dhidden in float32
  T* conv = nullptr;     // weight slices (gemm_tiled_b16)
  std::size_t conv_n = 0;
};

// Writes one result: rounded once to 16 bits from its T (float) value, or stored as T.
template <class T>
void put(const Ctx<T>& c, T* p, std::uint16_t* p16, std::int64_t i, double v) {
  if (p16 != nullptr)
    p16[i] = narrow1(static_cast<float>(v), c.brain);
  else
    p[i] = static_cast<T>(v);
}

template <class T>
std::int64_t target_at(const Ctx<T>& c, std::int64_t n) {
  return c.t64 ? static_cast<const std::int64_t*>(c.target)[n]
               : static_cast<std::int64_t>(static_cast<const std::int32_t*>(c.target)[n]);
}

template <class T>
double class_w(const Ctx<T>& c, std::int64_t j) {
  return c.cw ? static_cast<double>(c.cw[j]) : 1.0;
}

// The token block's hidden rows [n0, n0+nb) as T: the caller's rows, or (16-bit) hblk, widened
// by widen_hidden_block.
template <class T>
const T* hidden_block(const Ctx<T>& c, std::int64_t n0) {
  return c.half ? c.hblk : c.h + n0 * c.H;
}

template <class T>
void widen_hidden_block(const Ctx<T>& c, std::int64_t n0, std::int64_t nb) {
  if constexpr (std::is_same_v<T, float>) {
    constexpr std::int64_t kRows = 16;
    detail::parallel_for(static_cast<std::size_t>((nb + kRows - 1) / kRows), [&](std::size_t task) {
      const std::int64_t r0 = static_cast<std::int64_t>(task) * kRows, r1 = std::min(nb, r0 + kRows);
      widen(c.h16 + (n0 + r0) * c.H, c.hblk + r0 * c.H, static_cast<std::size_t>((r1 - r0) * c.H), c.brain);
    });
  }
}

// Logits of tokens [n0, n0+nb) x classes [v0, v0+vb) before bias and capping: Z = h W^T.
template <class T>
void compute_logits(const Ctx<T>& c, std::int64_t n0, std::int64_t nb, std::int64_t v0, std::int64_t vb) {
  if constexpr (std::is_same_v<T, float>) {
    if (c.half) {
      gemm_tiled_b16(true, nb, vb, c.H, c.hblk, c.H, c.w16 + v0 * c.H, c.H, c.brain, 0.0f, c.Z, vb, nb, kLogitsTileN,
                     c.conv, c.conv_n);
      return;
    }
  }
  gemm_tiled(false, true, nb, vb, c.H, hidden_block(c, n0), c.H, c.w + v0 * c.H, c.H, T(0), c.Z, vb, nb,
             kLogitsTileN);
}

// Adds the bias and applies the soft-cap to rows [r0, r1) of the block, while they are in cache
// for the row work that follows.
template <class T>
void finish_logits(const Ctx<T>& c, std::int64_t r0, std::int64_t r1, std::int64_t v0, std::int64_t vb) {
  if (!c.b && c.softcap == 0) return;
  const T* bias = c.b ? c.b + v0 : nullptr;
  for (std::int64_t r = r0; r < r1; ++r) {
    T* z = c.Z + r * vb;
    if (bias)
      for (std::int64_t j = 0; j < vb; ++j) z[j] += bias[j];
    if (c.softcap != 0) cpu::active_table<T>().softcap(z, static_cast<std::size_t>(vb), static_cast<T>(c.softcap));
  }
}

// Forward statistics of one vocab block: combines the block's logsumexp into row_lse and picks
// up the target logit and the smoothing sum.
template <class T>
void block_forward_stats(const Ctx<T>& c, std::int64_t n0, std::int64_t nb, std::int64_t v0, std::int64_t vb,
                         bool first) {
  const auto& table = cpu::active_table<T>();
  const std::int64_t tasks = (nb + kRowsPerTask - 1) / kRowsPerTask;
  detail::parallel_for(static_cast<std::size_t>(tasks), [&](std::size_t task) {
    const std::int64_t r0 = static_cast<std::int64_t>(task) * kRowsPerTask;
    const std::int64_t r1 = std::min(nb, r0 + kRowsPerTask);
    finish_logits(c, r0, r1, v0, vb);
    cpu::Block blk;
    blk.n_outer = static_cast<std::size_t>(r1 - r0);
    blk.C = static_cast<std::size_t>(vb);
    table.logsumexp_fwd(c.Z + r0 * vb, c.row_lse_t + r0, blk);
    for (std::int64_t r = r0; r < r1; ++r) {
      const double l = static_cast<double>(c.row_lse_t[r]);
      if (first) {
        c.row_lse[r] = l;
        c.row_zt[r] = 0;
        c.row_smooth[r] = 0;
      } else {
        // Online logsumexp: log(exp(a) + exp(b)) = m + log(exp(a - m) + exp(b - m)), m = max;
        // -inf + -inf stays -inf, NaN propagates.
        const double a = c.row_lse[r];
        const double m = std::max(a, l);
        if (std::isnan(a) || std::isnan(l))
          c.row_lse[r] = std::numeric_limits<double>::quiet_NaN();
        else if (std::isinf(m))
          c.row_lse[r] = m;  // -inf with -inf stays -inf; +inf wins
        else
          c.row_lse[r] = m + std::log(std::exp(a - m) + std::exp(l - m));
      }
      const std::int64_t t = target_at(c, n0 + r);
      if (t == c.ignore_index) continue;
      const T* z = c.Z + r * vb;
      if (t >= v0 && t < v0 + vb) c.row_zt[r] = static_cast<double>(z[t - v0]);
      if (c.eps != 0) {
        // sum_j w_j z_j in double, four independent accumulators in a fixed order.
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        std::int64_t j = 0;
        if (c.cw) {
          const T* wv = c.cw + v0;
          for (; j + 4 <= vb; j += 4) {
            s0 += static_cast<double>(wv[j]) * z[j];
            s1 += static_cast<double>(wv[j + 1]) * z[j + 1];
            s2 += static_cast<double>(wv[j + 2]) * z[j + 2];
            s3 += static_cast<double>(wv[j + 3]) * z[j + 3];
          }
          for (; j < vb; ++j) s0 += static_cast<double>(wv[j]) * z[j];
        } else {
          for (; j + 4 <= vb; j += 4) {
            s0 += z[j];
            s1 += z[j + 1];
            s2 += z[j + 2];
            s3 += z[j + 3];
          }
          for (; j < vb; ++j) s0 += z[j];
        }
        c.row_smooth[r] += (s0 + s1) + (s2 + s3);
      }
    }
  });
}

// Per-token upstream gradients of the CE part and the z-loss part.
template <class T>
void upstream(const Ctx<T>& c, std::int64_t n, double* g_ce, double* g_z) {
  if (c.reduction == Reduction::kNone) {
    const double g = c.dloss16 != nullptr ? static_cast<double>(widen1(c.dloss16[n], c.brain))
                     : c.dloss        ? static_cast<double>(c.dloss[n])
                                      : 1.0;
    *g_ce = g;
    *g_z = g;
  } else {
    *g_ce = c.g_scalar / c.divisor_ce;
    *g_z = c.g_scalar / c.divisor_z;
  }
}

// Turns the logits block into d loss / d (pre-cap) logits in place; ignored tokens get zeros.
// `fresh`: the block was just recomputed and still lacks bias and cap.
template <class T>
void block_dlogits(const Ctx<T>& c, std::int64_t n0, std::int64_t nb, std::int64_t v0, std::int64_t vb,
                   bool fresh) {
  const auto& table = cpu::active_table<T>();
  const std::int64_t tasks = (nb + kRowsPerTask - 1) / kRowsPerTask;
  const double inv_s = c.softcap != 0 ? 1.0 / c.softcap : 0.0;
  detail::parallel_for(static_cast<std::size_t>(tasks), [&](std::size_t task) {
    const std::int64_t r0 = static_cast<std::int64_t>(task) * kRowsPerTask;
    const std::int64_t r1 = std::min(nb, r0 + kRowsPerTask);
    alignas(kAlign) T tmp[kChunk];
    if (fresh) finish_logits(c, r0, r1, v0, vb);
    for (std::int64_t r = r0; r < r1; ++r) {
      T* z = c.Z + r * vb;
      const std::int64_t t = target_at(c, n0 + r);
      if (t == c.ignore_index) {
        std::fill(z, z + vb, T(0));
        continue;
      }
      double g_ce, g_z;
      upstream(c, n0 + r, &g_ce, &g_z);
      const double lse = c.row_lse[r];
      const double wt = class_w(c, t);
      const double coef = g_ce * ((1 - c.eps) * wt + c.eps * c.weight_sum / static_cast<double>(c.V)) +
                          2.0 * g_z * c.lam * lse;
      const T g_target = static_cast<T>(g_ce * (1 - c.eps) * wt);
      const T g_smooth = static_cast<T>(g_ce * c.eps / static_cast<double>(c.V));
      c.row_lse_t[r] = static_cast<T>(lse);
      c.row_coef_t[r] = static_cast<T>(coef);
      const T s_inv = static_cast<T>(inv_s);
      for (std::int64_t j0 = 0; j0 < vb; j0 += kChunk) {
        const std::int64_t len = std::min(kChunk, vb - j0);
        cpu::Block blk;
        blk.C = static_cast<std::size_t>(len);
        // tmp = coef * exp(z - lse) = coef * softmax(z), vectorised by the kernel table.
        table.logsumexp_bwd(z + j0, c.row_lse_t + r, c.row_coef_t + r, tmp, blk);
        if (t >= v0 + j0 && t < v0 + j0 + len) tmp[t - v0 - j0] -= g_target;
        if (c.eps != 0) {
          if (c.cw) {
            const T* wv = c.cw + v0 + j0;
            for (std::int64_t j = 0; j < len; ++j) tmp[j] -= g_smooth * wv[j];
          } else {
            for (std::int64_t j = 0; j < len; ++j) tmp[j] -= g_smooth;
          }
        }
        T* zz = z + j0;
        if (c.softcap != 0) {
          for (std::int64_t j = 0; j < len; ++j) {
            const T u = zz[j] * s_inv;  // tanh(a / s)
            zz[j] = tmp[j] * (T(1) - u * u);
          }
        } else {
          std::memcpy(zz, tmp, static_cast<std::size_t>(len) * sizeof(T));
        }
      }
    }
  });
}

// db_acc[v0 + j] += sum over the block's rows of dZ[r][j], rows in order.
template <class T>
void block_dbias(const Ctx<T>& c, std::int64_t nb, std::int64_t v0, std::int64_t vb) {
  const std::int64_t tasks = (vb + kColsPerTask - 1) / kColsPerTask;
  detail::parallel_for(static_cast<std::size_t>(tasks), [&](std::size_t task) {
    const std::int64_t j0 = static_cast<std::int64_t>(task) * kColsPerTask;
    const std::int64_t j1 = std::min(vb, j0 + kColsPerTask);
    double* acc = c.db_acc + v0;
    for (std::int64_t r = 0; r < nb; ++r) {
      const T* z = c.Z + r * vb;
      for (std::int64_t j = j0; j < j1; ++j) acc[j] += static_cast<double>(z[j]);
    }
  });
}

template <class T>
bool block_all_ignored(const Ctx<T>& c, std::int64_t n0, std::int64_t nb) {
  for (std::int64_t r = 0; r < nb; ++r)
    if (target_at(c, n0 + r) != c.ignore_index) return false;
  return true;
}

template <class T>
void run(Ctx<T>& c) {
  const std::int64_t N = c.N, V = c.V, Nb = c.Nb, Vb = c.Vb;
  const bool recompute = Vb < V;
  const bool want_dh = c.dh != nullptr || c.dh16 != nullptr;
  const bool want_db = c.db != nullptr || c.db16 != nullptr;
  const bool want_zloss = c.zloss != nullptr || c.zloss16 != nullptr;
  double ce_sum = 0, z_sum = 0;
  bool dw_written = false;
  if (want_db) std::fill(c.db_acc, c.db_acc + V, 0.0);

  for (std::int64_t n0 = 0; n0 < N; n0 += Nb) {
    const std::int64_t nb = std::min(Nb, N - n0);
    const bool skip = block_all_ignored(c, n0, nb);
    if (!skip) {
      if (c.half) widen_hidden_block(c, n0, nb);
      // Sweep 1: logsumexp (and, with whole rows, keep the logits for the gradient).
      for (std::int64_t v0 = 0; v0 < V; v0 += Vb) {
        const std::int64_t vb = std::min(Vb, V - v0);
        compute_logits(c, n0, nb, v0, vb);
        block_forward_stats(c, n0, nb, v0, vb, v0 == 0);
      }
    }
    // Losses, in token order.
    for (std::int64_t r = 0; r < nb; ++r) {
      const std::int64_t n = n0 + r;
      const std::int64_t t = target_at(c, n);
      double ce = 0, zl = 0;
      if (t != c.ignore_index) {
        const double lse = c.row_lse[r];
        ce = (1 - c.eps) * class_w(c, t) * (lse - c.row_zt[r]);
        if (c.eps != 0) ce += c.eps / static_cast<double>(V) * (c.weight_sum * lse - c.row_smooth[r]);
        zl = c.lam * lse * lse;
      }
      if (c.reduction == Reduction::kNone) {
        put(c, c.loss, c.loss16, n, ce + zl);
        if (want_zloss) put(c, c.zloss, c.zloss16, n, zl);
      } else {
        ce_sum += ce;
        z_sum += zl;
      }
    }
    if (!c.want_grad) continue;
    if (skip) {
      if (c.dh) std::fill(c.dh + n0 * c.H, c.dh + (n0 + nb) * c.H, T(0));
      if (c.dh16) std::fill(c.dh16 + n0 * c.H, c.dh16 + (n0 + nb) * c.H, std::uint16_t{0});
      continue;
    }
    // Sweep 2: gradient, block by block of the vocabulary. 16-bit: dhidden is summed over the
    // vocabulary blocks in dhacc (float32) and rounded once below.
    const T* hb = hidden_block(c, n0);
    T* dhb = c.half ? c.dhacc : c.dh != nullptr ? c.dh + n0 * c.H : nullptr;
    for (std::int64_t v0 = 0; v0 < V; v0 += Vb) {
      const std::int64_t vb = std::min(Vb, V - v0);
      if (recompute) compute_logits(c, n0, nb, v0, vb);
      block_dlogits(c, n0, nb, v0, vb, recompute);
      if (want_db) block_dbias(c, nb, v0, vb);
      // dhidden += dA W_blk over chunks of kDhChunkK classes, so that a 16-bit tile's weight slice
      // is kDhChunkK x 256 floats whatever Vb (both layers chunk alike: the same calls).
      for (std::int64_t c0 = 0; want_dh && c0 < vb; c0 += kDhChunkK) {
        const std::int64_t kc = std::min(kDhChunkK, vb - c0);
        const T beta = v0 == 0 && c0 == 0 ? T(0) : T(1);
        bool done = false;
        if constexpr (std::is_same_v<T, float>) {
          if (c.half) {
            gemm_tiled_b16(false, nb, c.H, kc, c.Z + c0, vb, c.w16 + (v0 + c0) * c.H, c.H, c.brain, beta, dhb, c.H, nb,
                           kDhTileN, c.conv, c.conv_n);
            done = true;
          }
        }
        if (!done)
          gemm_tiled(false, false, nb, c.H, kc, c.Z + c0, vb, c.w + (v0 + c0) * c.H, c.H, beta, dhb, c.H, nb, kDhTileN);
      }
      if (c.dw)
        gemm_tiled(true, false, vb, c.H, nb, c.Z, vb, hb, c.H, dw_written ? T(1) : T(0), c.dw + v0 * c.H, c.H,
                   kDwTileM, c.H);
    }
    if constexpr (std::is_same_v<T, float>)
      if (c.dh16) narrow_parallel(c.dhacc, c.dh16 + n0 * c.H, static_cast<std::size_t>(nb * c.H), c.brain);
    dw_written = true;
  }
  if (c.dw && !dw_written) std::fill(c.dw, c.dw + V * c.H, T(0));
  if constexpr (std::is_same_v<T, float>)
    if (c.dw16) narrow_parallel(c.dw, c.dw16, static_cast<std::size_t>(V * c.H), c.brain);
  if (want_db)
    for (std::int64_t j = 0; j < V; ++j) put(c, c.db, c.db16, j, c.db_acc[j]);
  if (c.reduction == Reduction::kSum) {
    put(c, c.loss, c.loss16, 0, ce_sum + z_sum);
    if (want_zloss) put(c, c.zloss, c.zloss16, 0, z_sum);
  } else if (c.reduction == Reduction::kMean) {
    const double zm = z_sum / c.divisor_z;
    put(c, c.loss, c.loss16, 0, ce_sum / c.divisor_ce + zm);
    if (want_zloss) put(c, c.zloss, c.zloss16, 0, zm);
  }
}

struct AlignedDelete {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t(kAlign)); }
};

bool is_half(DType dt) { return dt == DType::kBF16 || dt == DType::kF16; }

// T = float with 16-bit views (p.dtype kBF16 / kF16), or T = p.dtype's type.
template <class T>
Status dispatch(const Problem& p, const LinearCrossEntropyInputs& in, const LinearCrossEntropyOptions& o,
                const LinearCrossEntropyOutputs& out) {
  const bool half = is_half(p.dtype);
  auto plan_or = make_plan(p.N, p.V, sizeof(T), o);
  if (!plan_or.ok()) return plan_or.status();
  const LinearCrossEntropyPlan plan = *plan_or;
  const std::int64_t Nb = plan.token_block, Vb = plan.vocab_block;
  // 16-bit: the weight-slice buffer holds one tile of each product at least (min), one per pool
  // thread when the call allocates; a caller's workspace gives it all the bytes it has beyond min.
  const Layout min_lay = half ? layout_half(Nb, Vb, p.V, p.H, 1) : layout_for(Nb, Vb, p.V, sizeof(T));
  Layout lay = half ? layout_half(Nb, Vb, p.V, p.H, detail::pool_threads()) : min_lay;

  std::unique_ptr<std::byte[], AlignedDelete> owned;
  std::byte* ws = static_cast<std::byte*>(o.workspace);
  if (ws != nullptr) {
    if (o.workspace_bytes < min_lay.total())
      return invalid_argument("workspace has " + std::to_string(o.workspace_bytes) + " bytes, this call needs " +
                              std::to_string(min_lay.total()));
    if (reinterpret_cast<std::uintptr_t>(ws) % kAlign != 0)
      return invalid_argument("workspace must be aligned to 64 bytes");
    lay = min_lay;
    if (half) lay.conv += (o.workspace_bytes - min_lay.total()) / kAlign * kAlign;
  } else {
    try {
      owned.reset(new (std::align_val_t(kAlign)) std::byte[lay.total()]);
    } catch (const std::bad_alloc&) {
      return resource_exhausted("cannot allocate the " + std::to_string(lay.total()) +
                                "-byte workspace; lower workspace_limit_bytes or the block sizes");
    }
    ws = owned.get();
  }

  Ctx<T> c{};
  c.N = p.N;
  c.H = p.H;
  c.V = p.V;
  c.Nb = Nb;
  c.Vb = Vb;
  c.half = half;
  c.brain = p.dtype == DType::kBF16;
  c.target = in.target.data;
  c.t64 = in.target.dtype == DType::kI64;
  c.ignore_index = o.ignore_index;
  c.reduction = o.reduction;
  c.eps = o.label_smoothing;
  c.lam = o.lse_square_scale;
  c.softcap = o.softcap;

  std::byte* q = ws;
  c.Z = reinterpret_cast<T*>(q);
  q += lay.logits;
  const std::size_t nb = static_cast<std::size_t>(Nb);
  auto take_d = [&](std::size_t n) {
    auto* r = reinterpret_cast<double*>(q);
    q += align_up(n * sizeof(double));
    return r;
  };
  auto take_t = [&](std::size_t n) {
    auto* r = reinterpret_cast<T*>(q);
    q += align_up(n * sizeof(T));
    return r;
  };
  std::byte* rows_begin = q;
  c.row_lse = take_d(nb);
  c.row_zt = take_d(nb);
  c.row_smooth = take_d(nb);
  c.row_lse_t = take_t(nb);
  c.row_coef_t = take_t(nb);
  q = rows_begin + lay.rows;
  c.db_acc = reinterpret_cast<double*>(q);
  q += lay.dbias;

  // Float32 accumulator of a 16-bit dweight (the sum over token blocks is never rounded to 16
  // bits); the caller's float32 dweight is used directly.
  std::unique_ptr<T[]> dw_acc;
  auto u16 = [](TensorView v) { return v.empty_view() ? nullptr : static_cast<std::uint16_t*>(v.data); };
  if (half) {
    if constexpr (std::is_same_v<T, float>) {
      c.h16 = static_cast<const std::uint16_t*>(in.hidden.data);
      c.w16 = static_cast<const std::uint16_t*>(in.weight.data);
      c.hblk = reinterpret_cast<T*>(q);
      q += lay.hblk;
      c.dhacc = reinterpret_cast<T*>(q);
      q += lay.dhacc;
      T* vecs = reinterpret_cast<T*>(q);
      q += lay.vecs;
      c.conv = reinterpret_cast<T*>(q);
      c.conv_n = lay.conv / sizeof(T);
      const std::size_t V = static_cast<std::size_t>(p.V);
      if (p.has_bias) {
        widen(static_cast<const std::uint16_t*>(in.bias.data), vecs, V, c.brain);
        c.b = vecs;
      }
      if (p.has_weight) {
        T* cw = vecs + align_up(V * sizeof(T)) / sizeof(T);
        widen(static_cast<const std::uint16_t*>(o.class_weight.data), cw, V, c.brain);
        c.cw = cw;
      }
      c.loss16 = u16(out.loss);
      c.zloss16 = p.has_zloss ? u16(out.z_loss) : nullptr;
      c.dh16 = p.want_dh ? u16(out.dhidden) : nullptr;
      if (p.want_dw) {
        if (out.dweight.dtype == DType::kF32) {
          c.dw = out.dweight.as<T>();
        } else {
          try {
            dw_acc.reset(new T[static_cast<std::size_t>(p.V * p.H)]);
          } catch (const std::bad_alloc&) {
            return resource_exhausted("cannot allocate the " + std::to_string(p.V * p.H * 4) +
                                      "-byte float32 accumulator of the 16-bit dweight; pass a float32 dweight");
          }
          c.dw = dw_acc.get();
          c.dw16 = u16(out.dweight);
        }
      }
      c.db16 = p.want_db ? u16(out.dbias) : nullptr;
    }
  } else {
    c.h = in.hidden.as<T>();
    c.w = in.weight.as<T>();
    c.b = p.has_bias ? in.bias.as<T>() : nullptr;
    c.cw = p.has_weight ? o.class_weight.as<T>() : nullptr;
    c.loss = out.loss.as<T>();
    c.zloss = p.has_zloss ? out.z_loss.as<T>() : nullptr;
    c.dh = p.want_dh ? out.dhidden.as<T>() : nullptr;
    c.dw = p.want_dw ? out.dweight.as<T>() : nullptr;
    c.db = p.want_db ? out.dbias.as<T>() : nullptr;
  }
  c.weight_sum = static_cast<double>(p.V);
  if (c.cw) {
    c.weight_sum = 0;
    for (std::int64_t j = 0; j < p.V; ++j) c.weight_sum += static_cast<double>(c.cw[j]);
  }
  // Divisors of the mean, known before any gradient is formed.
  double picked = 0, kept = 0;
  for (std::int64_t n = 0; n < p.N; ++n) {
    const std::int64_t t = target_at(c, n);
    if (t == c.ignore_index) continue;
    picked += class_w(c, t);
    kept += 1;
  }
  c.divisor_ce = o.reduction == Reduction::kMean ? picked : 1.0;
  c.divisor_z = o.reduction == Reduction::kMean ? kept : 1.0;
  c.g_scalar = 1.0;
  c.dloss = nullptr;
  if (p.has_dloss) {
    if (half) {
      const auto* d16 = static_cast<const std::uint16_t*>(in.dloss.data);
      if (o.reduction == Reduction::kNone)
        c.dloss16 = d16;
      else
        c.g_scalar = static_cast<double>(widen1(d16[0], c.brain));
    } else if (o.reduction == Reduction::kNone) {
      c.dloss = in.dloss.as<T>();
    } else {
      c.g_scalar = static_cast<double>(in.dloss.as<T>()[0]);
    }
  }
  c.want_grad = p.want_dh || p.want_dw || p.want_db;

  // One BLAS thread per call; xent's pool runs the tiles (see gemm_tiled). The BLAS setting is
  // process-wide: see SingleThreadedBlas.
  detail::SingleThreadedBlas single;
  run(c);
  return ok_status();
}

}  // namespace

Result<LinearCrossEntropyPlan> linear_cross_entropy_plan(std::int64_t N, std::int64_t H, std::int64_t V,
                                                         DType dtype, const LinearCrossEntropyOptions& options) {
  XENT_RETURN_IF_ERROR(check_options(options));
  if (!is_floating(dtype)) return invalid_argument("dtype must be float32, float64, bfloat16 or float16");
  if (N < 0 || H < 0 || V < 1) return invalid_argument("shapes must have N >= 0, H >= 0, V >= 1");
  // 16-bit calls run the float32 driver on blocks widened into the workspace ("16-bit inputs").
  auto plan = make_plan(N, V, dtype == DType::kF64 ? sizeof(double) : sizeof(float), options);
  if (plan.ok() && is_half(dtype))
    plan->workspace_bytes = layout_half(plan->token_block, plan->vocab_block, V, H, detail::pool_threads()).total();
  return plan;
}

std::size_t linear_cross_entropy_workspace_bytes(std::int64_t N, std::int64_t H, std::int64_t V, DType dtype,
                                                 const LinearCrossEntropyOptions& options) {
  auto plan = linear_cross_entropy_plan(N, H, V, dtype, options);
  return plan.ok() ? plan->workspace_bytes : 0;
}

Status linear_cross_entropy(const LinearCrossEntropyInputs& in, const LinearCrossEntropyOptions& options,
                            const LinearCrossEntropyOutputs& out) {
  return detail::guarded("linear_cross_entropy", [&] {
    Problem p;
    XENT_RETURN_IF_ERROR(validate(in.hidden, in.weight, in.bias, in.target, options, out.loss, out.z_loss, in.dloss,
                                  out.dhidden, out.dweight, out.dbias, &p));
    if (p.dtype == DType::kF64) return dispatch<double>(p, in, options, out);
    return dispatch<float>(p, in, options, out);  // float32, bfloat16, float16
  });
}

}  // namespace xent
