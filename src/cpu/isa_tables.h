// isa_tables.h (internal): the SIMD kernel tables compiled into this binary, one per instruction
// set, for dispatch.cc to choose from. Not filtered by what the CPU supports (dispatch.cc does that
// with hwy::SupportedTargets()). Names no intrinsics.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/kernels.h"

namespace xent::cpu {

struct IsaTables {
  const char* name;          // "avx512", "avx2", "sse4", "neon", ...
  std::int64_t hwy_target;   // Highway's target bit (HWY_AVX3, ...)
  const KernelTable<float>& (*f32)() noexcept;
  const KernelTable<double>& (*f64)() noexcept;
  const KernelTable<BF16>& (*bf16)() noexcept;
  const KernelTable<F16>& (*f16)() noexcept;
};

// Best first; `*count` receives the number of entries.
const IsaTables* simd_isa_tables(std::size_t* count) noexcept;

}  // namespace xent::cpu
