// atomic_file.cc: temporary file + fsync + rename, so an output is never half-written.
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace xent::io {
namespace {

std::string dir_of(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

}  // namespace

AtomicFile::~AtomicFile() { abandon(); }

Status AtomicFile::open(const std::string& path) {
  abandon();
  path_ = path;
  std::string templ = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(templ.data());
  if (fd < 0) {
    int e = errno;
    return io_error(fmt::format("cannot create a file in directory '{}' (for '{}'): {}", dir_of(path), path,
                                std::strerror(e)));
  }
  ::fchmod(fd, 0644);
  f_ = ::fdopen(fd, "wb");
  if (!f_) {
    int e = errno;
    ::close(fd);
    ::unlink(templ.c_str());
    return io_error(fmt::format("cannot open '{}' for writing: {}", templ, std::strerror(e)));
  }
  tmp_path_ = templ;
  return Status::Ok();
}

Status AtomicFile::write(const void* data, std::size_t n) {
  if (!f_) return internal_error("AtomicFile::write before open");
  if (n == 0) return Status::Ok();
  if (std::fwrite(data, 1, n, f_) != n) {
    int e = errno;
    return io_error(fmt::format("writing '{}' failed: {}", path_, std::strerror(e ? e : EIO)));
  }
  return Status::Ok();
}

Status AtomicFile::flush() {
  if (!f_) return internal_error("AtomicFile::flush before open");
  errno = 0;
  if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0) {
    int e = errno;
    return io_error(fmt::format("writing '{}' failed: {}", path_, std::strerror(e ? e : EIO)));
  }
  return Status::Ok();
}

Status AtomicFile::commit() {
  if (!f_) return internal_error("AtomicFile::commit before open");
  errno = 0;
  bool ok = std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
  int e = errno;
  ok = (std::fclose(f_) == 0) && ok;
  if (!ok && !e) e = errno;
  f_ = nullptr;
  if (!ok) {
    abandon();
    return io_error(fmt::format("writing '{}' failed: {}", path_, std::strerror(e ? e : EIO)));
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    e = errno;
    abandon();
    return io_error(fmt::format("cannot rename the temporary over '{}': {}", path_, std::strerror(e)));
  }
  tmp_path_.clear();
  int dfd = ::open(dir_of(path_).c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: the rename is durable once the directory is synced
    ::close(dfd);
  }
  return Status::Ok();
}

void AtomicFile::abandon() noexcept {
  if (f_) {
    std::fclose(f_);
    f_ = nullptr;
  }
  if (!tmp_path_.empty()) {
    ::unlink(tmp_path_.c_str());
    tmp_path_.clear();
  }
}

Status write_file_atomic(const std::string& path, const void* data, std::size_t n) {
  AtomicFile f;
  XENT_RETURN_IF_ERROR(f.open(path));
  XENT_RETURN_IF_ERROR(f.write(data, n));
  return f.commit();
}

}  // namespace xent::io
