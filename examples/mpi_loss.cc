// mpi_loss.cc: the smallest program that uses the installed xent::mpi layer: the same two rows of
// logits and targets as mean_loss.cc, each rank holding only its slice of the three classes
// (xent::mpi::even_shard), and the vocabulary-parallel mean cross-entropy that every rank gets.
// Rank 0 prints it with four decimals: 1.2753, for any number of ranks. Built by
// examples/mpi (CMake, find_package(xent COMPONENTS mpi)) and examples/pkg_config (xent-mpi.pc),
// run under `mpirun -np 2` by the `install_consumers` test.
#include <xent/mpi.h>

#include <cstdint>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const std::int64_t n = 2, v = 3;
  const float all_logits[n][v] = {{1, 2, 3}, {2, 4, 6}};
  std::vector<std::int64_t> target = {0, 2};  // global class indices, the same on every rank
  std::int64_t vr = 0;
  const xent::mpi::VocabShard shard = xent::mpi::even_shard(v, rank, ranks, &vr);
  std::vector<float> logits;  // this rank's columns [first_class, first_class + vr)
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < vr; ++j) logits.push_back(all_logits[i][shard.first_class + j]);
  float loss = 0;
  const xent::Status s = xent::mpi::vocab_parallel_cross_entropy({logits, {n, vr}}, {target, {n}}, shard, {},
                                                                 xent::scalar_view(&loss), {}, {}, {});
  int rc = 0;
  if (!s.ok()) {  // every rank gets the same error
    std::fprintf(stderr, "mpi_loss: rank %d: %s\n", rank, s.to_string().c_str());
    rc = 1;
  } else if (rank == 0) {
    std::printf("%.4f\n", loss);
  }
  MPI_Finalize();
  return rc;
}
