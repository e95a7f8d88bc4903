// tensor.h: non-owning views over caller memory (dtype + shape + pointer), as xent's API takes them.
//
// A view is contiguous and row-major (C order); xent never allocates, frees or keeps a view's
// memory. Dtypes: float32, float64, bfloat16 and float16 values, int32 and int64 class indices.
// bfloat16 and float16 are storage only (xent::bfloat16, xent::float16: the 16 bits as PyTorch and
// NumPy lay them out); every op computes in float32 or wider and rounds its result once to the
// output's dtype (round to nearest even). This is not a tensor library: no strides, no
// broadcasting arithmetic, no ownership.
//
// Mistakes a view cannot hide: a view made from a container or a span remembers how many elements
// the buffer holds, and every entry point refuses a shape that needs more; a Shape given more than
// kMaxDims dimensions is invalid (not clipped) and refused the same way. Both are reported as an
// invalid-argument Status by the call that receives the view.
//
//   std::vector<float> x = {1, 2, 3, 2, 4, 6}, y(6);
//   xent::Status s = xent::softmax_forward({x, {2, 3}}, 1, {y, {2, 3}});
//   float loss;   // a one-element (0-d) output: xent::scalar_view(&loss)
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>

namespace xent {

enum class DType : std::uint8_t { kF32, kF64, kI32, kI64, kBF16, kF16 };

// "float32", "float64", "int32", "int64", "bfloat16", "float16".
const char* dtype_name(DType d) noexcept;
std::size_t dtype_size(DType d) noexcept;
inline bool is_floating(DType d) noexcept {
  return d == DType::kF32 || d == DType::kF64 || d == DType::kBF16 || d == DType::kF16;
}

// 16-bit floating-point storage: bfloat16 (1 sign, 8 exponent, 7 fraction bits: float32's upper
// half) and IEEE binary16 (1, 5, 10). No arithmetic; convert with the functions below.
struct bfloat16 {
  std::uint16_t bits = 0;
};
struct float16 {
  std::uint16_t bits = 0;
};
// Exact widening, and narrowing rounded once to nearest even (NaN stays NaN, overflow gives inf).
float to_float(bfloat16 v) noexcept;
float to_float(float16 v) noexcept;
bfloat16 to_bfloat16(double v) noexcept;
float16 to_float16(double v) noexcept;

template <class T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::kF32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::kF64; };
template <> struct DTypeOf<std::int32_t> { static constexpr DType value = DType::kI32; };
template <> struct DTypeOf<std::int64_t> { static constexpr DType value = DType::kI64; };
template <> struct DTypeOf<bfloat16> { static constexpr DType value = DType::kBF16; };
template <> struct DTypeOf<float16> { static constexpr DType value = DType::kF16; };

// A shape of up to kMaxDims dimensions. Rank 0 is a scalar with one element.
class Shape {
 public:
  static constexpr int kMaxDims = 8;

  Shape() = default;
  // More than kMaxDims dims make an invalid shape (valid() false) that every entry point refuses.
  Shape(std::initializer_list<std::int64_t> dims);

  // Checked construction: fails (returns false) if rank > kMaxDims.
  static bool from_dims(const std::int64_t* dims, int rank, Shape* out);

  // False when the shape was given more than kMaxDims dimensions; then declared_rank() says how
  // many, rank() is kMaxDims and only the first kMaxDims dims are kept.
  bool valid() const noexcept { return declared_rank_ <= kMaxDims; }
  int declared_rank() const noexcept { return declared_rank_; }
  int rank() const noexcept { return rank_; }
  std::int64_t operator[](int i) const noexcept { return dims_[i]; }
  std::int64_t& operator[](int i) noexcept { return dims_[i]; }
  const std::int64_t* dims() const noexcept { return dims_; }

  // Product of dims (1 for rank 0). Callers that take shapes from untrusted data must check for
  // overflow first (numel_checked).
  std::int64_t numel() const noexcept;
  // False if the shape is invalid, any dim is negative or the product overflows int64.
  bool numel_checked(std::int64_t* out) const noexcept;

  // The shape with dimension `dim` removed (dim must be in [0, rank)).
  Shape without(int dim) const noexcept;
  // The shape with `size` appended (invalid when the shape already has kMaxDims dims).
  Shape appended(std::int64_t size) const noexcept;

  // "[2, 3]", "[]" for a scalar.
  std::string to_string() const;

  friend bool operator==(const Shape& a, const Shape& b) noexcept;
  friend bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }

 private:
  std::int64_t dims_[kMaxDims] = {};
  int rank_ = 0;
  int declared_rank_ = 0;  // rank_ unless more than kMaxDims dims were given
};

// How many elements a view's buffer holds when the view was made from a container or a span;
// kUnknownCapacity for a view made from a bare pointer (the caller vouches for it).
inline constexpr std::int64_t kUnknownCapacity = -1;

