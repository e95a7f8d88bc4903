// model.h: the softmax-regression model (W, b and what describes them) and its file format.
//
// Models are safetensors files (xent/io/safetensors.h). xent writes two tensors in PyTorch
// nn.Linear's layout, "weight" (F32, [C, D]) and "bias" (F32, [C]) (so
// `nn.Linear(D, C).load_state_dict(...)` takes them as they are), and string
// metadata ("class_names" as a JSON array, "input_shape", "normalization", "epochs",
// "test_accuracy", ...). Files are written atomically. parse_model is a pure function over bytes
// that adds to the container's checks those of a model (weight and bias dtypes and shapes, metadata).
// This is not a general model format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "xent/status.h"

namespace xent::train {

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
Result<std::string> serialize_model(const SoftmaxModel& model) noexcept;
// Parses a model written by serialize_model: F32 "weight" [C, D] and "bias" [C], or the first
// format's (and checkpoints') "W" [D, C] and "b" [C], with consistent metadata. Pure.
Result<SoftmaxModel> parse_model(const std::uint8_t* bytes, std::size_t n, std::string_view name) noexcept;
// Atomic write / whole-file read.
Status save_model(const std::string& path, const SoftmaxModel& model) noexcept;
Result<SoftmaxModel> load_model(const std::string& path) noexcept;

// Class names for a dataset: Fashion-MNIST's ten names when `fashion` is true and C == 10,
// otherwise "0", "1", ...
Result<std::vector<std::string>> default_class_names(std::int64_t classes, bool fashion) noexcept;

}  // namespace xent::train
