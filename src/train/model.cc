// model.cc: the softmax-regression model file (include/xent/train/model.h): W, b and metadata in
// a safetensors file (src/io/safetensors.cc parses and writes the container). Not a general model
// format.
#include "xent/train/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "guarded.h"
#include "io/atomic_file.h"
#include "train/inputs.h"
#include "xent/io/file.h"
#include "xent/io/safetensors.h"

namespace xent::train {
namespace {

// "[2, 3]": a shape as messages print it.
std::string shape_string(const std::vector<std::int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

using json = nlohmann::json;

}  // namespace

static std::vector<std::string> default_class_names_unguarded(std::int64_t classes, bool fashion) {
  if (fashion && classes == 10) {
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  }
  std::vector<std::string> names;
  for (std::int64_t c = 0; c < classes; ++c) names.push_back(std::to_string(c));
  return names;
}

// The metadata value of models written before normalizations were recorded (and of every byte model
// since, so that older readers still load them).
constexpr const char* kPixelsMetadata = "x / 255 (unsigned-byte pixels scaled to [0, 1])";

const char* normalization_name(Normalization n) noexcept {
  switch (n) {
    case Normalization::kNone: return "none";
    case Normalization::kStandardize: return "standardize";
    case Normalization::kPixels: break;
  }
  return "pixels/255";
}

static void set_normalization_unguarded(SoftmaxModel* m, Normalization kind, const float* x, std::int64_t n) {
  m->normalization = kind;
  m->input_mean.clear(), m->input_std.clear();
  if (kind != Normalization::kStandardize) return;
  const std::int64_t D = m->features;
  std::vector<double> mean(static_cast<std::size_t>(D), 0.0), var(static_cast<std::size_t>(D), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t k = 0; k < D; ++k) mean[static_cast<std::size_t>(k)] += x[i * D + k];
  for (double& v : mean) v /= static_cast<double>(std::max<std::int64_t>(n, 1));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t k = 0; k < D; ++k) {
      const double d = x[i * D + k] - mean[static_cast<std::size_t>(k)];
      var[static_cast<std::size_t>(k)] += d * d;
    }
  m->input_mean.resize(static_cast<std::size_t>(D));
  m->input_std.resize(static_cast<std::size_t>(D));
  for (std::size_t k = 0; k < static_cast<std::size_t>(D); ++k) {
    m->input_mean[k] = static_cast<float>(mean[k]);
    const float sd = static_cast<float>(std::sqrt(var[k] / static_cast<double>(std::max<std::int64_t>(n, 1))));
    m->input_std[k] = std::isnormal(sd) ? sd : 1.0f;
  }
}

void normalize_features(const SoftmaxModel& m, const float* in, float* out) noexcept {
  const std::int64_t D = m.features;
  if (m.normalization != Normalization::kStandardize) {
    std::memcpy(out, in, static_cast<std::size_t>(D) * sizeof(float));
    return;
  }
  const float* mu = m.input_mean.data();
  const float* sd = m.input_std.data();
  for (std::int64_t k = 0; k < D; ++k) out[k] = (in[k] - mu[k]) / sd[k];
}

void append_normalization(const SoftmaxModel& m, std::map<std::string, std::string>* meta,
                          std::vector<io::SafetensorsTensorRef>* tensors) {
  (*meta)["normalization"] = m.normalization == Normalization::kPixels ? kPixelsMetadata : normalization_name(m.normalization);
  if (m.normalization != Normalization::kStandardize) return;
  tensors->push_back({"input_mean", "F32", {m.features}, m.input_mean.data(), m.input_mean.size() * sizeof(float)});
  tensors->push_back({"input_std", "F32", {m.features}, m.input_std.data(), m.input_std.size() * sizeof(float)});
}

static Result<std::string> serialize_model_unguarded(const SoftmaxModel& m) {
  std::map<std::string, std::string> meta = m.info;
  meta["format"] = "xent.softmax_regression";
  meta["format_version"] = "2";
  meta["class_names"] = json(m.class_names).dump();
  meta["input_shape"] = json(std::vector<std::int64_t>{m.height, m.width}).dump();
  // PyTorch's nn.Linear layout: weight (C, D), bias (C); logits = x weight^T + bias.
  std::vector<float> wt(m.weight.size());
  for (std::int64_t k = 0; k < m.features; ++k)
    for (std::int64_t c = 0; c < m.classes; ++c)
      wt[static_cast<std::size_t>(c * m.features + k)] = m.weight[static_cast<std::size_t>(k * m.classes + c)];
  std::vector<io::SafetensorsTensorRef> tensors = {
      {"weight", "F32", {m.classes, m.features}, wt.data(), wt.size() * sizeof(float)},
      {"bias", "F32", {m.classes}, m.bias.data(), m.bias.size() * sizeof(float)}};
  append_normalization(m, &meta, &tensors);
  return io::serialize_safetensors(meta, tensors);
}

static Result<SoftmaxModel> parse_model_unguarded(const std::uint8_t* bytes, std::size_t n, std::string_view name) {
  auto st = io::parse_safetensors(bytes, n, name);
  if (!st.ok()) return st.status();
  // Format 2 (nn.Linear's layout): "weight" [C, D] and "bias" [C]. Format 1 and checkpoints:
  // "W" [D, C] and "b" [C].
  const bool torch_layout = st->find("weight") != nullptr;
  const io::SafetensorsEntry* w = st->find(torch_layout ? "weight" : "W");
  const io::SafetensorsEntry* b = st->find(torch_layout ? "bias" : "b");
  if (!w || !b)
    return data_loss(fmt::format("{}: not a xent model: expected tensors \"weight\" and \"bias\" (or \"W\" and \"b\")", name));
  const char* wn = torch_layout ? "weight" : "W";
  const char* bn = torch_layout ? "bias" : "b";
  const std::size_t cdim = torch_layout ? 0 : 1;
  if (w->dtype != "F32" || w->shape.size() != 2 || w->shape[1 - cdim] < 1 || w->shape[cdim] < 2)
    return data_loss(fmt::format("{}: \"{}\" must be F32 {} with D >= 1, C >= 2, found {} {}", name, wn,
                                 torch_layout ? "[C, D]" : "[D, C]", w->dtype, shape_string(w->shape)));
  if (b->dtype != "F32" || b->shape.size() != 1 || b->shape[0] != w->shape[cdim])
    return data_loss(fmt::format("{}: \"{}\" must be F32 [{}] to match {} {}, found {} {}", name, bn, w->shape[cdim], wn,
                                 shape_string(w->shape), b->dtype, shape_string(b->shape)));
  SoftmaxModel m;
  m.features = w->shape[1 - cdim];
  m.classes = w->shape[cdim];
  m.weight.resize(w->size / 4);
  m.bias.resize(b->size / 4);
  std::memcpy(m.weight.data(), bytes + w->begin, w->size);
  std::memcpy(m.bias.data(), bytes + b->begin, b->size);
  if (torch_layout) {  // to the trainer's D x C
    std::vector<float> t(m.weight.size());
    for (std::int64_t c = 0; c < m.classes; ++c)
      for (std::int64_t k = 0; k < m.features; ++k)
        t[static_cast<std::size_t>(k * m.classes + c)] = m.weight[static_cast<std::size_t>(c * m.features + k)];
    m.weight = std::move(t);
  }
  m.info = st->metadata;
  m.height = 1;
  m.width = m.features;
  if (auto it = m.info.find("input_shape"); it != m.info.end()) {
    json s = json::parse(it->second, nullptr, false);
    // H and W are each at least 1 and their product must not wrap (a fuzzer found [3, 12297829382473034411],
    // whose product is 1 modulo 2^64).
    auto dim_ok = [](const json& v) { return v.is_number_unsigned() && v.get<std::uint64_t>() >= 1; };
    std::uint64_t hw = 0;
    if (s.is_discarded() || !s.is_array() || s.size() != 2 || !dim_ok(s[0]) || !dim_ok(s[1]) ||
        __builtin_mul_overflow(s[0].get<std::uint64_t>(), s[1].get<std::uint64_t>(), &hw) ||
        hw != static_cast<std::uint64_t>(m.features)) {
      return data_loss(fmt::format("{}: metadata input_shape must be [H, W] with H * W = {}, found {}", name,
                                   m.features, it->second));
    }
    m.height = s[0].get<std::int64_t>();
    m.width = s[1].get<std::int64_t>();
  }
  m.class_names = default_class_names_unguarded(m.classes, false);
  if (auto it = m.info.find("class_names"); it != m.info.end()) {
    json s = json::parse(it->second, nullptr, false);
    if (s.is_discarded() || !s.is_array() || s.size() != static_cast<std::size_t>(m.classes) ||
        !std::all_of(s.begin(), s.end(), [](const json& x) { return x.is_string(); })) {
      return data_loss(fmt::format("{}: metadata class_names must be a JSON array of {} strings", name, m.classes));
    }
    m.class_names = s.get<std::vector<std::string>>();
  }
  // No "normalization" (the first models) or the pixel text: bytes / 255.
  if (auto it = m.info.find("normalization"); it != m.info.end() && it->second != kPixelsMetadata) {
    if (it->second == "none") {
      m.normalization = Normalization::kNone;
    } else if (it->second == "standardize") {
      m.normalization = Normalization::kStandardize;
      for (const char* t : {"input_mean", "input_std"}) {
        const io::SafetensorsEntry* e = st->find(t);
        if (!e || e->dtype != "F32" || e->shape.size() != 1 || e->shape[0] != m.features)
          return data_loss(fmt::format("{}: a standardizing model needs tensor \"{}\" F32 [{}], found {}", name, t,
                                       m.features, e ? e->dtype + " " + shape_string(e->shape) : "none"));
        std::vector<float>& v = t[6] == 'm' ? m.input_mean : m.input_std;
        v.resize(static_cast<std::size_t>(m.features));
        std::memcpy(v.data(), bytes + e->begin, e->size);
      }
      for (std::size_t k = 0; k < m.input_std.size(); ++k)
        if (!std::isfinite(m.input_mean[k]) || !std::isnormal(m.input_std[k]) || m.input_std[k] < 0)
          return data_loss(fmt::format("{}: input_mean/input_std [{}] must be finite with std > 0, found {} and {}", name,
                                       k, m.input_mean[k], m.input_std[k]));
    } else {
      return data_loss(fmt::format("{}: metadata normalization must be \"{}\", \"none\" or \"standardize\", found \"{}\"",
                                   name, kPixelsMetadata, it->second));
    }
  }
  for (const char* k : {"format", "format_version", "class_names", "input_shape", "normalization"}) m.info.erase(k);
  return m;
}

static Status save_model_unguarded(const std::string& path, const SoftmaxModel& model) {
  auto bytes = serialize_model_unguarded(model);
  if (!bytes.ok()) return bytes.status();
  return io::write_file_atomic(path, *bytes);
}

static Result<SoftmaxModel> load_model_unguarded(const std::string& path) {
  auto bytes = io::read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  return parse_model(bytes->data(), bytes->size(), path);
}

// ---- the public entry points: nothing they throw crosses the boundary (guarded.h) ----

Result<std::vector<std::string>> default_class_names(std::int64_t classes, bool fashion) noexcept {
  return xent::detail::guarded("default_class_names", [&]() -> Result<std::vector<std::string>> {
    return Result<std::vector<std::string>>(default_class_names_unguarded(classes, fashion));
  });
}

Result<std::string> serialize_model(const SoftmaxModel& m) noexcept {
  return xent::detail::guarded("serialize_model", [&]() -> Result<std::string> {
    return serialize_model_unguarded(m);
  });
}

Result<SoftmaxModel> parse_model(const std::uint8_t* bytes, std::size_t n, std::string_view name) noexcept {
  return xent::detail::guarded("parse_model", [&]() -> Result<SoftmaxModel> {
    return parse_model_unguarded(bytes, n, name);
  });
}

Status save_model(const std::string& path, const SoftmaxModel& model) noexcept {
  return xent::detail::guarded("save_model", [&]() -> Status {
    return save_model_unguarded(path, model);
  });
}

Result<SoftmaxModel> load_model(const std::string& path) noexcept {
  return xent::detail::guarded("load_model", [&]() -> Result<SoftmaxModel> {
    return load_model_unguarded(path);
  });
}

// ---- the public entry points: nothing they throw crosses the boundary (guarded.h) ----

Status set_normalization(SoftmaxModel* m, Normalization kind, const float* x, std::int64_t n) noexcept {
  return xent::detail::guarded("set_normalization", [&]() -> Status {
    set_normalization_unguarded(m, kind, x, n);
    return ok_status();
  });
}

}  // namespace xent::train
