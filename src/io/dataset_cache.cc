// dataset_cache.cc: the decoded-IDX cache behind io/dataset_cache.h: the entry format, its checks
// on read (every byte of an entry is as hostile as a file's), and the atomic, no-follow write. Not
// an IDX parser: the entry's bytes go through parse_idx.
//
// Entry layout (little-endian), version 1:
//   0  8  magic "XENTIDXC"       8  4  version (1)          12 4  header bytes H (= 80 + path bytes)
//   16 8  source size            24 8  source mtime, ns     32 8  source ctime, ns
//   40 8  source inode           48 8  source device        56 8  the source's last 8 bytes
//   64 8  decoded bytes D        72 4  CRC-32 of them       76 4  path bytes L
//   80 L  the canonical source path
//   H  D  the decoded, plain IDX file (header and data)
// The file is exactly H + D bytes.
#include "io/dataset_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libdeflate.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <optional>

#include <fmt/format.h>

#include "io/atomic_file.h"

namespace xent::io {
namespace {

constexpr char kMagic[8] = {'X', 'E', 'N', 'T', 'I', 'D', 'X', 'C'};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kFixed = 80;      // header bytes before the path
constexpr std::size_t kMaxPath = 4096;  // PATH_MAX

void put32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void put64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint32_t get32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
std::uint64_t get64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// What identifies a source's content without reading it. ctime cannot be set back by a user
// (touch -d and utime set mtime only), so a rewrite that restores the old size and mtime still
// misses; the gzip trailer catches a rewrite on a filesystem with coarse timestamps.
struct Stamp {
  std::uint64_t size = 0, mtime_ns = 0, ctime_ns = 0, ino = 0, dev = 0;
  std::array<std::uint8_t, 8> tail{};

  bool same_file(const Stamp& o) const {
    return size == o.size && mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns && ino == o.ino && dev == o.dev;
  }
  bool operator==(const Stamp& o) const { return same_file(o) && tail == o.tail; }
};

std::uint64_t ns(const timespec& t) {
  return static_cast<std::uint64_t>(t.tv_sec) * 1000000000u + static_cast<std::uint64_t>(t.tv_nsec);
}

Stamp stamp_of(const struct stat& st) {
  Stamp s;
  s.size = static_cast<std::uint64_t>(st.st_size);
  s.mtime_ns = ns(st.st_mtim);
  s.ctime_ns = ns(st.st_ctim);
  s.ino = static_cast<std::uint64_t>(st.st_ino);
  s.dev = static_cast<std::uint64_t>(st.st_dev);
  return s;
}

bool pread_all(int fd, std::uint8_t* dst, std::size_t n, std::uint64_t off) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, dst + done, n - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}

// FNV-1a, 64 bits: only to give each source path its own entry name (the path itself is stored
// in the entry and compared, so a collision is a miss, never a wrong hit).
std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// "<source file name without .gz>.<hash>.xent-cache", the name kept to safe characters.
std::string entry_name(const std::string& canonical) {
  std::string base = canonical.substr(canonical.find_last_of('/') + 1);
  if (base.size() > 3 && base.compare(base.size() - 3, 3, ".gz") == 0) base.resize(base.size() - 3);
  if (base.size() > 96) base.resize(96);
  for (char& c : base) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok) c = '_';
  }
  return fmt::format("{}.{:016x}.xent-cache", base, fnv1a(canonical));
}

