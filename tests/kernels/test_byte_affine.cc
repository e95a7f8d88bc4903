// test_byte_affine.cc: the byte_affine and byte_affine_grad entries (the dense layer of
// unsigned-byte inputs, kernels.h) on every ISA this CPU runs and on the scalar table, against a
// long-double restatement of their definitions: shapes that reach every tile (row pairs and a last
// odd row, class groups of five and every remainder, feature vectors in pairs, one, and the scalar
// tail), rows given as scattered pointers, and the thread-free promise that a row's output does not
// depend on which rows share the call. The bound is the worst-case error of any summation order,
// (D + 2) u sum |terms|, so a wrong index or a dropped term fails it. Internal: reaches src/cpu.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "simd_check.h"
#include "table_of.h"
#include "xent/xent.h"

namespace xent {
namespace {

using simd_check::UnderIsa;
using table_of::table;

class ByteAffine : public UnderIsa {};

// rows x D random bytes (a fifth of them 0 and some 255, as pixels are), each row in its own
// allocation so the kernel sees scattered row pointers.
struct ByteRows {
  std::vector<std::vector<std::uint8_t>> data;
  std::vector<const std::uint8_t*> ptr;
  ByteRows(std::size_t rows, std::size_t D, std::mt19937& rng) {
    std::uniform_int_distribution<int> byte(0, 255), kind(0, 9);
    for (std::size_t r = 0; r < rows; ++r) {
      std::vector<std::uint8_t> row(D);
      for (auto& b : row) {
        const int k = kind(rng);
        b = static_cast<std::uint8_t>(k < 2 ? 0 : k == 2 ? 255 : byte(rng));
      }
      data.push_back(std::move(row));
    }
    for (const auto& row : data) ptr.push_back(row.data());
  }
};

template <class T>
std::vector<T> normal(std::size_t n, double sd, std::mt19937& rng) {
  std::normal_distribution<double> dist(0.0, sd);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

template <class T>
::testing::AssertionResult within_bound(T got, long double ref, long double abs_sum, std::size_t n_terms,
                                        const std::string& what) {
  const long double u = std::is_same_v<T, float> ? 0x1p-24L : 0x1p-53L;
  const long double bound = (static_cast<long double>(n_terms) + 2) * u * abs_sum + 4 * std::numeric_limits<T>::min();
  const long double err = std::fabs(static_cast<long double>(got) - ref);
  if (err <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": got " << static_cast<double>(got) << ", reference "
                                       << static_cast<double>(ref) << ", error " << static_cast<double>(err)
                                       << " > bound " << static_cast<double>(bound);
}

template <class T>
void check_forward(std::size_t rows, std::size_t D, std::size_t C, std::uint32_t seed) {
  std::mt19937 rng(seed);
  ByteRows x(rows, D, rng);
  const std::vector<T> wt = normal<T>(C * D, 0.05, rng), bias = normal<T>(C, 1.0, rng);
  const T scale = static_cast<T>(1.0 / 255.0);
  std::vector<T> z(rows * C, T(-7));
  ASSERT_NE(table<T>().byte_affine, nullptr);
  table<T>().byte_affine(x.ptr.data(), rows, D, wt.data(), C, scale, bias.data(), z.data());
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < C; ++c) {
      long double s = 0, a = 0;
      for (std::size_t d = 0; d < D; ++d) {
        const long double t = static_cast<long double>(x.ptr[r][d]) * wt[c * D + d];
        s += t, a += std::fabs(t);
      }
      const long double ref = bias[c] + static_cast<long double>(scale) * s;
      ASSERT_TRUE(within_bound(z[r * C + c], ref, std::fabs(static_cast<long double>(bias[c])) + scale * a, D,
                               "z[" + std::to_string(r) + ", " + std::to_string(c) + "] rows " + std::to_string(rows) +
                                   " D " + std::to_string(D) + " C " + std::to_string(C)));
    }
  // A row's logits do not depend on the rows beside it: each row alone gives the same bits.
  for (std::size_t r = 0; r < rows; r += std::max<std::size_t>(1, rows / 3)) {
    std::vector<T> one(C);
    table<T>().byte_affine(x.ptr.data() + r, 1, D, wt.data(), C, scale, bias.data(), one.data());
    for (std::size_t c = 0; c < C; ++c)
      ASSERT_EQ(std::memcmp(&one[c], &z[r * C + c], sizeof(T)), 0) << "row " << r << " class " << c << " alone";
  }
}

template <class T>
void check_grad(std::size_t rows, std::size_t D, std::size_t C, std::uint32_t seed) {
  std::mt19937 rng(seed);
  ByteRows x(rows, D, rng);
  const std::vector<T> dz = normal<T>(rows * C, 0.1, rng);
  const T scale = static_cast<T>(1.0 / 255.0);
  std::vector<T> gt(C * D, T(-7));
  ASSERT_NE(table<T>().byte_affine_grad, nullptr);
  table<T>().byte_affine_grad(x.ptr.data(), rows, D, dz.data(), C, scale, gt.data());
  for (std::size_t c = 0; c < C; ++c)
    for (std::size_t d = 0; d < D; ++d) {
      long double s = 0, a = 0;
      for (std::size_t r = 0; r < rows; ++r) {
        const long double t = static_cast<long double>(x.ptr[r][d]) * dz[r * C + c];
        s += t, a += std::fabs(t);
      }
      ASSERT_TRUE(within_bound(gt[c * D + d], static_cast<long double>(scale) * s, scale * a, rows,
                               "gt[" + std::to_string(c) + ", " + std::to_string(d) + "] rows " + std::to_string(rows) +
                                   " D " + std::to_string(D) + " C " + std::to_string(C)));
    }
}

// Calls check(rows, D, C, seed) for float and double on every shape: D = 784 (Fashion-MNIST) and D
// past / short of whole vectors (1, 7, 9, 31, 33, 100); C = 10 (two groups), 1-4 (each remainder),
// 12, 3; rows odd and even, 1 and a batch chunk of 128.
template <class F, class G>
void for_each_shape(std::uint32_t seed, F check_f32, G check_f64) {
  for (std::size_t D : {784u, 1u, 7u, 9u, 31u, 33u, 100u})
    for (std::size_t C : {10u, 1u, 2u, 3u, 4u, 12u})
      for (std::size_t rows : {1u, 2u, 5u, 128u}) {
        check_f32(rows, D, C, seed);
        check_f64(rows, D, C, seed++);
      }
}

TEST_P(ByteAffine, ForwardMatchesDefinition) { for_each_shape(1, check_forward<float>, check_forward<double>); }

TEST_P(ByteAffine, GradientMatchesDefinition) { for_each_shape(100, check_grad<float>, check_grad<double>); }

// The entries exist in the float32/float64 tables of every ISA, and the SIMD tables have their own
// (a table that kept the scalar twin's would pass the tests above without testing the SIMD code).
TEST_P(ByteAffine, SimdTablesHaveTheirOwnEntries) {
  if (GetParam() == "scalar") GTEST_SKIP() << "the scalar table is the twin itself";
  EXPECT_NE(table<float>().byte_affine, cpu::scalar_table_f32().byte_affine);
  EXPECT_NE(table<float>().byte_affine_grad, cpu::scalar_table_f32().byte_affine_grad);
  EXPECT_NE(table<double>().byte_affine, cpu::scalar_table_f64().byte_affine);
  EXPECT_NE(table<double>().byte_affine_grad, cpu::scalar_table_f64().byte_affine_grad);
}

INSTANTIATE_TEST_SUITE_P(Isa, ByteAffine, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace xent
