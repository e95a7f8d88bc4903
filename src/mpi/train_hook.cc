// train_hook.cc: data-parallel training over MPI (include/xent/mpi.h
// data_parallel_train_callbacks): which chunks of a batch each rank computes, and the exchange of
// the chunks' partials. The trainer (src/train/trainer.cc) knows nothing of MPI.
#include <cstring>
#include <memory>
#include <vector>

#include "mpi/common.h"
#include "xent/mpi.h"
#include "xent/train/train.h"

namespace xent::mpi {

Status data_parallel_train_callbacks(MPI_Comm comm, train::TrainCallbacks* cb) {
  XENT_RETURN_IF_ERROR(check_initialized());
  if (comm == MPI_COMM_NULL) return invalid_argument("the communicator is MPI_COMM_NULL");
  int rank = 0, K = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &K);
  // Rank r computes chunks [tasks r / K, tasks (r + 1) / K): contiguous, so one Allgatherv.
  cb->own_chunks = [rank, K](std::int64_t tasks, std::int64_t* first, std::int64_t* last) {
    *first = tasks * rank / K;
    *last = tasks * (rank + 1) / K;
  };
  // The exchange buffer outlives the calls: it grows (collectively: its size is the same on every
  // rank) only when a batch needs more, so an allocation failure is agreed on (common.h), never
  // met by one rank alone between collectives.
  struct Exchange {
    std::vector<unsigned char> all;
    std::vector<int> counts, displs;
  };
  auto ex = std::make_shared<Exchange>();
  cb->share_chunks = [comm, rank, K, ex](const train::ChunkPartials& p) -> Status {
    if (K == 1) return ok_status();
    // One chunk packed: gw (dc floats), gb (c doubles), loss (1 float), correct (1 int64).
    const std::size_t bytes = static_cast<std::size_t>(p.dc) * sizeof(float) + static_cast<std::size_t>(p.c) * sizeof(double) +
                              sizeof(float) + sizeof(std::int64_t);
    if (bytes * static_cast<std::size_t>(p.tasks) > static_cast<std::size_t>(INT32_MAX))
      return resource_exhausted("a batch's chunk gradients exceed 2 GiB, more than one MPI message");
    const std::size_t need = static_cast<std::size_t>(p.tasks) * bytes;
    if (need > ex->all.size() || ex->counts.empty()) {
      XENT_RETURN_IF_ERROR(detail::agree_status(comm, detail::local_step("share_chunks", [&] {
        ex->all.resize(need);
        ex->counts.resize(static_cast<std::size_t>(K));
        ex->displs.resize(static_cast<std::size_t>(K));
      }), "data-parallel training"));
    }
    for (int r = 0; r < K; ++r) {
      const std::int64_t a = p.tasks * r / K, b = p.tasks * (r + 1) / K;
      ex->counts[static_cast<std::size_t>(r)] = static_cast<int>(static_cast<std::size_t>(b - a) * bytes);
      ex->displs[static_cast<std::size_t>(r)] = static_cast<int>(static_cast<std::size_t>(a) * bytes);
    }
    auto pack = [&](std::int64_t t, unsigned char* q) {
      std::memcpy(q, p.gw + t * p.dc, static_cast<std::size_t>(p.dc) * sizeof(float));
      q += static_cast<std::size_t>(p.dc) * sizeof(float);
      std::memcpy(q, p.gb + t * p.c, static_cast<std::size_t>(p.c) * sizeof(double));
      q += static_cast<std::size_t>(p.c) * sizeof(double);
      std::memcpy(q, p.loss + t, sizeof(float));
      std::memcpy(q + sizeof(float), p.correct + t, sizeof(std::int64_t));
    };
    auto unpack = [&](std::int64_t t, const unsigned char* q) {
      std::memcpy(p.gw + t * p.dc, q, static_cast<std::size_t>(p.dc) * sizeof(float));
      q += static_cast<std::size_t>(p.dc) * sizeof(float);
      std::memcpy(p.gb + t * p.c, q, static_cast<std::size_t>(p.c) * sizeof(double));
      q += static_cast<std::size_t>(p.c) * sizeof(double);
      std::memcpy(p.loss + t, q, sizeof(float));
      std::memcpy(p.correct + t, q + sizeof(float), sizeof(std::int64_t));
    };
    const std::int64_t first = p.tasks * rank / K, last = p.tasks * (rank + 1) / K;
    unsigned char* all = ex->all.data();
    for (std::int64_t t = first; t < last; ++t) pack(t, all + static_cast<std::size_t>(t) * bytes);
    {
      detail::CommTimer timer;
      MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all, ex->counts.data(), ex->displs.data(), MPI_BYTE, comm);
    }
    for (std::int64_t t = 0; t < p.tasks; ++t)
      if (t < first || t >= last) unpack(t, all + static_cast<std::size_t>(t) * bytes);
    return ok_status();
  };
  return ok_status();
}

}  // namespace xent::mpi
