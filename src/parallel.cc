// parallel.cc: xent's persistent thread pool behind parallel_for, and the thread-count setting.
//
// Workers are started on first use and kept; a parallel_for wakes as many as it needs, hands out
// task indices from one atomic counter (the caller takes tasks too), and waits until every task
// has run. Which thread runs a task is unspecified; determinism comes from the callers' fixed split
// into tasks (parallel.h). A call made from inside a task, or while another caller's region holds
// the pool, runs serially on the calling thread (no nesting, no deadlock). Not a scheduler: no
// priorities, no work stealing beyond the shared counter, no exceptions out of tasks.
#include "parallel.h"

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "xent/runtime.h"

namespace xent::detail {
namespace {

constexpr int kMaxThreads = 256;

// CPUs this process may run on (affinity mask, so taskset and cgroup cpusets are respected).
int hardware_threads() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : static_cast<int>(h);
}

int clamp_threads(long n) noexcept {
  if (n < 1) return 1;
  if (n > kMaxThreads) return kMaxThreads;
  return static_cast<int>(n);
}

// XENT_THREADS (a positive integer) or the hardware's count; read once.
int default_threads() noexcept {
  static const int n = [] {
    if (const char* s = std::getenv("XENT_THREADS"); s != nullptr && *s != '\0') {
      char* end = nullptr;
      long v = std::strtol(s, &end, 10);
      if (end != s && *end == '\0' && v > 0) return clamp_threads(v);
    }
    return clamp_threads(hardware_threads());
  }();
  return n;
}

std::atomic<int> g_requested{0};  // 0: default
thread_local bool t_in_region = false;

class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool();  // never destroyed: workers may outlive static destructors
    return *pool;
  }

  // Runs fn over [0, n_tasks) with up to `threads` threads (the caller included). Returns false
  // without running anything if another region holds the pool.
  bool run(std::size_t n_tasks, const std::function<void(std::size_t)>& fn, int threads) {
    std::unique_lock<std::mutex> region(region_mutex_, std::try_to_lock);
    if (!region.owns_lock()) return false;
    const int helpers = static_cast<int>(std::min<std::size_t>(n_tasks, static_cast<std::size_t>(threads))) - 1;
    ensure_workers(helpers);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      fn_ = &fn;
      n_tasks_ = n_tasks;
      next_.store(0, std::memory_order_relaxed);
      helpers_wanted_ = helpers;
      helpers_done_ = 0;
      ++generation_;
    }
    cv_work_.notify_all();
    work(fn, n_tasks);
    std::unique_lock<std::mutex> lk(mutex_);
    cv_done_.wait(lk, [&] { return helpers_done_ == helpers_wanted_; });
    fn_ = nullptr;
    return true;
  }

 private:
  Pool() = default;

  void ensure_workers(int helpers) {
    while (static_cast<int>(workers_.size()) < helpers) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { worker_loop(index); });
      workers_.back().detach();
    }
  }

  void work(const std::function<void(std::size_t)>& fn, std::size_t n_tasks) {
    t_in_region = true;
    for (;;) {
      std::size_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks) break;
      fn(t);
    }
    t_in_region = false;
  }

  void worker_loop(int index) {
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(mutex_);
    for (;;) {
      cv_work_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      if (index >= helpers_wanted_) continue;  // this region needs fewer threads
      const auto* fn = fn_;
      const std::size_t n = n_tasks_;
      lk.unlock();
      work(*fn, n);
      lk.lock();
      if (++helpers_done_ == helpers_wanted_) cv_done_.notify_one();
    }
  }

  std::mutex region_mutex_;  // one region at a time
  std::mutex mutex_;         // guards the fields below
  std::condition_variable cv_work_, cv_done_;
  std::vector<std::thread> workers_;
  std::uint64_t generation_ = 0;
  const std::function<void(std::size_t)>* fn_ = nullptr;
  std::size_t n_tasks_ = 0;
  std::atomic<std::size_t> next_{0};
  int helpers_wanted_ = 0;
  int helpers_done_ = 0;
};

}  // namespace

int pool_threads() noexcept {
  int r = g_requested.load(std::memory_order_relaxed);
  return r > 0 ? r : default_threads();
}

void parallel_for(std::size_t n_tasks, const std::function<void(std::size_t)>& fn) {
  if (n_tasks == 0) return;
  const int threads = pool_threads();
  if (n_tasks == 1 || threads == 1 || t_in_region || !Pool::instance().run(n_tasks, fn, threads)) {
    // Serial: one task, one thread, a nested call, or the pool is busy with another caller.
    const bool was = t_in_region;
    t_in_region = true;
    for (std::size_t t = 0; t < n_tasks; ++t) fn(t);
    t_in_region = was;
  }
}

}  // namespace xent::detail

namespace xent {

void set_num_threads(int n) {
  detail::g_requested.store(n <= 0 ? 0 : detail::clamp_threads(n), std::memory_order_relaxed);
}

int num_threads() { return detail::pool_threads(); }

}  // namespace xent
