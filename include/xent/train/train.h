// train.h: softmax regression trained by minibatch SGD, as in d2l.ai's "softmax regression from
// scratch", with xent's fused cross-entropy as the loss.
//
// Recipe (the defaults): W (D x C) ~ N(0, 0.01^2), b = 0; pixels x / 255; each epoch the training
// set is shuffled (Fisher-Yates driven by xoshiro256** seeded from `seed`), cut into batches of
// `batch_size` (the last one smaller), and for each batch
//   Z = X W + b;  loss, dZ = cross_entropy_fused(Z, y, mean, label_smoothing)
//   gW = X^T dZ + weight_decay * W;  gb = sum_rows(dZ)          (bias is not decayed)
//   v = momentum * v + g;  p -= lr * v                         (PyTorch SGD, dampening 0)
// Train loss and accuracy are averaged over the epoch's batches before each update (as d2l
// reports them); validation and test loss and accuracy are measured after the epoch (the loss is
// the training loss function, label smoothing included). Matrix products go through BLAS.
//
// Optimizer::kLbfgs instead minimises scikit-learn's LogisticRegression(multinomial, lbfgs)
// objective over the whole training set,
//   f(W, b) = mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C N)     (b is not penalised)
// with L-BFGS and a strong-Wolfe line search from W = 0, b = 0 (src/train/lbfgs.h); one history
// entry per logged iteration.
//
// Determinism: the same seed and options give the same model bits, whatever the thread count
// (work is split into fixed chunks, each BLAS call runs single-threaded, sums run in a fixed
// order), and a run resumed from a checkpoint ends with the same bits as an uninterrupted one.
// Bits may differ between machines whose OpenBLAS picks other kernels (accuracy does not).
//
// Inputs: unsigned-byte pixels (scaled x / 255), or float32 feature rows (LabeledImages::floats)
// normalised as the model records (model.h's Normalization: none, or standardised with the
// training set's mean and std; set_normalization fits it before training).
// This is not a general training framework: one linear layer.
#pragma once

#include <array>
#include <cmath>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "xent/io/idx.h"
#include "xent/status.h"
#include "xent/train/model.h"

