// csv.cc: numeric CSV tables with a header row as float32 features and int32 labels, given as
// class numbers or class names (include/xent/io/csv.h). The CSV grammar (quotes, escaped quotes, line ends) is Debian's libcsv
// in strict mode; this file checks the table's shape and parses each field as a number. Not a
// general CSV reader.
#include "xent/io/csv.h"

#include <csv.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <unordered_map>

#include <fmt/format.h>

#include "guarded.h"
#include "xent/io/file.h"

namespace xent::io {
namespace {

// A field as a message shows it: at most 40 bytes, control bytes and quotes escaped, so a hostile
// field cannot break the one-line message.
std::string shown(std::string_view s) {
  std::string o = "'";
  for (std::size_t i = 0; i < s.size() && i < 40; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') o += fmt::format("\\x{:02x}", c);
    else o += static_cast<char>(c);
  }
  if (s.size() > 40) o += "...";
  return o + "'";
}

// "+1.5" and "1.5" alike (from_chars takes no '+').
std::string_view drop_plus(std::string_view s) {
  return s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+' ? s.substr(1) : s;
}

// A finite number within float32's range, or false. Parsed as double and then rounded to float,
// as NumPy's loadtxt(dtype=float32) does.
bool parse_feature(std::string_view s, float* out) {
  s = drop_plus(s);
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ptr != s.data() + s.size() || s.empty()) return false;
  if (r.ec == std::errc::result_out_of_range) {
    // Overflow is refused; underflow (1e-400) is a tiny number: strtod gives 0 or a subnormal.
    const std::string z(s);
    errno = 0;
    v = std::strtod(z.c_str(), nullptr);
    if (!std::isfinite(v) || std::fabs(v) > 1) return false;
  } else if (r.ec != std::errc()) {
    return false;
  }
  if (!std::isfinite(v) || std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) return false;
  *out = static_cast<float>(v);
  return true;
}

struct Parse {
  std::string_view name;
  const CsvFeatureOptions* options = nullptr;
  std::vector<std::string> header;
  bool in_header = true;
  std::int64_t label_col = -1;
  std::int64_t row = 0;     // data rows completed
  std::int64_t field = 0;   // fields seen in the current row
  std::string error;        // the first error; later callbacks do nothing
  bool oom = false;         // an allocation failed in a callback
  CsvFeatures out;
  // The label column as read: each row's label as an index into the distinct label fields (kept
  // in order of first appearance, with that row); numbers or names are decided at the end.
  std::vector<std::int32_t> label_ids;
  std::vector<std::string> label_text;
  std::vector<std::int64_t> label_first_row;
  std::unordered_map<std::string, std::int32_t> label_id;

  void fail(std::string message) {
    if (error.empty()) error = std::move(message);
  }
  std::string where(std::int64_t col) const { return where_row(row, col); }
  std::string where_row(std::int64_t r, std::int64_t col) const {
    const std::string col_name = col < static_cast<std::int64_t>(header.size()) ? header[static_cast<std::size_t>(col)] : "";
    return fmt::format("{}: data row {}, column {} ({})", name, r + 1, col, shown(col_name));
  }

