// reduce.cc: leaf decomposition of rows and fixed-order pairwise summation.
#include "reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "parallel.h"

namespace xent::detail {

std::size_t leaf_rows(std::size_t C) noexcept {
  constexpr std::size_t kLeafElems = 16384;
  std::size_t r = C == 0 ? kMaxLeafRows : (kLeafElems + C - 1) / C;
  return std::clamp<std::size_t>(r, 1, kMaxLeafRows);
}

void for_each_piece(const Layout& L, std::size_t r0, std::size_t r1, const std::function<void(const Piece&)>& fn) {
  std::size_t r = r0;
  while (r < r1) {
    std::size_t o = r / L.inner, i = r % L.inner;
    Piece p;
    p.row_off = r;
    p.dense_off = r - r0;
    p.x_off = o * L.C * L.inner + i;
    if (i == 0 && r + L.inner <= r1) {
      std::size_t k = (r1 - r) / L.inner;
      p.b = cpu::Block{k, L.C, L.inner, L.inner};
      r += k * L.inner;
    } else {
      std::size_t n = std::min(L.inner - i, r1 - r);
      p.b = cpu::Block{1, L.C, n, L.inner};
      r += n;
    }
    fn(p);
  }
}

std::size_t for_each_leaf(const Layout& L, const std::function<void(std::size_t, std::size_t, std::size_t)>& fn) {
  const std::size_t rows = L.rows();
  const std::size_t per = leaf_rows(L.C);
  const std::size_t n_leaves = (rows + per - 1) / per;
  parallel_for(n_leaves, [&](std::size_t leaf) {
    std::size_t r0 = leaf * per, r1 = std::min(rows, r0 + per);
    fn(leaf, r0, r1);
  });
  return n_leaves;
}

std::size_t split_chunks(const Layout& L, std::size_t elem_bytes) noexcept {
  if (L.inner != 1 || L.rows() == 0 || L.rows() >= kSplitMaxRows || L.C * elem_bytes < kSplitMinRowBytes) return 0;
  const std::size_t n = (L.C + kSplitChunk - 1) / kSplitChunk;
  return n > 1 ? n : 0;
}

void for_each_chunk(const Layout& L, std::size_t n_chunks,
                    const std::function<void(std::size_t, std::size_t, std::size_t, std::size_t)>& fn) {
  parallel_for(L.rows() * n_chunks, [&](std::size_t task) {
    const std::size_t row = task / n_chunks, chunk = task % n_chunks;
    const std::size_t c0 = chunk * kSplitChunk, c1 = std::min(L.C, c0 + kSplitChunk);
    fn(row, chunk, c0, c1);
  });
}

bool combine_chunks(const double* m, const double* s, std::size_t n, double* M, double* S) noexcept {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double mx = -kInf;
  for (std::size_t i = 0; i < n; ++i) {
    if (!(m[i] < kInf)) return false;  // NaN or +inf
    mx = std::max(mx, m[i]);
  }
  if (mx == -kInf) return false;
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (m[i] > -kInf) sum += s[i] * std::exp(m[i] - mx);
  if (!std::isfinite(sum)) return false;
  *M = mx;
  *S = sum;
  return true;
}

namespace {
inline double sequential_sum(const double* v, std::size_t n) noexcept {
  double s = 0;
  for (std::size_t k = 0; k < n; ++k) s += v[k];
  return s;
}
}  // namespace

// Runs of at most 8 are added in order; longer ones split at n / 2, left half + right half. Ranges
// of 9..16 (both halves are leaves) are done without recursing: the same tree, a third of the calls.
double pairwise_sum(const double* v, std::size_t n) noexcept {
  if (n <= 8) return sequential_sum(v, n);
  const std::size_t h = n / 2;
  if (n <= 16) return sequential_sum(v, h) + sequential_sum(v + h, n - h);
  return pairwise_sum(v, h) + pairwise_sum(v + h, n - h);
}

}  // namespace xent::detail
