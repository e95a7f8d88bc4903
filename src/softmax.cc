// softmax.cc: public entry points for softmax, log_softmax and logsumexp (forward and backward):
// validate, lay the tensor out as (outer, C, inner), and run the active kernel table over leaves
// of rows in parallel; long rows on few rows are split into chunks (reduce.h split_chunks) whose
// stats combine in chunk order. No arithmetic on elements lives here.
#include "xent/softmax.h"

#include <cmath>
#include <vector>

#include "cpu/kernels.h"
#include "frontend.h"
#include "split.h"

namespace xent {
namespace {

using detail::Layout;
using detail::Piece;

enum class Op { kSoftmax, kLogSoftmax };

template <class T>
void run_forward(Op op, const T* x, T* y, const Layout& L) {
  const auto& k = cpu::active_table<T>();
  auto fn = op == Op::kSoftmax ? k.softmax_fwd : k.log_softmax_fwd;
  if (const std::size_t n_chunks = detail::split_chunks(L, sizeof(T))) {
    std::vector<double> M, S;
    std::vector<char> ok;
    detail::split_row_stats(x, L, n_chunks, &M, &S, &ok);
    const std::size_t C = L.C;
    detail::for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t j, std::size_t c0, std::size_t c1) {
      if (!ok[r]) {  // NaN, +inf or all -inf: the unsplit kernel's semantics, whole row in one task
        if (j == 0) fn(x + r * C, y + r * C, cpu::Block{1, C, 1, 1});
        return;
      }
      if (op == Op::kSoftmax) k.chunk_exp_scale(x + r * C + c0, y + r * C + c0, c1 - c0, M[r], 1.0 / S[r]);
      else k.chunk_shift(x + r * C + c0, y + r * C + c0, c1 - c0, M[r], std::log(S[r]));
    });
    return;
  }
  detail::for_each_leaf(L, [&](std::size_t, std::size_t r0, std::size_t r1) {
    detail::for_each_piece(L, r0, r1, [&](const Piece& p) { fn(x + p.x_off, y + p.x_off, p.b); });
  });
}

template <class T>
void run_backward(Op op, const T* y, const T* dy, T* dx, const Layout& L) {
  const auto& k = cpu::active_table<T>();
  auto fn = op == Op::kSoftmax ? k.softmax_bwd : k.log_softmax_bwd;
  if (const std::size_t n_chunks = detail::split_chunks(L, sizeof(T))) {
    // Per row: sum y dy (softmax) or sum dy (log_softmax) over chunks, added in chunk order.
    const std::size_t rows = L.rows(), C = L.C;
    std::vector<double> part(rows * n_chunks);
    detail::for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t j, std::size_t c0, std::size_t c1) {
      const T* a = op == Op::kSoftmax ? y + r * C + c0 : dy + r * C + c0;
      part[r * n_chunks + j] = k.chunk_dot(a, op == Op::kSoftmax ? dy + r * C + c0 : nullptr, c1 - c0);
    });
    std::vector<double> row_sum(rows, 0.0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < n_chunks; ++j) row_sum[r] += part[r * n_chunks + j];
    detail::for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t, std::size_t c0, std::size_t c1) {
      const std::size_t o = r * C + c0;
      if (op == Op::kSoftmax) k.chunk_softmax_bwd(y + o, dy + o, dx + o, c1 - c0, row_sum[r]);
      else k.chunk_log_softmax_bwd(y + o, dy + o, dx + o, c1 - c0, row_sum[r]);
    });
    return;
  }
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
detail::visit_float(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    run_forward(op, x.as<T>(), y.as<T>(), L);
  });
  return ok_status();
}

Status backward(Op op, ConstTensorView y, ConstTensorView dy, std::int64_t dim, TensorView dx) {
  XENT_RETURN_IF_ERROR(detail::check_floating(y, "output"));
  int d = 0;
  XENT_RETURN_IF_ERROR(detail::resolve_dim(dim, y.shape.rank(), &d));
  XENT_RETURN_IF_ERROR(detail::check_like(dy, y.dtype, y.shape, "output gradient", "the output"));
  XENT_RETURN_IF_ERROR(detail::check_like(dx, y.dtype, y.shape, "input gradient", "the output"));
  Layout L = detail::layout_of(y.shape, d);
detail::visit_float(y.dtype, [&](auto tag) {
    using T = decltype(tag);
    run_backward(op, y.as<T>(), dy.as<T>(), dx.as<T>(), L);
  });
  return ok_status();
}

