// byte_affine_hwy.cc: the dense layer of unsigned-byte inputs and its weight gradient (the kernel
// table's byte_affine and byte_affine_grad entries, kernels.h), compiled once per target through
// foreach_target. xent train's pixels are bytes: these read them as bytes, widening 8 (AVX2) or 16
// (AVX-512) of them per load inside the product, so the trainer needs no float copy of its rows and
// no packing copy of a general GEMM (the products are skinny: C, the number of classes, is small).
//
// Forward: rows two at a time, classes five at a time, a vector accumulator per (row, class) over
// the features, then one horizontal sum each (the 10 accumulators and the loads fit the 16 vector
// registers of AVX2). Gradient: features two vectors at a time, classes five at a time, a vector
// accumulator per (feature vector, class) over the rows, stored as they are (no horizontal sum).
// Features left over past the last whole vector are added in order, in scalar code. The scalar
// steps are explicit fused multiply-adds (std::fma), so the bits do not depend on whether the
// compiler contracts a * b + c at a given optimisation level. Every output's
// order depends only on D, C and the target, so the results do not depend on which rows share a call
// or on the thread count. Not a general GEMM: float32/float64 weights, byte inputs, small C.
#include "cpu/hwy_targets.h"  // first: the target set

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "cpu/kernels.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/byte_affine_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/cache_control.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

#if XENT_TARGET_HAS_KERNELS
namespace hn = hwy::HWY_NAMESPACE;

constexpr std::size_t kClassGroup = 5;  // classes per tile
constexpr std::size_t kCacheLine = 64;
constexpr std::size_t kPrefetchRows = 4;  // rows fetched ahead of the pair being computed

// Lanes(d) bytes at p, widened exactly to T.
template <class D>
HWY_INLINE hn::Vec<D> load_bytes(D d, const std::uint8_t* p) {
  const hn::Rebind<std::uint8_t, D> du8;
  const hn::Rebind<std::int32_t, D> di32;
  const auto wide = hn::PromoteTo(di32, hn::LoadU(du8, p));
  if constexpr (sizeof(hn::TFromD<D>) == 4) return hn::ConvertTo(d, wide);
  else return hn::PromoteTo(d, wide);
}

// z for R rows (x[0..R)) and G classes from c0.
template <std::size_t R, std::size_t G, class T>
HWY_INLINE void forward_tile(const std::uint8_t* const* x, std::size_t D, const T* wt, std::size_t c0, std::size_t C,
                             T scale, const T* bias, T* z) {
  const hn::ScalableTag<T> d;
  const std::size_t L = hn::Lanes(d);
  using V = hn::Vec<decltype(d)>;
  V acc[R][G];
  HWY_UNROLL(8)
  for (std::size_t r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (std::size_t g = 0; g < G; ++g) acc[r][g] = hn::Zero(d);
  }
  const T* w = wt + c0 * D;
  std::size_t k = 0;
  for (; k + L <= D; k += L) {
    V xv[R];
    HWY_UNROLL(8)
    for (std::size_t r = 0; r < R; ++r) xv[r] = load_bytes(d, x[r] + k);
    HWY_UNROLL(8)
    for (std::size_t g = 0; g < G; ++g) {
      const V wv = hn::LoadU(d, w + g * D + k);
      HWY_UNROLL(8)
      for (std::size_t r = 0; r < R; ++r) acc[r][g] = hn::MulAdd(xv[r], wv, acc[r][g]);
    }
  }
  HWY_UNROLL(8)
  for (std::size_t r = 0; r < R; ++r) {
    HWY_UNROLL(8)
    for (std::size_t g = 0; g < G; ++g) {
      T s = hn::GetLane(hn::SumOfLanes(d, acc[r][g]));
      for (std::size_t j = k; j < D; ++j) s = std::fma(static_cast<T>(x[r][j]), w[g * D + j], s);
      z[r * C + c0 + g] = std::fma(scale, s, bias[c0 + g]);
    }
  }
}

template <std::size_t R, class T>
HWY_INLINE void forward_rows(const std::uint8_t* const* x, std::size_t D, const T* wt, std::size_t C, T scale,
                             const T* bias, T* z) {
  std::size_t c0 = 0;
  for (; c0 + kClassGroup <= C; c0 += kClassGroup) forward_tile<R, kClassGroup>(x, D, wt, c0, C, scale, bias, z);
  switch (C - c0) {
    case 4: forward_tile<R, 4>(x, D, wt, c0, C, scale, bias, z); break;
    case 3: forward_tile<R, 3>(x, D, wt, c0, C, scale, bias, z); break;
    case 2: forward_tile<R, 2>(x, D, wt, c0, C, scale, bias, z); break;
    case 1: forward_tile<R, 1>(x, D, wt, c0, C, scale, bias, z); break;
    default: break;
  }
}

