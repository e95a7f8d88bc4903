// npy.cc: the .npy reader and writer behind include/xent/io/npy.h.
//
// Reading is two steps: parse the preamble and header dict into a Header (pure checks over at most
// kMaxHeaderBytes bytes), then decode exactly the declared number of data bytes into a native,
// C-order NpyArray (byte-swapping, widening small integer types and transposing Fortran order as
// needed). read_npy streams a regular file through the same two steps without holding the raw file
// in memory; parse_npy does it over a caller's buffer. Not here: .npz, memory mapping, pickles.
#include "xent/io/npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <new>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "guarded.h"
#include "io/atomic_file.h"

namespace xent::io {
namespace detail {

struct NpyAccess {
  static NpyArray make(DType dtype, const Shape& shape, std::int64_t numel, std::unique_ptr<std::byte[]> data,
                       std::string file_dtype) {
    NpyArray a;
    a.dtype_ = dtype;
    a.shape_ = shape;
    a.numel_ = numel;
    a.data_ = std::move(data);
    a.file_dtype_ = std::move(file_dtype);
    return a;
  }
};

}  // namespace detail

namespace {

constexpr unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
// NumPy's own headers for the dtypes we accept are < 200 bytes; anything this large is hostile.
constexpr std::size_t kMaxHeaderBytes = 65536;

// The element type as the file stores it.
struct FileDType {
  std::string descr;       // as written, e.g. "<f4"
  char kind = 'f';         // 'f', 'i', 'u' or 'b'
  int size = 4;            // bytes per element in the file
  bool swap = false;       // file byte order differs from the host's
  DType mem = DType::kF32; // what it becomes in memory

