// bench_parallel.cc: `mpirun -np K xent bench parallel-linear-cross-entropy`: times the
// vocabulary-parallel fused linear + cross-entropy (include/xent/mpi.h) on random data, each rank
// holding V/K rows of the weight, and prints per rank: its classes, the median call time, the
// time inside MPI calls, and the peak resident memory (getrusage ru_maxrss: the whole process,
// inputs included). MPI is initialised by this command only (a plain `xent` never touches MPI);
// run without mpirun it is one rank. Not a correctness check (tests/mpi is).
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cli.h"
#include "xent/mpi.h"
#include "xent/runtime.h"

namespace xent::cli {
namespace {

struct Args {
  std::int64_t tokens = 8192, hidden = 1024, vocab = 32000;
  int threads = 0, reps = 2;
  bool forward_only = false;
  double workspace_mib = 64;
};

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

void run(const Args& a) {
  if (a.tokens < 1 || a.hidden < 1 || a.vocab < 1 || a.reps < 1) throw UsageError("tokens, hidden, vocab and reps must be >= 1");
  int init = 0;
  MPI_Initialized(&init);
  if (!init) MPI_Init(nullptr, nullptr);
  int rank = 0, K = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &K);
  if (a.threads > 0) set_num_threads(a.threads);
  const std::int64_t N = a.tokens, H = a.hidden, V = a.vocab;
  std::int64_t Vr = 0;
  const xent::mpi::VocabShard shard = xent::mpi::even_shard(V, rank, K, &Vr);
  std::mt19937 rng(42 + static_cast<unsigned>(rank));
  std::normal_distribution<float> nd(0.f, 0.05f);
  std::vector<float> h(static_cast<std::size_t>(N * H)), w(static_cast<std::size_t>(Vr * H));
  std::mt19937 shared(7);  // hidden and targets: the same on every rank
  for (auto& v : h) v = nd(shared);
  for (auto& v : w) v = nd(rng);
  std::vector<std::int64_t> t(static_cast<std::size_t>(N));
  for (auto& v : t) v = static_cast<std::int64_t>(shared() % static_cast<std::uint32_t>(V));
  std::vector<float> dh(a.forward_only ? 0 : static_cast<std::size_t>(N * H)),
      dw(a.forward_only ? 0 : static_cast<std::size_t>(Vr * H));
  float loss = 0;
  xent::mpi::VocabParallelOptions o;
  o.workspace_limit_bytes = static_cast<std::size_t>(a.workspace_mib * 1048576.0);
  const double rss_inputs = peak_rss_mib();
  std::vector<double> ms, comm;
  for (int r = 0; r < a.reps + 1; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double c0 = xent::mpi::comm_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    TensorView dhv, dwv;
    if (!a.forward_only) {
      dhv = {dh.data(), {N, H}};
      dwv = {dw.data(), {Vr, H}};
    }
    throw_if_error(xent::mpi::vocab_parallel_linear_cross_entropy({h.data(), {N, H}}, {w.data(), {Vr, H}}, {},
                                                                  {t.data(), {N}}, shard, o, {&loss, {}}, {}, {}, dhv,
                                                                  dwv, {}));
    const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) {  // the first call is untimed (page faults, BLAS warm-up)
      ms.push_back(dt);
      comm.push_back(1e3 * (xent::mpi::comm_seconds() - c0));
    }
  }
  std::sort(ms.begin(), ms.end());
  std::sort(comm.begin(), comm.end());
  char line[400];
  std::snprintf(line, sizeof line,
                "rank %d/%d: classes [%lld, %lld) threads %d: median %.1f ms per call, in MPI %.1f ms, peak RSS %.1f MiB "
                "(%.1f MiB before the first call), loss %.6f",
                rank, K, static_cast<long long>(shard.first_class), static_cast<long long>(shard.first_class + Vr),
                num_threads(), ms[ms.size() / 2], comm[comm.size() / 2], peak_rss_mib(), rss_inputs,
                static_cast<double>(loss));
  // Rank 0 prints every rank's line, in rank order.
  std::vector<char> all(static_cast<std::size_t>(K) * sizeof line);
  MPI_Gather(line, sizeof line, MPI_CHAR, all.data(), sizeof line, MPI_CHAR, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    std::printf("vocab-parallel linear-cross-entropy N=%lld H=%lld V=%lld float32 %s, %d ranks\n",
                static_cast<long long>(N), static_cast<long long>(H), static_cast<long long>(V),
                a.forward_only ? "loss only" : "loss + dhidden + dweight", K);
    for (int r = 0; r < K; ++r) std::printf("  %s\n", all.data() + static_cast<std::size_t>(r) * sizeof line);
    std::fflush(stdout);
  }
  MPI_Finalize();
}

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  // A mode of `xent bench` (cli/bench/bench_command.cc registers it first), beside
  // `xent bench linear-cross-entropy`.
  CLI::App* bench = root.get_subcommand("bench");
  CLI::App* app = bench->add_subcommand("parallel-linear-cross-entropy",
                                      "Time the vocabulary-parallel linear-cross-entropy under mpirun: per-rank time, "
                                      "time in MPI, peak memory");
  app->add_option("--tokens", a->tokens, "N (default 8192)");
  app->add_option("--hidden", a->hidden, "H (default 1024)");
  app->add_option("--vocab", a->vocab, "V, split evenly over the ranks (default 32000)");
  app->add_option("--threads", a->threads, "Threads per rank (default: all cores, or $XENT_THREADS)");
  app->add_option("--reps", a->reps, "Timed calls after an untimed first one (default 2)");
  app->add_option("--workspace-mib", a->workspace_mib, "Logits block budget (default 64)");
  app->add_flag("--forward-only", a->forward_only, "Loss only");
  app->footer("\nExample:\n  mpirun -np 2 xent bench parallel-linear-cross-entropy --threads 1\n");
  app->callback([a] { run(*a); });
}

}  // namespace
XENT_REGISTER_COMMAND(91, setup);  // after `bench` (90)
}  // namespace xent::cli
