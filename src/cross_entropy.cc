// cross_entropy.cc: public entry points for cross_entropy (class-index and probability targets)
// and nll_loss: validation with PyTorch's rules, the mean's divisor, and the fixed-order
// reduction of per-row losses. The per-row arithmetic is in the kernel tables (src/cpu/).
#include <vector>

#include "cpu/kernels.h"
#include "frontend.h"
#include "xent/losses.h"

namespace xent {

const char* reduction_name(Reduction r) noexcept {
  switch (r) {
    case Reduction::kNone: return "none";
    case Reduction::kMean: return "mean";
    case Reduction::kSum: return "sum";
  }
  return "unknown";
}

namespace {

using detail::Layout;
using detail::Piece;

enum class Kind { kIndex32, kIndex64, kProb };

// Everything validation learns about a call.
struct Setup {
  Layout L;
  Kind kind = Kind::kIndex64;
  Shape loss_none_shape;  // shape of the loss for reduction kNone
  double divisor = 1;     // the mean's divisor: sum of picked weights, or rows for probabilities
  double weight_sum = 0;  // sum of all class weights (C without weights)
};

struct Common {
  ConstTensorView weight;
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::kMean;
  double label_smoothing = 0;
};

template <class T, class I>
Status scan_targets(const I* t, std::int64_t n, const Shape& tshape, std::int64_t C, std::int64_t ignore_index,
                    const T* w, double* divisor) {
  // Fast pass, branch-free: the count of kept targets (the divisor without weights: the same value
  // as a sum of ones), or the weighted sum in the same order as below, and whether any target is
  // out of range; the loop below then only runs to name the first bad target.
  const std::uint64_t uC = static_cast<std::uint64_t>(C);
  bool bad = false;
  if (w == nullptr) {  // the kernel table's vector scan
    const auto& k = cpu::active_table<T>();
    std::int64_t kept;
    if constexpr (sizeof(I) == 4) kept = k.count_kept_i32(t, static_cast<std::size_t>(n), C, ignore_index, &bad);
    else kept = k.count_kept_i64(t, static_cast<std::size_t>(n), C, ignore_index, &bad);
    *divisor = static_cast<double>(kept);
  } else {
    double total = 0;
    for (std::int64_t k = 0; k < n; ++k) {
      const std::int64_t v = t[k];
      if (v == ignore_index) continue;
      if (static_cast<std::uint64_t>(v) >= uC) {
        bad = true;
        break;
      }
      total += static_cast<double>(w[v]);
    }
    *divisor = total;
  }
  if (!bad) return Status::Ok();
  double total = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    std::int64_t v = t[k];
    if (v == ignore_index) continue;
    if (v < 0 || v >= C) {
      return out_of_range(fmt::format("target {} at position {} is outside [0, {}){}", v, detail::position_of(k, tshape), C,
                                      fmt::format(" (ignore_index is {})", ignore_index)));
    }
    total += w ? static_cast<double>(w[v]) : 1.0;
  }
  *divisor = total;
  return Status::Ok();
}

template <class T>
double sum_weights(const T* w, std::size_t C) {
  if (!w) return static_cast<double>(C);
  double s = 0;
  for (std::size_t c = 0; c < C; ++c) s += static_cast<double>(w[c]);
  return s;
}

Status validate(ConstTensorView input, ConstTensorView target, const Common& o, bool is_nll, Setup* s) {
  XENT_RETURN_IF_ERROR(detail::check_floating(input, "input"));
  if (input.shape.rank() < 1)
    return invalid_argument(fmt::format("input must have shape (C), (N, C) or (N, C, d1, ...), found a 0-d tensor"));
  const int cdim = input.shape.rank() == 1 ? 0 : 1;
  s->L = detail::layout_of(input.shape, cdim);
  const std::int64_t C = input.shape[cdim];

  if (!o.weight.empty_view()) {
    XENT_RETURN_IF_ERROR(detail::check_present(o.weight.data, o.weight.shape, "weight"));
    if (o.weight.dtype != input.dtype)
      return invalid_argument(fmt::format("weight must have the input's dtype {}, found {}", dtype_name(input.dtype),
                                          dtype_name(o.weight.dtype)));
    if (o.weight.shape.rank() != 1 || o.weight.shape[0] != C)
      return invalid_argument(fmt::format("weight must have one entry per class ({}), found shape {}", C,
                                          o.weight.shape.to_string()));
  }
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0))
    return invalid_argument(fmt::format("label_smoothing must be in [0, 1], found {}", o.label_smoothing));
  if (o.reduction != Reduction::kNone && o.reduction != Reduction::kMean && o.reduction != Reduction::kSum)
    return invalid_argument("reduction must be none, mean or sum");

  XENT_RETURN_IF_ERROR(detail::check_present(target.data, target.shape, "target"));
  if (is_floating(target.dtype)) {
    if (is_nll)
      return invalid_argument(fmt::format("nll_loss target must hold class indices (int32 or int64), found {}",
                                          dtype_name(target.dtype)));
    XENT_RETURN_IF_ERROR(detail::check_like(target, input.dtype, input.shape, "probability target", "the input"));
    if (o.ignore_index >= 0)
      return invalid_argument(fmt::format(
          "ignore_index is not supported with probability targets (it must be negative, found {})", o.ignore_index));
    s->kind = Kind::kProb;
    s->loss_none_shape = input.shape.without(cdim);
    s->divisor = static_cast<double>(s->L.rows());
  } else {
    Shape want = input.shape.without(cdim);
    if (target.shape != want)
      return invalid_argument(fmt::format("target must have shape {} for an input of shape {}, found {}", want.to_string(),
                                          input.shape.to_string(), target.shape.to_string()));
    s->loss_none_shape = want;
    s->kind = target.dtype == DType::kI32 ? Kind::kIndex32 : Kind::kIndex64;
    const std::int64_t n = want.numel();
    auto scan = [&](auto* w) -> Status {
      if (s->kind == Kind::kIndex32)
        return scan_targets(target.as<std::int32_t>(), n, want, C, o.ignore_index, w, &s->divisor);
      return scan_targets(target.as<std::int64_t>(), n, want, C, o.ignore_index, w, &s->divisor);
    };
    if (input.dtype == DType::kF32) XENT_RETURN_IF_ERROR(scan(o.weight.as<float>()));
    else XENT_RETURN_IF_ERROR(scan(o.weight.as<double>()));
  }
  s->weight_sum = input.dtype == DType::kF32 ? sum_weights(o.weight.as<float>(), s->L.C)
                                             : sum_weights(o.weight.as<double>(), s->L.C);
  return Status::Ok();
}

