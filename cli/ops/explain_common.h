// explain_common.h (cli/ops): what the `xent explain` subcommands share: values given inline
// ("[[1,2,3]]") or as .npy files, the 4-decimal number format, aligned tables, the tolerance used
// to compare a step-by-step value with the library's, and the size limits of a teaching example.
// Display only: no loss is computed here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "xent/io/npy.h"

namespace xent::cli::ops {

using io::NpyArray;

constexpr std::int64_t kMaxRows = 50;
constexpr std::int64_t kMaxClasses = 20;

struct Loaded {
  NpyArray array;
  std::vector<double> values;  // the array's values as double, for display
  bool inline_text = false;
};

std::vector<double> to_doubles(const NpyArray& a);

// `text` is an inline literal ("[0, 2]", "3") or a .npy path. A text starting with '[' is always a
// literal; otherwise it is a literal only if it parses as one (so "3.npy" is a file).
// Integer literals become int64 when `integers_as_int64`; everything else becomes `float_dtype`.
Loaded load(const std::string& flag, const std::string& text, DType float_dtype, bool integers_as_int64);

// 4 decimals for ordinary magnitudes, 4 significant digits in scientific notation otherwise.
std::string num(double v);
std::string list(const std::vector<double>& v);
// Prints rows of numbers right-aligned in columns, each row prefixed by its label.
void table(const std::vector<std::string>& labels, const std::vector<std::vector<double>>& rows,
           const std::vector<std::string>& header = {});
// Whether the library's value equals a step-by-step float64 value, within the dtype's rounding.
bool close(double got, double want, DType dtype);
double scalar_of(const NpyArray& a);
// One value per row as a column for table().
std::vector<std::vector<double>> column(const std::vector<double>& v);
// "row 0", "row 1", ... and "class 0", ...
std::vector<std::string> labels(const char* word, std::int64_t n);

// Prints "xent: warning: ..." on stderr when every row of `values` (N x C) lies in [0, 1] and sums
// to 1: values given as logits that look like probabilities (softmax would be applied twice).
void warn_if_probabilities(const std::vector<double>& values, std::int64_t N, std::int64_t C, const std::string& flag,
                           const std::string& hint);

}  // namespace xent::cli::ops
