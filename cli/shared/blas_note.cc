// blas_note.cc: blas_note.h's report of OpenBLAS's kernel choice. Reads the CPU's features with
// GCC/Clang's __builtin_cpu_supports (the compiler's own CPUID reader); changes nothing.
#include "shared/blas_note.h"

#include <cblas.h>

#include <cstdio>
#include <mutex>
#include <string_view>

namespace xent::cli {

std::string blas_core() {
  const char* name = openblas_get_corename();
  return name != nullptr ? name : "unknown";
}

std::string blas_core_hint() {
#if defined(__x86_64__) || defined(__i386__)
  // OpenBLAS's kernel sets for x86 CPUs without AVX2 (its fallbacks for unknown models among them).
  constexpr std::string_view kPreAvx2[] = {"Prescott", "Core2",     "Penryn",   "Dunnington", "Nehalem",
                                           "Sandybridge", "Atom",   "Barcelona", "Bobcat",    "Bulldozer",
                                           "Piledriver", "Opteron", "Opteron_SSE3", "Katmai", "Coppermine",
                                           "Northwood", "Banias"};
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return "";
  const std::string core = blas_core();
  bool old = false;
  for (const auto& name : kPreAvx2) old = old || core == name;
  if (!old) return "";
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const std::string better = avx512 ? "SkylakeX" : "Haswell";
  return "OpenBLAS uses its " + core + " kernels, made for CPUs without AVX2 (it does not know this CPU's model, " +
         "as in many VMs); with OPENBLAS_CORETYPE=" + better + " in the environment the BLAS products run on " +
         (avx512 ? "AVX-512" : "AVX2") + ", 2-4x faster";
#else
  return "";
#endif
}

void note_blas_core() {
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string hint = blas_core_hint();
    if (!hint.empty()) std::fprintf(stderr, "xent: note: %s\n", hint.c_str());
  });
}

}  // namespace xent::cli