Status check_dloss(ConstTensorView dloss, DType dt, const Setup& s, Reduction r) {
  Shape want = r == Reduction::kNone ? s.loss_none_shape : Shape{};
  return detail::check_like(dloss, dt, want, "loss gradient", "the input");
}

// One run over all rows: per-row losses (reduced or stored) and/or the gradient.
template <class T>
void run(const Setup& s, const Common& o, bool is_nll, const void* x_v, const void* t_v, T* loss, T* dx,
         const T* dloss_rows, double dloss_scale) {
  const auto& k = cpu::active_table<T>();
  const T* x = static_cast<const T*>(x_v);
  const T* w = o.weight.as<T>();
  const bool want_loss = loss != nullptr;
  const bool none = o.reduction == Reduction::kNone;
  const Layout& L = s.L;
  std::vector<double> leaf_sums;
  if (want_loss && !none) leaf_sums.resize((L.rows() + detail::leaf_rows(L.C) - 1) / detail::leaf_rows(L.C));

  auto leaf_fn = [&](std::size_t leaf, std::size_t r0, std::size_t r1) {
    double buf[detail::kMaxLeafRows];
    double* row_loss = want_loss ? buf : nullptr;
    detail::for_each_piece(L, r0, r1, [&](const Piece& p) {
      const T* dl = dloss_rows ? dloss_rows + p.row_off : nullptr;
      double* rl = row_loss ? row_loss + p.dense_off : nullptr;
      T* d = dx ? dx + p.x_off : nullptr;
      if (s.kind == Kind::kProb) {
        cpu::CeProbArgs<T> a;
        a.x = x + p.x_off;
        a.target = static_cast<const T*>(t_v) + p.x_off;
        a.weight = w;
        a.smoothing = o.label_smoothing;
        a.row_loss = rl;
        a.dx = d;
        a.dloss = dl;
        a.dloss_scale = dloss_scale;
        k.ce_prob(a, p.b);
        return;
      }
      auto call = [&](auto* tgt, auto fn) {
        using I = std::remove_const_t<std::remove_pointer_t<decltype(tgt)>>;
        cpu::CeIndexArgs<T, I> a;
        a.x = x + p.x_off;
        a.target = tgt + p.row_off;
        a.weight = w;
        a.weight_sum = s.weight_sum;
        a.ignore_index = o.ignore_index;
        a.smoothing = is_nll ? 0.0 : o.label_smoothing;
        a.row_loss = rl;
        a.dx = d;
        a.dloss = dl;
        a.dloss_scale = dloss_scale;
        fn(a, p.b);
      };
      if (s.kind == Kind::kIndex32)
        call(static_cast<const std::int32_t*>(t_v), is_nll ? k.nll_i32 : k.ce_index_i32);
      else
        call(static_cast<const std::int64_t*>(t_v), is_nll ? k.nll_i64 : k.ce_index_i64);
    });
    if (!want_loss) return;
    const std::size_t n = r1 - r0;
    if (none) {
      for (std::size_t r = 0; r < n; ++r) loss[r0 + r] = static_cast<T>(buf[r]);
    } else {
      leaf_sums[leaf] = detail::pairwise_sum(buf, n);
    }
  };
  detail::for_each_leaf(L, leaf_fn);
  if (want_loss && !none) {
    double total = detail::pairwise_sum(leaf_sums.data(), leaf_sums.size());
    if (o.reduction == Reduction::kMean) total /= s.divisor;
    *loss = static_cast<T>(total);
  }
}

