// predict_command.cc: `xent predict`: the most probable classes of one image of an IDX file,
// with their probabilities (text, or --json).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <numeric>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "validators.h"
#include "xent/idx.h"
#include "xent/softmax.h"
#include "xent/train.h"

namespace xent::cli::train {
namespace {

struct Args {
  std::string model, images;
  std::int64_t index = 0;
  int top = 3;
  bool json = false;
};

void run(const Args& a) {
  Result<SoftmaxModel> m = load_model(a.model);
  if (!m.ok()) throw InputError(m.status().message());
  Result<IdxArray> img = read_idx_file(a.images);
  if (!img.ok()) throw InputError(img.status().message());
  if (img->type != 0x08 || img->dims.size() < 2 || img->dims.size() > 3)
    throw InputError(fmt::format("{}: expected unsigned-byte images (IDX magic 2051 or 2050), found type 0x{:02x} with {} dims",
                                 a.images, img->type, img->dims.size()));
  const std::int64_t n = img->dims[0];
  std::int64_t D = 1;
  for (std::size_t k = 1; k < img->dims.size(); ++k) D *= img->dims[k];
  if (D != m->features)
    throw InputError(fmt::format("{}: images have {} pixels, the model {} expects {}", a.images, D, a.model, m->features));
  if (a.index < 0 || a.index >= n)
    throw InputError(fmt::format("--index {} is outside [0, {}) for {}", a.index, n, a.images));
  const std::int64_t C = m->classes;
  std::vector<float> p(static_cast<std::size_t>(C));
  throw_if_error(compute_logits(*m, img->payload.data() + a.index * D, 1, 1, p.data()));
  throw_if_error(softmax_forward(ConstTensorView(p.data(), {1, C}), 1, TensorView(p.data(), {1, C})));
  std::vector<std::int64_t> order(static_cast<std::size_t>(C));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto x, auto y) { return p[static_cast<std::size_t>(x)] > p[static_cast<std::size_t>(y)]; });
  const auto k = static_cast<std::size_t>(std::clamp<std::int64_t>(a.top, 1, C));
  if (a.json) {
    nlohmann::json top = nlohmann::json::array();
    for (std::size_t i = 0; i < k; ++i)
      top.push_back({{"class", order[i]}, {"name", m->class_names[static_cast<std::size_t>(order[i])]},
                     {"probability", p[static_cast<std::size_t>(order[i])]}});
    nlohmann::json j = {{"images", a.images}, {"index", a.index}, {"predicted", order[0]},
                        {"name", m->class_names[static_cast<std::size_t>(order[0])]}, {"top", top}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("image %lld of %s:\n", static_cast<long long>(a.index), a.images.c_str());
  std::size_t w = 0;
  for (std::size_t i = 0; i < k; ++i) w = std::max(w, m->class_names[static_cast<std::size_t>(order[i])].size());
  for (std::size_t i = 0; i < k; ++i)
    std::printf("  %3lld %-*s  %7.3f%%\n", static_cast<long long>(order[i]), static_cast<int>(w),
                m->class_names[static_cast<std::size_t>(order[i])].c_str(), 100.0 * p[static_cast<std::size_t>(order[i])]);
}

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand("predict", "Most probable classes of one image, with probabilities");
  app->add_option("--model", a->model, "Model file written by `xent train`")->required()->type_name("FILE");
  app->add_option("--images", a->images, "IDX images file (gzip'd or plain)")->required()->type_name("FILE");
  app->add_option("--index", a->index, "Which image (0-based, default 0)")->type_name("I");
  app->add_option("--top", a->top, "How many classes to show (default 3)")->type_name("K")->check(at_least(1));
  app->add_flag("--json", a->json, "Print JSON instead of text");
  app->footer("\nExample:\n  xent predict --model out/model.safetensors --images data/fashion-mnist/t10k-images-idx3-ubyte.gz --index 7\n");
  app->callback([a] { run(*a); });
}

}  // namespace

XENT_REGISTER_COMMAND(62, setup);

}  // namespace xent::cli::train
