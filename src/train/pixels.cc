// pixels.cc: unsigned-byte pixels to float32 in [0, 1], exactly x / 255 (correctly rounded: the
// public scale_pixels, for callers who want PyTorch's inputs; the trainer keeps pixels as bytes),
// model_inputs (inputs.h) for float features, and the check that a set holds what the model takes.
// Not a general conversion routine.
#include <cstddef>
#include <cstdint>

#include <fmt/format.h>

#include "train/inputs.h"
#include "xent/train/train.h"

namespace xent::train {

void scale_pixels(const std::uint8_t* in, std::size_t n, float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]) / 255.0f;
}

void model_inputs(const SoftmaxModel& m, const float* features, std::int64_t row0, std::int64_t n, float* out) noexcept {
  const std::int64_t D = m.features;
  for (std::int64_t r = 0; r < n; ++r) normalize_features(m, features + (row0 + r) * D, out + r * D);
}

Status check_input_kind(const SoftmaxModel& m, const io::LabeledImages& d, const char* what) {
  const bool want_bytes = m.normalization == Normalization::kPixels;
  if (want_bytes == !d.floats) return ok_status();
  return invalid_argument(
      want_bytes ? fmt::format("the {} set holds float features, but the model takes unsigned-byte pixels (normalization "
                               "pixels/255); give it images (IDX or a uint8 .npy)", what)
                 : fmt::format("the {} set holds unsigned-byte pixels, but the model takes float features (normalization "
                               "{}); give it float32/float64 .npy or CSV features", what, normalization_name(m.normalization)));
}

}  // namespace xent::train
