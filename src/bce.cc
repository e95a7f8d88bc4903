// bce.cc: public entry points for binary_cross_entropy (probabilities) and
// binary_cross_entropy_with_logits: validation, NumPy broadcasting of weight and pos_weight split
// into runs the elementwise kernels can stride through, and the fixed-order mean/sum (each leaf of
// kLeafElems terms by the table's sum_terms, the same bits on every ISA; leaf sums pairwise).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/kernels.h"
#include "frontend.h"
#include "parallel.h"
#include "xent/losses.h"

namespace xent {
namespace {

constexpr std::size_t kLeafElems = detail::kMaxLeafRows;

// Element strides of an optional tensor broadcast to the input's shape (0 along broadcast dims).
struct Broadcast {
  bool present = false;
  bool simple = false;  // absent, or the same offset as the input element (step 1), or one value (step 0)
  std::size_t simple_step = 1;
  std::int64_t stride[Shape::kMaxDims] = {};
};

Status make_broadcast(ConstTensorView t, const ConstTensorView& input, const char* what, Broadcast* b) {
  *b = Broadcast{};
  if (t.empty_view()) {
    b->simple = true;
    return ok_status();
  }
  XENT_RETURN_IF_ERROR(detail::check_present(t, what));
  if (t.dtype != input.dtype)
    return invalid_argument(fmt::format("{} must have the input's dtype {}, found {}", what, dtype_name(input.dtype),
                                        dtype_name(t.dtype)));
  const int R = input.shape.rank(), wr = t.shape.rank();
  auto fail = [&] {
    return invalid_argument(fmt::format("{} of shape {} cannot be broadcast to the input's shape {}", what,
                                        t.shape.to_string(), input.shape.to_string()));
  };
  if (wr > R) {
    for (int j = 0; j < wr - R; ++j)
      if (t.shape[j] != 1) return fail();
  }
  b->present = true;
  std::int64_t s = 1;
  bool full = true, scalar = true;
  for (int k = R - 1; k >= 0; --k) {
    int j = k - (R - wr);
    std::int64_t wd = j >= 0 ? t.shape[j] : 1;
    if (wd == input.shape[k]) {
      b->stride[k] = wd == 1 ? 0 : s;
    } else if (wd == 1) {
      b->stride[k] = 0;
    } else {
      return fail();
    }
    if (b->stride[k] != 0) scalar = false;
    if (input.shape[k] != 1 && b->stride[k] != s) full = false;
    s *= wd;
  }
  if (full) b->simple = true, b->simple_step = 1;
  else if (scalar) b->simple = true, b->simple_step = 0;
  return ok_status();
}

struct BceSetup {
  Broadcast w, pw;
};

template <class T>
Status check_probabilities(const T* p, std::int64_t n, const Shape& shape) {
  for (std::int64_t k = 0; k < n; ++k) {
    if (!(p[k] >= T(0) && p[k] <= T(1)))
      return out_of_range(fmt::format("input must hold probabilities in [0, 1]; found {} at position {}",
                                      static_cast<double>(p[k]), detail::position_of(k, shape)));
  }
  return ok_status();
}

Status validate(ConstTensorView input, ConstTensorView target, const BceOptions& o, bool logits, BceSetup* s) {
  XENT_RETURN_IF_ERROR(detail::check_floating(input, "input"));
  XENT_RETURN_IF_ERROR(detail::check_like(target, input.dtype, input.shape, "target", "the input"));
  if (o.reduction != Reduction::kNone && o.reduction != Reduction::kMean && o.reduction != Reduction::kSum)
    return invalid_argument("reduction must be none, mean or sum");
  XENT_RETURN_IF_ERROR(make_broadcast(o.weight, input, "weight", &s->w));
  if (!logits && !o.pos_weight.empty_view())
    return invalid_argument("pos_weight applies to binary_cross_entropy_with_logits only");
  XENT_RETURN_IF_ERROR(make_broadcast(o.pos_weight, input, "pos_weight", &s->pw));
  if (!logits) {
    XENT_RETURN_IF_ERROR(detail::visit_float(input.dtype, [&](auto tag) {
      using T = decltype(tag);
      return check_probabilities(input.as<T>(), input.numel(), input.shape);
    }));
  }
  return ok_status();
}

// Offset of element e's broadcast partner.
std::size_t offset_of(const Broadcast& b, const Shape& shape, std::size_t e) {
  std::size_t off = 0;
  for (int k = shape.rank() - 1; k >= 0; --k) {
    std::size_t d = static_cast<std::size_t>(shape[k]);
    off += (e % d) * static_cast<std::size_t>(b.stride[k]);
    e /= d;
  }
  return off;
}

template <class T>
void run(const BceSetup& s, const BceOptions& o, bool logits, ConstTensorView input, const T* t, T* loss, T* dx,
         const T* dloss_elems, double dloss_scale) {
  const auto& k = cpu::active_table<T>();
  auto kernel = logits ? k.bce_logits : k.bce;
  const T* x = input.as<T>();
  const T* w = o.weight.as<T>();
  const T* pw = o.pos_weight.as<T>();
  const Shape& shape = input.shape;
  const std::size_t n = static_cast<std::size_t>(input.numel());
  const std::size_t last = shape.rank() == 0 ? 1 : static_cast<std::size_t>(shape[shape.rank() - 1]);
  const bool simple = s.w.simple && s.pw.simple;
  const bool want_loss = loss != nullptr, none = o.reduction == Reduction::kNone;
  const std::size_t n_leaves = (n + kLeafElems - 1) / kLeafElems;
  std::vector<double> leaf_sums(want_loss && !none ? n_leaves : 0);

  // With logits, reduced, no broadcasting: each leaf's sum straight from the kernel (no buffer).
  const bool fused_sum = logits && simple && want_loss && !none && k.bce_logits_sum != nullptr;
  static_assert(kLeafElems <= cpu::kBceSumMaxTerms);

  auto do_leaf = [&](std::size_t leaf) {
    double buf[kLeafElems];
    const std::size_t e0 = leaf * kLeafElems, e1 = std::min(n, e0 + kLeafElems);
    if (fused_sum) {
      cpu::BceArgs<T> a;
      a.x = x + e0;
      a.target = t + e0;
      if (s.w.present) a.weight = w + e0 * s.w.simple_step, a.w_step = s.w.simple_step;
      if (s.pw.present) a.pos_weight = pw + e0 * s.pw.simple_step, a.pw_step = s.pw.simple_step;
      leaf_sums[leaf] = k.bce_logits_sum(a, e1 - e0);
      return;
    }
    std::size_t e = e0;
    while (e < e1) {
      std::size_t run_end = simple ? e1 : std::min(e1, (e / last + 1) * last);
      cpu::BceArgs<T> a;
      a.x = x + e;
      a.target = t + e;
      if (s.w.present) {
        a.weight = w + (s.w.simple ? e * s.w.simple_step : offset_of(s.w, shape, e));
        a.w_step = s.w.simple ? s.w.simple_step : static_cast<std::size_t>(s.w.stride[shape.rank() - 1]);
      }
      if (s.pw.present) {
        a.pos_weight = pw + (s.pw.simple ? e * s.pw.simple_step : offset_of(s.pw, shape, e));
        a.pw_step = s.pw.simple ? s.pw.simple_step : static_cast<std::size_t>(s.pw.stride[shape.rank() - 1]);
      }
      a.elem_loss = want_loss ? buf + (e - e0) : nullptr;
      a.dx = dx ? dx + e : nullptr;
      a.dloss = dloss_elems ? dloss_elems + e : nullptr;
      a.dloss_scale = dloss_scale;
      kernel(a, run_end - e);
      e = run_end;
    }
    if (!want_loss) return;
    if (none) {
      for (std::size_t i = e0; i < e1; ++i) loss[i] = static_cast<T>(buf[i - e0]);
    } else {
      leaf_sums[leaf] = k.sum_terms(buf, e1 - e0);
    }
  };
  // Tasks of kLeavesPerTask leaves (a 16K-element task, ~10 us): one claim from the pool's shared
  // counter per task rather than per 1024 elements. Each leaf is still summed alone, so the bits do
  // not depend on the thread count.
  constexpr std::size_t kLeavesPerTask = 16;
  detail::parallel_for((n_leaves + kLeavesPerTask - 1) / kLeavesPerTask, [&](std::size_t task) {
    const std::size_t l1 = std::min(n_leaves, (task + 1) * kLeavesPerTask);
    for (std::size_t leaf = task * kLeavesPerTask; leaf < l1; ++leaf) do_leaf(leaf);
  });
  if (want_loss && !none) {
    double total = detail::pairwise_sum(leaf_sums.data(), leaf_sums.size());
    if (o.reduction == Reduction::kMean) total /= static_cast<double>(n);
    *loss = static_cast<T>(total);
  }
}

Status do_forward(ConstTensorView input, ConstTensorView target, const BceOptions& o, bool logits, TensorView loss) {
  BceSetup s;
  XENT_RETURN_IF_ERROR(validate(input, target, o, logits, &s));
  XENT_RETURN_IF_ERROR(detail::check_reduction_output(loss, input.dtype, input.shape, o.reduction == Reduction::kNone));
detail::visit_float(input.dtype, [&](auto tag) {
    using T = decltype(tag);
    run<T>(s, o, logits, input, target.as<T>(), loss.as<T>(), nullptr, nullptr, 1);
  });
  return ok_status();
}

template <class T>
void backward_typed(const BceSetup& s, const BceOptions& o, bool logits, ConstTensorView input, ConstTensorView target,
                    ConstTensorView dloss, TensorView dinput) {
  const T* dl = dloss.as<T>();
  double scale = 1;
  if (o.reduction != Reduction::kNone) {
    scale = static_cast<double>(dl[0]);
    if (o.reduction == Reduction::kMean) scale /= static_cast<double>(input.numel());
  }
  run<T>(s, o, logits, input, target.as<T>(), nullptr, dinput.as<T>(), o.reduction == Reduction::kNone ? dl : nullptr,
         scale);
}

Status do_backward(ConstTensorView input, ConstTensorView target, const BceOptions& o, bool logits,
                   ConstTensorView dloss, TensorView dinput) {
  BceSetup s;
  XENT_RETURN_IF_ERROR(validate(input, target, o, logits, &s));
  Shape want = o.reduction == Reduction::kNone ? input.shape : Shape{};
  XENT_RETURN_IF_ERROR(detail::check_like(dloss, input.dtype, want, "loss gradient", "the input"));
  XENT_RETURN_IF_ERROR(detail::check_like(dinput, input.dtype, input.shape, "input gradient", "the input"));
detail::visit_float(input.dtype, [&](auto tag) {
    using T = decltype(tag);
    backward_typed<T>(s, o, logits, input, target, dloss, dinput);
  });
  return ok_status();
}

}  // namespace

Status binary_cross_entropy_forward(ConstTensorView input, ConstTensorView target, const BceOptions& options,
                                    TensorView loss) {
  return detail::guarded("binary_cross_entropy_forward", [&]() -> Status {
    return do_forward(input, target, options, false, loss);
  });
}
Status binary_cross_entropy_backward(ConstTensorView input, ConstTensorView target, const BceOptions& options,
                                     ConstTensorView dloss, TensorView dinput) {
  return detail::guarded("binary_cross_entropy_backward", [&]() -> Status {
    return do_backward(input, target, options, false, dloss, dinput);
  });
}
Status binary_cross_entropy_with_logits_forward(ConstTensorView input, ConstTensorView target,
                                                const BceOptions& options, TensorView loss) {
  return detail::guarded("binary_cross_entropy_with_logits_forward", [&]() -> Status {
    return do_forward(input, target, options, true, loss);
  });
}
Status binary_cross_entropy_with_logits_backward(ConstTensorView input, ConstTensorView target,
                                                 const BceOptions& options, ConstTensorView dloss,
                                                 TensorView dinput) {
  return detail::guarded("binary_cross_entropy_with_logits_backward", [&]() -> Status {
    return do_backward(input, target, options, true, dloss, dinput);
  });
}

}  // namespace xent