// mkdir -p with 0700 for every directory it creates (the XDG spec's mode for cache directories).
Status make_private_dirs(const std::string& dir) {
  for (std::size_t i = 1; i <= dir.size(); ++i) {
    if (i < dir.size() && dir[i] != '/') continue;
    const std::string sub = dir.substr(0, i);
    if (::mkdir(sub.c_str(), 0700) != 0 && errno != EEXIST) {
      struct stat st {};
      if (::stat(sub.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return io_error(fmt::format("cannot create the directory '{}': {}", sub, std::strerror(errno)));
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return io_error(fmt::format("'{}' is not a directory", dir));
  return ok_status();
}

// The entry's array when it is usable for `canonical` as stamped now; nullopt otherwise.
//
// The entry is mapped rather than read (map_file_bytes), and the array's payload stays in the
// mapping (parse_idx over the buffer): no copy, and no fresh pages for the kernel to zero, which
// on Fashion-MNIST's 47 MB costs more than the copy itself. Reading into a fresh buffer and copying
// once more in parse_idx measured ~24 ms, mapping and copying once ~14 ms, against ~100 ms to
// inflate the gzip'd file. A mapped file that shrinks under us would fault (SIGBUS); xent never
// writes an entry in place (only a rename replaces it, and the mapped inode stays whole; a removed
// entry's inode lives while mapped), and the entry is this user's, writable by no one else.
std::optional<IdxArray> read_entry(const std::string& entry, const std::string& canonical, const Stamp& source,
                                   const IdxLimits& limits) {
  const int fd = ::open(entry.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0)
    return std::nullopt;
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < kFixed + canonical.size()) return std::nullopt;
  const std::size_t h_n = kFixed + canonical.size();
  std::array<std::uint8_t, kFixed + kMaxPath> h{};
  if (h_n > h.size() || !pread_all(fd, h.data(), h_n, 0)) return std::nullopt;
  if (std::memcmp(h.data(), kMagic, 8) != 0 || get32(h.data() + 8) != kVersion || get32(h.data() + 12) != h_n ||
      get32(h.data() + 76) != canonical.size() || std::memcmp(h.data() + kFixed, canonical.data(), canonical.size()) != 0)
    return std::nullopt;
  Stamp recorded;
  recorded.size = get64(h.data() + 16);
  recorded.mtime_ns = get64(h.data() + 24);
  recorded.ctime_ns = get64(h.data() + 32);
  recorded.ino = get64(h.data() + 40);
  recorded.dev = get64(h.data() + 48);
  std::memcpy(recorded.tail.data(), h.data() + 56, 8);
  if (!(recorded == source)) return std::nullopt;
  const std::uint64_t decoded = get64(h.data() + 64);
  if (decoded != size - h_n || decoded < 4) return std::nullopt;  // truncated, or bytes appended
  Result<ByteBuffer> whole = map_file_bytes(fd, size, entry);
  if (!whole.ok()) return std::nullopt;
  whole->drop_front(h_n);
  const std::uint8_t* bytes = whole->data();
  // Plain IDX starts 00 00 (parse_idx would inflate bytes that start like gzip).
  if (bytes[0] != 0 || bytes[1] != 0) return std::nullopt;
  // The CRC catches what the IDX parser cannot: a changed pixel or label byte parses fine. It costs
  // ~4 ms on Fashion-MNIST's 47 MB (libdeflate's CRC-32 uses carry-less multiplies), and it lets the
  // write skip fsync: an entry torn by a crash fails here and is rewritten.
  if (libdeflate_crc32(0, bytes, static_cast<std::size_t>(decoded)) != get32(h.data() + 72)) return std::nullopt;
  Result<IdxArray> r = parse_idx(std::move(*whole), entry, limits);
  if (!r.ok()) return std::nullopt;
  return std::move(r).value();
}

// The plain IDX header that parse_idx read for `a` (type, rank, big-endian dimensions).
std::vector<std::uint8_t> idx_header(const IdxArray& a) {
  std::vector<std::uint8_t> h = {0, 0, a.type, static_cast<std::uint8_t>(a.dims.size())};
  for (std::int64_t d : a.dims) {
    const auto v = static_cast<std::uint32_t>(d);
    h.insert(h.end(), {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                       static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)});
  }
  return h;
}

Status write_entry(const std::string& dir, const std::string& entry, const std::string& canonical, const Stamp& s,
                   const IdxArray& a) {
  XENT_RETURN_IF_ERROR(make_private_dirs(dir));
  const std::vector<std::uint8_t> idx = idx_header(a);
  std::vector<std::uint8_t> h(kFixed + canonical.size());
  std::memcpy(h.data(), kMagic, 8);
  put32(h.data() + 8, kVersion);
  put32(h.data() + 12, static_cast<std::uint32_t>(h.size()));
  put64(h.data() + 16, s.size);
  put64(h.data() + 24, s.mtime_ns);
  put64(h.data() + 32, s.ctime_ns);
  put64(h.data() + 40, s.ino);
  put64(h.data() + 48, s.dev);
  std::memcpy(h.data() + 56, s.tail.data(), 8);
  put64(h.data() + 64, idx.size() + a.payload.size());
  put32(h.data() + 72, libdeflate_crc32(libdeflate_crc32(0, idx.data(), idx.size()), a.payload.data(), a.payload.size()));
  put32(h.data() + 76, static_cast<std::uint32_t>(canonical.size()));
  std::memcpy(h.data() + kFixed, canonical.data(), canonical.size());
  AtomicFile f;
  AtomicFileOptions o;
  o.follow_links = false;
  o.mode = 0600;
  o.durable = false;  // checked by its CRC on every read (see read_entry)
  XENT_RETURN_IF_ERROR(f.open(entry, o));
  XENT_RETURN_IF_ERROR(f.write(h.data(), h.size()));
  XENT_RETURN_IF_ERROR(f.write(idx.data(), idx.size()));
  XENT_RETURN_IF_ERROR(f.write(a.payload.data(), a.payload.size()));
  return f.commit();
}

// Keeps the directory from collecting entries of sources that are gone (datasets moved or
// deleted, temporary directories): removes this user's entries whose recorded source path no
// longer exists, and temporaries (*.xent-cache.tmp.*) a killed run left over a day ago. Run once
// per process, after an entry was written (a miss), so hits never pay for it. Best effort: any
// error leaves the file alone.
void prune(const std::string& dir) {
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  const std::string suffix = ".xent-cache";
  const auto now = ::time(nullptr);
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    const std::string path = dir + "/" + name;
    const std::size_t at = name.find(suffix);
    if (at == std::string::npos) continue;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) continue;
    if (name.compare(at, suffix.size() + 5, suffix + ".tmp.") == 0) {
      if (now - st.st_mtime > 24 * 3600) ::unlink(path.c_str());
      continue;
    }
    if (at + suffix.size() != name.size()) continue;
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    std::array<std::uint8_t, kFixed + kMaxPath> h{};
    const bool read_ok = pread_all(fd, h.data(), kFixed, 0);
    const std::uint32_t n = read_ok ? get32(h.data() + 76) : 0;
    const bool ok = read_ok && std::memcmp(h.data(), kMagic, 8) == 0 && n > 0 && n < kMaxPath &&
                    pread_all(fd, h.data() + kFixed, n, kFixed);
    ::close(fd);
    if (!ok) continue;
    const std::string source(reinterpret_cast<const char*>(h.data() + kFixed), n);
    struct stat sst {};
    if (source[0] == '/' && ::lstat(source.c_str(), &sst) != 0 && errno == ENOENT) ::unlink(path.c_str());
  }
  ::closedir(d);
}

