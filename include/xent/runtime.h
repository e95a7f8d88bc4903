// runtime.h: which instruction set the kernels use and how many threads they run on.
//
// xent ships one binary with kernels for several instruction sets and picks the best one the CPU
// supports at first use. Tests and benchmarks can pin another one. The environment variables
// XENT_ISA (a name from supported_isas()) and XENT_THREADS are read once, at first use; the
// functions below override them, and environment_status() reports a bad value. Results are bit-identical for every thread count; they may differ
// by rounding between instruction sets (all are tested against the same scalar reference).
#pragma once

#include <string>
#include <vector>

#include "xent/status.h"

namespace xent {

// Names of the kernel sets this CPU can run, best first; always ends with "scalar".
std::vector<std::string> supported_isas();
// Name of the kernel set in use.
std::string active_isa();
// Pins a kernel set by name; "auto" (or "") returns to the best one. Fails for a name this CPU
// cannot run, listing the names it can.
Status set_isa(const std::string& name);

// Threads used by the kernels; 0 restores the default (the hardware's cores).
void set_num_threads(int n);
int num_threads();

// What became of the environment variables, read at first use (this call is one): ok when
// XENT_ISA and XENT_THREADS are unset or valid; otherwise an invalid-argument Status naming each
// bad value and what is used instead (XENT_ISA: the best kernel set, listing the available ones;
// XENT_THREADS: the CPUs' count). xent itself never writes to stderr; a program that wants its user
// told asks here (the xent tool prints it as a warning).
Status environment_status();

}  // namespace xent
