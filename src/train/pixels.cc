// pixels.cc: unsigned-byte pixels to float32 in [0, 1], exactly x / 255 (correctly rounded), and
// model_inputs (inputs.h), which routes a set's rows through it or through the model's feature
// normalization.
//
// This runs once per training sample per epoch, so it must be fast. Division vectorises poorly,
// so the AVX2+FMA clone computes q = x * (1/255) and corrects it with one FMA residual step,
// which gives the correctly rounded quotient for every byte value (tests/train checks all 256
// against plain division). The AVX2 version is chosen at the first call with
// __builtin_cpu_supports; other CPUs use the plain division. (Not GCC's target_clones: its ifunc
// resolver runs before ThreadSanitizer's runtime is up and crashes TSan builds.) Compiled with the vectoriser's dynamic
// cost model (see CMakeLists.txt). Not a general conversion routine.
#include <cstddef>
#include <cstdint>

#include <fmt/format.h>

#include "train/inputs.h"
#include "xent/train/train.h"

namespace xent::train {
namespace {

void scale_plain(const std::uint8_t* in, std::size_t n, float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]) / 255.0f;
}

__attribute__((target("avx2,fma"))) void scale_avx2(const std::uint8_t* in, std::size_t n, float* out) noexcept {
  const float r = 1.0f / 255.0f;
  for (std::size_t i = 0; i < n; ++i) {
    const float x = static_cast<float>(in[i]);
    const float q = x * r;
    const float e = __builtin_fmaf(-q, 255.0f, x);  // exact residual x - q * 255
    out[i] = __builtin_fmaf(e, r, q);
  }
}

}  // namespace

void scale_pixels(const std::uint8_t* in, std::size_t n, float* out) noexcept {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (avx2) scale_avx2(in, n, out);
  else scale_plain(in, n, out);
}

void model_inputs(const SoftmaxModel& m, RowSource src, std::int64_t row0, std::int64_t n, float* out) noexcept {
  const std::int64_t D = m.features;
  if (src.bytes) {
    scale_pixels(src.bytes + row0 * D, static_cast<std::size_t>(n * D), out);
    return;
  }
  for (std::int64_t r = 0; r < n; ++r) normalize_features(m, src.floats + (row0 + r) * D, out + r * D);
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
