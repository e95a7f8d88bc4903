// train_command.cc: `xent train`: softmax regression on an IDX dataset or feature files (.npy, CSV)
// with progress output,
// per-epoch metrics, a model file, metrics JSON/CSV, pictures and report.html, checkpoints and
// resume. The training itself is in src/train/trainer.cc.
#include <algorithm>
#include <cmath>
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
  std::string optimizer = "sgd", dtype = "float32", precondition = "curvature";
  bool no_precondition = false;
  std::string normalize;  // --normalize: "none" or "standardize" (float features; default standardize)
  std::vector<std::string> given;  // the options on the command line, e.g. "--lr"
};

// --resume FILE: the run's options come from the checkpoint. Only --epochs, --threads and the
// output and display options may be given again; any other option must repeat the stored value.
void adopt_checkpoint_options(Args& a) {
  Result<TrainOptions> r = read_checkpoint_options(a.resume, a.opt);
  if (!r.ok()) throw InputError(r.status().message());
  const TrainOptions& ck = *r;
  struct Field {
    const char* flag;
    std::string given, stored;
  };
  auto g = [](double v) { return fmt::format("{}", v); };
  const Field fields[] = {{"--batch-size", std::to_string(a.opt.batch_size), std::to_string(ck.batch_size)},
                          {"--lr", g(a.opt.lr), g(ck.lr)},
                          {"--seed", std::to_string(a.opt.seed), std::to_string(ck.seed)},
                          {"--weight-decay", g(a.opt.weight_decay), g(ck.weight_decay)},
                          {"--momentum", g(a.opt.momentum), g(ck.momentum)},
                          {"--label-smoothing", g(a.opt.label_smoothing), g(ck.label_smoothing)},
                          {"--val-split", g(a.opt.val_split), g(ck.val_split)}};
  for (const Field& f : fields) {
    const bool given = std::find(a.given.begin(), a.given.end(), f.flag) != a.given.end();
    if (given && f.given != f.stored)
      throw UsageError(fmt::format("{} {} conflicts with the checkpoint {}, which was written with {} {} (leave the "
                                   "option out to keep it; only --epochs, --threads and output options may change)",
                                   f.flag, f.given, a.resume, f.flag, f.stored));
  }
  if (a.optimizer != "sgd") throw UsageError("--resume continues an SGD run; --optimizer lbfgs runs are not resumable");
  a.opt = ck;
}

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

