// predict_command.cc: `xent predict`: the most probable classes of one image of an IDX file, or
// one row of a feature file (.npy, CSV), with their probabilities (text, or --json), the true label
// when a labels file (or CSV label column) is found or given, and an image itself on request
// (terminal blocks with --show, a PNG with --png). The model's normalization is applied.
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
  std::string model, images, labels, png, features, label_column;
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

// The row to predict and what goes with it.
struct Input {
  std::string source;
  std::int64_t n = 0, H = 1, W = 1;
  const std::uint8_t* pixels = nullptr;  // the row's bytes (images)
  const float* features = nullptr;       // or its floats
  std::int64_t label = -1;
  std::string labels_path;
};

void run_on(const Args& a, const SoftmaxModel& model, const Input& in);

// --features FILE.npy|FILE.csv: one row of a feature file.
void run_features(const Args& a, const SoftmaxModel& m) {
  if (!a.images.empty()) throw UsageError("give --images (IDX) or --features (.npy/.csv), not both");
  std::vector<std::string> names;  // a CSV label column of class names
  LabeledImages set = load_feature_set(a.features, a.labels, a.label_column, "features", false, &names);
  if (!names.empty()) relabel_to_classes(&set, names, m.class_names, a.features);
  if (set.features() != m.features)
    throw InputError(fmt::format("{}: rows have {} {}, the model {} expects {}", a.features, set.features(),
                                 set.floats ? "features" : "pixels", a.model, m.features));
  if ((m.normalization == Normalization::kPixels) == set.floats)
    throw InputError(fmt::format("{} holds {}, but the model {} takes {} (normalization {})", a.features,
                                 set.floats ? "float features" : "uint8 images", a.model,
                                 set.floats ? "unsigned-byte pixels" : "float features", normalization_name(m.normalization)));
  if (a.index < 0 || a.index >= set.n)
    throw InputError(fmt::format("--index {} is outside [0, {}) for {}", a.index, set.n, a.features));
  if (set.floats && (a.show || !a.png.empty()))
    throw UsageError(fmt::format("--show and --png draw images; {} holds float features", a.features));
  Input in;
  in.source = a.features;
  in.n = set.n, in.H = set.height, in.W = set.width;
  const std::int64_t D = set.features();
  if (set.floats) in.features = set.values.data() + a.index * D;
  else in.pixels = set.pixels.data() + a.index * D;
  if (!set.labels.empty()) {
    in.label = set.labels[static_cast<std::size_t>(a.index)];
    in.labels_path = a.labels.empty() ? a.features : a.labels;
  }
  run_on(a, m, in);
}

bool is_png(const std::string& p) {
  return p.size() >= 4 && (p.compare(p.size() - 4, 4, ".png") == 0 || p.compare(p.size() - 4, 4, ".PNG") == 0);
}

// --images FILE.png: one picture, as grayscale bytes of the model's input shape.
void run_png(const Args& a, const SoftmaxModel& m) {
  if (!a.labels.empty()) throw UsageError("--labels goes with IDX images or .npy features, not a PNG");
  if (a.index != 0) throw UsageError(fmt::format("--index {}: a PNG file holds one image (index 0)", a.index));
  Result<xent::train::GrayImage> g = xent::train::read_png_gray(a.images);
  if (!g.ok()) throw InputError(g.status().message());
  if (g->height * g->width != m.features || (m.height > 1 && (g->height != m.height || g->width != m.width)))
    throw InputError(fmt::format("{}: a {} x {} image, the model {} expects {} x {} (resize it; bright on dark, as in MNIST)",
                                 a.images, g->height, g->width, a.model, m.height, m.width));
  Input in;
  in.source = a.images;
  in.n = 1, in.H = g->height, in.W = g->width;
  in.pixels = g->pixels.data();
  run_on(a, m, in);
}

