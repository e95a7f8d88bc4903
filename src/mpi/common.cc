// common.cc: the fingerprint agreement and the rank-ordered
// all-reduce of xent_mpi (common.h). Not the losses themselves (vocab_parallel.cc,
// token_parallel.cc).
#include "mpi/common.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "parallel.h"
#include "xent/mpi.h"

namespace xent::mpi {

Status check_initialized() {
  return xent::detail::guarded("check_initialized", [&]() -> Status {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init) return invalid_argument("MPI is not initialised (call MPI_Init first, and launch with mpirun)");
    if (fin) return invalid_argument("MPI has already been finalised");
    return ok_status();
  });
}

VocabShard even_shard(std::int64_t vocab_size, int rank, int ranks, std::int64_t* slice_size) {
  const std::int64_t q = vocab_size / ranks, r = vocab_size % ranks;
  VocabShard s;
  s.vocab_size = vocab_size;
  s.first_class = rank * q + std::min<std::int64_t>(rank, r);
  if (slice_size) *slice_size = q + (rank < r ? 1 : 0);
  return s;
}

namespace detail {

namespace {
std::atomic<double> g_comm_seconds{0.0};
}  // namespace

CommTimer::CommTimer() : t0(MPI_Wtime()) {}
CommTimer::~CommTimer() {
  const double dt = MPI_Wtime() - t0;
  double cur = g_comm_seconds.load();
  while (!g_comm_seconds.compare_exchange_weak(cur, cur + dt)) {
  }
}

namespace {
constexpr int kMaxShared = 32;
constexpr int kMsgBytes = 240;
struct Wire {
  std::int32_t code;
  std::int32_t n_shared;
  std::int64_t own[2];
  std::int64_t shared[kMaxShared];
  char msg[kMsgBytes];
};
}  // namespace

Status agree(MPI_Comm comm, const Fingerprint& fp, std::vector<std::int64_t>* owns) {
  if (comm == MPI_COMM_NULL) return invalid_argument("the communicator is MPI_COMM_NULL");
  int size = 0, rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  Wire w{};
  w.code = static_cast<std::int32_t>(fp.local.code());
  w.n_shared = static_cast<std::int32_t>(std::min<std::size_t>(fp.shared.size(), kMaxShared));
  w.own[0] = fp.own[0];
  w.own[1] = fp.own[1];
  for (int i = 0; i < w.n_shared; ++i) w.shared[i] = fp.shared[static_cast<std::size_t>(i)];
  std::strncpy(w.msg, fp.local.message().c_str(), kMsgBytes - 1);
  std::vector<Wire> all;
  try {
    all.resize(static_cast<std::size_t>(size));
    if (owns) owns->resize(2 * static_cast<std::size_t>(size));
  } catch (...) {
    MPI_Abort(comm, EXIT_FAILURE);  // see agree_status in common.h
  }
  CommTimer timer;
  MPI_Allgather(&w, sizeof(Wire), MPI_BYTE, all.data(), sizeof(Wire), MPI_BYTE, comm);
  for (int r = 0; r < size; ++r) {
    const Wire& x = all[static_cast<std::size_t>(r)];
    if (x.code != 0)
      return Status(static_cast<StatusCode>(x.code), "rank " + std::to_string(r) + " of " + std::to_string(size) +
                                                          ": " + std::string(x.msg));
  }
  for (int r = 1; r < size; ++r) {
    const Wire& x = all[static_cast<std::size_t>(r)];
    if (x.n_shared != all[0].n_shared)
      return invalid_argument("rank " + std::to_string(r) + " called with different options than rank 0");
    for (int i = 0; i < x.n_shared; ++i)
      if (x.shared[i] != all[0].shared[i])
        return invalid_argument("ranks disagree: rank " + std::to_string(r) + " has " +
                                (static_cast<std::size_t>(i) < fp.names.size() ? fp.names[static_cast<std::size_t>(i)] : "?") +
                                " = " + std::to_string(x.shared[i]) + ", rank 0 has " + std::to_string(all[0].shared[i]));
  }
  if (owns) {
    for (int r = 0; r < size; ++r) {
      (*owns)[2 * static_cast<std::size_t>(r)] = all[static_cast<std::size_t>(r)].own[0];
      (*owns)[2 * static_cast<std::size_t>(r) + 1] = all[static_cast<std::size_t>(r)].own[1];
    }
  }
  return ok_status();
}

Status agree_status(MPI_Comm comm, const Status& local, const char* what) noexcept {
  int size = 1, rank = 0;
  MPI_Comm_size(comm, &size);
  MPI_Comm_rank(comm, &rank);
  struct {
    int code, rank;
  } in{local.ok() ? INT_MAX : static_cast<int>(local.code()), rank}, out{INT_MAX, 0};
  {
    CommTimer timer;
    MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MINLOC, comm);
  }
  if (out.code == INT_MAX) return ok_status();
  const auto code = static_cast<StatusCode>(out.code);
  try {
    // The same message on every rank (local_step only reports resource exhaustion).
    return Status(code, std::string(what) + ": rank " + std::to_string(out.rank) + " of " + std::to_string(size) +
                            (code == StatusCode::kResourceExhausted ? " ran out of memory (or could not start a thread)"
                                                                    : ": " + std::string(status_code_name(code))));
  } catch (...) {
    return Status(code, "out of memory");
  }
}

