// dispatch.cc: runtime choice of the kernel tables, and the public ISA setting (runtime.h).
//
// The candidates are the SIMD tables compiled in (tables_hwy.cc) that this CPU and OS can run,
// as Highway's hwy::SupportedTargets() reports (CPUID plus XGETBV, so an OS that does not save
// AVX-512 state rules AVX-512 out), best first, then "scalar". The first use picks the best one,
// or the one XENT_ISA names; set_isa() changes it later. Not a per-call switch: the choice is one
// process-wide atomic, read by every kernel call.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "hwy/targets.h"

#include "cpu/isa_tables.h"
#include "cpu/kernels.h"
#include "xent/runtime.h"

namespace xent::cpu {
namespace {

struct Choice {
  std::string name;
  const KernelTable<float>* f32;
  const KernelTable<double>* f64;
  const KernelTable<BF16>* bf16;
  const KernelTable<F16>* f16;
};

// Tables this CPU can run, best first, "scalar" last.
const std::vector<Choice>& choices() {
  static const std::vector<Choice> list = [] {
    std::vector<Choice> v;
    const std::int64_t supported = hwy::SupportedTargets();
    std::size_t n = 0;
    const IsaTables* tables = simd_isa_tables(&n);
    for (std::size_t i = 0; i < n; ++i) {
      if ((supported & tables[i].hwy_target) != 0) v.push_back({tables[i].name, &tables[i].f32(), &tables[i].f64(), &tables[i].bf16(), &tables[i].f16()});
    }
    v.push_back({"scalar", &scalar_table_f32(), &scalar_table_f64(), &scalar_table_bf16(), &scalar_table_f16()});
    return v;
  }();
  return list;
}

std::string names_list() {
  std::string s;
  for (const auto& c : choices()) s += (s.empty() ? "" : ", ") + c.name;
  return s;
}

int find_choice(const std::string& name) {
  const auto& list = choices();
  for (std::size_t i = 0; i < list.size(); ++i)
    if (list[i].name == name) return static_cast<int>(i);
  return -1;
}

// Index into choices(); -1 until first use.
std::atomic<int> g_active{-1};

int active_index() noexcept {
  int i = g_active.load(std::memory_order_acquire);
  if (i >= 0) return i;
  static const int initial = [] {
    const char* env = std::getenv("XENT_ISA");
    if (env == nullptr || *env == '\0' || std::string(env) == "auto") return 0;
    const int found = find_choice(env);
    if (found >= 0) return found;
    std::fprintf(stderr, "xent: XENT_ISA=%s is not available on this CPU (available: %s); using %s\n", env,
                 names_list().c_str(), choices()[0].name.c_str());
    return 0;
  }();
  int expected = -1;
  g_active.compare_exchange_strong(expected, initial, std::memory_order_acq_rel);
  return g_active.load(std::memory_order_acquire);
}

}  // namespace

const KernelTable<float>& active_table_f32() noexcept { return *choices()[active_index()].f32; }
const KernelTable<double>& active_table_f64() noexcept { return *choices()[active_index()].f64; }
const KernelTable<BF16>& active_table_bf16() noexcept { return *choices()[active_index()].bf16; }
const KernelTable<F16>& active_table_f16() noexcept { return *choices()[active_index()].f16; }

}  // namespace xent::cpu

namespace xent {

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const auto& c : cpu::choices()) names.push_back(c.name);
  return names;
}

std::string active_isa() { return cpu::choices()[cpu::active_index()].name; }

Status set_isa(const std::string& name) {
  if (name.empty() || name == "auto") {
    cpu::g_active.store(0, std::memory_order_release);
    return Status::Ok();
  }
  const int found = cpu::find_choice(name);
  if (found < 0) {
    return invalid_argument("instruction set '" + name + "' is not available on this CPU; it supports: " +
                            cpu::names_list() + " (or auto)");
  }
  cpu::g_active.store(found, std::memory_order_release);
  return Status::Ok();
}

}  // namespace xent
