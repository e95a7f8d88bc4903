// print_array.h (cli/shared): an array as NumPy prints it (`print(a)`), for ops run without --out:
// a 0-d array as one number, small arrays in full, arrays of more than 1000 elements summarised
// with the first and last 3 entries of each dimension ("...") and a line with their shape and
// dtype. Not a general formatter: the dtypes the ops produce. bfloat16 and float16 values print as
// their shortest decimal that rounds back to the same 16-bit value (as NumPy prints float16), and
// their text ends with a line naming the dtype ("dtype bfloat16"), since NumPy's text alone would
// not say that the values were computed in 16 bits.
#pragma once

#include <string>

#include "xent/tensor.h"

namespace xent::cli {

// The text, ending in a newline. Floats use NumPy's defaults: up to 8 fractional digits, trailing
// zeros dropped, scientific notation when the magnitudes span more than 1e3 or reach 1e8 or fall
// below 1e-4; a 0-d float is its shortest round-trip decimal.
// show_dtype: end with the "dtype ..." line for every dtype (16-bit dtypes always have it; a
// summarised array's shape line names it instead).
std::string format_array(const ConstTensorView& a, bool show_dtype = false);

}  // namespace xent::cli
