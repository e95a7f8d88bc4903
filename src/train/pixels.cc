// pixels.cc: unsigned-byte pixels to float32 in [0, 1], exactly x / 255 (correctly rounded).
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

}  // namespace xent::train
