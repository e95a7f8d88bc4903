// module.cc: xent._xent, the pybind11 bridge between NumPy arrays and xent's C++ API.
//
// Each function takes NumPy arrays, views them without copying (buffer protocol: the array must be
// C-contiguous, aligned, native-endian, float32/float64/float16/int32/int64, or bfloat16 as int16
// storage whose dtype carries the tag metadata {"xent": "bfloat16"} (xent.bfloat16: NumPy has no
// bfloat16 type; xent.torch views torch.bfloat16 storage that way); the Python layer in
// xent/__init__.py makes other arrays contiguous once before they get here), allocates the outputs
// as new NumPy arrays, and runs the kernel with the GIL released. A non-ok xent::Status becomes a
// Python exception carrying xent's message: ValueError for bad arguments and out-of-range values,
// TypeError for a dtype xent cannot take, MemoryError, NotImplementedError, RuntimeError otherwise.
// This file holds no numerics and no PyTorch: torch tensors reach it as NumPy views
// (xent/torch/__init__.py). Not a public API: use the `xent` and `xent.torch` modules.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "xent/xent.h"

namespace py = pybind11;

namespace {

// ---------------------------------------------------------------------------------------------
// Debug hook: the data pointers of the arrays the last call on this thread handed to C++, so the
// tests can check that no input was copied on the way (xent._xent._last_input_pointers()).
thread_local std::vector<std::pair<std::string, std::uintptr_t>> t_seen;

[[noreturn]] void raise_type(const std::string& m) { throw py::type_error(m); }
[[noreturn]] void raise_value(const std::string& m) { throw py::value_error(m); }

// Raises the Python exception for a non-ok status (the GIL must be held).
void check(const xent::Status& s) {
  if (s.ok()) return;
  switch (s.code()) {
    case xent::StatusCode::kInvalidArgument:
    case xent::StatusCode::kOutOfRange:
      raise_value(s.message());
    case xent::StatusCode::kResourceExhausted:
      PyErr_SetString(PyExc_MemoryError, s.message().c_str());
      throw py::error_already_set();
    case xent::StatusCode::kUnimplemented:
      PyErr_SetString(PyExc_NotImplementedError, s.message().c_str());
      throw py::error_already_set();
    default:
      throw std::runtime_error(s.to_string());
  }
}

std::string numpy_dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// The NumPy dtype of bfloat16 arrays: int16 storage tagged {"xent": "bfloat16"} (made once at
// import, never freed: arrays may outlive the module's teardown).
py::dtype& bf16_dtype() {
  static auto* d = new py::dtype(py::module_::import("numpy").attr("dtype")(
      "int16", py::arg("metadata") = py::dict(py::arg("xent") = "bfloat16")));
  return *d;
}
bool is_bf16_tagged(const py::dtype& dt) {
  if (dt.kind() != 'i' || dt.itemsize() != 2) return false;
  const py::object md = dt.attr("metadata");
  if (md.is_none()) return false;
  const py::object tag = md.attr("get")("xent");
  return !tag.is_none() && py::str(tag).cast<std::string>() == "bfloat16";
}

// What an argument may hold; only used to word the error for a dtype xent has no kernels for.
enum class Kind { kFloat, kIndex, kTarget };

xent::DType dtype_of(const py::array& a, const char* what, Kind kind) {
  const py::dtype dt = a.dtype();
  if (dt.kind() == 'f' && dt.itemsize() == 4) return xent::DType::kF32;
  if (dt.kind() == 'f' && dt.itemsize() == 8) return xent::DType::kF64;
  if (dt.kind() == 'f' && dt.itemsize() == 2) return xent::DType::kF16;
  if (is_bf16_tagged(dt)) return xent::DType::kBF16;
  if (dt.kind() == 'i' && dt.itemsize() == 4) return xent::DType::kI32;
  if (dt.kind() == 'i' && dt.itemsize() == 8) return xent::DType::kI64;
  const char* expected = kind == Kind::kFloat   ? "float32, float64, float16 or bfloat16"
                         : kind == Kind::kIndex ? "int32 or int64 class indices"
                                                : "int32 or int64 class indices, or floating-point probabilities";
  raise_type(fmt::format("{} must be {}, found {}", what, expected, numpy_dtype_name(a)));
}

// A read-only view of `a`'s memory, no copy. `a` must stay alive for the view's use: the callers
// below hold it as a function argument for the whole call. `kind` only words the error for a
// dtype xent has no kernels for; require_* check the combinations.
xent::ConstTensorView view_of(const py::array& a, const char* what, Kind kind = Kind::kFloat) {
  const xent::DType dt = dtype_of(a, what, kind);
  if (!(a.flags() & py::array::c_style))
    raise_value(fmt::format("{} must be C-contiguous (xent.* makes arrays contiguous; the private _xent does not)", what));
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    raise_value(fmt::format("{} must be aligned to its element size, found a misaligned array", what));
  if (!a.dtype().attr("isnative").cast<bool>())
    raise_type(fmt::format("{} must be in the machine's byte order, found {}", what, numpy_dtype_name(a)));
  xent::Shape shape;
  std::vector<std::int64_t> dims(a.shape(), a.shape() + a.ndim());
  if (!xent::Shape::from_dims(dims.data(), static_cast<int>(dims.size()), &shape))
    raise_value(fmt::format("{} must have at most {} dimensions, found {}", what, xent::Shape::kMaxDims, a.ndim()));
  t_seen.emplace_back(what, reinterpret_cast<std::uintptr_t>(a.data()));
  return {a.data(), dt, shape};
}

// Optional input: None gives an empty view.
xent::ConstTensorView optional_view(const py::object& o, const char* what) {
  if (o.is_none()) return {};
  return view_of(o.cast<py::array>(), what);
}

void require_floating(const xent::ConstTensorView& v, const char* what) {
  if (!xent::is_floating(v.dtype))
    raise_type(
        fmt::format("{} must be float32, float64, float16 or bfloat16, found {}", what, xent::dtype_name(v.dtype)));
}
void require_like(const xent::ConstTensorView& v, xent::DType dt, const char* what) {
  if (!v.empty_view() && v.dtype != dt)
    raise_type(fmt::format("{} must have the input's dtype {}, found {}", what, xent::dtype_name(dt),
                           xent::dtype_name(v.dtype)));
}
void require_index(const xent::ConstTensorView& v, const char* what) {
  if (v.dtype != xent::DType::kI32 && v.dtype != xent::DType::kI64)
    raise_type(fmt::format("{} must be int32 or int64 class indices, found {}", what, xent::dtype_name(v.dtype)));
}
// Targets of cross_entropy: class indices, or probabilities of the input's dtype.
void require_target(const xent::ConstTensorView& t, xent::DType dt, const char* what) {
  if (xent::is_floating(t.dtype)) {
    require_like(t, dt, what);
  }
}

xent::Reduction parse_reduction(const std::string& r) {
  if (r == "mean") return xent::Reduction::kMean;
  if (r == "sum") return xent::Reduction::kSum;
  if (r == "none") return xent::Reduction::kNone;
  raise_value(fmt::format("reduction must be 'none', 'mean' or 'sum', found '{}'", r));
}

// ------------------------------------------------------------------------------ output buffers
// Large outputs (gradients of (N, C) logits: 1 GiB at 8192 x 32000 float32) come from a small
// cache of freed blocks instead of fresh pages: a fresh block costs the kernel a page fault and a
// zero-fill per page on first write, which measured as much time as the gradient kernel itself;
// glibc returns such blocks to the OS on free, so every training step would pay it again. Freed
// blocks of at least kCacheMin bytes are kept up to a byte limit (default 4 GiB,
// xent.set_buffer_cache_limit; 0 disables the cache) and handed out again for a request of the
// same size class (a block may be up to 1/8 larger than asked). xent.empty_buffer_cache() frees
// them. PyTorch's CUDA caching allocator makes the same trade on the GPU.
constexpr std::size_t kCacheMin = std::size_t{1} << 20;
constexpr std::size_t kAlign = 64;

struct BufferCache {
  std::mutex mu;
  std::vector<std::pair<std::size_t, void*>> blocks;  // (bytes, block)
  std::size_t held = 0;
  std::size_t limit = std::size_t{4} << 30;
};
BufferCache& cache() {
  static auto* c = new BufferCache;  // never destroyed: capsules may run after static teardown
  return *c;
}

std::size_t round_bytes(std::size_t n) { return (std::max<std::size_t>(n, 1) + kAlign - 1) / kAlign * kAlign; }

void* take_block(std::size_t bytes, std::size_t* got) {
  bytes = round_bytes(bytes);
  if (bytes >= kCacheMin) {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    std::size_t best = c.blocks.size();
    for (std::size_t i = 0; i < c.blocks.size(); ++i) {
      const std::size_t b = c.blocks[i].first;
      if (b >= bytes && b <= bytes + bytes / 8 && (best == c.blocks.size() || b < c.blocks[best].first)) best = i;
    }
    if (best != c.blocks.size()) {
      auto [b, p] = c.blocks[best];
      c.blocks.erase(c.blocks.begin() + static_cast<std::ptrdiff_t>(best));
      c.held -= b;
      *got = b;
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p == nullptr) throw std::bad_alloc();
  *got = bytes;
  return p;
}

void give_block(void* p, std::size_t bytes) {
  if (bytes >= kCacheMin) {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    if (c.held + bytes <= c.limit) {
      c.blocks.emplace_back(bytes, p);
      c.held += bytes;
      return;
    }
  }
  std::free(p);
}

void empty_buffer_cache() {
  std::vector<std::pair<std::size_t, void*>> blocks;
  {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    blocks.swap(c.blocks);
    c.held = 0;
  }
  for (auto& b : blocks) std::free(b.second);
}

struct Block {
  void* p;
  std::size_t bytes;
};

// A new uninitialised array of dtype dt and the given shape, and the writable view of it. The
// memory comes from take_block and goes back to give_block when NumPy frees the array (and so
// when a torch tensor made by torch.from_numpy, which keeps the array alive, is freed).
std::pair<py::array, xent::TensorView> new_array(xent::DType dt, const std::vector<std::int64_t>& dims) {
  xent::Shape s;
  if (!xent::Shape::from_dims(dims.data(), static_cast<int>(dims.size()), &s))
    raise_value(fmt::format("output would have more than {} dimensions", xent::Shape::kMaxDims));
  std::int64_t n = 0;
  if (!s.numel_checked(&n)) raise_value(fmt::format("output shape {} is too large", s.to_string()));
  const std::size_t esize = xent::dtype_size(dt);
  auto* blk = new Block{nullptr, 0};
  blk->p = take_block(static_cast<std::size_t>(n) * esize, &blk->bytes);
  py::capsule owner(blk, [](void* q) {
    auto* b = static_cast<Block*>(q);
    give_block(b->p, b->bytes);
    delete b;
  });
  std::vector<py::ssize_t> shape(dims.begin(), dims.end());
  py::dtype npdt = dt == xent::DType::kF32   ? py::dtype::of<float>()
                   : dt == xent::DType::kF64 ? py::dtype::of<double>()
                   : dt == xent::DType::kF16 ? py::dtype("float16")
                                             : bf16_dtype();
  py::array a(npdt, shape, {}, blk->p, owner);
  return {a, xent::TensorView(a.mutable_data(), dt, s)};
}
std::vector<std::int64_t> dims_of(const xent::Shape& s) { return {s.dims(), s.dims() + s.rank()}; }

// A new array of ones (grad_output when none is given), in any floating dtype.
template <class T>
void fill(void* p, std::int64_t n, T v) {
  std::fill(static_cast<T*>(p), static_cast<T*>(p) + n, v);
}
std::pair<py::array, xent::TensorView> ones_array(xent::DType dt, const std::vector<std::int64_t>& dims) {
  auto [a, v] = new_array(dt, dims);
  const std::int64_t n = v.numel();
  switch (dt) {
    case xent::DType::kF64: fill(v.data, n, 1.0); break;
    case xent::DType::kBF16: fill(v.data, n, xent::to_bfloat16(1.0)); break;
    case xent::DType::kF16: fill(v.data, n, xent::to_float16(1.0)); break;
    default: fill(v.data, n, 1.0f); break;
  }
  return {a, v};
}

// Shape of the loss of cross_entropy / nll_loss: () for mean/sum; for none the target's shape
// (class indices) or the input's shape without the class dimension (probabilities).
std::vector<std::int64_t> loss_dims(const xent::ConstTensorView& input, const xent::ConstTensorView& target,
                                    xent::Reduction r) {
  if (r != xent::Reduction::kNone) return {};
  if (xent::is_floating(target.dtype)) {
    if (input.shape.rank() == 0) return {};
    return dims_of(input.shape.without(input.shape.rank() >= 2 ? 1 : 0));
  }
  return dims_of(target.shape);
}

template <class F>
xent::Status without_gil(F&& f) {
  py::gil_scoped_release nogil;
  return f();
}

void begin_call() { t_seen.clear(); }

// ------------------------------------------------------------------------------ softmax family

enum class SoftmaxOp { kSoftmax, kLogSoftmax };

py::array softmax_fwd(SoftmaxOp op, const py::array& x, std::int64_t dim) {
  begin_call();
  auto xv = view_of(x, "input");
  require_floating(xv, "input");
  auto [y, yv] = new_array(xv.dtype, dims_of(xv.shape));
  check(without_gil([&] {
    return op == SoftmaxOp::kSoftmax ? xent::softmax_forward(xv, dim, yv) : xent::log_softmax_forward(xv, dim, yv);
  }));
  return y;
}

py::array softmax_bwd(SoftmaxOp op, const py::array& y, const py::array& dy, std::int64_t dim) {
  begin_call();
  auto yv = view_of(y, "output");
  auto dyv = view_of(dy, "grad_output");
  require_floating(yv, "output");
  require_like(dyv, yv.dtype, "grad_output");
  auto [dx, dxv] = new_array(yv.dtype, dims_of(yv.shape));
  check(without_gil([&] {
    return op == SoftmaxOp::kSoftmax ? xent::softmax_backward(yv, dyv, dim, dxv)
                                     : xent::log_softmax_backward(yv, dyv, dim, dxv);
  }));
  return dx;
}

py::array logsumexp_fwd(const py::array& x, std::int64_t dim) {
  begin_call();
  auto xv = view_of(x, "input");
  require_floating(xv, "input");
  std::vector<std::int64_t> dims;
  const int rank = xv.shape.rank();
  const std::int64_t d = dim < 0 ? dim + std::max(rank, 1) : dim;
  if (rank > 0 && d >= 0 && d < rank) dims = dims_of(xv.shape.without(static_cast<int>(d)));
  auto [out, ov] = new_array(xv.dtype, dims);
  check(without_gil([&] { return xent::logsumexp_forward(xv, dim, ov); }));
  return out;
}

py::array logsumexp_bwd(const py::array& x, const py::array& out, const py::array& dout, std::int64_t dim) {
  begin_call();
  auto xv = view_of(x, "input");
  auto ov = view_of(out, "output");
  auto gv = view_of(dout, "grad_output");
  require_floating(xv, "input");
  require_like(ov, xv.dtype, "output");
  require_like(gv, xv.dtype, "grad_output");
  auto [dx, dxv] = new_array(xv.dtype, dims_of(xv.shape));
  check(without_gil([&] { return xent::logsumexp_backward(xv, ov, gv, dim, dxv); }));
  return dx;
}

// ---------------------------------------------------------------------------------- losses

// Loss and, with want_grad, d sum(loss * grad_output) / d input (grad_output None: all ones, one
// fused pass). Returns (loss, grad or None).
py::tuple cross_entropy(const py::array& input, const py::array& target, const py::object& weight,
                        std::int64_t ignore_index, const std::string& reduction, double label_smoothing,
                        bool want_grad, const py::object& grad_output, const std::string& summation) {
  begin_call();
  auto iv = view_of(input, "input");
  auto tv = view_of(target, "target", Kind::kTarget);
  xent::CrossEntropyOptions opt;
  opt.weight = optional_view(weight, "weight");
  opt.ignore_index = ignore_index;
  opt.reduction = parse_reduction(reduction);
  opt.label_smoothing = label_smoothing;
  if (summation == "exact") opt.summation = xent::Summation::kExact;
  else if (summation != "fast") raise_value(fmt::format("summation must be 'fast' or 'exact', found '{}'", summation));
  require_floating(iv, "input");
  require_target(tv, iv.dtype, "target");
  require_like(opt.weight, iv.dtype, "weight");
  auto gv = optional_view(grad_output, "grad_output");
  require_like(gv, iv.dtype, "grad_output");
  auto [loss, lv] = new_array(iv.dtype, loss_dims(iv, tv, opt.reduction));
  if (!want_grad) {
    check(without_gil([&] { return xent::cross_entropy_forward(iv, tv, opt, lv); }));
    return py::make_tuple(loss, py::none());
  }
  auto [grad, dv] = new_array(iv.dtype, dims_of(iv.shape));
  if (gv.empty_view()) {
    check(without_gil([&] { return xent::cross_entropy_fused(iv, tv, opt, lv, dv); }));
  } else {
    check(without_gil([&] {
      XENT_RETURN_IF_ERROR(xent::cross_entropy_forward(iv, tv, opt, lv));
      return xent::cross_entropy_backward(iv, tv, opt, gv, dv);
    }));
  }
  return py::make_tuple(loss, grad);
}

py::array cross_entropy_backward(const py::array& input, const py::array& target, const py::object& weight,
                                 std::int64_t ignore_index, const std::string& reduction, double label_smoothing,
                                 const py::array& grad_output) {
  begin_call();
  auto iv = view_of(input, "input");
  auto tv = view_of(target, "target", Kind::kTarget);
  xent::CrossEntropyOptions opt;
  opt.weight = optional_view(weight, "weight");
  opt.ignore_index = ignore_index;
  opt.reduction = parse_reduction(reduction);
  opt.label_smoothing = label_smoothing;
  auto gv = view_of(grad_output, "grad_output");
  require_floating(iv, "input");
  require_target(tv, iv.dtype, "target");
  require_like(opt.weight, iv.dtype, "weight");
  require_like(gv, iv.dtype, "grad_output");
  auto [grad, dv] = new_array(iv.dtype, dims_of(iv.shape));
  check(without_gil([&] { return xent::cross_entropy_backward(iv, tv, opt, gv, dv); }));
  return grad;
}

// nll_loss: (loss, grad or None); grad of sum(loss * grad_output), grad_output None meaning ones.
py::tuple nll_loss(const py::array& input, const py::array& target, const py::object& weight,
                   std::int64_t ignore_index, const std::string& reduction, bool want_grad,
                   const py::object& grad_output) {
  begin_call();
  auto iv = view_of(input, "input");
  auto tv = view_of(target, "target", Kind::kIndex);
  xent::NllOptions opt;
  opt.weight = optional_view(weight, "weight");
  opt.ignore_index = ignore_index;
  opt.reduction = parse_reduction(reduction);
  require_floating(iv, "input");
  require_index(tv, "target");
  require_like(opt.weight, iv.dtype, "weight");
  auto gv = optional_view(grad_output, "grad_output");
  require_like(gv, iv.dtype, "grad_output");
  const auto ldims = loss_dims(iv, tv, opt.reduction);
  auto [loss, lv] = new_array(iv.dtype, ldims);
  if (!want_grad) {
    check(without_gil([&] { return xent::nll_loss_forward(iv, tv, opt, lv); }));
    return py::make_tuple(loss, py::none());
  }
  auto [grad, dv] = new_array(iv.dtype, dims_of(iv.shape));
  // Ones shaped like the loss when no upstream gradient is given (nll has no fused entry point).
  py::array ones;
  if (gv.empty_view()) {
    std::tie(ones, gv) = ones_array(iv.dtype, ldims);
  }
  check(without_gil([&] {
    XENT_RETURN_IF_ERROR(xent::nll_loss_forward(iv, tv, opt, lv));
    return xent::nll_loss_backward(iv, tv, opt, gv, dv);
  }));
  return py::make_tuple(loss, grad);
}

// binary_cross_entropy(_with_logits): (loss, grad or None).
py::tuple bce(bool logits, const py::array& input, const py::array& target, const py::object& weight,
              const py::object& pos_weight, const std::string& reduction, bool want_grad,
              const py::object& grad_output) {
  begin_call();
  auto iv = view_of(input, "input");
  auto tv = view_of(target, "target", Kind::kFloat);
  xent::BceOptions opt;
  opt.weight = optional_view(weight, "weight");
  opt.pos_weight = optional_view(pos_weight, "pos_weight");
  opt.reduction = parse_reduction(reduction);
  require_floating(iv, "input");
  require_like(tv, iv.dtype, "target");
  require_like(opt.weight, iv.dtype, "weight");
  require_like(opt.pos_weight, iv.dtype, "pos_weight");
  auto gv = optional_view(grad_output, "grad_output");
  require_like(gv, iv.dtype, "grad_output");
  const std::vector<std::int64_t> ldims =
      opt.reduction == xent::Reduction::kNone ? dims_of(iv.shape) : std::vector<std::int64_t>{};
  auto [loss, lv] = new_array(iv.dtype, ldims);
  auto fwd = [&] {
    return logits ? xent::binary_cross_entropy_with_logits_forward(iv, tv, opt, lv)
                  : xent::binary_cross_entropy_forward(iv, tv, opt, lv);
  };
  if (!want_grad) {
    check(without_gil(fwd));
    return py::make_tuple(loss, py::none());
  }
  auto [grad, dv] = new_array(iv.dtype, dims_of(iv.shape));
  py::array ones;
  if (gv.empty_view()) {
    std::tie(ones, gv) = ones_array(iv.dtype, ldims);
  }
  check(without_gil([&] {
    XENT_RETURN_IF_ERROR(fwd());
    return logits ? xent::binary_cross_entropy_with_logits_backward(iv, tv, opt, gv, dv)
                  : xent::binary_cross_entropy_backward(iv, tv, opt, gv, dv);
  }));
  return py::make_tuple(loss, grad);
}

// ----------------------------------------------------------------------- linear cross-entropy

// The one place that calls xent::linear_cross_entropy. Returns (loss, z_loss, dhidden, dweight, dbias), each gradient
// None unless asked for; z_loss is None unless want_z_loss. grad_output None means ones.
py::tuple linear_cross_entropy(const py::array& hidden, const py::array& weight, const py::array& target,
                               const py::object& bias, const py::object& class_weight, std::int64_t ignore_index,
                               const std::string& reduction, double label_smoothing, double lse_square_scale,
                               double softcap, bool want_z_loss, bool want_dhidden, bool want_dweight,
                               bool want_dbias, const py::object& grad_output) {
  begin_call();
  auto hv = view_of(hidden, "input");
  auto wv = view_of(weight, "weight");
  auto tv = view_of(target, "target", Kind::kIndex);
  auto bv = optional_view(bias, "bias");
  xent::LinearCrossEntropyOptions opt;
  opt.class_weight = optional_view(class_weight, "class_weight");
  opt.ignore_index = ignore_index;
  opt.reduction = parse_reduction(reduction);
  opt.label_smoothing = label_smoothing;
  opt.lse_square_scale = lse_square_scale;
  opt.softcap = softcap;
  auto gv = optional_view(grad_output, "grad_output");
  require_floating(hv, "input");  // 16-bit: dweight in the input's dtype, rounded once from the core's float32 sum
  require_like(wv, hv.dtype, "weight");
  require_like(bv, hv.dtype, "bias");
  require_like(opt.class_weight, hv.dtype, "class_weight");
  require_like(gv, hv.dtype, "grad_output");
  require_index(tv, "target");
  const xent::DType dt = hv.dtype;
  const std::vector<std::int64_t> ldims =
      opt.reduction == xent::Reduction::kNone ? dims_of(tv.shape) : std::vector<std::int64_t>{};
  auto [loss, lv] = new_array(dt, ldims);
  py::object z = py::none(), dh = py::none(), dw = py::none(), db = py::none();
  xent::TensorView zv, dhv, dwv, dbv;
  if (want_z_loss) std::tie(z, zv) = new_array(dt, ldims);
  if (want_dhidden) std::tie(dh, dhv) = new_array(dt, dims_of(hv.shape));
  if (want_dweight) std::tie(dw, dwv) = new_array(dt, dims_of(wv.shape));
  if (want_dbias && !bv.empty_view()) std::tie(db, dbv) = new_array(dt, dims_of(bv.shape));
  check(without_gil([&] { return xent::linear_cross_entropy(
        {.hidden = hv, .weight = wv, .bias = bv, .target = tv, .dloss = gv}, opt,
        {.loss = lv, .z_loss = zv, .dhidden = dhv, .dweight = dwv, .dbias = dbv}); }));
  return py::make_tuple(loss, z, dh, dw, db);
}

py::list last_input_pointers() {
  py::list out;
  for (const auto& [name, p] : t_seen) out.append(py::make_tuple(name, p));
  return out;
}

}  // namespace

PYBIND11_MODULE(_xent, m) {
  m.doc() = "xent's C++ kernels over NumPy arrays (private; use the xent and xent.torch modules)";
  m.def("softmax", [](const py::array& x, std::int64_t dim) { return softmax_fwd(SoftmaxOp::kSoftmax, x, dim); });
  m.def("log_softmax", [](const py::array& x, std::int64_t dim) { return softmax_fwd(SoftmaxOp::kLogSoftmax, x, dim); });
  m.def("softmax_backward", [](const py::array& y, const py::array& dy, std::int64_t dim) {
    return softmax_bwd(SoftmaxOp::kSoftmax, y, dy, dim);
  });
  m.def("log_softmax_backward", [](const py::array& y, const py::array& dy, std::int64_t dim) {
    return softmax_bwd(SoftmaxOp::kLogSoftmax, y, dy, dim);
  });
  m.def("logsumexp", &logsumexp_fwd);
  m.def("logsumexp_backward", &logsumexp_bwd);
  m.def("cross_entropy", &cross_entropy);
  m.def("cross_entropy_backward", &cross_entropy_backward);
  m.def("nll_loss", &nll_loss);
  m.def("binary_cross_entropy", [](const py::array& x, const py::array& t, const py::object& w,
                                   const std::string& r, bool g, const py::object& go) {
    return bce(false, x, t, w, py::none(), r, g, go);
  });
  m.def("binary_cross_entropy_with_logits", [](const py::array& x, const py::array& t, const py::object& w,
                                               const py::object& pw, const std::string& r, bool g,
                                               const py::object& go) { return bce(true, x, t, w, pw, r, g, go); });
  m.def("linear_cross_entropy", &linear_cross_entropy);
  m.def("set_num_threads", [](int n) {
    if (n < 0) raise_value(fmt::format("set_num_threads: expected a count >= 0 (0: the default), found {}", n));
    xent::set_num_threads(n);
  });
  m.def("get_num_threads", &xent::num_threads);
  m.def("isa", &xent::active_isa);
  m.def("supported_isas", &xent::supported_isas);
  m.def("set_isa", [](const std::string& name) { check(xent::set_isa(name)); });
  // "" when XENT_ISA and XENT_THREADS are usable, else what was wrong and what is used instead.
  m.def("environment_status", [] {
    const xent::Status s = xent::environment_status();
    return s.ok() ? std::string() : s.message();
  });
  m.def("set_buffer_cache_limit", [](std::int64_t bytes) {
    if (bytes < 0) raise_value(fmt::format("set_buffer_cache_limit: expected bytes >= 0, found {}", bytes));
    {
      BufferCache& c = cache();
      std::lock_guard<std::mutex> lk(c.mu);
      c.limit = static_cast<std::size_t>(bytes);
    }
    empty_buffer_cache();
  });
  m.def("buffer_cache_bytes", [] {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    return c.held;
  });
  m.def("empty_buffer_cache", &empty_buffer_cache);
  m.def("_last_input_pointers", &last_input_pointers);
  m.attr("bfloat16") = bf16_dtype();
}
