// test_util.h: shared helpers of the core tests: typed buffers that give xent views and oracle
// tensors of the same values, fixed-seed random data, tolerance checks, the ISA parameter.
//
// Tolerance model (one place for every test): an output element passes when
//     |actual - oracle| <= unit<T> * scale + tiny<T>
// where `scale` is the sum of the magnitudes of the terms that element is computed from (worked
// out per op by the test, e.g. |x - max| + |log sum| + range for log_softmax), so the bound is a
// forward-error bound and stays meaningful for both tiny and large outputs.
//   float64: unit = 1e-13 (~450 double roundings; the promise is "1e-12 relative or better").
//   float32: unit = 16 * 2^-24 ~ 9.5e-7. xent computes x - max in float32 (error <= u |x - max|,
//     which the scale carries as the row's range), evaluates exp/log to <= 4 ulp in every ISA
//     (polynomial kernels included), accumulates in float64 and rounds each result once; 16 u
//     covers those few roundings with margin, and is still far below anything a wrong formula,
//     a wrong divisor or float32 accumulation of a long row would produce.
// NaN must meet NaN and an infinity the same infinity; nothing else is excused.
// Not a tensor library and not a benchmark harness.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "reference/reference.h"
#include "xent/xent.h"

namespace xent::test {

using ref::Real;

template <class T>
constexpr double unit() {
  return std::is_same_v<T, float> ? 16.0 * 0x1p-24 : 1e-13;
}
// Below the smallest normal number relative precision is gone; allow a few of those.
template <class T>
constexpr double tiny() {
  return 4.0 * static_cast<double>(std::numeric_limits<T>::min());
}

inline xent::Shape to_shape(const ref::Shape& s) {
  xent::Shape out;
  const bool ok = xent::Shape::from_dims(s.data(), static_cast<int>(s.size()), &out);
  if (!ok) ADD_FAILURE() << "shape of rank " << s.size() << " too large";
  return out;
}

inline std::string shape_str(const ref::Shape& s) {
  std::ostringstream os;
  os << "[";
  for (std::size_t k = 0; k < s.size(); ++k) os << (k ? ", " : "") << s[k];
  os << "]";
  return os.str();
}

// A buffer of T with a shape: view() / cview() for xent, to_ref() for the oracle.
template <class T>
struct Buf {
  ref::Shape shape;
  std::vector<T> v;

  Buf() = default;
  explicit Buf(ref::Shape s, T fill = T(0))
      : shape(std::move(s)), v(static_cast<std::size_t>(ref::numel(shape)), fill) {}
  Buf(ref::Shape s, std::vector<T> values) : shape(std::move(s)), v(std::move(values)) {
    if (static_cast<std::int64_t>(v.size()) != ref::numel(shape)) ADD_FAILURE() << "Buf size";
  }

  std::int64_t numel() const { return static_cast<std::int64_t>(v.size()); }
  // A non-null pointer even for zero elements, so that an empty tensor is never an absent one.
  T* ptr() { return v.empty() ? &empty_slot_ : v.data(); }
  const T* ptr() const { return v.empty() ? &empty_slot_ : v.data(); }
  xent::TensorView view() { return {ptr(), to_shape(shape)}; }
  xent::ConstTensorView cview() const { return {ptr(), to_shape(shape)}; }

  ref::Tensor to_ref() const {
    std::vector<Real> d(v.begin(), v.end());
    return ref::Tensor(shape, std::move(d));
  }
  ref::Targets to_targets() const {
    return ref::Targets{shape, std::vector<std::int64_t>(v.begin(), v.end())};
  }
  static Buf from_ref(const ref::Tensor& t) {
    Buf b(t.shape);
    for (std::size_t k = 0; k < b.v.size(); ++k) b.v[k] = static_cast<T>(t.data[k]);
    return b;
  }

 private:
  mutable T empty_slot_{};
};

// Fixed-seed generator; each test constructs its own so cases do not depend on test order.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : g_(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g_); }
  std::int64_t integer(std::int64_t lo, std::int64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(g_);
  }
  template <class T>
  Buf<T> uniform_buf(const ref::Shape& s, double lo, double hi) {
    Buf<T> b(s);
    for (auto& x : b.v) x = static_cast<T>(uniform(lo, hi));
    return b;
  }
  // Rows of probabilities summing to ~1 along dim 1 (dim 0 for rank 1).
  template <class T>
  Buf<T> prob_buf(const ref::Shape& s) {
    Buf<T> b = uniform_buf<T>(s, 0.0, 1.0);
    const std::int64_t C = s.size() == 1 ? s[0] : s[1];
    const std::int64_t inner = s.size() <= 2 ? 1 : ref::numel(s) / (s[0] * s[1]);
    const std::int64_t outer = s.size() == 1 ? 1 : s[0];
    for (std::int64_t o = 0; o < outer; ++o) {
      for (std::int64_t i = 0; i < inner; ++i) {
        double sum = 0;
        for (std::int64_t c = 0; c < C; ++c) sum += b.v[(o * C + c) * inner + i];
        for (std::int64_t c = 0; c < C; ++c) b.v[(o * C + c) * inner + i] = static_cast<T>(b.v[(o * C + c) * inner + i] / sum);
      }
    }
    return b;
  }

