// softcap_hwy.cc: logit soft-capping z = s * tanh(z / s) over a run of values, in place, with
// Highway's contrib Tanh (expm1-based, a few ulp), compiled once per target through foreach_target
// as the kernel table's `softcap` entry (the fused linear layer's; tested on every ISA against the
// scalar table's double-precision tanh). The last partial vector goes through a padded stack
// buffer, so every element gets the same formula whatever its position. Not a general math library.
#include "cpu/hwy_targets.h"  // first: the target set

#include <cstddef>
#include <cstring>

#include "cpu/kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/softcap_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

#if XENT_TARGET_HAS_KERNELS
namespace hn = hwy::HWY_NAMESPACE;

template <class T>
void softcap_run(T* z, std::size_t n, T s) noexcept {
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

void fill_softcap(KernelTable<float>* t) noexcept { t->softcap = &softcap_run<float>; }
void fill_softcap(KernelTable<double>* t) noexcept { t->softcap = &softcap_run<double>; }
#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();
