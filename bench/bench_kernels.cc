// bench_kernels.cc: Google Benchmark cases for the softmax / cross-entropy kernels through the
// public API, per op x shape x dtype x pass, under the active ISA and thread count (set them with
// XENT_ISA and XENT_THREADS). Counters: bytes_per_second of minimal traffic (see workload.h).
// Not a test and not run by ctest; `xent bench` is the user-facing equivalent.
//
// Cross-entropy variants are named op:variant (cross-entropy:prob = probability targets,
// cross-entropy:ls0.1 = label smoothing 0.1), so filters on 'cross-entropy/' keep selecting the
// class-index cases only.
//
//   XENT_THREADS=1 build/bench/bench_kernels --benchmark_filter='cross-entropy/fwd\+bwd'
//   XENT_THREADS=1 build/bench/bench_kernels --benchmark_filter='cross-entropy:prob'
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "workload.h"
#include "xent/runtime.h"

namespace {

void run_case(benchmark::State& state, xent::bench::Spec spec) {
  std::unique_ptr<xent::bench::Workload> w;
  const xent::Status s = xent::bench::Workload::create(spec, &w);
  if (!s.ok()) {
    state.SkipWithError(s.message().c_str());
    return;
  }
  for (auto _ : state) {
    const xent::Status r = w->run();
    if (!r.ok()) {
      state.SkipWithError(r.message().c_str());
      return;
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(w->min_bytes() * static_cast<double>(state.iterations())));
  state.SetLabel(xent::active_isa() + ", " + std::to_string(xent::num_threads()) + " threads");
}

struct Case {
  const char* op;
  const char* pass;
  std::int64_t N, C;
  const char* target = "index";  // cross-entropy: "index" or "prob"
  double label_smoothing = 0.0;  // cross-entropy
  const char* variant = "";      // name suffix of the op for non-default targets / smoothing
};

const Case kCases[] = {
    {"cross-entropy", "fwd+bwd", 4096, 1000},   {"cross-entropy", "fwd+bwd", 8192, 32000},
    {"cross-entropy", "fwd+bwd", 1024, 128256}, {"cross-entropy", "fwd+bwd", 65536, 10},
    {"cross-entropy", "fwd", 8192, 32000},      {"cross-entropy", "bwd", 8192, 32000},
    {"softmax", "fwd", 4096, 1000},             {"softmax", "fwd", 8192, 32000},
    {"softmax", "bwd", 8192, 32000},            {"log-softmax", "fwd", 4096, 1000},
    {"log-softmax", "fwd", 8192, 32000},        {"log-softmax", "bwd", 8192, 32000},
    {"logsumexp", "fwd", 8192, 32000},          {"nll", "fwd+bwd", 8192, 32000},
    {"bce-with-logits", "fwd", 4096, 1000},     {"bce-with-logits", "bwd", 4096, 1000},
    {"cross-entropy", "fwd+bwd", 8192, 32000, "prob", 0.0, ":prob"},
    {"cross-entropy", "fwd+bwd", 8192, 32000, "index", 0.1, ":ls0.1"},
};

int register_all() {
  for (const Case& c : kCases) {
    for (xent::DType dt : {xent::DType::kF32, xent::DType::kF64}) {
      xent::bench::Spec spec;
      spec.op = c.op;
      spec.pass = c.pass;
      spec.N = c.N;
      spec.C = c.C;
      spec.dtype = dt;
      spec.target = c.target;
      spec.label_smoothing = c.label_smoothing;
      const std::string name = std::string(c.op) + c.variant + "/" + c.pass + "/" + std::to_string(c.N) + "x" + std::to_string(c.C) +
                               "/" + (dt == xent::DType::kF32 ? "f32" : "f64");
      benchmark::RegisterBenchmark(name.c_str(), run_case, spec)->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  }
  return 0;
}

const int kRegistered = register_all();

}  // namespace

BENCHMARK_MAIN();
