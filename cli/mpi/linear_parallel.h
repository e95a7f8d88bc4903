// linear_parallel.h: the hook through which `xent linear-cross-entropy` runs vocabulary-parallel
// under mpirun (cli/mpi/linear_parallel.cc sets it when the CLI is built with MPI). Needs no MPI
// header. Not a general plug-in mechanism.
#pragma once

#include <cstdint>
#include <string>

#include "xent/losses.h"

namespace xent::cli {

struct LinearParallelArgs {
  std::string hidden, weight, bias, target, class_weight, dloss;
  std::string out, z_loss_out, grad_hidden, grad_weight, grad_bias;
  Reduction reduction = Reduction::kMean;
  std::int64_t ignore_index = -100;
  double label_smoothing = 0, lse_square_scale = 0, softcap = 0, workspace_mib = 64;
};

// Runs the command on the ranks of an mpirun job and returns true; returns false (touching
// nothing, MPI included) when the process was not launched by mpirun. Null without MPI.
extern bool (*g_linear_parallel)(const LinearParallelArgs& args);

}  // namespace xent::cli
