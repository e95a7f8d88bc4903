// loss_commands.cc: `xent cross-entropy`, `xent nll`, `xent bce` and `xent bce-with-logits`: read
// the input, target and optional weights as .npy, compute the loss (and with --grad-out the
// gradient of the sum of the loss with respect to the input), then write every output at once.
// Thin wrappers over include/xent/losses.h: the library validates shapes, dtypes and targets.
#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "shared/arrays.h"
#include "xent/losses.h"

namespace xent::cli::ops {
namespace {

enum class Op { kCrossEntropy, kNll, kBce, kBceWithLogits };

struct Args {
  Op op = Op::kCrossEntropy;
  std::string name;
  std::string input, target, weight, pos_weight, token_weight, out, grad_out;
  std::string reduction = "mean";
  std::int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  bool exact = false;  // --exact: Summation::kExact
  std::string input_kind = "logits";
  std::string dtype;  // --dtype: "" = the input's
  double eps = 0.0;  // 0: the log is clamped at -100, as PyTorch's binary_cross_entropy
  int threads = 0;
  CLI::Option* grad_opt = nullptr;
};

// The loss's shape, as losses.h defines it, for the input and target read from the files.
Shape loss_shape(Op op, Reduction r, const NpyArray& x, const NpyArray& t) {
  if (r != Reduction::kNone) return Shape{};
  if (op == Op::kBce || op == Op::kBceWithLogits) return x.shape();
  if (op == Op::kCrossEntropy && is_floating(t.dtype())) {  // class probabilities
    return x.shape().rank() >= 2 ? x.shape().without(1) : Shape{};
  }
  return t.shape();
}

// cross-entropy --input-kind probabilities: the input holds predicted probabilities (d2l's y_hat),
// taken as given: no row is renormalised, each log is clamped from below (docs/numerics.md,
// "Cross-entropy from probabilities"). Class indices go through the library's nll_loss on the
// clamped logs; probability (e.g. one-hot) targets are summed here, row by row in double.
void run_probabilities(const Args& a, Reduction reduction, const NpyArray& p, const NpyArray& t,
                       const std::optional<NpyArray>& w) {
  if (a.label_smoothing != 0.0) {
    throw UsageError("--label-smoothing applies to logits; with --input-kind probabilities smooth the targets instead");
  }
  if (!(a.eps >= 0.0 && a.eps < 1.0)) throw UsageError(fmt::format("--eps must be in [0, 1); got {}", a.eps));
  const Shape& ps = p.shape();
  if (ps.rank() < 1) throw InputError(fmt::format("--input has shape {}; expected (C), (N, C) or (N, C, d1, ...)", ps.to_string()));
  const std::int64_t C = ps.rank() == 1 ? ps[0] : ps[1];
  const std::int64_t N = ps.rank() == 1 ? 1 : ps[0];
  const std::int64_t D = ps.rank() <= 2 ? 1 : ps.numel() / std::max<std::int64_t>(N * C, 1);
  const double floor = a.eps > 0.0 ? std::log(a.eps) : -100.0;
  NpyArray logp = make_array(p.dtype(), ps);
  const bool f32 = p.dtype() == DType::kF32;
  auto get = [f32](const NpyArray& x, std::int64_t i) {
    return f32 ? static_cast<double>(x.as<float>()[i]) : x.as<double>()[i];
  };
  for (std::int64_t i = 0; i < ps.numel(); ++i) {
    const double v = get(p, i);
    if (!(v >= 0.0 && v <= 1.0)) {
      throw InputError(fmt::format("--input holds probabilities; expected values in [0, 1], found {} at flat index {}",
                                   v, i));
    }
    const double l = std::max(std::log(v), floor);
    if (f32) logp.as<float>()[i] = static_cast<float>(l);
    else logp.as<double>()[i] = l;
  }
  const bool grad = a.grad_opt->count() > 0;
  std::optional<NpyArray> dp;
  if (grad) dp = make_array(p.dtype(), ps);
  NpyArray loss;
  if (!is_floating(t.dtype())) {
    NllOptions o;
    if (w) o.weight = w->view();
    o.ignore_index = a.ignore_index;
    o.reduction = reduction;
    loss = make_array(p.dtype(), reduction == Reduction::kNone ? t.shape() : Shape{});
    throw_if_error(nll_loss_forward(logp.view(), t.view(), o, loss.mutable_view()), a.name);
    if (dp) {  // d/dp = d/dlog(p) / p where the clamp is not active, else 0
      NpyArray ones = make_ones(p.dtype(), loss.shape());
      throw_if_error(nll_loss_backward(logp.view(), t.view(), o, ones.view(), dp->mutable_view()), a.name);
      for (std::int64_t i = 0; i < ps.numel(); ++i) {
        const double v = get(p, i), g = get(*dp, i);
        const double d = std::log(v) > floor ? g / v : 0.0;
        if (f32) dp->as<float>()[i] = static_cast<float>(d);
        else dp->as<double>()[i] = d;
      }
    }
  } else {
    if (t.shape() != ps || t.dtype() != p.dtype()) {
      throw InputError(fmt::format("--target holds probabilities of shape {} and dtype {}; expected the input's shape "
                                   "{} and dtype {}",
                                   t.shape().to_string(), dtype_name(t.dtype()), ps.to_string(), dtype_name(p.dtype())));
    }
    if (w && (w->shape() != Shape{C} || w->dtype() != p.dtype())) {
      throw InputError(fmt::format("--weight has shape {}; expected [{}] in the input's dtype", w->shape().to_string(), C));
    }
    const Shape row_shape = ps.rank() == 1 ? Shape{} : ps.without(1);
    std::vector<double> rows(static_cast<std::size_t>(N * D), 0.0);
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t d = 0; d < D; ++d) {
        double acc = 0.0;
        for (std::int64_t c = 0; c < C; ++c) {
          const std::int64_t i = (n * C + c) * D + d;
          const double wc = w ? get(*w, c) : 1.0;
          acc -= wc * get(t, i) * get(logp, i);
        }
        rows[static_cast<std::size_t>(n * D + d)] = acc;
      }
    }
    double sum = 0.0;
    for (double r : rows) sum += r;
    const double scale = reduction == Reduction::kMean ? 1.0 / static_cast<double>(N * D) : 1.0;
    loss = make_array(p.dtype(), reduction == Reduction::kNone ? row_shape : Shape{});
    auto put = [f32](NpyArray& x, std::int64_t i, double v) {
      if (f32) x.as<float>()[i] = static_cast<float>(v);
      else x.as<double>()[i] = v;
    };
    if (reduction == Reduction::kNone) {
      for (std::int64_t i = 0; i < N * D; ++i) put(loss, i, rows[static_cast<std::size_t>(i)]);
    } else {
      put(loss, 0, sum * scale);
    }
    if (dp) {
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t c = 0; c < C; ++c)
          for (std::int64_t d = 0; d < D; ++d) {
            const std::int64_t i = (n * C + c) * D + d;
            const double v = get(p, i), wc = w ? get(*w, c) : 1.0;
            const double tv = get(t, i);
            put(*dp, i, tv != 0.0 && std::log(v) > floor ? -wc * tv / v * scale : 0.0);
          }
    }
  }
  if (dp) {
    write_outputs({{"--out", a.out, loss.view(), "loss"}, {"--grad-out", a.grad_out, dp->view(), "gradient"}});
  } else {
    write_outputs({{"--out", a.out, loss.view(), "loss"}});
  }
}