  void on_field(const char* p, std::size_t len) {
    if (!error.empty() || oom) return;
    const std::string_view s(p ? p : "", p ? len : 0);
    if (in_header) {
      header.emplace_back(s);
      ++field;
      return;
    }
    const std::int64_t col = field++;
    if (col >= static_cast<std::int64_t>(header.size())) return;  // counted; refused at the row's end
    if (s.empty()) return fail(where(col) + ": expected a number, found an empty field (missing values are not supported)");
    if (col == label_col) {
      const std::string key(s);
      auto it = label_id.find(key);
      if (it == label_id.end()) {
        if (label_text.size() >= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
          return fail(where(col) + ": more than 2^31 distinct labels");
        it = label_id.emplace(key, static_cast<std::int32_t>(label_text.size())).first;
        label_text.push_back(key);
        label_first_row.push_back(row);
      }
      label_ids.push_back(it->second);
      return;
    }
    float v = 0;
    if (!parse_feature(s, &v))
      return fail(where(col) + ": expected a finite number within float32's range, found " + shown(s));
    out.features.push_back(v);
  }

  void on_row_end() {
    if (!error.empty() || oom) return;
    const std::int64_t fields = field;
    field = 0;
    if (in_header) {
      in_header = false;
      if (!header.empty() && header[0].rfind("\xEF\xBB\xBF", 0) == 0) header[0].erase(0, 3);  // UTF-8 BOM
      return choose_label_column();
    }
    if (fields != static_cast<std::int64_t>(header.size()))
      return fail(fmt::format("{}: data row {} has {} fields, the header has {}; expected the same count in every row", name,
                              row + 1, fields, header.size()));
    ++row;
  }

  // The labels once every row is read. A column whose fields are all numbers holds class numbers,
  // each an integer in [0, 2^31) ("1.5" or "-1" is refused, never taken for a name). A column with
  // any other field holds class names: every field is a name ("3" too), and the classes are the
  // distinct names in byte order (as scikit-learn's LabelEncoder sorts them).
  void finish_labels() {
    if (label_col < 0) return;
    const auto is_number = [](std::string_view t) {
      t = drop_plus(t);
      double v = 0;
      const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
      return !t.empty() && r.ptr == t.data() + t.size() && (r.ec == std::errc() || r.ec == std::errc::result_out_of_range);
    };
    const bool numbers = std::all_of(label_text.begin(), label_text.end(), is_number);
    std::vector<std::int32_t> value(label_text.size());
    if (numbers) {
      for (std::size_t k = 0; k < label_text.size(); ++k) {  // in order of first appearance: the first bad row is named
        const std::string_view t = drop_plus(label_text[k]);
        std::int64_t y = 0;
        const auto r = std::from_chars(t.data(), t.data() + t.size(), y);
        const std::string at = where_row(label_first_row[k], label_col);
        if (r.ptr != t.data() + t.size() || (r.ec != std::errc() && r.ec != std::errc::result_out_of_range))
          return fail(at + ": expected an integer class label, found " + shown(label_text[k]) +
                      " (class labels are integers 0, 1, ... or class names)");
        if (r.ec != std::errc() || y < 0 || y > std::numeric_limits<std::int32_t>::max())
          return fail(at + ": expected a class label in [0, 2^31), found " + shown(label_text[k]));
        value[k] = static_cast<std::int32_t>(y);
      }
    } else {
      std::vector<std::int32_t> order(label_text.size());
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
        return label_text[static_cast<std::size_t>(a)] < label_text[static_cast<std::size_t>(b)];
      });
      out.label_names.reserve(order.size());
      for (std::size_t i = 0; i < order.size(); ++i) {
        value[static_cast<std::size_t>(order[i])] = static_cast<std::int32_t>(i);
        out.label_names.push_back(label_text[static_cast<std::size_t>(order[i])]);
      }
    }
    out.labels.resize(label_ids.size());
    for (std::size_t i = 0; i < label_ids.size(); ++i) out.labels[i] = value[static_cast<std::size_t>(label_ids[i])];
  }

  void choose_label_column() {
    const std::string& want = options->label_column.empty() ? std::string("label") : options->label_column;
    const auto named = std::count(header.begin(), header.end(), want);
    if (named > 1) return fail(fmt::format("{}: {} columns are named {}; name the label column by index instead", name, named, shown(want)));
    if (named == 1) {
      label_col = std::find(header.begin(), header.end(), want) - header.begin();
    } else {
      std::int64_t k = -1;
      const auto r = std::from_chars(want.data(), want.data() + want.size(), k);
      const bool is_index = !options->label_column.empty() && r.ec == std::errc() && r.ptr == want.data() + want.size();
      if (options->label_column.empty() && !options->require_label) {  // no labels: every column a feature
        out.feature_names = header;
        return;
      }
      if (!is_index || k < 0 || k >= static_cast<std::int64_t>(header.size())) {
        std::string cols;
        for (std::size_t i = 0; i < header.size() && i < 12; ++i) cols += (i ? ", " : "") + shown(header[i]);
        if (header.size() > 12) cols += ", ...";
        return fail(fmt::format("{}: no label column {} among the {} columns ({}); pass --label-column NAME or a 0-based INDEX",
                                name, is_index ? fmt::format("at index {}", k) : shown(want), header.size(), cols));
      }
      label_col = k;
    }
    if (header.size() < 2) return fail(fmt::format("{}: the header has only the label column; expected at least one feature column", name));
    out.label_index = label_col;
    out.has_labels = true;
    out.label_name = header[static_cast<std::size_t>(label_col)];
    for (std::size_t i = 0; i < header.size(); ++i)
      if (static_cast<std::int64_t>(i) != label_col) out.feature_names.push_back(header[i]);
  }
};

