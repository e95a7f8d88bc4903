// main.cc: the `xent` command-line tool's entry point: builds the CLI11 app from the registered
// subcommands, runs the chosen one, and maps errors to exit codes (0 ok, 1 runtime failure,
// 2 usage or bad input). Subcommands live in cli/<area>/ and know nothing of each other.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.h"
#include "io/atomic_file.h"

namespace xent::cli {
namespace {

std::vector<std::pair<int, SetupFn>>& registry() {
  static std::vector<std::pair<int, SetupFn>> r;
  return r;
}
int g_exit_code = 0;

}  // namespace

CommandRegistration::CommandRegistration(int order, SetupFn setup) { registry().emplace_back(order, setup); }

void set_exit_code(int code) { g_exit_code = code; }

void throw_if_error(const Status& s, const std::string& context) {
  if (s.ok()) return;
  std::string msg = context.empty() ? s.message() : context + ": " + s.message();
  switch (s.code()) {
    case StatusCode::kIoError:
    case StatusCode::kInternal:
      throw RuntimeFailure(msg);
    default:
      throw InputError(msg);
  }
}

}  // namespace xent::cli

int main(int argc, char** argv) {
  using namespace xent::cli;
  // A signal during a write removes the temporary; a file-size limit is an error, not a crash.
  xent::io::install_signal_cleanup();
  CLI::App app{
      "xent: exact, fast softmax and cross-entropy with PyTorch's semantics.\n"
      "Arrays are NumPy .npy files; `xent <command> --help` explains each command with an example.",
      "xent"};
  app.require_subcommand(1);
  app.fallthrough(false);
  auto& reg = registry();
  std::stable_sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [order, setup] : reg) setup(app);

  // A first word that names no command is a typo, not a missing command: say which.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sub->check_name(argv[1]);
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "xent: error: unknown command '%s'; expected one of: %s\n", argv[1], names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "xent: error: %s (see `xent --help` or `xent <command> --help`)\n", e.what());
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "xent: error: %s\n", e.what());
    return 2;
  } catch (const InputError& e) {
    std::fprintf(stderr, "xent: error: %s\n", e.what());
    return 2;
  } catch (const RuntimeFailure& e) {
    std::fprintf(stderr, "xent: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xent: error: %s\n", e.what());
    return 1;
  }
  return g_exit_code;
}
