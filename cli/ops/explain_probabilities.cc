// explain_probabilities.cc (cli/ops): `xent explain cross-entropy --probs`, `xent explain nll` and
// `xent explain bce` (see explain_probabilities.h). The steps are float64 for display; the library
// (nll_loss_forward, binary_cross_entropy_forward) is called for the check, and a mismatch exits 1.
#include "explain_probabilities.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "shared/arrays.h"
#include "explain_common.h"
#include "io/atomic_file.h"
#include "train/plots.h"
#include "xent/losses.h"

namespace xent::cli::ops {
namespace {

DType dtype_of(const std::string& name) { return name == "float64" ? DType::kF64 : DType::kF32; }

// (N, C) from a 1-d or 2-d array, within explain's size limits.
void rows_and_classes(const NpyArray& a, const char* flag, std::int64_t* N, std::int64_t* C) {
  const Shape& s = a.shape();
  if (s.rank() != 1 && s.rank() != 2) {
    throw InputError(fmt::format("{} has shape {}; explain shows shape (C) or (N, C)", flag, s.to_string()));
  }
  *N = s.rank() == 2 ? s[0] : 1;
  *C = s.rank() == 2 ? s[1] : s[0];
  if (*N < 1 || *C < 1 || *N > kMaxRows || *C > kMaxClasses) {
    throw InputError(fmt::format("explain is for small examples: expected 1 to {} rows and 1 to {} classes, found "
                                 "shape {}",
                                 kMaxRows, kMaxClasses, s.to_string()));
  }
}

// Class indices, one per row, or a one-hot / probability matrix of the probabilities' shape, as a
// dense N x C target matrix (ignored rows all zero) plus the indices when they exist.
struct Targets {
  Loaded loaded;
  std::vector<std::vector<double>> dense;
  std::vector<std::int64_t> index;  // empty for soft targets
  std::vector<bool> ignored;
};

Targets load_targets(const std::string& text, const NpyArray& probs, std::int64_t N, std::int64_t C,
                     std::int64_t ignore_index) {
  Targets t;
  t.loaded = load("--target", text, probs.dtype(), true);
  const bool indices = !is_floating(t.loaded.array.dtype()) && t.loaded.array.shape() != probs.shape();
  t.dense.assign(static_cast<std::size_t>(N), std::vector<double>(static_cast<std::size_t>(C), 0.0));
  t.ignored.assign(static_cast<std::size_t>(N), false);
  if (indices) {
    const Shape want = probs.shape().rank() == 2 ? Shape{N} : Shape{};
    if (t.loaded.array.shape() != want) {
      throw InputError(fmt::format("--target has shape {}; expected {} (one class index per row) or {} (one-hot)",
                                   t.loaded.array.shape().to_string(), want.to_string(), probs.shape().to_string()));
    }
    for (std::int64_t n = 0; n < N; ++n) {
      const auto y = static_cast<std::int64_t>(t.loaded.values[static_cast<std::size_t>(n)]);
      t.index.push_back(y);
      if (y == ignore_index) {
        t.ignored[n] = true;
        continue;
      }
      if (y < 0 || y >= C) {
        throw InputError(fmt::format("--target: class index {} at row {} is outside [0, {}) and is not the "
                                     "--ignore-index {}",
                                     y, n, C, ignore_index));
      }
      t.dense[n][y] = 1.0;
    }
    return t;
  }
  if (t.loaded.array.shape() != probs.shape()) {
    throw InputError(fmt::format("--target has shape {}; expected one class index per row or the probabilities' "
                                 "shape {}",
                                 t.loaded.array.shape().to_string(), probs.shape().to_string()));
  }
  t.loaded = load("--target", text, probs.dtype(), false);  // as floats of the probabilities' dtype
  bool one_hot = true;
  for (std::int64_t n = 0; n < N; ++n) {
    std::int64_t hot = -1, ones = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      const double v = t.loaded.values[static_cast<std::size_t>(n * C + c)];
      t.dense[n][c] = v;
      if (v == 1.0) hot = c, ++ones;
      else if (v != 0.0) one_hot = false;
    }
    one_hot = one_hot && ones == 1;
    t.index.push_back(hot);
  }
  if (!one_hot) t.index.clear();
  return t;
}

std::string term_list(const std::vector<double>& t, const std::vector<double>& nlp) {
  std::string s;
  for (std::size_t c = 0; c < t.size(); ++c) s += fmt::format("{}{} * {}", c ? " + " : "", num(t[c]), num(nlp[c]));
  return s;
}

}  // namespace

