// common.cc (cli/ops): input reading, --dim, --threads, --reduction and all-or-nothing output
// writing shared by the op subcommands.
#include "common.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "io/atomic_file.h"
#include "xent/runtime.h"

namespace xent::cli::ops {

NpyArray read_input(const std::string& flag, const std::string& path) {
  Result<NpyArray> r = read_npy(path);
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
  throw InputError(fmt::format("{} '{}' has dtype {}; {} expects float32 or float64", flag, path,
                               a.file_dtype().empty() ? dtype_name(a.dtype()) : a.file_dtype(), op));
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
  return a;
}

void add_threads_option(CLI::App* app, int* threads) {
  app->add_option("--threads", *threads,
                  "Worker threads for the kernels (default: all cores, or $XENT_THREADS). Results are "
                  "bit-identical for every thread count.")
      ->check(CLI::Range(1, 4096).description(""))
      ->type_name("N");
}

void apply_threads(int threads) {
  if (threads > 0) set_num_threads(threads);
}

void add_reduction_option(CLI::App* app, std::string* reduction) {
  app->add_option("--reduction", *reduction,
                  "How the per-element losses are combined: mean (default; a weighted mean when --weight "
                  "is given), sum, or none (one loss per element, target's shape). mean and sum give a "
                  "0-d array.")
      ->check(CLI::IsMember({"mean", "sum", "none"}).description(""))
      ->type_name("mean|sum|none");
}

Reduction parse_reduction(const std::string& name) {
  if (name == "mean") return Reduction::kMean;
  if (name == "sum") return Reduction::kSum;
  if (name == "none") return Reduction::kNone;
  throw UsageError(fmt::format("--reduction must be mean, sum or none; got '{}'", name));
}

void write_outputs(const std::vector<std::pair<std::string, ConstTensorView>>& outputs) {
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    for (std::size_t j = i + 1; j < outputs.size(); ++j) {
      if (outputs[i].first == outputs[j].first) {
        throw UsageError(fmt::format("two outputs name the same file '{}'; expected different paths",
                                     outputs[i].first));
      }
    }
  }
  // Phase 1: every output complete in its temporary. Phase 2: rename them all.
  std::vector<std::unique_ptr<io::AtomicFile>> files;
  for (const auto& [path, view] : outputs) {
    auto f = std::make_unique<io::AtomicFile>();
    throw_if_error(f->open(path));
    throw_if_error(f->write(npy_header(view.dtype, view.shape)));
    throw_if_error(f->write(view.data, static_cast<std::size_t>(view.numel()) * dtype_size(view.dtype)));
    files.push_back(std::move(f));
  }
  for (auto& f : files) throw_if_error(f->flush());
  for (auto& f : files) throw_if_error(f->commit());
}

std::string examples(const std::vector<std::string>& lines) {
  std::string s = "\nExamples:\n";
  for (const auto& l : lines) s += "  " + l + "\n";
  return s;
}

}  // namespace xent::cli::ops
