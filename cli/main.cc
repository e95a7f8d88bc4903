// main.cc: the `xent` command-line tool's entry point: builds the CLI11 app from the registered
// subcommands, runs the chosen one, and maps errors to exit codes (0 ok, 1 runtime failure,
// 2 usage or bad input), and tells the user about a bad XENT_ISA / XENT_THREADS (the library
// itself never prints). Subcommands live in cli/<area>/ and register themselves here; an area does
// not include another's files, with one exception: `linear-cross-entropy` and `train` run
// distributed under mpirun through the hooks of cli/mpi/ (linear_parallel.h, train_parallel.h:
// function pointers, null in a build without MPI). What several areas need (array files in and
// out, printing) is in cli/shared/.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <cblas.h>

#include "cli.h"
#include "suggest.h"
#include "io/atomic_file.h"
#include "xent/runtime.h"

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

// OpenBLAS's own (exported, not in cblas.h) call that joins its worker threads; it starts them
// again by itself if a threaded BLAS call ever needs them. Weak: absent from other BLAS builds.
extern "C" int blas_thread_shutdown_() __attribute__((weak));

namespace {

// Debian's OpenBLAS (pthread build) starts one worker per extra CPU while it loads, and each one
// spins on sched_yield for ~2^28 cycles before it sleeps. xent never hands them work: every BLAS
// call runs single-threaded inside a task of xent's own pool (SingleThreadedBlas, the trainer's
// apply_threads). On 2 cores the spinning worker took a core from `xent train` for its first
// ~50 ms. An executable cannot set OPENBLAS_NUM_THREADS before OpenBLAS's initialiser reads it
// (glibc sets up the environment only after .preinit_array), so the CLI, which owns its process,
// makes OpenBLAS single-threaded and joins the idle workers as it starts. Not in the library: a
// host process (NumPy, PyTorch) may want OpenBLAS's threads.
void quiet_openblas_workers() {
  openblas_set_num_threads(1);
  if (blas_thread_shutdown_ != nullptr) blas_thread_shutdown_();
}

using xent::cli::closest;

std::vector<CLI::App*> subcommands_of(CLI::App* app) {
  return app->get_subcommands([](CLI::App*) { return true; });
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

std::vector<std::string> subcommand_names(CLI::App* app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : subcommands_of(app)) names.push_back(sub->get_name());
  return names;
}

std::vector<std::string> option_names(const CLI::App* app) {
  std::vector<std::string> names;
  for (const CLI::Option* o : app->get_options()) {
    for (const auto& l : o->get_lnames()) names.push_back("--" + l);
  }
  return names;
}

std::string did_you_mean(const std::string& typed, const std::vector<std::string>& candidates) {
  std::string c = closest(typed, candidates);
  return c.empty() ? "" : "did you mean '" + c + "'? ";
}

// Reads the command line as the parser will, before it does, to report a misspelled command or
// option as such (with the closest name) rather than as a missing required option or CLI11's
// "extra arguments". Returns false after printing the one-line error.
bool preflight(CLI::App& root, int argc, char** argv) {
  CLI::App* cur = &root;
  std::string where = "xent";
  bool asks_help = false;
  for (int i = 1; i < argc; ++i) {
    const std::string t = argv[i];
    if (t == "--") break;
    if (t == "--help" || t == "-h" || t == "--version") {
      asks_help = true;
      continue;
    }
    if (t.size() > 2 && t.compare(0, 2, "--") == 0) {
      const std::string name = t.substr(0, t.find('='));
      if (cur->get_option_no_throw(name) == nullptr) {
        const std::vector<std::string> known = option_names(cur);
        std::fprintf(stderr, "xent: error: unknown option '%s' for `%s`; %sexpected one of: %s\n", name.c_str(),
                     where.c_str(), did_you_mean(name, known).c_str(), join(known).c_str());
        return false;
      }
      continue;
    }
    if (t.empty() || t[0] == '-') continue;  // a value, a short flag or a negative number
    CLI::App* next = nullptr;
    for (CLI::App* sub : subcommands_of(cur)) {
      if (sub->check_name(t)) next = sub;
    }
    if (next) {
      cur = next;
      where += " " + t;
      continue;
    }
    if (cur->get_require_subcommand_min() > 0) {  // only commands are expected here
      const std::vector<std::string> names = subcommand_names(cur);
      std::fprintf(stderr, "xent: error: unknown command '%s' for `%s`; %sexpected one of: %s\n", t.c_str(),
                   where.c_str(), did_you_mean(t, names).c_str(), join(names).c_str());
      return false;
    }
  }
  if (!asks_help && cur->get_require_subcommand_min() > 0) {
    std::fprintf(stderr, "xent: error: `%s` needs a command; expected one of: %s (see `%s --help`)\n", where.c_str(),
                 join(subcommand_names(cur)).c_str(), where.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace xent::cli;
  quiet_openblas_workers();
  // A signal during a write removes the temporary; a file-size limit is an error, not a crash.
  xent::io::install_signal_cleanup();
  CLI::App app{"xent " XENT_VERSION
               ": exact, fast softmax and cross-entropy with PyTorch's semantics.\n"
               "Arrays are NumPy .npy files; `xent <command> --help` explains each command with an example;\n"
               "`xent info` prints the version, the instruction sets, the threads and the BLAS kernels.",
               "xent"};
  app.set_version_flag("--version", "xent " XENT_VERSION, "Print the version and exit");
  app.require_subcommand(1);
  app.fallthrough(false);
  auto& reg = registry();
  std::stable_sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [order, setup] : reg) setup(app);

  if (!preflight(app, argc, argv)) return 2;
  // The library never prints: a bad XENT_ISA or XENT_THREADS (ignored, with a fallback) is told here.
  if (const xent::Status env = xent::environment_status(); !env.ok())
    std::fprintf(stderr, "xent: warning: %s\n", env.message().c_str());
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Our validators (validators.h) say "--top: must be at least 1; got 0": print it as a sentence.
    std::string msg = e.what();
    if (auto pos = msg.find(": must be "); pos != std::string::npos) {
      std::fprintf(stderr, "xent: error: %s%s\n", msg.substr(0, pos).c_str(), msg.substr(pos + 1).c_str());
    } else {
      std::fprintf(stderr, "xent: error: %s (see `xent --help` or `xent <command> --help`)\n", msg.c_str());
    }
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