template <class T>
void run_lse_forward(const T* x, T* out, const Layout& L) {
  const auto& k = cpu::active_table<T>();
  if (const std::size_t n_chunks = detail::split_chunks(L, sizeof(T))) {
    std::vector<double> M, S;
    std::vector<char> ok;
    detail::split_row_stats(x, L, n_chunks, &M, &S, &ok);
    for (std::size_t r = 0; r < L.rows(); ++r) {
      if (ok[r]) out[r] = static_cast<T>(M[r] + std::log(S[r]));
      else k.logsumexp_fwd(x + r * L.C, out + r, cpu::Block{1, L.C, 1, 1});
    }
    return;
  }
  detail::for_each_leaf(L, [&](std::size_t, std::size_t r0, std::size_t r1) {
    detail::for_each_piece(L, r0, r1, [&](const Piece& p) { k.logsumexp_fwd(x + p.x_off, out + p.row_off, p.b); });
  });
}

template <class T>
void run_lse_backward(const T* x, const T* out, const T* dout, T* dx, const Layout& L) {
  const auto& k = cpu::active_table<T>();
  if (const std::size_t n_chunks = detail::split_chunks(L, sizeof(T))) {
    // Elementwise given the row's lse: each chunk is a row of its own with the same lse and dlse.
    detail::for_each_chunk(L, n_chunks, [&](std::size_t r, std::size_t, std::size_t c0, std::size_t c1) {
      k.logsumexp_bwd(x + r * L.C + c0, out + r, dout + r, dx + r * L.C + c0, cpu::Block{1, c1 - c0, 1, 1});
    });
    return;
  }
  detail::for_each_leaf(L, [&](std::size_t, std::size_t r0, std::size_t r1) {
    detail::for_each_piece(L, r0, r1, [&](const Piece& p) {
      k.logsumexp_bwd(x + p.x_off, out + p.row_off, dout + p.row_off, dx + p.x_off, p.b);
    });
  });
}

}  // namespace

Status softmax_forward(ConstTensorView x, std::int64_t dim, TensorView y) {
  return detail::guarded("softmax_forward", [&]() -> Status {
    return forward(Op::kSoftmax, x, dim, y);
  });
}
Status log_softmax_forward(ConstTensorView x, std::int64_t dim, TensorView y) {
  return detail::guarded("log_softmax_forward", [&]() -> Status {
    return forward(Op::kLogSoftmax, x, dim, y);
  });
}
Status softmax_backward(ConstTensorView y, ConstTensorView dy, std::int64_t dim, TensorView dx) {
  return detail::guarded("softmax_backward", [&]() -> Status {
    return backward(Op::kSoftmax, y, dy, dim, dx);
  });
}
Status log_softmax_backward(ConstTensorView y, ConstTensorView dy, std::int64_t dim, TensorView dx) {
  return detail::guarded("log_softmax_backward", [&]() -> Status {
    return backward(Op::kLogSoftmax, y, dy, dim, dx);
  });
}

Status logsumexp_forward(ConstTensorView x, std::int64_t dim, TensorView out) {
  return detail::guarded("logsumexp_forward", [&]() -> Status {
    XENT_RETURN_IF_ERROR(detail::check_floating(x, "input"));
    int d = 0;
    XENT_RETURN_IF_ERROR(detail::resolve_dim(dim, x.shape.rank(), &d));
    Shape out_shape = x.shape.rank() == 0 ? Shape{} : x.shape.without(d);
    XENT_RETURN_IF_ERROR(detail::check_like(out, x.dtype, out_shape, "output", "the input"));
    Layout L = detail::layout_of(x.shape, d);
    detail::visit_float(x.dtype, [&](auto tag) {
      using T = decltype(tag);
      run_lse_forward(x.as<T>(), out.as<T>(), L);
    });
    return ok_status();
  });
}

Status logsumexp_backward(ConstTensorView x, ConstTensorView out, ConstTensorView dout, std::int64_t dim,
                          TensorView dx) {
  return detail::guarded("logsumexp_backward", [&]() -> Status {
    XENT_RETURN_IF_ERROR(detail::check_floating(x, "input"));
    int d = 0;
    XENT_RETURN_IF_ERROR(detail::resolve_dim(dim, x.shape.rank(), &d));
    Shape out_shape = x.shape.rank() == 0 ? Shape{} : x.shape.without(d);
    XENT_RETURN_IF_ERROR(detail::check_like(out, x.dtype, out_shape, "logsumexp output", "the input"));
    XENT_RETURN_IF_ERROR(detail::check_like(dout, x.dtype, out_shape, "output gradient", "the input"));
    XENT_RETURN_IF_ERROR(detail::check_like(dx, x.dtype, x.shape, "input gradient", "the input"));
    Layout L = detail::layout_of(x.shape, d);
    detail::visit_float(x.dtype, [&](auto tag) {
      using T = decltype(tag);
      run_lse_backward(x.as<T>(), out.as<T>(), dout.as<T>(), dx.as<T>(), L);
    });
    return ok_status();
  });
}

}  // namespace xent
