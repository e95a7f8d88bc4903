// workload_inl.h (cli/bench): the template part of workload.h (timing loop).
#pragma once

#include <chrono>
#include <vector>

namespace xent::bench {

template <class F>
std::vector<double> time_calls(const F& fn, int warmup, int min_reps, int max_reps, double min_seconds) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> samples;
  const auto start = clock::now();
  while (static_cast<int>(samples.size()) < max_reps) {
    const auto t0 = clock::now();
    fn();
    const auto t1 = clock::now();
    samples.push_back(std::chrono::duration<double>(t1 - t0).count());
    const double elapsed = std::chrono::duration<double>(t1 - start).count();
    if (static_cast<int>(samples.size()) >= min_reps && elapsed >= min_seconds) break;
  }
  return samples;
}

}  // namespace xent::bench
