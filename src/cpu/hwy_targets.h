// hwy_targets.h (internal): the one place that chooses which Highway targets xent's SIMD units
// compile, and what every per-target unit needs to know about them. Include it FIRST in each
// foreach_target unit (src/cpu/*_hwy.cc), before any Highway header, so every unit compiles the
// same set: AVX-512 (AVX3), AVX2+FMA, SSE4 on x86, NEON on Arm. SSSE3 and AVX3_DL are dropped to
// keep the build small (AVX3_DL would be AVX3 with VNNI/VBMI2, of no use here); EMU128, the
// baseline Highway requires, compiles no kernels: the portable table is kernels_scalar.cc.
// The list of ISA tables (tables_hwy.cc) is derived from Highway's own target list, so adding or
// dropping a target is this one line.
// XENT_LEAN_SIMD (CMake -DXENT_LEAN_SIMD=ON, set by the sanitizer and fuzz scripts) keeps one SIMD
// target on x86, AVX2: those builds test and fuzz the code under instrumentation, not every ISA
// (the normal build does that), and each extra target costs minutes of instrumented compilation.
#pragma once

#ifndef HWY_DISABLED_TARGETS
#ifdef XENT_LEAN_SIMD
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3 | HWY_AVX3_DL)
#else
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_AVX3_DL)
#endif
#endif

// True inside a per-target pass that has kernels (evaluated per target, after highway.h).
#define XENT_TARGET_HAS_KERNELS (HWY_TARGET != HWY_EMU128 && HWY_TARGET != HWY_SCALAR && HWY_HAVE_FLOAT64)
