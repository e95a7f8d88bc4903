// softcap_hwy.cc: logit soft-capping z = s * tanh(z / s) over a run of values, in place, with
// Highway's contrib Tanh (expm1-based, a few ulp), compiled once per target through foreach_target
// as the kernel table's `softcap` entry (the fused linear layer's; tested on every ISA against the
// scalar table's double-precision tanh). bfloat16 and float16 values are widened exactly to
// float32, capped in float32 and rounded once to nearest even (rows-inl.h load_u / store_u). The
// last partial vector goes through a padded stack buffer, so every element gets the same formula
// whatever its position. Not a general math library.
#include "cpu/hwy_targets.h"  // first: the target set

#include <cstddef>

#include "cpu/kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/softcap_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "cpu/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

#if XENT_TARGET_HAS_KERNELS
template <class St>
void softcap_run(St* z, std::size_t n, St s) noexcept {
  using T = compute_t<St>;
  const hn::ScalableTag<T> d;
  const std::size_t L = hn::Lanes(d);
  const T sv = static_cast<T>(s);
  const auto vs = hn::Set(d, sv);
  const auto vinv = hn::Set(d, T(1) / sv);
  std::size_t i = 0;
  for (; i + L <= n; i += L) {
    const auto x = load_u(d, z + i);
    store_u(hn::Mul(vs, hn::Tanh(d, hn::Mul(x, vinv))), d, z + i);
  }
  if (i < n) {
    HWY_ALIGN T buf[hn::MaxLanes(d)] = {};
    for (std::size_t k = 0; k < n - i; ++k) buf[k] = static_cast<T>(z[i + k]);
    const auto x = hn::Load(d, buf);
    hn::Store(hn::Mul(vs, hn::Tanh(d, hn::Mul(x, vinv))), d, buf);
    for (std::size_t k = 0; k < n - i; ++k) z[i + k] = static_cast<St>(buf[k]);  // one rounding (16-bit)
  }
}

void fill_softcap(KernelTable<float>* t) noexcept { t->softcap = &softcap_run<float>; }
void fill_softcap(KernelTable<double>* t) noexcept { t->softcap = &softcap_run<double>; }
void fill_softcap(KernelTable<BF16>* t) noexcept { t->softcap = &softcap_run<BF16>; }
void fill_softcap(KernelTable<F16>* t) noexcept { t->softcap = &softcap_run<F16>; }
#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();
