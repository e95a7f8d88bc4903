// idx.cc: the IDX reader (plain and gzip'd) behind include/xent/io/idx.h. Every byte is hostile:
// sizes are checked before anything is allocated, and gzip data is inflated straight into one
// buffer of the size the (validated) header declares. Not a writer.
#include "xent/io/idx.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libdeflate.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <optional>

#include <fmt/format.h>

#include "guarded.h"

namespace xent::io {
namespace {

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

const char* type_name(std::uint8_t t) {
  switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return nullptr;
  }
}

int type_size(std::uint8_t t) {
  switch (t) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
  }
}

// Validated header: dims and payload size.
struct Header {
  std::uint8_t type = 0;
  std::vector<std::int64_t> dims;
  std::uint64_t payload = 0;
  std::size_t header_bytes = 0;
};

// `h4` is the first 4 bytes; `dims_bytes` the following 4 * rank bytes.
Status check_magic(const std::uint8_t* h4, std::string_view name, Header* out) {
  if (h4[0] != 0 || h4[1] != 0 || type_name(h4[2]) == nullptr || h4[3] == 0) {
    return data_loss(fmt::format(
        "{}: not an IDX file: expected magic 00 00 <type 08..0E> <rank 1..255> (e.g. 00 00 08 03), "
        "found {:02x} {:02x} {:02x} {:02x}",
        name, h4[0], h4[1], h4[2], h4[3]));
  }
  out->type = h4[2];
  out->dims.assign(h4[3], 0);
  out->header_bytes = 4 + 4 * std::size_t{h4[3]};
  return ok_status();
}

Status check_dims(const std::uint8_t* dims_bytes, std::string_view name, const IdxLimits& limits,
                  Header* h) {
  std::uint64_t count = 1;
  bool overflow = false;
  for (std::size_t i = 0; i < h->dims.size(); ++i) {
    std::uint32_t d = be32(dims_bytes + 4 * i);
    h->dims[i] = d;
    if (d != 0 && count > UINT64_MAX / d) overflow = true;
    if (!overflow) count *= d;
  }
  const std::uint64_t esize = static_cast<std::uint64_t>(type_size(h->type));
  if (overflow || count > UINT64_MAX / esize) {
    return resource_exhausted(fmt::format("{}: dimensions [{}] overflow a 64-bit element count", name,
                                          fmt::join(h->dims, ", ")));
  }
  h->payload = count * esize;
  if (h->payload > limits.max_payload_bytes) {
    return resource_exhausted(fmt::format("{}: dimensions [{}] declare {} bytes of data, more than the limit of {}",
                                          name, fmt::join(h->dims, ", "), h->payload,
                                          limits.max_payload_bytes));
  }
  return ok_status();
}

// Where the bytes come from: one memory block (parse_idx) or a file read in 1 MiB chunks
// (read_idx_file), so that a file is never held whole in memory besides the decoded payload.
class Source {
 public:
  virtual ~Source() = default;
  // The next chunk; *n == 0 at the end.
  virtual Status next(const std::uint8_t** p, std::size_t* n) = 0;
};

class MemorySource final : public Source {
 public:
  MemorySource(const std::uint8_t* b, std::size_t n) : b_(b), n_(n) {}
  Status next(const std::uint8_t** p, std::size_t* n) override {
    *p = b_;
    *n = done_ ? 0 : n_;
    done_ = true;
    return ok_status();
  }

 private:
  const std::uint8_t* b_;
  std::size_t n_;
  bool done_ = false;
};

class FileSource final : public Source {
 public:
  FileSource(int fd, std::string_view name) : fd_(fd), name_(name), buf_(std::size_t{1} << 20) {}
  Status next(const std::uint8_t** p, std::size_t* n) override {
    for (;;) {
      ssize_t r = ::read(fd_, buf_.data(), buf_.size());
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return io_error(fmt::format("{}: read failed: {}", name_, std::strerror(errno)));
      *p = buf_.data();
      *n = static_cast<std::size_t>(r);
      return ok_status();
    }
  }