void run(const Args& a) {
  if (a.op == Op::kCrossEntropy && !(a.label_smoothing >= 0.0 && a.label_smoothing <= 1.0)) {
    throw UsageError(fmt::format("--label-smoothing must be in [0, 1]; got {}", a.label_smoothing));
  }
  const Reduction reduction = parse_reduction(a.reduction);
  apply_threads(a.threads);
  check_output_paths({{"--out", a.out}, {"--grad-out", a.grad_out}});

  const bool ask_bf16 = !a.dtype.empty() && compute_dtype(a.dtype, DType::kF32) == DType::kBF16;
  NpyArray x = read_input("--input", a.input, ask_bf16);
  require_floating(x, "--input", a.input, a.name);
  NpyArray t = read_input("--target", a.target, ask_bf16);
  std::optional<NpyArray> w, pw, tw;
  if (!a.weight.empty()) w = read_input("--weight", a.weight, ask_bf16);
  if (!a.pos_weight.empty()) pw = read_input("--pos-weight", a.pos_weight, ask_bf16);
  if (!a.token_weight.empty()) tw = read_input("--token-weight", a.token_weight, ask_bf16);
  // --dtype: every floating input converted once to the compute dtype (targets that are class
  // indices stay integers).
  if (!a.dtype.empty()) {
    const DType dt = compute_dtype(a.dtype, x.dtype());
    x = convert_to(std::move(x), dt);
    if (is_floating(t.dtype())) t = convert_to(std::move(t), dt);
    if (w && is_floating(w->dtype())) w = convert_to(std::move(*w), dt);
    if (pw && is_floating(pw->dtype())) pw = convert_to(std::move(*pw), dt);
    if (tw && is_floating(tw->dtype())) tw = convert_to(std::move(*tw), dt);
  }
  if (tw && (a.input_kind == "probabilities" || is_floating(t.dtype()))) {
    throw UsageError("--token-weight applies to class-index targets with --input-kind logits");
  }
  if (a.exact && (a.input_kind == "probabilities" || is_floating(t.dtype()))) {
    throw UsageError("--exact applies to class-index targets with --input-kind logits");
  }
  if (a.op == Op::kCrossEntropy && a.input_kind == "probabilities") {
    if (x.dtype() != DType::kF32 && x.dtype() != DType::kF64) {
      throw InputError(fmt::format("--input-kind probabilities computes in float32 or float64, found {}; give "
                                   "--dtype f32 or f64",
                                   dtype_name(x.dtype())));
    }
    run_probabilities(a, reduction, x, t, w);
    return;
  }
  if (a.eps != 0.0) throw UsageError("--eps applies to --input-kind probabilities only");

  NpyArray loss = make_array(x.dtype(), loss_shape(a.op, reduction, x, t));
  std::optional<NpyArray> dx;
  if (a.grad_opt->count()) dx = make_array(x.dtype(), x.shape());
  Status s;
  switch (a.op) {
    case Op::kCrossEntropy: {
      CrossEntropyOptions o;
      if (w) o.weight = w->view();
      o.ignore_index = a.ignore_index;
      o.reduction = reduction;
      o.label_smoothing = a.label_smoothing;
      if (tw) o.token_weight = tw->view();
      o.summation = a.exact ? Summation::kExact : Summation::kFast;
      s = dx ? cross_entropy_fused(x.view(), t.view(), o, loss.mutable_view(), dx->mutable_view())
             : cross_entropy_forward(x.view(), t.view(), o, loss.mutable_view());
      throw_if_error(s, a.name);
      break;
    }
    case Op::kNll: {
      NllOptions o;
      if (w) o.weight = w->view();
      o.ignore_index = a.ignore_index;
      o.reduction = reduction;
      throw_if_error(nll_loss_forward(x.view(), t.view(), o, loss.mutable_view()), a.name);
      if (dx) {
        NpyArray ones = make_ones(x.dtype(), loss.shape());
        throw_if_error(nll_loss_backward(x.view(), t.view(), o, ones.view(), dx->mutable_view()), a.name);
      }
      break;
    }
    case Op::kBce:
    case Op::kBceWithLogits: {
      BceOptions o;
      if (w) o.weight = w->view();
      if (pw) o.pos_weight = pw->view();
      o.reduction = reduction;
      const bool logits = a.op == Op::kBceWithLogits;
      s = logits ? binary_cross_entropy_with_logits_forward(x.view(), t.view(), o, loss.mutable_view())
                 : binary_cross_entropy_forward(x.view(), t.view(), o, loss.mutable_view());
      throw_if_error(s, a.name);
      if (dx) {
        NpyArray ones = make_ones(x.dtype(), loss.shape());
        s = logits ? binary_cross_entropy_with_logits_backward(x.view(), t.view(), o, ones.view(), dx->mutable_view())
                   : binary_cross_entropy_backward(x.view(), t.view(), o, ones.view(), dx->mutable_view());
        throw_if_error(s, a.name);
      }
      break;
    }
  }
  const bool show_dtype = !a.dtype.empty();
  if (dx) {
    write_outputs({{"--out", a.out, loss.view(), "loss", show_dtype},
                   {"--grad-out", a.grad_out, dx->view(), "gradient", show_dtype}});
  } else {
    write_outputs({{"--out", a.out, loss.view(), "loss", show_dtype}});
  }
}