namespace {

// The probabilities and their clamped negative logs, row by row.
struct ProbSteps {
  Loaded p;
  std::int64_t N = 0, C = 0;
  double floor = -100.0;
  std::vector<std::vector<double>> y_hat, nlp;
  std::vector<double> row_sum;
};

ProbSteps load_probabilities(const ProbArgs& a) {
  ProbSteps st;
  st.p = load("--probs", a.probs, dtype_of(a.dtype), false);
  rows_and_classes(st.p.array, "--probs", &st.N, &st.C);
  for (double v : st.p.values) {
    if (!(v >= 0.0 && v <= 1.0)) {
      throw InputError(fmt::format("--probs holds probabilities; expected values in [0, 1], found {}", v));
    }
  }
  st.floor = a.eps > 0.0 ? std::log(a.eps) : -100.0;
  st.y_hat.resize(st.N), st.nlp.resize(st.N);
  st.row_sum.assign(st.N, 0.0);
  for (std::int64_t n = 0; n < st.N; ++n) {
    for (std::int64_t c = 0; c < st.C; ++c) {
      const double v = st.p.values[static_cast<std::size_t>(n * st.C + c)];
      st.y_hat[n].push_back(v);
      st.row_sum[n] += v;
      st.nlp[n].push_back(-std::max(std::log(v), st.floor));
    }
  }
  return st;
}

void print_probability_tables(const ProbSteps& st, const Targets& t, double eps) {
  const std::vector<std::string> rows_l = labels("row", st.N), cls = labels("class", st.C);
  fmt::print("Cross-entropy from predicted probabilities y_hat (d2l's y_hat; no softmax), N = {} row{} x C = {} "
             "classes, {}\n",
             st.N, st.N == 1 ? "" : "s", st.C, dtype_name(st.p.array.dtype()));
  fmt::print("\n1. predicted probabilities y_hat, taken as given (rows are not renormalised), and their row sums\n");
  std::vector<std::vector<double>> with_sum = st.y_hat;
  for (std::int64_t n = 0; n < st.N; ++n) with_sum[n].push_back(st.row_sum[n]);
  std::vector<std::string> hdr = cls;
  hdr.push_back("sum");
  table(rows_l, with_sum, hdr);
  fmt::print("\n2. -log(y_hat), the log clamped from below at {} ({})\n", num(st.floor),
             eps > 0.0 ? fmt::format("--eps {}: log(max(p, eps))", eps) : "as PyTorch's BCE; --eps E sets log(E)");
  table(rows_l, st.nlp, cls);
  fmt::print("\n3. targets as one-hot rows (class indices become indicator rows)\n");
  table(rows_l, t.dense, cls);
}

// The rows that count in the mean: all of them for soft targets, the ones not ignored otherwise.
std::int64_t counted_rows(const Targets& t) {
  if (t.index.empty()) return static_cast<std::int64_t>(t.dense.size());
  return static_cast<std::int64_t>(std::count(t.ignored.begin(), t.ignored.end(), false));
}

// The seed's loop form: for each sample, for each class, indicator * -log(p). Returns the mean.
double loop_form(const ProbSteps& st, const Targets& t) {
  fmt::print("\n4. loop form: all_samples_loss += sum over classes of target * -log(y_hat)\n");
  double sum = 0;
  for (std::int64_t n = 0; n < st.N; ++n) {
    double row = 0;
    for (std::int64_t c = 0; c < st.C; ++c) row += t.dense[n][c] * st.nlp[n][c];
    sum += row;
    fmt::print("    row {}: {} = {}{}   (running sum {})\n", n, term_list(t.dense[n], st.nlp[n]), num(row),
               t.ignored[n] ? " (ignored)" : "", num(sum));
  }
  const std::int64_t rows = counted_rows(t);
  const double mean = sum / static_cast<double>(rows);
  fmt::print("    mean = {} / {} = {}\n", num(sum), rows, num(mean));
  return mean;
}

// The dot-product form: M = Y . (-log y_hat)^T, its diagonal summed. Returns the mean.
double dot_product_form(const ProbSteps& st, const Targets& t) {
  fmt::print("\n5. dot-product form: M = targets . (-log(y_hat))^T (N x N); the loss is the mean of its diagonal\n");
  std::vector<std::vector<double>> M(st.N, std::vector<double>(static_cast<std::size_t>(st.N), 0.0));
  double trace = 0;
  for (std::int64_t i = 0; i < st.N; ++i) {
    for (std::int64_t j = 0; j < st.N; ++j)
      for (std::int64_t c = 0; c < st.C; ++c) M[i][j] += t.dense[i][c] * st.nlp[j][c];
    trace += M[i][i];
  }
  table(labels("row", st.N), M, labels("row", st.N));
  const double mean = trace / static_cast<double>(counted_rows(t));
  fmt::print("    diagonal sum = {}, mean = {}\n", num(trace), num(mean));
  return mean;
}

// The library's nll_loss on the clamped logs with the class indices (NaN for soft targets).
double library_value(const ProbSteps& st, const Targets& t, std::int64_t ignore_index) {
  if (t.index.empty()) return std::nan("");
  const DType dtype = st.p.array.dtype();
  NpyArray logp = make_array(dtype, st.p.array.shape());
  for (std::int64_t i = 0; i < st.N * st.C; ++i) {
    const double l = -st.nlp[i / st.C][i % st.C];
    if (dtype == DType::kF32) logp.as<float>()[i] = static_cast<float>(l);
    else logp.as<double>()[i] = l;
  }
  NpyArray idx = make_array(DType::kI64, st.p.array.shape().rank() == 2 ? Shape{st.N} : Shape{});
  for (std::int64_t n = 0; n < st.N; ++n) idx.as<std::int64_t>()[n] = t.ignored[n] ? ignore_index : t.index[n];
  NllOptions o;
  o.ignore_index = ignore_index;
  NpyArray lib = make_array(dtype, Shape{});
  throw_if_error(nll_loss_forward(logp.view(), idx.view(), o, lib.mutable_view()), "nll");
  return scalar_of(lib);
}

}  // namespace