void run(const Args& a) {
  Result<SoftmaxModel> m = load_model(a.model);
  if (!m.ok()) throw InputError(m.status().message());
  if (!a.png.empty()) throw_if_error(io::check_output_path(a.png), "--png");
  if (!a.features.empty()) return run_features(a, *m);
  if (a.images.empty()) throw UsageError("give --images FILE (IDX images) or --features FILE (.npy or .csv rows)");
  if (!a.label_column.empty()) throw UsageError("--label-column is for --features FILE.csv");
  if (m->normalization != Normalization::kPixels)
    throw InputError(fmt::format("the model {} takes float features (normalization {}); give them with --features FILE.npy|.csv",
                                 a.model, normalization_name(m->normalization)));
  if (is_png(a.images)) return run_png(a, *m);
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
  Input in;
  in.source = a.images;
  in.n = n;
  in.label = true_label(a, n, &in.labels_path);
  in.pixels = img->payload.data() + a.index * D;
  in.H = img->dims.size() == 3 ? img->dims[1] : 1, in.W = img->dims.size() == 3 ? img->dims[2] : D;
  run_on(a, *m, in);
}

void run_on(const Args& a, const SoftmaxModel& model, const Input& in) {
  const SoftmaxModel* m = &model;
  const std::int64_t label = in.label, H = in.H, W = in.W;
  const std::uint8_t* pixels = in.pixels;
  const std::string& labels_path = in.labels_path;
  auto name_of = [&](std::int64_t c) {
    return c >= 0 && c < m->classes ? m->class_names[static_cast<std::size_t>(c)] : std::to_string(c);
  };
  const std::int64_t C = m->classes;
  std::vector<float> p(static_cast<std::size_t>(C));
  throw_if_error(in.features ? compute_logits(*m, in.features, 1, 1, p.data()) : compute_logits(*m, pixels, 1, 1, p.data()));
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
    nlohmann::json j = {{in.features ? "features" : "images", in.source}, {"index", a.index}, {"predicted", order[0]},
                        {"name", m->class_names[static_cast<std::size_t>(order[0])]}, {"top", top}};
    if (label >= 0) {
      j["label"] = label;
      j["label_name"] = name_of(label);
      j["correct"] = label == order[0];
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("%s %lld of %s:\n", in.features ? "row" : "image", static_cast<long long>(a.index), in.source.c_str());
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
  CLI::App* app = root.add_subcommand("predict", "Most probable classes of one image or feature row, with probabilities");
  app->add_option("--model", a->model, "Model file written by `xent train`")->required()->type_name("FILE");
  app->add_option("--images", a->images,
                  "IDX images file (gzip'd or plain), or one FILE.png (grayscale of the model's input size, e.g. 28 x 28, "
                  "bright on dark)")
      ->type_name("FILE");
  app->add_option("--features", a->features,
                  "Instead of --images: rows of FILE.npy (float32/float64 (N, ...) features, or uint8 images) or FILE.csv "
                  "(a header row; its label column, if any, gives the true label)")
      ->type_name("FILE");
  app->add_option("--label-column", a->label_column,
                  "--features FILE.csv: the label column by name or 0-based index (default: a column named label, if any; "
                  "without one every column is a feature)")
      ->type_name("NAME|INDEX");
  app->add_option("--index", a->index, "Which image (0-based, default 0)")->type_name("I");
  app->add_option("--top", a->top, "How many classes to show (default 3)")->type_name("K")->check(at_least(1));
  app->add_option("--labels", a->labels,
                  "Labels file, to print the true label: IDX with --images (default: the labels file beside --images, "
                  "if any), an integer .npy with --features FILE.npy")
      ->type_name("FILE");
  app->add_flag("--show", a->show, "Draw the image in the terminal (characters, two per pixel)");
  app->add_option("--png", a->png, "Also write the image, 8x enlarged, as PNG")->type_name("FILE");
  app->add_flag("--json", a->json, "Print JSON instead of text");
  app->footer(
      "\nExample:\n  xent predict --model out/model.safetensors --images ../shared/data/fashion-mnist/t10k-images-idx3-ubyte.gz "
      "--index 7 --show\n"
      "  xent predict --model out/model.safetensors --features Xt.npy --labels yt.npy --index 3 --json\n"
      "  xent predict --model out/model.safetensors --images my-shoe.png\n");
  app->callback([a] { run(*a); });
}

}  // namespace

XENT_REGISTER_COMMAND(62, setup);

}  // namespace xent::cli::train
