// bench_linear.cc (cli/bench): `xent bench linear-cross-entropy`: times the fused linear +
// cross-entropy (loss and the gradients w.r.t. hidden, weight and bias) on random data and
// measures the peak memory it needs beyond its inputs and outputs.
//
// Method. Inputs and gradient buffers are allocated once and touched, as a training loop would
// hold them. Peak extra memory is the growth of the process's peak resident set (getrusage
// ru_maxrss) over the first call, measured from the resident set just before it (/proc/self/statm):
// it covers xent's workspace, the BLAS's packing buffers and the worker threads' stacks, i.e.
// everything the call touches that the caller did not allocate. The first call is not timed; the
// median of --reps later calls is reported (--reps 0: the first call's time). Not a test: nothing
// is checked.
#include "bench_linear.h"
#include "workload.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "shared/blas_note.h"
#include "validators.h"
#include "xent/linear_cross_entropy.h"
#include "xent/runtime.h"

namespace xent::cli::bench_linear {
namespace {

struct Args {
  std::int64_t tokens = 8192, hidden = 1024, vocab = 32000;
  int threads = 0;
  int reps = 3;
  std::string dtype = "f32";
  bool bias = false;
  bool forward_only = false;
  bool dweight_f32 = false;  // 16-bit: the weight gradient in a float32 view
  double label_smoothing = 0, lse_square_scale = 0, softcap = 0;
  std::int64_t token_block = 0, vocab_block = 0;
  double workspace_mib = 64;
  std::string isa;
  bool json = false;
};

std::uint64_t maxrss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<std::uint64_t>(u.ru_maxrss) * 1024;
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

std::uint64_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return maxrss_bytes();
  unsigned long long size = 0, resident = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (got != 2) return maxrss_bytes();
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

struct FreeDeleter {
  void operator()(void* p) const noexcept { std::free(p); }
};
using Mem = std::unique_ptr<void, FreeDeleter>;

Mem alloc(std::size_t bytes) {
  const std::size_t rounded = std::max<std::size_t>(64, (bytes + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) throw RuntimeFailure(fmt::format("cannot allocate {} bytes of benchmark data", bytes));
  std::memset(p, 0, rounded);  // touch every page now, so the measurement below excludes it
  return Mem(p);
}


const char* dtype_short(DType dt) {
  return dt == DType::kF32 ? "f32" : dt == DType::kF64 ? "f64" : dt == DType::kBF16 ? "bf16" : "f16";
}

void run(const Args& a) {
  if (a.tokens < 1 || a.hidden < 1 || a.vocab < 1)
    throw UsageError(fmt::format("--tokens, --hidden and --vocab must be positive; found {}, {}, {}", a.tokens,
                                 a.hidden, a.vocab));
  if (a.reps < 0) throw UsageError(fmt::format("--reps must be >= 0, found {}", a.reps));
  if (a.threads < 0) throw UsageError(fmt::format("--threads must be positive, found {}", a.threads));
  DType dt;
  if (a.dtype == "f32" || a.dtype == "float32")
    dt = DType::kF32;
  else if (a.dtype == "f64" || a.dtype == "float64")
    dt = DType::kF64;
  else if (a.dtype == "bf16" || a.dtype == "bfloat16")
    dt = DType::kBF16;
  else if (a.dtype == "f16" || a.dtype == "float16")
    dt = DType::kF16;
  else
    throw UsageError(fmt::format("--dtype expects f32, f64, bf16 or f16, found '{}'", a.dtype));
  if (a.dweight_f32 && dt != DType::kBF16 && dt != DType::kF16)
    throw UsageError("--dweight-f32 needs --dtype bf16 or f16");
  if (a.threads > 0) set_num_threads(a.threads);
  if (!a.isa.empty()) throw_if_error(set_isa(a.isa), "--isa");

  const std::int64_t N = a.tokens, H = a.hidden, V = a.vocab;
  const std::size_t es = dtype_size(dt);
  LinearCrossEntropyOptions o;
  o.label_smoothing = a.label_smoothing;
  o.lse_square_scale = a.lse_square_scale;
  o.softcap = a.softcap;
  o.token_block = a.token_block;
  o.vocab_block = a.vocab_block;
  o.workspace_limit_bytes = static_cast<std::size_t>(a.workspace_mib * 1048576.0);
  auto plan = linear_cross_entropy_plan(N, H, V, dt, o);
  throw_if_error(plan.status(), "bench-linear-cross-entropy");
  note_blas_core();

  Mem h = alloc(static_cast<std::size_t>(N * H) * es), w = alloc(static_cast<std::size_t>(V * H) * es);
  Mem b = a.bias ? alloc(static_cast<std::size_t>(V) * es) : nullptr;
  Mem t = alloc(static_cast<std::size_t>(N) * sizeof(std::int64_t));
  Mem loss = alloc(es);
  Mem dh, dw, db;
  if (!a.forward_only) {
    dh = alloc(static_cast<std::size_t>(N * H) * es);
    dw = alloc(static_cast<std::size_t>(V * H) * (a.dweight_f32 ? sizeof(float) : es));
    if (a.bias) db = alloc(static_cast<std::size_t>(V) * es);
  }
  const double ws = 1.0 / std::sqrt(static_cast<double>(H));
  xent::bench::fill_uniform(dt, h.get(), static_cast<std::size_t>(N * H), -1, 1, 1);
  xent::bench::fill_uniform(dt, w.get(), static_cast<std::size_t>(V * H), -ws, ws, 2);
  if (b) xent::bench::fill_uniform(dt, b.get(), static_cast<std::size_t>(V), -0.1, 0.1, 3);
  // Targets: uniform in [0, V) from the same fixed-seed generator (drawn as doubles).
  auto* tv = static_cast<std::int64_t*>(t.get());
  std::vector<double> u(static_cast<std::size_t>(N));
  xent::bench::fill_uniform(DType::kF64, u.data(), u.size(), 0, static_cast<double>(V), 4);
  for (std::int64_t n = 0; n < N; ++n) tv[n] = std::min<std::int64_t>(V - 1, static_cast<std::int64_t>(u[static_cast<std::size_t>(n)]));

  auto call = [&] {
    throw_if_error(linear_cross_entropy({.hidden = {h.get(), dt, {N, H}},
                                         .weight = {w.get(), dt, {V, H}},
                                         .bias = b ? ConstTensorView{b.get(), dt, {V}} : ConstTensorView{},
                                         .target = {t.get(), DType::kI64, {N}}},
                                        o,
                                        {.loss = {loss.get(), dt, {}},
                                         .dhidden = dh ? TensorView{dh.get(), dt, {N, H}} : TensorView{},
                                         .dweight = dw ? TensorView{dw.get(), a.dweight_f32 ? DType::kF32 : dt, {V, H}} : TensorView{},
                                         .dbias = db ? TensorView{db.get(), dt, {V}} : TensorView{}}),
                   "bench-linear-cross-entropy");
  };
  using clock = std::chrono::steady_clock;
  const std::uint64_t rss_before = rss_bytes();
  const std::uint64_t maxrss_before = maxrss_bytes();
  auto t0 = clock::now();
  const double first_cpu0 = cpu_seconds();
  call();
  const double first_cpu_ms = (cpu_seconds() - first_cpu0) * 1e3;
  const double first_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  const std::uint64_t maxrss_after = maxrss_bytes();
  // An earlier peak above the current resident set would hide part of the call's growth; then
  // the bound below is still an upper bound (peak during the call <= maxrss_after).
  const std::uint64_t peak_extra = maxrss_after > rss_before ? maxrss_after - rss_before : 0;
  std::vector<double> ms;
  const double cpu0 = cpu_seconds();
  for (int i = 0; i < a.reps; ++i) {
    t0 = clock::now();
    call();
    ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
  }
  // CPU time of all threads per call: on a busy machine, a steadier measure of the work than wall time.
  double cpu_ms = a.reps > 0 ? (cpu_seconds() - cpu0) * 1e3 / a.reps : first_cpu_ms;
  if (ms.empty()) ms.push_back(first_ms);  // --reps 0: the first call is the measurement
  std::sort(ms.begin(), ms.end());
  const double median = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  const double products = a.forward_only ? 1 : 3;
  const double gflops = products * 2.0 * static_cast<double>(N) * static_cast<double>(H) *
                        static_cast<double>(V) / (median * 1e-3) / 1e9;
  const double loss_value = dt == DType::kF32    ? static_cast<double>(*static_cast<float*>(loss.get()))
                            : dt == DType::kF64  ? *static_cast<double*>(loss.get())
                            : dt == DType::kBF16 ? static_cast<double>(to_float(*static_cast<bfloat16*>(loss.get())))
                                                 : static_cast<double>(to_float(*static_cast<float16*>(loss.get())));
  if (a.json) {
    std::printf(
        "{\"impl\":\"xent\",\"tokens\":%lld,\"hidden\":%lld,\"vocab\":%lld,\"dtype\":\"%s\",\"pass\":\"%s\","
        "\"bias\":%s,\"dweight_f32\":%s,\"threads\":%d,\"isa\":\"%s\",\"blas_core\":\"%s\",\"token_block\":%lld,\"vocab_block\":%lld,\"recompute\":%s,"
        "\"workspace_bytes\":%zu,\"reps\":%d,\"median_ms\":%.6g,\"min_ms\":%.6g,\"first_ms\":%.6g,"
        "\"peak_extra_bytes\":%llu,\"rss_before_bytes\":%llu,\"maxrss_before_bytes\":%llu,"
        "\"cpu_ms\":%.6g,\"useful_gflops\":%.4g,\"loss\":%.9g}\n",
        static_cast<long long>(N), static_cast<long long>(H), static_cast<long long>(V),
        dtype_short(dt), a.forward_only ? "fwd" : "fwd+bwd", a.bias ? "true" : "false",
        a.dweight_f32 ? "true" : "false", num_threads(), active_isa().c_str(), blas_core().c_str(),
        static_cast<long long>(plan->token_block),
        static_cast<long long>(plan->vocab_block), plan->recompute ? "true" : "false", plan->workspace_bytes, a.reps,
        median, ms.front(), first_ms, static_cast<unsigned long long>(peak_extra),
        static_cast<unsigned long long>(rss_before), static_cast<unsigned long long>(maxrss_before), cpu_ms, gflops,
        loss_value);
    return;
  }
  std::printf("linear-cross-entropy %s N=%lld H=%lld V=%lld %s%s, %d thread%s, isa %s, OpenBLAS kernels %s\n",
              a.forward_only ? "fwd" : "fwd+bwd", static_cast<long long>(N), static_cast<long long>(H),
              static_cast<long long>(V), dtype_short(dt), a.dweight_f32 ? " (dweight f32)" : "", num_threads(),
              num_threads() == 1 ? "" : "s", active_isa().c_str(), blas_core().c_str());
  std::printf("  blocks %lld tokens x %lld classes%s, workspace %.1f MiB\n", static_cast<long long>(plan->token_block),
              static_cast<long long>(plan->vocab_block), plan->recompute ? " (logits recomputed)" : "",
              static_cast<double>(plan->workspace_bytes) / 1048576.0);
  std::printf("  median %.1f ms (min %.1f ms, %d reps; first call %.1f ms), %.1f GFLOP/s of products\n", median,
              ms.front(), a.reps, first_ms, gflops);
  std::printf("  CPU time %.1f ms per call (all threads)\n", cpu_ms);
  std::printf("  peak extra memory %.1f MiB (peak RSS growth over the first call)\n",
              static_cast<double>(peak_extra) / 1048576.0);
}

}  // namespace

CLI::App* add_linear_bench(CLI::App& parent, const std::string& name) {
  auto a = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand(
      name, "Time linear-cross-entropy (loss and all gradients) on random data; report median ms and peak extra memory");
  app->add_option("--tokens", a->tokens, "N, tokens (default 8192)")->type_name("N");
  app->add_option("--hidden", a->hidden, "H, hidden features (default 1024)")->type_name("H");
  app->add_option("--vocab", a->vocab, "V, vocabulary size (default 32000)")->type_name("V");
  app->add_option("--threads", a->threads, "Worker threads (default: all cores, or $XENT_THREADS)")
      ->type_name("T")
      ->check(at_least(1));
  app->add_option("--reps", a->reps,
                  "Timed calls after an untimed first one (default 3); 0 times the first call itself (for shapes "
                  "that take minutes)")->type_name("R");
  app->add_option("--dtype", a->dtype,
                  "f32, f64, bf16 or f16 (default f32; 16-bit widens blocks into the float32 layer's products)");
  app->add_flag("--dweight-f32", a->dweight_f32,
                "With --dtype bf16/f16: the weight gradient in a float32 view (no float32 accumulator of it)");
  app->add_flag("--bias", a->bias, "Include a bias (and its gradient)");
  app->add_flag("--forward-only", a->forward_only, "Loss only, no gradients");
  app->add_option("--label-smoothing", a->label_smoothing, "Label smoothing (default 0)");
  app->add_option("--lse-square-scale", a->lse_square_scale, "z-loss coefficient (default 0)");
  app->add_option("--softcap", a->softcap, "Logit soft-cap (default 0: off)");
  app->add_option("--token-block", a->token_block, "Tokens per block (default: automatic)");
  app->add_option("--vocab-block", a->vocab_block, "Classes per block (default: automatic)");
  app->add_option("--workspace-mib", a->workspace_mib, "Scratch the automatic blocks aim for (default 64)");
  app->add_option("--isa", a->isa, "Kernel set to use (default: the best, or $XENT_ISA)");
  app->add_flag("--json", a->json, "Print one JSON object (median_ms, peak_extra_bytes, ...)");
  app->footer(
      "\nExamples:\n"
      "  xent bench linear-cross-entropy --tokens 8192 --hidden 1024 --vocab 32000 --threads 2\n"
      "  xent bench linear-cross-entropy --tokens 32768 --hidden 1024 --vocab 128256 --json\n"
      "  bash bench/bench_linear.sh   # the table against PyTorch\n");
  app->callback([a] { run(*a); });
  return app;
}

}  // namespace xent::cli::bench_linear
