// dispatch.cc: runtime choice of the kernel tables, and the public ISA setting (runtime.h).
//
// The candidates are the SIMD tables compiled in (tables_hwy.cc) that this CPU and OS can run,
// as Highway's hwy::SupportedTargets() reports (CPUID plus XGETBV, so an OS that does not save
// AVX-512 state rules AVX-512 out), best first, then "scalar". The first use picks the best one,
// or the one XENT_ISA names; set_isa() changes it later. Not a per-call switch: the choice is one
// process-wide atomic, read by every kernel call. A bad XENT_ISA (or XENT_THREADS, parallel.cc) is
// not printed: environment_status() (runtime.h) reports it to whoever asks (the xent tool does).
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "hwy/targets.h"

#include "cpu/isa_tables.h"
#include "cpu/kernels.h"
#include "frontend.h"
#include "parallel.h"
#include "xent/runtime.h"

namespace xent::cpu {
namespace {

struct Choice {
  const char* name = nullptr;
  const KernelTable<float>* f32 = nullptr;
  const KernelTable<double>* f64 = nullptr;
  const KernelTable<BF16>* bf16 = nullptr;
  const KernelTable<F16>* f16 = nullptr;
};

// Tables this CPU can run, best first, "scalar" last. A fixed array, not a vector: it is built on
// first use from the noexcept table accessors, where an allocation could only terminate.
// Highway's target mask has 64 bits, so 64 SIMD tables plus scalar always fit.
struct Choices {
  std::array<Choice, 65> list{};
  std::size_t count = 0;
};

const Choices& choices() noexcept {
  static const Choices c = [] {
    Choices r;
    const std::int64_t supported = hwy::SupportedTargets();
    std::size_t n = 0;
    const IsaTables* tables = simd_isa_tables(&n);
    for (std::size_t i = 0; i < n && r.count + 1 < r.list.size(); ++i) {
      if ((supported & tables[i].hwy_target) != 0)
        r.list[r.count++] = {tables[i].name, &tables[i].f32(), &tables[i].f64(), &tables[i].bf16(), &tables[i].f16()};
    }
    r.list[r.count++] = {"scalar", &scalar_table_f32(), &scalar_table_f64(), &scalar_table_bf16(), &scalar_table_f16()};
    return r;
  }();
  return c;
}

std::string names_list() {
  std::string s;
  const Choices& c = choices();
  for (std::size_t i = 0; i < c.count; ++i) s += (s.empty() ? "" : ", ") + std::string(c.list[i].name);
  return s;
}

int find_choice(std::string_view name) noexcept {
  const Choices& c = choices();
  for (std::size_t i = 0; i < c.count; ++i)
    if (name == c.list[i].name) return static_cast<int>(i);
  return -1;
}

// XENT_ISA as read at first use: the table it picks (the best one when unset, "auto" or unknown),
// and, when it named no table this CPU can run, its value for environment_status() to report (the
// library never prints).
struct EnvIsa {
  int index = 0;
  bool unknown = false;
  char value[40] = {};  // cut to fit
};

const EnvIsa& env_isa() noexcept {
  static const EnvIsa e = [] {
    EnvIsa r;
    const char* env = std::getenv("XENT_ISA");
    if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) return r;
    const int found = find_choice(env);
    if (found >= 0) {
      r.index = found;
    } else {
      r.unknown = true;
      std::strncpy(r.value, env, sizeof(r.value) - 1);
    }
    return r;
  }();
  return e;
}

// Index into choices(); -1 until first use.
std::atomic<int> g_active{-1};

int active_index() noexcept {
  int i = g_active.load(std::memory_order_acquire);
  if (i >= 0) return i;
  int expected = -1;
  g_active.compare_exchange_strong(expected, env_isa().index, std::memory_order_acq_rel);
  return g_active.load(std::memory_order_acquire);
}

const Choice& active() noexcept { return choices().list[static_cast<std::size_t>(active_index())]; }

}  // namespace

const KernelTable<float>& active_table_f32() noexcept { return *active().f32; }
const KernelTable<double>& active_table_f64() noexcept { return *active().f64; }
const KernelTable<BF16>& active_table_bf16() noexcept { return *active().bf16; }
const KernelTable<F16>& active_table_f16() noexcept { return *active().f16; }

}  // namespace xent::cpu

namespace xent {

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  const cpu::Choices& c = cpu::choices();
  for (std::size_t i = 0; i < c.count; ++i) names.emplace_back(c.list[i].name);
  return names;
}

std::string active_isa() { return cpu::active().name; }

Status set_isa(const std::string& name) {
  return detail::guarded("set_isa", [&]() -> Status {
    if (name.empty() || name == "auto") {
      cpu::g_active.store(0, std::memory_order_release);
      return ok_status();
    }
    const int found = cpu::find_choice(name);
    if (found < 0) {
      return invalid_argument("instruction set '" + name +
                              "' is not available on this CPU; it supports: " + cpu::names_list() + " (or auto)");
    }
    cpu::g_active.store(found, std::memory_order_release);
    return ok_status();
  });
}

Status environment_status() {
  return detail::guarded("environment_status", []() -> Status {
    std::string problems;
    const cpu::EnvIsa& isa = cpu::env_isa();
    if (isa.unknown) {
      problems = "XENT_ISA=" + std::string(isa.value) +
                 " is not available on this CPU (available: " + cpu::names_list() + "); using " +
                 cpu::choices().list[0].name;
    }
    const std::string threads = detail::threads_environment_problem();
    if (!threads.empty()) problems += (problems.empty() ? "" : "; ") + threads;
    return problems.empty() ? ok_status() : invalid_argument(problems);
  });
}

}  // namespace xent