void explain_probabilities(const ProbArgs& a) {
  if (a.label_smoothing != 0.0 || a.weighted) {
    throw UsageError("explain cross-entropy --probs shows the plain loss; --label-smoothing and --weight apply to "
                     "--logits");
  }
  if (!(a.eps >= 0.0 && a.eps < 1.0)) throw UsageError(fmt::format("--eps must be in [0, 1); got {}", a.eps));
  const ProbSteps st = load_probabilities(a);
  const Targets t = load_targets(a.target, st.p.array, st.N, st.C, a.ignore_index);
  print_probability_tables(st, t, a.eps);
  const double loop_mean = loop_form(st, t);
  const double dot_mean = dot_product_form(st, t);
  fmt::print("\n6. side by side\n    loop form         {:.11g}\n    dot-product form  {:.11g}\n", loop_mean, dot_mean);
  if (t.index.empty()) {
    fmt::print("    (soft targets: `xent cross-entropy --input-kind probabilities` computes this sum; the "
               "library's nll takes class indices)\n");
    return;
  }
  const DType dtype = st.p.array.dtype();
  const double v = library_value(st, t, a.ignore_index);
  fmt::print("    xent::nll_loss_forward on the clamped logs ({})  {:.11g}\n", dtype_name(dtype), v);
  if (close(v, loop_mean, dtype) && close(v, dot_mean, dtype)) {
    fmt::print("The three agree. `xent cross-entropy --input-kind probabilities` computes the same in one command.\n");
  } else {
    fmt::print("MISMATCH between the forms above; please report this.\n");
    set_exit_code(1);
  }
}

