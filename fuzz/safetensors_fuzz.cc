// safetensors_fuzz.cc: libFuzzer target for model files: xent::io::parse_safetensors
// (src/io/safetensors.cc) and xent::train::parse_model (src/train/model.cc) over hostile bytes.
// Not a test of load_model's file I/O.
//
// On every accepted input it checks the promises of model.h: the tensors lie inside the file and
// tile the data section in file order, each holds exactly prod(shape) * sizeof(dtype) bytes, and
// writing what was read (serialize_safetensors / serialize_model) parses back to the same names,
// shapes, metadata and bits. For a model: W is D x C, b is C, C class names, height * width = D.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "xent/io/safetensors.h"
#include "xent/train/model.h"

namespace {

std::uint64_t dtype_bytes(const std::string& d) {
  if (d == "BOOL" || d == "U8" || d == "I8" || d == "F8_E5M2" || d == "F8_E4M3") return 1;
  if (d == "I16" || d == "U16" || d == "F16" || d == "BF16") return 2;
  if (d == "I32" || d == "U32" || d == "F32") return 4;
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  return 0;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "safetensors_fuzz: %s\n", what);
  std::abort();
}

void check_file(const xent::io::SafetensorsFile& f, const std::uint8_t* data, std::size_t size) {
  std::uint64_t hlen = 0;
  std::memcpy(&hlen, data, 8);
  std::uint64_t at = 8 + hlen;
  for (const auto& t : f.tensors) {
    if (t.begin != at) fail("tensors do not tile the data section in file order");
    if (t.begin > size || t.size > size - t.begin) fail("tensor outside the file");
    std::uint64_t count = 1;
    for (std::int64_t d : t.shape) {
      if (d < 0) fail("negative dimension");
      if (__builtin_mul_overflow(count, static_cast<std::uint64_t>(d), &count)) fail("shape overflow accepted");
    }
    const std::uint64_t es = dtype_bytes(t.dtype);
    if (es == 0) fail("unknown dtype accepted");
    std::uint64_t bytes = 0;
    if (__builtin_mul_overflow(count, es, &bytes) || bytes != t.size) fail("size != prod(shape) * dtype size");
    at += t.size;
  }
  if (at != size) fail("tensors do not cover the data section");
}

void roundtrip_file(const xent::io::SafetensorsFile& f, const std::uint8_t* data) {
  std::vector<xent::io::SafetensorsTensorRef> refs;
  for (const auto& t : f.tensors) refs.push_back({t.name, t.dtype, t.shape, data + t.begin, t.size});
  std::string bytes = xent::io::serialize_safetensors(f.metadata, refs).value();
  auto again = xent::io::parse_safetensors(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "rt");
  if (!again.ok()) fail("serialize_safetensors output does not parse");
  if (again->metadata != f.metadata || again->tensors.size() != f.tensors.size()) fail("round trip changed the file");
  // serialize_safetensors lays tensors out in the order given, which is file order here.
  for (std::size_t i = 0; i < f.tensors.size(); ++i) {
    const auto& a = f.tensors[i];
    const auto& b = again->tensors[i];
    if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape || a.size != b.size) fail("round trip changed a tensor");
    if (a.size && std::memcmp(data + a.begin, bytes.data() + b.begin, a.size) != 0) fail("round trip changed data");
  }
}

void check_model(const xent::train::SoftmaxModel& m) {
  if (m.features < 1 || m.classes < 2) fail("model with D < 1 or C < 2 accepted");
  std::int64_t dc = 0, hw = 0;
  if (__builtin_mul_overflow(m.features, m.classes, &dc) || m.weight.size() != static_cast<std::size_t>(dc))
    fail("W is not D x C");
  if (m.bias.size() != static_cast<std::size_t>(m.classes)) fail("b is not C");
  if (m.class_names.size() != static_cast<std::size_t>(m.classes)) fail("class_names is not C");
  if (m.height < 1 || m.width < 1 || __builtin_mul_overflow(m.height, m.width, &hw) || hw != m.features) {
    fail("input_shape accepted with height * width != features (or overflowing)");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto f = xent::io::parse_safetensors(data, size, "fuzz.safetensors");
  if (!f.ok()) {
    if (f.status().message().empty()) fail("empty error message");
    return 0;
  }
  check_file(*f, data, size);
  roundtrip_file(*f, data);

  auto m = xent::train::parse_model(data, size, "fuzz.safetensors");
  if (!m.ok()) {
    if (m.status().message().empty()) fail("empty error message");
    return 0;
  }
  check_model(*m);
  std::string bytes = xent::train::serialize_model(*m).value();
  auto again = xent::train::parse_model(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "rt");
  if (!again.ok()) fail("serialize_model output does not parse");
  if (again->features != m->features || again->classes != m->classes || again->height != m->height ||
      again->width != m->width || again->class_names != m->class_names || again->info != m->info)
    fail("model round trip changed the model");
  if (std::memcmp(again->weight.data(), m->weight.data(), m->weight.size() * sizeof(float)) != 0 ||
      std::memcmp(again->bias.data(), m->bias.data(), m->bias.size() * sizeof(float)) != 0)
    fail("model round trip changed W or b");
  return 0;
}
