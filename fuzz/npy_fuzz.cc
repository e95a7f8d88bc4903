// npy_fuzz.cc: libFuzzer target for the .npy parser (xent::io::parse_npy). Not a test of read_npy's
// file handling (tests/hardening covers that); only the in-memory parse of hostile bytes.
//
// Besides "no crash, no sanitizer report", it checks the parser's promises on every accepted
// input: the shape's element count matches numel(), the byte size fits the configured limit, and
// the data buffer is fully readable (ASan catches a short buffer), and writing the array back out
// (npy_header + data) parses to the same dtype, shape and bits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "xent/io/npy.h"

namespace {

// One parse under `options`, and the promises above checked on what it accepts.
void check_one(const std::uint8_t* data, std::size_t size, const xent::io::NpyReadOptions& options) {
  auto r = xent::io::parse_npy(data, size, "fuzz.npy", options);
  if (!r.ok()) {
    if (r.status().message().empty()) std::abort();  // every error must say something
    return;
  }
  const xent::io::NpyArray& a = r.value();
  // A bfloat16 array only where the caller asked for one (the '<V2' convention, npy.h).
  if (a.dtype() == xent::DType::kBF16 && !options.void2_as_bfloat16) std::abort();
  std::int64_t numel = 1;
  for (int i = 0; i < a.shape().rank(); ++i) {
    if (a.shape()[i] < 0) std::abort();
    if (__builtin_mul_overflow(numel, a.shape()[i], &numel)) std::abort();
  }
  if (numel != a.numel()) std::abort();
  if (a.nbytes() > options.max_bytes) std::abort();
  // Touch every byte so that ASan sees a short allocation.
  const auto* p = static_cast<const unsigned char*>(a.data());
  unsigned acc = 0;
  for (std::size_t i = 0; i < a.nbytes(); ++i) acc += p[i];
  volatile unsigned sink = acc;
  (void)sink;
  // Round trip: what xent writes for this array parses back to the same dtype, shape and bits.
  std::string file = xent::io::npy_header(a.dtype(), a.shape()).value();
  file.append(static_cast<const char*>(a.data()), a.nbytes());
  auto again = xent::io::parse_npy(file.data(), file.size(), "roundtrip.npy", options);
  if (!again.ok()) std::abort();
  if (again->dtype() != a.dtype() || again->numel() != a.numel() || again->shape().rank() != a.shape().rank())
    std::abort();
  for (int i = 0; i < a.shape().rank(); ++i)
    if (again->shape()[i] != a.shape()[i]) std::abort();
  if (a.nbytes() && std::memcmp(again->data(), a.data(), a.nbytes()) != 0) std::abort();
}

}  // namespace

// Every input is parsed twice: as a plain reader does, and with bfloat16 asked for (a 2-byte void
// descr read as bfloat16), so both sides of that convention see every mutation.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  xent::io::NpyReadOptions options;
  options.max_bytes = std::uint64_t{64} << 20;  // keep the fuzzer under its RSS limit
  check_one(data, size, options);
  options.void2_as_bfloat16 = true;
  check_one(data, size, options);
  return 0;
}
