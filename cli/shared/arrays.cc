// arrays.cc (cli/shared): input reading, --dim, --threads, --reduction and all-or-nothing output
// writing shared by the op subcommands.
#include "shared/arrays.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "validators.h"
#include "io/atomic_file.h"
#include "shared/print_array.h"
#include "xent/runtime.h"

namespace xent::cli {

NpyArray read_input(const std::string& flag, const std::string& path, bool bfloat16) {
  NpyReadOptions options;
  options.void2_as_bfloat16 = bfloat16;
  Result<NpyArray> r = read_npy(path, options);
  // A missing, unreadable or malformed input is the caller's to fix: exit 2. A read that fails
  // part-way through a file that opened fine (an I/O error, the file shrinking while it is read)
  // is a runtime failure: exit 1. The reader's messages already name the file.
  if (!r.ok()) {
    std::string msg = fmt::format("{}: {}", flag, r.status().message());
    struct stat st {};
    if (r.status().code() == StatusCode::kIoError && ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(path.c_str(), R_OK) == 0) {
      throw RuntimeFailure(msg);
    }
    throw InputError(msg);
  }
  return std::move(r).value();
}

void require_floating(const NpyArray& a, const std::string& flag, const std::string& path, const std::string& op) {
  if (is_floating(a.dtype())) return;
  throw InputError(fmt::format("{} '{}' has dtype {}; {} expects float16, bfloat16, float32 or float64", flag, path,
                               a.file_dtype().empty() ? dtype_name(a.dtype()) : a.file_dtype(), op));
}

void add_dtype_option(CLI::App* app, std::string* dtype) {
  app->add_option("--dtype", *dtype,
                  "Compute and write in this dtype: f32, f64, bf16 or f16. The floating inputs are converted "
                  "once (rounded to nearest even); every op accumulates in float32 or wider and rounds its "
                  "result once. Default: the input file's dtype. bf16 also reads '<V2' files as bfloat16 (how "
                  "np.save stores ml_dtypes.bfloat16)")
      ->type_name("f32|f64|bf16|f16");
}

DType compute_dtype(const std::string& flag, DType input) {
  if (flag.empty()) return input;
  if (flag == "f32" || flag == "float32") return DType::kF32;
  if (flag == "f64" || flag == "float64") return DType::kF64;
  if (flag == "bf16" || flag == "bfloat16") return DType::kBF16;
  if (flag == "f16" || flag == "float16") return DType::kF16;
  throw UsageError(fmt::format("--dtype expects f32, f64, bf16 or f16, found '{}'", flag));
}

namespace {

double load_as_double(const NpyArray& a, std::int64_t i) {
  switch (a.dtype()) {
    case DType::kF32: return a.as<float>()[i];
    case DType::kF64: return a.as<double>()[i];
    case DType::kBF16: return to_float(a.as<bfloat16>()[i]);
    case DType::kF16: return to_float(a.as<float16>()[i]);
    case DType::kI32: return a.as<std::int32_t>()[i];
    case DType::kI64: return static_cast<double>(a.as<std::int64_t>()[i]);
  }
  return 0.0;
}

}  // namespace

NpyArray convert_to(NpyArray a, DType to) {
  if (a.dtype() == to) return a;
  NpyArray out = make_array(to, a.shape());
  const std::int64_t n = a.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = load_as_double(a, i);
    switch (to) {
      case DType::kF32: out.as<float>()[i] = static_cast<float>(v); break;
      case DType::kF64: out.as<double>()[i] = v; break;
      case DType::kBF16: out.as<bfloat16>()[i] = to_bfloat16(v); break;
      case DType::kF16: out.as<float16>()[i] = to_float16(v); break;
      default: throw RuntimeFailure(fmt::format("convert_to: {} is not a floating dtype", dtype_name(to)));
    }
  }
  return out;
}

std::int64_t default_dim(const Shape& shape) { return shape.rank() >= 2 ? 1 : 0; }

int normalize_dim(std::int64_t dim, const Shape& shape) {
  const std::int64_t rank = std::max(shape.rank(), 1);
  if (dim < -rank || dim >= rank) {
    throw InputError(fmt::format("--dim {} is out of range for an input of shape {}; expected a value in [{}, {}]",
                                 dim, shape.to_string(), -rank, rank - 1));
  }
  return static_cast<int>(dim < 0 ? dim + rank : dim);
}

NpyArray make_array(DType dtype, const Shape& shape) {
  Result<NpyArray> r = NpyArray::zeros(dtype, shape);
  if (!r.ok()) throw RuntimeFailure(r.status().message());
  return std::move(r).value();
}

NpyArray make_ones(DType dtype, const Shape& shape) {
  NpyArray a = make_array(dtype, shape);
  if (dtype == DType::kF32) std::fill_n(a.as<float>(), a.numel(), 1.0f);
  if (dtype == DType::kF64) std::fill_n(a.as<double>(), a.numel(), 1.0);
  if (dtype == DType::kBF16) std::fill_n(a.as<bfloat16>(), a.numel(), to_bfloat16(1.0));
  if (dtype == DType::kF16) std::fill_n(a.as<float16>(), a.numel(), to_float16(1.0));
  return a;
}

