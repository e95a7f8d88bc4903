// cases.h: the C++ view of tests/cases/cases.json, the one list of op cases (shapes, dims, dtypes,
// reductions, label smoothing) that the oracle tests, the finite-difference gradients, the
// SIMD-vs-scalar check and the PyTorch comparison all draw from. Parsed once; a missing or malformed file ends the test program
// with a message (a test suite with no cases must not pass). Not a test framework: each suite
// still builds its own inputs and checks from these rows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xent::test::cases {

using Shape = std::vector<std::int64_t>;

struct SoftmaxCase {
  Shape shape;
  std::vector<std::int64_t> dims;  // every dim to reduce over, negative ones too
};

enum class Reduction { kNone, kMean, kSum };

struct Table {
  std::vector<std::string> dtypes;  // "float32", "float64"
  std::vector<Reduction> reductions;
  std::vector<double> label_smoothing;
  std::int64_t gradcheck_max_elements = 0;  // finite differences cost two calls per element
  std::vector<SoftmaxCase> softmax;         // softmax, log_softmax, logsumexp
  std::vector<Shape> class_losses;          // cross_entropy, nll_loss: classes on dim 1 (dim 0 of a 1-d input)
  std::vector<Shape> elementwise_losses;    // binary_cross_entropy (with logits)
  // The same three lists for the thread-bits checks: shapes large enough to be split across threads.
  std::vector<SoftmaxCase> threads_softmax;
  std::vector<Shape> threads_class_losses;
  std::vector<Shape> threads_elementwise_losses;
};

const Table& table();

// Whether the table lists this dtype ("float32", "float64").
bool has_dtype(const std::string& dtype);

std::int64_t numel(const Shape& shape);

// The class dimension of a class_losses shape and its number of classes.
inline std::int64_t class_dim(const Shape& shape) { return shape.size() == 1 ? 0 : 1; }
inline std::int64_t classes(const Shape& shape) { return shape[static_cast<std::size_t>(class_dim(shape))]; }

}  // namespace xent::test::cases
