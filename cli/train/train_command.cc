// train_command.cc: `xent train`: softmax regression on an IDX dataset with progress output,
// per-epoch metrics, a model file, metrics JSON/CSV, pictures and report.html, checkpoints and
// resume. The training itself is in src/train/trainer.cc.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "common.h"
#include "io/atomic_file.h"
#include "mpi/train_parallel.h"
#include "train/plots.h"
#include "xent/runtime.h"
#include "xent/train/train.h"

namespace xent::cli {
const TrainParallel* g_train_parallel = nullptr;  // set by cli/mpi when built with MPI
}  // namespace xent::cli

namespace xent::cli::train {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }

struct Args {
  DataArgs data;
  TrainOptions opt;
  std::string out = "out", model, metrics_out, checkpoint, resume, class_names;
  bool no_report = false, quiet = false, no_progress = false;
  std::string command_line;
};

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  void update(int epoch, int epochs, std::int64_t done, std::int64_t total) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(80)) return;
    last_ = now;
    const int width = 30;
    const int filled = static_cast<int>(width * done / std::max<std::int64_t>(total, 1));
    std::fprintf(stderr, "\r  epoch %d/%d [%s%s] %3d%%", epoch, epochs, std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), static_cast<int>(100 * done / std::max<std::int64_t>(total, 1)));
    std::fflush(stderr);
    drawn_ = true;
  }
  void clear() {
    if (enabled_ && drawn_) std::fprintf(stderr, "\r%*s\r", 60, "");
    drawn_ = false;
  }

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// --out names a directory: refuse an existing non-directory before any work.
void check_out_dir(const std::string& out) {
  std::error_code ec;
  const auto st = std::filesystem::status(out, ec);
  if (!ec && std::filesystem::exists(st) && !std::filesystem::is_directory(st))
    throw InputError(fmt::format("--out '{}' exists and is not a directory; expected a directory for the outputs", out));
}

// A file output given by name is checked now, unless it goes inside --out (created later).
void check_file_out(const char* flag, const std::string& path, const std::string& out) {
  if (path.empty()) return;
  namespace fs = std::filesystem;
  if (fs::path(path).parent_path().lexically_normal() == fs::path(out).lexically_normal()) return;
  throw_if_error(io::check_output_path(path), flag);
}

