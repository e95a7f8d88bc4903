// softmax.cc: public entry points for softmax, log_softmax and logsumexp (forward and backward):
// validate, lay the tensor out as (outer, C, inner), and run the active kernel table over leaves
// of rows in parallel. No arithmetic on elements lives here.
#include "xent/softmax.h"

#include "cpu/kernels.h"
#include "frontend.h"

namespace xent {
namespace {

using detail::Layout;
using detail::Piece;

enum class Op { kSoftmax, kLogSoftmax };

template <class T>
void run_forward(Op op, const T* x, T* y, const Layout& L) {
  const auto& k = cpu::active_table<T>();
  auto fn = op == Op::kSoftmax ? k.softmax_fwd : k.log_softmax_fwd;
  detail::for_each_leaf(L, [&](std::size_t, std::size_t r0, std::size_t r1) {
    detail::for_each_piece(L, r0, r1, [&](const Piece& p) { fn(x + p.x_off, y + p.x_off, p.b); });
  });
}

template <class T>
void run_backward(Op op, const T* y, const T* dy, T* dx, const Layout& L) {
  const auto& k = cpu::active_table<T>();
  auto fn = op == Op::kSoftmax ? k.softmax_bwd : k.log_softmax_bwd;
  detail::for_each_leaf(L, [&](std::size_t, std::size_t r0, std::size_t r1) {
    detail::for_each_piece(L, r0, r1, [&](const Piece& p) { fn(y + p.x_off, dy + p.x_off, dx + p.x_off, p.b); });
  });
}

Status forward(Op op, ConstTensorView x, std::int64_t dim, TensorView y) {
  XENT_RETURN_IF_ERROR(detail::check_floating(x, "input"));
  int d = 0;
  XENT_RETURN_IF_ERROR(detail::resolve_dim(dim, x.shape.rank(), &d));
  XENT_RETURN_IF_ERROR(detail::check_like(y, x.dtype, x.shape, "output", "the input"));
  Layout L = detail::layout_of(x.shape, d);
  if (x.dtype == DType::kF32) run_forward(op, x.as<float>(), y.as<float>(), L);
  else run_forward(op, x.as<double>(), y.as<double>(), L);
  return Status::Ok();
}

Status backward(Op op, ConstTensorView y, ConstTensorView dy, std::int64_t dim, TensorView dx) {
  XENT_RETURN_IF_ERROR(detail::check_floating(y, "output"));
  int d = 0;
  XENT_RETURN_IF_ERROR(detail::resolve_dim(dim, y.shape.rank(), &d));
  XENT_RETURN_IF_ERROR(detail::check_like(dy, y.dtype, y.shape, "output gradient", "the output"));
  XENT_RETURN_IF_ERROR(detail::check_like(dx, y.dtype, y.shape, "input gradient", "the output"));
  Layout L = detail::layout_of(y.shape, d);
  if (y.dtype == DType::kF32) run_backward(op, y.as<float>(), dy.as<float>(), dx.as<float>(), L);
  else run_backward(op, y.as<double>(), dy.as<double>(), dx.as<double>(), L);
  return Status::Ok();
}

template <class T>
void run_lse_forward(const T* x, T* out, const Layout& L) {
  const auto& k = cpu::active_table<T>();
  detail::for_each_leaf(L, [&](std::size_t, std::size_t r0, std::size_t r1) {
    detail::for_each_piece(L, r0, r1, [&](const Piece& p) { k.logsumexp_fwd(x + p.x_off, out + p.row_off, p.b); });
  });
}

template <class T>
void run_lse_backward(const T* x, const T* out, const T* dout, T* dx, const Layout& L) {
  const auto& k = cpu::active_table<T>();
  detail::for_each_leaf(L, [&](std::size_t, std::size_t r0, std::size_t r1) {
    detail::for_each_piece(L, r0, r1, [&](const Piece& p) {
      k.logsumexp_bwd(x + p.x_off, out + p.row_off, dout + p.row_off, dx + p.x_off, p.b);
    });
  });
}

}  // namespace

Status softmax_forward(ConstTensorView x, std::int64_t dim, TensorView y) { return forward(Op::kSoftmax, x, dim, y); }
Status log_softmax_forward(ConstTensorView x, std::int64_t dim, TensorView y) {
  return forward(Op::kLogSoftmax, x, dim, y);
}
Status softmax_backward(ConstTensorView y, ConstTensorView dy, std::int64_t dim, TensorView dx) {
  return backward(Op::kSoftmax, y, dy, dim, dx);
}
Status log_softmax_backward(ConstTensorView y, ConstTensorView dy, std::int64_t dim, TensorView dx) {
  return backward(Op::kLogSoftmax, y, dy, dim, dx);
}

Status logsumexp_forward(ConstTensorView x, std::int64_t dim, TensorView out) {
  XENT_RETURN_IF_ERROR(detail::check_floating(x, "input"));
  int d = 0;
  XENT_RETURN_IF_ERROR(detail::resolve_dim(dim, x.shape.rank(), &d));
  Shape out_shape = x.shape.rank() == 0 ? Shape{} : x.shape.without(d);
  XENT_RETURN_IF_ERROR(detail::check_like(out, x.dtype, out_shape, "output", "the input"));
  Layout L = detail::layout_of(x.shape, d);
  if (x.dtype == DType::kF32) run_lse_forward(x.as<float>(), out.as<float>(), L);
  else run_lse_forward(x.as<double>(), out.as<double>(), L);
  return Status::Ok();
}

Status logsumexp_backward(ConstTensorView x, ConstTensorView out, ConstTensorView dout, std::int64_t dim,
                          TensorView dx) {
  XENT_RETURN_IF_ERROR(detail::check_floating(x, "input"));
  int d = 0;
  XENT_RETURN_IF_ERROR(detail::resolve_dim(dim, x.shape.rank(), &d));
  Shape out_shape = x.shape.rank() == 0 ? Shape{} : x.shape.without(d);
  XENT_RETURN_IF_ERROR(detail::check_like(out, x.dtype, out_shape, "logsumexp output", "the input"));
  XENT_RETURN_IF_ERROR(detail::check_like(dout, x.dtype, out_shape, "output gradient", "the input"));
  XENT_RETURN_IF_ERROR(detail::check_like(dx, x.dtype, x.shape, "input gradient", "the input"));
  Layout L = detail::layout_of(x.shape, d);
  if (x.dtype == DType::kF32)
    run_lse_backward(x.as<float>(), out.as<float>(), dout.as<float>(), dx.as<float>(), L);
  else
    run_lse_backward(x.as<double>(), out.as<double>(), dout.as<double>(), dx.as<double>(), L);
  return Status::Ok();
}

}  // namespace xent