CLI::App* add_common(CLI::App& root, const std::shared_ptr<Args>& args, const char* summary, const char* input_help,
                     const char* target_help) {
  CLI::App* app = root.add_subcommand(args->name, summary);
  app->add_option("--input", args->input, input_help)->required()->type_name("X.npy");
  app->add_option("--target", args->target, target_help)->required()->type_name("T.npy");
  return app;
}

void add_outputs(CLI::App* app, const std::shared_ptr<Args>& args) {
  add_reduction_option(app, &args->reduction);
  add_out_option(app, &args->out, "Output .npy for the loss, in --dtype (default: the input's dtype)", "L.npy");
  args->grad_opt = add_grad_out_option(app, &args->grad_out,
                                       "Also write d sum(loss) / d input (input's shape and dtype); with mean or sum "
                                       "reduction this is the gradient of the reported loss",
                                       "G.npy");
  add_dtype_option(app, &args->dtype);
  add_threads_option(app, &args->threads);
  app->callback([args] { run(*args); });
}

void add_ignore_index(CLI::App* app, const std::shared_ptr<Args>& args) {
  app->add_option("--ignore-index", args->ignore_index,
                  "Targets equal to K contribute nothing, to the loss or to the mean's divisor (default -100)")
      ->type_name("K");
}

