// csv_fuzz.cc: libFuzzer target for the CSV feature reader (xent::io::parse_csv_features). The
// first byte chooses the label column option (the column named "label", index 0, index 1, the name
// "b", or none required); the rest is the file. libcsv itself is Debian's library (not
// instrumented); this exercises xent's checks around it.
//
// Besides "no crash, no sanitizer report", it checks on every accepted input: n >= 1 data rows of
// d >= 1 features, features.size() == n * d, every feature finite, one label per row in
// [0, 2^31) (none when no label column is required and none exists), d feature names; labels given
// as names: the names distinct and sorted, every label an index into them, every name used; and on
// every refusal a non-empty one-line message.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "xent/io/csv.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  xent::io::CsvFeatureOptions options;
  options.max_bytes = std::uint64_t{64} << 20;
  switch (data[0] % 5) {
    case 0: break;
    case 1: options.label_column = "0"; break;
    case 2: options.label_column = "1"; break;
    case 3: options.label_column = "b"; break;
    default: options.require_label = false;
  }
  auto r = xent::io::parse_csv_features(data + 1, size - 1, "fuzz.csv", options);
  if (!r.ok()) {
    const std::string& m = r.status().message();
    if (m.empty() || m.find('\n') != std::string::npos) std::abort();  // one line, saying something
    return 0;
  }
  const xent::io::CsvFeatures& t = r.value();
  if (t.n < 1 || t.d < 1) std::abort();
  if (static_cast<std::int64_t>(t.features.size()) != t.n * t.d) std::abort();
  if (static_cast<std::int64_t>(t.feature_names.size()) != t.d) std::abort();
  for (float v : t.features)
    if (!std::isfinite(v)) std::abort();
  if (t.has_labels != (static_cast<std::int64_t>(t.labels.size()) == t.n)) std::abort();
  if (!t.has_labels && (options.require_label || !t.labels.empty())) std::abort();
  for (std::int32_t y : t.labels)
    if (y < 0) std::abort();
  if (!t.label_names.empty()) {
    const auto& names = t.label_names;
    if (std::adjacent_find(names.begin(), names.end(), [](const std::string& a, const std::string& b) { return !(a < b); }) !=
        names.end())
      std::abort();  // not strictly increasing
    std::vector<bool> used(names.size());
    for (std::int32_t y : t.labels) {
      if (static_cast<std::size_t>(y) >= names.size()) std::abort();
      used[static_cast<std::size_t>(y)] = true;
    }
    if (std::find(used.begin(), used.end(), false) != used.end()) std::abort();
  }
  return 0;
}
