// vocab_parallel.cc: vocabulary-parallel cross-entropy and fused linear + cross-entropy on MPI
// (include/xent/mpi.h). Each rank holds classes [v0, v0 + V_r) of V. Per block of tokens, two
// collectives combine per-token statistics EXACTLY, so the results do not depend on the split:
//   1. MPI_Allreduce(MAX) of int64 keys: the max logit M (an exact max in any order) and, with
//      label smoothing, the largest binary exponent E of the smoothing terms w_j z_j;
//   2. MPI_Allreduce(SUM) of int64 fixed-point limbs: S = sum exp(z_j - M) on a grid of 2^-120,
//      the smoothing sum A = sum w_j z_j on a grid of 2^(E-119), and the target logit's bits
//      (from the one rank that owns it). Integer addition is exact and associative.
// Every rank then forms lse = M + log S and the loss of every token identically, and the
// gradient of its own classes. The per-row arithmetic is the core's exact summation
// (src/exact_sum.h), the same code as single-process cross_entropy with Summation::kExact, so the
// two give the same bits. What it is not: the single-process fast kernels (those sum in floating
// point in their own order, so they agree to rounding, not to the bit).
// Formulas (docs/numerics.md, docs/distributed.md), e = label_smoothing, lam = lse_square_scale,
// w the class weights (1 without), W = sum w:
//     loss = (1-e) w_t (lse - z_t) + (e/V) (W lse - A) + lam lse^2
//     dz_j = p_j [g_ce ((1-e) w_t + e W / V) + 2 g_z lam lse] - g_ce (1-e) w_t [j == t] - g_ce (e/V) w_j
// and with a soft-cap z = s tanh(x / s), dx = dz (1 - (z/s)^2).
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "blas_threads.h"
#include "exact_sum.h"
#include "mpi/common.h"
#include "parallel.h"
#include "reduce.h"
#include "xent/mpi.h"

namespace xent::mpi {
namespace {

namespace ex = xent::detail::exact;
using ex::bits_of;
constexpr std::int64_t kRowsPerTask = 8;

// ---- shared validation --------------------------------------------------------------------------

struct Common {
  std::int64_t N = 0, V = 0, v0 = 0, Vr = 0;
  DType dtype = DType::kF32;
  bool has_cw = false, has_dloss = false, has_zloss = false, want_grad = false;
  std::int64_t token_block = 0;
};

Status check_view(const char* name, ConstTensorView v, DType dt, const Shape& want) {
  if (v.dtype != dt)
    return invalid_argument(std::string(name) + " must be " + dtype_name(dt) + ", found " + dtype_name(v.dtype));
  if (v.shape != want)
    return invalid_argument(std::string(name) + " must have shape " + want.to_string() + ", found " +
                            v.shape.to_string());
  if (v.data == nullptr && want.numel() > 0) return invalid_argument(std::string(name) + " has a null data pointer");
  return ok_status();
}

std::int64_t target_at(const void* t, bool t64, std::int64_t n) {
  return t64 ? static_cast<const std::int64_t*>(t)[n] : static_cast<const std::int32_t*>(t)[n];
}

// Checks what one rank can check alone: options, the slice, targets, output shapes.
Status check_local(Common* c, ConstTensorView target, const VocabShard& shard, const VocabParallelOptions& o,
                   ConstTensorView loss, ConstTensorView z_loss, ConstTensorView dloss) {
  if (!is_floating(c->dtype)) return invalid_argument(std::string("inputs must be float32 or float64, found ") + dtype_name(c->dtype));
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0))
    return invalid_argument("label_smoothing must be in [0, 1], found " + std::to_string(o.label_smoothing));
  if (!(o.lse_square_scale >= 0.0) || !std::isfinite(o.lse_square_scale))
    return invalid_argument("lse_square_scale must be finite and >= 0, found " + std::to_string(o.lse_square_scale));
  if (!(o.softcap >= 0.0) || !std::isfinite(o.softcap))
    return invalid_argument("softcap must be finite and >= 0 (0 disables it), found " + std::to_string(o.softcap));
  if (o.reduction != Reduction::kNone && o.reduction != Reduction::kMean && o.reduction != Reduction::kSum)
    return invalid_argument("reduction must be none, mean or sum");
  if (o.token_block < 0) return invalid_argument("token_block must be >= 0, found " + std::to_string(o.token_block));
  if (shard.vocab_size < 1 || shard.vocab_size > INT32_MAX)
    return invalid_argument("vocab_size must be in [1, 2^31), found " + std::to_string(shard.vocab_size));
  if (shard.first_class < 0 || c->Vr < 0 || shard.first_class + c->Vr > shard.vocab_size)
    return invalid_argument("this rank's classes [" + std::to_string(shard.first_class) + ", " +
                            std::to_string(shard.first_class + c->Vr) + ") are not inside [0, " +
                            std::to_string(shard.vocab_size) + ")");
  c->V = shard.vocab_size;
  c->v0 = shard.first_class;
  c->has_cw = !o.class_weight.empty_view();
  if (c->has_cw) XENT_RETURN_IF_ERROR(check_view("class_weight (this rank's slice)", o.class_weight, c->dtype, Shape{c->Vr}));
  if (target.dtype != DType::kI32 && target.dtype != DType::kI64)
    return invalid_argument(std::string("target must be int32 or int64 class indices, found ") + dtype_name(target.dtype));
  if (target.shape != Shape{c->N})
    return invalid_argument("target must have shape " + Shape{c->N}.to_string() + ", found " + target.shape.to_string());
  if (target.data == nullptr && c->N > 0) return invalid_argument("target has a null data pointer");
  const bool t64 = target.dtype == DType::kI64;
  for (std::int64_t n = 0; n < c->N; ++n) {
    const std::int64_t t = target_at(target.data, t64, n);
    if (t == o.ignore_index) continue;
    if (t < 0 || t >= c->V)
      return out_of_range("target " + std::to_string(t) + " at position " + std::to_string(n) + " is outside [0, " +
                          std::to_string(c->V) + ") and is not ignore_index (" + std::to_string(o.ignore_index) + ")");
  }
  const Shape ls = o.reduction == Reduction::kNone ? Shape{c->N} : Shape{};
  if (loss.empty_view() && !(o.reduction == Reduction::kNone && c->N == 0)) return invalid_argument("loss output is required");
  if (!loss.empty_view()) XENT_RETURN_IF_ERROR(check_view("loss", loss, c->dtype, ls));
  c->has_zloss = !z_loss.empty_view();
  if (c->has_zloss) XENT_RETURN_IF_ERROR(check_view("z_loss", z_loss, c->dtype, ls));
  c->has_dloss = !dloss.empty_view();
  if (c->has_dloss) XENT_RETURN_IF_ERROR(check_view("dloss", dloss, c->dtype, ls));
  return ok_status();
}

