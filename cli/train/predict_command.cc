// predict_command.cc: `xent predict`: the most probable classes of one image of an IDX file,
// with their probabilities (text, or --json), the true label when a labels file is found or
// given, and the image itself on request (terminal blocks with --show, a PNG with --png).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "common.h"
#include "io/atomic_file.h"
#include "train/plots.h"
#include "validators.h"
#include "xent/io/idx.h"
#include "xent/softmax.h"
#include "xent/train/train.h"

namespace xent::cli::train {
namespace {

struct Args {
  std::string model, images, labels, png;
  std::int64_t index = 0;
  int top = 3;
  bool json = false, show = false;
};

// The labels file beside an images file, by the MNIST naming ("t10k-images-idx3-ubyte.gz" ->
// "t10k-labels-idx1-ubyte.gz"), if it exists; else "".
std::string labels_beside(const std::string& images) {
  std::string l = images;
  const auto pos = l.rfind("images-idx3");
  if (pos == std::string::npos) return "";
  l.replace(pos, 11, "labels-idx1");
  return std::filesystem::exists(l) ? l : "";
}

// The true label of image `index`, or -1 when no labels file is given or found.
std::int64_t true_label(const Args& a, std::int64_t n, std::string* used) {
  *used = !a.labels.empty() ? a.labels : labels_beside(a.images);
  if (used->empty()) return -1;
  Result<IdxArray> l = read_idx_file(*used);
  if (!l.ok()) throw InputError(l.status().message());
  if (l->type != 0x08 || l->dims.size() != 1 || l->dims[0] != n)
    throw InputError(fmt::format("{}: expected {} unsigned-byte labels (IDX magic 2049)", *used, n));
  return l->payload.data()[a.index];
}

// The image in the terminal: two characters per pixel, darker characters for brighter pixels
// (Fashion-MNIST draws the object bright on black).
void show_image(const std::uint8_t* px, std::int64_t h, std::int64_t w) {
  static const char* kRamp[] = {"  ", "..", "::", "--", "==", "++", "**", "##", "%%", "@@"};
  for (std::int64_t y = 0; y < h; ++y) {
    std::string line = "  ";
    for (std::int64_t x = 0; x < w; ++x) line += kRamp[px[y * w + x] * 10 / 256];
    std::printf("%s\n", line.c_str());
  }
}

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
  if (!a.png.empty()) throw_if_error(io::check_output_path(a.png), "--png");
  std::string labels_path;
  const std::int64_t label = true_label(a, n, &labels_path);
  const std::uint8_t* pixels = img->payload.data() + a.index * D;
  const std::int64_t H = img->dims.size() == 3 ? img->dims[1] : 1, W = img->dims.size() == 3 ? img->dims[2] : D;
  auto name_of = [&](std::int64_t c) {
    return c >= 0 && c < m->classes ? m->class_names[static_cast<std::size_t>(c)] : std::to_string(c);
  };
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
    if (label >= 0) {
      j["label"] = label;
      j["label_name"] = name_of(label);
      j["correct"] = label == order[0];
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("image %lld of %s:\n", static_cast<long long>(a.index), a.images.c_str());
  if (a.show) show_image(pixels, H, W);
  std::size_t w = 0;
  for (std::size_t i = 0; i < k; ++i) w = std::max(w, m->class_names[static_cast<std::size_t>(order[i])].size());
  for (std::size_t i = 0; i < k; ++i)
    std::printf("  %3lld %-*s  %7.3f%%\n", static_cast<long long>(order[i]), static_cast<int>(w),
                m->class_names[static_cast<std::size_t>(order[i])].c_str(), 100.0 * p[static_cast<std::size_t>(order[i])]);
  if (label >= 0) {
    std::printf("true label: %lld %s (%s; from %s)\n", static_cast<long long>(label), name_of(label).c_str(),
                label == order[0] ? "predicted correctly" : "mispredicted", labels_path.c_str());
  }
  if (!a.png.empty()) {
    Result<std::string> png = xent::train::render_image_png(pixels, H, W, 8);
    throw_if_error(png.status(), "--png");
    throw_if_error(io::write_file_atomic(a.png, png.value()), "--png");
    std::printf("wrote %s\n", a.png.c_str());
  }
}

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand("predict", "Most probable classes of one image, with probabilities");
  app->add_option("--model", a->model, "Model file written by `xent train`")->required()->type_name("FILE");
  app->add_option("--images", a->images, "IDX images file (gzip'd or plain)")->required()->type_name("FILE");
  app->add_option("--index", a->index, "Which image (0-based, default 0)")->type_name("I");
  app->add_option("--top", a->top, "How many classes to show (default 3)")->type_name("K")->check(at_least(1));
  app->add_option("--labels", a->labels,
                  "IDX labels file, to print the true label (default: the labels file beside --images, if any)")
      ->type_name("FILE");
  app->add_flag("--show", a->show, "Draw the image in the terminal (characters, two per pixel)");
  app->add_option("--png", a->png, "Also write the image, 8x enlarged, as PNG")->type_name("FILE");
  app->add_flag("--json", a->json, "Print JSON instead of text");
  app->footer(
      "\nExample:\n  xent predict --model out/model.safetensors --images ../shared/data/fashion-mnist/t10k-images-idx3-ubyte.gz "
      "--index 7 --show\n");
  app->callback([a] { run(*a); });
}

}  // namespace

XENT_REGISTER_COMMAND(62, setup);

}  // namespace xent::cli::train
