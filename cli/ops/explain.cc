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
#include "common.h"
#include "inline_values.h"
#include "xent/losses.h"
#include "xent/softmax.h"

namespace xent::cli::ops {
namespace {

constexpr std::int64_t kMaxRows = 50;
constexpr std::int64_t kMaxClasses = 20;

// --- values given inline or as files ------------------------------------------------------------

struct Loaded {
  NpyArray array;
  std::vector<double> values;  // the array's values as double, for display
  bool inline_text = false;
};

std::vector<double> to_doubles(const NpyArray& a) {
  std::vector<double> v(static_cast<std::size_t>(a.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) {
    switch (a.dtype()) {
      case DType::kF32: v[i] = a.as<float>()[i]; break;
      case DType::kF64: v[i] = a.as<double>()[i]; break;
      case DType::kI32: v[i] = a.as<std::int32_t>()[i]; break;
      case DType::kI64: v[i] = static_cast<double>(a.as<std::int64_t>()[i]); break;
    }
  }
  return v;
}

// `text` is an inline literal ("[0, 2]", "3") or a .npy path. A text starting with '[' is always a
// literal; otherwise it is a literal only if it parses as one (so "3.npy" is a file).
// Integer literals become int64 when `integers_as_int64`; everything else becomes `float_dtype`.
Loaded load(const std::string& flag, const std::string& text, DType float_dtype, bool integers_as_int64) {
  auto first = text.find_first_not_of(" \t");
  bool bracket = first != std::string::npos && text[first] == '[';
  Result<InlineArray> parsed = parse_inline_array(text);
  if (bracket && !parsed.ok()) throw InputError(fmt::format("{} '{}': {}", flag, text, parsed.status().message()));
  Loaded l;
  if (!parsed.ok()) {
    l.array = read_input(flag, text);
    l.values = to_doubles(l.array);
    return l;
  }
  const InlineArray& in = parsed.value();
  l.inline_text = true;
  const bool as_int = integers_as_int64 && in.all_integers;
  l.array = make_array(as_int ? DType::kI64 : float_dtype, in.shape);
  for (std::size_t i = 0; i < in.values.size(); ++i) {
    if (as_int) l.array.as<std::int64_t>()[i] = in.integers[i];
    else if (float_dtype == DType::kF32) l.array.as<float>()[i] = static_cast<float>(in.values[i]);
    else l.array.as<double>()[i] = in.values[i];
  }
  l.values = to_doubles(l.array);  // after rounding to the dtype, as the library sees them
  return l;
}

// --- printing -----------------------------------------------------------------------------------

// 4 decimals for ordinary magnitudes, 4 significant digits in scientific notation otherwise.
std::string num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return "0";
  double a = std::fabs(v);
  if (a >= 1e-3 && a < 1e6) return fmt::format("{:.4f}", v);
  return fmt::format("{:.4e}", v);
}

std::string list(const std::vector<double>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + num(v[i]);
  return s + "]";
}

// Prints rows of numbers right-aligned in columns, each row prefixed by its label.
void table(const std::vector<std::string>& labels, const std::vector<std::vector<double>>& rows,
           const std::vector<std::string>& header = {}) {
  std::size_t width = 0, label_width = 0;
  for (const auto& l : labels) label_width = std::max(label_width, l.size());
  for (const auto& h : header) width = std::max(width, h.size());
  for (const auto& r : rows)
    for (double v : r) width = std::max(width, num(v).size());
  if (!header.empty()) {
    std::string line = fmt::format("    {:{}}", "", label_width);
    for (const auto& h : header) line += fmt::format("  {:>{}}", h, width);
    fmt::print("{}\n", line);
  }
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::string line = fmt::format("    {:<{}}", labels[i], label_width);
    for (double v : rows[i]) line += fmt::format("  {:>{}}", num(v), width);
    fmt::print("{}\n", line);
  }
}

bool close(double got, double want, DType dtype) {
  if (std::isnan(got) || std::isnan(want)) return std::isnan(got) && std::isnan(want);
  if (std::isinf(got) || std::isinf(want)) return got == want;
  double rel = dtype == DType::kF32 ? 2e-6 : 1e-12;
  double tiny = dtype == DType::kF32 ? 1e-44 : 1e-300;
  return std::fabs(got - want) <= rel * std::max(std::fabs(got), std::fabs(want)) + tiny;
}

double scalar_of(const NpyArray& a) { return to_doubles(a).at(0); }

// --- explain cross-entropy ----------------------------------------------------------------------

struct CeArgs {
  std::string input, logits, target, weight, dtype = "float32";
  std::int64_t ignore_index = -100;
  double label_smoothing = 0.0;
};

void explain_cross_entropy(const CeArgs& a) {
  if (a.input.empty() == a.logits.empty()) {
    throw UsageError("explain cross-entropy needs exactly one of --input X.npy or --logits \"[[...]]\"");
  }
  if (!(a.label_smoothing >= 0.0 && a.label_smoothing <= 1.0)) {
    throw UsageError(fmt::format("--label-smoothing must be in [0, 1]; got {}", a.label_smoothing));
  }
  const DType inline_dtype = a.dtype == "float64" ? DType::kF64 : DType::kF32;
  Loaded z = a.input.empty() ? load("--logits", a.logits, inline_dtype, false) : Loaded{};
  if (!a.input.empty()) {
    z.array = read_input("--input", a.input);
    require_floating(z.array, "--input", a.input, "explain cross-entropy");
    z.values = to_doubles(z.array);
  }
  const DType dtype = z.array.dtype();
  const Shape& zs = z.array.shape();
  if (zs.rank() != 1 && zs.rank() != 2) {
    throw InputError(fmt::format("explain cross-entropy shows logits of shape (C) or (N, C); got shape {} "
                                 "(use `xent cross-entropy` for other ranks)",
                                 zs.to_string()));
  }
  const std::int64_t N = zs.rank() == 2 ? zs[0] : 1;
  const std::int64_t C = zs.rank() == 2 ? zs[1] : zs[0];
  if (N < 1 || C < 1 || N > kMaxRows || C > kMaxClasses) {
    throw InputError(fmt::format("explain is for small examples: expected 1 to {} rows and 1 to {} classes, "
                                 "found shape {}",
                                 kMaxRows, kMaxClasses, zs.to_string()));
  }
  Loaded t = load("--target", a.target, dtype, true);
  if (t.inline_text && !is_floating(t.array.dtype()) && t.array.shape() == zs) {
    t = load("--target", a.target, dtype, false);  // integers with the logits' shape: one-hot probabilities
  }
  const bool probs = is_floating(t.array.dtype());
  const Shape want_t = probs ? zs : (zs.rank() == 2 ? Shape{N} : Shape{});
  if (t.array.shape() != want_t) {
    throw InputError(fmt::format("--target has shape {}; expected {} ({} for logits of shape {})",
                                 t.array.shape().to_string(), want_t.to_string(),
                                 probs ? "class probabilities, the logits' shape," : "one class index per row",
                                 zs.to_string()));
  }
  if (probs && t.array.dtype() != dtype) {
    throw InputError(fmt::format("--target holds probabilities of dtype {}; expected the logits' dtype {}",
                                 dtype_name(t.array.dtype()), dtype_name(dtype)));
  }
  std::vector<double> w(static_cast<std::size_t>(C), 1.0);
  Loaded wl;
  const bool weighted = !a.weight.empty();
  if (weighted) {
    wl = load("--weight", a.weight, dtype, false);
    if (wl.array.shape() != Shape{C} || wl.array.dtype() != dtype) {
      throw InputError(fmt::format("--weight has shape {} and dtype {}; expected shape [{}] and dtype {}",
                                   wl.array.shape().to_string(), dtype_name(wl.array.dtype()), C, dtype_name(dtype)));
    }
    w = wl.values;
  }
  const double eps = a.label_smoothing;

  // The steps, in float64.
  const auto at = [&](const std::vector<double>& v, std::int64_t n, std::int64_t c) {
    return v[static_cast<std::size_t>(n * C + c)];
  };
  std::vector<std::vector<double>> zr(N), shifted(N), ex(N), p(N), logp(N);
  std::vector<double> m(N), s(N);
  for (std::int64_t n = 0; n < N; ++n) {
    m[n] = -std::numeric_limits<double>::infinity();
    for (std::int64_t c = 0; c < C; ++c) {
      zr[n].push_back(at(z.values, n, c));
      m[n] = std::max(m[n], zr[n].back());
    }
    s[n] = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      shifted[n].push_back(zr[n][c] - m[n]);
      ex[n].push_back(std::exp(shifted[n][c]));
      s[n] += ex[n][c];
    }
    for (std::int64_t c = 0; c < C; ++c) {
      p[n].push_back(ex[n][c] / s[n]);
      logp[n].push_back(shifted[n][c] - std::log(s[n]));
    }
  }
  // Per-row loss, PyTorch's rules (docs/numerics.md).
  std::vector<double> nll(N, 0.0), smooth(N, 0.0), loss(N, 0.0);
  std::vector<bool> ignored(N, false);
  std::vector<std::int64_t> y(N, 0);
  double weight_sum = 0;  // the mean's divisor for class indices
  for (std::int64_t n = 0; n < N; ++n) {
    if (probs) {
      for (std::int64_t c = 0; c < C; ++c) {
        double tc = at(t.values, n, c) * (1 - eps) + eps / static_cast<double>(C);
        loss[n] -= w[c] * tc * logp[n][c];
      }
      continue;
    }
    y[n] = static_cast<std::int64_t>(t.values[static_cast<std::size_t>(n)]);
    if (y[n] == a.ignore_index) {
      ignored[n] = true;
      continue;
    }
    if (y[n] < 0 || y[n] >= C) {
      throw InputError(fmt::format("--target: class index {} at row {} is outside [0, {}) and is not the "
                                   "--ignore-index {}",
                                   y[n], n, C, a.ignore_index));
    }
    nll[n] = -w[y[n]] * logp[n][y[n]];
    for (std::int64_t c = 0; c < C; ++c) smooth[n] -= w[c] * logp[n][c];
    loss[n] = (1 - eps) * nll[n] + eps / static_cast<double>(C) * smooth[n];
    weight_sum += w[y[n]];
  }
  double sum = 0;
  for (double l : loss) sum += l;
  double mean = 0;
  std::string mean_how;
  if (probs) {
    mean = sum / static_cast<double>(N);
    mean_how = fmt::format("sum / N = {} / {}", num(sum), N);
  } else {
    // PyTorch 1.13 divides both the picked term and the smoothing term by the picked weights
    // (without --weight: by the number of rows not ignored).
    mean = sum / weight_sum;
    mean_how = weighted ? fmt::format("sum / (sum of the picked weights) = {} / {}", num(sum), num(weight_sum))
                        : fmt::format("sum / (rows not ignored) = {} / {}", num(sum), weight_sum);
  }

