// validators.h: CLI11 range checks whose messages are words ("--top must be at least 1; got 0")
// instead of CLI11's "Value 0 not in range 0.000000 to 1797693134862315708...". main.cc prints
// them as "xent: error: --top must be ...". Not for anything but numeric flags.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace xent::cli {

// The value must parse as a number >= lo (and <= hi when given); the message says so in words.
inline CLI::Validator at_least(double lo) {
  return CLI::Validator(
      [lo](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v)) return fmt::format("must be a number; got '{}'", s);
        if (!(v >= lo)) return fmt::format("must be at least {}; got {}", lo, s);
        return {};
      },
      "", "at_least");
}

inline CLI::Validator between(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v)) return fmt::format("must be a number; got '{}'", s);
        if (!(v >= lo && v <= hi)) return fmt::format("must be between {} and {}; got {}", lo, hi, s);
        return {};
      },
      "", "between");
}

}  // namespace xent::cli
