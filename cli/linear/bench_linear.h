// bench_linear.h (cli/linear): the linear + cross-entropy benchmark command, addable under any
// parent app. `xent bench-linear-cross-entropy` registers it at the top level; `xent bench` can
// offer it as `xent bench linear-cross-entropy` by calling add_linear_bench(*bench_app,
// "linear-cross-entropy") and ignoring its own callback when that subcommand ran. Not a library
// API and not a test.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace xent::cli::linear {

// Adds the benchmark as subcommand `name` of `parent` (flags, help and callback) and returns it.
CLI::App* add_linear_bench(CLI::App& parent, const std::string& name);

}  // namespace xent::cli::linear
