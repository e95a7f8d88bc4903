// common.cc (cli/train): data flags, parallel IDX loading (through the decoded-dataset cache for
// gzip'd files) and feature files (.npy, CSV) for the training subcommands.
#include "common.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
#include "io/dataset_cache.h"
#include "xent/io/csv.h"
#include "xent/io/npy.h"
#include "xent/train/model.h"

namespace xent::cli::train {

void add_data_options(CLI::App* app, DataArgs* a, bool need_train) {
  app->add_option("--data", a->dir,
                  "Directory with the four MNIST-style IDX files (train-images-idx3-ubyte[.gz], "
                  "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]), "
                  "gzip'd or plain")
      ->type_name("DIR");
  if (need_train) {
    app->add_option("--train-images", a->train_images, "Training images IDX file (overrides --data)")->type_name("FILE");
    app->add_option("--train-labels", a->train_labels,
                    "Training labels: an IDX file with --train-images (overrides --data), or an integer .npy of N with "
                    "--train FILE.npy")
        ->type_name("FILE");
  }
  app->add_option("--test-images", a->test_images, "Test images IDX file (overrides --data)")->type_name("FILE");
  app->add_option("--test-labels", a->test_labels,
                  "Test labels: an IDX file with --test-images, or an integer .npy of N with --test FILE.npy")
      ->type_name("FILE");
  if (need_train) {
    app->add_option("--train", a->train_file,
                    "Training features instead of IDX: FILE.csv (a header row; labels in the --label-column column, every "
                    "other column a number) or FILE.npy (float32/float64 (N, ...) rows, or uint8 images; labels from "
                    "--train-labels FILE.npy)")
        ->type_name("FILE");
  }
  app->add_option("--test", a->test_file,
                  need_train ? "Test features, as --train (required with --train)"
                             : "Test features instead of IDX: FILE.csv (labels in the --label-column column) or FILE.npy "
                               "(labels from --test-labels FILE.npy)")
      ->type_name("FILE");
  app->add_option("--label-column", a->label_column,
                  "CSV: the label column, by header name or 0-based index (default: the column named label)")
      ->type_name("NAME|INDEX");
  auto* dir = app->add_option("--cache-dir", a->cache_dir,
                              "Where decoded gzip'd IDX files are cached, so later runs skip inflating them (default "
                              "$XENT_CACHE_DIR, else $XDG_CACHE_HOME/xent, else ~/.cache/xent; created 0700)")
                  ->type_name("DIR");
  app->add_flag("--no-cache", a->no_cache, "Neither read nor write the decoded-dataset cache (inflate gzip'd IDX files every run)")
      ->excludes(dir);
}

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const std::size_t n = std::strlen(suffix);
  if (s.size() < n) return false;
  return std::equal(s.end() - static_cast<std::ptrdiff_t>(n), s.end(), suffix,
                    [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

// The labels of an .npy file: an integer array of n (or n x 1), each in [0, 2^31).
std::vector<std::int32_t> npy_labels(const std::string& path, std::int64_t n, const std::string& features) {
  Result<NpyArray> r = read_npy(path);
  if (!r.ok()) throw InputError(r.status().message());
  const NpyArray& y = *r;
  const Shape& sh = y.shape();
  if (y.dtype() != DType::kI32 && y.dtype() != DType::kI64)
    throw InputError(fmt::format("{}: expected integer class labels, found {} (cast them with .astype(int))", path,
                                 y.file_dtype().empty() ? dtype_name(y.dtype()) : y.file_dtype()));
  if (!(sh.rank() == 1 || (sh.rank() == 2 && sh[1] == 1)))
    throw InputError(fmt::format("{}: expected labels of shape (N,), found rank {} with {} elements", path, sh.rank(), y.numel()));
  if (sh[0] != n)
    throw InputError(fmt::format("{} has {} rows but {} has {} labels; they must agree", features, n, path, sh[0]));
  std::vector<std::int32_t> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t v = y.dtype() == DType::kI32 ? y.as<std::int32_t>()[i] : y.as<std::int64_t>()[i];
    if (v < 0 || v > INT32_MAX)
      throw InputError(fmt::format("{}: label {} at index {} is {}; expected a class index in [0, 2^31)", path, v, i,
                                   v < 0 ? "negative" : "too large"));
    out[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(v);
  }
  return out;
}

}  // namespace

LabeledImages load_feature_set(const std::string& features, const std::string& labels, const std::string& label_column,
                               const char* role, bool labels_required, std::vector<std::string>* label_names) {
  LabeledImages d;
  label_names->clear();
  if (ends_with(features, ".csv")) {
    if (!labels.empty())
      throw UsageError(fmt::format("labels file {} given for {}: a CSV holds its labels in a column (choose it with "
                                   "--label-column)", labels, features));
    CsvFeatureOptions o;
    o.label_column = label_column;
    o.require_label = labels_required;
    Result<CsvFeatures> r = read_csv_features(features, o);
    if (!r.ok()) throw InputError(r.status().message());
    d.n = r->n, d.height = 1, d.width = r->d, d.floats = true;
    d.values = std::move(r->features);
    d.labels = std::move(r->labels);
    *label_names = std::move(r->label_names);
    return d;
  }
  if (!ends_with(features, ".npy"))
    throw UsageError(fmt::format("--{} {}: expected a .csv or .npy file (IDX images go with --{}-images)", role, features, role));
  if (!label_column.empty()) throw UsageError("--label-column is for CSV files; .npy labels come from their own file");
  if (labels.empty() && labels_required)
    throw UsageError(fmt::format("--{} {} needs its labels: --{}-labels FILE.npy (an integer array of N)", role, features, role));
  Result<NpyArray> r = read_npy(features);
  if (!r.ok()) throw InputError(r.status().message());
  const NpyArray& x = *r;
  const Shape& sh = x.shape();
  const bool u8 = x.file_dtype().find("uint8") != std::string::npos;
  if (x.dtype() != DType::kF32 && x.dtype() != DType::kF64 && !u8)
    throw InputError(fmt::format("{}: expected float32 or float64 features (or uint8 images), found {}", features,
                                 x.file_dtype().empty() ? dtype_name(x.dtype()) : x.file_dtype()));
  if (sh.rank() < 2)
    throw InputError(fmt::format("{}: expected an (N, ...) array of N rows, found rank {}", features, sh.rank()));
  if (sh[0] < 1) throw InputError(fmt::format("{}: no rows (N = 0); expected at least one", features));
  const std::int64_t n = sh[0], D = x.numel() / n;
  if (D < 1) throw InputError(fmt::format("{}: rows of size 0", features));
  d.n = n;
  d.height = sh.rank() == 3 ? sh[1] : 1;
  d.width = sh.rank() == 3 ? sh[2] : D;
  if (!labels.empty()) d.labels = npy_labels(labels, n, features);
  if (u8) {  // widened to int64 by the reader; bytes again, as IDX pixels
    d.pixels = ByteBuffer(static_cast<std::size_t>(n * D));
    const std::int64_t* v = x.as<std::int64_t>();
    for (std::int64_t i = 0; i < n * D; ++i) d.pixels.data()[i] = static_cast<std::uint8_t>(v[i]);
    return d;
  }
  d.floats = true;
  d.values.resize(static_cast<std::size_t>(n * D));
  for (std::int64_t i = 0; i < n * D; ++i) {
    const double v = x.dtype() == DType::kF32 ? static_cast<double>(x.as<float>()[i]) : x.as<double>()[i];
    if (!std::isfinite(v) || std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max()))
      throw InputError(fmt::format("{}: row {}, feature {} is {}; expected a finite number within float32's range", features,
                                   i / D, i % D, v));
    d.values[static_cast<std::size_t>(i)] = static_cast<float>(v);
  }
  return d;
}

namespace {

LoadedData load_feature_data(const DataArgs& a, bool need_train) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!a.dir.empty() || !a.train_images.empty() || !a.test_images.empty())
    throw UsageError("give either --train/--test feature files or IDX data (--data, --*-images), not both");
  if (need_train && (a.train_file.empty() || a.test_file.empty()))
    throw UsageError("--train and --test go together: give both feature files (the test set is measured every epoch)");
  LoadedData d;
  d.paths.test_images = a.test_file;
  d.paths.test_labels = a.test_labels.empty() ? a.test_file : a.test_labels;
  d.test = load_feature_set(a.test_file, a.test_labels, a.label_column, "test", true, &d.test_names);
  if (need_train) {
    d.paths.train_images = a.train_file;
    d.paths.train_labels = a.train_labels.empty() ? a.train_file : a.train_labels;
    d.train = load_feature_set(a.train_file, a.train_labels, a.label_column, "train", true, &d.train_names);
    if (d.train.features() != d.test.features() || d.train.floats != d.test.floats)
      throw InputError(fmt::format("{} has rows of {} {} but {} has rows of {} {}; they must agree", a.train_file,
                                   d.train.features(), d.train.floats ? "floats" : "bytes", a.test_file, d.test.features(),
                                   d.test.floats ? "floats" : "bytes"));
  }
  d.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return d;
}

}  // namespace