// Where the outputs go.
struct OutputPaths {
  std::string model, metrics, csv;
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

// Names the outputs and refuses unusable ones before any work; creates nothing (create_out_dir
// does, once the data has loaded).
OutputPaths prepare_outputs(const Args& a) {
  OutputPaths p;
  p.model = !a.model.empty() ? a.model : (std::filesystem::path(a.out) / "model.safetensors").string();
  p.metrics = !a.metrics_out.empty() ? a.metrics_out : (std::filesystem::path(a.out) / "metrics.json").string();
  std::filesystem::path csv = p.metrics;
  csv.replace_extension(".csv");
  p.csv = csv.string();
  check_out_dir(a.out);
  check_file_out("--model", a.model, a.out);
  check_file_out("--metrics-out", a.metrics_out, a.out);
  check_file_out("--checkpoint", a.checkpoint, a.out);
  return p;
}

// Only once the data has loaded and the recipe is valid, so that a run refused before training
// leaves no empty directory behind.
void create_out_dir(const Args& a) {
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  if (ec) throw RuntimeFailure(fmt::format("--out {}: cannot create directory: {}", a.out, ec.message()));
}

// A short name for the data (the report's title): the directory's or file's last component.
std::string data_title(const std::string& where) {
  std::filesystem::path p = std::filesystem::path(where).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  const std::string name = p.filename().string();
  return name.empty() || name == "." ? where : name;
}

// Everything a run holds between its steps.
struct Session {
  explicit Session(Args& args) : a(args) {}
  Args& a;
  OutputPaths paths;
  LoadedData d;
  LabeledImages train, val;  // train: d.train minus the validation split (or all of it)
  bool has_val = false;
  std::string where, checkpoint_path, fingerprint;
  std::vector<std::string> names;
  std::vector<std::string> label_classes;  // CSV labels given as names: the classes they map to
  TrainState state;
  int threads = 1;
  // Data-parallel under mpirun (cli/mpi/train_parallel.h): every rank trains on its share of each
  // batch's chunks; rank 0 alone prints and writes files.
  bool parallel = false;
  int rank = 0, ranks = 1;
  TrainCallbacks cb;  // own_chunks/share_chunks when parallel
  std::chrono::steady_clock::time_point t_start;
  double train_seconds = 0;
};

void load_and_split(Session& s) {
  Args& a = s.a;
  s.d = load_data(a.data, s.threads, true);
  s.label_classes = classes_from_label_names(&s.d, a.class_names);
  s.where = a.data.dir.empty() ? s.d.paths.train_images : a.data.dir;
  if (!a.normalize.empty() && !s.d.train.floats)
    throw UsageError(fmt::format("--normalize is for float features; the images of {} are always scaled x / 255", s.where));
  if (a.opt.val_split > 0) {
    Status st = split_validation(s.d.train, a.opt.val_split, a.opt.seed, &s.train, &s.val);
    if (!st.ok()) throw UsageError(st.message());
    s.has_val = true;
  } else {
    s.train = std::move(s.d.train);
  }
}

void init_state(Session& s) {
  Args& a = s.a;
  s.names = !s.label_classes.empty() ? s.label_classes
                                     : class_names_for(a.class_names, s.where, count_classes(s.train, s.d.test));
  const auto C = static_cast<std::int64_t>(s.names.size());  // the class count: the labels', or the names'
  s.checkpoint_path = !a.checkpoint.empty() ? a.checkpoint : a.resume;
  if (a.opt.optimizer == Optimizer::kLbfgs && !s.checkpoint_path.empty())
    throw UsageError("--checkpoint and --resume are for --optimizer sgd (an L-BFGS run is not resumable)");
  s.fingerprint = s.checkpoint_path.empty() ? "" : value_or_throw(dataset_fingerprint(s.train, s.d.test));
  if (!a.resume.empty()) {
    Result<TrainState> r = load_checkpoint(a.resume, a.opt, s.fingerprint);
    if (!r.ok()) throw InputError(r.status().message());
    s.state = std::move(r).value();
    if (s.state.epochs_done > a.opt.epochs)
      throw UsageError(fmt::format("{} already holds {} epochs, more than --epochs {}", a.resume, s.state.epochs_done,
                                   a.opt.epochs));
    if (s.state.model.classes != C || s.state.model.features != s.train.features())
      throw InputError(fmt::format("{}: the checkpoint has {} features and {} classes, the data {} and {}", a.resume,
                                   s.state.model.features, s.state.model.classes, s.train.features(), C));
    if (!a.normalize.empty() && a.normalize != normalization_name(s.state.model.normalization))
      throw UsageError(fmt::format("--normalize {} conflicts with the checkpoint {}, which was written with --normalize {}",
                                   a.normalize, a.resume, normalization_name(s.state.model.normalization)));
  } else {
    Result<TrainState> r = init_train_state(s.train.height, s.train.width, C, a.opt);
    throw_if_error(r.status());
    s.state = std::move(r).value();
    // Float features: none, or standardised with the training split's mean and std (the
    // validation rows are not looked at); recorded in the model for evaluate and predict.
    if (s.train.floats)
      throw_if_error(set_normalization(&s.state.model,
                                       a.normalize == "none" ? Normalization::kNone : Normalization::kStandardize,
                                       s.train.values.data(), s.train.n));
  }
  s.state.model.class_names = s.names;
}

std::string fmt_metric(double v, const char* spec) {
  return std::isfinite(v) ? fmt::format(fmt::runtime(spec), v) : std::string("-");
}

void print_epoch_line(const EpochMetrics& h, bool has_val, const char* note) {
  std::string line = fmt::format("  {:5d}  {:>10}  {:>9}", h.epoch, fmt_metric(h.train_loss, "{:.4f}"),
                                 fmt_metric(h.train_accuracy, "{:.4f}"));
  if (has_val) line += fmt::format("  {:>8}  {:>7}", fmt_metric(h.val_loss, "{:.4f}"), fmt_metric(h.val_accuracy, "{:.4f}"));
  line += fmt::format("  {:>9}  {:>8}  {:6.3f} s{}\n", fmt_metric(h.test_loss, "{:.4f}"),
                      fmt_metric(h.test_accuracy, "{:.4f}"), h.seconds, note);
  std::fputs(line.c_str(), stdout);
}

// How the gzip'd IDX files were read, for the header: "" (no gzip'd file, or --no-cache).
std::string cache_summary(const LoadedData& d) {
  int hits = 0, misses = 0;
  for (const auto& [role, use] : d.cache) hits += use == "hit", misses += use == "miss";
  if (hits > 0 && misses == 0) return "; decoded copies from the cache";
  if (hits > 0) return fmt::format("; {} of {} gzip'd files from the cache", hits, hits + misses);
  if (misses > 0 && d.cache_note.empty()) return fmt::format("; decoded copies cached in {}", d.cache_dir);
  return "";
}

void print_header(const Session& s) {
  const Args& a = s.a;
  const std::int64_t C = s.state.model.classes;
  std::printf("xent train: softmax regression on %s\n", s.where.c_str());
  if (s.train.floats) {
    std::printf("  data: %lld train%s + %lld test rows of %lld float features, %lld classes (loaded in %.3f s); "
                "normalization: %s\n",
                static_cast<long long>(s.train.n), s.has_val ? fmt::format(" + {} validation", s.val.n).c_str() : "",
                static_cast<long long>(s.d.test.n), static_cast<long long>(s.train.features()), static_cast<long long>(C),
                s.d.seconds,
                s.state.model.normalization == Normalization::kStandardize ? "standardize (training rows' mean and std)"
                                                                           : "none");
  } else {
    std::printf("  data: %lld train%s + %lld test images of %lld x %lld, %lld classes (loaded in %.3f s%s)\n",
                static_cast<long long>(s.train.n),
                s.has_val ? fmt::format(" + {} validation", s.val.n).c_str() : "", static_cast<long long>(s.d.test.n),
                static_cast<long long>(s.train.height), static_cast<long long>(s.train.width), static_cast<long long>(C),
                s.d.seconds, cache_summary(s.d).c_str());
  }
  if (a.opt.optimizer == Optimizer::kLbfgs) {
    std::printf("  recipe: L-BFGS (full batch), C %g, max %d iterations, tol %g, %s, precondition %s, %d thread(s)\n",
                a.opt.C, a.opt.max_iter, a.opt.tol, a.opt.float64 ? "float64" : "float32",
                precondition_name(a.opt.precondition), s.threads);
  } else {
    std::printf("  recipe: lr %g, batch %lld, %d epochs, seed %llu, weight decay %g, momentum %g, label smoothing %g, "
                "%d thread(s)\n",
                a.opt.lr, static_cast<long long>(a.opt.batch_size), a.opt.epochs,
                static_cast<unsigned long long>(a.opt.seed), a.opt.weight_decay, a.opt.momentum, a.opt.label_smoothing,
                s.threads);
  }
  if (s.parallel) std::printf("  data parallel: %d ranks (mpirun), each computing its share of every batch\n", s.ranks);
  if (!a.resume.empty()) std::printf("  resumed from %s after epoch %d\n", a.resume.c_str(), s.state.epochs_done);
  std::string head = fmt::format("  {:>5}  {:>10}  {:>9}", a.opt.optimizer == Optimizer::kLbfgs ? "iter" : "epoch",
                                 "train loss", "train acc");
  if (s.has_val) head += fmt::format("  {:>8}  {:>7}", "val loss", "val acc");
  head += fmt::format("  {:>9}  {:>8}  {:>8}\n", "test loss", "test acc", "time");
  std::fputs(head.c_str(), stdout);
  for (const auto& h : s.state.history) print_epoch_line(h, s.has_val, "  (from checkpoint)");
  std::fflush(stdout);
}

// The hyperparameters as (name, value) rows for the report and metrics.json.
nlohmann::json recipe_json(const Session& s) {
  const TrainOptions& o = s.a.opt;
  nlohmann::json r = {{"optimizer", optimizer_name(o.optimizer)}, {"seed", o.seed}, {"val_split", o.val_split},
                      {"normalization", normalization_name(s.state.model.normalization)}};
  if (o.optimizer == Optimizer::kLbfgs) {
    r.update({{"C", o.C}, {"max_iter", o.max_iter}, {"tol", o.tol}, {"dtype", o.float64 ? "float64" : "float32"},
              {"precondition", precondition_name(o.precondition)}});
  } else {
    r.update({{"epochs", o.epochs}, {"batch_size", o.batch_size}, {"lr", o.lr}, {"weight_decay", o.weight_decay},
              {"momentum", o.momentum}, {"label_smoothing", o.label_smoothing}, {"init_std", o.init_std}});
  }
  return r;
}

// metrics.json/.csv and, unless --no-report, the pictures and report.html. `running`: a page that
// reloads itself (the run goes on) and only the curves; else everything.
void write_metrics_and_report(Session& s, bool running, std::vector<std::string>* written) {
  Args& a = s.a;
  nlohmann::json extra = {{"data", s.where},
                          {"classes", s.names},
                          {"threads", s.threads},
                          {"train_images", s.train.n},
                          {"val_images", s.has_val ? s.val.n : 0},
                          {"test_images", s.d.test.n},
                          {"load_seconds", s.d.seconds},
                          {"train_seconds", s.train_seconds},
                          {"recipe", recipe_json(s)}};
  if (!s.d.cache.empty()) {  // IDX data: each file "hit", "miss", "off" or "plain" (the decoded-dataset cache)
    nlohmann::json c = {{"dir", s.d.cache_dir}};
    for (const auto& [role, use] : s.d.cache) c[role] = use;
    extra["load_cache"] = c;
  }
  for (const char* k : {"lbfgs_stop", "lbfgs_iterations", "lbfgs_evaluations", "lbfgs_grad_max"}) {
    auto it = s.state.model.info.find(k);
    if (it != s.state.model.info.end()) extra[k] = it->second;
  }
  throw_if_error(io::write_file_atomic(s.paths.metrics, xent::train::metrics_json(s.state.history, extra.dump())));
  throw_if_error(io::write_file_atomic(s.paths.csv, xent::train::metrics_csv(s.state.history)));
  if (written) written->insert(written->end(), {s.paths.metrics, s.paths.csv});
  if (a.no_report) return;
  Evaluation ev;
  if (!running) throw_if_error(evaluate_model(s.state.model, s.d.test, s.threads, &ev), "evaluation");
  xent::train::ReportInputs in;
  in.model = &s.state.model;
  in.history = &s.state.history;
  in.test_eval = running ? nullptr : &ev;
  in.test = &s.d.test;
  in.title = data_title(s.where);
  in.command = a.command_line;
  const nlohmann::json recipe = recipe_json(s);
  for (auto& [k, v] : recipe.items()) in.hyperparameters.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
  in.hyperparameters.emplace_back("threads", std::to_string(s.threads));
  in.load_seconds = s.d.seconds;
  in.train_seconds = s.train_seconds;
  in.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.t_start).count();
  in.threads = s.threads;
  in.running = running;
  throw_if_error(xent::train::write_report(a.out, in, written));
}