 private:
  int fd_;
  std::string_view name_;
  std::vector<std::uint8_t> buf_;
};

// The IDX bytes of a source, plain or gzip'd (one or more members), read in order.
class Stream {
 public:
  Stream(Source& src, std::string_view name, std::uint64_t total) : src_(src), name_(name), total_(total) {}
  ~Stream() {
    if (zinit_) inflateEnd(&zs_);
  }
  Status init() {
    XENT_RETURN_IF_ERROR(fill());
    if (eof_) return data_loss(fmt::format("{}: empty file: expected an IDX header (00 00 08 03 ...) or gzip data", name_));
    gzip_ = cur_n_ >= 2 && cur_[0] == 0x1f && cur_[1] == 0x8b;
    if (gzip_) {
      std::memset(&zs_, 0, sizeof zs_);
      if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) return internal_error("zlib inflateInit2 failed");
      zinit_ = true;
    }
    return ok_status();
  }
  bool gzip() const { return gzip_; }
  const char* holds() const { return gzip_ ? "the gzip data holds" : "the file has"; }

  // Fills out[0, want); *got < want only when the data end first.
  Status read(std::uint8_t* out, std::uint64_t want, std::uint64_t* got) {
    *got = 0;
    while (*got < want) {
      if (!gzip_) {
        XENT_RETURN_IF_ERROR(fill());
        if (eof_) return ok_status();
        const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(cur_n_, want - *got));
        std::memcpy(out + *got, cur_, k);
        advance(k);
        *got += k;
        continue;
      }
      if (member_ended_) {
        XENT_RETURN_IF_ERROR(fill());
        if (eof_) return ok_status();
        if (cur_[0] != 0x1f) {
          return data_loss(fmt::format("{}: {} bytes after the end of the gzip stream at byte offset {} are not another "
                                       "gzip member (expected 1f 8b, found {:02x})",
                                       name_, total_ - consumed_, consumed_, cur_[0]));
        }
        if (inflateReset(&zs_) != Z_OK) return internal_error("zlib inflateReset failed");
        member_ended_ = false;
      }
      XENT_RETURN_IF_ERROR(fill());
      if (eof_) {
        return data_loss(fmt::format("{}: truncated gzip stream: the file ends after {} compressed bytes in the middle "
                                     "of a member",
                                     name_, consumed_));
      }
      const auto in_n = static_cast<uInt>(std::min<std::size_t>(cur_n_, std::size_t{1} << 30));
      const auto out_n = static_cast<uInt>(std::min<std::uint64_t>(want - *got, std::uint64_t{1} << 30));
      zs_.next_in = const_cast<Bytef*>(cur_);
      zs_.avail_in = in_n;
      zs_.next_out = out + *got;
      zs_.avail_out = out_n;
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      advance(in_n - zs_.avail_in);
      *got += out_n - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        member_ended_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return data_loss(fmt::format("{}: corrupt gzip data near compressed byte {}: {}", name_, consumed_,
                                     zs_.msg ? zs_.msg : "inflate failed"));
      }
    }
    return ok_status();
  }

  // Nothing may follow the declared data (complete gzip members without data are fine).
  Status expect_end(std::uint64_t declared) {
    std::uint8_t extra[64];
    std::uint64_t got = 0;
    XENT_RETURN_IF_ERROR(read(extra, sizeof extra, &got));
    if (got != 0) {
      return data_loss(gzip_ ? fmt::format("{}: the gzip stream holds more than the {} bytes (header + data) the IDX "
                                           "header declares (trailing data)",
                                           name_, declared)
                             : fmt::format("{}: {} trailing bytes after the {} bytes the IDX header declares", name_,
                                           total_ > declared ? total_ - declared : got, declared));
    }
    return ok_status();
  }

 private:
  Status fill() {
    if (cur_n_ > 0 || eof_) return ok_status();
    XENT_RETURN_IF_ERROR(src_.next(&cur_, &cur_n_));
    if (cur_n_ == 0) eof_ = true;
    return ok_status();
  }
  void advance(std::size_t k) {
    cur_ += k;
    cur_n_ -= k;
    consumed_ += k;
  }

  Source& src_;
  std::string_view name_;
  std::uint64_t total_;
  const std::uint8_t* cur_ = nullptr;
  std::size_t cur_n_ = 0;
  std::uint64_t consumed_ = 0;
  bool eof_ = false, gzip_ = false, zinit_ = false, member_ended_ = false;
  z_stream zs_{};
};

