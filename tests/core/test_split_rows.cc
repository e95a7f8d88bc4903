// test_split_rows.cc: long rows on few rows, which the front ends split into chunks that run on
// several threads (src/reduce.h split_chunks: rows of >= 256 KiB, fewer than 8 rows, chunks of
// 65536 values). Against the long-double oracle (lengths that are not a multiple of the chunk or of
// any vector width), against the unsplit path (the same row inside an 8-row tensor, which is not
// split), bitwise across 1, 2 and 7 threads, with -inf masks across chunk boundaries, a NaN, a +inf
// or the max in the last chunk, targets in the first and last chunk, in-place softmax, and the
// backward passes (which sum y dy / dy per chunk). Every ISA.
// Speed is measured by `xent bench`, never here.
#include <functional>
#include <limits>
#include <optional>

#include "op_checks.h"
#include "test_util.h"

namespace xent::test {
namespace {

constexpr std::int64_t kChunk = 65536;  // reduce.h kSplitChunk
constexpr double kInfD = std::numeric_limits<double>::infinity();
constexpr double kNaND = std::numeric_limits<double>::quiet_NaN();

class SplitRows : public IsaTest {
 protected:
  void TearDown() override {
    xent::set_num_threads(0);
    IsaTest::TearDown();
  }
};

// Class-index targets of `rows` rows: the first and last class, then random ones.
Buf<std::int64_t> edge_targets(Rng& rng, std::int64_t rows, std::int64_t C) {
  Buf<std::int64_t> t({rows});
  for (std::int64_t r = 0; r < rows; ++r) t.v[r] = r == 0 ? 0 : r == 1 ? C - 1 : rng.integer(0, C - 1);
  return t;
}

template <class T>
void vs_reference(std::int64_t N, std::int64_t C, std::uint64_t seed) {
  Rng rng(seed);
  const std::string name = std::string(type_name<T>()) + " [" + std::to_string(N) + ", " + std::to_string(C) + "]";
  const Buf<T> x = rng.uniform_buf<T>({N, C}, -8, 8);
  {
    SCOPED_TRACE(name + " softmax family");
    check_softmax_family(x, 1, rng);
  }
  const Buf<std::int64_t> t = edge_targets(rng, N, C);
  const std::optional<Buf<T>> weight = rng.uniform_buf<T>({C}, 0.25, 2.0);
  for (ref::Reduction red : {ref::Reduction::kNone, ref::Reduction::kMean}) {
    SCOPED_TRACE(name + " cross_entropy, weighted, reduction " + name_of(red));
    CeCase cs;
    cs.reduction = red;
    check_cross_entropy(x, t, weight, cs, rng);
  }
  {
    SCOPED_TRACE(name + " cross_entropy int32 targets, one ignored row, unweighted");
    Buf<std::int32_t> t32({N});
    for (std::int64_t r = 0; r < N; ++r) t32.v[r] = static_cast<std::int32_t>(t.v[r]);
    t32.v[N - 1] = -100;
    check_cross_entropy(x, t32, std::optional<Buf<T>>{}, CeCase{}, rng);
  }
}

TEST_P(SplitRows, MatchTheReference) {
  vs_reference<float>(1, 2 * kChunk + 3, 71);  // 2 full chunks and a short one
  vs_reference<float>(3, kChunk + 13, 72);
  vs_reference<double>(1, kChunk + 5, 73);
  vs_reference<double>(2, kChunk + 1, 74);
}

// Rows with edge values at chunk boundaries: each row of `x` (N x C) checked against the oracle.
template <class T>
Buf<T> edge_rows(std::int64_t C) {
  Rng rng(75);
  const std::int64_t N = 7;
  Buf<T> x = rng.uniform_buf<T>({N, C}, -6, 6);
  auto at = [&](std::int64_t r, std::int64_t c) -> T& { return x.v[r * C + c]; };
  // 0: a -inf mask across the chunk boundary.
  for (std::int64_t c = kChunk - 100; c < kChunk + 50; ++c) at(0, c) = static_cast<T>(-kInfD);
  // 1: the max in the last chunk, far above the rest (the others' stats rescale to ~0).
  at(1, C - 2) = T(40);
  // 2: a NaN in the last chunk.
  at(2, C - 1) = static_cast<T>(kNaND);
  // 3: a +inf in the middle chunk.
  at(3, kChunk + 5) = static_cast<T>(kInfD);
  // 4: all -inf.
  for (std::int64_t c = 0; c < C; ++c) at(4, c) = static_cast<T>(-kInfD);
  // 5: everything -inf but the last value.
  for (std::int64_t c = 0; c + 1 < C; ++c) at(5, c) = static_cast<T>(-kInfD);
  // 6: the first chunk -inf, the rest large and near each other.
  for (std::int64_t c = 0; c < C; ++c) at(6, c) = c < kChunk ? static_cast<T>(-kInfD) : static_cast<T>(1000 + (c % 7));
  return x;
}

template <class T>
Buf<T> row_of(const Buf<T>& x, std::int64_t r, std::int64_t C) {
  return Buf<T>({1, C}, std::vector<T>(x.v.begin() + r * C, x.v.begin() + (r + 1) * C));
}

template <class T>
void edge_cases() {
  const std::int64_t C = kChunk + 77;
  const Buf<T> x = edge_rows<T>(C);
  Rng rng(76);
  for (std::int64_t r = 0; r < 7; ++r) {
    const Buf<T> xr = row_of(x, r, C);  // one row: split
    const std::string name = std::string(type_name<T>()) + " edge row " + std::to_string(r);
    {
      SCOPED_TRACE(name + " softmax family");
      check_softmax_family(xr, 1, rng);
    }
    // Targets in the first chunk, the last chunk, on a -inf logit (row 0: class kChunk), ignored
    // (the gradient of an ignored row is NaN where its normaliser is: rows 2 to 4).
    std::vector<std::int64_t> targets = {0, C - 1};
    if (r == 0) targets.push_back(kChunk);
    if (r == 1 || r == 2 || r == 4) targets.push_back(-100);
    for (std::int64_t tc : targets) {
      SCOPED_TRACE(name + " cross_entropy, target " + std::to_string(tc));
      check_cross_entropy(xr, Buf<std::int64_t>({1}, std::vector<std::int64_t>{tc}), std::optional<Buf<T>>{},
                          CeCase{-100, ref::Reduction::kSum, 0}, rng);
    }
  }
}

TEST_P(SplitRows, EdgeValuesAcrossChunks) {
  edge_cases<float>();
  edge_cases<double>();
}

// The split row against the same row in an 8-row tensor (not split): within a few ulp (the
// normaliser is summed in another order), and the same bits for rows with a NaN, a +inf or all
// -inf, which the split path hands to the unsplit kernel.
template <class T>
void vs_unsplit() {
  const std::int64_t C = 2 * kChunk + 77, N = 8;  // three chunks when alone
  Buf<T> x8({N, C});
  const Buf<T> e = edge_rows<T>(C);
  std::copy(e.v.begin(), e.v.end(), x8.v.begin());
  Rng rng(77);
  for (std::int64_t c = 0; c < C; ++c) x8.v[7 * C + c] = static_cast<T>(rng.uniform(-3, 3));
  for (std::int64_t c = kChunk; c < 2 * kChunk; ++c) x8.v[c] = static_cast<T>(-kInfD);  // row 0: a whole chunk -inf
  Buf<T> y8({N, C}), l8({N}), loss8({N}), dx8({N, C});
  Buf<std::int64_t> t8({N});
  for (std::int64_t r = 0; r < N; ++r) t8.v[r] = r % 2 == 0 ? C - 1 : 3;
  ASSERT_TRUE(softmax_forward(x8.cview(), 1, y8.view()).ok());
  ASSERT_TRUE(logsumexp_forward(x8.cview(), 1, l8.view()).ok());
  Buf<T> dy8({N, C}), sb8({N, C}), lb8({N, C});
  for (auto& v : dy8.v) v = static_cast<T>(rng.uniform(-1, 1));
  ASSERT_TRUE(softmax_backward(y8.cview(), dy8.cview(), 1, sb8.view()).ok());
  ASSERT_TRUE(log_softmax_backward(x8.cview(), dy8.cview(), 1, lb8.view()).ok());  // x as a log-prob
  CrossEntropyOptions o;
  o.reduction = Reduction::kNone;
  ASSERT_TRUE(cross_entropy_fused(x8.cview(), t8.cview(), o, loss8.view(), dx8.view()).ok());
  // A few roundings in T, plus the double normaliser's summation error (<= C u_double per sum; the
  // scalar twin adds the row in sequence, so its own error is the larger one).
  const double rel = 8 * static_cast<double>(std::numeric_limits<T>::epsilon()) + 2 * static_cast<double>(C) * 0x1p-53;
  for (std::int64_t r = 0; r < N; ++r) {
    SCOPED_TRACE(std::string(type_name<T>()) + " row " + std::to_string(r));
    const Buf<T> xr = row_of(x8, r, C);
    Buf<T> y({1, C}), l({1}), loss({1}), dx({1, C});
    ASSERT_TRUE(softmax_forward(xr.cview(), 1, y.view()).ok());
    ASSERT_TRUE(logsumexp_forward(xr.cview(), 1, l.view()).ok());
    ASSERT_TRUE(cross_entropy_fused(xr.cview(), Buf<std::int64_t>({1}, std::vector<std::int64_t>{t8.v[r]}).cview(), o,
                                    loss.view(), dx.view()).ok());
    const bool special = r == 2 || r == 3 || r == 4;
    auto expect_close = [&](const T* a, const T* b, std::int64_t n, const char* what) {
      if (special) {
        EXPECT_EQ(0, std::memcmp(a, b, n * sizeof(T))) << what << ": not the unsplit kernel's bits";
        return;
      }
      int bad = 0;
      for (std::int64_t k = 0; k < n && bad < 3; ++k) {
        const double u = static_cast<double>(a[k]), v = static_cast<double>(b[k]);
        if (u == v || std::fabs(u - v) <= rel * std::max(std::fabs(u), std::fabs(v)) + tiny<T>()) continue;
        ++bad;
        ADD_FAILURE() << what << "[" << k << "]: split " << u << ", unsplit " << v;
      }
    };
    expect_close(y.v.data(), y8.v.data() + r * C, C, "softmax");
    expect_close(l.v.data(), l8.v.data() + r, 1, "logsumexp");
    expect_close(loss.v.data(), loss8.v.data() + r, 1, "cross_entropy loss");
    expect_close(dx.v.data(), dx8.v.data() + r * C, C, "cross_entropy dinput");
    // Backward from the unsplit forward's output (the same y for both).
    const Buf<T> yr = row_of(y8, r, C), dyr = row_of(dy8, r, C);
    Buf<T> sb({1, C}), lb({1, C});
    ASSERT_TRUE(softmax_backward(yr.cview(), dyr.cview(), 1, sb.view()).ok());
    ASSERT_TRUE(log_softmax_backward(xr.cview(), dyr.cview(), 1, lb.view()).ok());
    // Backward: the row's sum is added in another order; each output within rel * (its terms'
    // magnitudes), NaN where the unsplit path has NaN.
    double sum_ydy = 0, sum_dy = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      sum_ydy += std::fabs(static_cast<double>(yr.v[c]) * static_cast<double>(dyr.v[c]));
      sum_dy += std::fabs(static_cast<double>(dyr.v[c]));
    }
    auto expect_near = [&](const std::vector<T>& a, const T* b, const std::function<double(std::int64_t)>& scale,
                           const char* what) {
      int bad = 0;
      for (std::int64_t k = 0; k < C && bad < 3; ++k) {
        const double u = static_cast<double>(a[k]), v = static_cast<double>(b[k]);
        if (std::isnan(u) || std::isnan(v)) {
          if (std::isnan(u) && std::isnan(v)) continue;
        } else if (u == v || std::fabs(u - v) <= rel * scale(k) + tiny<T>()) {
          continue;
        }
        ++bad;
        ADD_FAILURE() << what << "[" << k << "]: split " << u << ", unsplit " << v;
      }
    };
    expect_near(sb.v, sb8.v.data() + r * C, [&](std::int64_t k) {
      return std::fabs(static_cast<double>(yr.v[k])) * (std::fabs(static_cast<double>(dyr.v[k])) + sum_ydy) * 2;
    }, "softmax_backward");
    expect_near(lb.v, lb8.v.data() + r * C, [&](std::int64_t k) {
      return std::fabs(static_cast<double>(dyr.v[k])) + std::exp(static_cast<double>(xr.v[k])) * sum_dy * 2;
    }, "log_softmax_backward");
    // logsumexp backward is elementwise given lse: the same bits from the same lse and dlse.
    const Buf<T> lr({1}, std::vector<T>{l8.v[r]}), dlr({1}, std::vector<T>{T(0.75)});
    Buf<T> dxl({1, C}), dxl8({N, C});
    ASSERT_TRUE(logsumexp_backward(xr.cview(), lr.cview(), dlr.cview(), 1, dxl.view()).ok());
    ASSERT_TRUE(logsumexp_backward(x8.cview(), l8.cview(), Buf<T>({N}, T(0.75)).cview(), 1, dxl8.view()).ok());
    EXPECT_EQ(0, std::memcmp(dxl.v.data(), dxl8.v.data() + r * C, C * sizeof(T))) << "logsumexp_backward";
  }
}

TEST_P(SplitRows, CloseToTheUnsplitPath) {
  vs_unsplit<float>();
  vs_unsplit<double>();
}

// Same bits for 1, 2 and 7 threads, every split op, plus in-place softmax / log_softmax.
template <class T>
void thread_bits(std::int64_t N, std::int64_t C) {
  Rng rng(78);
  const Buf<T> x = rng.uniform_buf<T>({N, C}, -10, 10);
  const Buf<std::int64_t> t = edge_targets(rng, N, C);
  const Buf<T> w = rng.uniform_buf<T>({C}, 0.5, 2.0);
  const Buf<T> dl = rng.uniform_buf<T>({N}, -1, 1);
  using Run = std::function<void(std::vector<std::vector<T>>*)>;
  const std::string ty = std::string(type_name<T>()) + " [" + std::to_string(N) + ", " + std::to_string(C) + "] ";
  const std::pair<std::string, Run> ops[] = {
      {"softmax", [&](auto* out) {
         Buf<T> y({N, C}, T(-3));
         ASSERT_TRUE(softmax_forward(x.cview(), 1, y.view()).ok());
         out->push_back(y.v);
         Buf<T> in_place = x;  // y aliases x
         ASSERT_TRUE(softmax_forward(in_place.cview(), 1, in_place.view()).ok());
         EXPECT_TRUE(same_bits(in_place.v, y.v)) << "in-place softmax differs from out-of-place";
         Buf<T> dx({N, C}, T(-3));
         ASSERT_TRUE(softmax_backward(y.cview(), x.cview(), 1, dx.view()).ok());  // x as dy
         out->push_back(dx.v);
       }},
      {"log_softmax", [&](auto* out) {
         Buf<T> y({N, C}, T(-3));
         ASSERT_TRUE(log_softmax_forward(x.cview(), 1, y.view()).ok());
         out->push_back(y.v);
         Buf<T> in_place = x;
         ASSERT_TRUE(log_softmax_forward(in_place.cview(), 1, in_place.view()).ok());
         EXPECT_TRUE(same_bits(in_place.v, y.v)) << "in-place log_softmax differs from out-of-place";
         Buf<T> dx({N, C}, T(-3));
         ASSERT_TRUE(log_softmax_backward(y.cview(), x.cview(), 1, dx.view()).ok());
         out->push_back(dx.v);
       }},
      {"logsumexp", [&](auto* out) {
         Buf<T> l({N}, T(-3));
         ASSERT_TRUE(logsumexp_forward(x.cview(), 1, l.view()).ok());
         out->push_back(l.v);
         Buf<T> dx({N, C}, T(-3));
         ASSERT_TRUE(logsumexp_backward(x.cview(), l.cview(), dl.cview(), 1, dx.view()).ok());
         out->push_back(dx.v);
       }},
      {"cross_entropy mean, weighted, fused", [&](auto* out) {
         CrossEntropyOptions o;
         o.weight = w.cview();
         Buf<T> loss(ref::Shape{}, T(-3)), dx({N, C}, T(-3));
         ASSERT_TRUE(cross_entropy_fused(x.cview(), t.cview(), o, loss.view(), dx.view()).ok());
         out->push_back(loss.v);
         out->push_back(dx.v);
       }},
      {"cross_entropy none, forward and backward", [&](auto* out) {
         CrossEntropyOptions o;
         o.reduction = Reduction::kNone;
         Buf<T> loss({N}, T(-3)), dx({N, C}, T(-3));
         ASSERT_TRUE(cross_entropy_forward(x.cview(), t.cview(), o, loss.view()).ok());
         ASSERT_TRUE(cross_entropy_backward(x.cview(), t.cview(), o, dl.cview(), dx.view()).ok());
         out->push_back(loss.v);
         out->push_back(dx.v);
       }},
  };
  for (const auto& [name, run] : ops) {
    SCOPED_TRACE(ty + name);
    std::vector<std::vector<T>> first;
    for (int threads : {1, 2, 7}) {
      xent::set_num_threads(threads);
      std::vector<std::vector<T>> out;
      run(&out);
      if (first.empty()) {
        first = out;
        continue;
      }
      ASSERT_EQ(first.size(), out.size());
      for (std::size_t k = 0; k < out.size(); ++k)
        EXPECT_TRUE(same_bits(first[k], out[k])) << "output " << k << " differs between 1 and " << threads << " threads";
    }
  }
}

TEST_P(SplitRows, SameBitsForAnyThreadCount) {
  thread_bits<float>(1, 300001);
  thread_bits<float>(3, 200003);
  thread_bits<double>(3, 200003);
}

XENT_INSTANTIATE_FOR_EVERY_ISA(SplitRows);

}  // namespace
}  // namespace xent::test