// Trains with Ctrl-C caught, printing each epoch, checkpointing and refreshing the report (at
// most twice a second) as it goes. Returns whether the run was interrupted.
bool train_with_signals(Session& s) {
  using clock = std::chrono::steady_clock;
  Args& a = s.a;
  ProgressBar bar(!a.quiet && !a.no_progress && stderr_is_terminal() && a.opt.optimizer == Optimizer::kSgd);
  auto last_refresh = clock::now();
  const auto t_train = clock::now();
  TrainCallbacks& cb = s.cb;
  cb.stop = s.parallel ? nullptr : &g_stop;  // under mpirun a signal ends every rank (outputs are atomic)
  cb.on_progress = [&](int epoch, std::int64_t done, std::int64_t total) { bar.update(epoch, a.opt.epochs, done, total); };
  cb.on_epoch_end = [&](const TrainState& st, const EpochMetrics& m) -> Status {
    bar.clear();
    if (!a.quiet) {
      print_epoch_line(m, s.has_val, "");
      std::fflush(stdout);
    }
    if (s.rank != 0) return ok_status();
    if (!s.checkpoint_path.empty()) XENT_RETURN_IF_ERROR(save_checkpoint(s.checkpoint_path, st, a.opt, s.fingerprint));
    if (!a.no_report && clock::now() - last_refresh > std::chrono::milliseconds(500)) {
      s.train_seconds = std::chrono::duration<double>(clock::now() - t_train).count();
      write_metrics_and_report(s, true, nullptr);
      last_refresh = clock::now();
    }
    return ok_status();
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
  Status st = train_softmax_regression(s.train, s.has_val ? &s.val : nullptr, s.d.test, a.opt, s.state, cb, &interrupted);
  s.train_seconds = std::chrono::duration<double>(clock::now() - t_train).count();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  bar.clear();
  throw_if_error(st, "training");
  return interrupted;
}

void run(Args& a) {
  Session s(a);
  s.t_start = std::chrono::steady_clock::now();
  if (!a.resume.empty()) adopt_checkpoint_options(a);
  throw_if_error(validate(a.opt));
  s.parallel = g_train_parallel != nullptr && g_train_parallel->begin(&s.rank, &s.ranks, &s.cb);
  struct MpiEnd {
    bool on;
    ~MpiEnd() {
      if (on) g_train_parallel->end();
    }
  } mpi_end{s.parallel};
  if (s.rank != 0) a.quiet = a.no_progress = true;
  if (a.opt.threads > 0) set_num_threads(a.opt.threads);
  s.threads = num_threads();
  s.paths = prepare_outputs(a);
  load_and_split(s);
  if (!a.quiet && !s.d.cache_note.empty()) std::fprintf(stderr, "xent train: %s\n", s.d.cache_note.c_str());
  init_state(s);
  if (s.rank == 0) create_out_dir(a);
  if (!a.quiet) print_header(s);
  const bool interrupted = train_with_signals(s);
  if (s.rank != 0) return;  // rank 0 writes the model, metrics and pictures
  if (interrupted) {
    // Keep what the completed epochs earned: the model, metrics and report of the last one.
    std::string saved = "Nothing was saved (no epoch completed).";
    if (!s.state.history.empty()) {
      throw_if_error(save_model(s.paths.model, s.state.model));
      write_metrics_and_report(s, false, nullptr);
      saved = fmt::format("Wrote the model, metrics{} of epoch {} to {}.", a.no_report ? "" : " and report",
                          s.state.epochs_done, a.out);
    }
    std::fprintf(stderr, "xent train: interrupted after epoch %d of %d. %s%s\n", s.state.epochs_done,
                 a.opt.optimizer == Optimizer::kLbfgs ? a.opt.max_iter : a.opt.epochs, saved.c_str(),
                 s.checkpoint_path.empty()
                     ? (a.opt.optimizer == Optimizer::kSgd ? " Pass --checkpoint FILE to be able to resume." : "")
                     : fmt::format(" Resume with: xent train ... --resume {}", s.checkpoint_path).c_str());
    set_exit_code(130);
    return;
  }
  throw_if_error(save_model(s.paths.model, s.state.model));
  std::vector<std::string> written = {s.paths.model};
  write_metrics_and_report(s, false, &written);
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.t_start).count();
  if (!a.quiet) {
    const auto& last = s.state.history.back();
    if (a.opt.optimizer == Optimizer::kLbfgs) {
      const auto& info = s.state.model.info;
      std::printf("L-BFGS: objective %.10g after %s iterations (%s evaluations), stopped by %s, max |gradient| %s\n",
                  last.objective, info.at("lbfgs_iterations").c_str(), info.at("lbfgs_evaluations").c_str(),
                  info.at("lbfgs_stop").c_str(), info.at("lbfgs_grad_max").c_str());
    }
    std::printf("done: test accuracy %.4f after %d %s; loading %.3f s, training %.3f s, total %.3f s\n",
                last.test_accuracy, last.epoch, a.opt.optimizer == Optimizer::kLbfgs ? "iterations" : "epochs",
                s.d.seconds, s.train_seconds, total);
    std::printf("wrote %s\n", fmt::format("{}", fmt::join(written, ", ")).c_str());
  }
}

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand(
      "train", "Train a softmax-regression classifier on an IDX image dataset (d2l's recipe) or on .npy/CSV features");
  add_data_options(app, &a->data, true);
  app->add_option("--normalize", a->normalize,
                  "Float features (--train .npy/.csv): standardize (default: subtract the training rows' per-feature mean, "
                  "divide by their std; std 0 counts as 1) or none. Stored in the model; evaluate and predict apply it. "
                  "Images are always scaled x / 255")
      ->check(CLI::IsMember({"none", "standardize"}))
      ->type_name("HOW");
  app->add_option("--epochs", a->opt.epochs, "Passes over the training set (default 10)")->type_name("N");
  app->add_option("--batch-size", a->opt.batch_size, "Minibatch size (default 256; the last batch is smaller)")->type_name("B");
  app->add_option("--optimizer", a->optimizer,
                  "sgd (minibatch SGD, d2l's recipe; default) or lbfgs (full-batch L-BFGS on scikit-learn's "
                  "LogisticRegression objective, from W = 0)")
      ->check(CLI::IsMember({"sgd", "lbfgs"}))
      ->type_name("NAME");
  app->add_option("--C", a->opt.C, "lbfgs: inverse L2 strength as in scikit-learn (penalty ||W||^2 / (2 C N) on the mean loss; default 1)")
      ->type_name("C");
  app->add_option("--max-iter", a->opt.max_iter, "lbfgs: iteration cap (default 1000)")->type_name("N");
  app->add_option("--tol", a->opt.tol, "lbfgs: stop when max |gradient| of the summed objective <= tol (scikit-learn's tol; default 1e-4)")
      ->type_name("T");
  app->add_option("--dtype", a->dtype, "lbfgs: arithmetic, float32 (default) or float64")
      ->check(CLI::IsMember({"float32", "float64"}))
      ->type_name("T");
  app->add_option("--log-every", a->opt.log_every, "lbfgs: measure and print every N-th iteration (default 10; the last always)")
      ->type_name("N");
  app->add_option("--precondition", a->precondition,
                  "lbfgs: the change of variables: curvature (default: whitened inputs for 10 iterations, then a "
                  "Kronecker model of the softmax's curvature rebuilt after iterations 10, 30, 70, 150 and 310), inputs (the "
                  "whitening only) or none (plain L-BFGS, as scikit-learn; slowest to converge)")
      ->check(CLI::IsMember({"curvature", "inputs", "none"}))
      ->type_name("KIND");
  app->add_flag("--no-precondition", a->no_precondition, "lbfgs: the same as --precondition none");
  app->add_option("--val-split", a->opt.val_split,
                  "Hold out this fraction of the training set for validation (stratified by class, seeded by --seed; default 0)")
      ->type_name("F");
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
  app->add_option("--resume", a->resume,
                  "Continue from a checkpoint with the options stored in it (only --epochs, --threads and output options may be given again)")->type_name("FILE");
  app->add_option("--class-names", a->class_names, "Comma-separated class names, or @FILE with one name per line; at least as many as the labels need, more make more classes (default: Fashion-MNIST's names when the "
                  "path mentions fashion, else 0, 1, ...; a CSV label column of names: those names, sorted, or this list in its order)")->type_name("A,B,...");
  app->add_flag("--no-report", a->no_report, "Skip the pictures and report.html");
  app->add_flag("--no-progress", a->no_progress, "No progress bar (it is shown only on a terminal anyway)");
  app->add_flag("--quiet,-q", a->quiet, "Print nothing but errors");
  app->footer(
      "\nExamples:\n"
      "  xent train --data data/fashion-mnist                      # d2l defaults, outputs in out/\n"
      "  xent train --data data/fashion-mnist --epochs 20 --momentum 0.9 --lr 0.05 --out runs/m09\n"
      "  xent train --data data/fashion-mnist --checkpoint ck.safetensors   # Ctrl-C, then:\n"
      "  xent train --data data/fashion-mnist --resume ck.safetensors\n"
      "  xent train --train train.csv --test test.csv --label-column species --optimizer lbfgs\n"
      "  xent train --train X.npy --train-labels y.npy --test Xt.npy --test-labels yt.npy --normalize none\n");
  app->callback([a, app] {
    a->command_line = "xent train";
    for (const auto* o : app->get_options())
      if (o->count() > 0) a->given.push_back(o->get_name());
    for (const auto* o : app->get_options())
      if (o->count() > 0 && o->get_name() != "--help")
        for (const auto& r : o->results()) a->command_line += " " + o->get_name() + (o->get_expected_max() > 0 ? " " + r : "");
    a->opt.optimizer = a->optimizer == "lbfgs" ? Optimizer::kLbfgs : Optimizer::kSgd;
    a->opt.float64 = a->dtype == "float64";
    if (a->no_precondition && app->count("--precondition") > 0 && a->precondition != "none")
      throw UsageError("--no-precondition contradicts --precondition " + a->precondition + "; give one of them");
    a->opt.precondition = a->no_precondition || a->precondition == "none" ? Precondition::kNone
                          : a->precondition == "inputs"                   ? Precondition::kInputs
                                                                          : Precondition::kCurvature;
    run(*a);
  });
}

}  // namespace

XENT_REGISTER_COMMAND(60, setup);

}  // namespace xent::cli::train