// Reads and validates the IDX header from the start of `s`. `total` is the size of the whole
// source (file) in bytes.
Status read_header(Stream& s, std::uint64_t total, std::string_view name, const IdxLimits& limits, Header* h) {
  XENT_RETURN_IF_ERROR(s.init());
  std::array<std::uint8_t, 4 + 4 * 255> hdr{};
  std::uint64_t got = 0;
  XENT_RETURN_IF_ERROR(s.read(hdr.data(), 4, &got));
  if (got < 4) return data_loss(fmt::format("{}: truncated IDX header: expected at least 4 bytes, {} {}", name, s.holds(), got));
  XENT_RETURN_IF_ERROR(check_magic(hdr.data(), name, h));
  XENT_RETURN_IF_ERROR(s.read(hdr.data() + 4, h->header_bytes - 4, &got));
  if (got < h->header_bytes - 4) {
    return data_loss(fmt::format("{}: truncated IDX header: rank {} needs {} header bytes, {} {}", name, h->dims.size(),
                                 h->header_bytes, s.holds(), 4 + got));
  }
  XENT_RETURN_IF_ERROR(check_dims(hdr.data() + 4, name, limits, h));
  const std::uint64_t declared = h->payload + h->header_bytes;
  if (s.gzip()) {
    // Deflate expands at most ~1032:1; a header that declares more than the compressed bytes can
    // hold is a lie, refused before allocating.
    if (declared / 1032 > total + 64) {
      return data_loss(fmt::format("{}: dimensions [{}] declare {} bytes, but {} bytes of gzip data can hold at most "
                                   "about {} (truncated or corrupt file)",
                                   name, fmt::join(h->dims, ", "), declared, total, total * 1032));
    }
  } else if (total != declared) {
    const std::uint64_t have = total - h->header_bytes;
    return data_loss(fmt::format("{}: dimensions [{}] declare {} bytes of data after the {}-byte header, found {}{}", name,
                                 fmt::join(h->dims, ", "), h->payload, h->header_bytes, have,
                                 have < h->payload ? " (truncated)" : " (trailing bytes)"));
  }
  return ok_status();
}

Result<IdxArray> parse_source(Source& src, std::uint64_t total, std::string_view name, const IdxLimits& limits) {
  Stream s(src, name, total);
  Header h;
  XENT_RETURN_IF_ERROR(read_header(s, total, name, limits, &h));
  IdxArray out;
  out.type = h.type;
  out.dims = h.dims;
  try {
    out.payload = ByteBuffer(h.payload);
  } catch (const std::bad_alloc&) {
    return resource_exhausted(fmt::format("{}: cannot allocate {} bytes for dimensions [{}]", name, h.payload,
                                          fmt::join(h.dims, ", ")));
  }
  std::uint64_t got = 0;
  XENT_RETURN_IF_ERROR(s.read(out.payload.data(), h.payload, &got));
  if (got < h.payload) {
    return data_loss(fmt::format("{}: truncated: dimensions [{}] declare {} bytes of data, {} {}", name,
                                 fmt::join(h.dims, ", "), h.payload, s.holds(), got));
  }
  XENT_RETURN_IF_ERROR(s.expect_end(h.payload + h.header_bytes));
  return out;
}

