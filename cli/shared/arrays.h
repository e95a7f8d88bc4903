// arrays.h (cli/shared): what the array-in, array-out subcommands (cli/ops, cli/linear) share:
// reading inputs (every failure is bad input, exit 2), resolving --dim, the --threads and
// --reduction flags, and writing (or printing) one or more outputs so that either all of them are
// replaced or none is. Not part of the library API.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "xent/losses.h"
#include "xent/io/npy.h"
#include "xent/tensor.h"

namespace CLI {
class App;
class Option;
}

namespace xent::cli {

using namespace ::xent::io;  // NpyArray, read_npy, write_npy

// Reads a .npy input named by `flag` (e.g. "--input"); any failure throws InputError whose message
// names the file and what is wrong with it. `bfloat16` reads a 2-byte void descr ('<V2', how
// np.save stores ml_dtypes' bfloat16; io/npy.h) as bfloat16: set it where the user asked for
// bfloat16 (--dtype bf16).
NpyArray read_input(const std::string& flag, const std::string& path, bool bfloat16 = false);

// Throws InputError unless `a` holds a floating dtype ("--input 'x.npy' has dtype int64; <op>
// expects float16, bfloat16, float32 or float64").
void require_floating(const NpyArray& a, const std::string& flag, const std::string& path, const std::string& op);

// Adds --dtype (f32|f64|bf16|f16) stored in *dtype: the dtype the op computes and writes in; the
// floating inputs are converted to it once. Empty (the default): the input file's dtype.
void add_dtype_option(CLI::App* app, std::string* dtype);
// The dtype named by --dtype ("f32", "float32", ...), or `input` when `flag` is empty; throws
// UsageError for an unknown name.
DType compute_dtype(const std::string& flag, DType input);
// `a` converted to the floating dtype `to`, each value rounded once to nearest even (every source
// value is exact in double, and the narrowing is one rounding from double); `a` itself when it
// already has that dtype. Throws RuntimeFailure when the copy cannot be allocated.
NpyArray convert_to(NpyArray a, DType to);

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

// Adds --reduction (mean|sum|none) stored in *reduction; the help names the command's weight flag
// and what `none` gives.
void add_reduction_option(CLI::App* app, std::string* reduction, const std::string& weight_flag = "--weight",
                          const std::string& none_shape = "one per element, target's shape");
Reduction parse_reduction(const std::string& name);

// One output of an op: the flag that named it ("--out"), the path ("" = print it as text on stdout,
// NumPy style; "-" = the .npy bytes on stdout), a label for the printed text and the array.
struct Output {
  std::string flag;
  std::string path;
  ConstTensorView view;
  std::string label;
  bool show_dtype = false;  // printed text ends with a "dtype ..." line (always for 16-bit dtypes)
};

// Refuses an output path that cannot be written (a directory, a missing parent directory, a
// descriptor that is not open) with InputError (exit 2) naming the flag, before any work is done.
// Empty paths (printed outputs) are fine.
void check_output_paths(const std::vector<std::pair<std::string, std::string>>& flag_paths);

// Writes each output as .npy (or prints it). All temporaries are written first and renamed only
// when every one of them is complete, so a failure leaves every existing output untouched; links
// are followed and devices written directly (io/atomic_file.h). Paths must differ, and at most one
// thing goes to stdout (throws UsageError). I/O failures throw RuntimeFailure (exit 1).
void write_outputs(const std::vector<Output>& outputs);

// Adds --out (required=false: omitted prints the result) stored in *path.
CLI::Option* add_out_option(CLI::App* app, std::string* path, const std::string& help, const std::string& type_name);
// Adds --grad-out: a path, "-" for stdout, or the flag alone to print the gradient. The returned
// option's count() says whether it was given at all.
CLI::Option* add_grad_out_option(CLI::App* app, std::string* path, const std::string& help,
                                 const std::string& type_name);

// The formatted example block used as a subcommand's --help footer.
std::string examples(const std::vector<std::string>& lines);

}  // namespace xent::cli
