// train_parallel.h: the hook through which `xent train` runs data-parallel under mpirun. It is
// null in a build without MPI (or until cli/mpi/train_parallel.cc sets it at start-up), so the
// train command needs no MPI header. Not a general plug-in mechanism.
#pragma once

#include "xent/train/train.h"

namespace xent::cli {

struct TrainParallel {
  // When launched by mpirun (OMPI_COMM_WORLD_SIZE set): initialises MPI, sets the callbacks'
  // chunk sharing, returns true with this process's rank and the rank count. Otherwise returns
  // false and touches nothing (a plain run never initialises MPI).
  bool (*begin)(int* rank, int* ranks, train::TrainCallbacks* cb);
  // Finalises MPI (after begin() returned true).
  void (*end)();
};

// Set by cli/mpi when the CLI is built with MPI; null otherwise.
extern const TrainParallel* g_train_parallel;

}  // namespace xent::cli
