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
// reports them); test accuracy is measured after the epoch. Matrix products go through BLAS.
//
// Determinism: the same seed and options give the same model bits, whatever the thread count
// (work is split into fixed chunks, each BLAS call runs single-threaded, sums run in a fixed
// order), and a run resumed from a checkpoint ends with the same bits as an uninterrupted one.
// Bits may differ between machines whose OpenBLAS picks other kernels (accuracy does not).
// This is not a general training framework: one linear layer, unsigned-byte inputs.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "xent/io/idx.h"
#include "xent/status.h"
#include "xent/train/model.h"

namespace xent::train {

struct TrainOptions {
  int epochs = 10;
  std::int64_t batch_size = 256;
  double lr = 0.1;
  std::uint64_t seed = 0;
  int threads = 0;  // 0: keep xent::num_threads() (all cores or $XENT_THREADS)
  double weight_decay = 0.0;
  double momentum = 0.0;
  double label_smoothing = 0.0;
  double init_std = 0.01;
};
// Checks ranges (epochs >= 1, batch_size >= 1, lr > 0, ...); the message names the option.
Status validate(const TrainOptions& options);

struct EpochMetrics {
  int epoch = 0;  // 1-based
  double train_loss = 0, train_accuracy = 0, test_accuracy = 0;
  double seconds = 0;  // wall time of the epoch (training + test evaluation)
};

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
                                    const TrainOptions& options);

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
                                TrainState& state, const TrainCallbacks& callbacks, bool* interrupted);

// logits (n x C) = (pixels / 255) W + b for n images of model.features bytes each.
Status compute_logits(const SoftmaxModel& model, const std::uint8_t* pixels, std::int64_t n, int threads,
                      float* logits);

struct Evaluation {
  std::int64_t n = 0, correct = 0;
  double accuracy = 0;
  std::vector<std::int64_t> confusion;   // C x C, row = true class, column = predicted
  std::vector<std::int32_t> predicted;   // n argmax predictions (ties: lowest class)
  std::vector<float> confidence;         // n softmax probabilities of the predicted class
};
Status evaluate_model(const SoftmaxModel& model, const io::LabeledImages& data, int threads, Evaluation* out);

// Checkpoints: a safetensors file with W, b, the momentum buffers, the RNG state and, in the
// metadata, the epoch, the options that must not change on resume, and the metrics so far.
Status save_checkpoint(const std::string& path, const TrainState& state, const TrainOptions& options,
                       const std::string& data_fingerprint);
// Loads a checkpoint and checks that `options` (except epochs and threads) and the data
// fingerprint match the ones it was written with (kInvalidArgument naming the difference).
Result<TrainState> load_checkpoint(const std::string& path, const TrainOptions& options,
                                   const std::string& data_fingerprint);
// A short string identifying a dataset (counts, shapes, CRC-32 of the labels and pixels).
std::string dataset_fingerprint(const io::LabeledImages& train, const io::LabeledImages& test);

// The pixel scaling the trainer uses: out[i] = in[i] / 255 exactly (correctly rounded float).
void scale_pixels(const std::uint8_t* in, std::size_t n, float* out) noexcept;

}  // namespace xent::train
