// evaluate_command.cc: `xent evaluate`: a model's accuracy, per-class accuracy and confusion
// matrix on an IDX test set or a feature file (.npy, CSV) (text, or --json). The model's recorded
// normalization is applied to the rows.
#include <algorithm>
#include <cstdio>
#include <vector>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "validators.h"
#include "common.h"
#include "xent/runtime.h"
#include "xent/train/train.h"

namespace xent::cli::train {
namespace {

struct Args {
  std::string model;
  DataArgs data;
  int threads = 0;
  int top_k = 1;
  bool json = false;
};

// Images whose true class is among the k largest logits (ties broken toward the true class:
// a hit when fewer than k classes score strictly higher), computed in batches.
std::int64_t top_k_hits(const SoftmaxModel& m, const LabeledImages& test, int k, int threads) {
  const std::int64_t C = m.classes, D = test.features(), batch = 1024;
  std::vector<float> logits(static_cast<std::size_t>(batch * C));
  std::int64_t hits = 0;
  for (std::int64_t i0 = 0; i0 < test.n; i0 += batch) {
    const std::int64_t b = std::min(batch, test.n - i0);
    throw_if_error(test.floats ? compute_logits(m, test.values.data() + i0 * D, b, threads, logits.data())
                               : compute_logits(m, test.pixels.data() + i0 * D, b, threads, logits.data()));
    for (std::int64_t r = 0; r < b; ++r) {
      const float* z = logits.data() + r * C;
      const std::int64_t y = test.labels[static_cast<std::size_t>(i0 + r)];
      if (y < 0 || y >= C) continue;
      std::int64_t above = 0;
      for (std::int64_t c = 0; c < C; ++c) above += z[c] > z[y] ? 1 : 0;
      hits += above < k ? 1 : 0;
    }
  }
  return hits;
}

void run(const Args& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  Result<SoftmaxModel> m = load_model(a.model);
  if (!m.ok()) throw InputError(m.status().message());
  LoadedData d = load_data(a.data, num_threads(), false);
  if (!d.cache_note.empty()) std::fprintf(stderr, "xent evaluate: %s\n", d.cache_note.c_str());
  if (!d.test_names.empty()) relabel_to_classes(&d.test, d.test_names, m->class_names, d.paths.test_labels);
  if (d.test.features() != m->features)
    throw InputError(fmt::format("{} has rows of {} x {} = {} {}, the model {} expects {}", d.paths.test_images,
                                 d.test.height, d.test.width, d.test.features(), d.test.floats ? "features" : "pixels",
                                 a.model, m->features));
  Evaluation ev;
  throw_if_error(evaluate_model(*m, d.test, num_threads(), &ev), d.paths.test_labels);
  const std::int64_t C = m->classes;
  const bool want_top_k = a.top_k > 1;
  const std::int64_t top_hits = want_top_k ? top_k_hits(*m, d.test, a.top_k, num_threads()) : ev.correct;
  const double top_acc = ev.n ? static_cast<double>(top_hits) / static_cast<double>(ev.n) : 0.0;
  auto row_total = [&](std::int64_t t) {
    std::int64_t s = 0;
    for (std::int64_t p = 0; p < C; ++p) s += ev.confusion[static_cast<std::size_t>(t * C + p)];
    return s;
  };
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model;
    j["images"] = d.paths.test_images;
    j["n"] = ev.n;
    j["correct"] = ev.correct;
    j["accuracy"] = ev.accuracy;
    if (want_top_k) {
      j["top_k"] = a.top_k;
      j["top_k_correct"] = top_hits;
      j["top_k_accuracy"] = top_acc;
    }
    nlohmann::json per = nlohmann::json::array();
    for (std::int64_t c = 0; c < C; ++c) {
      const std::int64_t n = row_total(c), ok = ev.confusion[static_cast<std::size_t>(c * C + c)];
      per.push_back({{"class", c}, {"name", m->class_names[static_cast<std::size_t>(c)]}, {"n", n}, {"correct", ok},
                     {"accuracy", n ? nlohmann::json(static_cast<double>(ok) / static_cast<double>(n)) : nlohmann::json(nullptr)}});
    }
    j["per_class"] = per;
    nlohmann::json cm = nlohmann::json::array();
    for (std::int64_t t = 0; t < C; ++t)
      cm.push_back(std::vector<std::int64_t>(ev.confusion.begin() + t * C, ev.confusion.begin() + (t + 1) * C));
    j["confusion"] = cm;
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("model %s (%lld x %lld inputs, %lld classes) on %s\n", a.model.c_str(), static_cast<long long>(m->height),
              static_cast<long long>(m->width), static_cast<long long>(C), d.paths.test_images.c_str());
  std::printf("accuracy %.4f (%lld of %lld)\n", ev.accuracy, static_cast<long long>(ev.correct), static_cast<long long>(ev.n));
  if (want_top_k)
    std::printf("top-%d accuracy %.4f (%lld of %lld: the true class among the %d most probable)\n", a.top_k, top_acc,
                static_cast<long long>(top_hits), static_cast<long long>(ev.n), a.top_k);
  std::printf("\n");
  std::size_t w = 5;
  for (const auto& n : m->class_names) w = std::max(w, n.size());
  std::printf("per-class accuracy\n");
  for (std::int64_t c = 0; c < C; ++c) {
    const std::int64_t n = row_total(c), ok = ev.confusion[static_cast<std::size_t>(c * C + c)];
    std::printf("  %3lld %-*s  %s  (%lld of %lld)\n", static_cast<long long>(c), static_cast<int>(w),
                m->class_names[static_cast<std::size_t>(c)].c_str(),
                n ? fmt::format("{:.4f}", static_cast<double>(ok) / static_cast<double>(n)).c_str() : "   n/a",
                static_cast<long long>(ok), static_cast<long long>(n));
  }
  std::printf("\nconfusion matrix (rows: true class, columns: predicted class)\n  %*s", static_cast<int>(w) + 4, "");
  int cw = 4;
  for (auto v : ev.confusion) cw = std::max(cw, static_cast<int>(std::to_string(v).size()) + 1);
  for (std::int64_t p = 0; p < C; ++p) std::printf("%*lld", cw, static_cast<long long>(p));
  std::printf("\n");
  for (std::int64_t t = 0; t < C; ++t) {
    std::printf("  %3lld %-*s", static_cast<long long>(t), static_cast<int>(w), m->class_names[static_cast<std::size_t>(t)].c_str());
    for (std::int64_t p = 0; p < C; ++p) std::printf("%*lld", cw, static_cast<long long>(ev.confusion[static_cast<std::size_t>(t * C + p)]));
    std::printf("\n");
  }
}

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand(
      "evaluate", "Accuracy, per-class accuracy and confusion matrix of a trained model on IDX images or .npy/CSV features");
  app->add_option("--model", a->model, "Model file written by `xent train`")->required()->type_name("FILE");
  add_data_options(app, &a->data, false);
  app->add_option("--threads", a->threads, "Worker threads (default: all cores)")->type_name("N")->check(at_least(1));
  app->add_option("--top-k", a->top_k, "Also report top-K accuracy: the true class among the K most probable (default 1)")
      ->type_name("K")
      ->check(at_least(1));
  app->add_flag("--json", a->json, "Print JSON instead of text");
  app->footer("\nExamples:\n  xent evaluate --model out/model.safetensors --data ../shared/data/fashion-mnist --top-k 3\n"
              "  xent evaluate --model m.safetensors --test-images imgs.idx3-ubyte --test-labels labels.idx1-ubyte --json\n"
              "  xent evaluate --model m.safetensors --test test.csv --label-column species\n"
              "  xent evaluate --model m.safetensors --test Xt.npy --test-labels yt.npy\n");
  app->callback([a] { run(*a); });
}

}  // namespace

XENT_REGISTER_COMMAND(61, setup);

}  // namespace xent::cli::train
