// idx_fuzz.cc: libFuzzer target for the IDX parser (xent::io::parse_idx), plain and gzip'd, and for
// make_labeled_images on what it accepts. Not a test of read_idx_file's file handling.
//
// On every input the parser over a ByteBuffer (which keeps a plain payload in place) must agree with
// the one over a pointer: the same array, or the same error. On every accepted input it checks the
// promises of idx.h: the payload is exactly prod(dims) * sizeof(type) bytes and fully readable, and
// a labeled-image set built from an accepted image file has n * height * width pixels.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "xent/io/idx.h"

namespace {

int type_size(std::uint8_t t) {
  switch (t) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  xent::io::IdxLimits limits;
  limits.max_payload_bytes = std::uint64_t{64} << 20;  // keep the fuzzer under its RSS limit
  auto r = xent::io::parse_idx(data, size, "fuzz.idx", limits);
  {
    xent::io::ByteBuffer copy(size);
    if (size) std::memcpy(copy.data(), data, size);
    auto in_place = xent::io::parse_idx(std::move(copy), "fuzz.idx", limits);
    if (r.ok() != in_place.ok()) std::abort();
    if (!r.ok() && r.status().message() != in_place.status().message()) std::abort();
    if (r.ok() && (r->type != in_place->type || r->dims != in_place->dims || r->payload.size() != in_place->payload.size() ||
                   (r->payload.size() && std::memcmp(r->payload.data(), in_place->payload.data(), r->payload.size()) != 0)))
      std::abort();
  }
  if (!r.ok()) {
    if (r.status().message().empty()) std::abort();
    return 0;
  }
  xent::io::IdxArray& a = r.value();
  const int es = type_size(a.type);
  if (es == 0 || a.dims.empty() || a.dims.size() > 255) std::abort();
  std::uint64_t count = 1;
  for (std::int64_t d : a.dims) {
    if (d < 0 || d > 0xffffffffLL) std::abort();
    if (__builtin_mul_overflow(count, static_cast<std::uint64_t>(d), &count)) std::abort();
  }
  if (count * static_cast<std::uint64_t>(es) != a.payload.size()) std::abort();
  if (a.payload.size() > limits.max_payload_bytes) std::abort();
  unsigned acc = 0;
  for (std::size_t i = 0; i < a.payload.size(); ++i) acc += a.payload.data()[i];
  volatile unsigned sink = acc;
  (void)sink;

  // An accepted image file, paired with a matching label file, must give a consistent set. (A
  // real label file of N entries holds N bytes; cap N so the harness itself stays small.)
  if (a.type == 0x08 && (a.dims.size() == 2 || a.dims.size() == 3) && a.dims[0] <= (1 << 16)) {
    const std::int64_t n = a.dims[0];
    xent::io::IdxArray labels;
    labels.type = 0x08;
    labels.dims = {n};
    labels.payload = xent::io::ByteBuffer(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) labels.payload.data()[i] = static_cast<std::uint8_t>(i % 10);
    auto set = xent::io::make_labeled_images(std::move(a), "images", std::move(labels), "labels");
    if (set.ok()) {
      if (set->n != n || static_cast<std::int64_t>(set->labels.size()) != n) std::abort();
      // features() = height * width must not overflow (callers size models by it), even when n = 0.
      std::int64_t features = 0, total = 0;
      bool overflow = set->height < 0 || set->width < 0 || __builtin_mul_overflow(set->height, set->width, &features) ||
                      __builtin_mul_overflow(set->n, features, &total);
      if (overflow) {
        std::fprintf(stderr, "make_labeled_images accepted n=%lld height=%lld width=%lld: features overflow\n",
                     static_cast<long long>(set->n), static_cast<long long>(set->height),
                     static_cast<long long>(set->width));
        std::abort();
      }
      if (static_cast<std::uint64_t>(total) != set->pixels.size()) std::abort();
      for (std::int64_t i = 0; i < n; ++i)
        if (set->labels[static_cast<std::size_t>(i)] != i % 10) std::abort();
    }
  }
  return 0;
}
