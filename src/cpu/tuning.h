// tuning.h (internal): the SIMD kernels' cost-model constants, in one place. Each one only chooses
// between schemes that compute the same formulas (results stay within the tested ulp bounds of the
// scalar twin on either side of a threshold); tests/kernels/test_kernels.cc takes row lengths on
// both sides of every threshold from here (TuningBoundaries), so each scheme is exercised on every
// ISA. Plain constants, no macros: there is no build-time override. Names no intrinsics.
#pragma once

#include <cstddef>

namespace xent::cpu::tuning {

// Pass 1 (max, then sum of exps) works on chunks of this many bytes, L1-resident between the two.
inline constexpr std::size_t kChunkBytes = 8192;
// Rows at least this long are written with non-temporal stores: such tensors do not fit in cache,
// and streaming avoids reading each output line before overwriting it.
inline constexpr std::size_t kStreamRowBytes = 64 * 1024;
// Rows of at most this many bytes whose output is exp-based (softmax, the cross-entropy gradient,
// probability targets) take one exp per value: e = exp(x - m) written into the output while
// summed, then scaled in place while still in cache. Longer rows recompute e in a second pass.
inline constexpr std::size_t kOneExpRowBytes = 32 * 1024;
// bfloat16 and float16 rows of at most this many classes whose output is exp-based take one exp per
// value: e = exp(x - m) kept in a float32 row on the kernel's stack (128 KiB; a 16-bit output would
// round e before it is scaled), then scaled into the output. Longer rows recompute e.
inline constexpr std::size_t kHalfOneExpMax = 32 * 1024;
// Rows of at most this many classes are computed across rows (a tile of one vector's worth of
// rows, each row one lane).
inline constexpr std::size_t kSmallC = 32;
// exp(x - m) with the rounding error of x - m recovered (TwoSum) for the values written out (each
// output then within ~2 ulp), but not in the normaliser's sum, whose relative error is a
// p-weighted mean of u |x - m|, small because the terms that matter have x near m.
inline constexpr bool kExactOut = true;
inline constexpr bool kExactSum = false;

static_assert(kOneExpRowBytes < kStreamRowBytes, "one-exp rows are cache-resident, streamed rows are not");
static_assert(kChunkBytes % 64 == 0 && kChunkBytes >= 4 * 64, "a chunk holds whole unrolled AVX-512 steps");
static_assert(kSmallC >= 16, "the AVX-512 float tile transposes 16 columns");

}  // namespace xent::cpu::tuning