// The fingerprint every rank must share; per-rank: the slice.
detail::Fingerprint fingerprint(const Status& local, const Common& c, ConstTensorView target,
                                const VocabParallelOptions& o, ConstTensorView dloss, std::int64_t H, bool has_bias,
                                bool want_dh) {
  detail::Fingerprint fp;
  fp.local = local;
  std::uint64_t th = 0, dh = 0;
  if (local.ok()) {
    th = detail::hash_bytes(target.data, static_cast<std::size_t>(c.N) * dtype_size(target.dtype));
    if (c.has_dloss) dh = detail::hash_bytes(dloss.data, static_cast<std::size_t>(dloss.numel()) * dtype_size(c.dtype));
  }
  auto add = [&](const char* name, std::int64_t v) {
    fp.names.push_back(name);
    fp.shared.push_back(v);
  };
  add("N (tokens)", c.N);
  add("V (vocab_size)", c.V);
  add("dtype", static_cast<std::int64_t>(c.dtype));
  add("target dtype", static_cast<std::int64_t>(target.dtype));
  add("reduction", static_cast<std::int64_t>(o.reduction));
  add("ignore_index", o.ignore_index);
  add("label_smoothing (bits)", bits_of(o.label_smoothing));
  add("lse_square_scale (bits)", bits_of(o.lse_square_scale));
  add("softcap (bits)", bits_of(o.softcap));
  add("class weights present", c.has_cw);
  add("dloss present", c.has_dloss);
  add("gradient requested", c.want_grad);
  add("token_block", c.token_block);
  add("H (hidden features)", H);
  add("bias present", has_bias);
  add("dhidden requested", want_dh);
  add("target hash", static_cast<std::int64_t>(th));
  add("dloss hash", static_cast<std::int64_t>(dh));
  fp.own[0] = c.v0;
  fp.own[1] = c.Vr;
  return fp;
}

