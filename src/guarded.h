// guarded.h (internal): the wrapper that keeps exceptions inside the library. Every public entry
// point of the core, io, train and mpi libraries runs its body through guarded(), so that a failed
// allocation (a scratch vector, a file buffer, a workspace) or a thread that cannot be started
// becomes a resource-exhausted Status (or a Result holding one) naming the entry point, instead of
// an exception crossing the boundary. Not here: validation (frontend.h) or MPI's collective
// agreement on such failures (src/mpi/common.h).
#pragma once

#include <exception>
#include <new>
#include <string>
#include <system_error>
#include <type_traits>

#include "xent/status.h"

namespace xent::detail {

// Runs `body` (returning Status or Result<T>) and turns what it throws into the same return type.
// Outputs may hold partial results after such a failure (it comes after validation). The message
// itself may not fit in memory then; its fallback is short enough for std::string's inline buffer
// (no allocation).
template <class F>
auto guarded(const char* entry_point, F&& body) noexcept -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  StatusCode code = StatusCode::kInternal;
  const char* what = "unexpected exception";
  try {
    return body();
  } catch (const std::bad_alloc&) {
    code = StatusCode::kResourceExhausted;
    what = "out of memory";
  } catch (const std::system_error&) {
    code = StatusCode::kResourceExhausted;
    what = "cannot start a thread";
  } catch (...) {
  }
  try {
    return R(Status(code, std::string(entry_point) + ": " + what));
  } catch (...) {
    return R(Status(code, "out of memory"));
  }
}

}  // namespace xent::detail
