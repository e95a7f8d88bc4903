// file.cc: whole-file read into an owned buffer (include/xent/io/file.h); the write half, the
// atomic temporary + rename, is atomic_file.cc. Not a reader of any format.
#include "xent/io/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "guarded.h"

namespace xent::io {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;

// Large buffers are written once and then read at random rows: transparent huge pages save
// thousands of page faults and TLB misses. Best effort (ignored where unsupported).
void advise_huge_pages(void* p, std::size_t n) {
  if (n < 4 * kHugePage) return;
  auto begin = (reinterpret_cast<std::uintptr_t>(p) + kHugePage - 1) & ~(kHugePage - 1);
  auto end = (reinterpret_cast<std::uintptr_t>(p) + n) & ~(kHugePage - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

}  // namespace

ByteBuffer::ByteBuffer(std::size_t n, std::size_t front)
    : p_(n + front ? new std::uint8_t[n + front] : nullptr), n_(n), front_(front) {
  if (n) advise_huge_pages(p_.get(), n + front);
}

static Result<ByteBuffer> read_file_bytes_unguarded(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return io_error(fmt::format("{}: not a regular file", path));
  }
  ByteBuffer buf;
  try {
    buf = ByteBuffer(static_cast<std::size_t>(st.st_size));
  } catch (const std::bad_alloc&) {
    ::close(fd);
    return resource_exhausted(fmt::format("{}: cannot allocate {} bytes to read it", path, st.st_size));
  }
  std::size_t done = 0;
  while (done < buf.size()) {
    ssize_t r = ::read(fd, buf.data() + done, buf.size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = errno;
      ::close(fd);
      return io_error(fmt::format("{}: read failed after {} of {} bytes: {}", path, done, buf.size(),
                                  r == 0 ? "file shrank while reading" : std::strerror(e)));
    }
    done += static_cast<std::size_t>(r);
  }
  ::close(fd);
  return buf;
}

// ---- the public entry points: nothing they throw crosses the boundary (guarded.h) ----

Result<ByteBuffer> read_file_bytes(const std::string& path) noexcept {
  return xent::detail::guarded("read_file_bytes", [&]() -> Result<ByteBuffer> {
    return read_file_bytes_unguarded(path);
  });
}

}  // namespace xent::io