template <class T>
void byte_affine_run(const std::uint8_t* const* x, std::size_t rows, std::size_t D, const T* wt, std::size_t C,
                     T scale, const T* bias, T* z) noexcept {
  // The rows are often random rows of a data set larger than the caches: each pair's successors
  // kPrefetchRows ahead are fetched while it is computed.
  auto prefetch = [&](std::size_t from, std::size_t to) {
    for (std::size_t ahead = from; ahead < std::min(rows, to); ++ahead)
      for (std::size_t off = 0; off < D; off += kCacheLine) hwy::Prefetch(x[ahead] + off);
  };
  prefetch(0, kPrefetchRows);
  std::size_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    prefetch(r + kPrefetchRows, r + kPrefetchRows + 2);
    forward_rows<2>(x + r, D, wt, C, scale, bias, z + r * C);
  }
  if (r < rows) forward_rows<1>(x + r, D, wt, C, scale, bias, z + r * C);
}

// gt for K feature vectors from k0 and G classes from c0, over all rows.
template <std::size_t K, std::size_t G, class T>
HWY_INLINE void grad_tile(const std::uint8_t* const* x, std::size_t rows, std::size_t k0, std::size_t D, const T* dz,
                          std::size_t c0, std::size_t C, T scale, T* gt) {
  const hn::ScalableTag<T> d;
  const std::size_t L = hn::Lanes(d);
  using V = hn::Vec<decltype(d)>;
  V acc[K][G];
  HWY_UNROLL(8)
  for (std::size_t j = 0; j < K; ++j) {
    HWY_UNROLL(8)
    for (std::size_t g = 0; g < G; ++g) acc[j][g] = hn::Zero(d);
  }
  for (std::size_t r = 0; r < rows; ++r) {
    V xv[K];
    HWY_UNROLL(8)
    for (std::size_t j = 0; j < K; ++j) xv[j] = load_bytes(d, x[r] + k0 + j * L);
    const T* dzr = dz + r * C + c0;
    HWY_UNROLL(8)
    for (std::size_t g = 0; g < G; ++g) {
      const V b = hn::Set(d, dzr[g]);
      HWY_UNROLL(8)
      for (std::size_t j = 0; j < K; ++j) acc[j][g] = hn::MulAdd(xv[j], b, acc[j][g]);
    }
  }
  const V vs = hn::Set(d, scale);
  HWY_UNROLL(8)
  for (std::size_t g = 0; g < G; ++g) {
    HWY_UNROLL(8)
    for (std::size_t j = 0; j < K; ++j) hn::StoreU(hn::Mul(acc[j][g], vs), d, gt + (c0 + g) * D + k0 + j * L);
  }
}

template <std::size_t G, class T>
HWY_INLINE void grad_classes(const std::uint8_t* const* x, std::size_t rows, std::size_t D, const T* dz,
                             std::size_t c0, std::size_t C, T scale, T* gt) {
  const hn::ScalableTag<T> d;
  const std::size_t L = hn::Lanes(d);
  std::size_t k = 0;
  for (; k + 2 * L <= D; k += 2 * L) grad_tile<2, G>(x, rows, k, D, dz, c0, C, scale, gt);
  if (k + L <= D) {
    grad_tile<1, G>(x, rows, k, D, dz, c0, C, scale, gt);
    k += L;
  }
  for (; k < D; ++k) {
    for (std::size_t g = 0; g < G; ++g) {
      T s = 0;
      for (std::size_t r = 0; r < rows; ++r) s = std::fma(static_cast<T>(x[r][k]), dz[r * C + c0 + g], s);
      gt[(c0 + g) * D + k] = scale * s;
    }
  }
}

template <class T>
void byte_affine_grad_run(const std::uint8_t* const* x, std::size_t rows, std::size_t D, const T* dz, std::size_t C,
                          T scale, T* gt) noexcept {
  std::size_t c0 = 0;
  for (; c0 + kClassGroup <= C; c0 += kClassGroup) grad_classes<kClassGroup>(x, rows, D, dz, c0, C, scale, gt);
  switch (C - c0) {
    case 4: grad_classes<4>(x, rows, D, dz, c0, C, scale, gt); break;
    case 3: grad_classes<3>(x, rows, D, dz, c0, C, scale, gt); break;
    case 2: grad_classes<2>(x, rows, D, dz, c0, C, scale, gt); break;
    case 1: grad_classes<1>(x, rows, D, dz, c0, C, scale, gt); break;
    default: break;
  }
}

void fill_byte_affine(KernelTable<float>* t) noexcept {
  t->byte_affine = &byte_affine_run<float>;
  t->byte_affine_grad = &byte_affine_grad_run<float>;
}
void fill_byte_affine(KernelTable<double>* t) noexcept {
  t->byte_affine = &byte_affine_run<double>;
  t->byte_affine_grad = &byte_affine_grad_run<double>;
}
#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();
