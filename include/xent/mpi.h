// mpi.h: xent past one process, on Open MPI: the vocabulary-parallel cross-entropy, the
// vocabulary-parallel and token-parallel fused linear + cross-entropy, and the hook that lets the
// trainer combine its chunk gradients across ranks. Library target xent_mpi (xent::mpi), built
// only when CMake finds MPI; the core library never depends on it.
//
// Every function here is collective over `comm`: every rank of it must call it, with the same
// global shapes, options, targets and upstream gradient. Before any work the ranks exchange a
// small fingerprint of their arguments; if one rank's arguments are bad or disagree with the
// others', EVERY rank returns the same error naming that rank, and nobody is left waiting.
// MPI not initialised (or already finalised) is an error Status, not a crash.
//
// Determinism (docs/distributed.md): per-token statistics are combined exactly (a max, and sums
// in integer fixed point, which MPI adds exactly in any order), so the loss and each rank's slice
// of the gradient of vocab_parallel_cross_entropy are the same bits for any number of ranks and
// any split of the vocabulary, equal to the same call on one rank. They agree with the
// single-process xent::cross_entropy / linear_cross_entropy to within rounding, not bit for bit
// (those sum in floating point in their own order). Sums over ranks of (N, H) or (V, H) arrays
// (dhidden of the vocabulary-parallel layer, dweight of the token-parallel one) are added in rank
// order: the same bits run to run for a given rank count, not across rank counts.
//
// This is not a general MPI wrapper: no process management, no communicator splitting.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <functional>

#include "xent/losses.h"
#include "xent/status.h"
#include "xent/tensor.h"

namespace xent::train {
struct TrainCallbacks;  // xent/train/train.h
}

namespace xent::mpi {

// OK when MPI is initialised and not finalised; an error Status otherwise.
Status check_initialized();

// Which classes this rank holds: [first_class, first_class + V_r) of vocab_size, V_r taken from
// the logits' (or weight's) shape. The ranks' slices, in rank order, must tile [0, vocab_size).
struct VocabShard {
  std::int64_t vocab_size = 0;   // V, the global number of classes
  std::int64_t first_class = 0;  // v0 of this rank
};

// The contiguous slice [v0, v0 + V_r) that rank `rank` of `ranks` gets under an even split
// (the first V % ranks ranks hold one class more).
VocabShard even_shard(std::int64_t vocab_size, int rank, int ranks, std::int64_t* slice_size);

struct VocabParallelOptions {
  ConstTensorView class_weight;      // this rank's slice (V_r) of the class weights, or empty
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::kMean;
  double label_smoothing = 0.0;      // eps / V over the GLOBAL V, as PyTorch
  double lse_square_scale = 0.0;     // z-loss, as linear_cross_entropy.h defines it
  double softcap = 0.0;              // z = s tanh(x / s), as linear_cross_entropy.h defines it
  // Tokens per round of collectives. 0: automatic (the cross-entropy: up to 8192; the linear
  // layer: its token_block x V_r logits block within workspace_limit_bytes, computed from the
  // GLOBAL V so that it is the same for any rank count). The cross-entropy's bits do not depend
  // on it; the linear layer's do (it sets the BLAS calls' shapes), so ranks must agree on it.
  std::int64_t token_block = 0;
  std::size_t workspace_limit_bytes = std::size_t{64} << 20;
  MPI_Comm comm = MPI_COMM_WORLD;
};

// Vocabulary-parallel cross-entropy over logits (N, V_r) = this rank's slice of the classes.
// target (N) holds GLOBAL class indices (the same on every rank). loss: (N) for kNone, else a
// 0-d view; every rank gets the whole loss. z_loss optional, loss's shape. dloss optional
// upstream gradient (loss's shape; empty = 1). dlogits optional (N, V_r): this rank's slice of
// d sum(loss * dloss) / d logits. The formulas are linear_cross_entropy's (docs/numerics.md).
Status vocab_parallel_cross_entropy(ConstTensorView logits, ConstTensorView target, const VocabShard& shard,
                                    const VocabParallelOptions& options, TensorView loss, TensorView z_loss,
                                    ConstTensorView dloss, TensorView dlogits);

// Vocabulary-parallel fused linear + cross-entropy: hidden (N, H) on every rank; weight (V_r, H),
// bias (V_r) or empty, class weights: this rank's rows. Neither the (N, V) nor the (N, V_r)
// logits exist: a block of token_block x V_r at a time. dweight (V_r, H) and dbias (V_r) are this
// rank's rows; dhidden (N, H) is the sum over ranks (added in rank order).
Status vocab_parallel_linear_cross_entropy(ConstTensorView hidden, ConstTensorView weight, ConstTensorView bias,
                                           ConstTensorView target, const VocabShard& shard,
                                           const VocabParallelOptions& options, TensorView loss,
                                           TensorView z_loss, ConstTensorView dloss, TensorView dhidden,
                                           TensorView dweight, TensorView dbias);

// Token (data) parallel fused linear + cross-entropy: each rank holds its own tokens (hidden
// (N_r, H), target (N_r)), the weight (V, H) and bias replicated. loss is the global one (the
// mean over all ranks' tokens); kNone gives this rank's tokens' losses. dhidden (N_r, H) is
// local; dweight and dbias are summed over ranks in rank order (every rank gets the sum).
// Options as linear_cross_entropy's (token_block/workspace ignored); comm from `comm`.
Status token_parallel_linear_cross_entropy(ConstTensorView hidden, ConstTensorView weight, ConstTensorView bias,
                                           ConstTensorView target, const VocabParallelOptions& options,
                                           TensorView loss, TensorView z_loss, ConstTensorView dloss,
                                           TensorView dhidden, TensorView dweight, TensorView dbias);

// Adds the K ranks' arrays of `n` doubles in rank order (0, 1, ..., K-1), result on every rank,
// in place: a deterministic all-reduce (reduce-scatter + all-gather by MPI_Alltoallv/Allgatherv,
// ~2 n 8 bytes sent per rank). Collective.
Status allreduce_sum_ordered(double* data, std::size_t n, MPI_Comm comm);

// Data-parallel training: sets cb->own_chunks and cb->share_chunks (xent/train.h) so that each
// rank of `comm` computes a contiguous share of every batch's fixed 128-row chunks and an
// MPI_Allgatherv gives every rank all chunks' partials; each rank then adds them in chunk order and
// takes the same SGD step, so the model is the same bits as a single-process run for any number
// of ranks. Every rank must train on the same data with the same options (the same shuffle).
Status data_parallel_train_callbacks(MPI_Comm comm, train::TrainCallbacks* cb);

// Seconds this process has spent inside xent_mpi's MPI calls (collectives, waiting for slower
// ranks included) since it started; for benchmarks.
double comm_seconds();

}  // namespace xent::mpi