  std::string describe() const {
    const char* name = "?";
    if (kind == 'f') name = size == 2 ? "float16" : size == 4 ? "float32" : "float64";
    if (kind == 'V') name = "bfloat16, as ml_dtypes saves it";
    if (kind == 'b') name = "bool";
    if (kind == 'i') name = size == 1 ? "int8" : size == 2 ? "int16" : size == 4 ? "int32" : "int64";
    if (kind == 'u') name = size == 1 ? "uint8" : size == 2 ? "uint16" : "uint32";
    return fmt::format("'{}' ({})", descr, name);
  }
  bool identity() const { return !swap && dtype_size(mem) == static_cast<std::size_t>(size) && kind != 'b'; }
};

struct Header {
  FileDType dt;
  bool fortran_order = false;
  Shape shape;
  std::int64_t numel = 0;
  std::uint64_t file_bytes = 0;  // data bytes in the file
  std::uint64_t mem_bytes = 0;   // bytes of the in-memory array
  std::size_t data_offset = 0;   // preamble + header dict
};

// Up to `max` bytes shown as a quoted string with non-printables escaped, for "found ..." parts.
std::string show_bytes(const unsigned char* p, std::size_t n, std::size_t max = 12) {
  std::string s = "'";
  for (std::size_t i = 0; i < std::min(n, max); ++i) {
    unsigned char c = p[i];
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      s += static_cast<char>(c);
    } else {
      s += fmt::format("\\x{:02x}", c);
    }
  }
  s += n > max ? "'..." : "'";
  return s;
}

std::string plural(std::uint64_t n, const char* word) { return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s"); }

// --- preamble -----------------------------------------------------------------------------------

// Checks magic, version and header length over the first bytes of the file. On success
// *dict_offset is where the header dict starts and *dict_len its length. `avail` is the file size
// (or the bytes available); the dict must fit in it.
Status parse_preamble(const unsigned char* p, std::size_t n, std::uint64_t file_size, const std::string& name,
                      std::size_t* dict_offset, std::size_t* dict_len) {
  if (file_size == 0) {
    return data_loss(fmt::format("'{}' is empty; expected a NumPy .npy file (starting with \\x93NUMPY)", name));
  }
  if (n < 6 || std::memcmp(p, kMagic, 6) != 0) {
    if (n < 6 && std::memcmp(p, kMagic, n) == 0) {
      return data_loss(fmt::format("'{}' is truncated: expected the 6-byte .npy magic \\x93NUMPY, found only {}",
                                   name, plural(n, "byte")));
    }
    return data_loss(fmt::format("'{}' is not a NumPy .npy file: expected the magic \\x93NUMPY at offset 0, found {}",
                                 name, show_bytes(p, n)));
  }
  if (n < 8) {
    return data_loss(fmt::format("'{}' is truncated: expected a 2-byte format version after the magic, found {}",
                                 name, plural(n - 6, "byte")));
  }
  unsigned major = p[6], minor = p[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
    return data_loss(fmt::format("'{}': unsupported .npy format version {}.{}; expected 1.0, 2.0 or 3.0", name,
                                 major, minor));
  }
  std::size_t len_bytes = major == 1 ? 2 : 4;
  if (n < 8 + len_bytes) {
    return data_loss(fmt::format("'{}' is truncated: expected a {}-byte header length after the version, found {}",
                                 name, len_bytes, plural(n - 8, "byte")));
  }
  std::uint64_t len = major == 1 ? (std::uint64_t{p[8]} | std::uint64_t{p[9]} << 8)
                                 : (std::uint64_t{p[8]} | std::uint64_t{p[9]} << 8 | std::uint64_t{p[10]} << 16 |
                                    std::uint64_t{p[11]} << 24);
  if (len > kMaxHeaderBytes) {
    return data_loss(fmt::format("'{}': the .npy header length is {} bytes; expected at most {}", name, len,
                                 kMaxHeaderBytes));
  }
  std::uint64_t start = 8 + len_bytes;
  if (file_size - start < len) {
    return data_loss(fmt::format("'{}' is truncated: the header declares {} but only {} follow the preamble", name,
                                 plural(len, "byte"), plural(file_size - start, "byte")));
  }
  *dict_offset = static_cast<std::size_t>(start);
  *dict_len = static_cast<std::size_t>(len);
  return ok_status();
}

// --- header dict --------------------------------------------------------------------------------

// A strict reader for the Python dict literal NumPy writes:
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   + spaces + '\n'
class DictParser {
 public:
  DictParser(std::string_view text, std::size_t base, const std::string& name, bool void2_as_bfloat16)
      : t_(text), base_(base), name_(name), void2_as_bfloat16_(void2_as_bfloat16) {}

  Status parse(Header* h) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    std::string descr;
    std::vector<std::int64_t> dims;
    skip_ws();
    if (!eat('{')) return expected("'{' opening the header dict");
    skip_ws();
    while (!eat('}')) {
      std::string key;
      std::size_t key_pos = i_;
      XENT_RETURN_IF_ERROR(parse_string(&key, "a quoted key ('descr', 'fortran_order' or 'shape')"));
      skip_ws();
      if (!eat(':')) return expected("':' after the key");
      skip_ws();
      if (key == "descr") {
        if (have_descr) return duplicate(key, key_pos);
        have_descr = true;
        if (peek() == '[') {
          return fail(i_, "structured dtypes (a list for 'descr') are not supported; expected a string like '<f4'");
        }
        XENT_RETURN_IF_ERROR(parse_string(&descr, "a quoted dtype string like '<f4' for 'descr'"));
      } else if (key == "fortran_order") {
        if (have_fortran) return duplicate(key, key_pos);
        have_fortran = true;
        if (eat_word("True")) {
          h->fortran_order = true;
        } else if (eat_word("False")) {
          h->fortran_order = false;
        } else {
          return expected("True or False for 'fortran_order'");
        }
      } else if (key == "shape") {
        if (have_shape) return duplicate(key, key_pos);
        have_shape = true;
        XENT_RETURN_IF_ERROR(parse_shape(&dims));
      } else {
        return fail(key_pos, fmt::format("unexpected key '{}'; expected only 'descr', 'fortran_order' and 'shape'",
                                         printable(key)));
      }
      skip_ws();
      if (eat(',')) {
        skip_ws();
        continue;
      }
      if (peek() != '}') return expected("',' or '}' after a value");
    }
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r')) ++i_;
    if (i_ != t_.size()) return expected("only spaces and a newline after the closing '}'");
    const char* missing = !have_descr ? "descr" : !have_fortran ? "fortran_order" : !have_shape ? "shape" : nullptr;
    if (missing) {
      return data_loss(fmt::format("'{}': the .npy header has no '{}' key; expected 'descr', 'fortran_order' and "
                                   "'shape'",
                                   name_, missing));
    }
    XENT_RETURN_IF_ERROR(parse_descr(descr, &h->dt));
    if (dims.size() > static_cast<std::size_t>(Shape::kMaxDims)) {
      return data_loss(fmt::format("'{}': the array has {} dimensions; xent supports at most {}", name_, dims.size(),
                                   Shape::kMaxDims));
    }
    if (!Shape::from_dims(dims.data(), static_cast<int>(dims.size()), &h->shape)) {
      return internal_error("Shape::from_dims refused a checked rank");
    }
    return ok_status();
  }

 private:
  char peek() const { return i_ < t_.size() ? t_[i_] : '\0'; }
  bool eat(char c) {
    if (peek() != c || i_ >= t_.size()) return false;
    ++i_;
    return true;
  }
  bool eat_word(std::string_view w) {
    if (t_.substr(i_, w.size()) != w) return false;
    std::size_t j = i_ + w.size();
    if (j < t_.size() && (std::isalnum(static_cast<unsigned char>(t_[j])) || t_[j] == '_')) return false;
    i_ = j;
    return true;
  }
  void skip_ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r')) ++i_;
  }
  // `s` with non-printable bytes escaped, for quoting inside messages.
  static std::string printable(std::string_view s) {
    std::string q = show_bytes(reinterpret_cast<const unsigned char*>(s.data()), s.size(), 24);
    return q.substr(1, q.size() - (q.back() == '\'' ? 2 : 5)) + (q.back() == '\'' ? "" : "...");
  }
  std::string found() const {
    if (i_ >= t_.size()) return "the end of the header";
    return show_bytes(reinterpret_cast<const unsigned char*>(t_.data() + i_), t_.size() - i_, 16);
  }
  Status fail(std::size_t pos, const std::string& what) const {
    return data_loss(fmt::format("'{}': malformed .npy header at byte {}: {}", name_, base_ + pos, what));
  }
  Status expected(const std::string& what) const { return fail(i_, fmt::format("expected {}, found {}", what, found())); }
  Status duplicate(const std::string& key, std::size_t pos) const {
    return fail(pos, fmt::format("the key '{}' appears twice; expected each key once", key));
  }

