// token_stats.cc: cross_entropy_token_stats, the forward-only per-token statistics of
// include/xent/losses.h (logsumexp, entropy of the softmax, argmax == target): validation, then one
// kernel-table call per piece of each leaf of rows (reduce.h), results rounded once into the
// caller's views. No loss, no gradient, no reduction; the per-row arithmetic is the kernel
// tables' ce_stats (src/cpu/).
#include <cmath>
#include <cstdint>

#include "cpu/kernels.h"
#include "frontend.h"
#include "xent/losses.h"

namespace xent {
namespace {

template <class I>
Status check_targets(const I* t, std::int64_t n, const Shape& shape, std::int64_t C, std::int64_t ignore_index) {
  for (std::int64_t k = 0; k < n; ++k) {
    const std::int64_t v = t[k];
    if (v != ignore_index && (v < 0 || v >= C))
      return out_of_range(fmt::format("target {} at position {} is outside [0, {}) (ignore_index is {})", v,
                                      detail::position_of(k, shape), C, ignore_index));
  }
  return ok_status();
}

Status validate(ConstTensorView input, ConstTensorView target, TensorView lse, TensorView entropy,
                TensorView correct, int* cdim) {
  XENT_RETURN_IF_ERROR(detail::check_floating(input, "input"));
  if (input.shape.rank() < 1)
    return invalid_argument("input must have shape (C), (N, C) or (N, C, d1, ...), found a 0-d tensor");
  *cdim = input.shape.rank() == 1 ? 0 : 1;
  const Shape want = input.shape.without(*cdim);
  XENT_RETURN_IF_ERROR(detail::check_present(target, "target"));
  if (target.dtype != DType::kI32 && target.dtype != DType::kI64)
    return invalid_argument(
        fmt::format("target must hold class indices (int32 or int64), found {}", dtype_name(target.dtype)));
  if (target.shape != want)
    return invalid_argument(fmt::format("target must have shape {} for an input of shape {}, found {}",
                                        want.to_string(), input.shape.to_string(), target.shape.to_string()));
  if (lse.empty_view() && entropy.empty_view() && correct.empty_view())
    return invalid_argument("token stats: expected at least one of lse, entropy and correct, found none");
  if (!lse.empty_view()) XENT_RETURN_IF_ERROR(detail::check_like(lse, input.dtype, want, "lse", "the input"));
  if (!entropy.empty_view())
    XENT_RETURN_IF_ERROR(detail::check_like(entropy, input.dtype, want, "entropy", "the input"));
  if (!correct.empty_view()) {
    XENT_RETURN_IF_ERROR(detail::check_present(correct, "correct"));
    if (correct.dtype != DType::kI32 && correct.dtype != DType::kI64)
      return invalid_argument(fmt::format("correct must be int32 or int64, found {}", dtype_name(correct.dtype)));
    if (correct.shape != want)
      return invalid_argument(
          fmt::format("correct must have shape {}, found {}", want.to_string(), correct.shape.to_string()));
  }
  return ok_status();
}

template <class T, class I>
void run(const detail::Layout& L, const T* x, const I* t, std::int64_t ignore_index, T* lse, T* entropy,
         void* correct, DType correct_dtype) {
  const auto& k = cpu::active_table<T>();
  detail::for_each_leaf(L, [&](std::size_t, std::size_t r0, std::size_t r1) {
    double lb[detail::kMaxLeafRows], eb[detail::kMaxLeafRows];
    std::int64_t ab[detail::kMaxLeafRows];
    detail::for_each_piece(L, r0, r1, [&](const detail::Piece& p) {
      k.ce_stats(x + p.x_off, p.b, lb + p.dense_off, eb + p.dense_off, ab + p.dense_off);
    });
    for (std::size_t r = r0; r < r1; ++r) {
      const std::size_t j = r - r0;
      if (lse != nullptr) lse[r] = static_cast<T>(lb[j]);
      if (entropy != nullptr) entropy[r] = static_cast<T>(eb[j]);
      if (correct == nullptr) continue;
      const std::int64_t tv = static_cast<std::int64_t>(t[r]);
      const std::int64_t c = tv == ignore_index ? -1 : tv == ab[j] ? 1 : 0;
      if (correct_dtype == DType::kI32) static_cast<std::int32_t*>(correct)[r] = static_cast<std::int32_t>(c);
      else static_cast<std::int64_t*>(correct)[r] = c;
    }
  });
}

}  // namespace

Status cross_entropy_token_stats(ConstTensorView input, ConstTensorView target, const TokenStatsOptions& options,
                                 TensorView lse, TensorView entropy, TensorView correct) {
  return detail::guarded("cross_entropy_token_stats", [&]() -> Status {
    int cdim = 0;
    XENT_RETURN_IF_ERROR(validate(input, target, lse, entropy, correct, &cdim));
    const detail::Layout L = detail::layout_of(input.shape, cdim);
    const std::int64_t C = input.shape[cdim], n = static_cast<std::int64_t>(L.rows());
    if (target.dtype == DType::kI32)
      XENT_RETURN_IF_ERROR(check_targets(target.as<std::int32_t>(), n, target.shape, C, options.ignore_index));
    else
      XENT_RETURN_IF_ERROR(check_targets(target.as<std::int64_t>(), n, target.shape, C, options.ignore_index));
    detail::visit_float(input.dtype, [&](auto tag) {
      using T = decltype(tag);
      auto go = [&](const auto* t) {
        run<T>(L, input.as<T>(), t, options.ignore_index, lse.empty_view() ? nullptr : lse.as<T>(),
               entropy.empty_view() ? nullptr : entropy.as<T>(), correct.empty_view() ? nullptr : correct.data,
               correct.dtype);
      };
      if (target.dtype == DType::kI32) go(target.as<std::int32_t>());
      else go(target.as<std::int64_t>());
    });
    return ok_status();
  });
}

}  // namespace xent