// The collective check: fingerprint agreement, then that the slices tile [0, V) in rank order.
Status agree_all(MPI_Comm comm, const detail::Fingerprint& fp) {
  std::vector<std::int64_t> owns;
  XENT_RETURN_IF_ERROR(detail::agree(comm, fp, &owns));
  std::int64_t next = 0;
  const std::size_t K = owns.size() / 2;
  for (std::size_t r = 0; r < K; ++r) {
    if (owns[2 * r] != next)
      return invalid_argument("the ranks' class slices must tile [0, V) in rank order: rank " + std::to_string(r) +
                              " starts at class " + std::to_string(owns[2 * r]) + ", expected " + std::to_string(next));
    next += owns[2 * r + 1];
  }
  if (next != fp.shared[1])
    return invalid_argument("the ranks' class slices cover [0, " + std::to_string(next) + "), expected [0, " +
                            std::to_string(fp.shared[1]) + ")");
  return ok_status();
}

// ---- the engine: exact per-token combine over ranks ------------------------------------------------

template <class T>
struct Engine {
  std::int64_t N = 0, v0 = 0, Vr = 0;
  std::int64_t ld = 0;     // row stride of the logits given to stats() and grad()
  std::vector<double> cw;  // all V class weights (gathered), empty without
  ex::CeParams p;          // the per-call constants of the exact arithmetic (src/exact_sum.h)
  ex::Upstream up;
  const T* dloss = nullptr;  // kNone per-token upstream gradient
  const void* target = nullptr;
  bool t64 = false;
  MPI_Comm comm = MPI_COMM_WORLD;
  std::vector<double> tok_ce, tok_z;  // every token's loss parts
  std::vector<std::int64_t> b1, b2;   // per-block collective buffers
  std::vector<double> lse;            // per token of the block

  std::int64_t tgt(std::int64_t n) const { return target_at(target, t64, n); }

  void setup(const VocabParallelOptions& o, ConstTensorView tv, ConstTensorView dl, std::int64_t n, std::int64_t vocab,
             std::int64_t first, std::int64_t vr, MPI_Comm cm) {
    N = n;
    v0 = first;
    Vr = vr;
    ld = vr;
    p.V = vocab;
    p.cw = cw.empty() ? nullptr : cw.data();
    p.W = ex::weight_total(p.cw, vocab);
    p.eps = o.label_smoothing;
    p.lam = o.lse_square_scale;
    p.cap = o.softcap;
    p.ignore = o.ignore_index;
    target = tv.data;
    t64 = tv.dtype == DType::kI64;
    comm = cm;
    // The mean's divisors, in token order as the single-process library sums them.
    double picked = 0, kept = 0;
    for (std::int64_t i = 0; i < N; ++i) {
      const std::int64_t t = tgt(i);
      if (t == p.ignore) continue;
      picked += p.wt(t);
      kept += 1;
    }
    up.red = o.reduction;
    up.div_ce = o.reduction == Reduction::kMean ? picked : 1.0;
    up.div_z = o.reduction == Reduction::kMean ? kept : 1.0;
    if (!dl.empty_view()) {
      if (o.reduction == Reduction::kNone) dloss = dl.as<T>();
      else up.g = static_cast<double>(dl.as<T>()[0]);
    }
    tok_ce.assign(static_cast<std::size_t>(N), 0.0);
    tok_z.assign(static_cast<std::size_t>(N), 0.0);
  }

  // Every buffer the call needs, allocated before the agreement (common.h: agree_status), so
  // that setup() and the blocks of stats() allocate nothing.
  void reserve(std::int64_t n, std::int64_t token_block) {
    tok_ce.reserve(static_cast<std::size_t>(n));
    tok_z.reserve(static_cast<std::size_t>(n));
    b1.reserve(static_cast<std::size_t>(token_block * ex::kMaxK1));
    b2.reserve(static_cast<std::size_t>(token_block * ex::kMaxK2));
    lse.reserve(static_cast<std::size_t>(token_block));
  }