void run(Args& a) {
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  throw_if_error(validate(a.opt));
  // Data-parallel under mpirun (cli/mpi/train_parallel.h): every rank trains on its share of each
  // batch's chunks; rank 0 alone prints and writes files.
  TrainCallbacks cb;
  int rank = 0, ranks = 1;
  const bool parallel = g_train_parallel != nullptr && g_train_parallel->begin(&rank, &ranks, &cb);
  struct MpiEnd {
    bool on;
    ~MpiEnd() {
      if (on) g_train_parallel->end();
    }
  } mpi_end{parallel};
  if (rank != 0) a.quiet = a.no_progress = true;
  if (a.opt.threads > 0) set_num_threads(a.opt.threads);
  const int threads = num_threads();
  const std::string model_path = !a.model.empty() ? a.model : (std::filesystem::path(a.out) / "model.safetensors").string();
  const std::string metrics_path = !a.metrics_out.empty() ? a.metrics_out : (std::filesystem::path(a.out) / "metrics.json").string();
  check_out_dir(a.out);
  check_file_out("--model", a.model, a.out);
  check_file_out("--metrics-out", a.metrics_out, a.out);
  check_file_out("--checkpoint", a.checkpoint, a.out);

  LoadedData d = load_data(a.data, threads, true);
  const std::int64_t C = count_classes(d.train, d.test);
  const std::string where = a.data.dir.empty() ? d.paths.train_images : a.data.dir;
  const std::vector<std::string> names = class_names_for(a.class_names, where, C);
  const std::string checkpoint_path = !a.checkpoint.empty() ? a.checkpoint : a.resume;
  const std::string fingerprint = checkpoint_path.empty() ? "" : dataset_fingerprint(d.train, d.test);

  TrainState state;
  if (!a.resume.empty()) {
    Result<TrainState> r = load_checkpoint(a.resume, a.opt, fingerprint);
    if (!r.ok()) throw InputError(r.status().message());
    state = std::move(r).value();
    if (state.epochs_done > a.opt.epochs)
      throw UsageError(fmt::format("{} already holds {} epochs, more than --epochs {}", a.resume, state.epochs_done,
                                   a.opt.epochs));
    if (state.model.classes != C || state.model.features != d.train.features())
      throw InputError(fmt::format("{}: the checkpoint has {} features and {} classes, the data {} and {}", a.resume,
                                   state.model.features, state.model.classes, d.train.features(), C));
  } else {
    Result<TrainState> r = init_train_state(d.train.height, d.train.width, C, a.opt);
    throw_if_error(r.status());
    state = std::move(r).value();
  }
  state.model.class_names = names;
  // Only now, with the data loaded and the recipe valid, so that a run refused before training
  // leaves no empty directory behind. Under mpirun only rank 0 writes.
  std::error_code ec;
  if (rank == 0) std::filesystem::create_directories(a.out, ec);
  if (ec) throw RuntimeFailure(fmt::format("--out {}: cannot create directory: {}", a.out, ec.message()));

  if (!a.quiet) {
    std::printf("xent train: softmax regression on %s\n", where.c_str());
    std::printf("  data: %lld train + %lld test images of %lld x %lld, %lld classes (loaded in %.3f s)\n",
                static_cast<long long>(d.train.n), static_cast<long long>(d.test.n), static_cast<long long>(d.train.height),
                static_cast<long long>(d.train.width), static_cast<long long>(C), d.seconds);
    std::printf("  recipe: lr %g, batch %lld, %d epochs, seed %llu, weight decay %g, momentum %g, label smoothing %g, "
                "%d thread(s)\n",
                a.opt.lr, static_cast<long long>(a.opt.batch_size), a.opt.epochs,
                static_cast<unsigned long long>(a.opt.seed), a.opt.weight_decay, a.opt.momentum, a.opt.label_smoothing,
                threads);
    if (parallel) std::printf("  data parallel: %d ranks (mpirun), each computing its share of every batch\n", ranks);
    if (!a.resume.empty()) std::printf("  resumed from %s after epoch %d\n", a.resume.c_str(), state.epochs_done);
    std::printf("  %5s  %10s  %9s  %8s  %8s\n", "epoch", "train loss", "train acc", "test acc", "time");
    for (const auto& h : state.history)
      std::printf("  %5d  %10.4f  %9.4f  %8.4f  %6.3f s  (from checkpoint)\n", h.epoch, h.train_loss, h.train_accuracy,
                  h.test_accuracy, h.seconds);
    std::fflush(stdout);
  }

  ProgressBar bar(!a.quiet && !a.no_progress && stderr_is_terminal());
  cb.stop = parallel ? nullptr : &g_stop;  // under mpirun a signal ends every rank (outputs are atomic)
  cb.on_progress = [&](int epoch, std::int64_t done, std::int64_t total) { bar.update(epoch, a.opt.epochs, done, total); };
  cb.on_epoch_end = [&](const TrainState& s, const EpochMetrics& m) -> Status {
    bar.clear();
    if (!a.quiet) {
      std::printf("  %5d  %10.4f  %9.4f  %8.4f  %6.3f s\n", m.epoch, m.train_loss, m.train_accuracy, m.test_accuracy,
                  m.seconds);
      std::fflush(stdout);
    }
    if (!checkpoint_path.empty() && rank == 0) return save_checkpoint(checkpoint_path, s, a.opt, fingerprint);
    return Status::Ok();
  };

  g_stop.store(false);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C kills at once
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  bool interrupted = false;
  const auto t_train = clock::now();
  Status s = train_softmax_regression(d.train, d.test, a.opt, state, cb, &interrupted);
  const double train_seconds = std::chrono::duration<double>(clock::now() - t_train).count();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  bar.clear();
  throw_if_error(s, "training");
  if (interrupted) {
    std::fprintf(stderr, "xent train: interrupted after epoch %d of %d. %s\n", state.epochs_done, a.opt.epochs,
                 checkpoint_path.empty()
                     ? "Nothing was saved (pass --checkpoint FILE to be able to resume)."
                     : fmt::format("Resume with: xent train ... --resume {}", checkpoint_path).c_str());
    set_exit_code(130);
    return;
  }

  if (rank != 0) return;  // rank 0 writes the model, metrics and pictures
  throw_if_error(save_model(model_path, state.model));
  const double total_train_loop = train_seconds;
  nlohmann::json extra = {{"data", where},
                          {"classes", names},
                          {"threads", threads},
                          {"load_seconds", d.seconds},
                          {"train_seconds", total_train_loop},
                          {"recipe",
                           {{"epochs", a.opt.epochs}, {"batch_size", a.opt.batch_size}, {"lr", a.opt.lr},
                            {"seed", a.opt.seed}, {"weight_decay", a.opt.weight_decay}, {"momentum", a.opt.momentum},
                            {"label_smoothing", a.opt.label_smoothing}}}};
  const std::string mjson = xent::train::metrics_json(state.history, extra.dump());
  throw_if_error(io::write_file_atomic(metrics_path, mjson));
  std::filesystem::path csv = metrics_path;
  csv.replace_extension(".csv");
  throw_if_error(io::write_file_atomic(csv.string(), xent::train::metrics_csv(state.history)));

  std::vector<std::string> written = {model_path, metrics_path, csv.string()};
  if (!a.no_report) {
    Evaluation ev;
    throw_if_error(evaluate_model(state.model, d.test, threads, &ev), "evaluation");
    xent::train::ReportInputs in;
    in.model = &state.model;
    in.history = &state.history;
    in.test_eval = &ev;
    in.test = &d.test;
    in.title = where;
    in.command = a.command_line;
    in.load_seconds = d.seconds;
    in.train_seconds = train_seconds;
    in.total_seconds = std::chrono::duration<double>(clock::now() - t_start).count();
    in.threads = threads;
    throw_if_error(xent::train::write_report(a.out, in, &written));
  }
  const double total = std::chrono::duration<double>(clock::now() - t_start).count();
  if (!a.quiet) {
    const auto& last = state.history.back();
    std::printf("done: test accuracy %.4f after %d epochs; loading %.3f s, training %.3f s, total %.3f s\n",
                last.test_accuracy, last.epoch, d.seconds, train_seconds, total);
    std::printf("wrote %s\n", fmt::format("{}", fmt::join(written, ", ")).c_str());
  }
}

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand("train", "Train a softmax-regression classifier on an IDX image dataset (d2l's recipe)");
  add_data_options(app, &a->data, true);
  app->add_option("--epochs", a->opt.epochs, "Passes over the training set (default 10)")->type_name("N");
  app->add_option("--batch-size", a->opt.batch_size, "Minibatch size (default 256; the last batch is smaller)")->type_name("B");
  app->add_option("--lr", a->opt.lr, "SGD learning rate (default 0.1)")->type_name("LR");
  app->add_option("--seed", a->opt.seed, "Seed for the initial weights and the shuffles (default 0)")->type_name("S");
  app->add_option("--threads", a->opt.threads,
                  "Worker threads (default: all cores or $XENT_THREADS); the model is bit-identical for every count")
      ->type_name("N");
  app->add_option("--weight-decay", a->opt.weight_decay, "L2 penalty on W added to its gradient (default 0)")->type_name("WD");
  app->add_option("--momentum", a->opt.momentum, "SGD momentum as in torch.optim.SGD (default 0)")->type_name("M");
  app->add_option("--label-smoothing", a->opt.label_smoothing, "Cross-entropy label smoothing in [0, 1] (default 0)")->type_name("E");
  app->add_option("--out", a->out, "Directory for the model, metrics, pictures and report.html (default out)")->type_name("DIR");
  app->add_option("--model", a->model, "Model file to write (default OUT/model.safetensors)")->type_name("FILE");
  app->add_option("--metrics-out", a->metrics_out, "Per-epoch metrics as JSON, plus the same name with .csv (default OUT/metrics.json)")
      ->type_name("FILE.json");
  app->add_option("--checkpoint", a->checkpoint, "Write a checkpoint after every epoch (atomically)")->type_name("FILE");
  app->add_option("--resume", a->resume, "Continue from a checkpoint (same options; --epochs may grow)")->type_name("FILE");
  app->add_option("--class-names", a->class_names, "Comma-separated class names (default: Fashion-MNIST's names when the "
                  "path mentions fashion, else 0, 1, ...)")->type_name("A,B,...");
  app->add_flag("--no-report", a->no_report, "Skip the pictures and report.html");
  app->add_flag("--no-progress", a->no_progress, "No progress bar (it is shown only on a terminal anyway)");
  app->add_flag("--quiet,-q", a->quiet, "Print nothing but errors");
  app->footer(
      "\nExamples:\n"
      "  xent train --data data/fashion-mnist                      # d2l defaults, outputs in out/\n"
      "  xent train --data data/fashion-mnist --epochs 20 --momentum 0.9 --lr 0.05 --out runs/m09\n"
      "  xent train --data data/fashion-mnist --checkpoint ck.safetensors   # Ctrl-C, then:\n"
      "  xent train --data data/fashion-mnist --resume ck.safetensors\n");
  app->callback([a, app] {
    a->command_line = "xent train";
    for (const auto* o : app->get_options())
      if (o->count() > 0 && o->get_name() != "--help")
        for (const auto& r : o->results()) a->command_line += " " + o->get_name() + (o->get_expected_max() > 0 ? " " + r : "");
    run(*a);
  });
}

}  // namespace

XENT_REGISTER_COMMAND(60, setup);

}  // namespace xent::cli::train
