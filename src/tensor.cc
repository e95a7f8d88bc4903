// tensor.cc: Shape arithmetic and dtype names. No memory management lives here.
#include "xent/tensor.h"

#include <fmt/format.h>

#include "half.h"

namespace xent {

float to_float(bfloat16 v) noexcept { return static_cast<float>(detail::BF16::from_bits(v.bits)); }
float to_float(float16 v) noexcept { return static_cast<float>(detail::F16::from_bits(v.bits)); }
bfloat16 to_bfloat16(double v) noexcept { return {detail::BF16(v).bits}; }
float16 to_float16(double v) noexcept { return {detail::F16(v).bits}; }

const char* dtype_name(DType d) noexcept {
  switch (d) {
    case DType::kF32: return "float32";
    case DType::kF64: return "float64";
    case DType::kI32: return "int32";
    case DType::kI64: return "int64";
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
  }
  return "unknown";
}

std::size_t dtype_size(DType d) noexcept {
  switch (d) {
    case DType::kF32: case DType::kI32: return 4;
    case DType::kF64: case DType::kI64: return 8;
    case DType::kBF16: case DType::kF16: return 2;
  }
  return 0;
}

Shape::Shape(std::initializer_list<std::int64_t> dims) {
  declared_rank_ = static_cast<int>(dims.size());
  for (std::int64_t d : dims) {
    if (rank_ == kMaxDims) break;
    dims_[rank_++] = d;
  }
}

bool Shape::from_dims(const std::int64_t* dims, int rank, Shape* out) {
  if (rank < 0 || rank > kMaxDims) return false;
  Shape s;
  s.rank_ = rank;
  s.declared_rank_ = rank;
  for (int i = 0; i < rank; ++i) s.dims_[i] = dims[i];
  *out = s;
  return true;
}

std::int64_t Shape::numel() const noexcept {
  std::int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

bool Shape::numel_checked(std::int64_t* out) const noexcept {
  if (!valid()) return false;
  std::int64_t n = 1;
  for (int i = 0; i < rank_; ++i) {
    if (dims_[i] < 0) return false;
    if (__builtin_mul_overflow(n, dims_[i], &n)) return false;
  }
  *out = n;
  return true;
}

Shape Shape::without(int dim) const noexcept {
  Shape s;
  for (int i = 0; i < rank_; ++i)
    if (i != dim) s.dims_[s.rank_++] = dims_[i];
  s.declared_rank_ = valid() ? s.rank_ : declared_rank_ - 1;
  return s;
}

Shape Shape::appended(std::int64_t size) const noexcept {
  Shape s = *this;
  if (s.rank_ < kMaxDims) s.dims_[s.rank_++] = size;
  ++s.declared_rank_;
  return s;
}

std::string Shape::to_string() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) s += fmt::format("{}{}", i ? ", " : "", dims_[i]);
  if (!valid()) s += fmt::format(", ... ({} dimensions in all)", declared_rank_);
  return s + "]";
}

bool operator==(const Shape& a, const Shape& b) noexcept {
  if (a.rank_ != b.rank_ || a.declared_rank_ != b.declared_rank_) return false;
  for (int i = 0; i < a.rank_; ++i)
    if (a.dims_[i] != b.dims_[i]) return false;
  return true;
}

}  // namespace xent