// The fast path for gzip'd data held whole in memory: zlib reads the header (a few bytes), then
// libdeflate inflates every member straight into the payload buffer, 2-3x faster than zlib's
// streaming inflate (it decodes whole buffers and needs no window copies). It succeeds only on
// well-formed members (CRC and length checked) that hold exactly the declared bytes; anything else
// returns nullopt and the caller runs the zlib stream, whose messages say what is wrong and where.
// Not a separate validator: the header checks are the stream's own.
std::optional<IdxArray> inflate_whole(const std::uint8_t* bytes, std::size_t n, std::uint64_t total,
                                      std::string_view name, const IdxLimits& limits) {
  MemorySource src(bytes, n);
  Stream s(src, name, total);
  Header h;
  if (!read_header(s, total, name, limits, &h).ok() || !s.gzip() || n != total) return std::nullopt;
  IdxArray out;
  out.type = h.type;
  out.dims = h.dims;
  try {
    out.payload = ByteBuffer(h.payload, h.header_bytes);
  } catch (const std::bad_alloc&) {
    return std::nullopt;
  }
  struct Free {
    void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
  };
  std::unique_ptr<libdeflate_decompressor, Free> d(libdeflate_alloc_decompressor());
  if (!d) return std::nullopt;
  const std::size_t declared = h.header_bytes + h.payload;
  std::uint8_t* dst = out.payload.front();
  std::size_t in_off = 0, out_off = 0;
  // Members in order; each fills the next part of the buffer. Empty trailing members are fine.
  while (in_off < n) {
    std::size_t in_used = 0, out_made = 0;
    if (libdeflate_gzip_decompress_ex(d.get(), bytes + in_off, n - in_off, dst + out_off, declared - out_off, &in_used,
                                      &out_made) != LIBDEFLATE_SUCCESS)
      return std::nullopt;
    in_off += in_used;
    out_off += out_made;
  }
  if (out_off != declared) return std::nullopt;
  return out;
}

// Reads all of a gzip'd file for inflate_whole when its first 64 KiB hold a valid IDX header and
// the file is no larger than that header's data could plausibly compress to (so a hostile file is
// never read whole before its header is checked). nullopt: stream it instead (plain files, bad
// headers, read errors: the stream reports them).
std::optional<ByteBuffer> read_whole_gzip(int fd, std::uint64_t total, std::string_view name, const IdxLimits& limits) {
  auto pread_all = [&](std::uint8_t* dst, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd, dst + done, n - done, static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      done += static_cast<std::size_t>(r);
    }
    return true;
  };
  std::array<std::uint8_t, 64 * 1024> prefix;
  const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(total, prefix.size()));
  if (k < 2 || !pread_all(prefix.data(), k) || prefix[0] != 0x1f || prefix[1] != 0x8b) return std::nullopt;
  MemorySource src(prefix.data(), k);
  Stream s(src, name, total);
  Header h;
  if (!read_header(s, total, name, limits, &h).ok()) return std::nullopt;
  // Stored (incompressible) deflate blocks cost 5 bytes per 65535, gzip members 18 and more.
  const std::uint64_t declared = h.payload + h.header_bytes;
  if (total > declared + declared / 64 + prefix.size()) return std::nullopt;
  try {
    ByteBuffer whole(static_cast<std::size_t>(total));
    if (!pread_all(whole.data(), whole.size())) return std::nullopt;
    return whole;
  } catch (const std::bad_alloc&) {
    return std::nullopt;
  }
}

}  // namespace

static Result<IdxArray> parse_idx_unguarded(const std::uint8_t* bytes, std::size_t n, std::string_view name, const IdxLimits& limits) {
  if (n >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
    if (auto fast = inflate_whole(bytes, n, n, name, limits)) return std::move(*fast);
  }
  MemorySource src(bytes, n);
  return parse_source(src, n, name, limits);
}