  // Rows [n0, n0 + nb): x (nb x Vr, row stride ld) are the logits (capped here if apply_cap).
  // Fills lse and the tokens' loss parts. Collective.
  void stats(const T* x, std::int64_t n0, std::int64_t nb, bool apply_cap) {
    const int K1 = p.k1(), K2 = p.k2();
    b1.assign(static_cast<std::size_t>(nb * K1), 0);
    b2.assign(static_cast<std::size_t>(nb * K2), 0);
    lse.assign(static_cast<std::size_t>(nb), 0.0);
    const std::int64_t tasks = (nb + kRowsPerTask - 1) / kRowsPerTask;
    // Pass 1: local max key and, with smoothing, the exponent bound and non-finite flags.
    xent::detail::parallel_for(static_cast<std::size_t>(tasks), [&](std::size_t task) {
      const std::int64_t r0 = static_cast<std::int64_t>(task) * kRowsPerTask, r1 = std::min(nb, r0 + kRowsPerTask);
      for (std::int64_t r = r0; r < r1; ++r) ex::row_pass1(p, x + r * ld, 1, v0, Vr, apply_cap, b1.data() + r * K1);
    });
    {
      detail::CommTimer timer;
      MPI_Allreduce(MPI_IN_PLACE, b1.data(), static_cast<int>(b1.size()), MPI_INT64_T, MPI_MAX, comm);
    }
    // Pass 2: fixed-point sums relative to the global max and exponent bound; the target logit.
    xent::detail::parallel_for(static_cast<std::size_t>(tasks), [&](std::size_t task) {
      const std::int64_t r0 = static_cast<std::int64_t>(task) * kRowsPerTask, r1 = std::min(nb, r0 + kRowsPerTask);
      for (std::int64_t r = r0; r < r1; ++r)
        ex::row_pass2(p, x + r * ld, 1, v0, Vr, apply_cap, b1.data() + r * K1, tgt(n0 + r), b2.data() + r * K2);
    });
    {
      detail::CommTimer timer;
      MPI_Allreduce(MPI_IN_PLACE, b2.data(), static_cast<int>(b2.size()), MPI_INT64_T, MPI_SUM, comm);
    }
    // Every rank: the same lse and loss of every token of the block.
    for (std::int64_t r = 0; r < nb; ++r) {
      const std::int64_t n = n0 + r;
      const ex::RowResult rr = ex::row_result(p, b1.data() + r * K1, b2.data() + r * K2, tgt(n));
      lse[static_cast<std::size_t>(r)] = rr.lse;
      tok_ce[static_cast<std::size_t>(n)] = rr.ce;
      tok_z[static_cast<std::size_t>(n)] = rr.z;
    }
  }

  // d loss / d x for rows [n0, n0 + nb) of this rank's classes into out (may alias x).
  void grad(const T* x, T* out, std::int64_t n0, std::int64_t nb, bool apply_cap) const {
    const std::int64_t tasks = (nb + kRowsPerTask - 1) / kRowsPerTask;
    xent::detail::parallel_for(static_cast<std::size_t>(tasks), [&](std::size_t task) {
      const std::int64_t r0 = static_cast<std::int64_t>(task) * kRowsPerTask, r1 = std::min(nb, r0 + kRowsPerTask);
      for (std::int64_t r = r0; r < r1; ++r) {
        const std::int64_t n = n0 + r;
        double g_ce, g_z;
        up.at(dloss, n, &g_ce, &g_z);
        ex::row_grad(p, x + r * ld, out + r * ld, 1, v0, Vr, apply_cap, tgt(n), lse[static_cast<std::size_t>(r)], g_ce,
                     g_z);
      }
    });
  }

  // Writes the loss (and z-loss): per token for kNone, else the token-order pairwise sums.
  void finish(T* loss, T* zloss) const {
    ex::finish(up.red, tok_ce.data(), tok_z.data(), N, up.div_ce, up.div_z, loss, zloss);
  }
};

// All V class weights on every rank (an O(V) Allgatherv, once per call), as doubles: the buffers
// are allocated first (before the agreement), the exchange after it.
template <class T>
struct ClassWeights {
  std::vector<double> mine, all;
  std::vector<int> counts, displs;
  void allocate(const VocabParallelOptions& o, std::int64_t V, std::int64_t Vr) {
    if (o.class_weight.empty_view()) return;
    int K = 1;
    MPI_Comm_size(o.comm, &K);
    mine.resize(static_cast<std::size_t>(Vr));
    all.resize(static_cast<std::size_t>(V));
    counts.resize(static_cast<std::size_t>(K));
    displs.resize(static_cast<std::size_t>(K));
  }
  std::vector<double> exchange(const VocabParallelOptions& o, std::int64_t Vr) {
    if (o.class_weight.empty_view()) return {};
    const int K = static_cast<int>(counts.size());
    for (std::int64_t j = 0; j < Vr; ++j) mine[static_cast<std::size_t>(j)] = static_cast<double>(o.class_weight.as<T>()[j]);
    const int my = static_cast<int>(Vr);
    MPI_Allgather(&my, 1, MPI_INT, counts.data(), 1, MPI_INT, o.comm);
    for (int r = 1; r < K; ++r) displs[static_cast<std::size_t>(r)] = displs[static_cast<std::size_t>(r - 1)] + counts[static_cast<std::size_t>(r - 1)];
    MPI_Allgatherv(mine.data(), my, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, o.comm);
    return std::move(all);
  }
};

