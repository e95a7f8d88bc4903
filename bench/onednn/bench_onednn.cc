// bench_onednn.cc: the oneDNN peer of `xent bench` for the softmax family: times oneDNN's
// softmax_v2 primitive (softmax_accurate or softmax_log, forward or backward along the last axis)
// on an N x C float32 tensor of random values and prints one JSON object (median_ms, the
// implementation oneDNN chose). Threads: oneDNN's OpenMP runtime (OMP_NUM_THREADS), set by the
// caller (bench/bench_vs_onednn.py runs both tools with the same count). Buffers are allocated
// and touched once, before timing, as `xent bench` does. Not a test; never run by ctest.
//
//   bench_onednn softmax|log-softmax fwd|bwd N C [reps]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace {

int usage() {
  std::fprintf(stderr, "usage: bench_onednn softmax|log-softmax fwd|bwd N C [reps]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) return usage();
  const std::string op = argv[1], pass = argv[2];
  const long N = std::atol(argv[3]), C = std::atol(argv[4]);
  const int reps = argc > 5 ? std::atoi(argv[5]) : 30;
  if ((op != "softmax" && op != "log-softmax") || (pass != "fwd" && pass != "bwd") || N <= 0 || C <= 0 || reps <= 0)
    return usage();
  using namespace dnnl;
  const algorithm alg = op == "softmax" ? algorithm::softmax_accurate : algorithm::softmax_log;
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const memory::desc md({N, C}, memory::data_type::f32, memory::format_tag::ab);
  std::vector<float> x(static_cast<std::size_t>(N * C)), y(x.size()), dy(x.size()), dx(x.size());
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-5.0f, 5.0f);
  for (float& v : x) v = u(rng);
  for (float& v : dy) v = u(rng) * 0.1f;
  memory mx(md, eng, x.data()), my(md, eng, y.data()), mdy(md, eng, dy.data()), mdx(md, eng, dx.data());
  const softmax_v2_forward::primitive_desc fwd_pd(
      softmax_v2_forward::desc(prop_kind::forward_training, alg, md, md, 1), eng);
  softmax_v2_forward fwd(fwd_pd);
  fwd.execute(s, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DST, my}});
  s.wait();
  std::string impl = fwd_pd.impl_info_str();
  std::function<void()> run = [&] { fwd.execute(s, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DST, my}}); };
  softmax_v2_backward::primitive_desc bwd_pd;
  softmax_v2_backward bwd;
  if (pass == "bwd") {
    bwd_pd = softmax_v2_backward::primitive_desc(softmax_v2_backward::desc(alg, md, md, md, 1), eng, fwd_pd);
    bwd = softmax_v2_backward(bwd_pd);
    impl = bwd_pd.impl_info_str();
    run = [&] { bwd.execute(s, {{DNNL_ARG_DST, my}, {DNNL_ARG_DIFF_DST, mdy}, {DNNL_ARG_DIFF_SRC, mdx}}); };
  }
  for (int w = 0; w < 3; ++w) run();
  s.wait();
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    s.wait();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double bytes = static_cast<double>(N * C) * sizeof(float) * (pass == "fwd" ? 2 : 3);
  const double med = ms[ms.size() / 2];
  std::printf("{\"op\": \"%s\", \"pass\": \"%s\", \"N\": %ld, \"C\": %ld, \"median_ms\": %.6f, \"gbps\": %.3f, "
              "\"impl\": \"%s\"}\n",
              op.c_str(), pass.c_str(), N, C, med, bytes / (med * 1e6), impl.c_str());
  return 0;
}
