// half_driver.cc: a test-only driver for test_half_vs_torch.py: runs one op of xent's library on
// raw little-endian bfloat16 / float16 files and writes the raw 16-bit results. Not the CLI (whose
// NPY layer does not read 16-bit types); no validation beyond what the library does.
//   half_driver OP DTYPE N C x.bin t.bin out.bin grad.bin
// OP: softmax | log_softmax | logsumexp | ce | ce_smooth | nll | bce_logits; DTYPE: bf16 | f16.
// t.bin holds int64 class indices (ce, ce_smooth, nll) or 16-bit targets (bce_logits); grad.bin
// receives d sum(loss) / dx (softmax family: the backward of sum(y * dy) with dy = t.bin as 16-bit).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "xent/xent.h"

namespace {

template <class T>
std::vector<T> read(const char* path, std::size_t n) {
  std::vector<T> v(n);
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr || std::fread(v.data(), sizeof(T), n, f) != n) {
    std::fprintf(stderr, "half_driver: cannot read %zu values from %s\n", n, path);
    std::exit(2);
  }
  std::fclose(f);
  return v;
}

template <class T>
void write(const char* path, const std::vector<T>& v) {
  FILE* f = std::fopen(path, "wb");
  if (f == nullptr || std::fwrite(v.data(), sizeof(T), v.size(), f) != v.size()) std::exit(1);
  std::fclose(f);
}

void check(const xent::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "half_driver: %s\n", s.message().c_str());
    std::exit(1);
  }
}

template <class H>
int run(const std::string& op, std::int64_t N, std::int64_t C, char** files) {
  using namespace xent;
  const std::size_t n = static_cast<std::size_t>(N * C);
  const std::vector<H> x = read<H>(files[0], n);
  const Shape s{N, C}, rs{N};
  std::vector<H> out, grad(n);
  if (op == "softmax" || op == "log_softmax") {
    const std::vector<H> dy = read<H>(files[1], n);
    out.resize(n);
    const bool log = op == "log_softmax";
    check(log ? log_softmax_forward({x.data(), s}, 1, {out.data(), s}) : softmax_forward({x.data(), s}, 1, {out.data(), s}));
    check(log ? log_softmax_backward({out.data(), s}, {dy.data(), s}, 1, {grad.data(), s})
              : softmax_backward({out.data(), s}, {dy.data(), s}, 1, {grad.data(), s}));
  } else if (op == "logsumexp") {
    out.resize(static_cast<std::size_t>(N));
    check(logsumexp_forward({x.data(), s}, 1, {out.data(), rs}));
  } else if (op == "ce" || op == "ce_smooth" || op == "nll") {
    const std::vector<std::int64_t> t = read<std::int64_t>(files[1], static_cast<std::size_t>(N));
    out.resize(1);
    if (op == "nll") {
      check(nll_loss_forward({x.data(), s}, {t.data(), rs}, NllOptions{}, {out.data(), Shape{}}));
      std::vector<H> one(1);
      if constexpr (std::is_same_v<H, bfloat16>) one[0] = to_bfloat16(1.0);
      else one[0] = to_float16(1.0);
      check(nll_loss_backward({x.data(), s}, {t.data(), rs}, NllOptions{}, {one.data(), Shape{}}, {grad.data(), s}));
    } else {
      CrossEntropyOptions o;
      o.label_smoothing = op == "ce_smooth" ? 0.1 : 0.0;
      check(cross_entropy_fused({x.data(), s}, {t.data(), rs}, o, {out.data(), Shape{}}, {grad.data(), s}));
    }
  } else if (op == "bce_logits") {
    const std::vector<H> t = read<H>(files[1], n);
    out.resize(1);
    BceOptions o;
    check(binary_cross_entropy_with_logits_forward({x.data(), s}, {t.data(), s}, o, {out.data(), Shape{}}));
    std::vector<H> one(1);
    if constexpr (std::is_same_v<H, bfloat16>) one[0] = to_bfloat16(1.0);
    else one[0] = to_float16(1.0);
    check(binary_cross_entropy_with_logits_backward({x.data(), s}, {t.data(), s}, o, {one.data(), Shape{}}, {grad.data(), s}));
  } else {
    std::fprintf(stderr, "half_driver: unknown op %s\n", op.c_str());
    return 2;
  }
  write(files[2], out);
  write(files[3], grad);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: half_driver OP bf16|f16 N C x.bin t.bin out.bin grad.bin\n");
    return 2;
  }
  const std::string op = argv[1], dt = argv[2];
  const std::int64_t N = std::atoll(argv[3]), C = std::atoll(argv[4]);
  if (dt == "bf16") return run<xent::bfloat16>(op, N, C, argv + 5);
  if (dt == "f16") return run<xent::float16>(op, N, C, argv + 5);
  std::fprintf(stderr, "half_driver: dtype must be bf16 or f16, found %s\n", dt.c_str());
  return 2;
}
