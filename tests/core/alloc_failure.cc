// alloc_failure.cc: allocation failure on demand for the tests that check that no std::bad_alloc
// crosses a library boundary (tests/core/test_errors.cc, tests/train/test_alloc_failure.cc,
// tests/mpi/test_mpi_losses.cc). While g_fail_new is set, every replaceable operator new in the
// process asking for at least g_fail_min_bytes throws std::bad_alloc (and counts the attempt), as
// it would when memory runs out. In its own file so that the compiler does not pair the inlined
// malloc/free here with new/delete at call sites (-Wmismatched-new-delete). Not a leak checker.
#include "alloc_failure.h"

#include <cstdlib>
#include <new>

namespace xent::test {
std::atomic<bool> g_fail_new{false};
std::atomic<std::size_t> g_fail_min_bytes{0};
std::atomic<long> g_failed_news{0};
}  // namespace xent::test

void* operator new(std::size_t n) {
  if (xent::test::g_fail_new.load(std::memory_order_relaxed) &&
      n >= xent::test::g_fail_min_bytes.load(std::memory_order_relaxed)) {
    xent::test::g_failed_news.fetch_add(1, std::memory_order_relaxed);
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