void setup(CLI::App& root) {
  {
    auto a = std::make_shared<Args>();
    a->op = Op::kCrossEntropy;
    a->name = "cross-entropy";
    CLI::App* app = add_common(
        root, a, "Cross-entropy from logits, as torch.nn.functional.cross_entropy",
        "Logits, float16, bfloat16, float32 or float64 .npy, shape (C), (N, C) or (N, C, d1, ...); classes along "
        "dim 1",
        "Class indices (int .npy: shape (), (N) or (N, d1, ...), each in [0, C) or --ignore-index), or class "
        "probabilities (the input's shape and dtype)");
    app->add_option("--weight", a->weight, "Optional per-class weights, (C) .npy in the input's dtype")
        ->type_name("W.npy");
    add_ignore_index(app, a);
    app->add_option("--token-weight", a->token_weight,
                    "Optional per-token loss weights, the target's shape, in the input's dtype (class-index targets): "
                    "each token's loss and gradient times its weight; mean divides by the sum of the applied weights "
                    "(token weight x class weight) over non-ignored tokens")
        ->type_name("V.npy");
    app->add_option("--label-smoothing", a->label_smoothing,
                    "Mix the target with the uniform distribution: (1 - S) * target + S / C; S in [0, 1], default 0")
        ->type_name("S");
    app->add_flag("--exact", a->exact,
                  "Sum each row exactly (fixed point; float32/float64 logits, class-index targets): the same bits "
                  "as the vocabulary-parallel layer on any number of ranks; slower (docs/numerics.md)");
    app->add_option("--input-kind", a->input_kind,
                    "What --input holds: logits (default; softmax inside, as PyTorch) or probabilities (d2l's y_hat, "
                    "taken as given: -log(max(p, eps)), no renormalisation)")
        ->check(CLI::IsMember({"logits", "probabilities"}).description(""))
        ->type_name("logits|probabilities");
    app->add_option("--eps", a->eps,
                    "With --input-kind probabilities: clamp p from below at E, i.e. log(max(p, E)); default 0 clamps "
                    "the log at -100 as torch's binary_cross_entropy (docs/numerics.md)")
        ->type_name("E");
    add_outputs(app, a);
    app->footer(examples({
        "xent cross-entropy --input logits.npy --target labels.npy --out loss.npy",
        "xent cross-entropy --input probs.npy --input-kind probabilities --target labels.npy   # -log(y_hat[range(n), y])",
        "xent cross-entropy --input logits.npy --target labels.npy --reduction none --out per_row.npy",
        "xent cross-entropy --input logits.npy --target labels.npy --dtype bf16 --out loss.npy   # in bfloat16",
        "xent cross-entropy --input logits.npy --target labels.npy --token-weight v.npy --out loss.npy",
        "xent cross-entropy --input logits.npy --target labels.npy --exact --out loss.npy   # exact row sums",
        "xent cross-entropy --input logits.npy --target labels.npy --weight w.npy --ignore-index 0 \\",
        "    --label-smoothing 0.1 --out loss.npy --grad-out dlogits.npy",
        "xent explain cross-entropy --logits '[[1,2,3],[2,4,6]]' --target '[0,2]'   # step by step",
    }));
  }
  {
    auto a = std::make_shared<Args>();
    a->op = Op::kNll;
    a->name = "nll";
    CLI::App* app = add_common(
        root, a, "Negative log-likelihood of log-probabilities, as torch.nn.functional.nll_loss",
        "Log-probabilities (e.g. from `xent log-softmax`), any float dtype .npy, shape (C), (N, C) or "
        "(N, C, d1, ...)",
        "Class indices, int .npy of shape (), (N) or (N, d1, ...), each in [0, C) or --ignore-index");
    app->add_option("--weight", a->weight, "Optional per-class weights, (C) .npy in the input's dtype")
        ->type_name("W.npy");
    add_ignore_index(app, a);
    add_outputs(app, a);
    app->footer(examples({
        "xent log-softmax --input logits.npy --out logp.npy",
        "xent nll --input logp.npy --target labels.npy --out loss.npy --grad-out dlogp.npy",
    }));
  }
  {
    auto a = std::make_shared<Args>();
    a->op = Op::kBce;
    a->name = "bce";
    CLI::App* app = add_common(
        root, a, "Binary cross-entropy of probabilities, as torch.nn.functional.binary_cross_entropy",
        "Probabilities in [0, 1], float16, bfloat16, float32 or float64 .npy of any shape (values outside [0, 1] "
        "are refused)",
        "Targets, the input's shape and dtype (usually 0 or 1)");
    app->add_option("--weight", a->weight,
                    "Optional weights broadcastable to the input's shape (NumPy rules), input's dtype")
        ->type_name("W.npy");
    add_outputs(app, a);
    app->footer(examples({
        "xent bce --input probs.npy --target labels.npy --out loss.npy",
        "xent bce --input probs.npy --target labels.npy --reduction none --out per_element.npy --grad-out dp.npy",
    }));
  }
  {
    auto a = std::make_shared<Args>();
    a->op = Op::kBceWithLogits;
    a->name = "bce-with-logits";
    CLI::App* app = add_common(
        root, a,
        "Binary cross-entropy of logits (sigmoid inside, numerically stable), as "
        "torch.nn.functional.binary_cross_entropy_with_logits",
        "Logits, float16, bfloat16, float32 or float64 .npy of any shape", "Targets, the input's shape and dtype (usually 0 or 1)");
    app->add_option("--weight", a->weight,
                    "Optional weights broadcastable to the input's shape (NumPy rules), input's dtype")
        ->type_name("W.npy");
    app->add_option("--pos-weight", a->pos_weight,
                    "Optional weight of positive examples, broadcastable to the input (usually one per class, "
                    "shape (C)), input's dtype")
        ->type_name("P.npy");
    add_outputs(app, a);
    app->footer(examples({
        "xent bce-with-logits --input logits.npy --target labels.npy --out loss.npy",
        "xent bce-with-logits --input logits.npy --target labels.npy --pos-weight pw.npy --out loss.npy \\",
        "    --grad-out dlogits.npy",
    }));
  }
}

}  // namespace

XENT_REGISTER_COMMAND(20, setup);

}  // namespace xent::cli::ops
