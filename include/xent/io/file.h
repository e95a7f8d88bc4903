// file.h: whole files in memory: an owned, uninitialised byte buffer and the read of a whole
// regular file into one. The atomic write (temporary + rename) is its counterpart for output
// (src/io/atomic_file.h, internal to xent's tool and trainer). Not a stream or memory-mapping API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "xent/status.h"

namespace xent::io {

// An uninitialised, owned byte buffer (large datasets are written once by the decoder, so they are
// not zero-filled first).
class ByteBuffer {
 public:
  ByteBuffer() = default;
  explicit ByteBuffer(std::size_t n) : ByteBuffer(n, 0) {}
  // n bytes preceded, in the same allocation, by `front` bytes that front() points at: a decoder
  // can write a file's header and data in one pass and keep only the data, without a copy.
  // Throws std::bad_alloc like any container; xent's functions turn that into kResourceExhausted.
  ByteBuffer(std::size_t n, std::size_t front);

  std::uint8_t* data() noexcept { return p_.get() + front_; }
  const std::uint8_t* data() const noexcept { return p_.get() + front_; }
  std::size_t size() const noexcept { return n_; }
  std::uint8_t* front() noexcept { return p_.get(); }

 private:
  std::unique_ptr<std::uint8_t[]> p_;
  std::size_t n_ = 0, front_ = 0;
};

// Reads a whole regular file into memory: kIoError naming the file when it cannot be opened, is
// not a regular file or shrinks while read; kResourceExhausted when it does not fit in memory.
Result<ByteBuffer> read_file_bytes(const std::string& path) noexcept;

}  // namespace xent::io
