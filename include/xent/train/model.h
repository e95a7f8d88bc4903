// model.h: the softmax-regression model (W, b and what describes them) and its file format.
//
// Models are safetensors files (xent/io/safetensors.h). xent writes two tensors in PyTorch
// nn.Linear's layout, "weight" (F32, [C, D]) and "bias" (F32, [C]) (so
// `nn.Linear(D, C).load_state_dict(...)` takes them as they are), and string
// metadata ("class_names" as a JSON array, "input_shape", "normalization", "epochs",
// "test_accuracy", ...). A standardising model adds "input_mean" and "input_std" (F32, [D]; pop
// them, or pass strict=False, before load_state_dict). Files are written atomically. parse_model
// is a pure function over bytes that adds to the container's checks those of a model (weight and bias dtypes and shapes, metadata).
// This is not a general model format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "xent/io/safetensors.h"
#include "xent/status.h"

namespace xent::train {

// How a model turns an input row into the D features it multiplies by W. Recorded in the model
// file (metadata "normalization"; "input_mean"/"input_std" tensors for kStandardize) and applied
// by the trainer, `xent evaluate` and `xent predict` alike.
enum class Normalization {
  kPixels,       // unsigned-byte pixels, x / 255 (IDX files, uint8 .npy); every model before this field
  kNone,         // float features as they are
  kStandardize,  // float features, (x - mean) / std with the training set's per-feature mean and std
};
// "pixels/255", "none", "standardize" (the CLI's --normalize values and the metadata).
const char* normalization_name(Normalization n) noexcept;

// A linear classifier: logits = x W + b with x the input row normalised as `normalization` says.
struct SoftmaxModel {
  std::int64_t features = 0;  // D
  std::int64_t classes = 0;   // C
  std::int64_t height = 0, width = 0;  // input image shape (height * width == features)
  std::vector<float> weight;  // W, D x C row-major
  std::vector<float> bias;    // b, C
  std::vector<std::string> class_names;  // C names
  Normalization normalization = Normalization::kPixels;
  std::vector<float> input_mean, input_std;  // D each for kStandardize (std > 0), else empty
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

// Sets kStandardize from n rows of D float features: the per-feature mean and population std
// (ddof 0, as scikit-learn's StandardScaler), summed in double in row order; a feature whose std
// is 0 (or not a normal float) gets std 1, so it becomes x - mean. Or kNone.
Status set_normalization(SoftmaxModel* model, Normalization kind, const float* x, std::int64_t n) noexcept;
// One row as the model sees it: in (D floats) -> out (D floats). kNone copies; kStandardize
// computes (in - mean) / std in float. Not for kPixels (bytes stay bytes: docs/training.md).
void normalize_features(const SoftmaxModel& model, const float* in, float* out) noexcept;

// Class names for a dataset: Fashion-MNIST's ten names when `fashion` is true and C == 10,
// otherwise "0", "1", ...
Result<std::vector<std::string>> default_class_names(std::int64_t classes, bool fashion) noexcept;

}  // namespace xent::train
