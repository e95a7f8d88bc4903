// inline_fuzz.cc: libFuzzer target for the CLI's inline-value parser (`xent explain "[[1, 2]]"`,
// xent::cli::parse_inline_array). The input bytes are the command-line text.
//
// On every accepted input it checks the promises of inline_values.h: values.size() equals the
// shape's element count, the rank is within Shape::kMaxDims, and when all_integers the int64
// values equal the doubles.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ops/inline_values.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  xent::cli::InlineLimits limits;
  limits.max_elements = 4096;
  auto r = xent::cli::parse_inline_array(text, limits);
  if (!r.ok()) {
    if (r.status().message().empty()) std::abort();
    return 0;
  }
  const auto& a = r.value();
  if (a.shape.rank() < 0 || a.shape.rank() > xent::Shape::kMaxDims) std::abort();
  std::int64_t numel = 1;
  for (int i = 0; i < a.shape.rank(); ++i) {
    if (a.shape[i] < 0) std::abort();
    if (__builtin_mul_overflow(numel, a.shape[i], &numel)) std::abort();
  }
  if (static_cast<std::size_t>(numel) != a.values.size()) std::abort();
  if (a.values.size() > limits.max_elements) std::abort();
  if (a.all_integers) {
    if (a.integers.size() != a.values.size()) std::abort();
    for (std::size_t i = 0; i < a.values.size(); ++i)
      if (static_cast<double>(a.integers[i]) != a.values[i]) std::abort();
  } else if (!a.integers.empty()) {
    std::abort();
  }
  return 0;
}