  // A Python string literal in single or double quotes, without escapes.
  Status parse_string(std::string* out, const char* what) {
    char q = peek();
    if (q != '\'' && q != '"') return expected(what);
    std::size_t start = ++i_;
    while (i_ < t_.size() && t_[i_] != q) {
      if (t_[i_] == '\\') return fail(i_, "escape sequences in header strings are not supported");
      if (t_[i_] == '\n') break;
      ++i_;
    }
    if (i_ >= t_.size() || t_[i_] != q) {
      i_ = start - 1;
      return expected(fmt::format("a closing {} for the string", q));
    }
    *out = std::string(t_.substr(start, i_ - start));
    ++i_;
    return ok_status();
  }

  // A tuple of non-negative integers: (), (3,), (2, 3), (2, 3,) and Python 2's (3L,).
  Status parse_shape(std::vector<std::int64_t>* dims) {
    if (peek() == '[') return expected("a tuple like (2, 3) for 'shape' (a list is not a tuple)");
    if (!eat('(')) return expected("'(' starting the 'shape' tuple");
    skip_ws();
    while (!eat(')')) {
      std::size_t pos = i_;
      if (peek() == '-') {
        ++i_;
        std::size_t s = i_;
        while (std::isdigit(static_cast<unsigned char>(peek()))) ++i_;
        return fail(pos, fmt::format("shape entry -{} is negative; expected a size >= 0",
                                     std::string(t_.substr(s, i_ - s))));
      }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) return expected("a non-negative integer in 'shape'");
      std::uint64_t v = 0;
      bool overflow = false;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        unsigned d = static_cast<unsigned>(t_[i_++] - '0');
        if (v > (static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) - d) / 10) overflow = true;
        if (!overflow) v = v * 10 + d;
      }
      if (overflow) {
        return fail(pos, fmt::format("shape entry {} does not fit in a signed 64-bit integer",
                                     std::string(t_.substr(pos, i_ - pos))));
      }
      eat('L');
      if (dims->size() > static_cast<std::size_t>(Shape::kMaxDims)) {
        return data_loss(fmt::format("'{}': the 'shape' in the .npy header has more than {} dimensions; xent "
                                     "supports at most {}",
                                     name_, Shape::kMaxDims, Shape::kMaxDims));
      }
      dims->push_back(static_cast<std::int64_t>(v));
      skip_ws();
      if (eat(',')) {
        skip_ws();
        continue;
      }
      if (peek() != ')') return expected("',' or ')' in 'shape'");
      if (dims->size() == 1) return expected("',' after the only entry of 'shape' (a 1-tuple is written (n,))");
    }
    return ok_status();
  }

  Status parse_descr(const std::string& d, FileDType* out) const {
    const char* accepted =
        "expected float16 ('<f2'), float32 ('<f4'), float64 ('<f8'), int32 ('<i4'), int64 ('<i8'), bool, int8, "
        "int16, uint8, uint16, uint32 (read as int64), or bfloat16 ('<V2', when asked for)";
    auto refuse = [&](const std::string& why) {
      return data_loss(fmt::format("'{}': unsupported dtype '{}' ({}); {}", name_, printable(d), why, accepted));
    };
    if (d.size() < 3) return refuse("not a dtype string");
    char order = d[0], kind = d[1];
    std::string_view digits = std::string_view(d).substr(2);
    if (order != '<' && order != '>' && order != '|' && order != '=') {
      return refuse("expected a byte order '<', '>', '|' or '=' first");
    }
    if (digits.empty() || digits.size() > 2 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return refuse("expected an item size in bytes after the kind");
    }
    int size = std::stoi(std::string(digits));
    FileDType dt;
    dt.descr = d;
    dt.kind = kind;
    dt.size = size;
    switch (kind) {
      case 'f':
        if (size == 4) dt.mem = DType::kF32;
        else if (size == 8) dt.mem = DType::kF64;
        else if (size == 2) dt.mem = DType::kF16;
        else return refuse(fmt::format("{}-byte float", size));
        break;
      case 'i':
        if (size == 4) dt.mem = DType::kI32;
        else if (size == 1 || size == 2 || size == 8) dt.mem = DType::kI64;
        else return refuse(fmt::format("{}-byte integer", size));
        break;
      case 'u':
        if (size == 1 || size == 2 || size == 4) dt.mem = DType::kI64;
        else if (size == 8) return refuse("uint64 values above 2^63 have no int64");
        else return refuse(fmt::format("{}-byte unsigned integer", size));
        break;
      case 'b':
        if (size != 1) return refuse(fmt::format("{}-byte bool", size));
        dt.mem = DType::kI64;
        break;
      case 'c': return refuse("complex");
      case 'O': return refuse("Python objects");
      case 'U': case 'S': case 'a': return refuse("strings");
      case 'M': case 'm': return refuse("dates and times");
      case 'V':
        // The bfloat16 convention (npy.h): ml_dtypes registers bfloat16 with NumPy as kind 'V',
        // byte order '=' and item size 2, and np.save writes dtype.str (numpy/lib/format.py
        // dtype_to_descr), so its files say '<V2' ('>V2' on a big-endian host); np.load without
        // ml_dtypes reads them as 2-byte void, which np.save writes back as '|V2' (still the
        // little-endian bytes). Raw bytes carry no type, so they are bfloat16 only when the caller
        // says so.
        if (size != 2) return refuse("raw or structured data");
        if (!void2_as_bfloat16_) {
          return data_loss(fmt::format("'{}': dtype '{}' is 2 bytes of raw data (how np.save stores ml_dtypes' "
                                       "bfloat16); read it as bfloat16 by asking for bfloat16 (the CLI's "
                                       "--dtype bf16)",
                                       name_, printable(d)));
        }
        dt.mem = DType::kBF16;
        if (order == '|') order = '<';
        break;
      default: return refuse(fmt::format("unknown kind '{}'", printable(std::string(1, kind))));
    }
    if (order == '|' && size != 1) return refuse("byte order '|' is only valid for 1-byte types");
    bool file_big = order == '>';
    bool host_big = std::endian::native == std::endian::big;
    dt.swap = size > 1 && order != '=' && order != '|' && file_big != host_big;
    *out = dt;
    return ok_status();
  }

  std::string_view t_;
  std::size_t base_;  // offset of t_ in the file, for messages
  const std::string& name_;
  bool void2_as_bfloat16_;  // NpyReadOptions::void2_as_bfloat16
  std::size_t i_ = 0;
};

