// workload.cc (cli/bench): buffers, data and the public-API call of one benchmark case, and the
// memcpy bandwidth probe. See workload.h.
#include "workload.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <type_traits>

#include <fmt/format.h>

#include "xent/xent.h"

namespace xent::bench {
namespace {

// xorshift64*: fast fixed-seed data; quality is irrelevant for timing.
struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }
};

// Values as T from a double: a conversion, or the public rounding of the 16-bit types.
template <class T>
T narrow(double v) {
  if constexpr (std::is_same_v<T, bfloat16>) return to_bfloat16(v);
  else if constexpr (std::is_same_v<T, float16>) return to_float16(v);
  else return static_cast<T>(v);
}
template <class T>
double widen(T v) {
  if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) return static_cast<double>(to_float(v));
  else return static_cast<double>(v);
}

template <class T>
void fill_typed(void* p, std::size_t n, double lo, double hi, std::uint64_t seed) {
  T* v = static_cast<T*>(p);
  Rng r(seed);
  for (std::size_t i = 0; i < n; ++i) v[i] = narrow<T>(lo + (hi - lo) * r.uniform());
}

// Scales each of the N rows of C values so that it sums to 1 (rows of probabilities).
template <class T>
void normalize_rows(void* p, std::size_t N, std::size_t C) {
  T* v = static_cast<T*>(p);
  for (std::size_t i = 0; i < N; ++i) {
    T* row = v + i * C;
    double sum = 0;
    for (std::size_t j = 0; j < C; ++j) sum += widen(row[j]);
    if (sum <= 0) continue;
    for (std::size_t j = 0; j < C; ++j) row[j] = narrow<T>(widen(row[j]) / sum);
  }
}

}  // namespace

void fill_uniform(DType dt, void* p, std::size_t n, double lo, double hi, std::uint64_t seed) {
  switch (dt) {
    case DType::kF32: return fill_typed<float>(p, n, lo, hi, seed);
    case DType::kBF16: return fill_typed<bfloat16>(p, n, lo, hi, seed);
    case DType::kF16: return fill_typed<float16>(p, n, lo, hi, seed);
    default: return fill_typed<double>(p, n, lo, hi, seed);
  }
}

const std::vector<std::string>& op_names() {
  static const std::vector<std::string> v = {"cross-entropy", "softmax", "log-softmax", "logsumexp",
                                             "nll",           "bce",     "bce-with-logits"};
  return v;
}
const std::vector<std::string>& pass_names() {
  static const std::vector<std::string> v = {"fwd", "bwd", "fwd+bwd"};
  return v;
}
const std::vector<std::string>& target_names() {
  static const std::vector<std::string> v = {"index", "prob"};
  return v;
}

std::string check_options(const Spec& spec) {
  const auto& targets = target_names();
  if (std::find(targets.begin(), targets.end(), spec.target) == targets.end())
    return fmt::format("--target expects index or prob, found '{}'", spec.target);
  const bool ce = spec.op == "cross-entropy";
  if (spec.target == "prob" && !ce)
    return fmt::format("--target prob applies to cross-entropy only, found op {}", spec.op);
  if (!(spec.label_smoothing >= 0.0 && spec.label_smoothing <= 1.0))
    return fmt::format("--label-smoothing expects a value in [0, 1], found {}", spec.label_smoothing);
  if (spec.label_smoothing != 0.0 && !ce)
    return fmt::format("--label-smoothing applies to cross-entropy only, found op {}", spec.op);
  if (spec.weighted && !ce && spec.op != "nll")
    return fmt::format("--weight applies to cross-entropy and nll only, found op {}", spec.op);
  if (spec.exact && !(ce && spec.target == "index"))
    return fmt::format("--exact applies to cross-entropy with --target index only, found op {} target {}", spec.op,
                       spec.target);
  if (spec.token_weighted && !(ce && spec.target == "index"))
    return fmt::format("--token-weight applies to cross-entropy with --target index only, found op {} target {}",
                       spec.op, spec.target);
  return {};
}

