// idx.h: reading IDX files (the MNIST / Fashion-MNIST format), gzip'd or plain.
//
// An IDX file is a big-endian header (two zero bytes, a type byte, a rank byte, then one uint32
// per dimension) followed by the elements in row-major order. xent reads files that are plain or
// gzip'd (one or more gzip members, decoded with zlib); every byte is treated as hostile: the
// header, each dimension, the product of the dimensions, the declared size against the file's
// size (and against what a gzip stream of that size can possibly hold), trailing bytes and
// truncation are all checked, and every error names the file and what was expected vs found.
// This is not a general tensor format: images and labels must be unsigned bytes (type 0x08).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "xent/io/file.h"
#include "xent/status.h"

namespace xent::io {

struct IdxLimits {
  std::uint64_t max_payload_bytes = std::uint64_t{4} << 30;  // larger declared sizes: resource exhausted
};

// One parsed IDX array. `type` is the IDX type byte (0x08 unsigned byte, 0x09 signed byte,
// 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64); payload holds the elements as stored
// (big-endian for multi-byte types).
struct IdxArray {
  std::uint8_t type = 0x08;
  std::vector<std::int64_t> dims;
  ByteBuffer payload;
};

// Parses an IDX file held in memory (plain, or gzip'd when it starts with 1f 8b). Pure: reads only
// bytes[0, n). `name` is used in error messages. Fails with kDataLoss for malformed or truncated
// data and kResourceExhausted when the declared payload exceeds limits.max_payload_bytes.
Result<IdxArray> parse_idx(const std::uint8_t* bytes, std::size_t n, std::string_view name,
                           const IdxLimits& limits = {}) noexcept;

// The same, for bytes held in a buffer that the result may take over: a plain IDX array keeps its
// payload in `bytes` (the header dropped in front), without a copy; gzip'd data is inflated into a
// new buffer as above.
Result<IdxArray> parse_idx(ByteBuffer bytes, std::string_view name, const IdxLimits& limits = {}) noexcept;

Result<IdxArray> read_idx_file(const std::string& path, const IdxLimits& limits = {}) noexcept;

// N images (or feature rows) with their labels. Images are (N, H, W) unsigned bytes (an (N, D) file
// gives H = 1, W = D); labels are (N) unsigned bytes, widened to int32. A set read from .npy float
// arrays or CSV (cli/train) holds float32 features in `values` instead, with `floats` set and
// `pixels` empty; height x width is then the row's shape (1 x D for CSV).
struct LabeledImages {
  std::int64_t n = 0, height = 0, width = 0;
  ByteBuffer pixels;                 // n * height * width bytes, row-major (when !floats)
  std::vector<std::int32_t> labels;  // n labels
  bool floats = false;               // features are `values`, not `pixels`
  std::vector<float> values;         // n * height * width float32 features, row-major (when floats)
  std::int64_t features() const noexcept { return height * width; }
};

// Checks that `images` holds unsigned-byte images (magic 2051, or 2050 for (N, D)) and `labels`
// unsigned-byte labels (magic 2049) with the same count. Names are used in messages.
Result<LabeledImages> make_labeled_images(IdxArray images, std::string_view images_name, IdxArray labels,
                                          std::string_view labels_name) noexcept;
Result<LabeledImages> load_labeled_images(const std::string& images_path, const std::string& labels_path,
                                          const IdxLimits& limits = {}) noexcept;

// The four files of an MNIST-style directory. find_idx_dataset looks in `dir` for
// {train,t10k}-{images,labels}[-.]idx{3,1}-ubyte[.gz] (also test-* for t10k-*) and says which
// names it tried when one is missing (kIoError).
struct IdxDatasetPaths {
  std::string train_images, train_labels, test_images, test_labels;
};
Result<IdxDatasetPaths> find_idx_dataset(const std::string& dir) noexcept;

}  // namespace xent::io