// Fills in numel and byte counts and checks them against overflow and the size limit.
Status check_sizes(Header* h, const std::string& name, const NpyReadOptions& options) {
  std::int64_t numel = 0;
  if (!h->shape.numel_checked(&numel)) {
    return data_loss(fmt::format("'{}': the shape {} has more elements than fit in a signed 64-bit integer", name,
                                 h->shape.to_string()));
  }
  std::uint64_t file_bytes = 0, mem_bytes = 0;
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel), static_cast<std::uint64_t>(h->dt.size), &file_bytes) ||
      __builtin_mul_overflow(static_cast<std::uint64_t>(numel), static_cast<std::uint64_t>(dtype_size(h->dt.mem)),
                             &mem_bytes)) {
    return data_loss(fmt::format("'{}': the shape {} of {} needs more bytes than fit in 64 bits", name,
                                 h->shape.to_string(), h->dt.describe()));
  }
  if (mem_bytes > options.max_bytes || mem_bytes > std::numeric_limits<std::size_t>::max() / 2) {
    return resource_exhausted(fmt::format("'{}': the shape {} of {} needs {} bytes in memory; the limit is {} bytes",
                                          name, h->shape.to_string(), h->dt.describe(), mem_bytes,
                                          options.max_bytes));
  }
  h->numel = numel;
  h->file_bytes = file_bytes;
  h->mem_bytes = mem_bytes;
  return ok_status();
}