namespace {

struct NllArgs {
  std::string logp, target, dtype = "float32";
  std::int64_t ignore_index = -100;
};

void explain_nll(const NllArgs& a) {
  Loaded lp = load("--logp", a.logp, dtype_of(a.dtype), false);
  std::int64_t N = 0, C = 0;
  rows_and_classes(lp.array, "--logp", &N, &C);
  const DType dtype = lp.array.dtype();
  if (std::any_of(lp.values.begin(), lp.values.end(), [](double v) { return v > 0; })) {
    std::fprintf(stderr,
                 "xent: warning: --logp has values above 0; nll expects log-probabilities (<= 0). For logits use "
                 "`xent explain cross-entropy --logits`, for probabilities `--probs`.\n");
  }
  Loaded t = load("--target", a.target, dtype, true);
  const Shape want = lp.array.shape().rank() == 2 ? Shape{N} : Shape{};
  if (is_floating(t.array.dtype()) || t.array.shape() != want) {
    throw InputError(fmt::format("--target has shape {} and dtype {}; expected integer class indices of shape {}",
                                 t.array.shape().to_string(), dtype_name(t.array.dtype()), want.to_string()));
  }
  fmt::print("Negative log-likelihood, step by step: N = {} row{} x C = {} classes of log-probabilities, {}\n", N,
             N == 1 ? "" : "s", C, dtype_name(dtype));
  fmt::print("\n1. log-probabilities (e.g. from `xent log-softmax`)\n");
  std::vector<std::vector<double>> rows(N);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c) rows[n].push_back(lp.values[static_cast<std::size_t>(n * C + c)]);
  table(labels("row", N), rows, labels("class", C));
  fmt::print("\n2. picked entries: loss[n] = -logp[n, y[n]]   (NumPy: -logp[range(n), y])\n");
  std::vector<std::string> l;
  std::vector<std::vector<double>> v;
  double sum = 0;
  std::int64_t kept = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    const auto y = static_cast<std::int64_t>(t.values[static_cast<std::size_t>(n)]);
    if (y == a.ignore_index) {
      l.push_back(fmt::format("row {}  y = {} (ignored, contributes 0)", n, y));
      v.push_back({0.0});
      continue;
    }
    if (y < 0 || y >= C) {
      throw InputError(fmt::format("--target: class index {} at row {} is outside [0, {}) and is not the "
                                   "--ignore-index {}",
                                   y, n, C, a.ignore_index));
    }
    l.push_back(fmt::format("row {}  y = {}", n, y));
    v.push_back({-rows[n][y]});
    sum += -rows[n][y];
    ++kept;
  }
  table(l, v);
  const double mean = sum / static_cast<double>(kept);
  fmt::print("\n3. sum  = {}\n   mean = sum / (rows not ignored) = {} / {} = {}\n", num(sum), num(sum), kept, num(mean));
  NllOptions o;
  o.ignore_index = a.ignore_index;
  NpyArray lib = make_array(dtype, Shape{});
  throw_if_error(nll_loss_forward(lp.array.view(), t.array.view(), o, lib.mutable_view()), "nll");
  const bool ok = close(scalar_of(lib), mean, dtype);
  fmt::print("\nxent::nll_loss_forward ({}): mean = {}{}\n", dtype_name(dtype), num(scalar_of(lib)),
             ok ? " (equals the steps above)" : "   MISMATCH with the steps above; please report this");
  if (!ok) set_exit_code(1);
}

struct BceArgs {
  std::string probs, target, png, svg, dtype = "float32";
};

void write_curve(const std::string& flag, const std::string& path, train::ImageFormat format) {
  if (path.empty()) return;
  Result<std::string> bytes = train::render_bce_curve(format);
  throw_if_error(bytes.status(), flag);
  throw_if_error(io::write_file_atomic(path, bytes.value()), flag);
  fmt::print("wrote {} ({} bytes)\n", path, bytes.value().size());
}