// libcsv is C: no exception may cross it, so an allocation failure becomes the parse's error.
extern "C" void csv_on_field(void* p, std::size_t len, void* ctx) {
  auto* ps = static_cast<Parse*>(ctx);
  try {
    ps->on_field(static_cast<const char*>(p), len);
  } catch (const std::bad_alloc&) {
    ps->oom = true;  // no allocation here: the message is made after the parse
  }
}
extern "C" void csv_on_row(int, void* ctx) {
  auto* ps = static_cast<Parse*>(ctx);
  try {
    ps->on_row_end();
  } catch (const std::bad_alloc&) {
    ps->oom = true;  // no allocation here: the message is made after the parse
  }
}

Result<CsvFeatures> parse_impl(const std::uint8_t* bytes, std::size_t size, std::string_view name,
                               const CsvFeatureOptions& options) {
  if (size > options.max_bytes)
    return resource_exhausted(fmt::format("{}: {} bytes exceed the CSV limit of {} bytes", name, size, options.max_bytes));
  Parse ps;
  ps.name = name;
  ps.options = &options;
  csv_parser p{};
  if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) return resource_exhausted("out of memory starting the CSV parser");
  struct Free {
    csv_parser* p;
    ~Free() { csv_free(p); }
  } free_parser{&p};
  // In blocks, so that a bad row early in a large file stops the parse early.
  constexpr std::size_t kBlock = std::size_t{1} << 20;
  for (std::size_t off = 0; off < size && ps.error.empty() && !ps.oom; off += kBlock) {
    const std::size_t len = std::min(kBlock, size - off);
    if (csv_parse(&p, bytes + off, len, csv_on_field, csv_on_row, &ps) != len) {
      const int e = csv_error(&p);
      if (e == CSV_ENOMEM || e == CSV_ETOOBIG) return resource_exhausted(fmt::format("{}: a field too large for memory", name));
      ps.fail(fmt::format("{}: malformed CSV near data row {}: {} (expected RFC 4180 fields: a quote may only open a field, "
                          "and a quoted field's quotes are doubled)",
                          name, ps.row + 1, csv_strerror(e)));
    }
  }
  if (ps.error.empty() && !ps.oom && csv_fini(&p, csv_on_field, csv_on_row, &ps) != 0)
    ps.fail(fmt::format("{}: malformed CSV at the end of the file: {} (a quoted field is not closed)", name,
                        csv_strerror(csv_error(&p))));
  if (ps.oom) return resource_exhausted(fmt::format("{}: out of memory at data row {}", name, ps.row + 1));
  if (!ps.error.empty()) return data_loss(ps.error);
  if (ps.in_header) return data_loss(fmt::format("{}: the file is empty; expected a header row and data rows", name));
  if (ps.row == 0) return data_loss(fmt::format("{}: no data rows after the header", name));
  ps.finish_labels();
  if (!ps.error.empty()) return data_loss(ps.error);
  CsvFeatures out = std::move(ps.out);
  out.n = ps.row;
  out.d = static_cast<std::int64_t>(out.feature_names.size());
  if (static_cast<std::int64_t>(out.features.size()) != out.n * out.d ||
      static_cast<std::int64_t>(out.labels.size()) != (ps.label_col >= 0 ? out.n : 0))
    return internal_error(fmt::format("{}: CSV reader miscounted {} rows of {} features", name, out.n, out.d));
  return out;
}

}  // namespace

// Allocation failures (a huge table) become a Status, never an exception.
static Result<CsvFeatures> parse_csv_features_unguarded(const std::uint8_t* bytes, std::size_t size, std::string_view name,
                                       const CsvFeatureOptions& options) {
  try {
    return parse_impl(bytes, size, name, options);
  } catch (const std::bad_alloc&) {
    return resource_exhausted(fmt::format("{}: out of memory reading {} bytes of CSV", name, size));
  }
}

static Result<CsvFeatures> read_csv_features_unguarded(const std::string& path, const CsvFeatureOptions& options) {
  Result<ByteBuffer> bytes = read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  return parse_csv_features(bytes->data(), bytes->size(), path, options);
}

// ---- the public entry points: nothing they throw crosses the boundary (guarded.h) ----

Result<CsvFeatures> parse_csv_features(const std::uint8_t* bytes, std::size_t size, std::string_view name,
                                       const CsvFeatureOptions& options) noexcept {
  return xent::detail::guarded("parse_csv_features", [&]() -> Result<CsvFeatures> {
    return parse_csv_features_unguarded(bytes, size, name, options);
  });
}

Result<CsvFeatures> read_csv_features(const std::string& path, const CsvFeatureOptions& options) noexcept {
  return xent::detail::guarded("read_csv_features", [&]() -> Result<CsvFeatures> {
    return read_csv_features_unguarded(path, options);
  });
}

}  // namespace xent::io
