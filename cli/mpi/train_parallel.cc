// train_parallel.cc: the MPI side of `mpirun -np K xent train` (train_parallel.h): MPI start and
// end, and the trainer's chunk sharing from xent::mpi. Built only with MPI.
#include "mpi/train_parallel.h"

#include <cstdlib>

#include "cli.h"
#include "xent/mpi.h"

namespace xent::cli {
namespace {

bool begin(int* rank, int* ranks, train::TrainCallbacks* cb) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr && std::getenv("PMI_SIZE") == nullptr) return false;
  int init = 0;
  MPI_Initialized(&init);
  if (!init) MPI_Init(nullptr, nullptr);
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  MPI_Comm_size(MPI_COMM_WORLD, ranks);
  throw_if_error(xent::mpi::data_parallel_train_callbacks(MPI_COMM_WORLD, cb));
  return true;
}

void end() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

const TrainParallel kHook{begin, end};

struct Install {
  Install() { g_train_parallel = &kHook; }
} g_install;

}  // namespace
}  // namespace xent::cli
