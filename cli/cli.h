// cli.h: what every `xent` subcommand shares: the command registry and the error types that map
// to exit codes.
//
// A subcommand lives in cli/<area>/*.cc and registers itself with XENT_REGISTER_COMMAND; main.cc
// knows no subcommand by name. Inside the CLI, errors are exceptions; main.cc turns them into one
// line on stderr ("xent: error: ...") and the exit code: 2 for bad usage or bad input
// (UsageError, InputError, CLI11 parse errors), 1 for a runtime failure (RuntimeFailure, anything
// else). This header is not part of the library API.
#pragma once

#include <stdexcept>
#include <string>

#include "xent/status.h"

namespace CLI {
class App;
}

namespace xent::cli {

// Bad flags or flag combinations. Exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Bad input data: a malformed file, a target out of range, a shape mismatch. Exit code 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The input was fine but the work failed: disk full, I/O error, internal error. Exit code 1.
struct RuntimeFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws the exception that matches a non-ok Status: InputError for invalid argument, out of
// range, data loss and resource limits; RuntimeFailure for I/O and internal errors. `context`
// (e.g. a file name) is prefixed to the message when not empty.
void throw_if_error(const Status& s, const std::string& context = "");

// The value of a Result, or throw_if_error's exception for its Status.
template <class T>
T value_or_throw(Result<T> r, const std::string& context = "") {
  throw_if_error(r.status(), context);
  return std::move(r).value();
}

// A subcommand's setup function adds it (with its flags and callback) to the root app.
using SetupFn = void (*)(CLI::App& root);

struct CommandRegistration {
  // `order` sorts `xent --help` (smaller first).
  CommandRegistration(int order, SetupFn setup);
};

// Exit code the running subcommand asks main to return (default 0).
void set_exit_code(int code);

}  // namespace xent::cli

#define XENT_CLI_CONCAT2(a, b) a##b
#define XENT_CLI_CONCAT(a, b) XENT_CLI_CONCAT2(a, b)
#define XENT_REGISTER_COMMAND(order, setup) \
  static ::xent::cli::CommandRegistration XENT_CLI_CONCAT(xent_cmd_reg_, __LINE__)(order, setup)
