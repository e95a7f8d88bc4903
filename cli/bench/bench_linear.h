// bench_linear.h (cli/bench): the linear + cross-entropy benchmark, `xent bench
// linear-cross-entropy` (its one spelling): bench_command.cc adds it under `xent bench` and ignores
// its own callback when this subcommand ran. Not a library API and not a test.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace xent::cli::bench_linear {

// Adds the benchmark as subcommand `name` of `parent` (flags, help and callback) and returns it.
CLI::App* add_linear_bench(CLI::App& parent, const std::string& name);

}  // namespace xent::cli::bench_linear
