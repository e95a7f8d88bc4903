// bench_command.cc (cli/bench): `xent bench`: times one op of the public API on random data and
// reports the median time, the GB/s of its minimal memory traffic, and that as a fraction of the
// machine's measured memory-copy bandwidth. Cross-entropy takes class-index or probability targets,
// label smoothing and class weights. `xent bench --list-isas` lists the kernel sets.
// Not a test and not a profiler: it checks no result and reports no breakdown.
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "validators.h"
#include "bench_linear.h"
#include "workload.h"
#include "xent/runtime.h"

namespace xent::cli {
namespace {

struct BenchArgs {
  std::string op;
  std::string shape = "8192,32000";
  std::string dtype = "f32";
  std::string pass = "fwd";
  std::string target = "index";
  double label_smoothing = 0.0;
  bool weighted = false;
  bool token_weighted = false;
  bool exact = false;
  bool target_given = false, smoothing_given = false;  // set from the options' counts
  int threads = 0;
  std::string isa;
  int reps = 0;
  double min_time = 0.5;
  bool json = false;
  bool list_isas = false;
  bool no_copy = false;
};

void parse_shape(const std::string& s, std::int64_t* N, std::int64_t* C) {
  std::int64_t a = 0, b = 0;
  char comma = 0, extra = 0;
  std::istringstream in(s);
  if (!(in >> a >> comma >> b) || comma != ',' || (in >> extra) || a <= 0 || b <= 0)
    throw UsageError(fmt::format("--shape expects two positive sizes N,C (e.g. 8192,32000), found '{}'", s));
  *N = a;
  *C = b;
}

DType parse_dtype(const std::string& s) {
  if (s == "f32" || s == "float32") return DType::kF32;
  if (s == "f64" || s == "float64") return DType::kF64;
  if (s == "bf16" || s == "bfloat16") return DType::kBF16;
  if (s == "f16" || s == "float16") return DType::kF16;
  throw UsageError(fmt::format("--dtype expects f32, f64, bf16 or f16, found '{}'", s));
}

void list_isas() {
  const std::string active = active_isa();
  for (const auto& name : supported_isas()) std::printf("%s%s\n", name.c_str(), name == active ? " (active)" : "");
}

void run_bench(const BenchArgs& a) {
  if (a.list_isas) {
    list_isas();
    return;
  }
  if (a.op.empty())
    throw UsageError(fmt::format("xent bench needs an op: {} (or --list-isas)", fmt::join(bench::op_names(), ", ")));
  bench::Spec spec;
  spec.op = a.op;
  parse_shape(a.shape, &spec.N, &spec.C);
  spec.dtype = parse_dtype(a.dtype);
  spec.pass = a.pass;
  spec.target = a.target;
  spec.label_smoothing = a.label_smoothing;
  spec.weighted = a.weighted;
  spec.token_weighted = a.token_weighted;
  spec.exact = a.exact;
  const bool ce = spec.op == "cross-entropy";
  if (a.target_given && !ce && spec.op != "nll")
    throw UsageError(fmt::format("--target applies to cross-entropy and nll only, found op {}", spec.op));
  if (a.smoothing_given && !ce)
    throw UsageError(fmt::format("--label-smoothing applies to cross-entropy only, found op {}", spec.op));
  if (std::string why = bench::check_options(spec); !why.empty()) throw UsageError(why);
  if (a.threads < 0) throw UsageError(fmt::format("--threads must be positive, found {}", a.threads));
  if (a.threads > 0) set_num_threads(a.threads);
  if (!a.isa.empty()) throw_if_error(set_isa(a.isa), "--isa");
  if (a.reps < 0) throw UsageError(fmt::format("--reps must be positive, found {}", a.reps));

  std::unique_ptr<bench::Workload> w;
  throw_if_error(bench::Workload::create(spec, &w));
  Status status;
  auto call = [&] {
    Status s = w->run();
    if (!s.ok() && status.ok()) status = s;
  };
  const int min_reps = a.reps > 0 ? a.reps : 5;
  const int max_reps = a.reps > 0 ? a.reps : 1000;
  const double min_time = a.reps > 0 ? 0.0 : a.min_time;
  std::vector<double> samples = bench::time_calls(call, 1, min_reps, max_reps, min_time);
  throw_if_error(status, "xent bench");
  const double med = bench::median(samples);
  double best = samples.empty() ? 0 : samples[0];
  for (double s : samples) best = s < best ? s : best;
  const int threads = num_threads();
  const double gbps = w->min_bytes() / med / 1e9;
  const double copy = a.no_copy ? 0.0 : bench::measure_copy_gbps(threads);
  const double frac = copy > 0 ? gbps / copy : 0.0;
  const std::string dtype = spec.dtype == DType::kF32 ? "f32" : spec.dtype == DType::kF64 ? "f64" : spec.dtype == DType::kBF16 ? "bf16" : "f16";
  const bool has_targets = ce || spec.op == "nll";
  if (a.json) {
    // target / label_smoothing / weighted only for the ops that take class targets.
    const std::string options =
        has_targets ? fmt::format("\"target\":\"{}\",\"label_smoothing\":{},\"weighted\":{},\"token_weighted\":{},\"exact\":{},",
                                  spec.target, spec.label_smoothing, spec.weighted ? "true" : "false",
                                  spec.token_weighted ? "true" : "false", spec.exact ? "true" : "false")
                    : std::string();
    std::printf(
        "{\"op\":\"%s\",\"shape\":[%lld,%lld],\"dtype\":\"%s\",\"pass\":\"%s\",%s\"threads\":%d,\"isa\":\"%s\","
        "\"reps\":%zu,\"median_ms\":%.6g,\"min_ms\":%.6g,\"bytes\":%.6g,\"gbps\":%.4g,\"copy_gbps\":%.4g,"
        "\"copy_fraction\":%.4g}\n",
        spec.op.c_str(), static_cast<long long>(spec.N), static_cast<long long>(spec.C), dtype.c_str(),
        spec.pass.c_str(), options.c_str(), threads, active_isa().c_str(), samples.size(), med * 1e3, best * 1e3,
        w->min_bytes(), gbps, copy, frac);
    return;
  }
  std::string variant;
  if (spec.target == "prob") variant += ", probability targets";
  if (spec.label_smoothing != 0.0) variant += fmt::format(", label smoothing {}", spec.label_smoothing);
  if (spec.weighted) variant += ", class weights";
  if (spec.token_weighted) variant += ", token weights";
  if (spec.exact) variant += ", exact summation";
  std::printf("%s %s %lldx%lld %s%s, %d thread%s, isa %s\n", spec.op.c_str(), spec.pass.c_str(),
              static_cast<long long>(spec.N), static_cast<long long>(spec.C), dtype.c_str(), variant.c_str(), threads,
              threads == 1 ? "" : "s", active_isa().c_str());
  std::printf("  median %.3f ms (min %.3f ms, %zu reps)\n", med * 1e3, best * 1e3, samples.size());
  std::printf("  %.2f GB/s of minimal traffic (%.3g GB: inputs read once, outputs written once)\n", gbps,
              w->min_bytes() / 1e9);
  if (copy > 0) std::printf("  memory copy %.2f GB/s with %d thread%s: %.0f%% of it\n", copy, threads, threads == 1 ? "" : "s", 100 * frac);
}

void setup(CLI::App& root) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* app = root.add_subcommand("bench", "Time an op on random data: median ms, GB/s and the fraction of memory-copy bandwidth");
  app->add_option("op", args->op, fmt::format("One of: {}", fmt::join(bench::op_names(), ", ")));
  app->add_option("--shape", args->shape, "N,C: rows and classes (default 8192,32000)");
  app->add_option("--dtype", args->dtype, "f32, f64, bf16 or f16 (default f32)");
  app->add_option("--pass", args->pass, "fwd, bwd or fwd+bwd (cross-entropy's fwd+bwd is the fused call; default fwd)");
  CLI::Option* target = app->add_option(
      "--target", args->target,
      "cross-entropy: index (N class indices) or prob (N,C class probabilities, each row summing to 1); default index");
  CLI::Option* smoothing =
      app->add_option("--label-smoothing", args->label_smoothing, "cross-entropy: label smoothing in [0, 1] (default 0)");
  app->add_flag("--weight", args->weighted, "cross-entropy, nll: random positive class weights (default none)");
  app->add_flag("--token-weight", args->token_weighted,
                "cross-entropy (class indices): random per-token loss weights in [0, 2) (default none)");
  app->add_flag("--exact", args->exact,
                "cross-entropy (class indices, f32/f64): exact summation (CrossEntropyOptions::summation = exact)");
  app->add_option("--threads", args->threads, "Worker threads (default: all cores, or $XENT_THREADS)")
      ->check(at_least(1));
  app->add_option("--isa", args->isa, "Kernel set to use (see --list-isas; default: the best, or $XENT_ISA)");
  app->add_option("--reps", args->reps, "Timed repetitions (default: at least 5 and --min-time seconds)");
  app->add_option("--min-time", args->min_time, "Seconds to keep timing when --reps is not given (default 0.5)");
  app->add_flag("--json", args->json, "Print one JSON object (median_ms, gbps, copy_gbps, ...)");
  app->add_flag("--no-copy", args->no_copy, "Skip the memory-copy bandwidth measurement");
  app->add_flag("--list-isas", args->list_isas, "List the kernel sets this CPU supports, best first, and exit");
  app->footer(
      "Examples:\n"
      "  xent bench cross-entropy --shape 8192,32000 --dtype f32 --pass fwd+bwd --threads 2\n"
      "  xent bench cross-entropy --shape 4096,1000 --pass fwd+bwd --target prob --label-smoothing 0.1\n"
      "  xent bench softmax --shape 4096,1000 --json\n"
      "  xent bench --list-isas");
  bench_linear::add_linear_bench(*app, "linear-cross-entropy");
  app->callback([args, app, target, smoothing] {
    // `xent bench linear-cross-entropy` (or cli/mpi's parallel-linear-cross-entropy) ran its own callback.
    if (!app->get_subcommands().empty()) return;
    args->target_given = target->count() > 0;
    args->smoothing_given = smoothing->count() > 0;
    run_bench(*args);
  });
}

}  // namespace

XENT_REGISTER_COMMAND(90, setup);

}  // namespace xent::cli
