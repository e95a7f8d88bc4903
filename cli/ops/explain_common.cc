// explain_common.cc (cli/ops): inline values, number formats, tables and the comparison
// tolerance shared by the `xent explain` subcommands (see explain_common.h).
#include "explain_common.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "cli.h"
#include "shared/arrays.h"
#include "inline_values.h"

namespace xent::cli::ops {

// --- values given inline or as files ------------------------------------------------------------

std::vector<double> to_doubles(const NpyArray& a) {
  std::vector<double> v(static_cast<std::size_t>(a.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) {
    switch (a.dtype()) {
      case DType::kF32: v[i] = a.as<float>()[i]; break;
      case DType::kF64: v[i] = a.as<double>()[i]; break;
      case DType::kI32: v[i] = a.as<std::int32_t>()[i]; break;
      case DType::kI64: v[i] = static_cast<double>(a.as<std::int64_t>()[i]); break;
      case DType::kBF16: v[i] = to_float(a.as<bfloat16>()[i]); break;
      case DType::kF16: v[i] = to_float(a.as<float16>()[i]); break;
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
           const std::vector<std::string>& header) {
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

std::vector<std::vector<double>> column(const std::vector<double>& v) {
  std::vector<std::vector<double>> r;
  for (double x : v) r.push_back({x});
  return r;
}

std::vector<std::string> labels(const char* word, std::int64_t n) {
  std::vector<std::string> l;
  for (std::int64_t i = 0; i < n; ++i) l.push_back(fmt::format("{} {}", word, i));
  return l;
}

void warn_if_probabilities(const std::vector<double>& values, std::int64_t N, std::int64_t C, const std::string& flag,
                           const std::string& hint) {
  for (std::int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      const double v = values[static_cast<std::size_t>(n * C + c)];
      if (!(v >= 0.0 && v <= 1.0)) return;
      s += v;
    }
    if (std::fabs(s - 1.0) > 1e-5) return;
  }
  std::fprintf(stderr,
               "xent: warning: %s looks like probabilities (every row in [0, 1], summing to 1), not logits; "
               "softmax will be applied to them again. %s\n",
               flag.c_str(), hint.c_str());
}

}  // namespace xent::cli::ops
