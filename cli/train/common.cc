// common.cc (cli/train): data flags and parallel IDX loading for the training subcommands.
#include "common.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli.h"
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
    app->add_option("--train-labels", a->train_labels, "Training labels IDX file (overrides --data)")->type_name("FILE");
  }
  app->add_option("--test-images", a->test_images, "Test images IDX file (overrides --data)")->type_name("FILE");
  app->add_option("--test-labels", a->test_labels, "Test labels IDX file (overrides --data)")->type_name("FILE");
}

LoadedData load_data(const DataArgs& a, int threads, bool need_train) {
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
  std::vector<Result<IdxArray>> results;
  for (std::size_t k = 0; k < files.size(); ++k) results.emplace_back(ok_status());
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t k; (k = next.fetch_add(1)) < files.size();) results[k] = read_idx_file(files[k]);
  };
  const int n_workers = std::clamp(threads, 1, static_cast<int>(files.size()));
  std::vector<std::thread> pool;
  for (int w = 1; w < n_workers; ++w) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  for (const auto& r : results)
    if (!r.ok()) throw InputError(r.status().message());
  auto pair = [&](std::size_t img, std::size_t lab) {
    Result<LabeledImages> li = make_labeled_images(std::move(results[img].value()), files[img],
                                                   std::move(results[lab].value()), files[lab]);
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
    if (static_cast<std::int64_t>(names.size()) != C)
      throw UsageError(fmt::format("--class-names {} has {} names, the data has {} classes", path, names.size(), C));
    return names;
  }
  if (!flag.empty()) {
    std::vector<std::string> names;
    std::string cur;
    for (char c : flag + ",") {
      if (c == ',') names.push_back(cur), cur.clear();
      else cur += c;
    }
    if (static_cast<std::int64_t>(names.size()) != C)
      throw UsageError(fmt::format("--class-names has {} names, the data has {} classes", names.size(), C));
    return names;
  }
  std::string lower = data_path;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return value_or_throw(default_class_names(C, lower.find("fashion") != std::string::npos));
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

}  // namespace xent::cli::train
