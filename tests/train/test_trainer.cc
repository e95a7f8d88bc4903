// test_trainer.cc: the softmax-regression trainer. Oracles: a double-precision re-implementation
// of the SGD recipe written here (full-batch steps, where shuffling cannot matter), plain division
// for the pixel scaling, learning on a synthetic dataset, bit equality between runs (seed, thread
// count, checkpoint/resume), and Fashion-MNIST accuracy when the shared data are present.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "train_test_util.h"
#include "xent/train/train.h"

namespace xent {
namespace {

using namespace ::xent::io;
using namespace ::xent::train;

TEST(Pixels, ScalingIsExactlyDivisionBy255) {
  std::vector<std::uint8_t> v(256 + 37);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>(i * 7);
  std::vector<float> out(v.size());
  scale_pixels(v.data(), v.size(), out.data());
  for (std::size_t i = 0; i < v.size(); ++i) {
    volatile float x = static_cast<float>(v[i]);
    EXPECT_EQ(out[i], x / 255.0f) << "byte " << int(v[i]);
  }
}

// The recipe in double for full batches (batch_size == N).
struct Reference {
  std::vector<double> W, b, vW, vb;
  std::vector<double> losses, accs;
};
Reference reference_sgd(const LabeledImages& d, const SoftmaxModel& init, const TrainOptions& o) {
  const std::int64_t N = d.n, D = d.features(), C = init.classes;
  Reference r;
  r.W.assign(init.weight.begin(), init.weight.end());
  r.b.assign(init.bias.begin(), init.bias.end());
  r.vW.assign(r.W.size(), 0);
  r.vb.assign(r.b.size(), 0);
  const double eps = o.label_smoothing;
  for (int e = 0; e < o.epochs; ++e) {
    std::vector<double> gW(r.W.size(), 0), gb(r.b.size(), 0);
    double loss = 0;
    int correct = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      std::vector<double> z(static_cast<std::size_t>(C));
      for (std::int64_t c = 0; c < C; ++c) {
        double s = r.b[static_cast<std::size_t>(c)];
        for (std::int64_t k = 0; k < D; ++k) s += d.pixels.data()[n * D + k] / 255.0 * r.W[static_cast<std::size_t>(k * C + c)];
        z[static_cast<std::size_t>(c)] = s;
      }
      const auto y = d.labels[static_cast<std::size_t>(n)];
      std::size_t best = 0;
      for (std::size_t c = 1; c < z.size(); ++c)
        if (z[c] > z[best]) best = c;
      correct += static_cast<int>(best) == y;
      double mx = *std::max_element(z.begin(), z.end()), se = 0;
      for (double v : z) se += std::exp(v - mx);
      const double lse = mx + std::log(se);
      for (std::int64_t c = 0; c < C; ++c) {
        const double q = (1 - eps) * (c == y) + eps / static_cast<double>(C);
        loss += -q * (z[static_cast<std::size_t>(c)] - lse);
        const double dz = (std::exp(z[static_cast<std::size_t>(c)] - lse) - q) / static_cast<double>(N);
        gb[static_cast<std::size_t>(c)] += dz;
        for (std::int64_t k = 0; k < D; ++k) gW[static_cast<std::size_t>(k * C + c)] += d.pixels.data()[n * D + k] / 255.0 * dz;
      }
    }
    r.losses.push_back(loss / static_cast<double>(N));
    r.accs.push_back(static_cast<double>(correct) / static_cast<double>(N));
    for (std::size_t i = 0; i < r.W.size(); ++i) {
      const double g = gW[i] + o.weight_decay * r.W[i];
      r.vW[i] = o.momentum * r.vW[i] + g;
      r.W[i] -= o.lr * r.vW[i];
    }
    for (std::size_t i = 0; i < r.b.size(); ++i) {
      r.vb[i] = o.momentum * r.vb[i] + gb[i];
      r.b[i] -= o.lr * r.vb[i];
    }
  }
  return r;
}

TEST(Trainer, FullBatchStepsMatchADoubleReference) {
  const int h = 3, w = 4, C = 3;
  // 50 rows: one chunk of the batch; 300 rows: three chunks (128, 128, 44) whose partial
  // gradients are added.
  for (const auto& [N, mu, wd, ls] : {std::tuple{50, 0.0, 0.0, 0.0}, std::tuple{50, 0.9, 0.01, 0.1},
                                      std::tuple{300, 0.0, 0.0, 0.0}, std::tuple{300, 0.9, 0.01, 0.1}}) {
    auto s = test::make_synthetic(N, h, w, C, 7);
    LabeledImages train = test::to_labeled(s, h, w), test_set = test::to_labeled(s, h, w);
    TrainOptions o;
    o.epochs = 3, o.batch_size = N, o.lr = 0.5, o.seed = 3, o.momentum = mu, o.weight_decay = wd, o.label_smoothing = ls;
    o.init_std = 0.1;
    auto st = init_train_state(h, w, C, o);
    ASSERT_TRUE(st.ok()) << st.status().message();
    const Reference ref = reference_sgd(train, st->model, o);
    bool interrupted = true;
    ASSERT_TRUE(train_softmax_regression(train, test_set, o, *st, {}, &interrupted).ok());
    EXPECT_FALSE(interrupted);
    ASSERT_EQ(st->history.size(), 3u);
    for (std::size_t i = 0; i < ref.W.size(); ++i) EXPECT_NEAR(st->model.weight[i], ref.W[i], 2e-5 + 1e-5 * std::fabs(ref.W[i])) << i;
    for (std::size_t i = 0; i < ref.b.size(); ++i) EXPECT_NEAR(st->model.bias[i], ref.b[i], 2e-5 + 1e-5 * std::fabs(ref.b[i])) << i;
    for (int e = 0; e < 3; ++e) {
      EXPECT_NEAR(st->history[static_cast<std::size_t>(e)].train_loss, ref.losses[static_cast<std::size_t>(e)], 1e-5) << e;
      EXPECT_DOUBLE_EQ(st->history[static_cast<std::size_t>(e)].train_accuracy, ref.accs[static_cast<std::size_t>(e)]) << e;
    }
  }
}

struct TrainedRun {
  TrainState state;
  std::string bytes;
};
TrainedRun train_synthetic(TrainOptions o, int n = 600) {
  auto tr = test::make_synthetic(n, 8, 8, 4, 11), te = test::make_synthetic(200, 8, 8, 4, 12);
  LabeledImages train = test::to_labeled(tr, 8, 8), test_set = test::to_labeled(te, 8, 8);
  auto st = init_train_state(8, 8, 4, o);
  EXPECT_TRUE(st.ok());
  bool interrupted = false;
  EXPECT_TRUE(train_softmax_regression(train, test_set, o, *st, {}, &interrupted).ok());
  std::string bytes = serialize_model(st->model).value();
  return {std::move(*st), std::move(bytes)};
}

TEST(Trainer, LossFallsAndAccuracyRises) {
  TrainOptions o;
  o.epochs = 6, o.batch_size = 32, o.lr = 0.1;
  TrainedRun r = train_synthetic(o);
  const auto& h = r.state.history;
  ASSERT_EQ(h.size(), 6u);
  EXPECT_LT(h.back().train_loss, 0.8 * h.front().train_loss);
  EXPECT_GT(h.back().train_accuracy, h.front().train_accuracy);
  EXPECT_GT(h.back().test_accuracy, 0.9);
  for (std::size_t e = 1; e < h.size(); ++e) EXPECT_LT(h[e].train_loss, h[e - 1].train_loss) << "epoch " << e + 1;
}

TEST(Trainer, SameSeedSameBitsForAnyThreadCount) {
  TrainOptions o;
  // Batches of 300 are split into chunks of rows that run in parallel (the last batch of 100 is
  // one chunk); repeated runs catch races between chunks.
  o.epochs = 3, o.batch_size = 300, o.momentum = 0.5, o.seed = 5;
  o.threads = 1;
  const std::string one = train_synthetic(o, 1000).bytes;
  EXPECT_EQ(train_synthetic(o, 1000).bytes, one);
  for (int t : {2, 2, 2, 3, 7}) {
    o.threads = t;
    EXPECT_EQ(train_synthetic(o, 1000).bytes, one) << t << " threads";
  }
  o.seed = 6;
  EXPECT_NE(train_synthetic(o, 1000).bytes, one);
}

TEST(Trainer, CheckpointResumeGivesTheSameBits) {
  test::TempDir dir;
  auto tr = test::make_synthetic(500, 8, 8, 4, 21), te = test::make_synthetic(100, 8, 8, 4, 22);
  LabeledImages train = test::to_labeled(tr, 8, 8), test_set = test::to_labeled(te, 8, 8);
  const std::string fp = dataset_fingerprint(train, test_set).value();
  TrainOptions o;
  o.epochs = 4, o.batch_size = 64, o.momentum = 0.9, o.lr = 0.05, o.weight_decay = 1e-3, o.seed = 9;

  auto full = init_train_state(8, 8, 4, o);
  ASSERT_TRUE(full.ok());
  ASSERT_TRUE(train_softmax_regression(train, test_set, o, *full, {}, nullptr).ok());

  // Interrupt in the middle of epoch 3 (checkpoints written after each epoch).
  const std::string ck = dir / "ck.safetensors";
  std::atomic<bool> stop{false};
  TrainCallbacks cb;
  cb.stop = &stop;
  cb.on_progress = [&](int epoch, std::int64_t done, std::int64_t) {
    if (epoch == 3 && done >= 192) stop = true;
  };
  cb.on_epoch_end = [&](const TrainState& s, const EpochMetrics&) { return save_checkpoint(ck, s, o, fp); };
  auto part = init_train_state(8, 8, 4, o);
  ASSERT_TRUE(part.ok());
  bool interrupted = false;
  ASSERT_TRUE(train_softmax_regression(train, test_set, o, *part, cb, &interrupted).ok());
  EXPECT_TRUE(interrupted);
  EXPECT_EQ(part->epochs_done, 2);

  auto resumed = load_checkpoint(ck, o, fp);
  ASSERT_TRUE(resumed.ok()) << resumed.status().message();
  EXPECT_EQ(resumed->epochs_done, 2);
  EXPECT_EQ(resumed->model.weight, part->model.weight);  // the interrupted state rolled back to epoch 2
  ASSERT_EQ(resumed->history.size(), 2u);
  ASSERT_TRUE(train_softmax_regression(train, test_set, o, *resumed, {}, nullptr).ok());
  EXPECT_EQ(resumed->model.weight, full->model.weight);
  EXPECT_EQ(resumed->model.bias, full->model.bias);
  EXPECT_EQ(serialize_model(resumed->model).value(), serialize_model(full->model).value());

  // A checkpoint refuses other options or other data.
  TrainOptions other = o;
  other.lr = 0.06;
  auto bad = load_checkpoint(ck, other, fp);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("options"), std::string::npos) << bad.status().message();
  other = o;
  other.epochs = 9, other.threads = 3;  // these may change
  EXPECT_TRUE(load_checkpoint(ck, other, fp).ok());
  auto bad_data = load_checkpoint(ck, o, fp + "x");
  ASSERT_FALSE(bad_data.ok());
  EXPECT_NE(bad_data.status().message().find("other data"), std::string::npos);
}

