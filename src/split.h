// split.h (internal): pass 1 of rows split into chunks (reduce.h split_chunks), shared by the
// softmax family and cross-entropy: each chunk's stats (and coefficient sums, for label smoothing
// and probability targets) from the kernel table, combined per row in chunk order. Not here: the
// per-op second pass, which stays with each op.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "cpu/kernels.h"
#include "reduce.h"

namespace xent::detail {

// Per row of a split layout: M[r] = max, S[r] = sum exp(x - M); ok[r] false for rows that must
// take the unsplit kernel (a NaN or +inf, every value -inf: combine_chunks).
template <class T>
void split_row_stats(const T* x, const Layout& L, std::size_t n_chunks, std::vector<double>* M,
                     std::vector<double>* S, std::vector<char>* ok) {
  const auto& k = cpu::active_table<T>();
  const std::size_t rows = L.rows(), C = L.C;
  std::vector<double> cm(rows * n_chunks), cs(rows * n_chunks);
  for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t j, std::size_t c0, std::size_t c1) {
    k.chunk_stats(x + r * C + c0, c1 - c0, &cm[r * n_chunks + j], &cs[r * n_chunks + j]);
  });
  M->assign(rows, 0);
  S->assign(rows, 1);
  ok->assign(rows, 0);
  for (std::size_t r = 0; r < rows; ++r)
    (*ok)[r] = combine_chunks(&cm[r * n_chunks], &cs[r * n_chunks], n_chunks, &(*M)[r], &(*S)[r]);
}

// Per row of a split layout with coefficients (kernels.h Coefs; coefs_of(r, c0) gives the run that
// starts at class c0 of row r): M, S as split_row_stats, A = sum c (x - M), Q = sum c; ok false
// also when A or Q is not finite (a -inf logit, a non-finite coefficient).
struct RowSums {
  double M = 0, S = 1, A = 0, Q = 0;
  bool ok = false;
};

template <class T, class CoefsOf>
void split_row_sums(const T* x, const Layout& L, std::size_t n_chunks, const CoefsOf& coefs_of,
                    std::vector<RowSums>* out) {
  const auto& k = cpu::active_table<T>();
  const std::size_t rows = L.rows(), C = L.C;
  std::vector<cpu::ChunkSums> cs(rows * n_chunks);
  for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t j, std::size_t c0, std::size_t c1) {
    k.chunk_sums(x + r * C + c0, coefs_of(r, c0), c1 - c0, &cs[r * n_chunks + j]);
  });
  out->assign(rows, RowSums{});
  std::vector<double> m(n_chunks), sm(n_chunks);
  for (std::size_t r = 0; r < rows; ++r) {
    const cpu::ChunkSums* c = &cs[r * n_chunks];
    for (std::size_t j = 0; j < n_chunks; ++j) {
      m[j] = c[j].m;
      sm[j] = c[j].s;
    }
    RowSums& o = (*out)[r];
    if (!combine_chunks(m.data(), sm.data(), n_chunks, &o.M, &o.S)) continue;
    for (std::size_t j = 0; j < n_chunks; ++j) {
      o.A += c[j].a + c[j].q * (c[j].m - o.M);
      o.Q += c[j].q;
    }
    o.ok = std::isfinite(o.A) && std::isfinite(o.Q);
  }
}

}  // namespace xent::detail