  // Printing.
  std::vector<std::string> rows_l, cls;
  for (std::int64_t n = 0; n < N; ++n) rows_l.push_back(fmt::format("row {}", n));
  for (std::int64_t c = 0; c < C; ++c) cls.push_back(fmt::format("class {}", c));
  auto col = [](const std::vector<double>& v) {
    std::vector<std::vector<double>> r;
    for (double x : v) r.push_back({x});
    return r;
  };
  fmt::print("Cross-entropy, step by step: N = {} row{} x C = {} classes, {} logits (steps shown in float64)\n",
             N, N == 1 ? "" : "s", C, dtype_name(dtype));
  if (probs) {
    fmt::print("targets: class probabilities (one distribution per row)\n");
  } else {
    std::string ys;
    for (std::int64_t n = 0; n < N; ++n) ys += fmt::format("{}{}", n ? ", " : "", y[n]);
    fmt::print("targets y = {}\n", zs.rank() == 2 ? "[" + ys + "]" : ys);
  }
  if (weighted) fmt::print("class weights w = {}\n", list(w));
  if (eps > 0) fmt::print("label smoothing S = {}\n", num(eps));
  fmt::print("\n1. logits z\n");
  table(rows_l, zr, cls);
  fmt::print("\n2. row max m = max over classes of z (subtracting it keeps exp from overflowing)\n");
  table(rows_l, col(m));
  fmt::print("\n3. shifted logits z - m (the largest entry of each row becomes 0)\n");
  table(rows_l, shifted, cls);
  fmt::print("\n4. exp(z - m) (every entry in (0, 1])\n");
  table(rows_l, ex, cls);
  fmt::print("\n5. row sums s = sum over classes of exp(z - m)\n");
  table(rows_l, col(s));
  fmt::print("\n6. softmax probabilities y_hat = exp(z - m) / s (each row sums to 1)\n");
  table(rows_l, p, cls);
  fmt::print("\n7. log-probabilities log(y_hat) = (z - m) - log(s)\n");
  table(rows_l, logp, cls);
  if (probs) {
    fmt::print("\n8. per-row loss = -sum over classes of {}target * log(y_hat){}\n", weighted ? "w * " : "",
               eps > 0 ? ", target smoothed to (1 - S) * target + S / C" : "");
    table(rows_l, col(loss));
  } else {
    fmt::print("\n8. picked entries: loss[n] = -{}log(y_hat[n, y[n]])   (NumPy: -np.log(y_hat[range(n), y]))\n",
               weighted ? "w[y[n]] * " : "");
    std::vector<std::string> labels;
    std::vector<std::vector<double>> vals;
    for (std::int64_t n = 0; n < N; ++n) {
      labels.push_back(ignored[n] ? fmt::format("row {}  y = {} (ignored, contributes 0)", n, y[n])
                                  : fmt::format("row {}  y = {}", n, y[n]));
      vals.push_back({eps > 0 ? nll[n] : loss[n]});
    }
    table(labels, vals);
    if (eps > 0) {
      fmt::print("   with label smoothing: loss[n] = (1 - S) * picked + S / C * (-sum over classes of {}log(y_hat))\n",
                 weighted ? "w * " : "");
      table(rows_l, col(loss));
    }
  }
  fmt::print("\n9. sum  = {}\n   mean = {} = {}\n", num(sum), mean_how, num(mean));

