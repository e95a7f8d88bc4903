// parallel.cc: xent's persistent thread pool behind parallel_for, and the thread-count setting.
//
// Workers are started on first use and kept; a parallel_for wakes as many as it needs, hands out
// task indices from one atomic counter (the caller takes tasks too), and waits until every task
// has run. Between regions a worker spins for a short while (kSpin) before it sleeps on the
// condition variable, and so does the caller waiting for the workers: callers that run many short
// regions back to back (a training step is one region of ~100 us) would otherwise pay a futex
// wake-up, tens of microseconds in a VM, on every region. Which thread runs a task is unspecified; determinism comes from the callers' fixed split
// into tasks (parallel.h). A call made from inside a task, or while another caller's region holds
// the pool, runs serially on the calling thread (no nesting, no deadlock). Not a scheduler: no
// priorities, no work stealing beyond the shared counter, no exceptions out of tasks.
#include "parallel.h"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "xent/runtime.h"

namespace xent::detail {
namespace {

constexpr int kMaxThreads = 256;
constexpr auto kSpin = std::chrono::microseconds(100);  // busy-wait before sleeping

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Busy-waits up to kSpin for done() to hold; returns whether it does.
template <class Done>
bool spin_until(Done&& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() > deadline) return done();
  }
}

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

// XENT_THREADS as read at first use: the default thread count, and whether the variable was set
// to something other than a positive integer (then the hardware's count is used, and
// threads_environment_problem() says so; the library never prints). No allocation: it is read
// from noexcept code.
struct EnvThreads {
  int n = 1;
  bool bad = false;
  char value[40] = {};  // XENT_THREADS's value when bad, cut to fit
};

const EnvThreads& env_threads() noexcept {
  static const EnvThreads e = [] {
    EnvThreads r;
    if (const char* s = std::getenv("XENT_THREADS"); s != nullptr && *s != '\0') {
      char* end = nullptr;
      long v = std::strtol(s, &end, 10);
      if (end != s && *end == '\0' && v > 0) {
        r.n = clamp_threads(v);
        return r;
      }
      r.bad = true;
      std::strncpy(r.value, s, sizeof(r.value) - 1);
    }
    r.n = clamp_threads(hardware_threads());
    return r;
  }();
  return e;
}

int default_threads() noexcept { return env_threads().n; }

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
      helpers_done_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_work_.notify_all();
    work(fn, n_tasks);
    auto all_done = [&] { return helpers_done_.load(std::memory_order_acquire) == helpers; };
    if (!spin_until(all_done)) {
      std::unique_lock<std::mutex> lk(mutex_);
      cv_done_.wait(lk, all_done);
    }
    std::lock_guard<std::mutex> lk(mutex_);
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
    for (;;) {
      auto fresh = [&] { return generation_.load(std::memory_order_acquire) != seen; };
      spin_until(fresh);
      std::unique_lock<std::mutex> lk(mutex_);
      cv_work_.wait(lk, fresh);
      seen = generation_.load(std::memory_order_relaxed);
      if (index >= helpers_wanted_) continue;  // this region needs fewer threads
      const auto* fn = fn_;
      const std::size_t n = n_tasks_;
      const int wanted = helpers_wanted_;
      lk.unlock();
      work(*fn, n);
      // The last helper to finish wakes the caller (a no-op when it is spinning, not sleeping).
      if (helpers_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == wanted) {
        std::lock_guard<std::mutex> done_lk(mutex_);
        cv_done_.notify_one();
      }
    }
  }

  std::mutex region_mutex_;  // one region at a time
  std::mutex mutex_;         // guards the fields below
  std::condition_variable cv_work_, cv_done_;
  std::vector<std::thread> workers_;
  std::atomic<std::uint64_t> generation_{0};  // written under mutex_, read by spinning workers
  const std::function<void(std::size_t)>* fn_ = nullptr;
  std::size_t n_tasks_ = 0;
  std::atomic<std::size_t> next_{0};
  int helpers_wanted_ = 0;
  std::atomic<int> helpers_done_{0};
};

}  // namespace

int pool_threads() noexcept {
  int r = g_requested.load(std::memory_order_relaxed);
  return r > 0 ? r : default_threads();
}

std::string threads_environment_problem() {
  const EnvThreads& e = env_threads();
  if (!e.bad) return "";
  return "XENT_THREADS=" + std::string(e.value) + " is not a positive integer; using " + std::to_string(e.n) +
         " threads (the CPUs this process may run on)";
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