LoadedData load_data(const DataArgs& a, int threads, bool need_train) {
  if (!a.train_file.empty() || !a.test_file.empty()) return load_feature_data(a, need_train);
  if (!a.label_column.empty()) throw UsageError("--label-column is for CSV files given with --train/--test");
  const auto t0 = std::chrono::steady_clock::now();
  LoadedData d;
  IdxDatasetPaths& p = d.paths;
  const bool explicit_all = (!need_train || (!a.train_images.empty() && !a.train_labels.empty())) &&
                            !a.test_images.empty() && !a.test_labels.empty();
  if (!explicit_all) {
    if (a.dir.empty()) {
      throw UsageError(need_train ? "give --data DIR (or all of --train-images, --train-labels, --test-images, --test-labels)"
                                  : "give --data DIR (or both --test-images and --test-labels)");
    }
    Result<IdxDatasetPaths> found = find_idx_dataset(a.dir);
    if (!found.ok()) throw InputError(found.status().message());
    p = *found;
  }
  if (!a.train_images.empty()) p.train_images = a.train_images;
  if (!a.train_labels.empty()) p.train_labels = a.train_labels;
  if (!a.test_images.empty()) p.test_images = a.test_images;
  if (!a.test_labels.empty()) p.test_labels = a.test_labels;

  // Largest file first; each worker takes the next file.
  std::vector<std::string> files = {p.train_images, p.test_images, p.train_labels, p.test_labels};
  if (!need_train) files = {p.test_images, p.test_labels};
  std::vector<std::string> roles = {"train_images", "test_images", "train_labels", "test_labels"};
  if (!need_train) roles = {"test_images", "test_labels"};
  d.cache_dir = a.no_cache ? "" : !a.cache_dir.empty() ? a.cache_dir : default_dataset_cache_dir();
  std::vector<CachedIdx> results(files.size());
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t k; (k = next.fetch_add(1)) < files.size();)
      results[k] = read_idx_file_cached(files[k], d.cache_dir, !a.no_cache);
  };
  const int n_workers = std::clamp(threads, 1, static_cast<int>(files.size()));
  std::vector<std::thread> pool;
  for (int w = 1; w < n_workers; ++w) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  for (const auto& r : results)
    if (!r.array.ok()) throw InputError(r.array.status().message());
  for (std::size_t k = 0; k < files.size(); ++k) {
    d.cache.emplace_back(roles[k], cache_use_name(results[k].use));
    if (!results[k].write_error.ok() && d.cache_note.empty())
      d.cache_note = fmt::format("note: the decoded data were not cached ({}); the gzip'd files will be inflated again "
                                 "next run (--cache-dir DIR to choose another place, --no-cache to stop trying)",
                                 results[k].write_error.message());
  }
  auto pair = [&](std::size_t img, std::size_t lab) {
    Result<LabeledImages> li = make_labeled_images(std::move(results[img].array.value()), files[img],
                                                   std::move(results[lab].array.value()), files[lab]);
    if (!li.ok()) throw InputError(li.status().message());
    return std::move(li).value();
  };
  if (need_train) {
    d.train = pair(0, 2);
    d.test = pair(1, 3);
    if (d.train.features() != d.test.features()) {
      throw InputError(fmt::format("{} has {} x {} images but {} has {} x {}; they must agree", p.train_images,
                                   d.train.height, d.train.width, p.test_images, d.test.height, d.test.width));
    }
  } else {
    d.test = pair(0, 1);
  }
  d.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return d;
}

