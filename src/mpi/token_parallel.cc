// token_parallel.cc: token (data) parallel fused linear + cross-entropy (include/xent/mpi.h):
// each rank runs the single-process linear_cross_entropy on its own tokens with the replicated
// weight, and the ranks combine the loss (K scalars) and dweight/dbias (V x H, V) in rank order.
// Not bit-identical across rank counts (each rank's sums are its own); deterministic for one.
#include <cmath>
#include <cstring>
#include <vector>

#include "mpi/common.h"
#include "xent/linear_cross_entropy.h"
#include "xent/mpi.h"

namespace xent::mpi {
namespace {

// The one place that calls the single-process layer.
Status local_linear_ce(ConstTensorView hidden, ConstTensorView weight, ConstTensorView bias, ConstTensorView target,
                       const LinearCrossEntropyOptions& o, TensorView loss, TensorView z_loss, ConstTensorView dloss,
                       TensorView dhidden, TensorView dweight, TensorView dbias) {
  return linear_cross_entropy({.hidden = hidden, .weight = weight, .bias = bias, .target = target, .dloss = dloss}, o,
                              {.loss = loss, .z_loss = z_loss, .dhidden = dhidden, .dweight = dweight, .dbias = dbias});
}

std::int64_t target_at(ConstTensorView t, std::int64_t n) {
  return t.dtype == DType::kI64 ? t.as<std::int64_t>()[n] : t.as<std::int32_t>()[n];
}

template <class T>
Status run(ConstTensorView hidden, ConstTensorView weight, ConstTensorView bias, ConstTensorView target,
           const VocabParallelOptions& o, TensorView loss, TensorView z_loss, ConstTensorView dloss,
           TensorView dhidden, TensorView dweight, TensorView dbias, double picked_local, double kept_local) {
  int K = 1;
  MPI_Comm_size(o.comm, &K);
  // Global divisors: the ranks' local ones added in rank order. The buffers first (common.h:
  // agree_status).
  double mine[2] = {picked_local, kept_local};
  std::vector<double> all, sums;
  XENT_RETURN_IF_ERROR(detail::agree_status(o.comm, detail::local_step("token_parallel_linear_cross_entropy", [&] {
    all.resize(2 * static_cast<std::size_t>(K));
    sums.resize(2 * static_cast<std::size_t>(K));
  }), "token_parallel_linear_cross_entropy"));
  MPI_Allgather(mine, 2, MPI_DOUBLE, all.data(), 2, MPI_DOUBLE, o.comm);
  double picked = 0, kept = 0;
  for (int r = 0; r < K; ++r) {
    picked += all[2 * static_cast<std::size_t>(r)];
    kept += all[2 * static_cast<std::size_t>(r) + 1];
  }
  LinearCrossEntropyOptions lo;
  lo.class_weight = o.class_weight;
  lo.ignore_index = o.ignore_index;
  lo.label_smoothing = o.label_smoothing;
  lo.lse_square_scale = o.lse_square_scale;
  lo.softcap = o.softcap;
  lo.workspace_limit_bytes = o.workspace_limit_bytes;
  const bool none = o.reduction == Reduction::kNone;
  lo.reduction = none ? Reduction::kNone : Reduction::kSum;
  // kMean: the local sum with upstream g / (global divisor); the z-loss shares the divisor only
  // when picked == kept (no class weights), which the caller checked.
  T g = T(1);
  if (!none && !dloss.empty_view()) g = dloss.as<T>()[0];
  const double gscale = o.reduction == Reduction::kMean ? static_cast<double>(g) / picked : static_cast<double>(g);
  T g_local = static_cast<T>(gscale);
  T loss_local = 0, z_local = 0;
  TensorView lv = none ? loss : TensorView(&loss_local, Shape{});
  TensorView zv = none ? z_loss : TensorView(&z_local, Shape{});
  ConstTensorView dl = none ? dloss : ConstTensorView(&g_local, Shape{});
  // A rank whose single-process call fails (its outputs' shapes, say) makes every rank fail.
  detail::Fingerprint after;
  after.local = local_linear_ce(hidden, weight, bias, target, lo, lv, zv, dl, dhidden, dweight, dbias);
  XENT_RETURN_IF_ERROR(detail::agree(o.comm, after, nullptr));
  if (!none) {
    double pair[2] = {static_cast<double>(loss_local), static_cast<double>(z_local)};
    MPI_Allgather(pair, 2, MPI_DOUBLE, sums.data(), 2, MPI_DOUBLE, o.comm);
    double l = 0, z = 0;
    for (int r = 0; r < K; ++r) {
      l += sums[2 * static_cast<std::size_t>(r)];
      z += sums[2 * static_cast<std::size_t>(r) + 1];
    }
    if (o.reduction == Reduction::kMean) {
      const double zm = z / kept;
      l = (l - z) / picked + zm;
      z = zm;
    }
    loss.as<T>()[0] = static_cast<T>(l);
    if (!z_loss.empty_view()) z_loss.as<T>()[0] = static_cast<T>(z);
  }
  if (!dweight.empty_view())
    XENT_RETURN_IF_ERROR(detail::allreduce_ordered(dweight.as<T>(), static_cast<std::size_t>(dweight.numel()), o.comm));
  if (!dbias.empty_view())
    XENT_RETURN_IF_ERROR(detail::allreduce_ordered(dbias.as<T>(), static_cast<std::size_t>(dbias.numel()), o.comm));
  return ok_status();
}

}  // namespace

Status token_parallel_linear_cross_entropy(ConstTensorView hidden, ConstTensorView weight, ConstTensorView bias,
                                           ConstTensorView target, const VocabParallelOptions& o, TensorView loss,
                                           TensorView z_loss, ConstTensorView dloss, TensorView dhidden,
                                           TensorView dweight, TensorView dbias) {
  XENT_RETURN_IF_ERROR(check_initialized());
  detail::Fingerprint fp;
  double picked = 0, kept = 0;
  Status local = ok_status();
  // Validation and the fingerprint allocate: a rank that runs out of memory here reports it
  // through the agreement instead of leaving the others waiting in it.
  Status built = detail::local_step("token_parallel_linear_cross_entropy", [&] {
    // Local validation: a loss-only single-process call on no tokens would not check the targets,
    // so check what the combine relies on here; the rest is the single-process call's.
    if (hidden.shape.rank() != 2 || weight.shape.rank() != 2) {
      local = invalid_argument("hidden must be (N_r, H) and weight (V, H), found " + hidden.shape.to_string() + " and " +
                               weight.shape.to_string());
    } else if (target.shape != Shape{hidden.shape[0]} || (target.dtype != DType::kI32 && target.dtype != DType::kI64) ||
               (target.data == nullptr && hidden.shape[0] > 0)) {
      local = invalid_argument("target must be int32 or int64 of shape " + Shape{hidden.shape[0]}.to_string() +
                               ", found " + dtype_name(target.dtype) + " " + target.shape.to_string());
    } else if (o.reduction == Reduction::kMean && !o.class_weight.empty_view() && o.lse_square_scale != 0) {
      local = unimplemented("token-parallel mean with both class weights and a z-loss (their divisors differ)");
    } else if (!o.class_weight.empty_view() && (o.class_weight.dtype != hidden.dtype ||
                                                 o.class_weight.shape != Shape{weight.shape[0]})) {
      local = invalid_argument("class_weight must be " + std::string(dtype_name(hidden.dtype)) + " of shape (" +
                               std::to_string(weight.shape[0]) + "), found " + o.class_weight.shape.to_string());
    } else {
      for (std::int64_t n = 0; n < hidden.shape[0]; ++n) {
        const std::int64_t t = target_at(target, n);
        if (t == o.ignore_index) continue;
        if (t < 0 || t >= weight.shape[0]) {
          local = out_of_range("target " + std::to_string(t) + " at position " + std::to_string(n) + " is outside [0, " +
                               std::to_string(weight.shape[0]) + ")");
          break;
        }
        const double w = o.class_weight.empty_view() ? 1.0
                         : hidden.dtype == DType::kF32 ? static_cast<double>(o.class_weight.as<float>()[t])
                                                       : o.class_weight.as<double>()[t];
        picked += w;
        kept += 1;
      }
    }
    fp.local = local;
    auto add = [&](const char* name, std::int64_t v) {
      fp.names.push_back(name);
      fp.shared.push_back(v);
    };
    std::int64_t bits[3];
    std::memcpy(&bits[0], &o.label_smoothing, 8);
    std::memcpy(&bits[1], &o.lse_square_scale, 8);
    std::memcpy(&bits[2], &o.softcap, 8);
    add("dtype", static_cast<std::int64_t>(hidden.dtype));
    add("H", hidden.shape.rank() == 2 ? hidden.shape[1] : -1);
    add("V", weight.shape.rank() == 2 ? weight.shape[0] : -1);
    add("reduction", static_cast<std::int64_t>(o.reduction));
    add("ignore_index", o.ignore_index);
    add("label_smoothing (bits)", bits[0]);
    add("lse_square_scale (bits)", bits[1]);
    add("softcap (bits)", bits[2]);
    add("class weights present", !o.class_weight.empty_view());
    add("bias present", !bias.empty_view());
    add("dweight requested", !dweight.empty_view());
    add("dbias requested", !dbias.empty_view());
  });
  if (!built.ok()) fp.local = std::move(built);
  XENT_RETURN_IF_ERROR(xent::detail::guarded("agree", [&]() -> Status { return detail::agree(o.comm, fp, nullptr); }));
  // The single-process call validates the rest; its error must reach every rank too.
  return detail::collective_guarded(o.comm, [&]() -> Status {
    return hidden.dtype == DType::kF32
               ? run<float>(hidden, weight, bias, target, o, loss, z_loss, dloss, dhidden, dweight, dbias, picked, kept)
               : run<double>(hidden, weight, bias, target, o, loss, z_loss, dloss, dhidden, dweight, dbias, picked, kept);
  });
}

}  // namespace xent::mpi