Status parse_header(const unsigned char* p, std::size_t n, std::uint64_t file_size, const std::string& name,
                    const NpyReadOptions& options, Header* h) {
  std::size_t dict_offset = 0, dict_len = 0;
  XENT_RETURN_IF_ERROR(parse_preamble(p, n, file_size, name, &dict_offset, &dict_len));
  if (n < dict_offset + dict_len) return internal_error("parse_header called without the whole header");
  std::string_view text(reinterpret_cast<const char*>(p) + dict_offset, dict_len);
  XENT_RETURN_IF_ERROR(DictParser(text, dict_offset, name, options.void2_as_bfloat16).parse(h));
  h->data_offset = dict_offset + dict_len;
  XENT_RETURN_IF_ERROR(check_sizes(h, name, options));
  std::uint64_t avail = file_size - h->data_offset;
  if (avail < h->file_bytes) {
    return data_loss(fmt::format("'{}' is truncated: the header declares {} {} values ({}) but only {} follow the "
                                 "header",
                                 name, h->numel, h->dt.describe(), plural(h->file_bytes, "byte"),
                                 plural(avail, "byte")));
  }
  if (avail > h->file_bytes) {
    return data_loss(fmt::format("'{}' has {} of trailing data after the {} {} values ({}) the header declares",
                                 name, plural(avail - h->file_bytes, "byte"), h->numel, h->dt.describe(),
                                 plural(h->file_bytes, "byte")));
  }
  return ok_status();
}

// --- decoding -----------------------------------------------------------------------------------

std::unique_ptr<std::byte[]> allocate(std::uint64_t bytes, bool zero) {
  std::size_t n = static_cast<std::size_t>(std::max<std::uint64_t>(bytes, 1));
  return zero ? std::unique_ptr<std::byte[]>(new (std::nothrow) std::byte[n]())
              : std::unique_ptr<std::byte[]>(new (std::nothrow) std::byte[n]);
}

Status out_of_memory(const std::string& name, std::uint64_t bytes) {
  return resource_exhausted(fmt::format("'{}': cannot allocate {} bytes for the array", name, bytes));
}

std::uint64_t load_unsigned(const unsigned char* p, int size, bool swap) {
  unsigned char b[8];
  for (int k = 0; k < size; ++k) b[k] = swap ? p[size - 1 - k] : p[k];
  std::uint64_t v = 0;
  if (std::endian::native == std::endian::little) {
    for (int k = size - 1; k >= 0; --k) v = v << 8 | b[k];
  } else {
    for (int k = 0; k < size; ++k) v = v << 8 | b[k];
  }
  return v;
}

// Converts `numel` file elements at `src` to the in-memory dtype at `dst` (same element order).
void decode(const unsigned char* src, const FileDType& dt, std::int64_t numel, std::byte* dst) {
  const std::size_t count = static_cast<std::size_t>(numel);
  if (dt.identity()) {
    if (count) std::memcpy(dst, src, count * static_cast<std::size_t>(dt.size));
    return;
  }
  if (dt.mem != DType::kI64 || dt.size == 8) {  // same width, byte-swapped
    const std::size_t s = static_cast<std::size_t>(dt.size);
    for (std::size_t e = 0; e < count; ++e) {
      for (std::size_t k = 0; k < s; ++k) dst[e * s + k] = static_cast<std::byte>(src[e * s + s - 1 - k]);
    }
    return;
  }
  auto* out = reinterpret_cast<std::int64_t*>(dst);
  const int s = dt.size;
  const unsigned bits = static_cast<unsigned>(s) * 8;
  for (std::size_t e = 0; e < count; ++e) {
    std::uint64_t u = load_unsigned(src + e * static_cast<std::size_t>(s), s, dt.swap);
    std::int64_t v;
    if (dt.kind == 'b') {
      v = u != 0;
    } else if (dt.kind == 'i' && (u >> (bits - 1)) != 0) {
      v = static_cast<std::int64_t>(u) - (std::int64_t{1} << bits);  // sign-extend int8 / int16
    } else {
      v = static_cast<std::int64_t>(u);
    }
    out[e] = v;
  }
}

