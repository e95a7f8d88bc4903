// inline_values.h: a strict parser for small arrays written on the command line as nested lists,
// e.g. "[[1, 2, 3], [2, 4, 6]]", "[0, 2]" or "7".
//
// Grammar: value := number | '[' [ value (',' value)* [','] ] ']', with spaces allowed between
// tokens. Numbers are decimal (optional sign, digits, fraction, exponent) or inf, -inf, nan. Lists
// must be rectangular and at most Shape::kMaxDims deep. A pure function: no I/O, no exits, no
// exceptions; every error says what was expected and what was found, and at which character
// (0-based). It is a fuzz target. Not a JSON or Python parser: no strings, dicts or expressions.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "xent/status.h"
#include "xent/tensor.h"

namespace xent::cli {

struct InlineArray {
  Shape shape;                       // rank 0 for a bare number
  std::vector<double> values;        // C order, shape.numel() entries
  bool all_integers = true;          // every number was written without '.', exponent, inf or nan
  std::vector<std::int64_t> integers;  // the same values as int64 when all_integers
};

struct InlineLimits {
  std::size_t max_chars = 1 << 20;     // longer text is refused
  std::size_t max_elements = 1 << 20;  // more numbers are refused
};

Result<InlineArray> parse_inline_array(std::string_view text, const InlineLimits& limits = {});

}  // namespace xent::cli
