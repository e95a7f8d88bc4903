// report.cc: metrics files (JSON, CSV) and report.html, which shows the training figures with the
// numbers behind them. Every file is written atomically. Not a templating engine.
#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "train/plots.h"

namespace xent::train {
namespace {

using json = nlohmann::json;

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string pct(double v) { return std::isfinite(v) ? fmt::format("{:.2f}%", 100 * v) : "n/a"; }

}  // namespace

std::string metrics_json(const std::vector<EpochMetrics>& history, const std::string& extra_json_object) {
  json j = json::object();
  if (!extra_json_object.empty()) {
    json extra = json::parse(extra_json_object, nullptr, false);
    if (extra.is_object()) j = extra;
  }
  json epochs = json::array();
  for (const auto& h : history)
  {
    json e = {{"epoch", h.epoch},           {"train_loss", num(h.train_loss)}, {"train_accuracy", num(h.train_accuracy)},
              {"val_loss", num(h.val_loss)}, {"val_accuracy", num(h.val_accuracy)}, {"test_loss", num(h.test_loss)},
              {"test_accuracy", num(h.test_accuracy)}, {"seconds", num(h.seconds)}};
    if (std::isfinite(h.objective)) e["objective"] = h.objective;
    epochs.push_back(e);
  }
  j["epochs"] = epochs;
  if (!history.empty()) {
    j["final"] = epochs.back();
  }
  return j.dump(2) + "\n";
}

std::string metrics_csv(const std::vector<EpochMetrics>& history) {
  // Empty fields for what was not measured (no validation set, no test images).
  auto f = [](double v) { return std::isfinite(v) ? fmt::format("{:.6f}", v) : std::string(); };
  std::string s = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy,objective,seconds\n";
  for (const auto& h : history)
    s += fmt::format("{},{},{},{},{},{},{},{},{:.4f}\n", h.epoch, f(h.train_loss), f(h.train_accuracy), f(h.val_loss),
                     f(h.val_accuracy), f(h.test_loss), f(h.test_accuracy),
                     std::isfinite(h.objective) ? fmt::format("{:.12g}", h.objective) : "", h.seconds);
  return s;
}

Status write_report(const std::string& dir, const ReportInputs& in, std::vector<std::string>* written) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return io_error(fmt::format("{}: cannot create directory: {}", dir, ec.message()));
  const SoftmaxModel& m = *in.model;
  auto put = [&](const std::string& name, const Result<std::string>& bytes) -> Status {
    if (!bytes.ok()) return bytes.status();
    const std::string path = (fs::path(dir) / name).string();
    XENT_RETURN_IF_ERROR(io::write_file_atomic(path, *bytes));
    if (written) written->push_back(path);
    return ok_status();
  };
  XENT_RETURN_IF_ERROR(put("curves.png", render_curves_png(*in.history)));
  const bool have_eval = in.test_eval && in.test && in.test->n > 0;
  if (have_eval) XENT_RETURN_IF_ERROR(put("confusion.png", render_confusion_png(in.test_eval->confusion, m.class_names)));
  const bool images = m.height > 1;
  // The gallery draws the test images themselves: bytes only (float rows are not pictures).
  const bool gallery = images && have_eval && !in.test->floats;
  if (gallery)
    XENT_RETURN_IF_ERROR(put("predictions.png", render_predictions_png(*in.test, *in.test_eval, m.class_names, 32)));
  if (images && !in.running) XENT_RETURN_IF_ERROR(put("weights.png", render_weights_png(m)));
  bool has_val = false;
  for (const auto& e : *in.history) has_val |= std::isfinite(e.val_accuracy);

