// test_split_rows.cc: long rows on few rows, which the front ends split into chunks that run on
// several threads (src/reduce.h split_chunks: rows of >= 256 KiB, fewer than 8 rows, chunks of
// 65536 values). Against the long-double oracle (lengths that are not a multiple of the chunk or of
// any vector width), against the unsplit path (the same row inside an 8-row tensor, which is not
// split), bitwise across 1, 2 and 7 threads, with -inf masks across chunk boundaries, a NaN, a +inf
// or the max in the last chunk, targets in the first and last chunk, in-place softmax, and the
// backward passes (which sum y dy / dy per chunk). Every ISA. The losses on split rows: class-index
// cross-entropy with and without label smoothing (weighted or not, ignored rows), probability
// targets (weighted or not, smoothing 0 and 0.2; a zero target on a -inf logit gives NaN, as in
// PyTorch) and NLL (weighted, ignored rows), each forward, backward and fused, every reduction
// that divides differently.
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
  // Label smoothing: weighted (none and mean) with every target kept, then with the last row
  // ignored (for one row: every row ignored, loss 0 or NaN for a mean) weighted (sum) and not (none).
  Buf<std::int64_t> t_ign = t;
  t_ign.v[N - 1] = -100;
  for (ref::Reduction red : {ref::Reduction::kNone, ref::Reduction::kMean}) {
    SCOPED_TRACE(name + " cross_entropy, label smoothing 0.1, weighted, reduction " + name_of(red));
    check_cross_entropy(x, t, weight, CeCase{-100, red, 0.1}, rng);
  }
  {
    SCOPED_TRACE(name + " cross_entropy, label smoothing 0.1, weighted, last row ignored, reduction sum");
    check_cross_entropy(x, t_ign, weight, CeCase{-100, ref::Reduction::kSum, 0.1}, rng);
  }
  {
    SCOPED_TRACE(name + " cross_entropy, label smoothing 0.1, unweighted, last row ignored, reduction none");
    check_cross_entropy(x, t_ign, std::optional<Buf<T>>{}, CeCase{-100, ref::Reduction::kNone, 0.1}, rng);
  }
  // Probability targets: weighted or not, smoothing 0 and 0.2, reductions none and mean (each
  // level of each option meets both levels of the others).
  const Buf<T> probs = rng.prob_buf<T>({N, C});
  struct ProbCase {
    bool weighted;
    double eps;
    ref::Reduction red;
  };
  for (const ProbCase& pc : {ProbCase{false, 0.0, ref::Reduction::kNone}, ProbCase{true, 0.2, ref::Reduction::kNone},
                             ProbCase{true, 0.0, ref::Reduction::kMean}, ProbCase{false, 0.2, ref::Reduction::kMean}}) {
    SCOPED_TRACE(name + " cross_entropy, probability targets, " + (pc.weighted ? "weighted" : "unweighted") +
                 ", label smoothing " + std::to_string(pc.eps) + ", reduction " + name_of(pc.red));
    check_cross_entropy_probs(x, probs, pc.weighted ? weight : std::optional<Buf<T>>{}, pc.red, pc.eps, rng);
  }
  // NLL (x read as log-probabilities): weighted with the last row ignored, every reduction; int32
  // targets unweighted.
  for (ref::Reduction red : kAllReductions) {
    SCOPED_TRACE(name + " nll_loss, weighted, last row ignored, reduction " + name_of(red));
    check_nll(x, t_ign, weight, -100, red, rng);
  }
  {
    SCOPED_TRACE(name + " nll_loss int32 targets, unweighted, reduction none");
    Buf<std::int32_t> t32({N});
    for (std::int64_t r = 0; r < N; ++r) t32.v[r] = static_cast<std::int32_t>(t.v[r]);
    check_nll(x, t32, std::optional<Buf<T>>{}, -100, ref::Reduction::kNone, rng);
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
  const std::optional<Buf<T>> weight = rng.uniform_buf<T>({C}, 0.25, 2.0);
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
      const Buf<std::int64_t> tb({1}, std::vector<std::int64_t>{tc});
      {
        SCOPED_TRACE("label smoothing 0.1, unweighted, reduction none");
        check_cross_entropy(xr, tb, std::optional<Buf<T>>{}, CeCase{-100, ref::Reduction::kNone, 0.1}, rng);
      }
      {
        SCOPED_TRACE("label smoothing 0.1, weighted, reduction mean");
        check_cross_entropy(xr, tb, weight, CeCase{-100, ref::Reduction::kMean, 0.1}, rng);
      }
      {
        SCOPED_TRACE("nll_loss, weighted, reduction none");
        check_nll(xr, tb, weight, -100, ref::Reduction::kNone, rng);
      }
    }
    // Probability targets: (a) positive everywhere (a -inf logit with target > 0: loss +inf);
    // (b) zero wherever x is -inf (loss NaN there without smoothing: -inf * 0, as in PyTorch);
    // (c) all the mass on one finite logit in the last chunk, zero elsewhere (so a -inf block
    // has target 0: NaN without smoothing).
    Buf<T> pa = rng.prob_buf<T>({1, C}), pb = pa, ph({1, C}, T(0));
    for (std::int64_t c = 0; c < C; ++c)
      if (std::isinf(static_cast<double>(xr.v[c])) && xr.v[c] < 0) pb.v[c] = T(0);
    std::int64_t hot = C - 3;
    while (hot > 0 && !std::isfinite(static_cast<double>(xr.v[hot]))) --hot;
    ph.v[hot] = T(1);
    struct ProbCase {
      const char* what;
      const Buf<T>* target;
      bool weighted;
      double eps;
      ref::Reduction red;
    };
    for (const ProbCase& pc : {ProbCase{"positive", &pa, false, 0.0, ref::Reduction::kNone},
                               ProbCase{"zero on -inf", &pb, false, 0.0, ref::Reduction::kNone},
                               ProbCase{"zero on -inf", &pb, true, 0.2, ref::Reduction::kMean},
                               ProbCase{"one-hot", &ph, true, 0.0, ref::Reduction::kSum}}) {
      SCOPED_TRACE(name + " probability targets " + pc.what + (pc.weighted ? ", weighted" : ", unweighted") +
                   ", label smoothing " + std::to_string(pc.eps) + ", reduction " + name_of(pc.red));
      check_cross_entropy_probs(xr, *pc.target, pc.weighted ? weight : std::optional<Buf<T>>{}, pc.red, pc.eps, rng);
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

// The losses beyond class-index cross-entropy without smoothing, split row against the same row
// in the 8-row tensor: NaN where the unsplit path has NaN, the same infinities, finite values
// within a few ulp of the terms they are computed from (the gradient g (p Q - w q) cancels between
// p Q and w q, Q = sum w q). NLL reads one value per row: the same bits for reduction none.
template <class T>
void vs_unsplit_losses() {
  const std::int64_t C = 2 * kChunk + 77, N = 8;
  Buf<T> x8({N, C});
  const Buf<T> e = edge_rows<T>(C);
  std::copy(e.v.begin(), e.v.end(), x8.v.begin());
  Rng rng(79);
  for (std::int64_t c = 0; c < C; ++c) x8.v[7 * C + c] = static_cast<T>(rng.uniform(-3, 3));
  for (std::int64_t c = kChunk; c < 2 * kChunk; ++c) x8.v[c] = static_cast<T>(-kInfD);
  const Buf<T> w = rng.uniform_buf<T>({C}, 0.25, 2.0);
  Buf<std::int64_t> t8({N});
  for (std::int64_t r = 0; r < N; ++r) t8.v[r] = r == 5 ? -100 : r % 2 == 0 ? C - 1 : 3;
  // Probability targets: positive, but row 0's -inf chunk and row 6's -inf first chunk get 0
  // (NaN without smoothing), row 7 is one-hot in its last chunk.
  Buf<T> p8 = rng.prob_buf<T>({N, C});
  for (std::int64_t c = kChunk; c < 2 * kChunk; ++c) p8.v[c] = T(0);
  for (std::int64_t c = 0; c < kChunk; ++c) p8.v[6 * C + c] = T(0);
  for (std::int64_t c = 0; c < C; ++c) p8.v[7 * C + c] = T(c == C - 5 ? 1 : 0);
  const Buf<T> dl8 = rng.uniform_buf<T>({N}, 0.5, 2.0);
  const double rel = 8 * static_cast<double>(std::numeric_limits<T>::epsilon()) + 2 * static_cast<double>(C) * 0x1p-53;
  Buf<T> y8({N, C});
  ASSERT_TRUE(softmax_forward(x8.cview(), 1, y8.view()).ok());

  struct Case {
    std::string name;
    bool prob;
    bool weighted;
    double eps;
  };
  const Case cases[] = {{"cross_entropy, label smoothing 0.1, weighted", false, true, 0.1},
                        {"cross_entropy, label smoothing 0.1, unweighted", false, false, 0.1},
                        {"probability targets, weighted, no smoothing", true, true, 0.0},
                        {"probability targets, unweighted, smoothing 0.2", true, false, 0.2}};
  for (const Case& cs : cases) {
    CrossEntropyOptions o;
    o.reduction = Reduction::kNone;
    o.label_smoothing = cs.eps;
    if (cs.weighted) o.weight = w.cview();
    const ConstTensorView tv8 = cs.prob ? p8.cview() : ConstTensorView(t8.cview());
    Buf<T> loss8({N}), dx8({N, C}), dxb8({N, C});
    ASSERT_TRUE(cross_entropy_fused(x8.cview(), tv8, o, loss8.view(), dx8.view()).ok());
    ASSERT_TRUE(cross_entropy_backward(x8.cview(), tv8, o, dl8.cview(), dxb8.view()).ok());
    for (std::int64_t r = 0; r < N; ++r) {
      SCOPED_TRACE(std::string(type_name<T>()) + " " + cs.name + ", row " + std::to_string(r));
      const Buf<T> xr = row_of(x8, r, C);
      const Buf<T> pr = row_of(p8, r, C);
      const Buf<std::int64_t> tr({1}, std::vector<std::int64_t>{t8.v[r]});
      const ConstTensorView tv = cs.prob ? pr.cview() : ConstTensorView(tr.cview());
      Buf<T> loss({1}), lossf({1}), dx({1, C}), dxb({1, C});
      ASSERT_TRUE(cross_entropy_forward(xr.cview(), tv, o, loss.view()).ok());
      ASSERT_TRUE(cross_entropy_fused(xr.cview(), tv, o, lossf.view(), dx.view()).ok());
      ASSERT_TRUE(cross_entropy_backward(xr.cview(), tv, o, Buf<T>({1}, std::vector<T>{dl8.v[r]}).cview(), dxb.view()).ok());
      // Effective targets q (class index: eps / C + (1 - eps) at t; 0 for an ignored row), Q, and
      // the magnitudes of the gradient's two terms.
      std::vector<double> wq(static_cast<std::size_t>(C), 0.0);
      double Q = 0, absmax = 0, lo = kInfD, hi = -kInfD;
      const bool ignored = !cs.prob && t8.v[r] == -100;
      for (std::int64_t c = 0; c < C; ++c) {
        const double wc = cs.weighted ? static_cast<double>(w.v[c]) : 1.0;
        double q = cs.prob ? static_cast<double>(pr.v[c]) * (cs.eps > 0 ? 1 - cs.eps : 1.0) + cs.eps / static_cast<double>(C)
                           : cs.eps / static_cast<double>(C) + (c == t8.v[r] ? 1 - cs.eps : 0.0);
        if (ignored) q = 0;
        wq[c] = std::fabs(wc * q);
        Q += wq[c];
        const double v = static_cast<double>(xr.v[c]);
        if (std::isfinite(v)) {
          absmax = std::max(absmax, std::fabs(v));
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
      }
      const double rg = 1 + absmax + (hi >= lo ? hi - lo : 0.0);
      auto near = [&](double u, double v, double scale) {
        if (std::isnan(u) || std::isnan(v)) return std::isnan(u) && std::isnan(v);
        if (std::isinf(u) || std::isinf(v)) return u == v;
        return std::fabs(u - v) <= rel * scale + tiny<T>();
      };
      const double lscale = std::fabs(static_cast<double>(loss8.v[r])) + Q * (2 * absmax + 1 + std::log(static_cast<double>(C))) * rg;
      EXPECT_TRUE(near(loss.v[0], loss8.v[r], lscale)) << "forward loss: split " << loss.v[0] << ", unsplit " << loss8.v[r];
      EXPECT_TRUE(near(lossf.v[0], loss8.v[r], lscale)) << "fused loss: split " << lossf.v[0] << ", unsplit " << loss8.v[r];
      for (int pass = 0; pass < 2; ++pass) {
        const Buf<T>& a = pass == 0 ? dx : dxb;
        const T* b = (pass == 0 ? dx8 : dxb8).v.data() + r * C;
        const double g = pass == 0 ? 1.0 : static_cast<double>(dl8.v[r]);
        int bad = 0;
        for (std::int64_t c = 0; c < C && bad < 3; ++c) {
          const double p = std::isfinite(static_cast<double>(y8.v[r * C + c])) ? static_cast<double>(y8.v[r * C + c]) : 0.0;
          const double u = static_cast<double>(a.v[c]), v = static_cast<double>(b[c]);
          if (near(u, v, std::fabs(v) + g * (p * Q + wq[c]) * rg)) continue;
          ++bad;
          ADD_FAILURE() << (pass == 0 ? "fused" : "backward") << " dinput[" << c << "]: split " << u << ", unsplit " << v;
        }
      }
    }
  }
  // NLL, weighted, row 5 ignored: the same bits as the unsplit path (one product per row).
  NllOptions no;
  no.reduction = Reduction::kNone;
  no.weight = w.cview();
  Buf<T> nl8({N}), nd8({N, C});
  ASSERT_TRUE(nll_loss_forward(x8.cview(), t8.cview(), no, nl8.view()).ok());
  ASSERT_TRUE(nll_loss_backward(x8.cview(), t8.cview(), no, dl8.cview(), nd8.view()).ok());
  for (std::int64_t r = 0; r < N; ++r) {
    SCOPED_TRACE(std::string(type_name<T>()) + " nll_loss, row " + std::to_string(r));
    const Buf<T> xr = row_of(x8, r, C);
    const Buf<std::int64_t> tr({1}, std::vector<std::int64_t>{t8.v[r]});
    Buf<T> nl({1}), nd({1, C}, T(-3));
    ASSERT_TRUE(nll_loss_forward(xr.cview(), tr.cview(), no, nl.view()).ok());
    ASSERT_TRUE(nll_loss_backward(xr.cview(), tr.cview(), no, Buf<T>({1}, std::vector<T>{dl8.v[r]}).cview(), nd.view()).ok());
    EXPECT_EQ(0, std::memcmp(nl.v.data(), nl8.v.data() + r, sizeof(T))) << "nll loss: split " << nl.v[0] << ", unsplit " << nl8.v[r];
    EXPECT_EQ(0, std::memcmp(nd.v.data(), nd8.v.data() + r * C, C * sizeof(T))) << "nll dinput differs";
  }
}

TEST_P(SplitRows, CloseToTheUnsplitPath) {
  vs_unsplit<float>();
  vs_unsplit<double>();
  vs_unsplit_losses<float>();
  vs_unsplit_losses<double>();
}

// Same bits for 1, 2 and 7 threads, every split op (every loss and option the split path takes),
// plus in-place softmax / log_softmax.
template <class T>
void thread_bits(std::int64_t N, std::int64_t C) {
  Rng rng(78);
  const Buf<T> x = rng.uniform_buf<T>({N, C}, -10, 10);
  const Buf<std::int64_t> t = edge_targets(rng, N, C);
  const Buf<T> w = rng.uniform_buf<T>({C}, 0.5, 2.0);
  const Buf<T> dl = rng.uniform_buf<T>({N}, -1, 1);
  const Buf<T> probs = rng.prob_buf<T>({N, C});
  Buf<std::int64_t> t_ign = t;
  t_ign.v[N - 1] = -100;
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
      {"cross_entropy label smoothing 0.1, weighted, one ignored row: mean fused, none forward and backward",
       [&](auto* out) {
         CrossEntropyOptions o;
         o.weight = w.cview();
         o.label_smoothing = 0.1;
         Buf<T> lm(ref::Shape{}, T(-3)), dxm({N, C}, T(-3)), loss({N}, T(-3)), dx({N, C}, T(-3));
         ASSERT_TRUE(cross_entropy_fused(x.cview(), t_ign.cview(), o, lm.view(), dxm.view()).ok());
         o.reduction = Reduction::kNone;
         ASSERT_TRUE(cross_entropy_forward(x.cview(), t_ign.cview(), o, loss.view()).ok());
         ASSERT_TRUE(cross_entropy_backward(x.cview(), t_ign.cview(), o, dl.cview(), dx.view()).ok());
         for (auto* v : {&lm.v, &dxm.v, &loss.v, &dx.v}) out->push_back(*v);
       }},
      {"probability targets: weighted smoothing 0.2 mean fused, unweighted none forward and backward",
       [&](auto* out) {
         CrossEntropyOptions o;
         o.weight = w.cview();
         o.label_smoothing = 0.2;
         Buf<T> lm(ref::Shape{}, T(-3)), dxm({N, C}, T(-3)), loss({N}, T(-3)), dx({N, C}, T(-3));
         ASSERT_TRUE(cross_entropy_fused(x.cview(), probs.cview(), o, lm.view(), dxm.view()).ok());
         CrossEntropyOptions u;
         u.reduction = Reduction::kNone;
         ASSERT_TRUE(cross_entropy_forward(x.cview(), probs.cview(), u, loss.view()).ok());
         ASSERT_TRUE(cross_entropy_backward(x.cview(), probs.cview(), u, dl.cview(), dx.view()).ok());
         for (auto* v : {&lm.v, &dxm.v, &loss.v, &dx.v}) out->push_back(*v);
       }},
      {"nll_loss weighted, one ignored row: every reduction, backward none and mean", [&](auto* out) {
         NllOptions o;
         o.weight = w.cview();
         for (Reduction red : {Reduction::kNone, Reduction::kMean, Reduction::kSum}) {
           o.reduction = red;
           Buf<T> loss(red == Reduction::kNone ? ref::Shape{N} : ref::Shape{}, T(-3));
           ASSERT_TRUE(nll_loss_forward(x.cview(), t_ign.cview(), o, loss.view()).ok());
           out->push_back(loss.v);
         }
         Buf<T> dx({N, C}, T(-3)), dxm({N, C}, T(-3));
         o.reduction = Reduction::kNone;
         ASSERT_TRUE(nll_loss_backward(x.cview(), t_ign.cview(), o, dl.cview(), dx.view()).ok());
         o.reduction = Reduction::kMean;
         ASSERT_TRUE(nll_loss_backward(x.cview(), t_ign.cview(), o, Buf<T>(ref::Shape{}, T(0.75)).cview(), dxm.view()).ok());
         out->push_back(dx.v);
         out->push_back(dxm.v);
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
