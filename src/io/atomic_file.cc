// atomic_file.cc: output paths: links followed, devices and descriptors written directly, regular
// files through a temporary + fsync + rename, so an output is never half-written or replaced when
// it is a link or a device (see atomic_file.h for each case).
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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

// The descriptor N that "/dev/fd/N", "/proc/self/fd/N", "/proc/thread-self/fd/N" or
// "/proc/<our pid>/fd/N" names, or -1. These are "magic" links: reading them gives "pipe:[123]"
// or a deleted file, not a path to follow, so the descriptor itself is the output.
int fd_of_magic_path(const std::string& p) {
  std::string rest;
  const std::string own = fmt::format("/proc/{}/fd/", ::getpid());
  for (const std::string& prefix : {std::string("/dev/fd/"), std::string("/proc/self/fd/"),
                                   std::string("/proc/thread-self/fd/"), own}) {
    if (p.size() > prefix.size() && p.compare(0, prefix.size(), prefix) == 0) {
      rest = p.substr(prefix.size());
      break;
    }
  }
  if (rest.empty() || rest.size() > 9) return -1;
  int n = 0;
  for (char c : rest) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

// "'out.npy'" or, when links were followed, "'out.npy' (a link to 'data/real.npy')".
std::string describe(const std::string& given, const std::string& resolved) {
  if (given == resolved) return fmt::format("'{}'", given);
  return fmt::format("'{}' (a link to '{}')", given, resolved);
}

// Opens a Unix socket's path for writing (open() refuses sockets with ENXIO).
int connect_socket(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return -1;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM}) {
    int s = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    if (::connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return s;
    int e = errno;
    ::close(s);
    if (e != EPROTOTYPE) {
      errno = e;
      return -1;
    }
  }
  return -1;
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

Status write_all(int fd, const char* p, std::size_t n, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return io_error(fmt::format("writing {} failed: {}", what, std::strerror(errno)));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return ok_status();
}

}  // namespace

Result<OutputTarget> resolve_output_path(const std::string& path) {
  if (path.empty()) return invalid_argument("an empty output path; expected a file name or '-'");
  if (path == "-") return OutputTarget{OutputTarget::Kind::kDescriptor, "-", STDOUT_FILENO};
  if (path.back() == '/') return invalid_argument(fmt::format("'{}' names a directory; expected a file name", path));
  std::string cur = path;
  for (int hops = 0;; ++hops) {
    if (hops > 40) return invalid_argument(fmt::format("'{}': too many levels of symbolic links", path));
    if (int fd = fd_of_magic_path(cur); fd >= 0) {
      if (::fcntl(fd, F_GETFD) == -1) {
        return invalid_argument(fmt::format("{} names descriptor {}, which is not open", describe(path, cur), fd));
      }
      return OutputTarget{OutputTarget::Kind::kDescriptor, cur, fd};
    }
    struct stat st {};
    if (::lstat(cur.c_str(), &st) != 0) {
      const int e = errno;
      if (e == ENOENT) break;  // a new name, or a dangling link's target: created below
      if (e == ENOTDIR) {
        return invalid_argument(fmt::format("cannot write {}: a part of the path is not a directory",
                                            describe(path, cur)));
      }
      return invalid_argument(fmt::format("cannot write {}: {}", describe(path, cur), std::strerror(e)));
    }
    if (S_ISLNK(st.st_mode)) {
      std::string target(4096, '\0');
      ssize_t n = ::readlink(cur.c_str(), target.data(), target.size());
      if (n < 0 || static_cast<std::size_t>(n) >= target.size()) {
        return invalid_argument(fmt::format("cannot read the link {}", describe(path, cur)));
      }
      target.resize(static_cast<std::size_t>(n));
      cur = target.front() == '/' ? target : dir_of(cur) + "/" + target;
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      return invalid_argument(fmt::format("{} is a directory; expected a file name", describe(path, cur)));
    }
    if (S_ISREG(st.st_mode)) return OutputTarget{OutputTarget::Kind::kFile, cur, -1};
    if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
      return OutputTarget{OutputTarget::Kind::kDevice, cur, -1};
    }
    return invalid_argument(fmt::format("{} is a block device; expected a file, a character device or a pipe",
                                        describe(path, cur)));
  }
  const std::string dir = dir_of(cur);
  struct stat dst {};
  if (::stat(dir.c_str(), &dst) != 0 || !S_ISDIR(dst.st_mode)) {
    return invalid_argument(fmt::format("cannot write {}: the directory '{}' does not exist", describe(path, cur), dir));
  }
  return OutputTarget{OutputTarget::Kind::kFile, cur, -1};
}

Status check_output_path(const std::string& path) { return resolve_output_path(path).status(); }

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