  std::string h;
  h += "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  // While training runs the page reloads itself; the final page does not.
  if (in.running) h += "<meta http-equiv=\"refresh\" content=\"2\">\n";
  h += fmt::format("<title>xent: softmax regression on {}</title>\n<style>\n", html_escape(in.title));
  h += "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\n"
       "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 9px;text-align:right}\n"
       "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}\n"
       "code{background:#f5f5f5;padding:1px 4px}.big{font-size:1.4em}.live{color:#b35900}\n</style></head><body>\n";
  h += fmt::format("<h1>Softmax regression on {}</h1>\n", html_escape(in.title));
  if (in.running) h += "<p class=\"live\">Training is running; this page reloads every 2 seconds.</p>\n";
  const EpochMetrics* last = in.history->empty() ? nullptr : &in.history->back();
  if (last) {
    h += fmt::format("<p class=\"big\">test accuracy <b id=\"headline-accuracy\" data-value=\"{}\">{}</b> after {} {}",
                     std::isfinite(last->test_accuracy) ? fmt::format("{:.6f}", last->test_accuracy) : "",
                     pct(last->test_accuracy), last->epoch, std::isfinite(last->objective) ? "iterations" : "epochs");
    if (has_val) h += fmt::format(" (validation accuracy {})", pct(last->val_accuracy));
    h += "</p>\n";
  }
  h += fmt::format("<p>{} x {} inputs, {} classes; loading {:.3f} s, training + evaluation {:.3f} s, total {:.3f} s on {} "
                   "thread(s).</p>\n",
                   m.height, m.width, m.classes, in.load_seconds, in.train_seconds, in.total_seconds, in.threads);
  if (!in.hyperparameters.empty()) {
    h += "<h2>Hyperparameters</h2>\n<table id=\"hyperparameters\"><tr><th>name</th><th>value</th></tr>\n";
    for (const auto& [k, v] : in.hyperparameters)
      h += fmt::format("<tr><td>{}</td><td>{}</td></tr>\n", html_escape(k), html_escape(v));
    h += "</table>\n";
  }
  if (!in.command.empty()) h += fmt::format("<p><code>{}</code></p>\n", html_escape(in.command));
  h += "<h2>Training curves</h2>\n<img src=\"curves.png\" alt=\"loss and accuracy curves\">\n";
  h += "<table id=\"epochs\"><tr><th>epoch</th><th>train loss</th><th>train acc</th>";
  if (has_val) h += "<th>val loss</th><th>val acc</th>";
  h += "<th>test loss</th><th>test acc</th><th>time (s)</th></tr>\n";
  auto loss = [](double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : std::string("n/a"); };
  for (const auto& e : *in.history) {
    h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td>", e.epoch, loss(e.train_loss), pct(e.train_accuracy));
    if (has_val) h += fmt::format("<td>{}</td><td>{}</td>", loss(e.val_loss), pct(e.val_accuracy));
    h += fmt::format("<td>{}</td><td>{}</td><td>{:.3f}</td></tr>\n", loss(e.test_loss), pct(e.test_accuracy), e.seconds);
  }
  h += "</table>\n";
  if (have_eval) {
    const auto C = m.classes;
    h += "<h2>Per-class accuracy (test set)</h2>\n<table><tr><th>class</th><th>images</th><th>correct</th><th>accuracy</th></tr>\n";
    for (std::int64_t c = 0; c < C; ++c) {
      std::int64_t row = 0;
      for (std::int64_t p = 0; p < C; ++p) row += in.test_eval->confusion[static_cast<std::size_t>(c * C + p)];
      const std::int64_t ok = in.test_eval->confusion[static_cast<std::size_t>(c * C + c)];
      h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n", html_escape(m.class_names[static_cast<std::size_t>(c)]),
                       row, ok, row ? pct(static_cast<double>(ok) / static_cast<double>(row)) : "n/a");
    }
    h += "</table>\n<h2>Confusion matrix</h2>\n<img src=\"confusion.png\" alt=\"confusion matrix\">\n";
    if (gallery) h += "<h2>Predictions</h2>\n<img src=\"predictions.png\" alt=\"test predictions, mistakes and correct ones\">\n";
  }
  if (images && !in.running) h += "<h2>Weight templates</h2>\n<img src=\"weights.png\" alt=\"learned weights per class\">\n";
  h += "<p>Generated by <code>xent train</code>. Metrics: <a href=\"metrics.json\">metrics.json</a>, "
       "<a href=\"metrics.csv\">metrics.csv</a> (when written here).</p>\n</body></html>\n";
  return put("report.html", Result<std::string>(h));
}

}  // namespace xent::train
