// plots.h (internal): the training pictures, drawn with cairo and returned as PNG bytes, and the
// report (metrics JSON/CSV, report.html) that shows them. Not a plotting library: four fixed
// figures (curves, confusion matrix, predictions grid, weight templates) and the BCE curve of
// `xent explain bce` (PNG or SVG).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "xent/io/idx.h"
#include "xent/train/model.h"
#include "xent/status.h"
#include "xent/train/train.h"

namespace xent::train {

// Loss (left panel) and accuracy (right panel) per epoch: train, validation (when measured) and test.
Result<std::string> render_curves_png(const std::vector<EpochMetrics>& history);
// C x C counts (row = true class), shaded by the row's fraction.
Result<std::string> render_confusion_png(const std::vector<std::int64_t>& confusion, const std::vector<std::string>& names);
// Up to `count` test images with true and predicted labels, mistakes first (as d2l's
// predict_ch3). Needs 2-D images (height > 1).
Result<std::string> render_predictions_png(const io::LabeledImages& data, const Evaluation& eval,
                                           const std::vector<std::string>& names, int count);
// W[:, c] as an image per class (red positive, blue negative, each class scaled by its max |w|).
Result<std::string> render_weights_png(const SoftmaxModel& model);

// One grayscale image (h x w bytes, 0 black), each pixel drawn as a scale x scale square. For
// `xent predict --png`.
Result<std::string> render_image_png(const std::uint8_t* pixels, std::int64_t h, std::int64_t w, int scale);

// A PNG file (`xent predict --images FILE.png`) as grayscale bytes: cairo decodes it (with
// libpng); colour becomes luminance 0.299 R + 0.587 G + 0.114 B, transparency is composited over
// black (MNIST's background). The header's size is checked before decoding: at most 4096 x 4096.
// Bad or truncated files are kDataLoss naming the file.
struct GrayImage {
  std::int64_t height = 0, width = 0;
  std::vector<std::uint8_t> pixels;  // height x width, row-major
};
Result<GrayImage> read_png_gray(const std::string& path);

enum class ImageFormat { kPng, kSvg };
// Binary cross-entropy against the predicted probability p, for target 1 (-log p) and target 0
// (-log(1 - p)), with the seed's eleven points, and a second panel on a log10(p) axis where
// PyTorch's clamp of the log at -100 (loss at most 100, from p = e^-100) is marked. For
// `xent explain bce`.
Result<std::string> render_bce_curve(ImageFormat format);

// Several runs overlaid (`xent compare`): per run, its loss (test, else train) on the left and its
// test accuracy on the right, one colour per run; x: each run's recorded epochs.
struct RunCurves {
  std::string name;
  std::vector<EpochMetrics> history;
};
Result<std::string> render_compare_png(const std::vector<RunCurves>& runs);

// Metrics as JSON (an object with "epochs": [...] and a summary) and as CSV.
std::string metrics_json(const std::vector<EpochMetrics>& history, const std::string& extra_json_object);
std::string metrics_csv(const std::vector<EpochMetrics>& history);

struct ReportInputs {
  const SoftmaxModel* model = nullptr;
  const std::vector<EpochMetrics>* history = nullptr;
  const Evaluation* test_eval = nullptr;
  const io::LabeledImages* test = nullptr;
  std::string title;       // e.g. the data directory
  std::string command;     // the command line that produced it
  double load_seconds = 0, train_seconds = 0, total_seconds = 0;
  int threads = 1;
  std::vector<std::pair<std::string, std::string>> hyperparameters;  // shown as a table
  bool running = false;  // the run goes on: the page reloads itself every few seconds
};
// Writes curves.png, confusion.png, predictions.png, weights.png (the last two for 2-D images)
// and report.html into `dir` (created if missing), each atomically. `written` gets the paths.
// Without test_eval (while running) only curves.png and the page are rewritten.
Status write_report(const std::string& dir, const ReportInputs& in, std::vector<std::string>* written);

}  // namespace xent::train
