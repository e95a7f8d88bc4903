// blas_note.h: which kernels OpenBLAS chose for this CPU, and a hint when they are older than the
// CPU. OpenBLAS picks its kernels from the CPU model as it loads; a model it does not know (a VM
// that masks the model, a CPU newer than the library) gets its Prescott (SSE3) kernels, and
// xent's linear cross-entropy then ran 4x slower on a 16-core Xeon VM (100 GFLOP/s against 382
// with OPENBLAS_CORETYPE=SkylakeX). Not a fix: OpenBLAS reads OPENBLAS_CORETYPE before main
// runs, so the CLI can only say what to set. Printed by `xent info` and, once, by the commands
// whose time is BLAS products. Not part of the library API.
#pragma once

#include <string>

namespace xent::cli {

// OpenBLAS's name for the kernels it uses ("SkylakeX", "Haswell", "Zen", "Prescott", ...).
std::string blas_core();

// One sentence naming OPENBLAS_CORETYPE's better value when OpenBLAS uses kernels without AVX2
// on a CPU with AVX2 and FMA; empty otherwise.
std::string blas_core_hint();

// Prints "xent: note: <hint>" on stderr the first time it is called, when the hint is not empty.
void note_blas_core();

}  // namespace xent::cli
