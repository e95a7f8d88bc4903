// linear_command.cc (cli/linear): `xent linear-cross-entropy`: reads hidden (N, H), weight (V, H),
// optional bias, class weights and upstream gradient, and targets as .npy; computes
// cross_entropy(hidden weight^T + bias, target) without materialising the (N, V) logits; writes
// the loss and, on request, the z-loss and the gradients w.r.t. hidden, weight and bias, all at
// once (all outputs replaced, or none). A thin wrapper over include/xent/linear_cross_entropy.h,
// which validates shapes, dtypes and targets.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "mpi/linear_parallel.h"
#include "shared/arrays.h"
#include "shared/blas_note.h"
#include "xent/linear_cross_entropy.h"

namespace xent::cli {
bool (*g_linear_parallel)(const LinearParallelArgs&) = nullptr;  // set by cli/mpi when built with MPI
}  // namespace xent::cli

namespace xent::cli::linear {

using io::NpyArray;

namespace {

struct Args {
  std::string hidden, weight, bias, target, class_weight, dloss;
  std::string out, z_loss_out, grad_hidden, grad_weight, grad_bias;
  std::string reduction = "mean";
  std::int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  double lse_square_scale = 0.0;
  double softcap = 0.0;
  std::int64_t token_block = 0;
  std::int64_t vocab_block = 0;
  double workspace_mib = 64;
  int threads = 0;
};

void run(const Args& a) {
  if (!(a.label_smoothing >= 0.0 && a.label_smoothing <= 1.0))
    throw UsageError(fmt::format("--label-smoothing must be in [0, 1]; got {}", a.label_smoothing));
  if (!(a.lse_square_scale >= 0.0)) throw UsageError(fmt::format("--lse-square-scale must be >= 0; got {}", a.lse_square_scale));
  if (!(a.softcap >= 0.0)) throw UsageError(fmt::format("--softcap must be >= 0 (0: off); got {}", a.softcap));
  if (!(a.workspace_mib > 0.0)) throw UsageError(fmt::format("--workspace-mib must be > 0; got {}", a.workspace_mib));
  if (!a.grad_bias.empty() && a.bias.empty())
    throw UsageError("--grad-bias needs --bias (there is no bias to differentiate)");
  const Reduction reduction = parse_reduction(a.reduction);
  apply_threads(a.threads);
  check_output_paths({{"--out", a.out},
                      {"--z-loss", a.z_loss_out},
                      {"--grad-hidden", a.grad_hidden},
                      {"--grad-weight", a.grad_weight},
                      {"--grad-bias", a.grad_bias}});
  // Under mpirun (and built with MPI): the vocabulary-parallel layer, each rank reading only its
  // rows of the weight (cli/mpi/linear_parallel.cc). Plain runs never touch MPI.
  if (g_linear_parallel != nullptr &&
      g_linear_parallel({a.hidden, a.weight, a.bias, a.target, a.class_weight, a.dloss, a.out, a.z_loss_out,
                         a.grad_hidden, a.grad_weight, a.grad_bias, reduction, a.ignore_index, a.label_smoothing,
                         a.lse_square_scale, a.softcap, a.workspace_mib}))
    return;

  NpyArray h = read_input("--hidden", a.hidden);
  require_floating(h, "--hidden", a.hidden, "linear-cross-entropy");
  NpyArray w = read_input("--weight", a.weight);
  NpyArray t = read_input("--target", a.target);
  std::optional<NpyArray> b, cw, g;
  if (!a.bias.empty()) b = read_input("--bias", a.bias);
  if (!a.class_weight.empty()) cw = read_input("--class-weight", a.class_weight);
  if (!a.dloss.empty()) g = read_input("--dloss", a.dloss);
  if (h.shape().rank() != 2)
    throw InputError(fmt::format("--hidden '{}' must have shape (N, H); found {}", a.hidden, h.shape().to_string()));
  if (w.shape().rank() != 2)
    throw InputError(fmt::format("--weight '{}' must have shape (V, H); found {}", a.weight, w.shape().to_string()));

  LinearCrossEntropyOptions o;
  if (cw) o.class_weight = cw->view();
  o.ignore_index = a.ignore_index;
  o.reduction = reduction;
  o.label_smoothing = a.label_smoothing;
  o.lse_square_scale = a.lse_square_scale;
  o.softcap = a.softcap;
  o.token_block = a.token_block;
  o.vocab_block = a.vocab_block;
  o.workspace_limit_bytes = static_cast<std::size_t>(a.workspace_mib * 1048576.0);

  const Shape loss_shape = reduction == Reduction::kNone ? Shape{h.shape()[0]} : Shape{};
  NpyArray loss = make_array(h.dtype(), loss_shape);
  std::optional<NpyArray> zl, dh, dw, db;
  if (!a.z_loss_out.empty()) zl = make_array(h.dtype(), loss_shape);
  if (!a.grad_hidden.empty()) dh = make_array(h.dtype(), h.shape());
  if (!a.grad_weight.empty()) dw = make_array(h.dtype(), w.shape());
  if (!a.grad_bias.empty()) db = make_array(h.dtype(), b->shape());
  note_blas_core();  // the inputs are read and valid: from here on, the products
  throw_if_error(linear_cross_entropy({.hidden = h.view(),
                                       .weight = w.view(),
                                       .bias = b ? b->view() : ConstTensorView{},
                                       .target = t.view(),
                                       .dloss = g ? g->view() : ConstTensorView{}},
                                      o,
                                      {.loss = loss.mutable_view(),
                                       .z_loss = zl ? zl->mutable_view() : TensorView{},
                                       .dhidden = dh ? dh->mutable_view() : TensorView{},
                                       .dweight = dw ? dw->mutable_view() : TensorView{},
                                       .dbias = db ? db->mutable_view() : TensorView{}}),
                 "linear-cross-entropy");
  std::vector<Output> outputs = {{"--out", a.out, loss.view(), "loss"}};
  if (zl) outputs.push_back({"--z-loss", a.z_loss_out, zl->view(), "z_loss"});
  if (dh) outputs.push_back({"--grad-hidden", a.grad_hidden, dh->view(), "grad_hidden"});
  if (dw) outputs.push_back({"--grad-weight", a.grad_weight, dw->view(), "grad_weight"});
  if (db) outputs.push_back({"--grad-bias", a.grad_bias, db->view(), "grad_bias"});
  write_outputs(outputs);
}

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand(
      "linear-cross-entropy",
      "Cross-entropy of a linear layer's output, as F.cross_entropy(F.linear(hidden, weight, bias), target), "
      "computed in blocks without the (N, V) logits; optional z-loss and logit soft-capping");
  app->add_option("--hidden", a->hidden, "Hidden states, (N, H) float32 or float64 .npy")->required()->type_name("H.npy");
  app->add_option("--weight", a->weight, "Output-layer weight, (V, H) .npy in hidden's dtype")->required()->type_name("W.npy");
  app->add_option("--bias", a->bias, "Optional output-layer bias, (V) .npy")->type_name("B.npy");
  app->add_option("--target", a->target, "Class indices, (N) int .npy, each in [0, V) or --ignore-index")
      ->required()
      ->type_name("T.npy");
  app->add_option("--class-weight", a->class_weight, "Optional per-class weights, (V) .npy (PyTorch's weight=)")
      ->type_name("CW.npy");
  app->add_option("--ignore-index", a->ignore_index, "Tokens whose target is K contribute nothing (default -100)")
      ->type_name("K");
  app->add_option("--label-smoothing", a->label_smoothing, "Label smoothing S in [0, 1] (default 0)")->type_name("S");
  add_reduction_option(app, &a->reduction, "--class-weight", "one per token, shape (N)");
  app->add_option("--lse-square-scale", a->lse_square_scale,
                  "z-loss coefficient: adds L * logsumexp(logits)^2 per kept token (mean: over kept tokens); "
                  "default 0")
      ->type_name("L");
  app->add_option("--softcap", a->softcap, "Soft-cap the logits to C * tanh(logits / C) (Gemma 2); default 0 (off)")
      ->type_name("C");
  app->add_option("--dloss", a->dloss,
                  "Upstream gradient, loss's shape and dtype (a 0-d array, or (N) with --reduction none); "
                  "default 1")
      ->type_name("G.npy");
  app->add_option("--token-block", a->token_block, "Tokens per block (default: chosen from --workspace-mib)")
      ->type_name("NB");
  app->add_option("--vocab-block", a->vocab_block,
                  "Classes per block (default: all of them when the block fits, else chosen from --workspace-mib)")
      ->type_name("VB");
  app->add_option("--workspace-mib", a->workspace_mib, "Scratch memory the automatic blocks aim for (default 64)")
      ->type_name("MIB");
  add_out_option(app, &a->out, "Output .npy for the loss (0-d, or (N) with --reduction none)", "L.npy");
  app->add_option("--z-loss", a->z_loss_out, "Also write the z-loss part of the loss (loss's shape)")->type_name("Z.npy");
  app->add_option("--grad-hidden", a->grad_hidden, "Also write d(loss * dloss)/d hidden, (N, H)")->type_name("GH.npy");
  app->add_option("--grad-weight", a->grad_weight, "Also write d(loss * dloss)/d weight, (V, H)")->type_name("GW.npy");
  app->add_option("--grad-bias", a->grad_bias, "Also write d(loss * dloss)/d bias, (V); needs --bias")->type_name("GB.npy");
  add_threads_option(app, &a->threads);
  app->footer(examples({
      "xent linear-cross-entropy --hidden h.npy --weight w.npy --target t.npy --out loss.npy",
      "xent linear-cross-entropy --hidden h.npy --weight w.npy --bias b.npy --target t.npy \\",
      "    --label-smoothing 0.1 --lse-square-scale 1e-4 --softcap 30 --out loss.npy --z-loss z.npy \\",
      "    --grad-hidden dh.npy --grad-weight dw.npy --grad-bias db.npy",
      "xent bench linear-cross-entropy --tokens 8192 --hidden 1024 --vocab 32000 --json",
  }));
  app->callback([a] { run(*a); });
}

}  // namespace

XENT_REGISTER_COMMAND(60, setup);

}  // namespace xent::cli::linear
