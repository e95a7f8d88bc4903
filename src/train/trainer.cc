// trainer.cc: softmax regression by minibatch SGD (include/xent/train/train.h): initialisation, the
// epoch loop, evaluation, checkpoints. Pixels (bytes) go through the kernel table's byte_affine and
// byte_affine_grad entries, which read the rows where they lie in the data set, as bytes; float
// features go through OpenBLAS sgemm calls. Every product is single-threaded; parallelism comes
// from xent's pool over fixed chunks (rows of a batch, slices of the test set), so results do not
// depend on the thread count. A batch step is one parallel region: each chunk of rows does its
// forward, loss and partial gradients; the partials are then added in chunk order.
//
// Shapes: N samples, B batch rows, D features (pixels), C classes. X is B x D (row-major),
// W is D x C in the model; during an SGD epoch the weight, its velocity and the gradient are held
// C x D (class-major: what the byte kernels read, walked contiguously by the update) and written
// back after the epoch. Z and dZ are B x C.
#include "xent/train/train.h"

#include <cblas.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cpu/kernels.h"
#include "guarded.h"
#include "io/atomic_file.h"
#include "xent/io/file.h"
#include "xent/io/safetensors.h"
#include "parallel.h"
#include "train/aligned.h"
#include "train/inputs.h"
#include "train/lbfgs.h"
#include "train/rng.h"
#include "xent/losses.h"
#include "xent/runtime.h"
#include "xent/softmax.h"

