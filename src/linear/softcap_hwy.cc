// softcap_hwy.cc: logit soft-capping z = s * tanh(z / s) over a run of values, in place,
// vectorised with Highway's contrib Tanh (expm1-based, a few ulp) and dispatched to the best
// instruction set of the CPU. Internal to linear_cross_entropy.cc; not a general math library.
// The last partial vector goes through a padded stack buffer, so every element gets the same
// formula whatever its position; the instruction set is Highway's choice, not xent's pinned ISA.
#include <cstddef>
#include <cstring>

#include "linear/softcap.h"

// Same target set as the kernel tables (src/cpu/kernels_hwy.cc), to keep the build small.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "linear/softcap_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::linear::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

template <class T>
void softcap_run(T* z, std::size_t n, T s) {
  const hn::ScalableTag<T> d;
  const std::size_t L = hn::Lanes(d);
  const auto vs = hn::Set(d, s);
  const auto vinv = hn::Set(d, T(1) / s);
  std::size_t i = 0;
  for (; i + L <= n; i += L) {
    const auto x = hn::LoadU(d, z + i);
    hn::StoreU(hn::Mul(vs, hn::Tanh(d, hn::Mul(x, vinv))), d, z + i);
  }
  if (i < n) {
    HWY_ALIGN T buf[hn::MaxLanes(d)] = {};
    std::memcpy(buf, z + i, (n - i) * sizeof(T));
    const auto x = hn::Load(d, buf);
    hn::Store(hn::Mul(vs, hn::Tanh(d, hn::Mul(x, vinv))), d, buf);
    std::memcpy(z + i, buf, (n - i) * sizeof(T));
  }
}

void SoftcapF32(float* z, std::size_t n, float s) { softcap_run(z, n, s); }
void SoftcapF64(double* z, std::size_t n, double s) { softcap_run(z, n, s); }

}  // namespace xent::linear::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent::linear {
HWY_EXPORT(SoftcapF32);
HWY_EXPORT(SoftcapF64);

void softcap_inplace(float* z, std::size_t n, float s) noexcept { HWY_DYNAMIC_DISPATCH(SoftcapF32)(z, n, s); }
void softcap_inplace(double* z, std::size_t n, double s) noexcept { HWY_DYNAMIC_DISPATCH(SoftcapF64)(z, n, s); }
}  // namespace xent::linear
#endif