// The source's stamp and whether it is gzip'd; nullopt when it cannot be examined (read_idx_file
// then says why, or reads it plain).
struct Source {
  Stamp stamp;
  bool gzip = false;
};
std::optional<Source> examine(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::optional<Source> out;
  std::uint8_t magic[2] = {0, 0};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    Source s;
    s.stamp = stamp_of(st);
    s.gzip = s.stamp.size >= 18 && pread_all(fd, magic, 2, 0) && magic[0] == 0x1f && magic[1] == 0x8b;
    if (!s.gzip || pread_all(fd, s.stamp.tail.data(), 8, s.stamp.size - 8)) out = s;
  }
  ::close(fd);
  return out;
}

CachedIdx cached_unguarded(const std::string& path, const std::string& dir, bool enabled, const IdxLimits& limits) {
  CachedIdx out;
  if (!enabled) {
    out.array = read_idx_file(path, limits);
    return out;
  }
  const std::optional<Source> src = examine(path);
  char canon[PATH_MAX];
  if (!src || !src->gzip || ::realpath(path.c_str(), canon) == nullptr) {
    out.use = CacheUse::kPlain;
    out.array = read_idx_file(path, limits);
    return out;
  }
  if (dir.empty()) {
    out.array = read_idx_file(path, limits);
    if (out.array.ok())
      out.write_error = io_error("no cache directory (none of XENT_CACHE_DIR, XDG_CACHE_HOME, HOME is set)");
    return out;
  }
  const std::string canonical = canon;
  out.entry = dir + (dir.back() == '/' ? "" : "/") + entry_name(canonical);
  if (std::optional<IdxArray> hit = read_entry(out.entry, canonical, src->stamp, limits)) {
    out.use = CacheUse::kHit;
    out.array = std::move(*hit);
    return out;
  }
  out.use = CacheUse::kMiss;
  out.array = read_idx_file(path, limits);
  if (!out.array.ok()) return out;
  // Cache only what was read from the file as stamped: a source that changed meanwhile is not
  // recorded under its old stamp (its next run misses and records the new one).
  struct stat after {};
  if (::stat(path.c_str(), &after) != 0 || !stamp_of(after).same_file(src->stamp)) return out;
  out.write_error = write_entry(dir, out.entry, canonical, src->stamp, out.array.value());
  if (out.write_error.ok()) prune(dir);
  return out;
}

}  // namespace

std::string default_dataset_cache_dir() {
  if (const char* x = std::getenv("XENT_CACHE_DIR"); x != nullptr && *x != '\0') return x;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && x[0] == '/') return std::string(x) + "/xent";
  if (const char* x = std::getenv("HOME"); x != nullptr && *x != '\0') return std::string(x) + "/.cache/xent";
  return "";
}

const char* cache_use_name(CacheUse u) noexcept {
  switch (u) {
    case CacheUse::kOff: return "off";
    case CacheUse::kPlain: return "plain";
    case CacheUse::kHit: return "hit";
    case CacheUse::kMiss: return "miss";
  }
  return "?";
}

CachedIdx read_idx_file_cached(const std::string& path, const std::string& dir, bool enabled,
                               const IdxLimits& limits) noexcept {
  try {
    return cached_unguarded(path, dir, enabled, limits);
  } catch (const std::bad_alloc&) {
    CachedIdx out;
    out.array = resource_exhausted(fmt::format("{}: out of memory while reading", path));
    return out;
  } catch (const std::exception& e) {
    CachedIdx out;
    out.array = internal_error(fmt::format("{}: {}", path, e.what()));
    return out;
  }
}

}  // namespace xent::io
