// softmax_commands.cc: `xent softmax`, `xent log-softmax` and `xent logsumexp`: read a .npy,
// apply the op along --dim, write the result (and, with --grad-out, the gradient of the sum of the
// output with respect to the input). Thin wrappers over include/xent/softmax.h; no math here.
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "common.h"
#include "xent/softmax.h"

namespace xent::cli::ops {
namespace {

enum class Op { kSoftmax, kLogSoftmax, kLogSumExp };

struct Args {
  Op op = Op::kSoftmax;
  std::string name;
  std::string input, out, grad_out;
  std::int64_t dim = 0;
  CLI::Option* dim_opt = nullptr;
  int threads = 0;
};

void run(const Args& a) {
  apply_threads(a.threads);
  NpyArray x = read_input("--input", a.input);
  require_floating(x, "--input", a.input, a.name);
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
  if (a.grad_out.empty()) {
    write_outputs({{a.out, y.view()}});
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
  write_outputs({{a.out, y.view()}, {a.grad_out, dx.view()}});
}

void add(CLI::App& root, Op op, const char* name, const char* summary, const char* example_lines) {
  auto args = std::make_shared<Args>();
  args->op = op;
  args->name = name;
  CLI::App* app = root.add_subcommand(name, summary);
  app->add_option("--input", args->input, "Input array, float32 or float64 .npy, any rank up to 8")
      ->required()
      ->type_name("X.npy");
  args->dim_opt = app->add_option("--dim", args->dim,
                                  "Dimension to reduce over; negative counts from the end (-1 = last). Default: "
                                  "1 for inputs of 2 or more dimensions, 0 for 1-d.")
                      ->type_name("D");
  app->add_option("--out", args->out,
                  op == Op::kLogSumExp ? "Output .npy: the input's shape without --dim, the input's dtype"
                                       : "Output .npy: the input's shape and dtype")
      ->required()
      ->type_name("Y.npy");
  app->add_option("--grad-out", args->grad_out,
                  "Also write d sum(output) / d input (the backward pass with an upstream gradient of ones), "
                  "input's shape and dtype")
      ->type_name("G.npy");
  add_threads_option(app, &args->threads);
  app->footer(example_lines);
  app->callback([args] { run(*args); });
}

void setup(CLI::App& root) {
  add(root, Op::kSoftmax, "softmax", "Softmax along a dimension: exp(x - max) / sum(exp(x - max))",
      "\nExamples:\n"
      "  xent softmax --input logits.npy --out probs.npy             # (N, C): softmax over classes\n"
      "  xent softmax --input x.npy --dim -1 --out y.npy --grad-out dx.npy\n");
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
