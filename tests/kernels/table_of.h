// table_of.h (tests/kernels): the kernel tables a test compares, by element type: table<T>() is the
// active (dispatched) float32/float64 table, scalar<T>() the scalar twin's. Test code only.
#pragma once

#include "cpu/kernels.h"

namespace xent::table_of {

template <class T>
const cpu::KernelTable<T>& table() {
  if constexpr (sizeof(T) == 4) return cpu::active_table_f32();
  else return cpu::active_table_f64();
}
template <class T>
const cpu::KernelTable<T>& scalar() {
  if constexpr (sizeof(T) == 4) return cpu::scalar_table_f32();
  else return cpu::scalar_table_f64();
}

}  // namespace xent::table_of
