// aligned.h (internal): a zero-filled array whose first element starts a cache line. The byte
// kernels load the class-major weight a vector at a time along each class's row; from a 16-byte
// aligned heap block (what malloc promises) half of AVX2's 32-byte loads straddle two cache lines,
// which measured ~15% slower SGD epochs. Not a general container: resized, then used in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace xent::train {

template <class T>
class CacheAligned {
 public:
  static constexpr std::size_t kLine = 64;
  void resize(std::size_t n) {
    buf_.assign(n + kLine / sizeof(T), T(0));
    const auto addr = reinterpret_cast<std::uintptr_t>(buf_.data());
    off_ = ((kLine - addr % kLine) % kLine) / sizeof(T);
    n_ = n;
  }
  T* data() noexcept { return buf_.data() + off_; }
  const T* data() const noexcept { return buf_.data() + off_; }
  std::size_t size() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }

 private:
  std::vector<T> buf_;
  std::size_t off_ = 0, n_ = 0;
};

}  // namespace xent::train
