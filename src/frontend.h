// frontend.h (internal): validation shared by the public entry points. Every check returns a
// Status whose message says what was expected and what was found; entry points run all checks
// before writing anything. Not here: arithmetic (kernel tables) and scheduling (reduce.h).
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "guarded.h"
#include "half.h"
#include "reduce.h"
#include "xent/status.h"
#include "xent/tensor.h"

namespace xent::detail {

// The checks every view gets: a valid shape (at most Shape::kMaxDims dims, no negative dim, no
// overflow), a buffer when there are elements, and no more elements than a buffer of known size
// holds.
inline Status check_present(const void* data, const Shape& shape, const char* what,
                            std::int64_t capacity = kUnknownCapacity) {
  if (!shape.valid())
    return invalid_argument(fmt::format("{} has {} dimensions; xent supports at most {}", what, shape.declared_rank(),
                                        Shape::kMaxDims));
  std::int64_t n = 0;
  if (!shape.numel_checked(&n)) return invalid_argument(fmt::format("{} has an invalid shape {}", what, shape.to_string()));
  if (n > 0 && data == nullptr) return invalid_argument(fmt::format("{} is null but has shape {}", what, shape.to_string()));
  if (capacity != kUnknownCapacity && n > capacity)
    return invalid_argument(fmt::format("{} has shape {} ({} elements) but its buffer holds {}", what,
                                        shape.to_string(), n, capacity));
  return ok_status();
}
inline Status check_present(ConstTensorView t, const char* what) {
  return check_present(t.data, t.shape, what, t.capacity);
}

inline Status check_floating(ConstTensorView t, const char* what) {
  XENT_RETURN_IF_ERROR(check_present(t, what));
  if (!is_floating(t.dtype))
    return invalid_argument(
        fmt::format("{} must be float32, float64, bfloat16 or float16, found {}", what, dtype_name(t.dtype)));
  return ok_status();
}

// Calls f(T{}) with T the element type of floating dtype dt: float, double, BF16 or F16 (half.h).
template <class F>
decltype(auto) visit_float(DType dt, F&& f) {
  switch (dt) {
    case DType::kF64: return f(double{});
    case DType::kBF16: return f(BF16{});
    case DType::kF16: return f(F16{});
    default: return f(float{});
  }
}

// `t` must have dtype `dt` and shape `shape`.
inline Status check_like(ConstTensorView t, DType dt, const Shape& shape, const char* what, const char* like_what) {
  XENT_RETURN_IF_ERROR(check_present(t, what));
  if (t.dtype != dt)
    return invalid_argument(fmt::format("{} must have {}'s dtype {}, found {}", what, like_what, dtype_name(dt), dtype_name(t.dtype)));
  if (t.shape != shape)
    return invalid_argument(fmt::format("{} must have shape {}, found {}", what, shape.to_string(), t.shape.to_string()));
  return ok_status();
}

// Resolves a possibly negative dim for a tensor of `rank` (rank 0 accepts 0 and -1).
inline Status resolve_dim(std::int64_t dim, int rank, int* out) {
  int r = rank == 0 ? 1 : rank;
  if (dim < -r || dim >= r)
    return out_of_range(fmt::format("dim {} is outside [{}, {}) for an input of {} dimension{}", dim, -r, r, rank,
                                    rank == 1 ? "" : "s"));
  *out = static_cast<int>(dim < 0 ? dim + r : dim);
  return ok_status();
}

// (outer, C, inner) of `shape` around `dim` (rank 0 is one row of one element).
inline Layout layout_of(const Shape& shape, int dim) {
  Layout L;
  if (shape.rank() == 0) {
    L.C = 1;
    return L;
  }
  L.C = static_cast<std::size_t>(shape[dim]);
  for (int i = 0; i < dim; ++i) L.outer *= static_cast<std::size_t>(shape[i]);
  for (int i = dim + 1; i < shape.rank(); ++i) L.inner *= static_cast<std::size_t>(shape[i]);
  return L;
}

// Position of flat index `k` in `shape`, e.g. "3" for a vector or "[1, 0, 2]".
inline std::string position_of(std::int64_t k, const Shape& shape) {
  if (shape.rank() <= 1) return fmt::format("{}", k);
  std::int64_t idx[Shape::kMaxDims];
  for (int i = shape.rank() - 1; i >= 0; --i) {
    std::int64_t d = shape[i] > 0 ? shape[i] : 1;
    idx[i] = k % d;
    k /= d;
  }
  std::string s = "[";
  for (int i = 0; i < shape.rank(); ++i) s += fmt::format("{}{}", i ? ", " : "", idx[i]);
  return s + "]";
}

inline Status check_reduction_output(TensorView loss, DType dt, const Shape& none_shape, int reduction_is_none,
                                     const char* what = "loss") {
  Shape want = reduction_is_none ? none_shape : Shape{};
  XENT_RETURN_IF_ERROR(check_present(loss, what));
  if (loss.dtype != dt)
    return invalid_argument(fmt::format("{} must have the input's dtype {}, found {}", what, dtype_name(dt), dtype_name(loss.dtype)));
  if (loss.shape != want)
    return invalid_argument(fmt::format("{} must have shape {}{}, found {}", what, want.to_string(),
                                        reduction_is_none ? "" : " (a reduced loss is 0-d)", loss.shape.to_string()));
  return ok_status();
}

}  // namespace xent::detail
