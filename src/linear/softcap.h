// softcap.h (internal): logit soft-capping z = s * tanh(z / s) over n contiguous values, in place,
// vectorised (softcap_hwy.cc). For linear_cross_entropy.cc; s must be > 0.
#pragma once

#include <cstddef>

namespace xent::linear {

void softcap_inplace(float* z, std::size_t n, float s) noexcept;
void softcap_inplace(double* z, std::size_t n, double s) noexcept;

}  // namespace xent::linear