namespace xent::train {

using namespace xent::io;  // LabeledImages, safetensors, whole-file read, AtomicFile

namespace {

using json = nlohmann::json;

constexpr std::int64_t kRowChunk = 128;   // batch rows per task (fixed: the model does not depend on the thread count)
constexpr std::int64_t kEvalRows = 256;   // rows per evaluation chunk
constexpr std::int64_t kEvalLanes = 8;    // evaluation tasks (each walks its own slice of chunks)
constexpr std::int64_t kPrefetchRows = 6; // gather: rows fetched ahead

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Pixels are x / 255 as the model sees them: the byte kernels apply 1/255 to each sum.
constexpr float kPixelScale = 1.0f / 255.0f;

// wt (C x D) = W (D x C) transposed, and back.
void transpose_weight(const float* W, std::int64_t D, std::int64_t C, float* wt) {
  for (std::int64_t d = 0; d < D; ++d)
    for (std::int64_t c = 0; c < C; ++c) wt[c * D + d] = W[d * C + c];
}
void transpose_back(const float* wt, std::int64_t D, std::int64_t C, float* W) {
  for (std::int64_t d = 0; d < D; ++d)
    for (std::int64_t c = 0; c < C; ++c) W[d * C + c] = wt[c * D + d];
}

// Z (rows x C) = X (rows x D) Wt^T + b for float features, Wt the C x D weight, one
// single-threaded sgemm.
void linear_forward(const float* X, std::int64_t rows, const float* wt, const float* b, std::int64_t D,
                    std::int64_t C, float* Z) {
  for (std::int64_t r = 0; r < rows; ++r) std::memcpy(Z + r * C, b, static_cast<std::size_t>(C) * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(C),
              static_cast<int>(D), 1.0f, X, static_cast<int>(D), wt, static_cast<int>(D), 1.0f, Z,
              static_cast<int>(C));
}

std::int32_t argmax_row(const float* z, std::int64_t C) {
  std::int64_t best = 0;
  for (std::int64_t c = 1; c < C; ++c)
    if (z[c] > z[best]) best = c;
  return static_cast<std::int32_t>(best);
}

Status check_data(const SoftmaxModel& m, const LabeledImages& d, const char* what) {
  const std::int64_t D = m.features, C = m.classes;
  XENT_RETURN_IF_ERROR(check_input_kind(m, d, what));
  if (static_cast<std::int64_t>(d.floats ? d.values.size() : d.pixels.size()) != d.n * D ||
      static_cast<std::int64_t>(d.labels.size()) != d.n)
    return invalid_argument(fmt::format("the {} set's arrays do not hold {} rows of {} features and labels", what, d.n, D));
  if (d.features() != D) {
    return invalid_argument(fmt::format("{} images have {} x {} = {} pixels, the model expects {}", what, d.height,
                                        d.width, d.features(), D));
  }
  for (std::int64_t i = 0; i < d.n; ++i) {
    const std::int32_t y = d.labels[static_cast<std::size_t>(i)];
    if (y < 0 || y >= C)
      return out_of_range(fmt::format("{} label {} at index {} is outside [0, {})", what, y, i, C));
  }
  return ok_status();
}

// Reusable buffers for chunked evaluation.
struct EvalWorkspace {
  std::vector<float> x, z;  // float features: kEvalLanes x kEvalRows x D; logits: kEvalLanes x kEvalRows x C
  CacheAligned<float> wt;   // the weight as C x D
  std::vector<const std::uint8_t*> rows;  // pixels: kEvalLanes x kEvalRows row pointers
  void ensure(std::int64_t D, std::int64_t C, bool bytes) {
    wt.resize(static_cast<std::size_t>(C * D));
    if (bytes) {
      rows.resize(static_cast<std::size_t>(kEvalLanes * kEvalRows));
    } else {
      x.resize(static_cast<std::size_t>(kEvalLanes * kEvalRows * D));
    }
    z.resize(static_cast<std::size_t>(kEvalLanes * kEvalRows * C));
  }
};

// Calls fn(row0, rows, Z) for consecutive chunks of the n images, from kEvalLanes parallel tasks
// (each task owns a contiguous slice of chunks and its own buffers).
template <class Fn>
void for_each_logits_chunk(const SoftmaxModel& m, RowSource src, std::int64_t n, EvalWorkspace& ws, Fn&& fn) {
  const std::int64_t D = m.features, C = m.classes;
  ws.ensure(D, C, src.bytes != nullptr);
  transpose_weight(m.weight.data(), D, C, ws.wt.data());
  const auto& kernels = cpu::active_table_f32();
  const std::int64_t chunks = ceil_div(n, kEvalRows);
  const std::int64_t per_lane = ceil_div(chunks, kEvalLanes);
  detail::parallel_for(static_cast<std::size_t>(kEvalLanes), [&](std::size_t lane) {
    float* Z = ws.z.data() + lane * static_cast<std::size_t>(kEvalRows * C);
    for (std::int64_t k = static_cast<std::int64_t>(lane) * per_lane;
         k < std::min(chunks, (static_cast<std::int64_t>(lane) + 1) * per_lane); ++k) {
      const std::int64_t row0 = k * kEvalRows, rows = std::min(kEvalRows, n - row0);
      if (src.bytes) {
        const std::uint8_t** rp = ws.rows.data() + lane * static_cast<std::size_t>(kEvalRows);
        for (std::int64_t r = 0; r < rows; ++r) rp[r] = src.bytes + (row0 + r) * D;
        kernels.byte_affine(rp, static_cast<std::size_t>(rows), static_cast<std::size_t>(D), ws.wt.data(),
                            static_cast<std::size_t>(C), kPixelScale, m.bias.data(), Z);
      } else {
        float* X = ws.x.data() + lane * static_cast<std::size_t>(kEvalRows * D);
        model_inputs(m, src.floats, row0, rows, X);
        linear_forward(X, rows, ws.wt.data(), m.bias.data(), D, C, Z);
      }
      fn(static_cast<std::int64_t>(lane), row0, rows, Z);
    }
  });
}

void apply_threads(int threads) {
  // Each BLAS call is one task of ours: OpenBLAS must not spawn its own threads. (Its threaded
  // build is the one to link: Debian's serial build is not safe for concurrent calls.)
  openblas_set_num_threads(1);
  if (threads > 0) set_num_threads(threads);
}

// The options that define a run (what a checkpoint must match on resume): everything but the
// epoch count and the thread count.
json options_json(const TrainOptions& o) {
  json j = {{"batch_size", o.batch_size}, {"lr", o.lr},           {"seed", o.seed},
            {"weight_decay", o.weight_decay}, {"momentum", o.momentum}, {"label_smoothing", o.label_smoothing},
            {"init_std", o.init_std}};
  // Added later: written only when not at their defaults, so older checkpoints still match.
  if (o.val_split != 0) j["val_split"] = o.val_split;
  if (o.optimizer != Optimizer::kSgd) {
    j["optimizer"] = optimizer_name(o.optimizer);
    j["C"] = o.C, j["max_iter"] = o.max_iter, j["tol"] = o.tol, j["dtype"] = o.float64 ? "float64" : "float32";
    j["precondition"] = precondition_name(o.precondition);
  }
  return j;
}

json num_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

Status compute_logits_impl(const SoftmaxModel& m, RowSource src, std::int64_t n, int threads, float* logits);
Status evaluate_impl(const SoftmaxModel& m, const LabeledImages& data, int threads, Evaluation* out);

}  // namespace

const char* optimizer_name(Optimizer o) noexcept { return o == Optimizer::kLbfgs ? "lbfgs" : "sgd"; }
const char* precondition_name(Precondition p) noexcept {
  return p == Precondition::kNone ? "none" : p == Precondition::kInputs ? "inputs" : "curvature";
}

static Status validate_unguarded(const TrainOptions& o) {
  if (!(o.val_split >= 0 && o.val_split < 1))
    return invalid_argument(fmt::format("--val-split must be in [0, 1), found {}", o.val_split));
  if (!(o.C > 0) || !std::isfinite(o.C)) return invalid_argument(fmt::format("--C must be positive and finite, found {}", o.C));
  if (o.max_iter < 1 || o.max_iter > 1000000)
    return invalid_argument(fmt::format("--max-iter must be in [1, 1e6], found {}", o.max_iter));
  if (!(o.tol >= 0) || !std::isfinite(o.tol)) return invalid_argument(fmt::format("--tol must be >= 0, found {}", o.tol));
  if (o.log_every < 1) return invalid_argument(fmt::format("--log-every must be >= 1, found {}", o.log_every));
  if (o.epochs < 1 || o.epochs > 1000000) return invalid_argument(fmt::format("--epochs must be in [1, 1e6], found {}", o.epochs));
  if (o.batch_size < 1 || o.batch_size > (1 << 24))
    return invalid_argument(fmt::format("--batch-size must be in [1, 2^24], found {}", o.batch_size));
  if (!(o.lr > 0) || !std::isfinite(o.lr)) return invalid_argument(fmt::format("--lr must be positive and finite, found {}", o.lr));
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
    return invalid_argument(fmt::format("--weight-decay must be >= 0, found {}", o.weight_decay));
  if (!(o.momentum >= 0 && o.momentum < 1)) return invalid_argument(fmt::format("--momentum must be in [0, 1), found {}", o.momentum));
  if (!(o.label_smoothing >= 0 && o.label_smoothing <= 1))
    return invalid_argument(fmt::format("--label-smoothing must be in [0, 1], found {}", o.label_smoothing));
  if (!(o.init_std >= 0) || !std::isfinite(o.init_std)) return invalid_argument(fmt::format("init std must be >= 0, found {}", o.init_std));
  if (o.threads < 0 || o.threads > 1024) return invalid_argument(fmt::format("--threads must be in [0, 1024], found {}", o.threads));
  return ok_status();
}

static Result<TrainState> init_train_state_unguarded(std::int64_t height, std::int64_t width, std::int64_t classes,
                                    const TrainOptions& options) {
  XENT_RETURN_IF_ERROR(validate(options));
  const std::int64_t D = height * width;
  if (height < 1 || width < 1 || D > (std::int64_t{1} << 30) || classes < 2 || classes > 65536 ||
      D * classes > (std::int64_t{1} << 30)) {
    return invalid_argument(fmt::format("cannot build a model for {} x {} inputs and {} classes (need C >= 2, D * C < 2^30)",
                                        height, width, classes));
  }
  TrainState s;
  s.model.features = D;
  s.model.classes = classes;
  s.model.height = height;
  s.model.width = width;
  s.model.weight.resize(static_cast<std::size_t>(D * classes));
  s.model.bias.assign(static_cast<std::size_t>(classes), 0.0f);
  auto names = default_class_names(classes, false);
  if (!names.ok()) return names.status();
  s.model.class_names = std::move(*names);
  detail::Xoshiro256 rng(options.seed);
  detail::fill_normal(s.model.weight.data(), D * classes, options.init_std, rng);
  s.velocity_w.assign(s.model.weight.size(), 0.0f);
  s.velocity_b.assign(s.model.bias.size(), 0.0f);
  s.rng = rng.state();
  return s;
}

static Status split_validation_unguarded(const LabeledImages& data, double fraction, std::uint64_t seed, LabeledImages* train,
                        LabeledImages* val) {
  if (!(fraction >= 0 && fraction < 1))
    return invalid_argument(fmt::format("--val-split must be in [0, 1), found {}", fraction));
  if (data.labels.size() != static_cast<std::size_t>(data.n)) return invalid_argument("split_validation: labels do not match n");
  std::int32_t max_label = -1;
  for (std::int32_t y : data.labels) {
    if (y < 0) return out_of_range(fmt::format("label {} is negative", y));
    max_label = std::max(max_label, y);
  }
  // Per class: its indices in order, shuffled by a generator seeded from (seed, class); the first
  // round(fraction * count) go to validation.
  std::vector<std::vector<std::int64_t>> by_class(static_cast<std::size_t>(max_label + 1));
  for (std::int64_t i = 0; i < data.n; ++i) by_class[static_cast<std::size_t>(data.labels[static_cast<std::size_t>(i)])].push_back(i);
  std::vector<char> to_val(static_cast<std::size_t>(data.n), 0);
  for (std::size_t c = 0; c < by_class.size(); ++c) {
    auto& idx = by_class[c];
    if (idx.empty()) continue;
    const auto k = static_cast<std::int64_t>(std::llround(fraction * static_cast<double>(idx.size())));
    if (k >= static_cast<std::int64_t>(idx.size()))
      return invalid_argument(fmt::format("--val-split {} leaves no training image of class {} ({} images)", fraction, c,
                                          idx.size()));
    detail::Xoshiro256 rng(seed ^ (0x9e3779b97f4a7c15ULL * (c + 1)));
    detail::shuffle(idx.data(), static_cast<std::int64_t>(idx.size()), rng);
    for (std::int64_t j = 0; j < k; ++j) to_val[static_cast<std::size_t>(idx[static_cast<std::size_t>(j)])] = 1;
  }
  std::int64_t n_val = 0;
  for (char v : to_val) n_val += v;
  const std::int64_t D = data.features();
  auto take = [&](char which, std::int64_t count, LabeledImages* out) {
    LabeledImages o;
    o.n = count, o.height = data.height, o.width = data.width, o.floats = data.floats;
    if (data.floats) o.values.resize(static_cast<std::size_t>(count * D));
    else o.pixels = ByteBuffer(static_cast<std::size_t>(count * D));
    o.labels.reserve(static_cast<std::size_t>(count));
    std::int64_t r = 0;
    for (std::int64_t i = 0; i < data.n; ++i) {
      if (to_val[static_cast<std::size_t>(i)] != which) continue;
      if (data.floats)
        std::memcpy(o.values.data() + r * D, data.values.data() + i * D, static_cast<std::size_t>(D) * sizeof(float));
      else
        std::memcpy(o.pixels.data() + r * D, data.pixels.data() + i * D, static_cast<std::size_t>(D));
      o.labels.push_back(data.labels[static_cast<std::size_t>(i)]);
      ++r;
    }
    *out = std::move(o);
  };
  LabeledImages t, v;
  take(0, data.n - n_val, &t);
  take(1, n_val, &v);
  *train = std::move(t), *val = std::move(v);
  return ok_status();
}

namespace {

// Loss and accuracy of the model on a labelled set, in fixed evaluation chunks (kEvalLanes tasks,
// each summing its chunks in order; lanes added in order), so the numbers do not depend on the
// thread count. NaNs for an empty set.
struct SplitScore {
  double loss = NAN, accuracy = NAN;
};
SplitScore score_split(const SoftmaxModel& m, const LabeledImages& data, double label_smoothing, EvalWorkspace& ws) {
  SplitScore s;
  if (data.n == 0) return s;
  std::int64_t correct_by_lane[kEvalLanes] = {};
  double loss_by_lane[kEvalLanes] = {};
  CrossEntropyOptions ce;
  ce.reduction = Reduction::kSum;
  ce.label_smoothing = label_smoothing;
  for_each_logits_chunk(m, rows_of(data), data.n, ws, [&](std::int64_t lane, std::int64_t row0, std::int64_t rows, const float* Z) {
    const std::int32_t* y = data.labels.data() + row0;
    for (std::int64_t r = 0; r < rows; ++r) correct_by_lane[lane] += argmax_row(Z + r * m.classes, m.classes) == y[r];
    float loss = 0;
    // Labels were checked against the model (check_data), so this cannot fail.
    (void)cross_entropy_forward(ConstTensorView(Z, {rows, m.classes}), ConstTensorView(y, {rows}), ce,
                                TensorView(&loss, Shape{}));
    loss_by_lane[lane] += static_cast<double>(loss);
  });
  std::int64_t correct = 0;
  double loss = 0;
  for (std::int64_t l = 0; l < kEvalLanes; ++l) correct += correct_by_lane[l], loss += loss_by_lane[l];
  s.accuracy = static_cast<double>(correct) / static_cast<double>(data.n);
  s.loss = loss / static_cast<double>(data.n);
  return s;
}

// The SGD loop's buffers, sized once for batches of B rows.
struct SgdWorkspace {
  std::int64_t B = 0, D = 0, C = 0, max_tasks = 0;
  std::vector<float> X, Z, dZ;           // float features: B x D; B x C, B x C
  std::vector<std::uint8_t> xb;          // pixels: the batch's B rows gathered (B x D bytes)
  std::vector<const std::uint8_t*> rows; // pixels: pointers to them
  CacheAligned<float> wt, vt;            // during an epoch: the weight and its velocity as C x D (the
                                         // model's D x C copies are written back after each epoch)
  std::vector<float> gW_part;            // per chunk: (X^T dZ)^T (C x D); chunk 0 receives the sum
  std::vector<double> gb_part;           // per chunk: column sums of dZ
  std::vector<float> chunk_loss;
  std::vector<std::int64_t> chunk_correct;
  std::vector<Status> chunk_status;
  std::vector<std::int32_t> y, perm;     // batch labels; the epoch's permutation of the N rows
  EvalWorkspace eval;
  SgdWorkspace(std::int64_t batch, std::int64_t n, std::int64_t d, std::int64_t c, bool bytes)
      : B(batch), D(d), C(c), max_tasks(ceil_div(batch, kRowChunk)) {
    wt.resize(static_cast<std::size_t>(C * D));
    vt.resize(static_cast<std::size_t>(C * D));
    if (bytes) {
      xb.resize(static_cast<std::size_t>(B * D));
      rows.resize(static_cast<std::size_t>(B));
    } else {
      X.resize(static_cast<std::size_t>(B * D));
    }
    Z.resize(static_cast<std::size_t>(B * C));
    dZ.resize(static_cast<std::size_t>(B * C));
    gW_part.resize(static_cast<std::size_t>(max_tasks * D * C));
    gb_part.resize(static_cast<std::size_t>(max_tasks * C));
    chunk_loss.resize(static_cast<std::size_t>(max_tasks));
    chunk_correct.resize(static_cast<std::size_t>(max_tasks));
    chunk_status.resize(static_cast<std::size_t>(max_tasks));
    y.resize(static_cast<std::size_t>(B));
    perm.resize(static_cast<std::size_t>(n));
  }
};

Status check_training_inputs(const LabeledImages& train, const LabeledImages* val, const LabeledImages& test,
                             const TrainOptions& options, const TrainState& state) {
  XENT_RETURN_IF_ERROR(validate(options));
  const SoftmaxModel& m = state.model;
  const std::int64_t D = m.features, C = m.classes;
  if (m.weight.size() != static_cast<std::size_t>(D * C) || m.bias.size() != static_cast<std::size_t>(C) ||
      state.velocity_w.size() != m.weight.size() || state.velocity_b.size() != m.bias.size())
    return invalid_argument("training state has inconsistent sizes");
  if (train.n < 1) return invalid_argument("the training set is empty");
  if (train.n > INT32_MAX) return invalid_argument(fmt::format("the training set has {} images, more than 2^31 - 1", train.n));
  if (m.normalization == Normalization::kStandardize &&
      (m.input_mean.size() != static_cast<std::size_t>(D) || m.input_std.size() != static_cast<std::size_t>(D)))
    return invalid_argument("a standardizing model needs D means and stds");
  XENT_RETURN_IF_ERROR(check_data(m, train, "train"));
  if (val) XENT_RETURN_IF_ERROR(check_data(m, *val, "validation"));
  return check_data(m, test, "test");
}

// Gather + scale the batch's rows, forward, fused cross-entropy and partial gradients, one task
// per fixed chunk of kRowChunk rows (so the partials do not depend on the thread count); only
// chunks [first, last) (this process's share when data-parallel).
void sgd_chunks_forward_backward(const SoftmaxModel& m, const LabeledImages& train, std::int64_t start,
                                 std::int64_t rows, std::int64_t first, std::int64_t last,
                                 const CrossEntropyOptions& ce_sum, SgdWorkspace& w) {
  const std::int64_t D = w.D, C = w.C;
  const RowSource src = rows_of(train);
  const auto& kernels = cpu::active_table_f32();
  detail::parallel_for(static_cast<std::size_t>(last - first), [&](std::size_t task) {
    const std::size_t t = task + static_cast<std::size_t>(first);
    const std::int64_t r0 = static_cast<std::int64_t>(t) * kRowChunk, r1 = std::min(rows, r0 + kRowChunk);
    const std::int64_t n = r1 - r0;
    float* Zt = w.Z.data() + r0 * C;
    float* dZt = w.dZ.data() + r0 * C;
    std::int32_t* yt = w.y.data() + r0;
    float* gt = w.gW_part.data() + t * D * C;
    if (src.bytes) {
      // The chunk's rows are random rows of the data set: copied first (a few rows fetched ahead,
      // many misses in flight), both products then read them from this core's cache. Measured
      // faster than letting the forward product take the misses (about 1.3x on the forward).
      const std::uint8_t** rp = w.rows.data() + r0;
      for (std::int64_t r = r0; r < r1; ++r) {
        if (r + kPrefetchRows < r1) {
          const std::uint8_t* ahead = src.bytes + w.perm[static_cast<std::size_t>(start + r + kPrefetchRows)] * D;
          for (std::int64_t off = 0; off < D; off += 64) __builtin_prefetch(ahead + off);
        }
        const std::int64_t i = w.perm[static_cast<std::size_t>(start + r)];
        std::uint8_t* row = w.xb.data() + r * D;
        std::memcpy(row, src.bytes + i * D, static_cast<std::size_t>(D));
        w.rows[static_cast<std::size_t>(r)] = row;
        w.y[static_cast<std::size_t>(r)] = train.labels[static_cast<std::size_t>(i)];
      }
      kernels.byte_affine(rp, static_cast<std::size_t>(n), static_cast<std::size_t>(D), w.wt.data(),
                          static_cast<std::size_t>(C), kPixelScale, m.bias.data(), Zt);
    } else {
      // Rows are random in a dataset larger than the caches: fetch a few rows ahead.
      const auto* base = reinterpret_cast<const std::uint8_t*>(src.floats);
      const std::int64_t row_bytes = D * static_cast<std::int64_t>(sizeof(float));
      for (std::int64_t r = r0; r < r1; ++r) {
        if (r + kPrefetchRows < r1) {
          const std::uint8_t* ahead = base + w.perm[static_cast<std::size_t>(start + r + kPrefetchRows)] * row_bytes;
          for (std::int64_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(ahead + off);
        }
        const std::int64_t i = w.perm[static_cast<std::size_t>(start + r)];
        model_inputs(m, src.floats, i, 1, w.X.data() + r * D);
        w.y[static_cast<std::size_t>(r)] = train.labels[static_cast<std::size_t>(i)];
      }
      linear_forward(w.X.data() + r0 * D, n, w.wt.data(), m.bias.data(), D, C, Zt);
    }
    std::int64_t hits = 0;
    for (std::int64_t r = 0; r < n; ++r) hits += argmax_row(Zt + r * C, C) == yt[r];
    w.chunk_correct[t] = hits;
    float loss = 0;
    w.chunk_status[t] = cross_entropy_fused(ConstTensorView(Zt, {n, C}), ConstTensorView(yt, {n}), ce_sum,
                                            TensorView(&loss, Shape{}), TensorView(dZt, {n, C}));
    w.chunk_loss[t] = loss;
    if (src.bytes) {
      kernels.byte_affine_grad(w.rows.data() + r0, static_cast<std::size_t>(n), static_cast<std::size_t>(D), dZt,
                               static_cast<std::size_t>(C), kPixelScale, gt);
    } else {  // gt (C x D) = dZ^T X
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(C), static_cast<int>(D), static_cast<int>(n),
                  1.0f, dZt, static_cast<int>(C), w.X.data() + r0 * D, static_cast<int>(D), 0.0f, gt, static_cast<int>(D));
    }
    double* gbt = w.gb_part.data() + t * C;
    for (std::int64_t c = 0; c < C; ++c) gbt[c] = 0;
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t c = 0; c < C; ++c) gbt[c] += dZt[r * C + c];
    if (src.bytes) {
      // The same chunk of the next batch (the epoch's permutation is known): its rows start on
      // their way to the caches while the update runs.
      const auto N = static_cast<std::int64_t>(w.perm.size());
      for (std::int64_t r = start + w.B + r0; r < std::min(N, start + w.B + r1); ++r) {
        const std::uint8_t* row = src.bytes + w.perm[static_cast<std::size_t>(r)] * D;
        for (std::int64_t off = 0; off < D; off += 64) __builtin_prefetch(row + off, 0, 2);
      }
    }
  });
}

// The update from the chunks' partial gradients, added in chunk order (a fixed order for every
// thread count and, data-parallel, every process count): p -= lr * (momentum buffer of) the
// batch-mean gradient plus weight decay on W, on the C x D weight and velocity (one contiguous,
// vectorisable pass); the bias from the partials' column sums, in double.
void sgd_update(const TrainOptions& options, std::int64_t rows, std::int64_t tasks, SgdWorkspace& w, TrainState& state) {
  SoftmaxModel& m = state.model;
  const float lr = static_cast<float>(options.lr), wd = static_cast<float>(options.weight_decay),
              mu = static_cast<float>(options.momentum);
  const float inv_rows = 1.0f / static_cast<float>(rows);
  const std::int64_t DC = w.D * w.C, C = w.C;
  float* __restrict g = w.gW_part.data();
  for (std::int64_t t = 1; t < tasks; ++t) {
    const float* __restrict gt = w.gW_part.data() + t * DC;
    for (std::int64_t j = 0; j < DC; ++j) g[j] += gt[j];
  }
  float* __restrict W = w.wt.data();
  float* __restrict v = w.vt.data();
  if (mu != 0.0f) {
    for (std::int64_t j = 0; j < DC; ++j) {
      v[j] = mu * v[j] + (g[j] * inv_rows + wd * W[j]);
      W[j] -= lr * v[j];
    }
  } else {
    for (std::int64_t j = 0; j < DC; ++j) W[j] -= lr * (g[j] * inv_rows + wd * W[j]);
  }
  for (std::int64_t c = 0; c < C; ++c) {
    double gb = 0;
    for (std::int64_t t = 0; t < tasks; ++t) gb += w.gb_part[static_cast<std::size_t>(t * C + c)];
    float step = static_cast<float>(gb) * inv_rows;
    if (mu != 0.0f) {
      float& vb = state.velocity_b[static_cast<std::size_t>(c)];
      vb = mu * vb + step;
      step = vb;
    }
    m.bias[static_cast<std::size_t>(c)] -= lr * step;
  }
}

// Measures the model after an epoch (or L-BFGS iteration) on the validation and test sets, records
// the metrics in the history and the model's metadata, and calls on_epoch_end.
Status finish_epoch(EpochMetrics em, const LabeledImages* val, const LabeledImages& test, const TrainOptions& options,
                    TrainState& state, const TrainCallbacks& callbacks, EvalWorkspace& ws,
                    std::chrono::steady_clock::time_point t0) {
  SoftmaxModel& m = state.model;
  if (val) {
    const SplitScore v = score_split(m, *val, options.label_smoothing, ws);
    em.val_loss = v.loss, em.val_accuracy = v.accuracy;
  }
  const SplitScore te = score_split(m, test, options.label_smoothing, ws);
  em.test_loss = te.loss, em.test_accuracy = te.accuracy;
  em.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  state.epochs_done = em.epoch;
  state.history.push_back(em);
  m.info["optimizer"] = optimizer_name(options.optimizer);
  m.info["epochs"] = std::to_string(em.epoch);
  m.info["train_loss"] = fmt::format("{:.6f}", em.train_loss);
  m.info["train_accuracy"] = fmt::format("{:.6f}", em.train_accuracy);
  if (val) m.info["val_accuracy"] = fmt::format("{:.6f}", em.val_accuracy);
  m.info["test_accuracy"] = fmt::format("{:.6f}", em.test_accuracy);
  if (std::isfinite(em.objective)) m.info["objective"] = fmt::format("{:.17g}", em.objective);
  m.info["recipe"] = options_json(options).dump();
  if (callbacks.on_epoch_end) return callbacks.on_epoch_end(state, em);
  return ok_status();
}

Status train_sgd(const LabeledImages& train, const LabeledImages* val, const LabeledImages& test,
                 const TrainOptions& options, TrainState& state, const TrainCallbacks& callbacks, bool* interrupted) {
  using clock = std::chrono::steady_clock;
  SoftmaxModel& m = state.model;
  const std::int64_t N = train.n;
  const std::int64_t B = std::min<std::int64_t>(options.batch_size, N);
  SgdWorkspace w(B, N, m.features, m.classes, !train.floats);
  transpose_weight(m.weight.data(), m.features, m.classes, w.wt.data());
  transpose_weight(state.velocity_w.data(), m.features, m.classes, w.vt.data());
  CrossEntropyOptions ce_sum;  // per chunk; the batch mean is taken when the chunks are added
  ce_sum.reduction = Reduction::kSum;
  ce_sum.label_smoothing = options.label_smoothing;

  for (int epoch = state.epochs_done + 1; epoch <= options.epochs; ++epoch) {
    const auto t0 = clock::now();
    // The last completed epoch, restored on interruption.
    const TrainState before{m, state.velocity_w, state.velocity_b, state.rng, state.epochs_done, {}};
    detail::Xoshiro256 rng(state.rng);
    for (std::int64_t i = 0; i < N; ++i) w.perm[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    detail::shuffle(w.perm.data(), N, rng);

    double loss_sum = 0;
    std::int64_t correct = 0;
    for (std::int64_t start = 0; start < N; start += B) {
      if (callbacks.stop && callbacks.stop->load(std::memory_order_relaxed)) {
        m.weight = before.model.weight, m.bias = before.model.bias;
        state.velocity_w = before.velocity_w, state.velocity_b = before.velocity_b, state.rng = before.rng;
        if (interrupted) *interrupted = true;
        return ok_status();
      }
      const std::int64_t rows = std::min(B, N - start);
      const std::int64_t tasks = ceil_div(rows, kRowChunk);
      // This process computes chunks [first, last) (all of them unless data-parallel); the
      // others' partials arrive through share_chunks, and every process adds all in chunk order.
      std::int64_t first = 0, last = tasks;
      if (callbacks.own_chunks) callbacks.own_chunks(tasks, &first, &last);
      sgd_chunks_forward_backward(m, train, start, rows, first, last, ce_sum, w);
      for (std::int64_t t = first; t < last; ++t) XENT_RETURN_IF_ERROR(w.chunk_status[static_cast<std::size_t>(t)]);
      if (callbacks.share_chunks)
        XENT_RETURN_IF_ERROR(callbacks.share_chunks(
            {tasks, w.D * w.C, w.C, w.gW_part.data(), w.gb_part.data(), w.chunk_loss.data(), w.chunk_correct.data()}));
      for (std::int64_t t = 0; t < tasks; ++t) {
        correct += w.chunk_correct[static_cast<std::size_t>(t)];
        loss_sum += static_cast<double>(w.chunk_loss[static_cast<std::size_t>(t)]);
      }
      sgd_update(options, rows, tasks, w, state);
      if (callbacks.on_progress) callbacks.on_progress(epoch, start + rows, N);
    }
    state.rng = rng.state();
    // The epoch's weight and velocity back into the model's D x C layout (what evaluation,
    // checkpoints and callbacks see).
    transpose_back(w.wt.data(), m.features, m.classes, m.weight.data());
    transpose_back(w.vt.data(), m.features, m.classes, state.velocity_w.data());
    EpochMetrics em;
    em.epoch = epoch;
    em.train_loss = loss_sum / static_cast<double>(N);
    em.train_accuracy = static_cast<double>(correct) / static_cast<double>(N);
    XENT_RETURN_IF_ERROR(finish_epoch(em, val, test, options, state, callbacks, w.eval, t0));
  }
  return ok_status();
}

// Full-batch L-BFGS from W = 0, b = 0 (scikit-learn's start) on the objective of lbfgs.h. Every
// log_every-th iteration and the last are measured and recorded as "epochs". Ctrl-C ends the run
// at the current iterate (a valid model; L-BFGS runs are not resumable).
template <class T>
Status train_lbfgs_as(const LabeledImages& train, const LabeledImages* val, const LabeledImages& test,
                      const TrainOptions& options, TrainState& state, const TrainCallbacks& callbacks,
                      bool* interrupted) {
  using clock = std::chrono::steady_clock;
  SoftmaxModel& m = state.model;
  const std::int64_t DC = m.features * m.classes, C = m.classes;
  if (state.epochs_done != 0) return invalid_argument("--optimizer lbfgs cannot resume a run");
  if (callbacks.own_chunks)
    return invalid_argument("--optimizer lbfgs is not data-parallel: run it without mpirun (it takes seconds on one process)");
  auto t0 = clock::now();
  train::SoftmaxObjective<T> objective(train, C, options.C, &m);
  std::vector<double> p(static_cast<std::size_t>(DC + C), 0.0);
  EvalWorkspace ws;
  int last_recorded = -1;
  auto record = [&](int k, const std::vector<double>& x, const train::ObjectiveValue& v) -> Status {
    for (std::int64_t j = 0; j < DC; ++j) m.weight[static_cast<std::size_t>(j)] = static_cast<float>(x[static_cast<std::size_t>(j)]);
    for (std::int64_t c = 0; c < C; ++c) m.bias[static_cast<std::size_t>(c)] = static_cast<float>(x[static_cast<std::size_t>(DC + c)]);
    EpochMetrics em;
    em.epoch = k;
    em.train_loss = v.mean_ce;
    em.train_accuracy = static_cast<double>(v.correct) / static_cast<double>(train.n);
    em.objective = v.f;
    last_recorded = k;
    Status s = finish_epoch(em, val, test, options, state, callbacks, ws, t0);
    t0 = clock::now();
    return s;
  };
  train::LbfgsSettings settings;
  settings.max_iter = options.max_iter;
  settings.gtol = options.tol / static_cast<double>(train.n);  // scikit-learn's tol is on the summed objective
  Status callback_status;
  bool stopped = false;
  auto on_iteration = [&](int k, const std::vector<double>& x, const train::ObjectiveValue& v) {
    if (callbacks.stop && callbacks.stop->load(std::memory_order_relaxed)) {
      stopped = true;
      return false;
    }
    if (k % options.log_every == 0) {
      callback_status = record(k, x, v);
      if (!callback_status.ok()) return false;
    }
    return true;
  };
  train::LbfgsResult result;
  XENT_RETURN_IF_ERROR(train::minimize_softmax(objective, train, options.precondition, p, settings, on_iteration, &result));
  XENT_RETURN_IF_ERROR(callback_status);
  if (stopped && interrupted) *interrupted = true;
  m.info["lbfgs_stop"] = result.stop_reason;
  m.info["lbfgs_iterations"] = std::to_string(result.iterations);
  m.info["lbfgs_evaluations"] = std::to_string(result.evaluations);
  m.info["lbfgs_grad_max"] = fmt::format("{:.6g}", result.grad_max);
  m.info["dtype"] = options.float64 ? "float64" : "float32";
  if (last_recorded != result.iterations) XENT_RETURN_IF_ERROR(record(result.iterations, p, result.value));
  return ok_status();
}

Status train_lbfgs(const LabeledImages& train, const LabeledImages* val, const LabeledImages& test,
                   const TrainOptions& options, TrainState& state, const TrainCallbacks& callbacks, bool* interrupted) {
  if (options.float64) return train_lbfgs_as<double>(train, val, test, options, state, callbacks, interrupted);
  return train_lbfgs_as<float>(train, val, test, options, state, callbacks, interrupted);
}

Status train_impl(const LabeledImages& train, const LabeledImages* val, const LabeledImages& test,
                  const TrainOptions& options, TrainState& state, const TrainCallbacks& callbacks, bool* interrupted) {
  if (interrupted) *interrupted = false;
  XENT_RETURN_IF_ERROR(check_training_inputs(train, val, test, options, state));
  apply_threads(options.threads);
  if (options.optimizer == Optimizer::kLbfgs) return train_lbfgs(train, val, test, options, state, callbacks, interrupted);
  return train_sgd(train, val, test, options, state, callbacks, interrupted);
}

}  // namespace

Status train_softmax_regression(const LabeledImages& train, const LabeledImages* val, const LabeledImages& test,
                                const TrainOptions& options, TrainState& state, const TrainCallbacks& callbacks,
                                bool* interrupted) noexcept {
  return xent::detail::guarded("train_softmax_regression", [&]() -> Status {
    return train_impl(train, val, test, options, state, callbacks, interrupted);
  });
}

Status train_softmax_regression(const LabeledImages& train, const LabeledImages& test, const TrainOptions& options,
                                TrainState& state, const TrainCallbacks& callbacks, bool* interrupted) noexcept {
  return train_softmax_regression(train, nullptr, test, options, state, callbacks, interrupted);
}

Status compute_logits(const SoftmaxModel& m, const std::uint8_t* pixels, std::int64_t n, int threads,
                      float* logits) noexcept {
  return xent::detail::guarded("compute_logits", [&]() -> Status {
    if (m.normalization != Normalization::kPixels)
      return invalid_argument(fmt::format("compute_logits: the model takes float features (normalization {}), not pixels",
                                          normalization_name(m.normalization)));
    return compute_logits_impl(m, {pixels, nullptr}, n, threads, logits);
  });
}

Status compute_logits(const SoftmaxModel& m, const float* features, std::int64_t n, int threads,
                      float* logits) noexcept {
  return xent::detail::guarded("compute_logits", [&]() -> Status {
    if (m.normalization == Normalization::kPixels)
      return invalid_argument("compute_logits: the model takes unsigned-byte pixels (normalization pixels/255), not floats");
    if (m.normalization == Normalization::kStandardize &&
        (m.input_mean.size() != static_cast<std::size_t>(m.features) ||
         m.input_std.size() != static_cast<std::size_t>(m.features)))
      return invalid_argument("compute_logits: a standardizing model needs D means and stds");
    return compute_logits_impl(m, {nullptr, features}, n, threads, logits);
  });
}

namespace {
Status compute_logits_impl(const SoftmaxModel& m, RowSource src, std::int64_t n, int threads, float* logits) {
  if (n < 0 || (n > 0 && ((src.bytes == nullptr && src.floats == nullptr) || logits == nullptr)))
    return invalid_argument("compute_logits: bad buffers");
  if (m.weight.size() != static_cast<std::size_t>(m.features * m.classes) || m.bias.size() != static_cast<std::size_t>(m.classes))
    return invalid_argument("compute_logits: model has inconsistent sizes");
  apply_threads(threads);
  EvalWorkspace ws;
  for_each_logits_chunk(m, src, n, ws, [&](std::int64_t, std::int64_t row0, std::int64_t rows, const float* Z) {
    std::memcpy(logits + row0 * m.classes, Z, static_cast<std::size_t>(rows * m.classes) * sizeof(float));
  });
  return ok_status();
}

}  // namespace

Status evaluate_model(const SoftmaxModel& m, const LabeledImages& data, int threads, Evaluation* out) noexcept {
  return xent::detail::guarded("evaluate_model", [&]() -> Status { return evaluate_impl(m, data, threads, out); });
}

namespace {
Status evaluate_impl(const SoftmaxModel& m, const LabeledImages& data, int threads, Evaluation* out) {
  XENT_RETURN_IF_ERROR(check_data(m, data, "evaluation"));
  const std::int64_t C = m.classes, n = data.n;
  std::vector<float> logits(static_cast<std::size_t>(n * C));
  XENT_RETURN_IF_ERROR(data.floats ? compute_logits(m, data.values.data(), n, threads, logits.data())
                                   : compute_logits(m, data.pixels.data(), n, threads, logits.data()));
  Evaluation e;
  e.n = n;
  e.confusion.assign(static_cast<std::size_t>(C * C), 0);
  e.predicted.resize(static_cast<std::size_t>(n));
  e.confidence.resize(static_cast<std::size_t>(n));
  if (n > 0) XENT_RETURN_IF_ERROR(softmax_forward(ConstTensorView(logits.data(), {n, C}), 1, TensorView(logits.data(), {n, C})));
  for (std::int64_t i = 0; i < n; ++i) {
    const float* p = logits.data() + i * C;
    const std::int32_t k = argmax_row(p, C);
    e.predicted[static_cast<std::size_t>(i)] = k;
    e.confidence[static_cast<std::size_t>(i)] = p[k];
    const std::int32_t t = data.labels[static_cast<std::size_t>(i)];
    e.correct += k == t;
    ++e.confusion[static_cast<std::size_t>(t * C + k)];
  }
  e.accuracy = n ? static_cast<double>(e.correct) / static_cast<double>(n) : std::nan("");
  *out = std::move(e);
  return ok_status();
}

}  // namespace

static std::string dataset_fingerprint_unguarded(const LabeledImages& train, const LabeledImages& test) {
  auto crc = [](const void* p, std::size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const auto* b = static_cast<const Bytef*>(p);
    while (n > 0) {
      const auto k = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
      c = crc32(c, b, k);
      b += k, n -= k;
    }
    return static_cast<unsigned long>(c);
  };
  // Float features: the CRC of their bytes, marked "f32" (byte datasets keep the old string).
  auto rows = [&](const LabeledImages& d) {
    return d.floats ? crc(d.values.data(), d.values.size() * sizeof(float)) : crc(d.pixels.data(), d.pixels.size());
  };
  return fmt::format("train {}x{}x{}{} crc {:08x}/{:08x}; test {}x{}x{}{} crc {:08x}/{:08x}", train.n, train.height,
                     train.width, train.floats ? " f32" : "", rows(train), crc(train.labels.data(), train.labels.size() * 4),
                     test.n, test.height, test.width, test.floats ? " f32" : "", rows(test),
                     crc(test.labels.data(), test.labels.size() * 4));
}

static Status save_checkpoint_unguarded(const std::string& path, const TrainState& s, const TrainOptions& options,
                       const std::string& data_fingerprint) {
  const SoftmaxModel& m = s.model;
  std::map<std::string, std::string> meta = m.info;
  meta["format"] = "xent.softmax_regression.checkpoint";
  meta["format_version"] = "1";
  meta["class_names"] = json(m.class_names).dump();
  meta["input_shape"] = json(std::vector<std::int64_t>{m.height, m.width}).dump();
  meta["checkpoint_epochs_done"] = std::to_string(s.epochs_done);
  meta["checkpoint_options"] = options_json(options).dump();
  meta["checkpoint_data"] = data_fingerprint;
  json hist = json::array();
  for (const auto& h : s.history)
    hist.push_back({{"epoch", h.epoch}, {"train_loss", h.train_loss}, {"train_accuracy", h.train_accuracy},
                    {"val_loss", num_or_null(h.val_loss)}, {"val_accuracy", num_or_null(h.val_accuracy)},
                    {"test_loss", num_or_null(h.test_loss)}, {"test_accuracy", num_or_null(h.test_accuracy)},
                    {"seconds", h.seconds}});
  meta["checkpoint_history"] = hist.dump();
  std::vector<SafetensorsTensorRef> tensors = {
      {"W", "F32", {m.features, m.classes}, m.weight.data(), m.weight.size() * 4},
      {"b", "F32", {m.classes}, m.bias.data(), m.bias.size() * 4},
      {"velocity_W", "F32", {m.features, m.classes}, s.velocity_w.data(), s.velocity_w.size() * 4},
      {"velocity_b", "F32", {m.classes}, s.velocity_b.data(), s.velocity_b.size() * 4},
      {"rng", "U64", {4}, s.rng.data(), 32}};
  append_normalization(m, &meta, &tensors);
  const auto bytes = serialize_safetensors(meta, tensors);
  if (!bytes.ok()) return bytes.status();
  return io::write_file_atomic(path, *bytes);
}

static Result<TrainOptions> read_checkpoint_options_unguarded(const std::string& path, const TrainOptions& base) {
  auto bytes = read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  auto st = parse_safetensors(bytes->data(), bytes->size(), path);
  if (!st.ok()) return st.status();
  auto it = st->metadata.find("checkpoint_options");
  if (it == st->metadata.end()) return data_loss(fmt::format("{}: not a xent checkpoint (no checkpoint_options)", path));
  json j = json::parse(it->second, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return data_loss(fmt::format("{}: checkpoint_options is not a JSON object", path));
  TrainOptions o = base;
  try {
    o.batch_size = j.at("batch_size").get<std::int64_t>();
    o.lr = j.at("lr").get<double>();
    o.seed = j.at("seed").get<std::uint64_t>();
    o.weight_decay = j.at("weight_decay").get<double>();
    o.momentum = j.at("momentum").get<double>();
    o.label_smoothing = j.at("label_smoothing").get<double>();
    o.init_std = j.at("init_std").get<double>();
    o.val_split = j.value("val_split", 0.0);
    if (j.contains("optimizer")) return invalid_argument(fmt::format("{}: an L-BFGS run cannot be resumed", path));
  } catch (const std::exception& e) {
    return data_loss(fmt::format("{}: bad checkpoint_options {}: {}", path, it->second, e.what()));
  }
  XENT_RETURN_IF_ERROR(validate(o));
  return o;
}

static Result<TrainState> load_checkpoint_unguarded(const std::string& path, const TrainOptions& options,
                                   const std::string& data_fingerprint) {
  auto bytes = read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  auto model = parse_model(bytes->data(), bytes->size(), path);
  if (!model.ok()) return model.status();
  auto st = parse_safetensors(bytes->data(), bytes->size(), path);
  if (!st.ok()) return st.status();
  auto meta = [&](const char* k) -> const std::string* {
    auto it = st->metadata.find(k);
    return it == st->metadata.end() ? nullptr : &it->second;
  };
  const std::string* fmt_s = meta("format");
  if (!fmt_s || *fmt_s != "xent.softmax_regression.checkpoint")
    return data_loss(fmt::format("{}: not a xent checkpoint (metadata format is {})", path, fmt_s ? *fmt_s : "missing"));
  TrainState s;
  s.model = std::move(*model);
  for (const char* k : {"checkpoint_epochs_done", "checkpoint_options", "checkpoint_data", "checkpoint_history"}) {
    if (!meta(k)) return data_loss(fmt::format("{}: checkpoint metadata lacks \"{}\"", path, k));
    s.model.info.erase(k);
  }
  const std::string want_opts = options_json(options).dump();
  if (*meta("checkpoint_options") != want_opts) {
    return invalid_argument(fmt::format("{}: the checkpoint was written with options {}, this run has {}; resume with "
                                        "the same options (only --epochs and --threads may change)",
                                        path, *meta("checkpoint_options"), want_opts));
  }
  if (*meta("checkpoint_data") != data_fingerprint) {
    return invalid_argument(fmt::format("{}: the checkpoint was trained on other data ({}), this run has {}", path,
                                        *meta("checkpoint_data"), data_fingerprint));
  }
  char* end = nullptr;
  const std::string& ed = *meta("checkpoint_epochs_done");
  const long epochs = std::strtol(ed.c_str(), &end, 10);
  if (ed.empty() || *end != '\0' || epochs < 0 || epochs > 1000000)
    return data_loss(fmt::format("{}: checkpoint_epochs_done must be an integer in [0, 1e6], found \"{}\"", path, ed));
  s.epochs_done = static_cast<int>(epochs);
  json hist = json::parse(*meta("checkpoint_history"), nullptr, false);
  if (hist.is_discarded() || !hist.is_array() || hist.size() != static_cast<std::size_t>(epochs))
    return data_loss(fmt::format("{}: checkpoint_history must be a JSON array of {} epochs", path, epochs));
  for (const json& h : hist) {
    EpochMetrics e;
    if (!h.is_object()) return data_loss(fmt::format("{}: checkpoint_history entries must be objects", path));
    try {
      e.epoch = h.at("epoch").get<int>();
      e.train_loss = h.at("train_loss").is_null() ? std::nan("") : h.at("train_loss").get<double>();
      e.train_accuracy = h.at("train_accuracy").get<double>();
      e.test_accuracy = h.at("test_accuracy").is_null() ? std::nan("") : h.at("test_accuracy").get<double>();
      // Added later (older checkpoints lack them).
      auto opt = [&](const char* k) { return h.contains(k) && !h.at(k).is_null() ? h.at(k).get<double>() : std::nan(""); };
      e.val_loss = opt("val_loss"), e.val_accuracy = opt("val_accuracy"), e.test_loss = opt("test_loss");
      e.seconds = h.at("seconds").get<double>();
    } catch (const std::exception& ex) {
      return data_loss(fmt::format("{}: bad checkpoint_history entry {}: {}", path, h.dump(), ex.what()));
    }
    s.history.push_back(e);
  }
  auto take = [&](const char* name, const char* dtype, std::size_t bytes_expected, void* dst) -> Status {
    const SafetensorsEntry* e = st->find(name);
    if (!e || e->dtype != dtype || e->size != bytes_expected)
      return data_loss(fmt::format("{}: checkpoint tensor \"{}\" must be {} with {} bytes", path, name, dtype, bytes_expected));
    std::memcpy(dst, bytes->data() + e->begin, e->size);
    return ok_status();
  };
  s.velocity_w.resize(s.model.weight.size());
  s.velocity_b.resize(s.model.bias.size());
  XENT_RETURN_IF_ERROR(take("velocity_W", "F32", s.velocity_w.size() * 4, s.velocity_w.data()));
  XENT_RETURN_IF_ERROR(take("velocity_b", "F32", s.velocity_b.size() * 4, s.velocity_b.data()));
  XENT_RETURN_IF_ERROR(take("rng", "U64", 32, s.rng.data()));
  return s;
}

// ---- the public entry points: nothing they throw crosses the boundary (guarded.h) ----

Status validate(const TrainOptions& o) noexcept {
  return xent::detail::guarded("validate", [&]() -> Status {
    return validate_unguarded(o);
  });
}

Result<TrainState> init_train_state(std::int64_t height, std::int64_t width, std::int64_t classes,
                                    const TrainOptions& options) noexcept {
  return xent::detail::guarded("init_train_state", [&]() -> Result<TrainState> {
    return init_train_state_unguarded(height, width, classes, options);
  });
}

Status split_validation(const LabeledImages& data, double fraction, std::uint64_t seed, LabeledImages* train,
                        LabeledImages* val) noexcept {
  return xent::detail::guarded("split_validation", [&]() -> Status {
    return split_validation_unguarded(data, fraction, seed, train, val);
  });
}

Result<std::string> dataset_fingerprint(const LabeledImages& train, const LabeledImages& test) noexcept {
  return xent::detail::guarded("dataset_fingerprint", [&]() -> Result<std::string> {
    return Result<std::string>(dataset_fingerprint_unguarded(train, test));
  });
}

Status save_checkpoint(const std::string& path, const TrainState& s, const TrainOptions& options,
                       const std::string& data_fingerprint) noexcept {
  return xent::detail::guarded("save_checkpoint", [&]() -> Status {
    return save_checkpoint_unguarded(path, s, options, data_fingerprint);
  });
}

Result<TrainOptions> read_checkpoint_options(const std::string& path, const TrainOptions& base) noexcept {
  return xent::detail::guarded("read_checkpoint_options", [&]() -> Result<TrainOptions> {
    return read_checkpoint_options_unguarded(path, base);
  });
}

Result<TrainState> load_checkpoint(const std::string& path, const TrainOptions& options,
                                   const std::string& data_fingerprint) noexcept {
  return xent::detail::guarded("load_checkpoint", [&]() -> Result<TrainState> {
    return load_checkpoint_unguarded(path, options, data_fingerprint);
  });
}

}  // namespace xent::train
