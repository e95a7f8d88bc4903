// model.h: the softmax-regression model (W, b and what describes them) and its file format.
//
// Models are safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte range, then the raw
// little-endian data. xent writes two tensors in PyTorch nn.Linear's layout, "weight" (F32, [C, D])
// and "bias" (F32, [C]) (so `nn.Linear(D, C).load_state_dict(...)` takes them as they are), and string
// metadata ("class_names" as a JSON array, "input_shape", "normalization", "epochs",
// "test_accuracy", ...). Files are written atomically. The parser is a pure function over bytes
// that treats every byte as hostile (header length, JSON, dtypes, shapes, overlapping or
// out-of-range offsets, holes). This is not a general tensor store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "xent/status.h"

namespace xent {

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
Result<SafetensorsFile> parse_safetensors(const std::uint8_t* bytes, std::size_t n, std::string_view name);

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
std::string serialize_safetensors(const std::map<std::string, std::string>& metadata,
                                  const std::vector<SafetensorsTensorRef>& tensors);

// A linear classifier: logits = x W + b with x the D pixels scaled by `scale` (1/255 for bytes).
struct SoftmaxModel {
  std::int64_t features = 0;  // D
  std::int64_t classes = 0;   // C
  std::int64_t height = 0, width = 0;  // input image shape (height * width == features)
  std::vector<float> weight;  // W, D x C row-major
  std::vector<float> bias;    // b, C
  std::vector<std::string> class_names;  // C names
  std::map<std::string, std::string> info;  // extra metadata (epochs, accuracy, options, ...)
};

// Serialises the model (W, b and metadata) to safetensors bytes.
std::string serialize_model(const SoftmaxModel& model);
// Parses a model written by serialize_model: F32 "weight" [C, D] and "bias" [C], or the first
// format's (and checkpoints') "W" [D, C] and "b" [C], with consistent metadata. Pure.
Result<SoftmaxModel> parse_model(const std::uint8_t* bytes, std::size_t n, std::string_view name);
// Atomic write / whole-file read.
Status save_model(const std::string& path, const SoftmaxModel& model);
Result<SoftmaxModel> load_model(const std::string& path);

// Class names for a dataset: Fashion-MNIST's ten names when `fashion` is true and C == 10,
// otherwise "0", "1", ...
std::vector<std::string> default_class_names(std::int64_t classes, bool fashion);

}  // namespace xent