// Rewrites Fortran-order data (first index fastest) into C order. `src` and `dst` do not overlap.
void fortran_to_c(const std::byte* src, const Shape& shape, std::size_t esz, std::byte* dst) {
  const int rank = shape.rank();
  std::int64_t numel = shape.numel();
  if (numel == 0) return;
  std::int64_t fstride[Shape::kMaxDims];
  std::int64_t s = 1;
  for (int d = 0; d < rank; ++d) {
    fstride[d] = s;
    s *= shape[d];
  }
  std::int64_t idx[Shape::kMaxDims] = {};
  std::int64_t off = 0;  // source element offset of idx
  for (std::int64_t e = 0; e < numel; ++e) {
    std::memcpy(dst + static_cast<std::size_t>(e) * esz, src + static_cast<std::size_t>(off) * esz, esz);
    for (int d = rank - 1; d >= 0; --d) {  // C-order odometer: last index fastest
      if (++idx[d] < shape[d]) {
        off += fstride[d];
        break;
      }
      off -= fstride[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

// Builds the array from exactly h.file_bytes bytes at `src`.
Result<NpyArray> build(const Header& h, const unsigned char* src, const std::string& name) {
  auto data = allocate(h.mem_bytes, false);
  if (!data) return out_of_memory(name, h.mem_bytes);
  bool transpose = h.fortran_order && h.shape.rank() >= 2;
  if (!transpose) {
    decode(src, h.dt, h.numel, data.get());
  } else {
    auto tmp = allocate(h.mem_bytes, false);
    if (!tmp) return out_of_memory(name, h.mem_bytes);
    decode(src, h.dt, h.numel, tmp.get());
    fortran_to_c(tmp.get(), h.shape, dtype_size(h.dt.mem), data.get());
  }
  return detail::NpyAccess::make(h.dt.mem, h.shape, h.numel, std::move(data), h.dt.describe());
}

// Reads exactly n bytes at `offset`; false on a short read (*err = 0) or an error (*err = errno).
bool pread_exact(int fd, void* buf, std::size_t n, std::uint64_t offset, int* err) {
  auto* p = static_cast<unsigned char*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30), static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return false;
    }
    if (r == 0) {
      *err = 0;
      return false;
    }
    p += r;
    n -= static_cast<std::size_t>(r);
    offset += static_cast<std::uint64_t>(r);
  }
  return true;
}

Status read_failed(const std::string& path, int err) {
  return io_error(fmt::format("reading '{}' failed: {}", path,
                              err ? std::strerror(err) : "the file became shorter while it was read"));
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Opens `path` read-only into *f and stats it; the error names the path and the failing step.
Status open_for_reading(const std::string& path, Fd* f, struct stat* st) {
  f->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    int e = errno;
    return io_error(fmt::format("cannot open '{}': {}", path, std::strerror(e)));
  }
  if (::fstat(f->fd, st) != 0) {
    int e = errno;
    return io_error(fmt::format("cannot stat '{}': {}", path, std::strerror(e)));
  }
  return ok_status();
}

}  // namespace

Result<NpyArray> NpyArray::zeros(DType dtype, const Shape& shape) {
  std::int64_t numel = 0;
  for (int d = 0; d < shape.rank(); ++d) {
    if (shape[d] < 0) return invalid_argument(fmt::format("shape {} has a negative dimension", shape.to_string()));
  }
  std::uint64_t bytes = 0;
  if (!shape.numel_checked(&numel) ||
      __builtin_mul_overflow(static_cast<std::uint64_t>(numel), dtype_size(dtype), &bytes) ||
      bytes > std::numeric_limits<std::size_t>::max() / 2) {
    return resource_exhausted(fmt::format("an array of shape {} and dtype {} is too large", shape.to_string(),
                                          dtype_name(dtype)));
  }
  auto data = allocate(bytes, true);
  if (!data) {
    return resource_exhausted(fmt::format("cannot allocate {} bytes for an array of shape {}", bytes,
                                          shape.to_string()));
  }
  return detail::NpyAccess::make(dtype, shape, numel, std::move(data), "");
}

static Result<NpyArray> parse_npy_unguarded(const void* bytes, std::size_t n, const std::string& name_for_errors,
                           const NpyReadOptions& options) {
  const auto* p = static_cast<const unsigned char*>(bytes);
  if (p == nullptr && n > 0) return invalid_argument("parse_npy: null buffer with a non-zero size");
  Header h;
  XENT_RETURN_IF_ERROR(parse_header(p, n, n, name_for_errors, options, &h));
  return build(h, p + h.data_offset, name_for_errors);
}