  // The check against the library, for each reduction.
  CrossEntropyOptions o;
  if (weighted) o.weight = wl.array.view();
  o.ignore_index = a.ignore_index;
  o.label_smoothing = eps;
  o.reduction = Reduction::kMean;
  NpyArray lib_mean = make_array(dtype, Shape{});
  throw_if_error(cross_entropy_forward(z.array.view(), t.array.view(), o, lib_mean.mutable_view()), "cross-entropy");
  o.reduction = Reduction::kSum;
  NpyArray lib_sum = make_array(dtype, Shape{});
  throw_if_error(cross_entropy_forward(z.array.view(), t.array.view(), o, lib_sum.mutable_view()), "cross-entropy");
  o.reduction = Reduction::kNone;
  NpyArray lib_none = make_array(dtype, zs.rank() == 2 ? Shape{N} : Shape{});
  throw_if_error(cross_entropy_forward(z.array.view(), t.array.view(), o, lib_none.mutable_view()), "cross-entropy");
  bool ok = close(scalar_of(lib_mean), mean, dtype) && close(scalar_of(lib_sum), sum, dtype);
  std::vector<double> none = to_doubles(lib_none);
  for (std::int64_t n = 0; n < N; ++n) ok = ok && close(none[n], loss[n], dtype);
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
  }));

  auto ce = std::make_shared<CeArgs>();
  CLI::App* c = explain->add_subcommand(
      "cross-entropy", "Every step from logits to the cross-entropy loss, checked against the library");
  auto in = c->add_option("--input", ce->input, "Logits as a .npy file, shape (C) or (N, C)")->type_name("X.npy");
  auto lg = c->add_option("--logits", ce->logits, "Logits written inline as a nested list, e.g. \"[[1,2,3],[2,4,6]]\"")
                ->type_name("LIST");
  in->excludes(lg);
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
}

}  // namespace

XENT_REGISTER_COMMAND(30, setup);

}  // namespace xent::cli::ops
