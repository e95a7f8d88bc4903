// train_test_util.h: helpers for the training tests: IDX and gzip byte writers (independent of
// xent's reader), a synthetic learnable image dataset, and temporary directories.
#pragma once

#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "xent/io/idx.h"

namespace xent::test {

inline std::vector<std::uint8_t> idx_bytes(std::uint8_t type, const std::vector<std::uint32_t>& dims,
                                           const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> b = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims) {
    b.push_back(static_cast<std::uint8_t>(d >> 24));
    b.push_back(static_cast<std::uint8_t>(d >> 16));
    b.push_back(static_cast<std::uint8_t>(d >> 8));
    b.push_back(static_cast<std::uint8_t>(d));
  }
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// One gzip member (zlib's deflate with a gzip wrapper).
inline std::vector<std::uint8_t> gzip_bytes(const std::vector<std::uint8_t>& in, int level = 6) {
  z_stream zs{};
  deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::vector<std::uint8_t> out(deflateBound(&zs, in.size()) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

inline void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// A fresh directory under the system temp dir, removed with the object.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "xent-train-test-XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// A learnable dataset: class c lights up column band c of an h x w image, plus noise.
struct Synthetic {
  std::vector<std::uint8_t> pixels, labels;
};
inline Synthetic make_synthetic(int n, int h, int w, int classes, std::uint32_t seed) {
  Synthetic s;
  std::uint32_t x = seed * 2654435761u + 1;
  auto rnd = [&] {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return x;
  };
  for (int i = 0; i < n; ++i) {
    const int c = static_cast<int>(rnd() % static_cast<std::uint32_t>(classes));
    s.labels.push_back(static_cast<std::uint8_t>(c));
    for (int r = 0; r < h; ++r)
      for (int k = 0; k < w; ++k) {
        int v = static_cast<int>(rnd() % 90);
        if (k % classes == c) v += 120;
        s.pixels.push_back(static_cast<std::uint8_t>(v));
      }
  }
  return s;
}

// Writes {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] into dir.
inline void write_idx_pair(const std::string& dir, const std::string& prefix, const Synthetic& s, int h, int w, bool gz) {
  const auto n = static_cast<std::uint32_t>(s.labels.size());
  auto img = idx_bytes(0x08, {n, static_cast<std::uint32_t>(h), static_cast<std::uint32_t>(w)}, s.pixels);
  auto lab = idx_bytes(0x08, {n}, s.labels);
  const std::string ext = gz ? ".gz" : "";
  write_bytes(dir + "/" + prefix + "-images-idx3-ubyte" + ext, gz ? gzip_bytes(img) : img);
  write_bytes(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, gz ? gzip_bytes(lab) : lab);
}

inline io::LabeledImages to_labeled(const Synthetic& s, int h, int w) {
  auto img = idx_bytes(0x08, {static_cast<std::uint32_t>(s.labels.size()), static_cast<std::uint32_t>(h),
                              static_cast<std::uint32_t>(w)}, s.pixels);
  auto lab = idx_bytes(0x08, {static_cast<std::uint32_t>(s.labels.size())}, s.labels);
  auto a = io::parse_idx(img.data(), img.size(), "images");
  auto b = io::parse_idx(lab.data(), lab.size(), "labels");
  auto li = io::make_labeled_images(std::move(a).value(), "images", std::move(b).value(), "labels");
  return std::move(li).value();
}

}  // namespace xent::test