static Result<NpyArray> read_npy_unguarded(const std::string& path, const NpyReadOptions& options) {
  Fd f;
  struct stat st {};
  XENT_RETURN_IF_ERROR(open_for_reading(path, &f, &st));
  if (S_ISDIR(st.st_mode)) return io_error(fmt::format("'{}' is a directory; expected a .npy file", path));
  int err = 0;
  if (!S_ISREG(st.st_mode)) {
    // A pipe or device: read it whole (bounded by the size limit), then parse in memory.
    std::vector<unsigned char> buf;
    const std::uint64_t slack = kMaxHeaderBytes + 16;
    const std::uint64_t cap = options.max_bytes > UINT64_MAX - slack ? UINT64_MAX : options.max_bytes + slack;
    unsigned char chunk[1 << 16];
    for (;;) {
      ssize_t r = ::read(f.fd, chunk, sizeof chunk);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        int e = errno;
        return io_error(fmt::format("reading '{}' failed: {}", path, std::strerror(e)));
      }
      if (r == 0) break;
      if (buf.size() + static_cast<std::size_t>(r) > cap) {
        return resource_exhausted(fmt::format("'{}' is longer than the limit of {} bytes", path, options.max_bytes));
      }
      buf.insert(buf.end(), chunk, chunk + r);
    }
    return parse_npy(buf.data(), buf.size(), path, options);
  }

  const std::uint64_t file_size = static_cast<std::uint64_t>(st.st_size);
  std::vector<unsigned char> head(static_cast<std::size_t>(std::min<std::uint64_t>(file_size, 12)));
  if (!pread_exact(f.fd, head.data(), head.size(), 0, &err)) return read_failed(path, err);
  std::size_t dict_offset = 0, dict_len = 0;
  XENT_RETURN_IF_ERROR(parse_preamble(head.data(), head.size(), file_size, path, &dict_offset, &dict_len));
  head.resize(dict_offset + dict_len);
  if (!pread_exact(f.fd, head.data() + dict_offset, dict_len, dict_offset, &err)) return read_failed(path, err);
  Header h;
  XENT_RETURN_IF_ERROR(parse_header(head.data(), head.size(), file_size, path, options, &h));
  bool direct = h.dt.identity() && !(h.fortran_order && h.shape.rank() >= 2);
  if (direct) {
    auto data = allocate(h.mem_bytes, false);
    if (!data) return out_of_memory(path, h.mem_bytes);
    if (!pread_exact(f.fd, data.get(), static_cast<std::size_t>(h.file_bytes), h.data_offset, &err)) {
      return read_failed(path, err);
    }
    return detail::NpyAccess::make(h.dt.mem, h.shape, h.numel, std::move(data), h.dt.describe());
  }
  auto raw = allocate(h.file_bytes, false);
  if (!raw) return out_of_memory(path, h.file_bytes);
  if (!pread_exact(f.fd, raw.get(), static_cast<std::size_t>(h.file_bytes), h.data_offset, &err)) {
    return read_failed(path, err);
  }
  return build(h, reinterpret_cast<const unsigned char*>(raw.get()), path);
}

static Result<NpyArray> read_npy_rows_unguarded(const std::string& path, std::int64_t row0, std::int64_t rows,
                               const NpyReadOptions& options, Shape* file_shape) {
  Fd f;
  struct stat st {};
  XENT_RETURN_IF_ERROR(open_for_reading(path, &f, &st));
  if (!S_ISREG(st.st_mode)) return io_error(fmt::format("'{}' is not a regular file; a partial read needs one", path));
  const std::uint64_t file_size = static_cast<std::uint64_t>(st.st_size);
  int err = 0;
  std::vector<unsigned char> head(static_cast<std::size_t>(std::min<std::uint64_t>(file_size, 12)));
  if (!pread_exact(f.fd, head.data(), head.size(), 0, &err)) return read_failed(path, err);
  std::size_t dict_offset = 0, dict_len = 0;
  XENT_RETURN_IF_ERROR(parse_preamble(head.data(), head.size(), file_size, path, &dict_offset, &dict_len));
  head.resize(dict_offset + dict_len);
  if (!pread_exact(f.fd, head.data() + dict_offset, dict_len, dict_offset, &err)) return read_failed(path, err);
  Header h;
  NpyReadOptions whole = options;
  whole.max_bytes = std::numeric_limits<std::uint64_t>::max() / 4;  // the limit applies to the rows read
  XENT_RETURN_IF_ERROR(parse_header(head.data(), head.size(), file_size, path, whole, &h));
  if (h.shape.rank() < 1) return invalid_argument(fmt::format("'{}' is a 0-d array; it has no rows to read", path));
  if (h.fortran_order && h.shape.rank() >= 2)
    return unimplemented(fmt::format("'{}' is in Fortran order; reading a range of rows needs C order", path));
  const std::int64_t total = h.shape[0];
  if (file_shape != nullptr) *file_shape = h.shape;
  if (row0 < 0 || rows < 0 || row0 > total || rows > total - row0)
    return out_of_range(fmt::format("rows [{}, {}) are outside the {} rows of '{}'", row0, row0 + rows, total, path));
  Shape shape = h.shape;
  shape[0] = rows;
  const std::int64_t per_row = total == 0 ? 0 : h.numel / total;
  const std::int64_t numel = per_row * rows;
  const std::uint64_t mem = static_cast<std::uint64_t>(numel) * dtype_size(h.dt.mem);
  if (mem > options.max_bytes)
    return resource_exhausted(fmt::format("'{}': rows [{}, {}) need {} bytes in memory; the limit is {} bytes", path,
                                          row0, row0 + rows, mem, options.max_bytes));
  const std::uint64_t row_bytes = static_cast<std::uint64_t>(per_row) * static_cast<std::uint64_t>(h.dt.size);
  const std::uint64_t bytes = row_bytes * static_cast<std::uint64_t>(rows);
  auto raw = allocate(bytes, false);
  if (!raw && bytes > 0) return out_of_memory(path, bytes);
  if (bytes > 0 && !pread_exact(f.fd, raw.get(), static_cast<std::size_t>(bytes),
                                h.data_offset + row_bytes * static_cast<std::uint64_t>(row0), &err))
    return read_failed(path, err);
  Header part = h;
  part.shape = shape;
  part.numel = numel;
  part.mem_bytes = mem;
  part.file_bytes = bytes;
  part.fortran_order = false;
  return build(part, reinterpret_cast<const unsigned char*>(raw.get()), path);
}

