// reduce.h (internal): the fixed-order machinery every public entry point shares: the
// (outer, C, inner) layout, the split of rows into fixed-size leaves, and pairwise summation.
//
// Determinism: leaves depend only on the shape (never on the thread count), each leaf is summed
// pairwise in a fixed order, and leaf sums are combined pairwise in leaf order. So a reduced loss
// is the same bits for any number of threads, and its rounding error grows as O(log N), not O(N).
// Not here: validation (frontend.h) and arithmetic on elements (the kernel tables).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "cpu/kernels.h"

namespace xent::detail {

struct Layout {
  std::size_t outer = 1, C = 0, inner = 1;
  std::size_t rows() const noexcept { return outer * inner; }
};

// Largest leaf: the per-leaf row buffer lives on the worker's stack.
inline constexpr std::size_t kMaxLeafRows = 1024;

// Rows per leaf for rows of C elements: about 16K elements per leaf, 1..kMaxLeafRows rows.
std::size_t leaf_rows(std::size_t C) noexcept;

// A rectangular piece of a leaf, as a kernel Block plus offsets from the tensor's start.
struct Piece {
  cpu::Block b;
  std::size_t x_off;      // element offset of the piece's first row in the (outer, C, inner) tensor
  std::size_t row_off;    // flattened row index (o * inner + i) of its first row
  std::size_t dense_off;  // row index relative to the leaf's first row
};

// Calls fn(piece) for the pieces that cover rows [r0, r1) (at most three pieces).
void for_each_piece(const Layout& L, std::size_t r0, std::size_t r1, const std::function<void(const Piece&)>& fn);

// Runs fn(leaf, r0, r1) for every leaf of the layout's rows, in parallel. Returns the leaf count.
std::size_t for_each_leaf(const Layout& L, const std::function<void(std::size_t, std::size_t, std::size_t)>& fn);

// Long rows on few rows are split into chunks of kSplitChunk elements, so that one row can use
// several threads: rows of at least kSplitMinRowBytes, fewer than kSplitMaxRows rows, contiguous
// (inner == 1). The decision and the chunks depend on the shape alone, never on the thread count.
inline constexpr std::size_t kSplitChunk = 65536;  // a multiple of every vector width
inline constexpr std::size_t kSplitMinRowBytes = 256 * 1024;
inline constexpr std::size_t kSplitMaxRows = 8;

// Chunks per row for rows of `elem_bytes`-byte values, or 0 when the rows are not split.
std::size_t split_chunks(const Layout& L, std::size_t elem_bytes) noexcept;

// Runs fn(row, chunk, c0, c1) for chunk [c0, c1) of every row (n_chunks per row), in parallel.
void for_each_chunk(const Layout& L, std::size_t n_chunks,
                    const std::function<void(std::size_t, std::size_t, std::size_t, std::size_t)>& fn);

// Combines one row's chunk stats (kernel table chunk_stats: m[i], s[i]) in chunk order into the
// row's max *M and normaliser *S = sum s[i] exp(m[i] - M). False when the row must take the unsplit
// kernel instead (a NaN or +inf, every value -inf), so such rows keep exactly its semantics.
bool combine_chunks(const double* m, const double* s, std::size_t n, double* M, double* S) noexcept;

// Pairwise (cascade) sum in a fixed order.
double pairwise_sum(const double* v, std::size_t n) noexcept;

}  // namespace xent::detail
