// tables_hwy.cc: the SIMD kernel tables, one per Highway target that hwy_targets.h compiles, each
// assembled from the op families' per-target units (softmax_hwy.cc, cross_entropy_hwy.cc,
// bce_hwy.cc, softcap_hwy.cc, byte_affine_hwy.cc; half_hwy.cc for bfloat16 and float16) over a copy of the scalar table (kernels_scalar.cc), whose entries
// stay wherever a family does not vectorise. The list dispatch.cc chooses from is derived from
// Highway's own per-target function list (HWY_CHOOSE_TARGET_LIST, as HWY_EXPORT builds it), best
// first, so no target is named here.
#include "cpu/hwy_targets.h"  // first: the target set

#include <cstddef>
#include <cstdint>

#include "cpu/isa_tables.h"
#include "cpu/kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/tables_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

// xent's name for this target (XENT_ISA, set_isa): "avx512", "avx2", "sse4", "neon", or
// Highway's name for any other.
inline const char* isa_name() {
#if HWY_TARGET == HWY_AVX3
  return "avx512";
#elif HWY_TARGET == HWY_AVX2
  return "avx2";
#elif HWY_TARGET == HWY_SSE4
  return "sse4";
#elif HWY_TARGET == HWY_NEON
  return "neon";
#else
  return hwy::TargetName(HWY_TARGET);
#endif
}

#if XENT_TARGET_HAS_KERNELS
template <class T>
KernelTable<T> make_table(const KernelTable<T>& scalar) noexcept {
  KernelTable<T> t = scalar;
  t.name = isa_name();
  fill_softmax(&t);
  fill_cross_entropy(&t);
  fill_bce(&t);
  fill_softcap(&t);
  fill_byte_affine(&t);
  fill_exp(&t);
  return t;
}

const KernelTable<float>& table_f32() noexcept {
  static const KernelTable<float> t = make_table(scalar_table_f32());
  return t;
}
const KernelTable<double>& table_f64() noexcept {
  static const KernelTable<double> t = make_table(scalar_table_f64());
  return t;
}
// bfloat16 and float16: the softmax family, cross-entropy and the token statistics from
// half_hwy.cc, the type-free target scan from the float32 table, BCE (on probabilities and with
// logits) from bce_hwy.cc, soft-capping from softcap_hwy.cc.
template <class T>
KernelTable<T> make_half_table(const KernelTable<T>& scalar) noexcept {
  KernelTable<T> t = scalar;
  t.name = isa_name();
  fill_half(&t);
  t.count_kept_i32 = table_f32().count_kept_i32;
  t.count_kept_i64 = table_f32().count_kept_i64;
  fill_bce(&t);
  fill_softcap(&t);
  return t;
}
const KernelTable<BF16>& table_bf16() noexcept {
  static const KernelTable<BF16> t = make_half_table(scalar_table_bf16());
  return t;
}
const KernelTable<F16>& table_f16() noexcept {
  static const KernelTable<F16> t = make_half_table(scalar_table_f16());
  return t;
}

IsaTables isa_entry() noexcept { return {isa_name(), HWY_TARGET, &table_f32, &table_f64, &table_bf16, &table_f16}; }
#else
// A target compiled without kernels (no float64 lanes): listed by Highway, skipped by xent.
IsaTables isa_entry() noexcept { return {isa_name(), HWY_TARGET, nullptr, nullptr, nullptr, nullptr}; }
#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace xent::cpu {

const IsaTables* simd_isa_tables(std::size_t* count) noexcept {
  static const struct List {
    IsaTables entries[HWY_MAX_DYNAMIC_TARGETS + 1];
    std::size_t n = 0;
    List() noexcept : entries{} {
      using EntryFn = IsaTables (*)() noexcept;
      static constexpr EntryFn kPerTarget[] = {HWY_CHOOSE_TARGET_LIST(isa_entry)};  // best first
      for (EntryFn fn : kPerTarget) {
        if (fn == nullptr) continue;
        const IsaTables e = fn();
        if (e.f32 != nullptr) entries[n++] = e;
      }
    }
  } list;
  *count = list.n;
  return list.entries;
}

}  // namespace xent::cpu
#endif  // HWY_ONCE