namespace xent::train {

using io::LabeledImages;  // the images a trainer takes (xent/io/idx.h)

enum class Optimizer { kSgd, kLbfgs };
const char* optimizer_name(Optimizer o) noexcept;  // "sgd", "lbfgs"

// L-BFGS's change of variables: none (plain L-BFGS, as scikit-learn runs it); the inputs'
// whitening (a fixed Cholesky factor of their Gram matrix); or that for the first 10 iterations,
// then a Kronecker model of the softmax's curvature at the current point, rebuilt after iterations
// 10, 30, 70, 150 and 310 (the default: on Fashion-MNIST it reaches scikit-learn's objective in
// about half the iterations of the whitening alone).
enum class Precondition { kNone, kInputs, kCurvature };
const char* precondition_name(Precondition p) noexcept;  // "none", "inputs", "curvature"

struct TrainOptions {
  Optimizer optimizer = Optimizer::kSgd;
  int epochs = 10;
  std::int64_t batch_size = 256;
  double lr = 0.1;
  std::uint64_t seed = 0;
  int threads = 0;  // 0: keep xent::num_threads() (all cores or $XENT_THREADS)
  double weight_decay = 0.0;
  double momentum = 0.0;
  double label_smoothing = 0.0;
  double init_std = 0.01;
  // Fraction of the training set held out for validation (stratified by class, seeded by `seed`;
  // see split_validation). 0: no validation set.
  double val_split = 0.0;
  // L-BFGS only: inverse L2 strength (scikit-learn's C), iteration cap, scikit-learn's tol (on the
  // max |gradient| of the summed objective), the arithmetic (false: float32, true: float64), and
  // how often an iteration is measured on the validation/test sets and recorded.
  double C = 1.0;
  int max_iter = 1000;
  double tol = 1e-4;
  bool float64 = false;
  int log_every = 10;
  // L-BFGS's change of variables (src/train/lbfgs.h, docs/training.md).
  Precondition precondition = Precondition::kCurvature;
};
// Checks ranges (epochs >= 1, batch_size >= 1, lr > 0, ...); the message names the option.
Status validate(const TrainOptions& options) noexcept;

struct EpochMetrics {
  int epoch = 0;  // 1-based (L-BFGS: the iteration)
  double train_loss = 0, train_accuracy = 0;
  double val_loss = NAN, val_accuracy = NAN;  // NaN without a validation set
  double test_loss = NAN, test_accuracy = NAN;  // NaN without test images
  double objective = NAN;  // L-BFGS: the penalised objective f(W, b); NaN for SGD
  double seconds = 0;  // wall time of the epoch (training + evaluations)
};

// Splits `data` into (train, validation): for each class, round(fraction * count) of its images,
// chosen by a Fisher-Yates shuffle of the class's indices seeded from `seed`, go to validation;
// both parts keep the original order. fraction must lie in [0, 1) and leave every class with at
// least one training image.
Status split_validation(const LabeledImages& data, double fraction, std::uint64_t seed, LabeledImages* train,
                        LabeledImages* val) noexcept;

// Everything a run needs to continue exactly where it stopped.
struct TrainState {
  SoftmaxModel model;
  std::vector<float> velocity_w, velocity_b;  // momentum buffers (zero when momentum is 0)
  std::array<std::uint64_t, 4> rng{};         // shuffle generator state after epochs_done epochs
  int epochs_done = 0;
  std::vector<EpochMetrics> history;
};

// A fresh state: W ~ N(0, init_std^2) (Box-Muller over xoshiro256**), b = 0.
Result<TrainState> init_train_state(std::int64_t height, std::int64_t width, std::int64_t classes,
                                    const TrainOptions& options) noexcept;

// One batch's per-chunk partials (fixed chunks of 128 rows, in chunk order), for data
// parallelism across processes (xent::mpi::data_parallel_train_callbacks).
struct ChunkPartials {
  std::int64_t tasks = 0;      // chunks in this batch
  std::int64_t dc = 0, c = 0;  // floats per chunk in gw (D x C), doubles per chunk in gb (C)
  float* gw = nullptr;         // tasks x D x C: X^T dZ of each chunk
  double* gb = nullptr;        // tasks x C: column sums of dZ
  float* loss = nullptr;       // tasks: summed loss
  std::int64_t* correct = nullptr;  // tasks: correct predictions
};

struct TrainCallbacks {
  // Data parallelism (both set, or neither): this process computes only chunks [first, last)
  // of each batch, which own_chunks chooses; share_chunks then fills in the other chunks'
  // partials from the processes that computed them. Every process adds all chunks in chunk
  // order, so the model is the same bits as one process computing them all.
  std::function<void(std::int64_t tasks, std::int64_t* first, std::int64_t* last)> own_chunks;
  std::function<Status(const ChunkPartials& partials)> share_chunks;
  // After every batch: samples done in this epoch out of `total`. Keep it cheap.
  std::function<void(int epoch, std::int64_t done, std::int64_t total)> on_progress;
  // After every epoch (state.epochs_done == metrics.epoch). A non-ok Status stops training.
  std::function<Status(const TrainState& state, const EpochMetrics& metrics)> on_epoch_end;
  // Checked between batches; when it becomes true training stops and *interrupted is set. The
  // state then still holds the last completed epoch.
  const std::atomic<bool>* stop = nullptr;
};

// Trains state.model from epoch state.epochs_done + 1 to options.epochs. Labels must lie in
// [0, classes); train and test images must have the model's size.
Status train_softmax_regression(const io::LabeledImages& train, const io::LabeledImages& test, const TrainOptions& options,
                                TrainState& state, const TrainCallbacks& callbacks, bool* interrupted) noexcept;
// The same with a validation set (`val` may be null).
Status train_softmax_regression(const LabeledImages& train, const LabeledImages* val, const LabeledImages& test,
                                const TrainOptions& options, TrainState& state, const TrainCallbacks& callbacks,
                                bool* interrupted) noexcept;

// logits (n x C) = (pixels / 255) W + b for n images of model.features bytes each (a model with
// Normalization::kPixels), or = normalize(features) W + b for n rows of model.features floats (any
// other normalization). The wrong kind for the model is kInvalidArgument.
Status compute_logits(const SoftmaxModel& model, const std::uint8_t* pixels, std::int64_t n, int threads,
                      float* logits) noexcept;
Status compute_logits(const SoftmaxModel& model, const float* features, std::int64_t n, int threads,
                      float* logits) noexcept;

struct Evaluation {
  std::int64_t n = 0, correct = 0;
  double accuracy = 0;
  std::vector<std::int64_t> confusion;   // C x C, row = true class, column = predicted
  std::vector<std::int32_t> predicted;   // n argmax predictions (ties: lowest class)
  std::vector<float> confidence;         // n softmax probabilities of the predicted class
};
Status evaluate_model(const SoftmaxModel& model, const io::LabeledImages& data, int threads, Evaluation* out) noexcept;

// Checkpoints: a safetensors file with W, b, the momentum buffers, the RNG state and, in the
// metadata, the epoch, the options that must not change on resume, and the metrics so far.
Status save_checkpoint(const std::string& path, const TrainState& state, const TrainOptions& options,
                       const std::string& data_fingerprint) noexcept;
// Loads a checkpoint and checks that `options` (except epochs and threads) and the data
// fingerprint match the ones it was written with (kInvalidArgument naming the difference).
Result<TrainState> load_checkpoint(const std::string& path, const TrainOptions& options,
                                   const std::string& data_fingerprint) noexcept;
// The options a checkpoint was written with (all but epochs and threads, which stay as in
// `base`), so that a resumed run need not repeat them.
Result<TrainOptions> read_checkpoint_options(const std::string& path, const TrainOptions& base) noexcept;
// A short string identifying a dataset (counts, shapes, CRC-32 of the labels and pixels).
Result<std::string> dataset_fingerprint(const io::LabeledImages& train, const io::LabeledImages& test) noexcept;

// Pixels as PyTorch's x / 255 gives them: out[i] = in[i] / 255 exactly (correctly rounded float).
// The trainer itself does not convert pixels: its products apply 1/255 to each sum
// (docs/training.md).
void scale_pixels(const std::uint8_t* in, std::size_t n, float* out) noexcept;

}  // namespace xent::train
