// common.h (internal to xent_mpi): what the parallel losses share: the argument fingerprint that
// makes all ranks agree on errors, the exact per-token combine (max keys and integer fixed-point
// sums), and the rank-ordered all-reduce. Not public API; include/xent/mpi.h is.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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

// FNV-1a over bytes, to fingerprint targets and upstream gradients cheaply.
std::uint64_t hash_bytes(const void* p, std::size_t n, std::uint64_t h = 1469598103934665603ull) noexcept;

// Total order on doubles as int64 (MPI_MAX on these keys is the exact max, in any order); NaN is
// the largest key; kNoKey (no value) the smallest.
constexpr std::int64_t kNoKey = INT64_MIN;
std::int64_t max_key(double d) noexcept;
double from_key(std::int64_t k) noexcept;

// Fixed point: kLimbs signed 64-bit limbs of 32-bit digits. add() adds round(v * 2^shift) (which
// must be below 2^121 in magnitude); MPI_SUM on the limbs is exact integer addition (no overflow
// for fewer than 2^28 terms), so the total does not depend on the order or the split. value()
// is a deterministic function of the exact integer.
constexpr int kLimbs = 4;
void fx_add(std::int64_t* acc, double v, int shift) noexcept;
double fx_value(const std::int64_t* acc, int shift) noexcept;

// Adds the wall time of its lifetime to comm_seconds() (wrap each MPI call in one).
struct CommTimer {
  double t0;
  CommTimer();
  ~CommTimer();
};

// Rank-ordered sum of the ranks' n values of T, in place on every rank (computed in double).
template <class T>
Status allreduce_ordered(T* data, std::size_t n, MPI_Comm comm);

}  // namespace xent::mpi::detail