// The three entry points for both cross_entropy (is_nll false) and nll_loss (is_nll true).
Status do_forward(ConstTensorView input, ConstTensorView target, const Common& o, bool is_nll, TensorView loss) {
  Setup s;
  XENT_RETURN_IF_ERROR(validate(input, target, o, is_nll, &s));
  XENT_RETURN_IF_ERROR(detail::check_reduction_output(loss, input.dtype, s.loss_none_shape, o.reduction == Reduction::kNone));
  if (input.dtype == DType::kF32) run<float>(s, o, is_nll, input.data, target.data, loss.as<float>(), nullptr, nullptr, 1);
  else run<double>(s, o, is_nll, input.data, target.data, loss.as<double>(), nullptr, nullptr, 1);
  return Status::Ok();
}

template <class T>
double upstream_scale(const Setup& s, Reduction r, const T* dloss) {
  if (r == Reduction::kNone) return 1.0;
  double g = static_cast<double>(dloss[0]);
  return r == Reduction::kMean ? g / s.divisor : g;
}

Status do_backward(ConstTensorView input, ConstTensorView target, const Common& o, bool is_nll, ConstTensorView dloss,
                   TensorView dinput) {
  Setup s;
  XENT_RETURN_IF_ERROR(validate(input, target, o, is_nll, &s));
  XENT_RETURN_IF_ERROR(check_dloss(dloss, input.dtype, s, o.reduction));
  XENT_RETURN_IF_ERROR(detail::check_like(dinput, input.dtype, input.shape, "input gradient", "the input"));
  const bool none = o.reduction == Reduction::kNone;
  if (input.dtype == DType::kF32) {
    const float* dl = dloss.as<float>();
    run<float>(s, o, is_nll, input.data, target.data, nullptr, dinput.as<float>(), none ? dl : nullptr,
               upstream_scale(s, o.reduction, dl));
  } else {
    const double* dl = dloss.as<double>();
    run<double>(s, o, is_nll, input.data, target.data, nullptr, dinput.as<double>(), none ? dl : nullptr,
                upstream_scale(s, o.reduction, dl));
  }
  return Status::Ok();
}

Common common_of(const CrossEntropyOptions& o) { return {o.weight, o.ignore_index, o.reduction, o.label_smoothing}; }
Common common_of(const NllOptions& o) { return {o.weight, o.ignore_index, o.reduction, 0.0}; }

}  // namespace

Status cross_entropy_forward(ConstTensorView input, ConstTensorView target, const CrossEntropyOptions& options,
                             TensorView loss) {
  return do_forward(input, target, common_of(options), false, loss);
}

Status cross_entropy_backward(ConstTensorView input, ConstTensorView target, const CrossEntropyOptions& options,
                              ConstTensorView dloss, TensorView dinput) {
  return do_backward(input, target, common_of(options), false, dloss, dinput);
}

Status cross_entropy_fused(ConstTensorView input, ConstTensorView target, const CrossEntropyOptions& options,
                           TensorView loss, TensorView dinput) {
  const Common o = common_of(options);
  Setup s;
  XENT_RETURN_IF_ERROR(validate(input, target, o, false, &s));
  XENT_RETURN_IF_ERROR(detail::check_reduction_output(loss, input.dtype, s.loss_none_shape, o.reduction == Reduction::kNone));
  XENT_RETURN_IF_ERROR(detail::check_like(dinput, input.dtype, input.shape, "input gradient", "the input"));
  const double scale = o.reduction == Reduction::kMean ? 1.0 / s.divisor : 1.0;
  if (input.dtype == DType::kF32)
    run<float>(s, o, false, input.data, target.data, loss.as<float>(), dinput.as<float>(), nullptr, scale);
  else
    run<double>(s, o, false, input.data, target.data, loss.as<double>(), dinput.as<double>(), nullptr, scale);
  return Status::Ok();
}

Status nll_loss_forward(ConstTensorView input, ConstTensorView target, const NllOptions& options, TensorView loss) {
  return do_forward(input, target, common_of(options), true, loss);
}

Status nll_loss_backward(ConstTensorView input, ConstTensorView target, const NllOptions& options,
                         ConstTensorView dloss, TensorView dinput) {
  return do_backward(input, target, common_of(options), true, dloss, dinput);
}

}  // namespace xent