std::int64_t auto_token_block(const VocabParallelOptions& o, std::int64_t N, std::int64_t V, std::size_t elem) {
  std::int64_t tb = o.token_block;
  if (tb == 0) {
    // From the global V (not V_r), so the block, and with it every result, is the same for any
    // number of ranks.
    tb = static_cast<std::int64_t>(std::min<std::size_t>(o.workspace_limit_bytes, std::size_t{1} << 40) /
                                   (static_cast<std::size_t>(V) * elem));
    tb = std::clamp<std::int64_t>(tb >= 16 ? tb / 16 * 16 : tb, 1, 4096);
  }
  return std::clamp<std::int64_t>(tb, 1, std::max<std::int64_t>(N, 1));
}

template <class T>
Status run_ce(const Common& c, ConstTensorView logits, ConstTensorView target, const VocabParallelOptions& o,
              TensorView loss, TensorView z_loss, ConstTensorView dloss, TensorView dlogits) {
  Engine<T> e;
  ClassWeights<T> cws;
  XENT_RETURN_IF_ERROR(detail::agree_status(o.comm, detail::local_step("vocab_parallel_cross_entropy", [&] {
    cws.allocate(o, c.V, c.Vr);
    e.reserve(c.N, c.token_block);
    detail::start_pool_threads();
  }), "vocab_parallel_cross_entropy"));
  e.cw = cws.exchange(o, c.Vr);
  e.setup(o, target, dloss, c.N, c.V, c.v0, c.Vr, o.comm);
  const T* x = logits.as<T>();
  T* dx = dlogits.empty_view() ? nullptr : dlogits.as<T>();
  for (std::int64_t n0 = 0; n0 < c.N; n0 += c.token_block) {
    const std::int64_t nb = std::min(c.token_block, c.N - n0);
    e.stats(x + n0 * c.Vr, n0, nb, true);
    if (dx) e.grad(x + n0 * c.Vr, dx + n0 * c.Vr, n0, nb, true);
  }
  e.finish(loss.empty_view() ? nullptr : loss.as<T>(), c.has_zloss ? z_loss.as<T>() : nullptr);
  return ok_status();
}

// ---- BLAS (the core's tiling: single-threaded calls on fixed tiles over xent's pool) ------------

void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* A, std::int64_t lda,
          const float* B, std::int64_t ldb, float beta, float* C, std::int64_t ldc) {
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) C[i * ldc + j] = beta == 0 ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const double* A, std::int64_t lda,
          const double* B, std::int64_t ldb, double beta, double* C, std::int64_t ldc) {
  if (k == 0) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) C[i * ldc + j] = beta == 0 ? 0.0 : beta * C[i * ldc + j];
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), 1.0, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}
template <class T>
void gemm_tiled(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* A, std::int64_t lda,
                const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc, std::int64_t tm, std::int64_t tn) {
  if (m == 0 || n == 0) return;
  tm = std::clamp<std::int64_t>(tm, 1, m);
  tn = std::clamp<std::int64_t>(tn, 1, n);
  const std::int64_t nt_m = (m + tm - 1) / tm, nt_n = (n + tn - 1) / tn;
  xent::detail::parallel_for(static_cast<std::size_t>(nt_m * nt_n), [&](std::size_t task) {
    const std::int64_t i0 = static_cast<std::int64_t>(task) / nt_n * tm;
    const std::int64_t j0 = static_cast<std::int64_t>(task) % nt_n * tn;
    const std::int64_t mm = std::min(tm, m - i0), nn = std::min(tn, n - j0);
    const T* a = ta ? A + i0 : A + i0 * lda;
    const T* b = tb ? B + j0 * ldb : B + j0;
    gemm(ta, tb, mm, nn, k, a, lda, b, ldb, beta, C + i0 * ldc + j0, ldc);
  });
}

// Class tiles of kClassTile classes at fixed GLOBAL offsets (the last one shorter when V is not a
// multiple): every logit and every dweight row is computed by a BLAS call of the same shape, at
// the same position in it, whatever the number of ranks. (OpenBLAS's sgemm gives an element
// different bits when the call's shape or the element's position in it change: its edge kernels
// differ.) A rank's slice partly covering a tile at either end computes the whole tile from a
// zero-padded copy of its weight rows.
constexpr std::int64_t kClassTile = 256;

