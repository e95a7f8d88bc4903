// info_command.cc: `xent info`: the version, the instruction set the kernels use (and those this
// CPU supports), the thread count and OpenBLAS's kernels (with blas_note.h's hint when they are
// older than the CPU), for bug reports and benchmarks. Prints; changes nothing.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli.h"
#include "shared/blas_note.h"
#include "xent/runtime.h"

namespace xent::cli {
namespace {

void setup(CLI::App& root) {
  CLI::App* app = root.add_subcommand("info", "Version, instruction sets, threads and BLAS kernels");
  app->footer("\nExample:\n  XENT_ISA=avx2 XENT_THREADS=1 xent info\n");
  app->callback([] {
    std::string isas;
    for (const auto& i : supported_isas()) isas += (isas.empty() ? "" : ", ") + i;
    std::printf("xent %s\n", XENT_VERSION);
    std::printf("isa: %s (this CPU supports: %s; pin one with $XENT_ISA)\n", active_isa().c_str(), isas.c_str());
    std::printf("threads: %d ($XENT_THREADS or --threads)\n", num_threads());
    const std::string hint = blas_core_hint();
    std::printf("blas: OpenBLAS, %s kernels ($OPENBLAS_CORETYPE)%s%s\n", blas_core().c_str(), hint.empty() ? "" : "; ",
                hint.c_str());
  });
}

}  // namespace

XENT_REGISTER_COMMAND(99, setup);

}  // namespace xent::cli