namespace detail {
template <class R, class T>
concept ContiguousOf = std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                       std::is_same_v<std::remove_cv_t<std::ranges::range_value_t<R>>, T>;
template <class R, class T>
concept MutableContiguousOf =
    ContiguousOf<R, T> && !std::is_const_v<std::remove_reference_t<std::ranges::range_reference_t<R>>>;
}  // namespace detail

// Read-only view. Constructible from a typed pointer and a shape, or from a container or span of
// one of the six element types and a shape (then the shape may not need more elements than it
// holds).
struct ConstTensorView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;
  std::int64_t capacity = kUnknownCapacity;  // elements the buffer holds, when known

  ConstTensorView() = default;
  ConstTensorView(const void* d, DType t, Shape s, std::int64_t cap = kUnknownCapacity)
      : data(d), dtype(t), shape(s), capacity(cap) {}
  ConstTensorView(const float* d, Shape s) : data(d), dtype(DType::kF32), shape(s) {}
  ConstTensorView(const double* d, Shape s) : data(d), dtype(DType::kF64), shape(s) {}
  ConstTensorView(const std::int32_t* d, Shape s) : data(d), dtype(DType::kI32), shape(s) {}
  ConstTensorView(const std::int64_t* d, Shape s) : data(d), dtype(DType::kI64), shape(s) {}
  ConstTensorView(const bfloat16* d, Shape s) : data(d), dtype(DType::kBF16), shape(s) {}
  ConstTensorView(const float16* d, Shape s) : data(d), dtype(DType::kF16), shape(s) {}
  template <class R>
    requires(detail::ContiguousOf<R, float> || detail::ContiguousOf<R, double> ||
             detail::ContiguousOf<R, std::int32_t> || detail::ContiguousOf<R, std::int64_t> ||
             detail::ContiguousOf<R, bfloat16> || detail::ContiguousOf<R, float16>)
  ConstTensorView(const R& r, Shape s)
      : ConstTensorView(std::ranges::data(r), DTypeOf<std::remove_cv_t<std::ranges::range_value_t<R>>>::value, s,
                        static_cast<std::int64_t>(std::ranges::size(r))) {}

  // An absent optional input (e.g. no class weight) is a default-constructed view.
  bool empty_view() const noexcept { return data == nullptr && shape.rank() == 0; }
  std::int64_t numel() const noexcept { return shape.numel(); }
  template <class T> const T* as() const noexcept { return static_cast<const T*>(data); }
};

// Writable view; from a pointer, or from a mutable container or span (capacity checked).
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;
  std::int64_t capacity = kUnknownCapacity;  // elements the buffer holds, when known

  TensorView() = default;
  TensorView(void* d, DType t, Shape s, std::int64_t cap = kUnknownCapacity)
      : data(d), dtype(t), shape(s), capacity(cap) {}
  TensorView(float* d, Shape s) : data(d), dtype(DType::kF32), shape(s) {}
  TensorView(double* d, Shape s) : data(d), dtype(DType::kF64), shape(s) {}
  TensorView(std::int32_t* d, Shape s) : data(d), dtype(DType::kI32), shape(s) {}
  TensorView(std::int64_t* d, Shape s) : data(d), dtype(DType::kI64), shape(s) {}
  TensorView(bfloat16* d, Shape s) : data(d), dtype(DType::kBF16), shape(s) {}
  TensorView(float16* d, Shape s) : data(d), dtype(DType::kF16), shape(s) {}
  template <class R>
    requires(detail::MutableContiguousOf<R, float> || detail::MutableContiguousOf<R, double> ||
             detail::MutableContiguousOf<R, std::int32_t> || detail::MutableContiguousOf<R, std::int64_t> ||
             detail::MutableContiguousOf<R, bfloat16> || detail::MutableContiguousOf<R, float16>)
  TensorView(R&& r, Shape s)
      : TensorView(std::ranges::data(r), DTypeOf<std::remove_cv_t<std::ranges::range_value_t<R>>>::value, s,
                   static_cast<std::int64_t>(std::ranges::size(r))) {}

  bool empty_view() const noexcept { return data == nullptr && shape.rank() == 0; }
  std::int64_t numel() const noexcept { return shape.numel(); }
  template <class T> T* as() const noexcept { return static_cast<T*>(data); }
  operator ConstTensorView() const noexcept { return {data, dtype, shape, capacity}; }  // NOLINT
};

// A 0-d (one-element) output, as reduced losses are: xent::scalar_view(&loss) instead of
// {&loss, {}}.
template <class T>
  requires(std::is_same_v<T, float> || std::is_same_v<T, double>)
TensorView scalar_view(T* p) noexcept {
  return {p, DTypeOf<T>::value, Shape{}, 1};
}

}  // namespace xent