template <class T>
Status run_linear(const Common& c, std::int64_t H, ConstTensorView hidden, ConstTensorView weight, ConstTensorView bias,
                  ConstTensorView target, const VocabParallelOptions& o, TensorView loss, TensorView z_loss,
                  ConstTensorView dloss, TensorView dhidden, TensorView dweight, TensorView dbias) {
  Engine<T> e;
  ClassWeights<T> cws;
  const T* h = hidden.as<T>();
  const T* w = weight.as<T>();
  const T* b = bias.empty_view() ? nullptr : bias.as<T>();
  T* dh = dhidden.empty_view() ? nullptr : dhidden.as<T>();
  T* dw = dweight.empty_view() ? nullptr : dweight.as<T>();
  T* db = dbias.empty_view() ? nullptr : dbias.as<T>();
  const std::int64_t Nb = c.token_block, Vr = c.Vr, v0 = c.v0, V = c.V;
  // The tiles [t0, t1) covering this rank's classes; Z holds them all (Nb x Vp).
  const std::int64_t t0 = Vr > 0 ? v0 / kClassTile * kClassTile : v0;
  const std::int64_t t1 = Vr > 0 ? std::min(V, (v0 + Vr + kClassTile - 1) / kClassTile * kClassTile) : v0;
  const std::int64_t Vp = t1 - t0, off = v0 - t0, n_tiles = (Vp + kClassTile - 1) / kClassTile;
  // A tile's weight rows and dweight accumulator: the caller's when the rank owns the whole tile,
  // else a zero-padded copy / scratch.
  struct Tile {
    std::int64_t a, len;  // global first class, width
    const T* w;
    T* dw;
    bool partial;
  };
  std::vector<Tile> tiles;
  std::vector<std::vector<T>> pad_w, pad_dw;
  std::vector<T> Z;
  std::vector<double> db_acc;
  detail::AllreduceBuffers<T> dh_buffers;
  const Status ready = detail::local_step("vocab_parallel_linear_cross_entropy", [&] {
    tiles.resize(static_cast<std::size_t>(n_tiles));
    for (std::int64_t i = 0; i < n_tiles; ++i) {
      Tile& t = tiles[static_cast<std::size_t>(i)];
      t.a = t0 + i * kClassTile;
      t.len = std::min(kClassTile, V - t.a);
      t.partial = t.a < v0 || t.a + t.len > v0 + Vr;
      if (!t.partial) {
        t.w = w + (t.a - v0) * H;
        t.dw = dw ? dw + (t.a - v0) * H : nullptr;
        continue;
      }
      pad_w.emplace_back(static_cast<std::size_t>(t.len * H), T(0));
      for (std::int64_t g = std::max(t.a, v0); g < std::min(t.a + t.len, v0 + Vr); ++g)
        std::copy(w + (g - v0) * H, w + (g - v0 + 1) * H, pad_w.back().begin() + (g - t.a) * H);
      t.w = pad_w.back().data();
      if (dw) {
        pad_dw.emplace_back(static_cast<std::size_t>(t.len * H), T(0));
        t.dw = pad_dw.back().data();
      } else {
        t.dw = nullptr;
      }
    }
    cws.allocate(o, c.V, c.Vr);
    e.reserve(c.N, c.token_block);
    Z.resize(static_cast<std::size_t>(Nb * Vp));
    db_acc.assign(db ? static_cast<std::size_t>(Vr) : 0, 0.0);
    if (dh && c.want_grad) dh_buffers.allocate(static_cast<std::size_t>(c.N * H), o.comm);
    detail::start_pool_threads();
  });
  XENT_RETURN_IF_ERROR(detail::agree_status(o.comm, ready, "vocab_parallel_linear_cross_entropy"));
  e.cw = cws.exchange(o, c.Vr);
  e.setup(o, target, dloss, c.N, c.V, c.v0, c.Vr, o.comm);
  e.ld = Vp;  // the logits of a block sit in Z, Vp wide
  bool dw_written = false;
  // Each product is one task of ours: the BLAS must not start threads of its own (blas_threads.h;
  // shared with linear_cross_entropy, so concurrent calls restore the setting correctly), until return.
  const xent::detail::SingleThreadedBlas single;
  for (std::int64_t n0 = 0; n0 < c.N; n0 += Nb) {
    const std::int64_t nb = std::min(Nb, c.N - n0);
    xent::detail::parallel_for(static_cast<std::size_t>(n_tiles), [&](std::size_t i) {
      const Tile& t = tiles[i];
      gemm(false, true, nb, t.len, H, h + n0 * H, H, t.w, H, T(0), Z.data() + (t.a - t0), Vp);
    });
    T* zo = Z.data() + off;
    xent::detail::parallel_for(static_cast<std::size_t>((nb + kRowsPerTask - 1) / kRowsPerTask), [&](std::size_t task) {
      const std::int64_t r0 = static_cast<std::int64_t>(task) * kRowsPerTask, r1 = std::min(nb, r0 + kRowsPerTask);
      for (std::int64_t r = r0; r < r1; ++r) {
        T* z = zo + r * Vp;
        for (std::int64_t j = 0; j < Vr; ++j) {
          if (b) z[j] += b[j];
          if (o.softcap != 0) z[j] = static_cast<T>(o.softcap * std::tanh(static_cast<double>(z[j]) / o.softcap));
        }
      }
    });
    e.stats(zo, n0, nb, false);
    if (!c.want_grad) continue;
    e.grad(zo, zo, n0, nb, false);
    // Columns of the padded tiles that belong to other ranks: zero, so they add nothing.
    for (std::int64_t r = 0; r < nb; ++r) {
      std::fill(Z.data() + r * Vp, Z.data() + r * Vp + off, T(0));
      std::fill(Z.data() + r * Vp + off + Vr, Z.data() + (r + 1) * Vp, T(0));
    }
    if (db)
      for (std::int64_t r = 0; r < nb; ++r)
        for (std::int64_t j = 0; j < Vr; ++j) db_acc[static_cast<std::size_t>(j)] += static_cast<double>(zo[r * Vp + j]);
    if (dh) gemm_tiled(false, false, nb, H, Vr, zo, Vp, w, H, T(0), dh + n0 * H, H, nb, 256);
    if (dw) {
      xent::detail::parallel_for(static_cast<std::size_t>(n_tiles), [&](std::size_t i) {
        const Tile& t = tiles[i];
        gemm(true, false, t.len, H, nb, Z.data() + (t.a - t0), Vp, h + n0 * H, H, dw_written ? T(1) : T(0), t.dw, H);
      });
      dw_written = true;
    }
  }
  // dhidden: this rank's partial for every token, then ONE rank-ordered all-reduce per call (not
  // per token block: fewer rounds of latency, the same bits).
  if (dh && c.want_grad)
    detail::allreduce_ordered(dh, static_cast<std::size_t>(c.N * H), o.comm, &dh_buffers);
  if (dw && !dw_written) std::fill(dw, dw + Vr * H, T(0));
  if (dw && dw_written)
    for (const Tile& t : tiles)
      if (t.partial)
        for (std::int64_t g = std::max(t.a, v0); g < std::min(t.a + t.len, v0 + Vr); ++g)
          std::copy(t.dw + (g - t.a) * H, t.dw + (g - t.a + 1) * H, dw + (g - v0) * H);
  if (db)
    for (std::int64_t j = 0; j < Vr; ++j) db[j] = static_cast<T>(db_acc[static_cast<std::size_t>(j)]);
  e.finish(loss.empty_view() ? nullptr : loss.as<T>(), c.has_zloss ? z_loss.as<T>() : nullptr);
  return ok_status();
}

}  // namespace

