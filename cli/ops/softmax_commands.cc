// softmax_commands.cc: `xent softmax`, `xent log-softmax` and `xent logsumexp`: read a .npy,
// apply the op along --dim, write the result (and, with --grad-out, the gradient of the sum of the
// output with respect to the input). Thin wrappers over include/xent/softmax.h; no math here.
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "shared/arrays.h"
#include "xent/softmax.h"

namespace xent::cli::ops {
namespace {

enum class Op { kSoftmax, kLogSoftmax, kLogSumExp };

struct Args {
  Op op = Op::kSoftmax;
  std::string name;
  std::string input, out, grad_out;
  std::string dtype;  // --dtype: "" = the input's
  std::int64_t dim = 0;
  CLI::Option* dim_opt = nullptr;
  CLI::Option* grad_opt = nullptr;
  int threads = 0;
};

void run(const Args& a) {
  apply_threads(a.threads);
  check_output_paths({{"--out", a.out}, {"--grad-out", a.grad_out}});
  const bool ask_bf16 = !a.dtype.empty() && compute_dtype(a.dtype, DType::kF32) == DType::kBF16;
  NpyArray x = read_input("--input", a.input, ask_bf16);
  require_floating(x, "--input", a.input, a.name);
  x = convert_to(std::move(x), compute_dtype(a.dtype, x.dtype()));
  const bool show_dtype = !a.dtype.empty();
  // PyTorch deprecates the implicit dim; for rank >= 3 the old default (1) is rarely what is meant
  // ((B, T, V) logits want -1), so it must be said.
  if (!a.dim_opt->count() && x.shape().rank() >= 3) {
    throw UsageError(fmt::format("{}: --dim is required for an input of rank {} (shape {}); expected e.g. --dim -1 "
                                 "for the last dimension",
                                 a.name, x.shape().rank(), x.shape().to_string()));
  }
  const std::int64_t dim = a.dim_opt->count() ? a.dim : default_dim(x.shape());
  const int d = normalize_dim(dim, x.shape());
  const Shape out_shape = a.op == Op::kLogSumExp && x.shape().rank() > 0 ? x.shape().without(d) : x.shape();
  NpyArray y = make_array(x.dtype(), out_shape);
  Status s;
  switch (a.op) {
    case Op::kSoftmax: s = softmax_forward(x.view(), dim, y.mutable_view()); break;
    case Op::kLogSoftmax: s = log_softmax_forward(x.view(), dim, y.mutable_view()); break;
    case Op::kLogSumExp: s = logsumexp_forward(x.view(), dim, y.mutable_view()); break;
  }
  throw_if_error(s, a.name);
  const char* result_name = a.op == Op::kSoftmax ? "softmax" : a.op == Op::kLogSoftmax ? "log_softmax" : "logsumexp";
  if (!a.grad_opt->count()) {
    write_outputs({{"--out", a.out, y.view(), result_name, show_dtype}});
    return;
  }
  NpyArray ones = make_ones(x.dtype(), out_shape);
  NpyArray dx = make_array(x.dtype(), x.shape());
  switch (a.op) {
    case Op::kSoftmax: s = softmax_backward(y.view(), ones.view(), dim, dx.mutable_view()); break;
    case Op::kLogSoftmax: s = log_softmax_backward(y.view(), ones.view(), dim, dx.mutable_view()); break;
    case Op::kLogSumExp: s = logsumexp_backward(x.view(), y.view(), ones.view(), dim, dx.mutable_view()); break;
  }
  throw_if_error(s, a.name + " backward");
  write_outputs({{"--out", a.out, y.view(), result_name, show_dtype},
                 {"--grad-out", a.grad_out, dx.view(), "gradient", show_dtype}});
}

void add(CLI::App& root, Op op, const char* name, const char* summary, const char* example_lines) {
  auto args = std::make_shared<Args>();
  args->op = op;
  args->name = name;
  CLI::App* app = root.add_subcommand(name, summary);
  app->add_option("--input", args->input, "Input array, float16, bfloat16, float32 or float64 .npy, any rank up to 8")
      ->required()
      ->type_name("X.npy");
  args->dim_opt = app->add_option("--dim", args->dim,
                                  "Dimension to reduce over; negative counts from the end (-1 = last). Default: "
                                  "1 for 2-d inputs, 0 for 1-d; required for 3 or more dimensions.")
                      ->type_name("D");
  add_out_option(app, &args->out,
                 op == Op::kLogSumExp ? "Output .npy: the input's shape without --dim, in --dtype"
                                      : "Output .npy: the input's shape, in --dtype",
                 "Y.npy");
  args->grad_opt = add_grad_out_option(
      app, &args->grad_out,
      "Also write d sum(output) / d input (the backward pass with an upstream gradient of ones), input's shape and "
      "dtype",
      "G.npy");
  add_dtype_option(app, &args->dtype);
  add_threads_option(app, &args->threads);
  app->footer(example_lines);
  app->callback([args] { run(*args); });
}

void setup(CLI::App& root) {
  add(root, Op::kSoftmax, "softmax", "Softmax along a dimension: exp(x - max) / sum(exp(x - max))",
      "\nExamples:\n"
      "  xent softmax --input logits.npy --out probs.npy             # (N, C): softmax over classes\n"
      "  xent softmax --input x.npy --dim -1 --out y.npy --grad-out dx.npy\n"
      "  xent softmax --input logits.npy --dtype bf16 --out probs_bf16.npy      # computed in bfloat16\n");
  add(root, Op::kLogSoftmax, "log-softmax", "Log-softmax along a dimension: x - max - log(sum(exp(x - max)))",
      "\nExamples:\n"
      "  xent log-softmax --input logits.npy --out logp.npy\n"
      "  xent log-softmax --input x.npy --dim 0 --out y.npy --grad-out dx.npy\n");
  add(root, Op::kLogSumExp, "logsumexp", "Log-sum-exp along a dimension (the dimension is removed)",
      "\nExamples:\n"
      "  xent logsumexp --input logits.npy --out lse.npy              # (N, C) -> (N)\n"
      "  xent logsumexp --input x.npy --dim -1 --out lse.npy --grad-out dx.npy   # dx = softmax(x)\n");
}

}  // namespace

XENT_REGISTER_COMMAND(10, setup);

}  // namespace xent::cli::ops