std::int64_t count_classes(const LabeledImages& a, const LabeledImages& b) {
  std::int32_t mx = 1;
  for (auto y : a.labels) mx = std::max(mx, y);
  for (auto y : b.labels) mx = std::max(mx, y);
  return mx + 1;
}

std::vector<std::string> class_names_for(const std::string& flag, const std::string& data_path, std::int64_t C) {
  if (!flag.empty() && flag[0] == '@') {
    // @FILE: one name per line (UTF-8; a trailing newline and CRs are ignored).
    const std::string path = flag.substr(1);
    Result<ByteBuffer> bytes = read_file_bytes(path);
    if (!bytes.ok()) throw InputError(fmt::format("--class-names {}", bytes.status().message()));
    std::string text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
    std::vector<std::string> names;
    std::string cur;
    for (char c : text) {
      if (c == '\n') names.push_back(cur), cur.clear();
      else if (c != '\r') cur += c;
    }
    if (!cur.empty()) names.push_back(cur);
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i].empty()) throw InputError(fmt::format("--class-names {}: line {} is empty; expected one name per line", path, i + 1));
    if (static_cast<std::int64_t>(names.size()) < C)
      throw UsageError(fmt::format("--class-names {} has {} names, the data has {} classes (labels 0 to {}); give at least "
                                   "that many", path, names.size(), C, C - 1));
    return names;
  }
  if (!flag.empty()) {
    std::vector<std::string> names;
    std::string cur;
    for (char c : flag + ",") {
      if (c == ',') names.push_back(cur), cur.clear();
      else cur += c;
    }
    if (static_cast<std::int64_t>(names.size()) < C)
      throw UsageError(fmt::format("--class-names has {} names, the data has {} classes (labels 0 to {}); give at least "
                                   "that many", names.size(), C, C - 1));
    return names;
  }
  std::string lower = data_path;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return value_or_throw(default_class_names(C, lower.find("fashion") != std::string::npos));
}