static Result<IdxArray> parse_idx_in_place(ByteBuffer bytes, std::string_view name, const IdxLimits& limits) {
  const std::size_t n = bytes.size();
  if (n >= 2 && bytes.data()[0] == 0x1f && bytes.data()[1] == 0x8b) return parse_idx_unguarded(bytes.data(), n, name, limits);
  // Plain: the header is validated as parse_source does (the sizes must match exactly), then the
  // payload stays where it is.
  MemorySource src(bytes.data(), n);
  Stream s(src, name, n);
  Header h;
  XENT_RETURN_IF_ERROR(read_header(s, n, name, limits, &h));
  IdxArray out;
  out.type = h.type;
  out.dims = h.dims;
  bytes.drop_front(static_cast<std::size_t>(h.header_bytes));
  out.payload = std::move(bytes);
  return out;
}

static Result<IdxArray> read_idx_file_unguarded(const std::string& path, const IdxLimits& limits) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return io_error(fmt::format("{}: not a regular file", path));
  }
  const auto total = static_cast<std::uint64_t>(st.st_size);
  if (std::optional<ByteBuffer> whole = read_whole_gzip(fd, total, path, limits)) {
    ::close(fd);
    if (auto fast = inflate_whole(whole->data(), whole->size(), total, path, limits)) return std::move(*fast);
    MemorySource src(whole->data(), whole->size());
    return parse_source(src, total, path, limits);
  }
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    const int e = errno;
    ::close(fd);
    return io_error(fmt::format("{}: cannot seek: {}", path, std::strerror(e)));
  }
  FileSource src(fd, path);
  Result<IdxArray> r = parse_source(src, total, path, limits);
  ::close(fd);
  return r;
}

static Result<LabeledImages> make_labeled_images_unguarded(IdxArray images, std::string_view images_name, IdxArray labels,
                                          std::string_view labels_name) {
  auto magic = [](const IdxArray& a) { return (unsigned{a.type} << 8) | static_cast<unsigned>(a.dims.size()); };
  if (images.type != 0x08 || images.dims.size() < 2 || images.dims.size() > 3) {
    return data_loss(fmt::format("{}: expected unsigned-byte images, magic 2051 (0x00000803, N x H x W) or 2050 "
                                 "(N x D), found magic {} (0x{:08x}: {}, {} dims)",
                                 images_name, magic(images), magic(images), type_name(images.type),
                                 images.dims.size()));
  }
  if (labels.type != 0x08 || labels.dims.size() != 1) {
    return data_loss(fmt::format("{}: expected unsigned-byte labels, magic 2049 (0x00000801), found magic {} "
                                 "(0x{:08x}: {}, {} dims)",
                                 labels_name, magic(labels), magic(labels), type_name(labels.type),
                                 labels.dims.size()));
  }
  if (images.dims[0] != labels.dims[0]) {
    return data_loss(fmt::format("{} has {} images but {} has {} labels; they must agree", images_name,
                                 images.dims[0], labels_name, labels.dims[0]));
  }
  LabeledImages out;
  out.n = images.dims[0];
  out.height = images.dims.size() == 3 ? images.dims[1] : 1;
  out.width = images.dims.back();
  // Bound the image size even for an empty set (N = 0): features() must not overflow later.
  constexpr std::int64_t kMaxFeatures = std::int64_t{1} << 31;
  std::int64_t feats = 0;
  if (out.height < 0 || out.width < 0 || __builtin_mul_overflow(out.height, out.width, &feats) ||
      feats > kMaxFeatures) {
    return data_loss(fmt::format("{}: images of {} x {} pixels exceed the limit of {} pixels per image", images_name,
                                 out.height, out.width, kMaxFeatures));
  }
  if (out.n > 0 && out.features() == 0) {
    return data_loss(fmt::format("{}: images of size 0 ({} dims [{}])", images_name, images.dims.size(),
                                 fmt::join(images.dims, ", ")));
  }
  out.pixels = std::move(images.payload);
  out.labels.resize(static_cast<std::size_t>(out.n));
  const std::uint8_t* l = labels.payload.data();
  for (std::int64_t i = 0; i < out.n; ++i) out.labels[static_cast<std::size_t>(i)] = l[i];
  return out;
}

