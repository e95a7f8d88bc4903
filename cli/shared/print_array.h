// print_array.h (cli/shared): an array as NumPy prints it (`print(a)`), for ops run without --out:
// a 0-d array as one number, small arrays in full, arrays of more than 1000 elements summarised
// with the first and last 3 entries of each dimension ("...") and a line with their shape and
// dtype. Not a general formatter: float32/float64/int32/int64 only, as the ops produce.
#pragma once

#include <string>

#include "xent/tensor.h"

namespace xent::cli {

// The text, ending in a newline. Floats use NumPy's defaults: up to 8 fractional digits, trailing
// zeros dropped, scientific notation when the magnitudes span more than 1e3 or reach 1e8 or fall
// below 1e-4; a 0-d float is its shortest round-trip decimal.
std::string format_array(const ConstTensorView& a);

}  // namespace xent::cli
