// common.h (internal to xent_mpi): what the parallel losses share: the argument fingerprint that
// makes all ranks agree on errors, the rank-ordered all-reduce, time in MPI. The exact per-token
// combine's arithmetic is the core's (src/exact_sum.h). Not public API; include/xent/mpi.h is.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "guarded.h"
#include "xent/status.h"

namespace xent::mpi::detail {

// One rank's view of a collective call: its local validation status and the values that must
// agree (names for the message). Per-rank values (the slice) go in `own`.
struct Fingerprint {
  Status local;                      // this rank's validation of its own arguments
  std::vector<std::int64_t> shared;  // must be equal on every rank
  std::vector<const char*> names;    // one per shared value
  std::int64_t own[2] = {0, 0};      // per-rank values (e.g. first class, slice size)
};

// One MPI_Allgather of every rank's fingerprint. Returns, identically on every rank: the first
// rank's (in rank order) local error, or the first value that differs from rank 0's, or OK.
// On OK, *owns receives every rank's `own` pair (2 per rank) when owns is not null.
Status agree(MPI_Comm comm, const Fingerprint& fp, std::vector<std::int64_t>* owns);

// Allocation failures and collectives. A rank that throws std::bad_alloc (or cannot start a
// thread) between two collectives would leave the others waiting in the next one, so each entry
// point allocates everything it needs in a local step (local_step: the failure becomes a
// resource-exhausted Status) and then calls agree_status before its first collective that moves
// data: one MPI_Allreduce (MINLOC on code and rank, 8 bytes) after which every rank returns the
// same Status, naming the lowest failing rank, or all go on. The loops after it do not allocate.
// agree() itself needs O(ranks) bytes; a rank that cannot get them calls MPI_Abort, the last
// way left to fail together, and so does collective_guarded when anything is thrown after the
// agreement (the small closures of the thread pool's tasks, say).
Status agree_status(MPI_Comm comm, const Status& local, const char* what) noexcept;
template <class F>
Status collective_guarded(MPI_Comm comm, F&& body) noexcept {
  try {
    return body();
  } catch (...) {
    MPI_Abort(comm, EXIT_FAILURE);
    return Status(StatusCode::kInternal, "MPI_Abort");
  }
}
// Starts the thread pool's workers (inside a local step, so that a thread that cannot start is
// agreed on like a failed allocation).
void start_pool_threads();
template <class F>
Status local_step(const char* what, F&& f) noexcept {
  return xent::detail::guarded(what, [&]() -> Status {
    f();
    return ok_status();
  });
}

// FNV-1a over bytes, to fingerprint targets and upstream gradients cheaply.
std::uint64_t hash_bytes(const void* p, std::size_t n, std::uint64_t h = 1469598103934665603ull) noexcept;

// The order keys of doubles and the fixed-point accumulator of the exact combine are the core's
// (src/exact_sum.h, namespace xent::detail::exact): ONE implementation for the single-process
// exact mode and this layer.

// Adds the wall time of its lifetime to comm_seconds() (wrap each MPI call in one).
struct CommTimer {
  double t0;
  CommTimer();
  ~CommTimer();
};

// Rank-ordered sum of the ranks' n values of T, in place on every rank (computed in double).
// The first form allocates its buffers in a local step and agrees on the outcome; the second takes
// buffers allocated (for at least n values) before the caller's own agreement and does not allocate.
template <class T>
struct AllreduceBuffers {
  std::vector<T> recv, mine;
  std::vector<int> counts, displs, rcounts, rdispls;
  void allocate(std::size_t n, MPI_Comm comm);
};
template <class T>
Status allreduce_ordered(T* data, std::size_t n, MPI_Comm comm);
template <class T>
void allreduce_ordered(T* data, std::size_t n, MPI_Comm comm, AllreduceBuffers<T>* buffers);

}  // namespace xent::mpi::detail
