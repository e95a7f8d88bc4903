// token_stats_command.cc: `xent token-stats`: per-token logsumexp, entropy of the softmax and
// whether the argmax is the target, forward only (no loss, no gradient), from a .npy of logits and
// one of class indices. A thin wrapper over include/xent/losses.h cross_entropy_token_stats; no
// math here.
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "shared/arrays.h"
#include "xent/losses.h"

namespace xent::cli::ops {
namespace {

struct Args {
  std::string input, target, lse_out, entropy_out, correct_out, dtype;
  std::int64_t ignore_index = -100;
  int threads = 0;
  CLI::Option* lse_opt = nullptr;
  CLI::Option* entropy_opt = nullptr;
  CLI::Option* correct_opt = nullptr;
};

void run(const Args& a) {
  apply_threads(a.threads);
  check_output_paths({{"--lse-out", a.lse_out}, {"--entropy-out", a.entropy_out}, {"--correct-out", a.correct_out}});
  const bool ask_bf16 = !a.dtype.empty() && compute_dtype(a.dtype, DType::kF32) == DType::kBF16;
  NpyArray x = read_input("--input", a.input, ask_bf16);
  require_floating(x, "--input", a.input, "token-stats");
  x = convert_to(std::move(x), compute_dtype(a.dtype, x.dtype()));
  NpyArray t = read_input("--target", a.target);
  if (t.dtype() != DType::kI32 && t.dtype() != DType::kI64) {
    throw InputError(fmt::format("--target '{}' has dtype {}; token-stats expects class indices (an integer .npy)",
                                 a.target, t.file_dtype().empty() ? dtype_name(t.dtype()) : t.file_dtype()));
  }
  // No output flag at all: print the three.
  const bool none = !a.lse_opt->count() && !a.entropy_opt->count() && !a.correct_opt->count();
  const Shape ts = t.shape();
  NpyArray lse = make_array(x.dtype(), ts), ent = make_array(x.dtype(), ts), cor = make_array(DType::kI32, ts);
  TokenStatsOptions o;
  o.ignore_index = a.ignore_index;
  TensorView lv = none || a.lse_opt->count() ? lse.mutable_view() : TensorView{};
  TensorView ev = none || a.entropy_opt->count() ? ent.mutable_view() : TensorView{};
  TensorView cv = none || a.correct_opt->count() ? cor.mutable_view() : TensorView{};
  throw_if_error(cross_entropy_token_stats(x.view(), t.view(), o, lv, ev, cv), "token-stats");
  const bool show_dtype = !a.dtype.empty();
  std::vector<Output> outs;
  if (none || a.lse_opt->count()) outs.push_back({"--lse-out", a.lse_out, lse.view(), "lse", show_dtype});
  if (none || a.entropy_opt->count()) outs.push_back({"--entropy-out", a.entropy_out, ent.view(), "entropy", show_dtype});
  if (none || a.correct_opt->count()) outs.push_back({"--correct-out", a.correct_out, cor.view(), "correct"});
  write_outputs(outs);
}

CLI::Option* add_stat_out(CLI::App* app, const char* flag, std::string* path, const std::string& help,
                          const char* type_name) {
  return app->add_option(flag, *path, help + ". '-': the .npy bytes to stdout; the flag alone: printed as text")
      ->expected(0, 1)
      ->type_name(fmt::format("[{}]", type_name));
}

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand(
      "token-stats",
      "Per-token logsumexp, softmax entropy and argmax == target, forward only (no loss, no gradient)");
  app->add_option("--input", a->input,
                  "Logits, float16, bfloat16, float32 or float64 .npy, shape (C), (N, C) or (N, C, d1, ...); "
                  "classes along dim 1")
      ->required()
      ->type_name("X.npy");
  app->add_option("--target", a->target,
                  "Class indices, int .npy of shape (), (N) or (N, d1, ...), each in [0, C) or --ignore-index")
      ->required()
      ->type_name("T.npy");
  app->add_option("--ignore-index", a->ignore_index,
                  "Targets equal to K get correct = -1 (their lse and entropy are still given; default -100)")
      ->type_name("K");
  a->lse_opt = add_stat_out(app, "--lse-out", &a->lse_out,
                            "Write logsumexp over the classes, the target's shape, in --dtype", "LSE.npy");
  a->entropy_opt = add_stat_out(app, "--entropy-out", &a->entropy_out,
                                "Write the entropy -sum p log p of the softmax, the target's shape, in --dtype",
                                "H.npy");
  a->correct_opt = add_stat_out(app, "--correct-out", &a->correct_out,
                                "Write int32 1 where argmax (the first maximum, as torch.argmax) is the target, 0 "
                                "where not, -1 where ignored",
                                "OK.npy");
  add_dtype_option(app, &a->dtype);
  add_threads_option(app, &a->threads);
  app->footer(examples({
      "xent token-stats --input logits.npy --target labels.npy            # prints lse, entropy, correct",
      "xent token-stats --input logits.npy --target labels.npy --entropy-out h.npy --correct-out ok.npy",
  }));
  app->callback([a] { run(*a); });
}

}  // namespace

XENT_REGISTER_COMMAND(25, setup);

}  // namespace xent::cli::ops
