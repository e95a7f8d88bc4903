// safetensors.h: reading and writing safetensors files (https://huggingface.co/docs/safetensors):
// an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and byte
// range, then the raw little-endian data. The parser is a pure function over bytes that treats
// every byte as hostile (header length, JSON, dtypes, shapes, overlapping or out-of-range offsets,
// holes); the writer is deterministic. This is not a general tensor store: no lazy loading, no
// dtype conversion. xent's model files (xent/train/model.h) are built on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "xent/status.h"

namespace xent::io {

// One tensor of a parsed safetensors file: `begin` is the absolute byte offset in the file.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "F32", "F64", "I32", "I64", "U8", "U64", ...
  std::vector<std::int64_t> shape;
  std::size_t begin = 0, size = 0;
};

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::vector<SafetensorsEntry> tensors;        // in file order
  const SafetensorsEntry* find(std::string_view name) const;
};

// Limits a hostile file cannot exceed.
inline constexpr std::uint64_t kSafetensorsMaxHeader = 100u << 20;

// Parses and validates the header of a safetensors file held in bytes[0, n). `name` is used in
// messages. Pure.
Result<SafetensorsFile> parse_safetensors(const std::uint8_t* bytes, std::size_t n, std::string_view name) noexcept;

// A tensor to write: `data` holds `size` bytes, little-endian.
struct SafetensorsTensorRef {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
  std::size_t size = 0;
};
// The bytes of a safetensors file (header padded with spaces to a multiple of 8). Deterministic:
// the same inputs give the same bytes.
Result<std::string> serialize_safetensors(const std::map<std::string, std::string>& metadata,
                                          const std::vector<SafetensorsTensorRef>& tensors) noexcept;

}  // namespace xent::io
