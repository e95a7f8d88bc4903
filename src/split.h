// split.h (internal): pass 1 of rows split into chunks (reduce.h split_chunks), shared by the
// softmax family and cross-entropy: each chunk's stats from the kernel table, combined per row in
// chunk order. Not here: the per-op second pass, which stays with each op.
#pragma once

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

}  // namespace xent::detail
