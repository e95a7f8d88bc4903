// dispatch.cc: runtime choice of the kernel table (stub: scalar only; the SIMD tables replace it).
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "xent/runtime.h"

namespace xent::cpu {
const KernelTable<float>& active_table_f32() noexcept { return scalar_table_f32(); }
const KernelTable<double>& active_table_f64() noexcept { return scalar_table_f64(); }
}  // namespace xent::cpu

namespace xent {
std::vector<std::string> supported_isas() { return {"scalar"}; }
std::string active_isa() { return "scalar"; }
Status set_isa(const std::string& name) {
  if (name.empty() || name == "auto" || name == "scalar") return Status::Ok();
  return invalid_argument("unknown instruction set '" + name + "'; this CPU supports: scalar");
}
}  // namespace xent
