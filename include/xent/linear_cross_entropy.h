// linear_cross_entropy.h: a language model's last layer fused with its loss: logits = hidden *
// weight^T + bias, then cross-entropy, with the gradients w.r.t. hidden, weight and bias, computed
// in blocks of tokens and vocabulary so that the (N, V) logits and their gradient never exist.
//
// This is not a general matrix library: one (N, H) x (H, V) product, row-major, float32 or
// float64; the products go through the BLAS. docs/linear_cross_entropy.md has the formulas, the
// blocking and the memory model.
// bfloat16 / float16: every floating view in the 16-bit dtype, except that dweight may be float32
// (then it is the float32 layer's weight gradient, summed over tokens without ever being rounded to
// 16 bits). The call makes the float32 layer's BLAS calls on the exactly widened values (the BLAS
// here has no bf16 GEMM), widening by blocks into the workspace (the token block's hidden rows, each
// product tile's weight slice), and rounds each output once from its float32 result: the float32
// layer's outputs on the widened inputs, rounded once, bit for bit. linear_cross_entropy_plan gives
// the larger workspace this needs (docs/linear_cross_entropy.md); a 16-bit dweight also needs a
// float32 (V, H) accumulator, which the call allocates (a float32 dweight needs none).
//
// Semantics are PyTorch 1.13's
//     F.cross_entropy(F.linear(hidden, weight, bias), target, weight=class_weight,
//                     ignore_index=, label_smoothing=, reduction=)
// plus two options PyTorch's function lacks, as Liger-Kernel and Gemma 2 define them:
//   softcap > 0:           logits z = softcap * tanh((hidden * weight^T + bias) / softcap)
//   lse_square_scale > 0:  z-loss lse_square_scale * logsumexp(z)^2 per non-ignored token,
//                          added to the loss; kMean divides its sum by the number of
//                          non-ignored tokens (not by the class-weight sum), as Liger does.
// Shapes (N tokens, H hidden features, V vocabulary entries):
//   hidden (N, H), weight (V, H), bias (V) or empty, target (N) int32 or int64,
//   class_weight (V) or empty, all floating views of one dtype.
//   loss: (N) for kNone, else a 0-d (one element) view. z_loss (optional): loss's shape, the
//   z-loss part of `loss` (zeros when lse_square_scale == 0).
//   dloss (optional upstream gradient): loss's shape; empty means 1 everywhere. For kNone it
//   scales each token's gradient before anything is summed over tokens (into dweight, dbias).
//   dhidden (N, H), dweight (V, H), dbias (V): optional gradient outputs of d(sum(loss *
//   dloss)); they are overwritten, not accumulated into. Leave all three empty to compute the
//   loss only (one matrix product instead of three).
// Numerics: logits are formed in the input dtype by the BLAS; per-token logsumexp, losses and the
// bias gradient accumulate in float64. Results do not depend on the thread count: xent's threads
// run the tiles and each BLAS call is single-threaded. A mean over no tokens is NaN, as in PyTorch.
// The BLAS (OpenBLAS) has one process-wide thread setting: while any linear_cross_entropy call is
// running it is 1, and the last call to finish restores the value the first one found (a counted,
// locked section, so concurrent calls are safe). Other code that calls the BLAS at the same time
// runs single-threaded meanwhile; code that changes the BLAS thread count during a call has its
// change undone when the calls end.
// Memory: the only allocation is one workspace of linear_cross_entropy_workspace_bytes() bytes
// (token_block x vocab_block logits plus per-token and per-class vectors; 16-bit: plus the widened
// blocks), independent of N; pass `workspace` to supply it and the call allocates nothing (except
// a 16-bit dweight's float32 accumulator). 16-bit: the size planned is for the pool's current
// thread count; a caller's workspace may be smaller, down to one tile at a time (same results).
// Nothing is written to any output when the returned Status is not ok.
//
//   xent::LinearCrossEntropyOptions opt;            // mean, ignore_index -100
//   float loss;
//   xent::Status s = xent::linear_cross_entropy(
//       {.hidden = {h, {N, H}}, .weight = {w, {V, H}}, .target = {t, {N}}}, opt,
//       {.loss = xent::scalar_view(&loss), .dhidden = {dh, {N, H}}, .dweight = {dw, {V, H}}});
#pragma once

#include <cstddef>
#include <cstdint>

#include "xent/losses.h"
#include "xent/status.h"
#include "xent/tensor.h"

namespace xent {

struct LinearCrossEntropyOptions {
  ConstTensorView class_weight;      // optional (V) class weights, hidden's dtype
  std::int64_t ignore_index = -100;  // tokens whose target equals this contribute nothing
  Reduction reduction = Reduction::kMean;
  double label_smoothing = 0.0;      // in [0, 1]
  double lse_square_scale = 0.0;     // z-loss coefficient (>= 0); 0 disables it
  double softcap = 0.0;              // logit soft-capping (> 0), or 0 for none
  // Block sizes; 0 chooses them from workspace_limit_bytes. vocab_block == V (or any value >= V)
  // keeps whole rows of logits and needs no recomputation: three matrix products in all. A
  // smaller vocab_block computes every logit twice (four products) but needs less memory.
  std::int64_t token_block = 0;
  std::int64_t vocab_block = 0;
  // Upper bound on the workspace the automatic block choice aims for (the scratch block of
  // logits dominates it). Explicit block sizes ignore it.
  std::size_t workspace_limit_bytes = std::size_t{64} << 20;
  // Optional caller-supplied workspace: at least linear_cross_entropy_workspace_bytes() bytes,
  // aligned to 64 bytes. Empty: the call allocates (and frees) its own.
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

// The block sizes a call with these shapes and options would use.
struct LinearCrossEntropyPlan {
  std::int64_t token_block = 0;
  std::int64_t vocab_block = 0;
  std::size_t workspace_bytes = 0;
  bool recompute = false;  // true when vocab_block < V (logits computed twice)
};
Result<LinearCrossEntropyPlan> linear_cross_entropy_plan(std::int64_t N, std::int64_t H, std::int64_t V,
                                                         DType dtype,
                                                         const LinearCrossEntropyOptions& options);

// Bytes of workspace a call needs (0 on invalid shapes or options; plan() says why).
std::size_t linear_cross_entropy_workspace_bytes(std::int64_t N, std::int64_t H, std::int64_t V,
                                                 DType dtype, const LinearCrossEntropyOptions& options);

// What a call reads; name the fields (C++20 designated initializers, in this order) and leave the
// optional ones out.
struct LinearCrossEntropyInputs {
  ConstTensorView hidden;  // (N, H)
  ConstTensorView weight;  // (V, H)
  ConstTensorView bias;    // (V), optional
  ConstTensorView target;  // (N) int32 or int64 class indices
  ConstTensorView dloss;   // loss's shape, optional upstream gradient (empty: 1 everywhere)
};

// What a call writes; loss is required (except for kNone with N == 0), the rest optional.
struct LinearCrossEntropyOutputs {
  TensorView loss;     // (N) for kNone, else 0-d (xent::scalar_view)
  TensorView z_loss;   // loss's shape: the z-loss part of loss
  TensorView dhidden;  // (N, H)
  TensorView dweight;  // (V, H)
  TensorView dbias;    // (V), needs a bias
};

// Loss (and optionally z-loss and gradients); see the header comment for shapes and semantics.
Status linear_cross_entropy(const LinearCrossEntropyInputs& in, const LinearCrossEntropyOptions& options,
                            const LinearCrossEntropyOutputs& out);

}  // namespace xent