Status vocab_parallel_cross_entropy(ConstTensorView logits, ConstTensorView target, const VocabShard& shard,
                                    const VocabParallelOptions& options, TensorView loss, TensorView z_loss,
                                    ConstTensorView dloss, TensorView dlogits) {
  XENT_RETURN_IF_ERROR(check_initialized());
  Common c;
  Status local = ok_status();
  detail::Fingerprint fp;
  // Validation and the fingerprint allocate: a rank that runs out of memory here reports it
  // through the agreement instead of leaving the others waiting in it.
  Status built = detail::local_step("vocab_parallel_cross_entropy", [&] {
    c.dtype = logits.dtype;
    if (logits.shape.rank() != 2) {
      local = invalid_argument("logits must have shape (N, V_r) (this rank's classes), found " + logits.shape.to_string());
    } else {
      c.N = logits.shape[0];
      c.Vr = logits.shape[1];
      local = check_local(&c, target, shard, options, loss, z_loss, dloss);
      if (local.ok()) local = check_view("logits", logits, c.dtype, logits.shape);
      c.want_grad = !dlogits.empty_view();
      if (local.ok() && c.want_grad) local = check_view("dlogits", dlogits, c.dtype, logits.shape);
    }
    // The logits exist already; the block only bounds the per-token buffers (112 bytes a token)
    // and sets how many tokens share a collective. Independent of the rank count.
    c.token_block = options.token_block > 0 ? std::min<std::int64_t>(options.token_block, std::max<std::int64_t>(c.N, 1))
                                            : std::clamp<std::int64_t>(c.N, 1, 8192);
    fp = fingerprint(local, c, target, options, dloss, 0, false, false);
  });
  if (!built.ok()) fp.local = std::move(built);
  XENT_RETURN_IF_ERROR(xent::detail::guarded("agree_all", [&]() -> Status { return agree_all(options.comm, fp); }));
  return detail::collective_guarded(options.comm, [&]() -> Status {
    if (c.dtype == DType::kF32) return run_ce<float>(c, logits, target, options, loss, z_loss, dloss, dlogits);
    return run_ce<double>(c, logits, target, options, loss, z_loss, dloss, dlogits);
  });
}

