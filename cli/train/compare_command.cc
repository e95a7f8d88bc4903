// compare_command.cc: `xent compare RUN_DIR...`: one page (compare.html + compare.png) that overlays
// the curves of several `xent train` runs and tabulates their final metrics and recipes, read from
// each run's metrics.json. Not a dashboard: static files, written atomically.
#include <cmath>
#include <filesystem>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "common.h"
#include "io/atomic_file.h"
#include "train/plots.h"
#include "xent/io/idx.h"

namespace xent::cli::train {
namespace {

using json = nlohmann::json;

struct Args {
  std::vector<std::string> runs;
  std::string out = "compare";
};

struct Run {
  xent::train::RunCurves curves;
  json metrics;
};

double num(const json& e, const char* k) {
  return e.contains(k) && e.at(k).is_number() ? e.at(k).get<double>() : NAN;
}

Run read_run(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "metrics.json").string();
  Result<ByteBuffer> bytes = read_file_bytes(path);
  if (!bytes.ok()) throw InputError(bytes.status().message());
  json j = json::parse(bytes->data(), bytes->data() + bytes->size(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("epochs") || !j["epochs"].is_array() || j["epochs"].empty())
    throw InputError(fmt::format("{}: expected the metrics.json of a xent train run (an object with a non-empty "
                                 "\"epochs\" array)", path));
  Run r;
  std::filesystem::path p = std::filesystem::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  r.curves.name = p.filename().string().empty() ? dir : p.filename().string();
  for (const json& e : j["epochs"]) {
    if (!e.is_object() || !e.contains("epoch") || !e["epoch"].is_number_integer())
      throw InputError(fmt::format("{}: every epoch entry needs an integer \"epoch\", found {}", path, e.dump()));
    EpochMetrics m;
    m.epoch = e["epoch"].get<int>();
    m.train_loss = num(e, "train_loss"), m.train_accuracy = num(e, "train_accuracy");
    m.val_loss = num(e, "val_loss"), m.val_accuracy = num(e, "val_accuracy");
    m.test_loss = num(e, "test_loss"), m.test_accuracy = num(e, "test_accuracy");
    m.objective = num(e, "objective"), m.seconds = num(e, "seconds");
    r.curves.history.push_back(m);
  }
  r.metrics = std::move(j);
  return r;
}

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : c == '"' ? "&quot;" : std::string(1, c);
  return o;
}
std::string pct(double v) { return std::isfinite(v) ? fmt::format("{:.2f}%", 100 * v) : "n/a"; }
std::string f4(double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : "n/a"; }

void run(const Args& a) {
  std::vector<Run> runs;
  for (const auto& d : a.runs) runs.push_back(read_run(d));
  std::vector<xent::train::RunCurves> curves;
  for (const auto& r : runs) curves.push_back(r.curves);
  Result<std::string> png = xent::train::render_compare_png(curves);
  throw_if_error(png.status());
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  if (ec) throw RuntimeFailure(fmt::format("--out {}: cannot create directory: {}", a.out, ec.message()));
  const std::string png_path = (std::filesystem::path(a.out) / "compare.png").string();
  const std::string html_path = (std::filesystem::path(a.out) / "compare.html").string();
  throw_if_error(io::write_file_atomic(png_path, *png));
  std::string h = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>xent: comparing " +
                  std::to_string(runs.size()) + " runs</title>\n<style>\n"
                  "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}\n"
                  "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 9px;text-align:right}\n"
                  "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}\n</style></head><body>\n";
  h += fmt::format("<h1>Comparing {} runs</h1>\n<img src=\"compare.png\" alt=\"curves of every run\">\n", runs.size());
  h += "<h2>Final metrics</h2>\n<table id=\"final\"><tr><th>run</th><th>epochs</th><th>train loss</th><th>train acc</th>"
       "<th>val acc</th><th>test loss</th><th>test acc</th><th>train s</th><th>recipe</th></tr>\n";
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& last = runs[i].curves.history.back();
    const json& m = runs[i].metrics;
    std::string recipe;
    if (m.contains("recipe") && m["recipe"].is_object())
      for (auto& [k, v] : m["recipe"].items()) recipe += (recipe.empty() ? "" : ", ") + k + " " + (v.is_string() ? v.get<std::string>() : v.dump());
    h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                     esc(a.runs[i]), last.epoch, f4(last.train_loss), pct(last.train_accuracy), pct(last.val_accuracy),
                     f4(last.test_loss), pct(last.test_accuracy),
                     m.contains("train_seconds") && m["train_seconds"].is_number() ? fmt::format("{:.3f}", m["train_seconds"].get<double>()) : "n/a",
                     esc(recipe));
  }
  h += "</table>\n</body></html>\n";
  throw_if_error(io::write_file_atomic(html_path, h));
  std::printf("wrote %s, %s\n", html_path.c_str(), png_path.c_str());
}

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand("compare", "One page overlaying the curves and final metrics of several xent train runs");
  app->add_option("runs", a->runs, "Output directories of xent train runs (each holds metrics.json)")->required()->type_name("RUN_DIR...");
  app->add_option("--out", a->out, "Directory for compare.html and compare.png (default compare)")->type_name("DIR");
  app->footer("\nExample:\n  xent train --data data/fashion-mnist --out runs/sgd\n"
              "  xent train --data data/fashion-mnist --optimizer lbfgs --out runs/lbfgs\n"
              "  xent compare runs/sgd runs/lbfgs --out runs/compare\n");
  app->callback([a] { run(*a); });
}

}  // namespace

XENT_REGISTER_COMMAND(63, setup);

}  // namespace xent::cli::train
