// explain.cc: `xent explain cross-entropy` and `xent explain softmax`: print, for a learner, every
// step from logits to the loss (max shift, exp, row sums, probabilities, log-probabilities, the
// picked entries -log(y_hat[range(n), y]), their sum and mean), then check the number against the
// library. The steps are computed here in float64 for display only; the library is called for the
// check. Small inputs only (a teaching aid, not a batch tool).
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "shared/arrays.h"
#include "explain_common.h"
#include "explain_probabilities.h"
#include "xent/losses.h"
#include "xent/softmax.h"

namespace xent::cli::ops {
namespace {

// --- explain cross-entropy ----------------------------------------------------------------------

struct CeArgs {
  std::string input, logits, probs, target, weight, dtype = "float32";
  std::int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  double eps = 0.0;
};

// The logits, targets and weights as the library will see them, with the sizes checked.
struct CeInputs {
  Loaded z, t, w;
  std::int64_t N = 0, C = 0;
  bool probs = false;     // probability targets (else class indices)
  bool weighted = false;
  std::vector<double> weights;  // all ones without --weight
};

CeInputs load_ce_inputs(const CeArgs& a) {
  CeInputs in;
  const DType inline_dtype = a.dtype == "float64" ? DType::kF64 : DType::kF32;
  if (a.input.empty()) {
    in.z = load("--logits", a.logits, inline_dtype, false);
  } else {
    in.z.array = read_input("--input", a.input);
    require_floating(in.z.array, "--input", a.input, "explain cross-entropy");
    in.z.values = to_doubles(in.z.array);
  }
  const DType dtype = in.z.array.dtype();
  const Shape& zs = in.z.array.shape();
  if (zs.rank() != 1 && zs.rank() != 2) {
    throw InputError(fmt::format("explain cross-entropy shows logits of shape (C) or (N, C); got shape {} "
                                 "(use `xent cross-entropy` for other ranks)",
                                 zs.to_string()));
  }
  in.N = zs.rank() == 2 ? zs[0] : 1;
  in.C = zs.rank() == 2 ? zs[1] : zs[0];
  if (in.N < 1 || in.C < 1 || in.N > kMaxRows || in.C > kMaxClasses) {
    throw InputError(fmt::format("explain is for small examples: expected 1 to {} rows and 1 to {} classes, "
                                 "found shape {}",
                                 kMaxRows, kMaxClasses, zs.to_string()));
  }
  in.t = load("--target", a.target, dtype, true);
  if (in.t.inline_text && !is_floating(in.t.array.dtype()) && in.t.array.shape() == zs) {
    in.t = load("--target", a.target, dtype, false);  // integers with the logits' shape: one-hot probabilities
  }
  in.probs = is_floating(in.t.array.dtype());
  const Shape want_t = in.probs ? zs : (zs.rank() == 2 ? Shape{in.N} : Shape{});
  if (in.t.array.shape() != want_t) {
    throw InputError(fmt::format("--target has shape {}; expected {} ({} for logits of shape {})",
                                 in.t.array.shape().to_string(), want_t.to_string(),
                                 in.probs ? "class probabilities, the logits' shape," : "one class index per row",
                                 zs.to_string()));
  }
  if (in.probs && in.t.array.dtype() != dtype) {
    throw InputError(fmt::format("--target holds probabilities of dtype {}; expected the logits' dtype {}",
                                 dtype_name(in.t.array.dtype()), dtype_name(dtype)));
  }
  in.weights.assign(static_cast<std::size_t>(in.C), 1.0);
  in.weighted = !a.weight.empty();
  if (in.weighted) {
    in.w = load("--weight", a.weight, dtype, false);
    if (in.w.array.shape() != Shape{in.C} || in.w.array.dtype() != dtype) {
      throw InputError(fmt::format("--weight has shape {} and dtype {}; expected shape [{}] and dtype {}",
                                   in.w.array.shape().to_string(), dtype_name(in.w.array.dtype()), in.C,
                                   dtype_name(dtype)));
    }
    in.weights = in.w.values;
  }
  return in;
}

// Steps 1-7: logits, row max, shifted logits, exp, row sums, softmax, log-softmax (float64).
struct SoftmaxSteps {
  std::vector<std::vector<double>> z, shifted, ex, p, logp;
  std::vector<double> m, s;
};

SoftmaxSteps softmax_steps(const CeInputs& in) {
  const std::int64_t N = in.N, C = in.C;
  SoftmaxSteps st;
  st.z.resize(N), st.shifted.resize(N), st.ex.resize(N), st.p.resize(N), st.logp.resize(N);
  st.m.assign(N, -std::numeric_limits<double>::infinity());
  st.s.assign(N, 0.0);
  for (std::int64_t n = 0; n < N; ++n) {
    for (std::int64_t c = 0; c < C; ++c) {
      st.z[n].push_back(in.z.values[static_cast<std::size_t>(n * C + c)]);
      st.m[n] = std::max(st.m[n], st.z[n].back());
    }
    for (std::int64_t c = 0; c < C; ++c) {
      st.shifted[n].push_back(st.z[n][c] - st.m[n]);
      st.ex[n].push_back(std::exp(st.shifted[n][c]));
      st.s[n] += st.ex[n][c];
    }
    for (std::int64_t c = 0; c < C; ++c) {
      st.p[n].push_back(st.ex[n][c] / st.s[n]);
      st.logp[n].push_back(st.shifted[n][c] - std::log(st.s[n]));
    }
  }
  return st;
}

// Steps 8-9: the per-row loss by PyTorch's rules (docs/numerics.md), its sum and mean.
struct RowLosses {
  std::vector<double> nll, loss;
  std::vector<bool> ignored;
  std::vector<std::int64_t> y;
  double sum = 0, mean = 0;
  std::string mean_how;
};

RowLosses row_losses(const CeInputs& in, const SoftmaxSteps& st, const CeArgs& a) {
  const std::int64_t N = in.N, C = in.C;
  const double eps = a.label_smoothing;
  const auto& w = in.weights;
  RowLosses r;
  r.nll.assign(N, 0.0), r.loss.assign(N, 0.0), r.ignored.assign(N, false), r.y.assign(N, 0);
  double weight_sum = 0;  // the mean's divisor for class indices
  for (std::int64_t n = 0; n < N; ++n) {
    if (in.probs) {
      for (std::int64_t c = 0; c < C; ++c) {
        const double tc = in.t.values[static_cast<std::size_t>(n * C + c)] * (1 - eps) + eps / static_cast<double>(C);
        r.loss[n] -= w[c] * tc * st.logp[n][c];
      }
      continue;
    }
    r.y[n] = static_cast<std::int64_t>(in.t.values[static_cast<std::size_t>(n)]);
    if (r.y[n] == a.ignore_index) {
      r.ignored[n] = true;
      continue;
    }
    if (r.y[n] < 0 || r.y[n] >= C) {
      throw InputError(fmt::format("--target: class index {} at row {} is outside [0, {}) and is not the "
                                   "--ignore-index {}",
                                   r.y[n], n, C, a.ignore_index));
    }
    r.nll[n] = -w[r.y[n]] * st.logp[n][r.y[n]];
    double smooth = 0;
    for (std::int64_t c = 0; c < C; ++c) smooth -= w[c] * st.logp[n][c];
    r.loss[n] = (1 - eps) * r.nll[n] + eps / static_cast<double>(C) * smooth;
    weight_sum += w[r.y[n]];
  }
  for (double l : r.loss) r.sum += l;
  if (in.probs) {
    r.mean = r.sum / static_cast<double>(N);
    r.mean_how = fmt::format("sum / N = {} / {}", num(r.sum), N);
  } else {
    // PyTorch 1.13 divides both the picked term and the smoothing term by the picked weights
    // (without --weight: by the number of rows not ignored).
    r.mean = r.sum / weight_sum;
    r.mean_how = in.weighted
                     ? fmt::format("sum / (sum of the picked weights) = {} / {}", num(r.sum), num(weight_sum))
                     : fmt::format("sum / (rows not ignored) = {} / {}", num(r.sum), weight_sum);
  }
  return r;
}

void print_ce_steps(const CeInputs& in, const SoftmaxSteps& st, const RowLosses& r, double eps) {
  const std::int64_t N = in.N;
  const std::vector<std::string> rows_l = labels("row", N), cls = labels("class", in.C);
  fmt::print("Cross-entropy, step by step: N = {} row{} x C = {} classes, {} logits (steps shown in float64)\n",
             N, N == 1 ? "" : "s", in.C, dtype_name(in.z.array.dtype()));
  if (in.probs) {
    fmt::print("targets: class probabilities (one distribution per row)\n");
  } else {
    std::string ys;
    for (std::int64_t n = 0; n < N; ++n) ys += fmt::format("{}{}", n ? ", " : "", r.y[n]);
    fmt::print("targets y = {}\n", in.z.array.shape().rank() == 2 ? "[" + ys + "]" : ys);
  }
  if (in.weighted) fmt::print("class weights w = {}\n", list(in.weights));
  if (eps > 0) fmt::print("label smoothing S = {}\n", num(eps));
  fmt::print("\n1. logits z\n");
  table(rows_l, st.z, cls);
  fmt::print("\n2. row max m = max over classes of z (subtracting it keeps exp from overflowing)\n");
  table(rows_l, column(st.m));
  fmt::print("\n3. shifted logits z - m (the largest entry of each row becomes 0)\n");
  table(rows_l, st.shifted, cls);
  fmt::print("\n4. exp(z - m) (every entry in (0, 1])\n");
  table(rows_l, st.ex, cls);
  fmt::print("\n5. row sums s = sum over classes of exp(z - m)\n");
  table(rows_l, column(st.s));
  fmt::print("\n6. softmax probabilities y_hat = exp(z - m) / s (each row sums to 1)\n");
  table(rows_l, st.p, cls);
  fmt::print("\n7. log-probabilities log(y_hat) = (z - m) - log(s)\n");
  table(rows_l, st.logp, cls);
  if (in.probs) {
    fmt::print("\n8. per-row loss = -sum over classes of {}target * log(y_hat){}\n", in.weighted ? "w * " : "",
               eps > 0 ? ", target smoothed to (1 - S) * target + S / C" : "");
    table(rows_l, column(r.loss));
  } else {
    fmt::print("\n8. picked entries: loss[n] = -{}log(y_hat[n, y[n]])   (NumPy: -np.log(y_hat[range(n), y]))\n",
               in.weighted ? "w[y[n]] * " : "");
    std::vector<std::string> picked;
    std::vector<std::vector<double>> vals;
    for (std::int64_t n = 0; n < N; ++n) {
      picked.push_back(r.ignored[n] ? fmt::format("row {}  y = {} (ignored, contributes 0)", n, r.y[n])
                                    : fmt::format("row {}  y = {}", n, r.y[n]));
      vals.push_back({eps > 0 ? r.nll[n] : r.loss[n]});
    }
    table(picked, vals);
    if (eps > 0) {
      fmt::print("   with label smoothing: loss[n] = (1 - S) * picked + S / C * (-sum over classes of {}log(y_hat))\n",
                 in.weighted ? "w * " : "");
      table(rows_l, column(r.loss));
    }
  }
  fmt::print("\n9. sum  = {}\n   mean = {} = {}\n", num(r.sum), r.mean_how, num(r.mean));
}

// The library's mean, sum and per-row values against the steps; a mismatch exits 1.
void check_ce_against_library(const CeInputs& in, const RowLosses& r, const CeArgs& a) {
  const DType dtype = in.z.array.dtype();
  CrossEntropyOptions o;
  if (in.weighted) o.weight = in.w.array.view();
  o.ignore_index = a.ignore_index;
  o.label_smoothing = a.label_smoothing;
  auto run_lib = [&](Reduction red, const Shape& shape) {
    o.reduction = red;
    NpyArray out = make_array(dtype, shape);
    throw_if_error(cross_entropy_forward(in.z.array.view(), in.t.array.view(), o, out.mutable_view()),
                   "cross-entropy");
    return out;
  };
  NpyArray lib_mean = run_lib(Reduction::kMean, Shape{});
  NpyArray lib_sum = run_lib(Reduction::kSum, Shape{});
  NpyArray lib_none = run_lib(Reduction::kNone, in.z.array.shape().rank() == 2 ? Shape{in.N} : Shape{});
  bool ok = close(scalar_of(lib_mean), r.mean, dtype) && close(scalar_of(lib_sum), r.sum, dtype);
  const std::vector<double> none = to_doubles(lib_none);
  for (std::int64_t n = 0; n < in.N; ++n) ok = ok && close(none[n], r.loss[n], dtype);
  fmt::print("\nxent::cross_entropy_forward ({}): mean = {}, sum = {}, per row = {}\n", dtype_name(dtype),
             num(scalar_of(lib_mean)), num(scalar_of(lib_sum)), list(none));
  if (ok) {
    fmt::print("The library's values equal the step-by-step values above (it computes logsumexp(z) - z[y] "
               "directly, never log(softmax)).\n");
  } else {
    fmt::print("MISMATCH: the library's values differ from the step-by-step values above; please report this.\n");
    set_exit_code(1);
  }
}

void explain_cross_entropy(const CeArgs& a) {
  const int given = !a.input.empty() + !a.logits.empty() + !a.probs.empty();
  if (given != 1) {
    throw UsageError("explain cross-entropy needs exactly one of --input X.npy, --logits \"[[...]]\" or "
                     "--probs \"[[...]]\"");
  }
  if (!(a.label_smoothing >= 0.0 && a.label_smoothing <= 1.0)) {
    throw UsageError(fmt::format("--label-smoothing must be in [0, 1]; got {}", a.label_smoothing));
  }
  if (!a.probs.empty()) {
    explain_probabilities({a.probs, a.target, a.dtype, a.ignore_index, a.eps, a.label_smoothing, !a.weight.empty()});
    return;
  }
  const CeInputs in = load_ce_inputs(a);
  warn_if_probabilities(in.z.values, in.N, in.C, a.input.empty() ? "--logits" : "--input",
                        "For predicted probabilities use `xent explain cross-entropy --probs ...`.");
  const SoftmaxSteps st = softmax_steps(in);
  const RowLosses r = row_losses(in, st, a);
  print_ce_steps(in, st, r, a.label_smoothing);
  check_ce_against_library(in, r, a);
}

// --- explain softmax ----------------------------------------------------------------------------

struct SoftmaxArgs {
  std::string input, logits, dtype = "float32";
};

template <class T>
void explain_softmax_typed(const NpyArray& x, std::int64_t N, std::int64_t C) {
  const char* tname = dtype_name(DTypeOf<T>::value);
  const T* xp = x.as<T>();
  NpyArray y = make_array(x.dtype(), x.shape());
  throw_if_error(softmax_forward(x.view(), -1, y.mutable_view()), "softmax");
  const T* yp = y.as<T>();
  bool all_ok = true;
  for (std::int64_t n = 0; n < N; ++n) {
    std::vector<double> z, e_naive, p_naive, shifted, e, p, lib;
    T s_naive = 0, s = 0, m = -std::numeric_limits<T>::infinity();
    for (std::int64_t c = 0; c < C; ++c) {
      T v = xp[n * C + c];
      z.push_back(v);
      T ev = std::exp(v);
      e_naive.push_back(ev);
      s_naive += ev;
      m = std::max(m, v);
    }
    for (std::int64_t c = 0; c < C; ++c) p_naive.push_back(static_cast<T>(e_naive[c]) / s_naive);
    for (std::int64_t c = 0; c < C; ++c) {
      T d = xp[n * C + c] - m;
      shifted.push_back(d);
      T ev = std::exp(d);
      e.push_back(ev);
      s += ev;
    }
    for (std::int64_t c = 0; c < C; ++c) {
      p.push_back(static_cast<T>(e[c]) / s);
      lib.push_back(yp[n * C + c]);
    }
    if (N > 1) fmt::print("Row {}\n", n);
    fmt::print("Softmax of z = {} in {}\n\n", list(z), tname);
    fmt::print("Naive: exp(z) / sum(exp(z)), in {}\n", tname);
    table({"exp(z)", "sum", "exp(z) / sum"}, {e_naive, {static_cast<double>(s_naive)}, p_naive});
    bool overflow = std::any_of(e_naive.begin(), e_naive.end(), [](double v) { return std::isinf(v); });
    if (overflow) {
      fmt::print("    exp overflows {} (largest finite value {}), and inf / inf is nan: the naive result is "
                 "wrong.\n",
                 tname, num(static_cast<double>(std::numeric_limits<T>::max())));
    }
    fmt::print("\nStable: subtract the row max m first (softmax(z) = softmax(z - m)), in {}\n", tname);
    table({"m = max(z)", "z - m", "exp(z - m)", "sum", "softmax"}, {{static_cast<double>(m)}, shifted, e,
                                                                     {static_cast<double>(s)}, p});
    fmt::print("    exp(z - m) <= 1 never overflows, and the sum is at least 1.\n");
    bool ok = true;
    for (std::int64_t c = 0; c < C; ++c) ok = ok && close(lib[c], p[c], DTypeOf<T>::value);
    all_ok = all_ok && ok;
    fmt::print("\nxent::softmax_forward ({}): {}{}\n\n", tname, list(lib),
               ok ? " (equals the stable result)" : "   MISMATCH with the stable result; please report this");
  }
  if (!all_ok) set_exit_code(1);
}

void explain_softmax(const SoftmaxArgs& a) {
  if (a.input.empty() == a.logits.empty()) {
    throw UsageError("explain softmax needs exactly one of --input X.npy or --logits \"[...]\"");
  }
  const DType inline_dtype = a.dtype == "float64" ? DType::kF64 : DType::kF32;
  Loaded z = a.input.empty() ? load("--logits", a.logits, inline_dtype, false) : Loaded{};
  if (!a.input.empty()) z.array = read_input("--input", a.input);
  require_floating(z.array, a.input.empty() ? "--logits" : "--input", a.input.empty() ? a.logits : a.input,
                   "explain softmax");
  const Shape& zs = z.array.shape();
  if (zs.rank() != 1 && zs.rank() != 2) {
    throw InputError(fmt::format("explain softmax shows logits of shape (C) or (N, C); got shape {}", zs.to_string()));
  }
  const std::int64_t N = zs.rank() == 2 ? zs[0] : 1;
  const std::int64_t C = zs.rank() == 2 ? zs[1] : zs[0];
  if (N < 1 || C < 1 || N > kMaxRows || C > kMaxClasses) {
    throw InputError(fmt::format("explain is for small examples: expected 1 to {} rows and 1 to {} entries per "
                                 "row, found shape {}",
                                 kMaxRows, kMaxClasses, zs.to_string()));
  }
  if (z.array.dtype() == DType::kF32) {
    explain_softmax_typed<float>(z.array, N, C);
  } else {
    explain_softmax_typed<double>(z.array, N, C);
  }
}

void setup(CLI::App& root) {
  CLI::App* explain = root.add_subcommand("explain", "Show, step by step, how a loss or softmax is computed");
  explain->require_subcommand(1);
  explain->footer(examples({
      "xent explain cross-entropy --logits '[[1,2,3],[2,4,6]]' --target '[0,2]'",
      "xent explain softmax --logits '[1,100]'",
      "xent explain nll --logp '[[-0.1,-2.3]]' --target '[0]'",
      "xent explain bce --probs '[0.9, 0.2]' --target '[1, 0]' --png bce.png",
  }));

  auto ce = std::make_shared<CeArgs>();
  CLI::App* c = explain->add_subcommand(
      "cross-entropy", "Every step from logits to the cross-entropy loss, checked against the library");
  auto in = c->add_option("--input", ce->input, "Logits as a .npy file, shape (C) or (N, C)")->type_name("X.npy");
  auto lg = c->add_option("--logits", ce->logits, "Logits written inline as a nested list, e.g. \"[[1,2,3],[2,4,6]]\"")
                ->type_name("LIST");
  in->excludes(lg);
  auto pr = c->add_option("--probs", ce->probs,
                          "Predicted probabilities instead of logits (d2l's y_hat), inline or a .npy: shows the loop "
                          "form, the one-hot dot product and the library side by side")
                ->type_name("LIST|P.npy");
  pr->excludes(in);
  pr->excludes(lg);
  c->add_option("--eps", ce->eps, "With --probs: clamp p from below at E (default: the log at -100)")->type_name("E");
  c->add_option("--target", ce->target,
                "Class indices (\"[0,2]\", one per row) or probabilities (the logits' shape), inline or as a .npy "
                "file")
      ->required()
      ->type_name("LIST|T.npy");
  c->add_option("--weight", ce->weight, "Optional per-class weights, inline (\"[1,2,1]\") or as a .npy file")
      ->type_name("LIST|W.npy");
  c->add_option("--ignore-index", ce->ignore_index, "Rows whose target is K contribute nothing (default -100)")
      ->type_name("K");
  c->add_option("--label-smoothing", ce->label_smoothing, "Label smoothing S in [0, 1] (default 0)")->type_name("S");
  c->add_option("--dtype", ce->dtype, "dtype of inline logits (default float32, as torch.tensor)")
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float32|float64");
  c->footer(examples({
      "xent explain cross-entropy --logits '[[1,2,3],[2,4,6]]' --target '[0,2]'   # loss 1.2753",
      "xent explain cross-entropy --input logits.npy --target labels.npy",
      "xent explain cross-entropy --logits '[[1,2,3],[2,4,6]]' --target '[0,2]' --weight '[1,2,1]' \\",
      "    --label-smoothing 0.1",
      "xent explain cross-entropy --probs '[[.25,.25,.25,.25],[.01,.01,.01,.96]]' --target '[3,3]' --dtype float64",
  }));
  c->callback([ce] { explain_cross_entropy(*ce); });

  auto sm = std::make_shared<SoftmaxArgs>();
  CLI::App* s = explain->add_subcommand("softmax", "Naive vs max-shifted softmax: why the shift prevents overflow");
  auto sin = s->add_option("--input", sm->input, "Logits as a .npy file, shape (C) or (N, C)")->type_name("X.npy");
  auto slg = s->add_option("--logits", sm->logits, "Logits written inline, e.g. \"[1,100]\"")->type_name("LIST");
  sin->excludes(slg);
  s->add_option("--dtype", sm->dtype, "dtype of inline logits (default float32)")
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float32|float64");
  s->footer(examples({
      "xent explain softmax --logits '[1,100]'                  # naive float32 gives [0, nan]",
      "xent explain softmax --logits '[1,1000]' --dtype float64",
  }));
  s->callback([sm] { explain_softmax(*sm); });
  add_explain_nll(explain);
  add_explain_bce(explain);
}

}  // namespace

XENT_REGISTER_COMMAND(30, setup);

}  // namespace xent::cli::ops
