// rng.h (internal): the trainer's random numbers, specified here so that results depend on no
// standard-library implementation: splitmix64 seeding, xoshiro256** (Blackman & Vigna),
// unbiased bounded integers (Lemire's multiply-shift with rejection), Fisher-Yates shuffling and
// Box-Muller normals. Not for cryptography.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <utility>

namespace xent::detail {

inline std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class Xoshiro256 {
 public:
  explicit Xoshiro256(std::uint64_t seed) {
    for (auto& w : s_) w = splitmix64(seed);
  }
  explicit Xoshiro256(const std::array<std::uint64_t, 4>& state) : s_(state) {}
  const std::array<std::uint64_t, 4>& state() const { return s_; }

  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, range), range >= 1, unbiased.
  std::uint64_t bounded(std::uint64_t range) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * range;
    auto low = static_cast<std::uint64_t>(m);
    if (low < range) {
      const std::uint64_t threshold = (0 - range) % range;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * range;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }
  // Uniform in (0, 1] with 53 random bits.
  double uniform_open0() { return static_cast<double>((next() >> 11) + 1) * 0x1p-53; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<std::uint64_t, 4> s_;
};

// Fisher-Yates: a[i] swaps with a[j], j uniform in [0, i], for i = n-1 down to 1.
template <class T>
void shuffle(T* a, std::int64_t n, Xoshiro256& rng) {
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng.bounded(static_cast<std::uint64_t>(i) + 1));
    std::swap(a[i], a[j]);
  }
}

// n normals with standard deviation `std` (Box-Muller in double, pairs; an odd tail drops the
// second value of its pair).
inline void fill_normal(float* out, std::int64_t n, double std_dev, Xoshiro256& rng) {
  for (std::int64_t i = 0; i < n; i += 2) {
    const double u1 = rng.uniform_open0(), u2 = rng.uniform_open0();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 2.0 * std::numbers::pi * u2;
    out[i] = static_cast<float>(std_dev * r * std::cos(a));
    if (i + 1 < n) out[i + 1] = static_cast<float>(std_dev * r * std::sin(a));
  }
}

}  // namespace xent::detail