Status AtomicFile::open(const std::string& path, const AtomicFileOptions& o) {
  abandon();
  path_ = path;
  durable_ = o.durable;
  if (!o.follow_links) {
    struct stat lst {};
    if (::lstat(path.c_str(), &lst) == 0 && !S_ISREG(lst.st_mode))
      return invalid_argument(fmt::format("'{}' is {}; expected a regular file or a new name (not followed)", path,
                                          S_ISLNK(lst.st_mode) ? "a symbolic link" : "not a regular file"));
  }
  Result<OutputTarget> r = o.follow_links ? resolve_output_path(path) : Result<OutputTarget>(OutputTarget{OutputTarget::Kind::kFile, path, -1});
  if (!r.ok()) return r.status();
  const OutputTarget& t = r.value();
  target_path_ = t.path;
  if (t.kind == OutputTarget::Kind::kDescriptor) {
    direct_fd_ = ::fcntl(t.fd, F_DUPFD_CLOEXEC, 3);
    if (direct_fd_ < 0) return io_error(fmt::format("cannot use descriptor {} for '{}': {}", t.fd, path, std::strerror(errno)));
    return ok_status();
  }
  if (t.kind == OutputTarget::Kind::kDevice) {
    // No O_CREAT (it exists), no O_TRUNC (a device or pipe has nothing to truncate; never surprise one).
    int fd = ::open(t.path.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && errno == ENXIO) fd = connect_socket(t.path);
    if (fd < 0) {
      const int e = errno;
      return io_error(fmt::format("cannot open {} for writing: {}", describe(path, t.path), std::strerror(e)));
    }
    direct_fd_ = fd;
    return ok_status();
  }
  // A regular file, existing or new: the temporary beside the final target, with its permissions.
  struct stat st {};
  const bool exists = ::stat(t.path.c_str(), &st) == 0;
  std::string templ = t.path + ".tmp.XXXXXX";
  int fd = ::mkstemp(templ.data());
  if (fd < 0) {
    int e = errno;
    return io_error(fmt::format("cannot create a file in directory '{}' (for {}): {}", dir_of(t.path),
                                describe(path, t.path), std::strerror(e)));
  }
  ::fchmod(fd, o.mode >= 0 ? static_cast<mode_t>(o.mode) : exists ? (st.st_mode & 07777) : 0644);
  f_ = ::fdopen(fd, "wb");
  if (!f_) {
    int e = errno;
    ::close(fd);
    ::unlink(templ.c_str());
    return io_error(fmt::format("cannot open '{}' for writing: {}", templ, std::strerror(e)));
  }
  tmp_path_ = templ;
  slot_ = register_temp(tmp_path_);
  return ok_status();
}

Status AtomicFile::write(const void* data, std::size_t n) {
  if (direct_fd_ >= 0) {
    direct_bytes_.append(static_cast<const char*>(data), n);
    return ok_status();
  }
  if (!f_) return internal_error("AtomicFile::write before open");
  if (n == 0) return ok_status();
  if (std::fwrite(data, 1, n, f_) != n) {
    int e = errno;
    return io_error(fmt::format("writing '{}' failed: {}", path_, std::strerror(e ? e : EIO)));
  }
  return ok_status();
}

Status AtomicFile::flush() {
  if (direct_fd_ >= 0) return ok_status();
  if (!f_) return internal_error("AtomicFile::flush before open");
  errno = 0;
  if (std::fflush(f_) != 0 || (durable_ && ::fsync(::fileno(f_)) != 0)) {
    int e = errno;
    return io_error(fmt::format("writing '{}' failed: {}", path_, std::strerror(e ? e : EIO)));
  }
  return ok_status();
}

Status AtomicFile::commit() {
  if (direct_fd_ >= 0) {
    std::fflush(stdout);  // anything the program printed before goes first
    Status s = write_all(direct_fd_, direct_bytes_.data(), direct_bytes_.size(), describe(path_, target_path_));
    ::close(direct_fd_);
    direct_fd_ = -1;
    direct_bytes_.clear();
    return s;
  }
  if (!f_) return internal_error("AtomicFile::commit before open");
  errno = 0;
  bool ok = std::fflush(f_) == 0 && (!durable_ || ::fsync(::fileno(f_)) == 0);
  int e = errno;
  ok = (std::fclose(f_) == 0) && ok;
  if (!ok && !e) e = errno;
  f_ = nullptr;
  if (!ok) {
    abandon();
    return io_error(fmt::format("writing '{}' failed: {}", path_, std::strerror(e ? e : EIO)));
  }
  if (::rename(tmp_path_.c_str(), target_path_.c_str()) != 0) {
    e = errno;
    abandon();
    return io_error(fmt::format("cannot rename the temporary over {}: {}", describe(path_, target_path_),
                                std::strerror(e)));
  }
  tmp_path_.clear();
  unregister_temp(slot_);
  slot_ = -1;
  int dfd = durable_ ? ::open(dir_of(target_path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: the rename is durable once the directory is synced
    ::close(dfd);
  }
  return ok_status();
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
  if (direct_fd_ >= 0) {
    ::close(direct_fd_);
    direct_fd_ = -1;
  }
  direct_bytes_.clear();
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