TEST(Trainer, EvaluateAgreesWithTrainingsTestAccuracy) {
  TrainOptions o;
  o.epochs = 2, o.batch_size = 50;
  TrainedRun r = train_synthetic(o);
  auto te = test::make_synthetic(200, 8, 8, 4, 12);
  LabeledImages test_set = test::to_labeled(te, 8, 8);
  Evaluation ev;
  ASSERT_TRUE(evaluate_model(r.state.model, test_set, 2, &ev).ok());
  EXPECT_DOUBLE_EQ(ev.accuracy, r.state.history.back().test_accuracy);
  std::int64_t total = 0, diag = 0;
  for (std::int64_t t = 0; t < 4; ++t)
    for (std::int64_t p = 0; p < 4; ++p) total += ev.confusion[static_cast<std::size_t>(t * 4 + p)], diag += t == p ? ev.confusion[static_cast<std::size_t>(t * 5)] : 0;
  EXPECT_EQ(total, 200);
  EXPECT_EQ(diag, ev.correct);
  for (float c : ev.confidence) EXPECT_TRUE(c >= 0.25f && c <= 1.0f);
}

TEST(Trainer, RejectsBadOptionsAndLabels) {
  TrainOptions o;
  o.lr = -1;
  EXPECT_FALSE(validate(o).ok());
  o = {};
  o.label_smoothing = 1.5;
  EXPECT_FALSE(validate(o).ok());
  o = {};
  auto s = test::make_synthetic(20, 2, 2, 5, 1);
  LabeledImages d = test::to_labeled(s, 2, 2);
  auto st = init_train_state(2, 2, 3, o);  // labels go up to 4
  ASSERT_TRUE(st.ok());
  Status r = train_softmax_regression(d, d, o, *st, {}, nullptr);
  EXPECT_EQ(r.code(), StatusCode::kOutOfRange);
  EXPECT_NE(r.message().find("outside [0, 3)"), std::string::npos) << r.message();
}

TEST(FashionMnist, DefaultRecipeReaches084) {
  const std::string dir = XENT_SHARED_FASHION_MNIST;
  auto paths = find_idx_dataset(dir);
  if (!paths.ok()) GTEST_SKIP() << "Fashion-MNIST not found at " << dir << " (" << paths.status().message() << ")";
  auto train = load_labeled_images(paths->train_images, paths->train_labels);
  auto test_set = load_labeled_images(paths->test_images, paths->test_labels);
  ASSERT_TRUE(train.ok()) << train.status().message();
  ASSERT_TRUE(test_set.ok()) << test_set.status().message();
  TrainOptions o;  // d2l's defaults
  o.threads = 2;
  auto st = init_train_state(28, 28, 10, o);
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(train_softmax_regression(*train, *test_set, o, *st, {}, nullptr).ok());
  const auto& last = st->history.back();
  EXPECT_EQ(last.epoch, 10);
  EXPECT_GE(last.test_accuracy, 0.84);
  EXPECT_LT(last.train_loss, 0.5);
  std::printf("Fashion-MNIST, d2l recipe, seed 0: test accuracy %.4f, train loss %.4f\n", last.test_accuracy, last.train_loss);
}

}  // namespace
}  // namespace xent
