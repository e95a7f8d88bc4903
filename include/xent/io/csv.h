// csv.h: a numeric CSV table with a header row read as float32 feature rows and integer class
// labels (what `xent train --train FILE.csv` takes).
//
// The file is RFC 4180 CSV as Debian's libcsv reads it in strict mode (commas, optional double
// quotes, CRLF or LF line ends, spaces around unquoted fields ignored, blank lines skipped, a UTF-8
// byte-order mark ignored). The first row names the columns; one of them holds the labels, every
// other column is a feature. Every byte is treated as hostile: a malformed quote, a row whose
// field count differs from the header's, an empty field, a feature that is not a finite number
// within float32's range, a numeric label that is not an integer in [0, 2^31), a file with no data rows or
// no feature column are each refused with one line naming the file, the data row (1 = the first row
// after the header) and the column, and saying what was expected and what was found.
// Labels are class numbers when every label field is a number, else class names: every field of
// the column is then a name, and the classes are the distinct names sorted by bytes.
// Not a general CSV reader: no other delimiters, no missing values, no string-valued features.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "xent/status.h"

namespace xent::io {

struct CsvFeatureOptions {
  // The label column: a header name (an exact match wins), else a 0-based column index. Empty:
  // the column named "label".
  std::string label_column;
  // false: when label_column is empty and no column is named "label", every column is a feature
  // and there are no labels (rows to predict).
  bool require_label = true;
  std::uint64_t max_bytes = std::uint64_t{4} << 30;  // larger files: resource exhausted
};

struct CsvFeatures {
  std::vector<std::string> feature_names;  // the header's names of the feature columns, in order
  bool has_labels = false;                 // false only without require_label
  std::string label_name;                  // the label column's header name
  std::int64_t label_index = 0;            // its 0-based position in the header
  std::int64_t n = 0, d = 0;               // data rows, feature columns
  std::vector<float> features;             // n x d, row-major
  std::vector<std::int32_t> labels;        // n (0 without labels): class numbers, or indices into label_names
  // When the label column holds names: the distinct names, sorted by bytes (empty for numbers).
  std::vector<std::string> label_names;
};

// Parses CSV held in bytes[0, size); `name` stands for the file in messages. Pure.
Result<CsvFeatures> parse_csv_features(const std::uint8_t* bytes, std::size_t size, std::string_view name,
                                       const CsvFeatureOptions& options = {}) noexcept;
// Reads and parses a whole file (missing or unreadable: kIoError naming it).
Result<CsvFeatures> read_csv_features(const std::string& path, const CsvFeatureOptions& options = {}) noexcept;

}  // namespace xent::io