static std::string npy_header_unguarded(DType dtype, const Shape& shape) {
  const char order = std::endian::native == std::endian::little ? '<' : '>';
  // bfloat16 is written as '<V2', the descr np.save gives ml_dtypes' bfloat16 (see parse_descr).
  const char* code = dtype == DType::kF32   ? "f4"
                     : dtype == DType::kF64 ? "f8"
                     : dtype == DType::kI32 ? "i4"
                     : dtype == DType::kF16 ? "f2"
                     : dtype == DType::kBF16 ? "V2"
                                             : "i8";
  std::string dims;
  for (int d = 0; d < shape.rank(); ++d) dims += fmt::format("{}, ", shape[d]);
  if (shape.rank() > 1) dims.resize(dims.size() - 2);      // (2, 3)
  else if (shape.rank() == 1) dims.resize(dims.size() - 1);  // (3,)
  std::string dict = fmt::format("{{'descr': '{}{}', 'fortran_order': False, 'shape': ({}), }}", order, code, dims);
  std::size_t total = 10 + dict.size() + 1;  // preamble + dict + '\n'
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::string out(reinterpret_cast<const char*>(kMagic), 6);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  out += dict;
  return out;
}

static Status write_npy_unguarded(const std::string& path, ConstTensorView array) {
  std::int64_t numel = 0;
  if (!array.shape.numel_checked(&numel)) {
    return invalid_argument(fmt::format("write_npy: invalid shape {}", array.shape.to_string()));
  }
  if (static_cast<unsigned>(array.dtype) > static_cast<unsigned>(DType::kF16))
    return invalid_argument(fmt::format("write_npy: expected a float16, bfloat16, float32, float64, int32 or int64 "
                                        "array, found dtype code {}",
                                        static_cast<unsigned>(array.dtype)));
  if (array.capacity != kUnknownCapacity && numel > array.capacity)
    return invalid_argument(fmt::format("write_npy: shape {} needs {} elements, but the buffer holds {}",
                                        array.shape.to_string(), numel, array.capacity));
  const std::size_t bytes = static_cast<std::size_t>(numel) * dtype_size(array.dtype);
  if (array.data == nullptr && bytes > 0) return invalid_argument("write_npy: null data with a non-empty shape");
  io::AtomicFile f;
  XENT_RETURN_IF_ERROR(f.open(path));
  XENT_RETURN_IF_ERROR(f.write(npy_header_unguarded(array.dtype, array.shape)));
  XENT_RETURN_IF_ERROR(f.write(array.data, bytes));
  return f.commit();
}

// ---- the public entry points: nothing they throw crosses the boundary (guarded.h) ----

Result<NpyArray> parse_npy(const void* bytes, std::size_t n, const std::string& name_for_errors,
                           const NpyReadOptions& options) noexcept {
  return xent::detail::guarded("parse_npy", [&]() -> Result<NpyArray> {
    return parse_npy_unguarded(bytes, n, name_for_errors, options);
  });
}

Result<NpyArray> read_npy(const std::string& path, const NpyReadOptions& options) noexcept {
  return xent::detail::guarded("read_npy", [&]() -> Result<NpyArray> {
    return read_npy_unguarded(path, options);
  });
}

Result<NpyArray> read_npy_rows(const std::string& path, std::int64_t row0, std::int64_t rows,
                               const NpyReadOptions& options, Shape* file_shape) noexcept {
  return xent::detail::guarded("read_npy_rows", [&]() -> Result<NpyArray> {
    return read_npy_rows_unguarded(path, row0, rows, options, file_shape);
  });
}

Result<std::string> npy_header(DType dtype, const Shape& shape) noexcept {
  return xent::detail::guarded("npy_header", [&]() -> Result<std::string> {
    return Result<std::string>(npy_header_unguarded(dtype, shape));
  });
}

Status write_npy(const std::string& path, ConstTensorView array) noexcept {
  return xent::detail::guarded("write_npy", [&]() -> Status {
    return write_npy_unguarded(path, array);
  });
}

}  // namespace xent::io