void Buffer::Free::operator()(void* p) const noexcept { std::free(p); }

Buffer::Buffer(std::size_t bytes) : bytes_(bytes) {
  const std::size_t rounded = std::max<std::size_t>(64, (bytes + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, rounded);
  if (p != nullptr) std::memset(p, 0, rounded);
  p_.reset(p);
  if (p == nullptr) bytes_ = 0;
}

Status Workload::create(const Spec& spec, std::unique_ptr<Workload>* out) {
  const auto& ops = op_names();
  const auto& passes = pass_names();
  if (std::find(ops.begin(), ops.end(), spec.op) == ops.end())
    return invalid_argument(fmt::format("unknown op '{}'; expected one of: {}", spec.op, fmt::join(ops, ", ")));
  if (std::find(passes.begin(), passes.end(), spec.pass) == passes.end())
    return invalid_argument(fmt::format("unknown pass '{}'; expected fwd, bwd or fwd+bwd", spec.pass));
  if (spec.N <= 0 || spec.C <= 0)
    return invalid_argument(fmt::format("shape must be two positive sizes N,C, found {},{}", spec.N, spec.C));
  if (!is_floating(spec.dtype)) return invalid_argument("dtype must be float32, float64, bfloat16 or float16");
  if (std::string why = check_options(spec); !why.empty()) return invalid_argument(why);
  std::int64_t E = 0;
  if (__builtin_mul_overflow(spec.N, spec.C, &E) || E > (std::int64_t{1} << 34))
    return invalid_argument(fmt::format("shape {}x{} is too large to benchmark", spec.N, spec.C));

  auto w = std::unique_ptr<Workload>(new Workload());
  w->spec_ = spec;
  const std::size_t s = dtype_size(spec.dtype), n = static_cast<std::size_t>(E), N = static_cast<std::size_t>(spec.N);
  const std::string& op = spec.op;
  const bool fwd = spec.pass != "bwd", bwd = spec.pass != "fwd";
  auto alloc = [&](Buffer& b, std::size_t bytes) -> bool {
    b = Buffer(bytes);
    return b.data() != nullptr;
  };
  bool ok = alloc(w->x_, n * s) && alloc(w->loss_, std::max<std::size_t>(N, 1) * s) && alloc(w->dloss_, s);
  const bool prob = spec.target == "prob";
  const bool is_ce = (op == "cross-entropy" || op == "nll") && !prob;  // class-index targets
  const bool is_bce = op == "bce" || op == "bce-with-logits";
  const bool is_sm = op == "softmax" || op == "log-softmax";
  if (is_ce) ok = ok && alloc(w->t_, N * sizeof(std::int64_t));
  if (prob) ok = ok && alloc(w->t_, n * s);
  if (spec.weighted) ok = ok && alloc(w->w_, static_cast<std::size_t>(spec.C) * s);
  if (spec.token_weighted) ok = ok && alloc(w->tw_, N * s);
  if (is_bce) ok = ok && alloc(w->t_, n * s);
  if (is_sm || op == "logsumexp") ok = ok && alloc(w->y_, (is_sm ? n : N) * s) && alloc(w->dy_, (is_sm ? n : N) * s);
  if (bwd) ok = ok && alloc(w->dx_, n * s);
  if (!ok) return resource_exhausted(fmt::format("cannot allocate the buffers for {}x{} {}", spec.N, spec.C, dtype_name(spec.dtype)));

  // Data.
  const DType dt = spec.dtype;
  if (op == "nll") fill_uniform(dt, w->x_.data(), n, -12.0, 0.0, 1);
  else if (op == "bce") fill_uniform(dt, w->x_.data(), n, 0.01, 0.99, 1);
  else fill_uniform(dt, w->x_.data(), n, -4.0, 4.0, 1);
  if (is_ce) {
    auto* t = static_cast<std::int64_t*>(w->t_.data());
    Rng r(2);
    for (std::size_t i = 0; i < N; ++i) t[i] = static_cast<std::int64_t>(r.next() % static_cast<std::uint64_t>(spec.C));
  }
  if (is_bce || prob) fill_uniform(dt, w->t_.data(), n, 0.0, 1.0, 3);
  if (prob) {
    const std::size_t C = static_cast<std::size_t>(spec.C);
    if (dt == DType::kF32) normalize_rows<float>(w->t_.data(), N, C);
    else if (dt == DType::kBF16) normalize_rows<bfloat16>(w->t_.data(), N, C);
    else if (dt == DType::kF16) normalize_rows<float16>(w->t_.data(), N, C);
    else normalize_rows<double>(w->t_.data(), N, C);
  }
  if (spec.weighted) fill_uniform(dt, w->w_.data(), static_cast<std::size_t>(spec.C), 0.5, 1.5, 6);
  if (spec.token_weighted) fill_uniform(dt, w->tw_.data(), N, 0.0, 2.0, 7);
  if (w->dy_.data() != nullptr) fill_uniform(dt, w->dy_.data(), w->dy_.bytes() / s, -1.0, 1.0, 4);
  fill_uniform(dt, w->dloss_.data(), 1, 1.0, 1.0, 5);
  // softmax / log-softmax backward take the forward's output.
  if (is_sm && bwd) {
    const Shape sh{spec.N, spec.C};
    Status st = op == "softmax" ? softmax_forward({w->x_.data(), dt, sh}, 1, {w->y_.data(), dt, sh})
                                : log_softmax_forward({w->x_.data(), dt, sh}, 1, {w->y_.data(), dt, sh});
    if (!st.ok()) return st;
  }
  if (op == "logsumexp" && bwd) {
    Status st = logsumexp_forward({w->x_.data(), dt, Shape{spec.N, spec.C}}, 1, {w->y_.data(), dt, Shape{spec.N}});
    if (!st.ok()) return st;
  }

  // Minimal traffic: every input read once, every output written once.
  const double E_bytes = static_cast<double>(n * s), row_bytes = static_cast<double>(N * s);
  const double tgt = is_ce ? static_cast<double>(N * sizeof(std::int64_t)) : prob ? E_bytes : 0;
  const double wgt = spec.weighted ? static_cast<double>(static_cast<std::size_t>(spec.C) * s) : 0;
  double b = 0;
  if (op == "cross-entropy") b = (bwd ? 2 * E_bytes : E_bytes) + tgt;
  else if (is_sm) b = (fwd ? 2 * E_bytes : 0) + (bwd ? 3 * E_bytes : 0);
  else if (op == "logsumexp") b = (fwd ? E_bytes + row_bytes : 0) + (bwd ? 2 * E_bytes + 2 * row_bytes : 0);
  else if (op == "nll") b = (fwd ? row_bytes + tgt : 0) + (bwd ? E_bytes + tgt : 0);
  else if (is_bce) b = (fwd ? 2 * E_bytes : 0) + (bwd ? 3 * E_bytes : 0);
  if (op == "cross-entropy") b += wgt + (spec.token_weighted ? row_bytes : 0);
  else if (op == "nll") b += (fwd ? wgt : 0) + (bwd ? wgt : 0);  // two calls, each reads the weights
  w->min_bytes_ = b;
  *out = std::move(w);
  return ok_status();
}

Status Workload::run() const {
  const DType dt = spec_.dtype;
  const Shape sh{spec_.N, spec_.C};
  const Shape rows{spec_.N};
  const std::string& op = spec_.op;
  const bool fwd = spec_.pass != "bwd";
  const bool bwd = spec_.pass != "fwd";
  ConstTensorView x{x_.data(), dt, sh};
  TensorView scalar_loss{loss_.data(), dt, Shape{}};
  ConstTensorView dloss{dloss_.data(), dt, Shape{}};
  TensorView dx{dx_.data(), dt, sh};
  if (op == "cross-entropy" || op == "nll") {
    const bool prob = spec_.target == "prob";
    ConstTensorView t = prob ? ConstTensorView{t_.data(), dt, sh} : ConstTensorView{t_.data(), DType::kI64, rows};
    ConstTensorView weight;
    if (spec_.weighted) weight = ConstTensorView{w_.data(), dt, Shape{spec_.C}};
    if (op == "cross-entropy") {
      CrossEntropyOptions o;
      o.weight = weight;
      o.label_smoothing = spec_.label_smoothing;
      if (spec_.token_weighted) o.token_weight = ConstTensorView{tw_.data(), dt, rows};
      if (spec_.exact) o.summation = Summation::kExact;
      if (fwd && bwd) return cross_entropy_fused(x, t, o, scalar_loss, dx);
      if (fwd) return cross_entropy_forward(x, t, o, scalar_loss);
      return cross_entropy_backward(x, t, o, dloss, dx);
    }
    NllOptions o;
    o.weight = weight;
    if (fwd) XENT_RETURN_IF_ERROR(nll_loss_forward(x, t, o, scalar_loss));
    if (bwd) XENT_RETURN_IF_ERROR(nll_loss_backward(x, t, o, dloss, dx));
    return ok_status();
  }
  if (op == "softmax" || op == "log-softmax") {
    const bool sm = op == "softmax";
    TensorView y{y_.data(), dt, sh};
    if (fwd) XENT_RETURN_IF_ERROR(sm ? softmax_forward(x, 1, y) : log_softmax_forward(x, 1, y));
    ConstTensorView dy{dy_.data(), dt, sh};
    if (bwd) XENT_RETURN_IF_ERROR(sm ? softmax_backward(y, dy, 1, dx) : log_softmax_backward(y, dy, 1, dx));
    return ok_status();
  }
  if (op == "logsumexp") {
    TensorView out{y_.data(), dt, rows};
    if (fwd) XENT_RETURN_IF_ERROR(logsumexp_forward(x, 1, out));
    if (bwd) XENT_RETURN_IF_ERROR(logsumexp_backward(x, out, ConstTensorView{dy_.data(), dt, rows}, 1, dx));
    return ok_status();
  }
  // bce, bce-with-logits
  ConstTensorView t{t_.data(), dt, sh};
  BceOptions o;
  const bool logits = op == "bce-with-logits";
  if (fwd)
    XENT_RETURN_IF_ERROR(logits ? binary_cross_entropy_with_logits_forward(x, t, o, scalar_loss)
                                : binary_cross_entropy_forward(x, t, o, scalar_loss));
  if (bwd)
    XENT_RETURN_IF_ERROR(logits ? binary_cross_entropy_with_logits_backward(x, t, o, dloss, dx)
                                : binary_cross_entropy_backward(x, t, o, dloss, dx));
  return ok_status();
}

double measure_copy_gbps(int threads, std::size_t bytes) {
  threads = std::max(1, threads);
  Buffer src(bytes), dst(bytes);
  if (src.data() == nullptr || dst.data() == nullptr) return 0;
  std::memset(src.data(), 1, bytes);
  const std::size_t per = (bytes / static_cast<std::size_t>(threads)) / 64 * 64;
  auto copy_all = [&] {
    std::vector<std::thread> pool;
    for (int k = 1; k < threads; ++k) {
      pool.emplace_back([&, k] {
        const std::size_t off = static_cast<std::size_t>(k) * per;
        const std::size_t len = k == threads - 1 ? bytes - off : per;
        std::memcpy(static_cast<char*>(dst.data()) + off, static_cast<const char*>(src.data()) + off, len);
      });
    }
    std::memcpy(dst.data(), src.data(), threads == 1 ? bytes : per);
    for (auto& t : pool) t.join();
  };
  std::vector<double> s = time_calls(copy_all, 1, 5, 20, 0.2);
  return 2.0 * static_cast<double>(bytes) / median(s) / 1e9;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 == 1 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

}  // namespace xent::bench