Status vocab_parallel_linear_cross_entropy(ConstTensorView hidden, ConstTensorView weight, ConstTensorView bias,
                                           ConstTensorView target, const VocabShard& shard,
                                           const VocabParallelOptions& options, TensorView loss, TensorView z_loss,
                                           ConstTensorView dloss, TensorView dhidden, TensorView dweight,
                                           TensorView dbias) {
  XENT_RETURN_IF_ERROR(check_initialized());
  Common c;
  Status local = ok_status();
  std::int64_t H = 0;
  detail::Fingerprint fp;
  // Validation and the fingerprint allocate: a rank that runs out of memory here reports it
  // through the agreement instead of leaving the others waiting in it.
  Status built = detail::local_step("vocab_parallel_linear_cross_entropy", [&] {
    c.dtype = hidden.dtype;
    if (hidden.shape.rank() != 2) {
      local = invalid_argument("hidden must have shape (N, H), found " + hidden.shape.to_string());
    } else if (weight.shape.rank() != 2 || weight.shape[1] != hidden.shape[1]) {
      local = invalid_argument("weight must have shape (V_r, " + std::to_string(hidden.shape[1]) +
                               ") (this rank's rows), found " + weight.shape.to_string());
    } else {
      c.N = hidden.shape[0];
      H = hidden.shape[1];
      c.Vr = weight.shape[0];
      local = check_local(&c, target, shard, options, loss, z_loss, dloss);
      if (local.ok()) local = check_view("hidden", hidden, c.dtype, hidden.shape);
      if (local.ok()) local = check_view("weight", weight, c.dtype, weight.shape);
      if (local.ok() && !bias.empty_view()) local = check_view("bias (this rank's slice)", bias, c.dtype, Shape{c.Vr});
      if (local.ok() && !dhidden.empty_view()) local = check_view("dhidden", dhidden, c.dtype, hidden.shape);
      if (local.ok() && !dweight.empty_view()) local = check_view("dweight", dweight, c.dtype, weight.shape);
      if (local.ok() && !dbias.empty_view()) {
        if (bias.empty_view()) local = invalid_argument("dbias was requested but there is no bias");
        else local = check_view("dbias", dbias, c.dtype, Shape{c.Vr});
      }
      if (local.ok() && (c.N > INT32_MAX || H > INT32_MAX)) local = invalid_argument("N and H must fit in 32 bits");
      c.want_grad = !dhidden.empty_view() || !dweight.empty_view() || !dbias.empty_view();
    }
    c.token_block = local.ok() ? auto_token_block(options, c.N, std::max<std::int64_t>(c.V, 1), dtype_size(c.dtype)) : 0;
    fp = fingerprint(local, c, target, options, dloss, H, !bias.empty_view(), !dhidden.empty_view());
  });
  if (!built.ok()) fp.local = std::move(built);
  XENT_RETURN_IF_ERROR(xent::detail::guarded("agree_all", [&]() -> Status { return agree_all(options.comm, fp); }));
  return detail::collective_guarded(options.comm, [&]() -> Status {
    if (c.dtype == DType::kF32)
      return run_linear<float>(c, H, hidden, weight, bias, target, options, loss, z_loss, dloss, dhidden, dweight, dbias);
    return run_linear<double>(c, H, hidden, weight, bias, target, options, loss, z_loss, dloss, dhidden, dweight, dbias);
  });
}

}  // namespace xent::mpi