void relabel_to_classes(LabeledImages* set, const std::vector<std::string>& found, const std::vector<std::string>& classes,
                        const std::string& file) {
  std::map<std::string, std::int32_t> index;
  for (std::size_t c = 0; c < classes.size(); ++c) index.emplace(classes[c], static_cast<std::int32_t>(c));
  std::vector<std::int32_t> to(found.size());
  for (std::size_t k = 0; k < found.size(); ++k) {
    const auto it = index.find(found[k]);
    if (it == index.end()) {
      std::string list;
      for (std::size_t c = 0; c < classes.size() && c < 10; ++c) list += (c ? ", " : "") + classes[c];
      if (classes.size() > 10) list += ", ...";
      throw InputError(fmt::format("{}: label '{}' is not one of the {} classes ({})", file, found[k], classes.size(), list));
    }
    to[k] = it->second;
  }
  for (auto& y : set->labels) y = to[static_cast<std::size_t>(y)];
}

std::vector<std::string> classes_from_label_names(LoadedData* d, const std::string& flag) {
  if (d->train_names.empty() && d->test_names.empty()) return {};
  if (d->train_names.empty() != d->test_names.empty()) {
    const bool train_named = !d->train_names.empty();
    throw InputError(fmt::format("{} labels its rows with class {} but {} with class {}; use the same kind in both",
                                 d->paths.train_labels, train_named ? "names" : "numbers", d->paths.test_labels,
                                 train_named ? "numbers" : "names"));
  }
  std::vector<std::string> classes;
  if (!flag.empty()) {
    classes = class_names_for(flag, "", 0);
    std::vector<std::string> sorted = classes;
    std::sort(sorted.begin(), sorted.end());
    const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
    if (dup != sorted.end())
      throw UsageError(fmt::format("--class-names names '{}' twice; the labels are names, so each must be one class", *dup));
  } else {
    std::set_union(d->train_names.begin(), d->train_names.end(), d->test_names.begin(), d->test_names.end(),
                   std::back_inserter(classes));
  }
  relabel_to_classes(&d->train, d->train_names, classes, d->paths.train_labels);
  relabel_to_classes(&d->test, d->test_names, classes, d->paths.test_labels);
  return classes;
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

}  // namespace xent::cli::train
