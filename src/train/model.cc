// model.cc: safetensors reading/writing and the softmax-regression model file (include/xent/model.h).
// The parser validates everything before trusting it; the writer is deterministic (sorted JSON
// keys, fixed padding) so that the same model gives the same bytes. Not a general tensor store.
#include "xent/model.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "xent/idx.h"

namespace xent {
namespace {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

using json = nlohmann::json;

int dtype_bytes(const std::string& d) {
  static const std::pair<const char*, int> kTable[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  for (const auto& [n, s] : kTable)
    if (d == n) return s;
  return 0;
}

// Depth of [ and { outside strings; hostile headers must not nest deeply (the JSON library
// recurses when it destroys values).
bool nesting_ok(std::string_view s, int max_depth) {
  int depth = 0;
  bool in_str = false, esc = false;
  for (char c : s) {
    if (in_str) {
      if (esc) esc = false;
      else if (c == '\\') esc = true;
      else if (c == '"') in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

std::string shape_str(const std::vector<std::int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

Result<SafetensorsFile> parse_safetensors(const std::uint8_t* bytes, std::size_t n, std::string_view name) {
  if (n < 8) return data_loss(fmt::format("{}: not a safetensors file: expected at least 8 bytes, found {}", name, n));
  std::uint64_t hlen = 0;
  std::memcpy(&hlen, bytes, 8);
  if (hlen > kSafetensorsMaxHeader) {
    return data_loss(fmt::format("{}: safetensors header length {} exceeds the limit of {} bytes", name, hlen,
                                 kSafetensorsMaxHeader));
  }
  if (hlen > n - 8) {
    return data_loss(fmt::format("{}: safetensors header length {} exceeds the {} bytes after the length field "
                                 "(truncated file?)",
                                 name, hlen, n - 8));
  }
  std::string_view text(reinterpret_cast<const char*>(bytes + 8), static_cast<std::size_t>(hlen));
  if (text.empty() || text.front() != '{') {
    return data_loss(fmt::format("{}: safetensors header: expected a JSON object starting with '{{', found {}", name,
                                 text.empty() ? std::string("nothing") : fmt::format("byte 0x{:02x}", text.front())));
  }
  if (!nesting_ok(text, 4)) return data_loss(fmt::format("{}: safetensors header nests deeper than 4 levels", name));
  // Duplicate keys are refused (the JSON library would keep the last one silently).
  std::string duplicate;
  std::vector<std::set<std::string>> keys_at_depth(8);
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start && depth < 8) keys_at_depth[depth + 1].clear();
    if (ev == json::parse_event_t::key && depth < 8 && parsed.is_string()) {
      if (!keys_at_depth[depth].insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json h = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (h.is_discarded() || !h.is_object()) {
    return data_loss(fmt::format("{}: safetensors header is not valid JSON (an object was expected)", name));
  }
  if (!duplicate.empty()) return data_loss(fmt::format("{}: safetensors header repeats the key \"{}\"", name, duplicate));

  const std::uint64_t data_len = n - 8 - hlen;
  const std::size_t data_begin = 8 + static_cast<std::size_t>(hlen);
  SafetensorsFile out;
  struct Range {
    std::uint64_t b, e;
    std::size_t idx;
  };
  std::vector<Range> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) return data_loss(fmt::format("{}: \"__metadata__\" must be an object of strings", name));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          return data_loss(fmt::format("{}: metadata \"{}\" must be a string, found {}", name, m.key(),
                                       m.value().type_name()));
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) {
      return data_loss(fmt::format("{}: tensor \"{}\": {}", name, key, what));
    };
    if (!v.is_object()) return bad(fmt::format("expected an object, found {}", v.type_name()));
    for (auto f = v.begin(); f != v.end(); ++f) {
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        return bad(fmt::format("unexpected field \"{}\" (expected dtype, shape, data_offsets)", f.key()));
    }
    if (!v.contains("dtype") || !v["dtype"].is_string()) return bad("missing string field \"dtype\"");
    if (!v.contains("shape") || !v["shape"].is_array()) return bad("missing array field \"shape\"");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      return bad("missing field \"data_offsets\" ([begin, end])");
    SafetensorsEntry e;
    e.name = key;
    e.dtype = v["dtype"].get<std::string>();
    const int esize = dtype_bytes(e.dtype);
    if (esize == 0) return bad(fmt::format("unknown dtype \"{}\"", e.dtype));
    if (v["shape"].size() > 8) return bad(fmt::format("rank {} exceeds 8", v["shape"].size()));
    std::uint64_t count = 1;
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned()) return bad(fmt::format("shape entries must be non-negative integers, found {}", d.dump()));
      std::uint64_t x = d.get<std::uint64_t>();
      if (x > (std::uint64_t{1} << 62) || (x != 0 && count > (std::uint64_t{1} << 62) / x))
        return bad(fmt::format("shape {} overflows", v["shape"].dump()));
      count *= x;
      e.shape.push_back(static_cast<std::int64_t>(x));
    }
    const json& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return bad(fmt::format("data_offsets must be two non-negative integers, found {}", off.dump()));
    std::uint64_t b = off[0].get<std::uint64_t>(), en = off[1].get<std::uint64_t>();
    if (b > en || en > data_len)
      return bad(fmt::format("data_offsets [{}, {}] outside the {}-byte data section", b, en, data_len));
    if (en - b != count * static_cast<std::uint64_t>(esize))
      return bad(fmt::format("shape {} of {} needs {} bytes, data_offsets [{}, {}] hold {}", shape_str(e.shape),
                             e.dtype, count * static_cast<std::uint64_t>(esize), b, en, en - b));
    e.begin = data_begin + static_cast<std::size_t>(b);
    e.size = static_cast<std::size_t>(en - b);
    ranges.push_back({b, en, out.tensors.size()});
    out.tensors.push_back(std::move(e));
  }
  // The tensors must tile the data section exactly: no overlap, no hole, nothing after.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.b < b.b || (a.b == b.b && a.e < b.e); });
  std::uint64_t at = 0;
  for (const Range& r : ranges) {
    if (r.b != at) {
      return data_loss(fmt::format("{}: tensor \"{}\" starts at data byte {}, expected {} ({})", name,
                                   out.tensors[r.idx].name, r.b, at, r.b < at ? "overlap" : "hole"));
    }
    at = r.e;
  }
  if (at != data_len) {
    return data_loss(fmt::format("{}: the tensors cover {} data bytes but the file has {} after the header", name, at,
                                 data_len));
  }
  // File order = offset order.
  std::vector<SafetensorsEntry> ordered;
  ordered.reserve(ranges.size());
  for (const Range& r : ranges) ordered.push_back(std::move(out.tensors[r.idx]));
  out.tensors = std::move(ordered);
  return out;
}

std::string serialize_safetensors(const std::map<std::string, std::string>& metadata,
                                  const std::vector<SafetensorsTensorRef>& tensors) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::size_t at = 0;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + t.size}}};
    at += t.size;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const std::uint64_t hlen = header.size();
  std::memcpy(out.data(), &hlen, 8);
  out += header;
  out.reserve(out.size() + at);
  for (const auto& t : tensors) out.append(static_cast<const char*>(t.data), t.size);
  return out;
}