void explain_bce(const BceArgs& a) {
  if (!a.png.empty()) throw_if_error(io::check_output_path(a.png), "--png");
  if (!a.svg.empty()) throw_if_error(io::check_output_path(a.svg), "--svg");
  if (!a.png.empty() && a.png == a.svg) throw UsageError("--png and --svg name the same file; expected two paths");
  Loaded p = load("--probs", a.probs, dtype_of(a.dtype), false);
  const DType dtype = p.array.dtype();
  Loaded t = load("--target", a.target, dtype, false);
  if (t.array.shape() != p.array.shape() || p.values.empty() || p.values.size() > 100) {
    throw InputError(fmt::format("--target has shape {}; expected the shape of --probs {} (1 to 100 values)",
                                 t.array.shape().to_string(), p.array.shape().to_string()));
  }
  for (double v : p.values) {
    if (!(v >= 0.0 && v <= 1.0)) throw InputError(fmt::format("--probs: expected values in [0, 1], found {}", v));
  }
  fmt::print("Binary cross-entropy, step by step ({}, as torch.nn.functional.binary_cross_entropy)\n",
             dtype_name(dtype));
  fmt::print("    loss = -(t * max(log p, -100) + (1 - t) * max(log(1 - p), -100)); the clamp keeps p = 0 or 1 "
             "at a loss of at most 100 instead of inf\n\n");
  std::vector<std::vector<double>> rows;
  double sum = 0;
  for (std::size_t i = 0; i < p.values.size(); ++i) {
    const double pv = p.values[i], tv = t.values[i];
    const double lp = std::max(std::log(pv), -100.0), l1p = std::max(std::log1p(-pv), -100.0);
    const double loss = -(tv * lp + (1 - tv) * l1p);
    rows.push_back({pv, tv, lp, l1p, loss});
    sum += loss;
  }
  table(labels("element", static_cast<std::int64_t>(rows.size())), rows,
        {"p", "t", "max(log p,-100)", "max(log(1-p),-100)", "loss"});
  const double mean = sum / static_cast<double>(rows.size());
  fmt::print("\n    sum = {}, mean = {}\n", num(sum), num(mean));
  BceOptions o;
  NpyArray lib = make_array(dtype, Shape{});
  throw_if_error(binary_cross_entropy_forward(p.array.view(), t.array.view(), o, lib.mutable_view()), "bce");
  const bool ok = close(scalar_of(lib), mean, dtype);
  fmt::print("\nxent::binary_cross_entropy_forward ({}): mean = {}{}\n", dtype_name(dtype), num(scalar_of(lib)),
             ok ? " (equals the steps above)" : "   MISMATCH with the steps above; please report this");
  if (!ok) set_exit_code(1);
  write_curve("--png", a.png, train::ImageFormat::kPng);
  write_curve("--svg", a.svg, train::ImageFormat::kSvg);
}

}  // namespace

void add_explain_nll(CLI::App* explain) {
  auto a = std::make_shared<NllArgs>();
  CLI::App* app = explain->add_subcommand("nll", "Negative log-likelihood: the picked -logp[n, y[n]], sum and mean");
  app->add_option("--logp", a->logp, "Log-probabilities, inline (\"[[-0.5,-1.2,-2.0]]\") or a .npy, shape (C) or (N, C)")
      ->required()
      ->type_name("LIST|X.npy");
  app->add_option("--target", a->target, "Class indices, one per row, inline or a .npy")->required()->type_name("LIST|T.npy");
  app->add_option("--ignore-index", a->ignore_index, "Rows whose target is K contribute nothing (default -100)")
      ->type_name("K");
  app->add_option("--dtype", a->dtype, "dtype of inline values (default float32)")
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float32|float64");
  app->footer(examples({"xent explain nll --logp '[[-2.4076,-1.4076,-0.4076],[-4.1429,-2.1429,-0.1429]]' --target '[0,2]'"}));
  app->callback([a] { explain_nll(*a); });
}

void add_explain_bce(CLI::App* explain) {
  auto a = std::make_shared<BceArgs>();
  CLI::App* app = explain->add_subcommand(
      "bce", "Binary cross-entropy of probabilities, its -100 clamp, and the loss-vs-probability curve (--png/--svg)");
  app->add_option("--probs", a->probs, "Predicted probabilities in [0, 1], inline (\"[0.9, 0.2]\") or a .npy")
      ->required()
      ->type_name("LIST|P.npy");
  app->add_option("--target", a->target, "Targets (usually 0 or 1), the shape of --probs")->required()->type_name("LIST|T.npy");
  app->add_option("--png", a->png, "Also draw loss against p for target 1 and target 0 (clamp marked) as PNG")
      ->type_name("FILE");
  app->add_option("--svg", a->svg, "The same picture as SVG")->type_name("FILE");
  app->add_option("--dtype", a->dtype, "dtype of inline values (default float32)")
      ->check(CLI::IsMember({"float32", "float64"}).description(""))
      ->type_name("float32|float64");
  app->footer(examples({
      "xent explain bce --probs '[0.0, 0.1, 0.5, 0.9, 1.0]' --target '[1, 1, 1, 1, 1]'",
      "xent explain bce --probs '[0.9, 0.2]' --target '[1, 0]' --png bce.png --svg bce.svg",
  }));
  app->callback([a] { explain_bce(*a); });
}

}  // namespace xent::cli::ops
