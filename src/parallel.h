// parallel.h (internal): fork-join over a fixed number of tasks on xent's thread pool.
//
// parallel_for(n_tasks, fn) calls fn(task) once for each task in [0, n_tasks), possibly on several
// threads, and returns when all are done. Tasks must write disjoint memory. Determinism is the
// caller's job: the split into tasks must not depend on the thread count (callers split by fixed
// sizes), so the results are the same bits for any thread count. Not a general task scheduler:
// no nesting (a nested call runs serially), no futures, no exceptions out of fn.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace xent::detail {

void parallel_for(std::size_t n_tasks, const std::function<void(std::size_t)>& fn);

// Threads the pool uses now (>= 1).
int pool_threads() noexcept;

// Empty when XENT_THREADS is unset or a positive integer; otherwise the sentence that
// environment_status() (runtime.h) reports: the value found and the count used instead.
std::string threads_environment_problem();

}  // namespace xent::detail
