// file.h: whole files in memory: an owned, uninitialised byte buffer, the read of a whole regular
// file into one, and the private mapping of a file that nothing else rewrites (xent's own cache
// entries). The atomic write (temporary + rename) is its counterpart for output (src/io/atomic_file.h,
// internal to xent's tool and trainer). Not a stream API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "xent/status.h"

namespace xent::io {

// An uninitialised, owned byte buffer (large datasets are written once by the decoder, so they are
// not zero-filled first), in the heap or in a private file mapping (map_file_bytes).
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
  // Moves the first k <= size() bytes in front of data(): a parser keeps a file's payload in the
  // buffer that holds the whole file, without a copy.
  void drop_front(std::size_t k) noexcept {
    front_ += k;
    n_ -= k;
  }

 private:
  friend Result<ByteBuffer> map_file_bytes(int fd, std::uint64_t size, const std::string& name) noexcept;
  struct Release {
    std::size_t mapped;  // the mapping's length; 0 (value-initialised): heap memory
    void operator()(std::uint8_t* p) const noexcept;
  };
  std::unique_ptr<std::uint8_t[], Release> p_;
  std::size_t n_ = 0, front_ = 0;
};

// Reads a whole regular file into memory: kIoError naming the file when it cannot be opened, is
// not a regular file or shrinks while read; kResourceExhausted when it does not fit in memory.
Result<ByteBuffer> read_file_bytes(const std::string& path) noexcept;

// The `size` bytes of the open regular file fd as a buffer without copying them: a private
// copy-on-write mapping of the page cache (writes to the buffer stay in it), populated up front.
// Only for files no other process shrinks while they are mapped (a mapped page past a new end of
// file faults with SIGBUS): xent's own entries, which are replaced by rename, never rewritten.
// Where the file system cannot map, the bytes are read instead (kIoError if that fails, naming
// `name`). fd stays open and the caller's.
Result<ByteBuffer> map_file_bytes(int fd, std::uint64_t size, const std::string& name) noexcept;

}  // namespace xent::io
