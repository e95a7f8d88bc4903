// common.h (cli/ops): what the op subcommands share: reading inputs (every failure is bad input,
// exit 2), resolving --dim, the --threads and --reduction flags, and writing one or more outputs
// so that either all of them are replaced or none is. Not part of the library API.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "xent/io/npy.h"
#include "xent/losses.h"
#include "xent/tensor.h"

namespace CLI {
class App;
}

namespace xent::cli::ops {

using namespace ::xent::io;  // NpyArray, read_npy, write_npy

// Reads a .npy input named by `flag` (e.g. "--input"); any failure throws InputError whose message
// names the file and what is wrong with it.
NpyArray read_input(const std::string& flag, const std::string& path);

// Throws InputError unless `a` holds float32 or float64 ("--input 'x.npy' has dtype int64; <op>
// expects float32 or float64").
void require_floating(const NpyArray& a, const std::string& flag, const std::string& path, const std::string& op);

// The default --dim: 1 for inputs of rank 2 or more, 0 otherwise.
std::int64_t default_dim(const Shape& shape);
// `dim` made non-negative for an input of this shape (a 0-d input counts as rank 1); throws
// InputError when out of range.
int normalize_dim(std::int64_t dim, const Shape& shape);

// A zero-filled array; throws RuntimeFailure when it cannot be allocated.
NpyArray make_array(DType dtype, const Shape& shape);
// An array of ones of a floating dtype.
NpyArray make_ones(DType dtype, const Shape& shape);

// Adds --threads to a subcommand, stored in *threads (0 = the library's default).
void add_threads_option(CLI::App* app, int* threads);
void apply_threads(int threads);

// Adds --reduction (mean|sum|none) stored in *reduction.
void add_reduction_option(CLI::App* app, std::string* reduction);
Reduction parse_reduction(const std::string& name);

// Writes each (path, array) pair as .npy. All temporaries are written first and renamed only when
// every one of them is complete, so a failure leaves every existing output untouched. Paths must
// differ (throws UsageError). I/O failures throw RuntimeFailure (exit 1).
void write_outputs(const std::vector<std::pair<std::string, ConstTensorView>>& outputs);

// The formatted example block used as a subcommand's --help footer.
std::string examples(const std::vector<std::string>& lines);

}  // namespace xent::cli::ops
