// file.cc: whole-file read into an owned buffer, and a file's private mapping as one
// (include/xent/io/file.h); the write half, the atomic temporary + rename, is atomic_file.cc. Not a
// reader of any format.
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
    : p_(n + front ? new std::uint8_t[n + front] : nullptr, Release{0}), n_(n), front_(front) {
  if (n) advise_huge_pages(p_.get(), n + front);
}

void ByteBuffer::Release::operator()(std::uint8_t* p) const noexcept {
  if (mapped) ::munmap(p, mapped);
  else delete[] p;
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

// Reads n bytes from the start of fd into buf (the fallback of a mapping).
static Status read_exactly(int fd, ByteBuffer& buf, const std::string& name) {
  std::size_t done = 0;
  while (done < buf.size()) {
    ssize_t r = ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return io_error(fmt::format("{}: read failed after {} of {} bytes: {}", name, done, buf.size(),
                                  r == 0 ? "file shrank while reading" : std::strerror(errno)));
    }
    done += static_cast<std::size_t>(r);
  }
  return ok_status();
}

// ---- the public entry points: nothing they throw crosses the boundary (guarded.h) ----

Result<ByteBuffer> map_file_bytes(int fd, std::uint64_t size, const std::string& name) noexcept {
  return xent::detail::guarded("map_file_bytes", [&]() -> Result<ByteBuffer> {
    ByteBuffer buf;
    if (size == 0) return buf;
    if (size > SIZE_MAX) return resource_exhausted(fmt::format("{}: {} bytes do not fit in memory", name, size));
    const auto n = static_cast<std::size_t>(size);
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p != MAP_FAILED) {
      buf.p_ = std::unique_ptr<std::uint8_t[], ByteBuffer::Release>(static_cast<std::uint8_t*>(p), ByteBuffer::Release{n});
      buf.n_ = n;
      return buf;
    }
    try {
      buf = ByteBuffer(n);
    } catch (const std::bad_alloc&) {
      return resource_exhausted(fmt::format("{}: cannot allocate {} bytes to read it", name, n));
    }
    XENT_RETURN_IF_ERROR(read_exactly(fd, buf, name));
    return buf;
  });
}

Result<ByteBuffer> read_file_bytes(const std::string& path) noexcept {
  return xent::detail::guarded("read_file_bytes", [&]() -> Result<ByteBuffer> {
    return read_file_bytes_unguarded(path);
  });
}

}  // namespace xent::io
