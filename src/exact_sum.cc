// exact_sum.cc: the out-of-line parts of exact_sum.h: the fixed-point accumulator's conversion to
// double, the class-weight total and the final reduction of the exact cross-entropy. Pure
// integer and double arithmetic, no MPI and no threads.
#include "exact_sum.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

#include "reduce.h"

namespace xent::detail::exact {

double fx_value(const std::int64_t* acc_in, int shift) noexcept {
  std::int64_t a[kLimbs];
  std::copy(acc_in, acc_in + kLimbs, a);
  for (int i = 0; i + 1 < kLimbs; ++i) {    // carry-normalise: digits 0..2 in [0, 2^32), the top signed
    const std::int64_t carry = a[i] >> 32;  // arithmetic shift = floor division
    a[i] -= carry * (std::int64_t{1} << 32);
    a[i + 1] += carry;
  }
  const __int128 top = (static_cast<__int128>(a[3]) << 64) + (static_cast<__int128>(a[2]) << 32) + a[1];
  return std::ldexp(static_cast<double>(top), 32 - shift) + std::ldexp(static_cast<double>(a[0]), -shift);
}

double weight_total(const double* cw, std::int64_t V) noexcept {
  if (cw == nullptr) return static_cast<double>(V);
  double W = 0;
  for (std::int64_t c = 0; c < V; ++c) W += cw[c];
  return W;
}

template <class T>
void finish(Reduction red, const double* tok_ce, const double* tok_z, std::int64_t N, double div_ce, double div_z,
            T* loss, T* zloss) noexcept {
  if (red == Reduction::kNone) {
    for (std::int64_t n = 0; n < N; ++n) {
      const double z = tok_z != nullptr ? tok_z[n] : 0.0;
      if (loss) loss[n] = static_cast<T>(tok_ce[n] + z);
      if (zloss) zloss[n] = static_cast<T>(z);
    }
    return;
  }
  const auto n = static_cast<std::size_t>(N);
  const double ce = pairwise_sum(tok_ce, n);
  const double z = tok_z != nullptr ? pairwise_sum(tok_z, n) : 0.0;
  if (red == Reduction::kSum) {
    if (loss) loss[0] = static_cast<T>(ce + z);
    if (zloss) zloss[0] = static_cast<T>(z);
  } else {
    if (loss) loss[0] = static_cast<T>(ce / div_ce + z / div_z);
    if (zloss) zloss[0] = static_cast<T>(z / div_z);
  }
}

template void finish<float>(Reduction, const double*, const double*, std::int64_t, double, double, float*,
                            float*) noexcept;
template void finish<double>(Reduction, const double*, const double*, std::int64_t, double, double, double*,
                             double*) noexcept;

}  // namespace xent::detail::exact
