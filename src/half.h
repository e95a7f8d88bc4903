// half.h (internal): bfloat16 and float16 as element types for the kernels and front ends: 16 bits
// of storage, read as float (exact) and written from any arithmetic value with ONE rounding to
// nearest even (from double: rounded to odd into float first, which keeps the final rounding
// correct, since float carries at least two bits more than either type at every magnitude). Layout
// is that of the public xent::bfloat16 / xent::float16 (include/xent/tensor.h). Portable C++: the
// float16 conversions are written out on bits (GCC's _Float16 is not available in clang 14 on
// x86, which builds the fuzzers, and Highway 1.0's F16FromF32 truncates instead of rounding); no
// arithmetic operators: values convert to float, and the kernels compute in float or double.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace xent::detail {

// x rounded to float toward zero, with the lowest mantissa bit set when inexact ("round to odd").
inline float round_to_odd_float(double x) noexcept {
  float f = static_cast<float>(x);
  if (std::isnan(x)) return f;
  if (static_cast<double>(f) == x) return f;
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  // One step toward zero (inf -> max) when rounding went away from it: the bits minus one, as
  // nextafter(f, 0) (f is not zero here), without its library call.
  if (std::fabs(static_cast<double>(f)) > std::fabs(x)) b -= 1u;
  b |= 1u;
  std::memcpy(&f, &b, 4);
  return f;
}

inline std::uint16_t bf16_bits_from_float(float f) noexcept {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  if (std::isnan(f)) return static_cast<std::uint16_t>((b >> 16) | 0x0040u);  // quiet, sign kept
  b += 0x7FFFu + ((b >> 16) & 1u);
  return static_cast<std::uint16_t>(b >> 16);
}

// IEEE binary32 -> binary16, one rounding to nearest even (what a hardware conversion does).
inline std::uint16_t f16_bits_from_float(float f) noexcept {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));  // quiet NaN
  if (ax >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // >= 65520 (and inf): inf
  if (ax >= 0x38800000u) {  // a normal binary16 (>= 2^-14): rebias the exponent by 127 - 15
    std::uint32_t r = ax - 0x38000000u;
    r += 0x0FFFu + ((r >> 13) & 1u);  // round to nearest even at bit 13 (a carry may bump the exponent)
    return static_cast<std::uint16_t>(sign | (r >> 13));
  }
  if (ax <= 0x33000000u) return static_cast<std::uint16_t>(sign);  // <= 2^-25: rounds to zero (2^-25 is a tie)
  // Subnormal: the count of 2^-24 units, rounded to nearest even (may reach 0x400, the least normal).
  const std::uint32_t m = (ax & 0x7FFFFFu) | 0x800000u, shift = 126u - (ax >> 23);
  std::uint32_t q = m >> shift;
  const std::uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return static_cast<std::uint16_t>(sign | q);
}

// IEEE binary16 -> binary32, exact.
inline float float_from_f16_bits(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  std::uint32_t b;
  if (e == 0) {  // zero or subnormal: m x 2^-24, exact in float
    const float v = static_cast<float>(m) * 0x1p-24f;
    std::memcpy(&b, &v, 4);
    b |= sign;
  } else if (e == 31) {
    b = sign | 0x7F800000u | (m << 13);
  } else {
    b = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

template <bool kBrain>
struct Half16 {
  std::uint16_t bits;

  struct BitsTag {};
  Half16() = default;
  constexpr Half16(BitsTag, std::uint16_t b) noexcept : bits(b) {}
  template <class U, class = std::enable_if_t<std::is_arithmetic_v<U>>>
  explicit Half16(U v) noexcept : bits(from_double(static_cast<double>(v))) {}
  static constexpr Half16 from_bits(std::uint16_t b) noexcept { return Half16(BitsTag{}, b); }

  operator float() const noexcept {  // NOLINT: exact widening, the kernels' way to read a value
    if constexpr (kBrain) {
      const std::uint32_t b = static_cast<std::uint32_t>(bits) << 16;
      float f;
      std::memcpy(&f, &b, 4);
      return f;
    } else {
      return float_from_f16_bits(bits);
    }
  }

  static std::uint16_t from_double(double x) noexcept {
    const float f = round_to_odd_float(x);
    return kBrain ? bf16_bits_from_float(f) : f16_bits_from_float(f);
  }
};

using BF16 = Half16<true>;
using F16 = Half16<false>;
static_assert(sizeof(BF16) == 2 && sizeof(F16) == 2 && std::is_trivially_copyable_v<BF16>);

template <class T> inline constexpr bool kIsHalf = std::is_same_v<T, BF16> || std::is_same_v<T, F16>;
// float, double, BF16 or F16: a value type the kernels take.
template <class T> inline constexpr bool kIsFloat = std::is_floating_point_v<T> || kIsHalf<T>;

}  // namespace xent::detail

namespace std {
template <bool kBrain>
class numeric_limits<xent::detail::Half16<kBrain>> {
  using H = xent::detail::Half16<kBrain>;
  static constexpr H b(std::uint16_t v) noexcept { return H::from_bits(v); }

 public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool has_infinity = true;
  static constexpr bool has_quiet_NaN = true;
  static constexpr int digits = kBrain ? 8 : 11;
  static constexpr H infinity() noexcept { return b(kBrain ? 0x7F80 : 0x7C00); }
  static constexpr H quiet_NaN() noexcept { return b(kBrain ? 0x7FC0 : 0x7E00); }
  static constexpr H max() noexcept { return b(kBrain ? 0x7F7F : 0x7BFF); }
  static constexpr H lowest() noexcept { return b(kBrain ? 0xFF7F : 0xFBFF); }
  static constexpr H min() noexcept { return b(kBrain ? 0x0080 : 0x0400); }  // smallest normal
  static constexpr H denorm_min() noexcept { return b(0x0001); }
  static constexpr H epsilon() noexcept { return b(kBrain ? 0x3C00 : 0x1400); }
};
}  // namespace std
