// npy.h: reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
//
// The reader treats every byte as hostile: it checks the magic string, the version, the header
// length, the header dict (strictly: exactly 'descr', 'fortran_order' and 'shape', in any order),
// the rank, overflow in the element count and byte size, a configurable size limit (checked before
// anything is allocated), and that the data is exactly as long as the header declares. Every error
// names the file and says what was expected and what was found.
//
// Dtypes: float16 ('<f2'), float32, float64, int32 and int64 are read as themselves; bool, int8,
// int16, uint8, uint16 and uint32 are widened to int64 (so they can serve as class indices).
// Big-endian data is byte-swapped and Fortran-order data is transposed, so an NpyArray is always
// native and C order. Anything else (uint64, complex, structured or object arrays) is refused by
// name.
//
// bfloat16: NumPy has no bfloat16 dtype. np.save of an `ml_dtypes.bfloat16` array writes the descr
// '<V2' (ml_dtypes registers the type as kind 'V', 2 bytes, native order; np.save writes
// dtype.str), and np.load without ml_dtypes gives a 2-byte void array, which np.save writes back
// as '|V2'. xent follows that convention: write_npy writes bfloat16 as '<V2' (load it with
// np.load(f).view(ml_dtypes.bfloat16)), and a reader that sets NpyReadOptions::void2_as_bfloat16
// reads '<V2', '>V2', '=V2' and '|V2' (taken as little-endian) as bfloat16. Without the option a
// 2-byte void descr is refused with a message that says how to ask for bfloat16: raw bytes carry no
// type, so only the caller can say they are bfloat16.
//
// The writer always writes format 1.0, little-endian, C order. Not a general NumPy loader: no
// .npz archives, no memory mapping, no pickles.
//
//   xent::Result<xent::io::NpyArray> x = xent::io::read_npy("logits.npy");
//   if (!x.ok()) { std::puts(x.status().message().c_str()); return; }
//   xent::Status s = xent::io::write_npy("probs.npy", probs_view);
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "xent/status.h"
#include "xent/tensor.h"

namespace xent::io {

namespace detail {
struct NpyAccess;
}

struct NpyReadOptions {
  // Largest array (in bytes, after widening to the in-memory dtype) that a read accepts; larger
  // declared sizes fail with a resource-exhausted status before any allocation. Default 16 GiB.
  std::uint64_t max_bytes = std::uint64_t{16} << 30;
  // Read a 2-byte void descr ('<V2', '|V2', ...: how np.save stores ml_dtypes' bfloat16) as
  // bfloat16. Off: such a file is refused, naming this convention.
  bool void2_as_bfloat16 = false;
};

// An owning, contiguous, C-order array of one of xent's dtypes.
class NpyArray {
 public:
  NpyArray() = default;

  // A zero-filled array; fails (resource exhausted) if the shape's size overflows or the memory
  // cannot be allocated, and (invalid argument) for a negative dimension.
  static Result<NpyArray> zeros(DType dtype, const Shape& shape);

  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  std::int64_t numel() const noexcept { return numel_; }
  std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }
  void* data() noexcept { return data_.get(); }
  const void* data() const noexcept { return data_.get(); }
  template <class T> T* as() noexcept { return static_cast<T*>(data()); }
  template <class T> const T* as() const noexcept { return static_cast<const T*>(data()); }

  // Views of the whole array that carry its element count, so that a view whose shape is then
  // changed to need more elements than the array holds is refused by every entry point.
  ConstTensorView view() const noexcept { return {data(), dtype_, shape_, numel_}; }
  TensorView mutable_view() noexcept { return {data(), dtype_, shape_, numel_}; }

  // The dtype as the file declared it (e.g. "'|u1' (uint8)"); empty for an array not read from
  // a file. Lets messages say what a widened array was.
  const std::string& file_dtype() const noexcept { return file_dtype_; }

 private:
  friend struct detail::NpyAccess;
  DType dtype_ = DType::kF32;
  Shape shape_;
  std::int64_t numel_ = 1;
  std::unique_ptr<std::byte[]> data_;
  std::string file_dtype_;
};

// Reads a .npy file. I/O failures (missing file, unreadable) are I/O errors; malformed, truncated
// or lying files are data-loss errors; sizes over options.max_bytes are resource-exhausted.
Result<NpyArray> read_npy(const std::string& path, const NpyReadOptions& options = {}) noexcept;

// Reads rows [row0, row0 + rows) of dimension 0 of a C-order .npy file (each rank of a
// vocabulary-parallel run reads only its rows of the weight): the header is checked as read_npy
// checks it (the file's size included), then only those rows' bytes are read, at their offset.
// options.max_bytes bounds the rows read. A Fortran-order array of rank >= 2, a pipe or a range
// outside [0, shape[0]] is an error. file_shape (optional) receives the whole array's shape
// (read rows 0 of 0 to learn it).
Result<NpyArray> read_npy_rows(const std::string& path, std::int64_t row0, std::int64_t rows,
                               const NpyReadOptions& options = {}, Shape* file_shape = nullptr) noexcept;

// Parses a whole .npy file held in memory; `name_for_errors` stands for the file in messages.
Result<NpyArray> parse_npy(const void* bytes, std::size_t n, const std::string& name_for_errors,
                           const NpyReadOptions& options = {}) noexcept;

// The complete format-1.0 preamble (magic, version, header length, header dict padded with spaces
// to a multiple of 64 bytes and ended by '\n') for an array of this dtype and shape (bfloat16:
// '<V2'). The data, in native little-endian C order, follows it directly.
Result<std::string> npy_header(DType dtype, const Shape& shape) noexcept;

// Writes `array` to `path` atomically: readers see the old file or the complete new one. float16
// is written as '<f2', bfloat16 as '<V2' (the ml_dtypes convention above).
Status write_npy(const std::string& path, ConstTensorView array) noexcept;

}  // namespace xent::io
