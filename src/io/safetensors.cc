// safetensors.cc: safetensors reading and writing (include/xent/io/safetensors.h). The parser
// validates everything before trusting it; the writer is deterministic (sorted JSON keys, fixed
// padding) so that the same tensors give the same bytes. Not a general tensor store; the model file
// built on it is src/train/model.cc.
#include "xent/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "guarded.h"


namespace xent::io {
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


// "[2, 3]": a shape as messages print it.
std::string shape_string(const std::vector<std::int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

static Result<SafetensorsFile> parse_safetensors_unguarded(const std::uint8_t* bytes, std::size_t n, std::string_view name) {
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
      return bad(fmt::format("shape {} of {} needs {} bytes, data_offsets [{}, {}] hold {}", shape_string(e.shape),
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

static std::string serialize_safetensors_unguarded(const std::map<std::string, std::string>& metadata,
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


// ---- the public entry points: nothing they throw crosses the boundary (guarded.h) ----

Result<SafetensorsFile> parse_safetensors(const std::uint8_t* bytes, std::size_t n, std::string_view name) noexcept {
  return xent::detail::guarded("parse_safetensors", [&]() -> Result<SafetensorsFile> {
    return parse_safetensors_unguarded(bytes, n, name);
  });
}

Result<std::string> serialize_safetensors(const std::map<std::string, std::string>& metadata,
                                  const std::vector<SafetensorsTensorRef>& tensors) noexcept {
  return xent::detail::guarded("serialize_safetensors", [&]() -> Result<std::string> {
    return Result<std::string>(serialize_safetensors_unguarded(metadata, tensors));
  });
}

}  // namespace xent::io