void start_pool_threads() {
  xent::detail::parallel_for(static_cast<std::size_t>(xent::detail::pool_threads()), [](std::size_t) {});
}

std::uint64_t hash_bytes(const void* p, std::size_t n, std::uint64_t h) noexcept {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

// Rounds of at most kRound values: a reduce-scatter (each rank receives every rank's copy of its
// segment, in T, and adds them in rank order in double) and an all-gather of the sums rounded to
// T. About 2 (K-1)/K n sizeof(T) bytes sent and received per rank.
constexpr std::size_t kRound = std::size_t{1} << 20;  // 1M values: bounded buffers (4-8 MiB)

template <class T>
void AllreduceBuffers<T>::allocate(std::size_t n, MPI_Comm comm) {
  int K = 1;
  MPI_Comm_size(comm, &K);
  const auto Ku = static_cast<std::size_t>(K);
  const std::size_t most = (std::min(kRound, n) + Ku - 1) / Ku;  // the largest segment of a round
  recv.reserve(most * Ku);
  mine.reserve(most);
  counts.resize(Ku);
  displs.resize(Ku);
  rcounts.resize(Ku);
  rdispls.resize(Ku);
}

template <class T>
void allreduce_ordered(T* data, std::size_t n, MPI_Comm comm, AllreduceBuffers<T>* buf) {
  int K = 1, rank = 0;
  MPI_Comm_size(comm, &K);
  MPI_Comm_rank(comm, &rank);
  if (K == 1 || n == 0) return;
  const auto Ku = static_cast<std::size_t>(K);
  std::vector<T>& recv = buf->recv;
  std::vector<T>& mine = buf->mine;
  for (std::size_t base = 0; base < n; base += kRound) {
    const std::size_t len = std::min(kRound, n - base);
    for (std::size_t r = 0; r < Ku; ++r) {
      const std::size_t a = len * r / Ku, b = len * (r + 1) / Ku;
      buf->counts[r] = static_cast<int>(b - a);
      buf->displs[r] = static_cast<int>(a);
    }
    const int my = buf->counts[static_cast<std::size_t>(rank)];
    recv.resize(static_cast<std::size_t>(my) * Ku);  // within the capacity reserved: no allocation
    for (std::size_t r = 0; r < Ku; ++r) {
      buf->rcounts[r] = my;
      buf->rdispls[r] = static_cast<int>(r) * my;
    }
    CommTimer timer;
    MPI_Alltoallv(data + base, buf->counts.data(), buf->displs.data(), mpi_type<T>(), recv.data(), buf->rcounts.data(),
                  buf->rdispls.data(), mpi_type<T>(), comm);
    mine.resize(static_cast<std::size_t>(my));
    for (int i = 0; i < my; ++i) {
      double s = static_cast<double>(recv[static_cast<std::size_t>(i)]);
      for (std::size_t r = 1; r < Ku; ++r)
        s += static_cast<double>(recv[r * static_cast<std::size_t>(my) + static_cast<std::size_t>(i)]);
      mine[static_cast<std::size_t>(i)] = static_cast<T>(s);
    }
    MPI_Allgatherv(mine.data(), my, mpi_type<T>(), data + base, buf->counts.data(), buf->displs.data(), mpi_type<T>(),
                   comm);
  }
}

template <class T>
Status allreduce_ordered(T* data, std::size_t n, MPI_Comm comm) {
  AllreduceBuffers<T> buf;
  XENT_RETURN_IF_ERROR(agree_status(comm, local_step("allreduce_ordered", [&] { buf.allocate(n, comm); }),
                                    "allreduce_ordered"));
  allreduce_ordered(data, n, comm, &buf);
  return ok_status();
}

template struct AllreduceBuffers<float>;
template struct AllreduceBuffers<double>;
template void allreduce_ordered<float>(float*, std::size_t, MPI_Comm, AllreduceBuffers<float>*);
template void allreduce_ordered<double>(double*, std::size_t, MPI_Comm, AllreduceBuffers<double>*);
template Status allreduce_ordered<float>(float*, std::size_t, MPI_Comm);
template Status allreduce_ordered<double>(double*, std::size_t, MPI_Comm);

}  // namespace detail

double comm_seconds() { return detail::g_comm_seconds.load(); }

Status allreduce_sum_ordered(double* data, std::size_t n, MPI_Comm comm) {
  XENT_RETURN_IF_ERROR(check_initialized());
  return detail::collective_guarded(comm, [&] { return detail::allreduce_ordered(data, n, comm); });
}

}  // namespace xent::mpi
