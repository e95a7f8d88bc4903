// workload.h (cli/bench): one benchmark case of xent's public API (an op, a shape, a dtype and a
// pass), its buffers, and the minimal memory traffic it implies; plus the machine's measured
// memory-copy bandwidth. Shared by `xent bench` and the Google Benchmark programs in bench/.
//
// Minimal bytes count every input read once and every output written once (logits, targets --
// N indices or, for probability targets, N*C values --, class weights, gradients; scalars
// ignored), which is what a perfect kernel would move. copy_gbps counts a
// memcpy the same way (bytes read + bytes written), so gbps / copy_gbps is the fraction of the
// machine's copy bandwidth. Not a test: nothing here checks results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xent/status.h"
#include "xent/tensor.h"

namespace xent::bench {

// Ops, passes and target kinds `xent bench` knows.
const std::vector<std::string>& op_names();      // cross-entropy, softmax, ...
const std::vector<std::string>& pass_names();    // fwd, bwd, fwd+bwd
const std::vector<std::string>& target_names();  // index, prob

struct Spec {
  std::string op = "cross-entropy";
  std::int64_t N = 0, C = 0;
  DType dtype = DType::kF32;
  std::string pass = "fwd";
  // Cross-entropy options (defaults: plain class indices, no smoothing, no weights).
  std::string target = "index";  // "index": N class indices; "prob": N x C probabilities
                                 // (cross-entropy only; each row sums to 1)
  double label_smoothing = 0.0;  // in [0, 1]; cross-entropy only
  bool weighted = false;         // random class weights in [0.5, 1.5); cross-entropy and nll
  bool token_weighted = false;   // random per-token weights in [0, 2); cross-entropy, class indices
  bool exact = false;            // Summation::kExact; cross-entropy, class indices, f32/f64
};

// Empty when `spec`'s target, label smoothing and weights suit its op; otherwise a one-line
// reason (e.g. "--target prob applies to cross-entropy only, found op nll"), in the CLI's
// option names.
std::string check_options(const Spec& spec);

// A 64-byte-aligned buffer, zero-initialised on allocation (pages touched once).
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t bytes);
  void* data() const noexcept { return p_.get(); }
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  struct Free {
    void operator()(void* p) const noexcept;
  };
  std::unique_ptr<void, Free> p_;
  std::size_t bytes_ = 0;
};

class Workload {
 public:
  // Allocates and fills the buffers (fixed-seed data: logits in [-4, 4), random targets).
  // Fails for an unknown op, pass or target kind, options that do not suit the op (see
  // check_options), a shape that is not positive, or memory it cannot get.
  static Status create(const Spec& spec, std::unique_ptr<Workload>* out);

  // Runs the pass once through the public API.
  Status run() const;
  // Bytes a perfect implementation reads and writes for one run.
  double min_bytes() const noexcept { return min_bytes_; }
  const Spec& spec() const noexcept { return spec_; }

 private:
  Spec spec_;
  double min_bytes_ = 0;
  Buffer x_, y_, t_, w_, tw_, dy_, dx_, loss_, dloss_;
};

// Fills n values of dtype `dt` (float32, float64, bfloat16 or float16) with fixed-seed uniform values in [lo, hi);
// data for timing, where the generator's quality is irrelevant.
void fill_uniform(DType dt, void* p, std::size_t n, double lo, double hi, std::uint64_t seed);

// Median of the per-thread-split memcpy bandwidth (read + write bytes per second, in GB/s) over a
// few copies of `bytes` (default 256 MiB) with `threads` threads.
double measure_copy_gbps(int threads, std::size_t bytes = std::size_t{256} << 20);

// Times `fn` (seconds per call): `warmup` untimed calls, then at least `min_reps` timed ones and
// until `min_seconds` have passed (at most `max_reps`). Returns every timed sample.
template <class F>
std::vector<double> time_calls(const F& fn, int warmup, int min_reps, int max_reps, double min_seconds);

double median(std::vector<double> v);

}  // namespace xent::bench

#include "workload_inl.h"