std::vector<std::string> default_class_names(std::int64_t classes, bool fashion) {
  if (fashion && classes == 10) {
    return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  }
  std::vector<std::string> names;
  for (std::int64_t c = 0; c < classes; ++c) names.push_back(std::to_string(c));
  return names;
}

std::string serialize_model(const SoftmaxModel& m) {
  std::map<std::string, std::string> meta = m.info;
  meta["format"] = "xent.softmax_regression";
  meta["format_version"] = "2";
  meta["class_names"] = json(m.class_names).dump();
  meta["input_shape"] = json(std::vector<std::int64_t>{m.height, m.width}).dump();
  meta["normalization"] = "x / 255 (unsigned-byte pixels scaled to [0, 1])";
  // PyTorch's nn.Linear layout: weight (C, D), bias (C); logits = x weight^T + bias.
  std::vector<float> wt(m.weight.size());
  for (std::int64_t k = 0; k < m.features; ++k)
    for (std::int64_t c = 0; c < m.classes; ++c)
      wt[static_cast<std::size_t>(c * m.features + k)] = m.weight[static_cast<std::size_t>(k * m.classes + c)];
  return serialize_safetensors(
      meta, {{"weight", "F32", {m.classes, m.features}, wt.data(), wt.size() * sizeof(float)},
             {"bias", "F32", {m.classes}, m.bias.data(), m.bias.size() * sizeof(float)}});
}

Result<SoftmaxModel> parse_model(const std::uint8_t* bytes, std::size_t n, std::string_view name) {
  auto st = parse_safetensors(bytes, n, name);
  if (!st.ok()) return st.status();
  // Format 2 (nn.Linear's layout): "weight" [C, D] and "bias" [C]. Format 1 and checkpoints:
  // "W" [D, C] and "b" [C].
  const bool torch_layout = st->find("weight") != nullptr;
  const SafetensorsEntry* w = st->find(torch_layout ? "weight" : "W");
  const SafetensorsEntry* b = st->find(torch_layout ? "bias" : "b");
  if (!w || !b)
    return data_loss(fmt::format("{}: not a xent model: expected tensors \"weight\" and \"bias\" (or \"W\" and \"b\")", name));
  const char* wn = torch_layout ? "weight" : "W";
  const char* bn = torch_layout ? "bias" : "b";
  const std::size_t cdim = torch_layout ? 0 : 1;
  if (w->dtype != "F32" || w->shape.size() != 2 || w->shape[1 - cdim] < 1 || w->shape[cdim] < 2)
    return data_loss(fmt::format("{}: \"{}\" must be F32 {} with D >= 1, C >= 2, found {} {}", name, wn,
                                 torch_layout ? "[C, D]" : "[D, C]", w->dtype, shape_str(w->shape)));
  if (b->dtype != "F32" || b->shape.size() != 1 || b->shape[0] != w->shape[cdim])
    return data_loss(fmt::format("{}: \"{}\" must be F32 [{}] to match {} {}, found {} {}", name, bn, w->shape[cdim], wn,
                                 shape_str(w->shape), b->dtype, shape_str(b->shape)));
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
  m.class_names = default_class_names(m.classes, false);
  if (auto it = m.info.find("class_names"); it != m.info.end()) {
    json s = json::parse(it->second, nullptr, false);
    if (s.is_discarded() || !s.is_array() || s.size() != static_cast<std::size_t>(m.classes) ||
        !std::all_of(s.begin(), s.end(), [](const json& x) { return x.is_string(); })) {
      return data_loss(fmt::format("{}: metadata class_names must be a JSON array of {} strings", name, m.classes));
    }
    m.class_names = s.get<std::vector<std::string>>();
  }
  for (const char* k : {"format", "format_version", "class_names", "input_shape", "normalization"}) m.info.erase(k);
  return m;
}

Status save_model(const std::string& path, const SoftmaxModel& model) {
  return io::write_file_atomic(path, serialize_model(model));
}

Result<SoftmaxModel> load_model(const std::string& path) {
  auto bytes = read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  return parse_model(bytes->data(), bytes->size(), path);
}

}  // namespace xent