void add_threads_option(CLI::App* app, int* threads) {
  app->add_option("--threads", *threads,
                  "Worker threads for the kernels (default: all cores, or $XENT_THREADS). Results are "
                  "bit-identical for every thread count.")
      ->check(at_least(1))
      ->type_name("N");
}

void apply_threads(int threads) {
  if (threads > 0) set_num_threads(threads);
}

void add_reduction_option(CLI::App* app, std::string* reduction, const std::string& weight_flag,
                          const std::string& none_shape) {
  app->add_option("--reduction", *reduction,
                  fmt::format("How the per-element losses are combined: mean (default; a weighted mean when {} "
                              "is given), sum, or none ({}). mean and sum give a 0-d array.",
                              weight_flag, none_shape))
      ->check(CLI::IsMember({"mean", "sum", "none"}).description(""))
      ->type_name("mean|sum|none");
}

Reduction parse_reduction(const std::string& name) {
  if (name == "mean") return Reduction::kMean;
  if (name == "sum") return Reduction::kSum;
  if (name == "none") return Reduction::kNone;
  throw UsageError(fmt::format("--reduction must be mean, sum or none; got '{}'", name));
}

void check_output_paths(const std::vector<std::pair<std::string, std::string>>& flag_paths) {
  for (const auto& [flag, path] : flag_paths) {
    if (!path.empty()) throw_if_error(io::check_output_path(path), flag);
  }
}

namespace {

// Whether an output path ends at this process's stdout ("-", /dev/stdout, /dev/fd/1, a link to one).
bool goes_to_stdout(const std::string& path) {
  if (path.empty()) return true;  // printed as text
  Result<io::OutputTarget> t = io::resolve_output_path(path);
  return t.ok() && t.value().kind == io::OutputTarget::Kind::kDescriptor && t.value().fd == STDOUT_FILENO;
}

}  // namespace

void write_outputs(const std::vector<Output>& outputs) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    for (std::size_t j = i + 1; j < outputs.size(); ++j) {
      const std::string& a = outputs[i].path;
      const std::string& b = outputs[j].path;
      if (!a.empty() && a == b) {
        throw UsageError(fmt::format("{} and {} name the same file '{}'; expected different paths", outputs[i].flag,
                                     outputs[j].flag, a));
      }
      if (goes_to_stdout(a) && goes_to_stdout(b) && !(a.empty() && b.empty())) {
        throw UsageError(fmt::format("{} and {} would both go to stdout; give one of them a file", outputs[i].flag,
                                     outputs[j].flag));
      }
    }
  }
  // Phase 1: every output complete in its temporary. Phase 2: rename them all (or write the devices).
  std::vector<std::unique_ptr<io::AtomicFile>> files;
  for (const auto& o : outputs) {
    if (o.path.empty()) continue;
    auto f = std::make_unique<io::AtomicFile>();
    throw_if_error(f->open(o.path), o.flag);
    throw_if_error(f->write(value_or_throw(npy_header(o.view.dtype, o.view.shape), o.flag)), o.flag);
    throw_if_error(f->write(o.view.data, static_cast<std::size_t>(o.view.numel()) * dtype_size(o.view.dtype)), o.flag);
    files.push_back(std::move(f));
  }
  for (auto& f : files) throw_if_error(f->flush());
  for (auto& f : files) throw_if_error(f->commit());
  std::size_t printed = 0;
  for (const auto& o : outputs) printed += o.path.empty() ? 1 : 0;
  for (const auto& o : outputs) {
    if (!o.path.empty()) continue;
    std::string text = format_array(o.view, o.show_dtype);
    if (printed > 1) text = o.label + ":\n" + text;
    std::fputs(text.c_str(), stdout);
    if (printed > 1 && &o != &outputs.back()) std::fputs("\n", stdout);
  }
  std::fflush(stdout);
}

CLI::Option* add_out_option(CLI::App* app, std::string* path, const std::string& help, const std::string& type_name) {
  return app
      ->add_option("--out", *path,
                   help + ". Omitted: the result is printed as text (NumPy style); '-': the .npy bytes go to stdout")
      ->type_name(type_name);
}

CLI::Option* add_grad_out_option(CLI::App* app, std::string* path, const std::string& help,
                                 const std::string& type_name) {
  return app
      ->add_option("--grad-out", *path,
                   help + ". '-': the .npy bytes to stdout; the flag alone: printed as text")
      ->expected(0, 1)
      ->type_name("[" + type_name + "]");
}

std::string examples(const std::vector<std::string>& lines) {
  std::string s = "\nExamples:\n";
  for (const auto& l : lines) s += "  " + l + "\n";
  return s;
}

}  // namespace xent::cli