 private:
  std::mt19937_64 g_;
};

// Checks every element of `actual` against the oracle with per-element scales (see the top).
template <class T>
::testing::AssertionResult close_to(const std::vector<T>& actual, const ref::Tensor& expected,
                                    const std::vector<Real>& scale, double unit_mult = 1.0) {
  if (static_cast<std::int64_t>(actual.size()) != expected.numel()) {
    return ::testing::AssertionFailure() << "size " << actual.size() << " vs oracle " << expected.numel();
  }
  int shown = 0, bad = 0;
  std::ostringstream os;
  for (std::size_t k = 0; k < actual.size(); ++k) {
    const Real a = actual[k], e = expected.data[k];
    bool ok;
    if (std::isnan(e) || std::isnan(a)) {
      ok = std::isnan(e) && std::isnan(a);
    } else if (std::isinf(e) || std::isinf(a)) {
      ok = a == e;
    } else {
      const Real s = k < scale.size() ? scale[k] : std::fabs(e);
      ok = std::fabs(a - e) <= unit<T>() * unit_mult * s + tiny<T>();
    }
    if (!ok) {
      ++bad;
      if (shown++ < 5) {
        os << "\n  [" << k << "] got " << static_cast<double>(a) << ", oracle "
           << static_cast<double>(e) << ", |diff| " << static_cast<double>(std::fabs(a - e))
           << ", allowed " << unit<T>() * unit_mult * static_cast<double>(k < scale.size() ? scale[k] : std::fabs(e));
      }
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << actual.size() << " elements differ" << os.str();
}

// Bitwise equality of two buffers (NaNs compared by bits too).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

inline xent::Reduction to_xent(ref::Reduction r) {
  switch (r) {
    case ref::Reduction::kNone: return xent::Reduction::kNone;
    case ref::Reduction::kMean: return xent::Reduction::kMean;
    case ref::Reduction::kSum: return xent::Reduction::kSum;
  }
  return xent::Reduction::kMean;
}
inline const char* name_of(ref::Reduction r) {
  return r == ref::Reduction::kNone ? "none" : r == ref::Reduction::kMean ? "mean" : "sum";
}
inline constexpr ref::Reduction kAllReductions[] = {ref::Reduction::kNone, ref::Reduction::kMean,
                                                     ref::Reduction::kSum};

template <class T>
const char* type_name() {
  return std::is_same_v<T, float> ? "float32" : std::is_same_v<T, double> ? "float64"
         : std::is_same_v<T, std::int32_t> ? "int32" : "int64";
}

// Fixture base for tests parameterised by ISA name: pins the ISA, restores "auto" after.
class IsaTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const xent::Status s = xent::set_isa(GetParam());
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  void TearDown() override { xent::set_isa("auto").ignore_error(); }
};

inline std::string isa_test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param;
  for (char& ch : n) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return n;
}

#define XENT_INSTANTIATE_FOR_EVERY_ISA(fixture)                                                   \
  INSTANTIATE_TEST_SUITE_P(Isa, fixture, ::testing::ValuesIn(::xent::supported_isas()), \
                           ::xent::test::isa_test_name)

// Case-insensitive "message mentions one of these words".
inline bool mentions(const std::string& message, std::initializer_list<const char*> words) {
  std::string m = message;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* w : words) {
    std::string lw = w;
    std::transform(lw.begin(), lw.end(), lw.begin(), [](unsigned char c) { return std::tolower(c); });
    if (m.find(lw) != std::string::npos) return true;
  }
  return false;
}

// Values as the library reads them, for the oracle (16-bit values widen exactly).
// Shared by the token-weight and token-statistics tests.
template <class T>
Real real_of(T v) {
  if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) return to_float(v);
  else return static_cast<Real>(v);
}
template <class T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, bfloat16>) return to_bfloat16(v);
  else if constexpr (std::is_same_v<T, float16>) return to_float16(v);
  else return static_cast<T>(v);
}

}  // namespace xent::test
