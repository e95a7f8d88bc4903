// alloc_failure.h: the switches of tests/core/alloc_failure.cc (allocation failure on demand), for
// the tests that link it: while g_fail_new is set, every operator new asking for at least
// g_fail_min_bytes throws std::bad_alloc and adds one to g_failed_news. Test code only.
#pragma once

#include <atomic>
#include <cstddef>

namespace xent::test {
extern std::atomic<bool> g_fail_new;
extern std::atomic<std::size_t> g_fail_min_bytes;
extern std::atomic<long> g_failed_news;
}  // namespace xent::test
