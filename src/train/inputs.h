// inputs.h (internal): what the trainer feeds to W. Pixels (unsigned bytes) stay bytes: every path
// (SGD batches, evaluation, logits, L-BFGS) hands them to the kernel table's byte_affine entries,
// which apply the 1/255 to each sum. Float features go through model_inputs, normalised as the
// model records (model.h's Normalization). So training, `xent evaluate` and `xent predict` see the
// same numbers. Not a data loader.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "xent/io/idx.h"
#include "xent/io/safetensors.h"
#include "xent/status.h"
#include "xent/train/model.h"

namespace xent::train {

// The rows of a set: bytes (pixels) or floats (features), D per row.
struct RowSource {
  const std::uint8_t* bytes = nullptr;
  const float* floats = nullptr;
};
inline RowSource rows_of(const io::LabeledImages& d) {
  return d.floats ? RowSource{nullptr, d.values.data()} : RowSource{d.pixels.data(), nullptr};
}

// out (n x D) = float feature rows [row0, row0 + n) of `features` (D per row) as the model's inputs,
// for a model that takes float features (check_input_kind).
void model_inputs(const SoftmaxModel& m, const float* features, std::int64_t row0, std::int64_t n, float* out) noexcept;

// kInvalidArgument unless `d` holds what the model takes: bytes for Normalization::kPixels,
// floats otherwise. `what` names the set in the message.
Status check_input_kind(const SoftmaxModel& m, const io::LabeledImages& d, const char* what);

// The model's normalization as safetensors metadata ("normalization") and tensors ("input_mean",
// "input_std" for kStandardize; they point into the model). serialize_model and checkpoints use it.
void append_normalization(const SoftmaxModel& model, std::map<std::string, std::string>* metadata,
                          std::vector<io::SafetensorsTensorRef>* tensors);

}  // namespace xent::train
