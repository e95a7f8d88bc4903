// atomic_file.cc: temporary file + fsync + rename, so an output is never half-written.
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
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

// Temporaries a signal handler must remove: a fixed table (no allocation, async-signal-safe reads).
// A slot is 0 free, 1 being filled, 2 holding a path.
struct TempSlot {
  std::atomic<int> state{0};
  char path[4096];
};
TempSlot g_temps[64];

int register_temp(const std::string& path) {
  if (path.size() >= sizeof g_temps[0].path) return -1;
  for (int i = 0; i < 64; ++i) {
    int expected = 0;
    if (g_temps[i].state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
      std::memcpy(g_temps[i].path, path.c_str(), path.size() + 1);
      g_temps[i].state.store(2, std::memory_order_release);
      return i;
    }
  }
  return -1;  // more than 64 open at once: those are not cleaned up on a signal
}

void unregister_temp(int slot) {
  if (slot >= 0) g_temps[slot].state.store(0, std::memory_order_release);
}

extern "C" void remove_temps_and_reraise(int sig) {
  for (auto& t : g_temps) {
    if (t.state.load(std::memory_order_acquire) == 2) ::unlink(t.path);
  }
  // SA_RESETHAND restored the default action; the signal is blocked until we return, then kills.
  ::raise(sig);
}

}  // namespace

void install_signal_cleanup() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;  // e.g. under nohup
    struct sigaction sa {};
    sa.sa_handler = remove_temps_and_reraise;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    ::sigaction(sig, &sa, nullptr);
  }
  ::signal(SIGXFSZ, SIG_IGN);
}

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
  slot_ = register_temp(tmp_path_);
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
  unregister_temp(slot_);
  slot_ = -1;
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
  unregister_temp(slot_);
  slot_ = -1;
}

Status write_file_atomic(const std::string& path, const void* data, std::size_t n) {
  AtomicFile f;
  XENT_RETURN_IF_ERROR(f.open(path));
  XENT_RETURN_IF_ERROR(f.write(data, n));
  return f.commit();
}

}  // namespace xent::io
