// blas_threads.h (internal): makes OpenBLAS single-threaded for a scope, for the code that runs many
// small BLAS products as tasks of xent's own thread pool (linear cross-entropy, the MPI layer): one
// lock-protected count shared by every such scope in the process, so that concurrent callers never
// restore each other's setting. Not a general BLAS configuration API.
#pragma once

#include <cblas.h>

#include <mutex>

namespace xent::detail {

// While at least one SingleThreadedBlas lives, OpenBLAS runs single-threaded. The first one saves the
// process-wide thread count and the last one restores it, under a lock, so that concurrent calls
// cannot restore each other's 1 or leave the BLAS single-threaded for good.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
    std::lock_guard<std::mutex> lock(mu());
    if (depth()++ == 0) {
      saved() = openblas_get_num_threads();
      openblas_set_num_threads(1);
    }
  }
  ~SingleThreadedBlas() {
    std::lock_guard<std::mutex> lock(mu());
    if (--depth() == 0) openblas_set_num_threads(saved());
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static int& depth() {
    static int d = 0;
    return d;
  }
  static int& saved() {
    static int s = 1;
    return s;
  }
};

}  // namespace xent::detail