static Result<LabeledImages> load_labeled_images_unguarded(const std::string& images_path, const std::string& labels_path,
                                          const IdxLimits& limits) {
  auto images = read_idx_file(images_path, limits);
  if (!images.ok()) return images.status();
  auto labels = read_idx_file(labels_path, limits);
  if (!labels.ok()) return labels.status();
  return make_labeled_images(std::move(*images), images_path, std::move(*labels), labels_path);
}

static Result<IdxDatasetPaths> find_idx_dataset_unguarded(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return io_error(fmt::format("{}: not a directory", dir));
  auto find = [&](std::initializer_list<const char*> prefixes, const char* kind, const char* rank,
                  std::string* out) -> Status {
    std::vector<std::string> tried;
    for (const char* p : prefixes) {
      for (const char* sep : {"-", "."}) {
        for (const char* ext : {".gz", ""}) {
          std::string name = fmt::format("{}-{}{}idx{}-ubyte{}", p, kind, sep, rank, ext);
          fs::path full = fs::path(dir) / name;
          if (fs::is_regular_file(full, ec)) {
            *out = full.string();
            return ok_status();
          }
          if (tried.size() < 4) tried.push_back(name);
        }
      }
    }
    return io_error(fmt::format("{}: no {} file found (tried {}, ...)", dir, kind, fmt::join(tried, ", ")));
  };
  IdxDatasetPaths p;
  XENT_RETURN_IF_ERROR(find({"train"}, "images", "3", &p.train_images));
  XENT_RETURN_IF_ERROR(find({"train"}, "labels", "1", &p.train_labels));
  XENT_RETURN_IF_ERROR(find({"t10k", "test"}, "images", "3", &p.test_images));
  XENT_RETURN_IF_ERROR(find({"t10k", "test"}, "labels", "1", &p.test_labels));
  return p;
}

// ---- the public entry points: nothing they throw crosses the boundary (guarded.h) ----

Result<IdxArray> parse_idx(const std::uint8_t* bytes, std::size_t n, std::string_view name, const IdxLimits& limits) noexcept {
  return xent::detail::guarded("parse_idx", [&]() -> Result<IdxArray> {
    return parse_idx_unguarded(bytes, n, name, limits);
  });
}

Result<IdxArray> parse_idx(ByteBuffer bytes, std::string_view name, const IdxLimits& limits) noexcept {
  return xent::detail::guarded("parse_idx", [&]() -> Result<IdxArray> {
    return parse_idx_in_place(std::move(bytes), name, limits);
  });
}

Result<IdxArray> read_idx_file(const std::string& path, const IdxLimits& limits) noexcept {
  return xent::detail::guarded("read_idx_file", [&]() -> Result<IdxArray> {
    return read_idx_file_unguarded(path, limits);
  });
}

Result<LabeledImages> make_labeled_images(IdxArray images, std::string_view images_name, IdxArray labels,
                                          std::string_view labels_name) noexcept {
  return xent::detail::guarded("make_labeled_images", [&]() -> Result<LabeledImages> {
    return make_labeled_images_unguarded(std::move(images), images_name, std::move(labels), labels_name);
  });
}

Result<LabeledImages> load_labeled_images(const std::string& images_path, const std::string& labels_path,
                                          const IdxLimits& limits) noexcept {
  return xent::detail::guarded("load_labeled_images", [&]() -> Result<LabeledImages> {
    return load_labeled_images_unguarded(images_path, labels_path, limits);
  });
}

Result<IdxDatasetPaths> find_idx_dataset(const std::string& dir) noexcept {
  return xent::detail::guarded("find_idx_dataset", [&]() -> Result<IdxDatasetPaths> {
    return find_idx_dataset_unguarded(dir);
  });
}

}  // namespace xent::io
