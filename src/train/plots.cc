// plots.cc: the four training figures drawn with cairo into memory and encoded as PNG (cairo's
// encoder, streamed into a string so callers can write files atomically). Layout constants are
// in pixels. Not a plotting library.
#include "train/plots.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>

#include <fmt/format.h>

namespace xent::train {
namespace {

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
using SurfacePtr = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using ContextPtr = std::unique_ptr<cairo_t, ContextDeleter>;

struct Canvas {
  SurfacePtr surface;
  ContextPtr cr;
};

Result<Canvas> make_canvas(int w, int h) {
  if (w < 1 || h < 1 || w > 16000 || h > 16000) return invalid_argument(fmt::format("figure size {} x {} out of range", w, h));
  Canvas c;
  c.surface.reset(cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h));
  if (cairo_surface_status(c.surface.get()) != CAIRO_STATUS_SUCCESS) return resource_exhausted("cairo: cannot create surface");
  c.cr.reset(cairo_create(c.surface.get()));
  cairo_t* cr = c.cr.get();
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  return c;
}

cairo_status_t append_png(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

Result<std::string> to_png(Canvas& c) {
  cairo_surface_flush(c.surface.get());
  std::string out;
  if (cairo_surface_write_to_png_stream(c.surface.get(), append_png, &out) != CAIRO_STATUS_SUCCESS)
    return internal_error("cairo: PNG encoding failed");
  return out;
}

enum class Align { kLeft, kCenter, kRight };
// Text with its baseline at y (kLeft/kCenter/kRight relative to x).
void text(cairo_t* cr, double x, double y, const std::string& s, double size, Align a = Align::kLeft, bool bold = false) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  double dx = a == Align::kLeft ? 0 : a == Align::kCenter ? -e.x_advance / 2 : -e.x_advance;
  cairo_move_to(cr, x + dx, y);
  cairo_show_text(cr, s.c_str());
}

double text_width(cairo_t* cr, const std::string& s, double size) {
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

// "Nice" tick step for a range.
double nice_step(double range, int target) {
  double raw = range / std::max(1, target);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

struct Series {
  std::string label;
  std::vector<double> y;
  double r, g, b;
  bool dashed;
  std::vector<double> x = {};  // x of each point; empty: the panel's xs
};

// One line chart in the rectangle (x0, y0, w, h) with epochs 1..n on the x axis.
void line_panel(cairo_t* cr, double x0, double y0, double w, double h, const std::string& title,
                const std::vector<Series>& series, double ymin, double ymax, const std::vector<double>& xs) {
  const double L = 52, R = 12, T = 28, Bm = 40;
  const double px = x0 + L, py = y0 + T, pw = w - L - R, ph = h - T - Bm;
  std::size_t n = 0;
  for (const auto& s : series) n = std::max(n, s.y.size());
  if (!(ymax > ymin)) ymax = ymin + 1;
  const double step = nice_step(ymax - ymin, 5);
  ymin = std::floor(ymin / step) * step;
  ymax = std::ceil(ymax / step) * step;
  int decimals = 0;  // enough to show the step exactly (0.025 -> 3)
  while (decimals < 6 && std::fabs(step * std::pow(10.0, decimals) - std::round(step * std::pow(10.0, decimals))) > 1e-6) ++decimals;
  // x: the recorded epochs (L-BFGS: iterations), xs[i] for point i.
  const double xmin = xs.empty() ? 1 : xs.front(), xmax = xs.empty() ? 1 : xs.back();
  auto X = [&](double e) { return n <= 1 || xmax <= xmin ? px + pw / 2 : px + (e - xmin) / (xmax - xmin) * pw; };
  auto Xi = [&](const Series& s, std::size_t i) {
    if (i < s.x.size()) return X(s.x[i]);
    return X(i < xs.size() ? xs[i] : static_cast<double>(i + 1));
  };
  auto Y = [&](double v) { return py + ph - (v - ymin) / (ymax - ymin) * ph; };
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  text(cr, px + pw / 2, y0 + 18, title, 14, Align::kCenter, true);
  // Grid and y ticks.
  cairo_set_line_width(cr, 1);
  for (double v = ymin; v <= ymax + step / 2; v += step) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, px, std::round(Y(v)) + 0.5);
    cairo_line_to(cr, px + pw, std::round(Y(v)) + 0.5);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    text(cr, px - 6, Y(v) + 4, fmt::format("{:.{}f}", v, decimals), 11, Align::kRight);
  }
  // x ticks: every epoch up to 12, else a nice step.
  const double xstep = xmax - xmin < 12 ? 1 : nice_step(xmax - xmin, 8);
  for (double e = std::max(1.0, std::ceil(xmin / xstep) * xstep); n > 0 && e <= xmax + 1e-9; e += xstep) {
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    text(cr, X(e), py + ph + 16, fmt::format("{}", static_cast<long>(e)), 11, Align::kCenter);
  }
  text(cr, px + pw / 2, py + ph + 33, "epoch", 12, Align::kCenter);
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_rectangle(cr, px + 0.5, py + 0.5, pw, ph);
  cairo_stroke(cr);
  // Lines with markers.
  for (const auto& s : series) {
    cairo_set_source_rgb(cr, s.r, s.g, s.b);
    cairo_set_line_width(cr, 2);
    const double dash[] = {6, 4};
    cairo_set_dash(cr, dash, s.dashed ? 2 : 0, 0);
    bool started = false;
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      const double xx = Xi(s, i), yy = Y(s.y[i]);
      if (!started) cairo_move_to(cr, xx, yy), started = true;
      else cairo_line_to(cr, xx, yy);
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    for (std::size_t i = 0; i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      cairo_arc(cr, Xi(s, i), Y(s.y[i]), 3, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }
  // Legend (top right inside the plot, or bottom right for rising curves).
  double lx = px + pw - 150, ly = py + 10;
  bool rising = !series.empty() && series[0].y.size() > 1 && series[0].y.back() > series[0].y.front();
  if (rising) ly = py + ph - 10 - 18.0 * static_cast<double>(series.size());
  cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
  cairo_rectangle(cr, lx - 6, ly - 4, 150, 18.0 * static_cast<double>(series.size()) + 6);
  cairo_fill(cr);
  for (std::size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const double yy = ly + 9 + 18.0 * static_cast<double>(k);
    cairo_set_source_rgb(cr, s.r, s.g, s.b);
    cairo_set_line_width(cr, 2);
    const double dash[] = {6, 4};
    cairo_set_dash(cr, dash, s.dashed ? 2 : 0, 0);
    cairo_move_to(cr, lx, yy);
    cairo_line_to(cr, lx + 26, yy);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    const double last = s.y.empty() ? NAN : s.y.back();
    text(cr, lx + 32, yy + 4, std::isfinite(last) ? fmt::format("{} ({:.3f})", s.label, last) : s.label, 11);
  }
}

// Blue ramp for the confusion matrix (0 white, 1 dark blue).
void blue(double t, double* r, double* g, double* b) {
  t = std::clamp(t, 0.0, 1.0);
  *r = 1 - 0.92 * t;
  *g = 1 - 0.65 * t;
  *b = 1 - 0.25 * t;
}

}  // namespace

Result<std::string> render_curves_png(const std::vector<EpochMetrics>& history) {
  auto canvas = make_canvas(960, 380);
  if (!canvas.ok()) return canvas.status();
  cairo_t* cr = canvas->cr.get();
  Series trl{"train", {}, 0.12, 0.47, 0.71, false};
  Series val{"validation", {}, 0.84, 0.37, 0.0, true};
  Series tel{"test", {}, 0.17, 0.63, 0.17, false};
  Series tra = trl, vaa = val, tea = tel;
  bool has_val = false, has_test_loss = false;
  double lmin = INFINITY, lmax = -INFINITY, amin = INFINITY, amax = -INFINITY;
  for (const auto& h : history) {
    trl.y.push_back(h.train_loss), val.y.push_back(h.val_loss), tel.y.push_back(h.test_loss);
    tra.y.push_back(h.train_accuracy), vaa.y.push_back(h.val_accuracy), tea.y.push_back(h.test_accuracy);
    has_val |= std::isfinite(h.val_accuracy);
    has_test_loss |= std::isfinite(h.test_loss);
    for (double l : {h.train_loss, h.val_loss, h.test_loss})
      if (std::isfinite(l)) lmin = std::min(lmin, l), lmax = std::max(lmax, l);
    for (double a : {h.train_accuracy, h.val_accuracy, h.test_accuracy})
      if (std::isfinite(a)) amin = std::min(amin, a), amax = std::max(amax, a);
  }
  if (!std::isfinite(lmin)) lmin = 0, lmax = 1;
  if (!std::isfinite(amin)) amin = 0, amax = 1;
  const double lpad = std::max(0.02, (lmax - lmin) * 0.1), apad = std::max(0.01, (amax - amin) * 0.1);
  std::vector<Series> losses = {trl}, accs = {tra};
  if (has_val) losses.push_back(val), accs.push_back(vaa);
  if (has_test_loss) losses.push_back(tel);
  accs.push_back(tea);
  std::vector<double> xs;
  for (const auto& h : history) xs.push_back(h.epoch);
  line_panel(cr, 0, 0, 480, 380, "loss", losses, std::max(0.0, lmin - lpad), lmax + lpad, xs);
  line_panel(cr, 480, 0, 480, 380, "accuracy", accs, std::max(0.0, amin - apad), std::min(1.0, amax + apad), xs);
  return to_png(*canvas);
}

Result<std::string> render_compare_png(const std::vector<RunCurves>& runs) {
  if (runs.empty()) return invalid_argument("nothing to compare");
  // Tableau-like palette, repeated with dashes after ten runs.
  static const double kColours[10][3] = {{0.12, 0.47, 0.71}, {1.0, 0.5, 0.05},  {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                                         {0.58, 0.4, 0.74},  {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.5, 0.5, 0.5},
                                         {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81}};
  auto canvas = make_canvas(1100, 420);
  if (!canvas.ok()) return canvas.status();
  cairo_t* cr = canvas->cr.get();
  std::vector<Series> losses, accs;
  std::vector<double> xs;
  double lmin = INFINITY, lmax = -INFINITY, amin = INFINITY, amax = -INFINITY;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const double* col = kColours[r % 10];
    const std::string label = runs[r].name.size() > 18 ? runs[r].name.substr(0, 17) + "~" : runs[r].name;
    Series l{label, {}, col[0], col[1], col[2], r >= 10}, a = l;
    bool test_loss = false;
    for (const auto& h : runs[r].history) test_loss |= std::isfinite(h.test_loss);
    for (const auto& h : runs[r].history) {
      const double lv = test_loss ? h.test_loss : h.train_loss;
      l.y.push_back(lv), a.y.push_back(h.test_accuracy);
      l.x.push_back(h.epoch), a.x.push_back(h.epoch);
      if (std::isfinite(lv)) lmin = std::min(lmin, lv), lmax = std::max(lmax, lv);
      if (std::isfinite(h.test_accuracy)) amin = std::min(amin, h.test_accuracy), amax = std::max(amax, h.test_accuracy);
    }
    // The panel's x range: 1 to the largest epoch of any run.
    if (xs.empty()) xs = {1, 1};
    xs.back() = std::max(xs.back(), static_cast<double>(runs[r].history.back().epoch));
    losses.push_back(std::move(l)), accs.push_back(std::move(a));
  }
  if (!std::isfinite(lmin)) lmin = 0, lmax = 1;
  if (!std::isfinite(amin)) amin = 0, amax = 1;
  const double lpad = std::max(0.02, (lmax - lmin) * 0.1), apad = std::max(0.01, (amax - amin) * 0.1);
  line_panel(cr, 0, 0, 550, 420, "test loss (train loss where none)", losses, std::max(0.0, lmin - lpad), lmax + lpad, xs);
  line_panel(cr, 550, 0, 550, 420, "test accuracy", accs, std::max(0.0, amin - apad), std::min(1.0, amax + apad), xs);
  return to_png(*canvas);
}

Result<std::string> render_confusion_png(const std::vector<std::int64_t>& confusion, const std::vector<std::string>& names) {
  const auto C = static_cast<std::int64_t>(names.size());
  if (C < 1 || confusion.size() != static_cast<std::size_t>(C * C)) return invalid_argument("confusion matrix size mismatch");
  const double cell = std::clamp(560.0 / static_cast<double>(C), 4.0, 56.0);
  const bool labels = cell >= 14, numbers = cell >= 30;
  // Measure the longest name for the left margin.
  auto probe = make_canvas(1, 1);
  if (!probe.ok()) return probe.status();
  double name_w = 0;
  if (labels)
    for (const auto& n : names) name_w = std::max(name_w, text_width(probe->cr.get(), n, 12));
  const double L = name_w + 70, T = 50, grid = cell * static_cast<double>(C);
  const double Bm = labels ? name_w * 0.75 + 60 : 50;
  auto canvas = make_canvas(static_cast<int>(L + grid + 30), static_cast<int>(T + grid + Bm));
  if (!canvas.ok()) return canvas.status();
  cairo_t* cr = canvas->cr.get();
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  text(cr, L + grid / 2, 24, "confusion matrix (test set)", 15, Align::kCenter, true);
  text(cr, L + grid / 2, 42, "rows: true class, columns: predicted; shade = fraction of the row", 11, Align::kCenter);
  for (std::int64_t t = 0; t < C; ++t) {
    std::int64_t row = 0;
    for (std::int64_t p = 0; p < C; ++p) row += confusion[static_cast<std::size_t>(t * C + p)];
    for (std::int64_t p = 0; p < C; ++p) {
      const std::int64_t v = confusion[static_cast<std::size_t>(t * C + p)];
      const double frac = row ? static_cast<double>(v) / static_cast<double>(row) : 0;
      double r, g, b;
      blue(std::sqrt(frac), &r, &g, &b);
      const double x = L + cell * static_cast<double>(p), y = T + cell * static_cast<double>(t);
      cairo_set_source_rgb(cr, r, g, b);
      cairo_rectangle(cr, x, y, cell, cell);
      cairo_fill(cr);
      if (numbers && v > 0) {
        if (frac > 0.35) cairo_set_source_rgb(cr, 1, 1, 1);
        else cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
        text(cr, x + cell / 2, y + cell / 2 + 4, std::to_string(v), cell >= 48 ? 12 : 10, Align::kCenter, t == p);
      }
    }
  }
  cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, L + 0.5, T + 0.5, grid, grid);
  cairo_stroke(cr);
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  if (labels) {
    for (std::int64_t k = 0; k < C; ++k) {
      const auto& n = names[static_cast<std::size_t>(k)];
      text(cr, L - 8, T + cell * (static_cast<double>(k) + 0.5) + 4, n, 12, Align::kRight);
      cairo_save(cr);
      cairo_translate(cr, L + cell * (static_cast<double>(k) + 0.5) + 4, T + grid + 10);
      cairo_rotate(cr, -M_PI / 4);
      text(cr, 0, 0, n, 12, Align::kRight);
      cairo_restore(cr);
    }
  }
  cairo_save(cr);
  cairo_translate(cr, 18, T + grid / 2);
  cairo_rotate(cr, -M_PI / 2);
  text(cr, 0, 0, "true class", 13, Align::kCenter, true);
  cairo_restore(cr);
  text(cr, L + grid / 2, T + grid + Bm - 10, "predicted class", 13, Align::kCenter, true);
  return to_png(*canvas);
}

Result<std::string> render_predictions_png(const io::LabeledImages& data, const Evaluation& eval,
                                           const std::vector<std::string>& names, int count) {
  if (data.height < 2 || data.n == 0) return invalid_argument("predictions need 2-D images");
  if (eval.predicted.size() != static_cast<std::size_t>(data.n)) return invalid_argument("evaluation does not match the data");
  // The first count/2 mistakes, then correct predictions to fill the grid (more mistakes when
  // there are too few correct ones).
  std::vector<std::int64_t> wrong, right;
  for (std::int64_t i = 0; i < data.n; ++i)
    (eval.predicted[static_cast<std::size_t>(i)] != data.labels[static_cast<std::size_t>(i)] ? wrong : right).push_back(i);
  const auto want = static_cast<std::size_t>(count);
  const std::size_t n_right = std::min(right.size(), want - std::min(wrong.size(), want / 2));
  const std::size_t n_wrong = std::min(wrong.size(), want - n_right);
  std::vector<std::int64_t> pick(wrong.begin(), wrong.begin() + static_cast<std::ptrdiff_t>(n_wrong));
  pick.insert(pick.end(), right.begin(), right.begin() + static_cast<std::ptrdiff_t>(n_right));
  const int cols = 8;
  const int rows = static_cast<int>((pick.size() + cols - 1) / cols);
  const double scale = std::clamp(84.0 / static_cast<double>(std::max(data.height, data.width)), 1.0, 4.0);
  const double iw = static_cast<double>(data.width) * scale, ih = static_cast<double>(data.height) * scale;
  const double tw = std::max(iw + 16, 124.0), th = ih + 44;
  auto canvas = make_canvas(static_cast<int>(tw * cols + 20), static_cast<int>(th * rows + 56));
  if (!canvas.ok()) return canvas.status();
  cairo_t* cr = canvas->cr.get();
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  text(cr, 10, 24, fmt::format("test predictions: {} mistakes, then {} correct", n_wrong, n_right), 15, Align::kLeft, true);
  text(cr, 10, 42, "each image: true label, then the prediction with its probability (red when wrong)", 11);
  const std::int64_t D = data.features();
  std::vector<std::uint32_t> argb(static_cast<std::size_t>(D));
  for (std::size_t k = 0; k < pick.size(); ++k) {
    const std::int64_t i = pick[k];
    const double x = 10 + tw * static_cast<double>(k % cols), y = 56 + th * static_cast<double>(k / cols);
    const std::uint8_t* px = data.pixels.data() + i * D;
    // Dark ink on light paper, like d2l's plots.
    for (std::int64_t p = 0; p < D; ++p) {
      const std::uint32_t v = 255u - px[p];
      argb[static_cast<std::size_t>(p)] = 0xff000000u | (v << 16) | (v << 8) | v;
    }
    SurfacePtr img(cairo_image_surface_create_for_data(reinterpret_cast<unsigned char*>(argb.data()), CAIRO_FORMAT_ARGB32,
                                                       static_cast<int>(data.width), static_cast<int>(data.height),
                                                       static_cast<int>(data.width * 4)));
    cairo_save(cr);
    cairo_translate(cr, x + (tw - iw) / 2, y + 36);
    cairo_scale(cr, scale, scale);
    cairo_set_source_surface(cr, img.get(), 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_paint(cr);
    cairo_restore(cr);
    const std::int32_t t = data.labels[static_cast<std::size_t>(i)], p = eval.predicted[static_cast<std::size_t>(i)];
    auto name = [&](std::int32_t c) {
      return c >= 0 && static_cast<std::size_t>(c) < names.size() ? names[static_cast<std::size_t>(c)] : std::to_string(c);
    };
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    text(cr, x + tw / 2, y + 14, name(t), 11, Align::kCenter);
    if (t != p) cairo_set_source_rgb(cr, 0.8, 0.1, 0.1);
    else cairo_set_source_rgb(cr, 0.1, 0.5, 0.1);
    text(cr, x + tw / 2, y + 29,
         fmt::format("{} {:.0f}%", name(p), 100.0 * eval.confidence[static_cast<std::size_t>(i)]), 11, Align::kCenter,
         t != p);
  }
  return to_png(*canvas);
}

Result<std::string> render_weights_png(const SoftmaxModel& m) {
  if (m.height < 2) return invalid_argument("weight templates need 2-D images");
  const std::int64_t C = m.classes, D = m.features;
  const int cols = static_cast<int>(std::min<std::int64_t>(C, 10));
  const int rows = static_cast<int>((C + cols - 1) / cols);
  const double scale = std::clamp(96.0 / static_cast<double>(std::max(m.height, m.width)), 1.0, 4.0);
  const double iw = static_cast<double>(m.width) * scale, ih = static_cast<double>(m.height) * scale;
  const double tw = std::max(iw + 12, 110.0), th = ih + 30;
  auto canvas = make_canvas(static_cast<int>(tw * cols + 20), static_cast<int>(th * rows + 64));
  if (!canvas.ok()) return canvas.status();
  cairo_t* cr = canvas->cr.get();
  cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
  text(cr, 10, 24, "learned weight templates W[:, class]", 15, Align::kLeft, true);
  text(cr, 10, 42, "red: pixel brightness raises the class score, blue: lowers it (scaled per class)", 11);
  std::vector<std::uint32_t> argb(static_cast<std::size_t>(D));
  for (std::int64_t c = 0; c < C; ++c) {
    float amax = 0;
    for (std::int64_t p = 0; p < D; ++p) amax = std::max(amax, std::fabs(m.weight[static_cast<std::size_t>(p * C + c)]));
    for (std::int64_t p = 0; p < D; ++p) {
      const double v = amax > 0 ? m.weight[static_cast<std::size_t>(p * C + c)] / amax : 0.0;
      // Diverging blue-white-red.
      double r = 1, g = 1, b = 1;
      if (v > 0) g = b = 1 - v, r = 1 - 0.25 * v;
      else r = g = 1 + v, b = 1 + 0.25 * v;
      auto q = [](double t) { return static_cast<std::uint32_t>(std::lround(std::clamp(t, 0.0, 1.0) * 255)); };
      argb[static_cast<std::size_t>(p)] = 0xff000000u | (q(r) << 16) | (q(g) << 8) | q(b);
    }
    SurfacePtr img(cairo_image_surface_create_for_data(reinterpret_cast<unsigned char*>(argb.data()), CAIRO_FORMAT_ARGB32,
                                                       static_cast<int>(m.width), static_cast<int>(m.height),
                                                       static_cast<int>(m.width * 4)));
    const double x = 10 + tw * static_cast<double>(c % cols), y = 58 + th * static_cast<double>(c / cols);
    cairo_save(cr);
    cairo_translate(cr, x + (tw - iw) / 2, y + 18);
    cairo_scale(cr, scale, scale);
    cairo_set_source_surface(cr, img.get(), 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_paint(cr);
    cairo_restore(cr);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    const auto& n = m.class_names.size() == static_cast<std::size_t>(C) ? m.class_names[static_cast<std::size_t>(c)] : std::to_string(c);
    text(cr, x + tw / 2, y + 13, n, 11, Align::kCenter);
  }
  return to_png(*canvas);
}

}  // namespace xent::train

// --- the binary cross-entropy curve (xent explain bce) -------------------------------------------

namespace xent::train {
namespace {

// BCE's loss for one element, PyTorch's clamp: -max(log p, -100) for t = 1, -max(log(1-p), -100) for t = 0.
double bce_loss(double p, int target) {
  return target == 1 ? -std::max(std::log(p), -100.0) : -std::max(std::log1p(-p), -100.0);
}

// Draws both panels into cr (w x h): left, loss against p on [0, 1] with the seed's eleven points;
// right, loss against log10(p) down to 1e-60, where the clamp at 100 shows.
void draw_bce_curve(cairo_t* cr, double w, double h) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  const double panel_w = w / 2, L = 56, R = 16, T = 34, B = 48;
  struct Axis {
    double px, py, pw, ph, xmin, xmax, ymin, ymax;
    double X(double x) const { return px + (x - xmin) / (xmax - xmin) * pw; }
    double Y(double y) const { return py + ph - (y - ymin) / (ymax - ymin) * ph; }
  };
  auto frame = [&](const Axis& a, const std::string& title, const std::string& xlabel, double xstep, double ystep,
                   const std::function<std::string(double)>& xtick) {
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text(cr, a.px + a.pw / 2, a.py - 14, title, 14, Align::kCenter, true);
    cairo_set_line_width(cr, 1);
    for (double v = a.ymin; v <= a.ymax + ystep / 2; v += ystep) {
      cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
      cairo_move_to(cr, a.px, a.Y(v));
      cairo_line_to(cr, a.px + a.pw, a.Y(v));
      cairo_stroke(cr);
      cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
      text(cr, a.px - 6, a.Y(v) + 4, fmt::format("{:g}", v), 11, Align::kRight);
    }
    for (double v = a.xmin; v <= a.xmax + xstep / 2; v += xstep) {
      cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
      text(cr, a.X(v), a.py + a.ph + 16, xtick(v), 11, Align::kCenter);
    }
    text(cr, a.px + a.pw / 2, a.py + a.ph + 36, xlabel, 12, Align::kCenter);
    cairo_save(cr);
    cairo_translate(cr, a.px - 40, a.py + a.ph / 2);
    cairo_rotate(cr, -M_PI / 2);
    text(cr, 0, 0, "loss (nats)", 12, Align::kCenter);
    cairo_restore(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, a.px, a.py, a.pw, a.ph);
    cairo_stroke(cr);
  };
  auto curve = [&](const Axis& a, const std::function<double(double)>& f, double r, double g, double b) {
    cairo_save(cr);
    cairo_rectangle(cr, a.px, a.py, a.pw, a.ph);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, r, g, b);
    cairo_set_line_width(cr, 2);
    for (int i = 0; i <= 600; ++i) {
      const double x = a.xmin + (a.xmax - a.xmin) * i / 600.0;
      const double y = f(x);
      if (i == 0) cairo_move_to(cr, a.X(x), a.Y(y));
      else cairo_line_to(cr, a.X(x), a.Y(y));
    }
    cairo_stroke(cr);
    cairo_restore(cr);
  };
  // Left: the seed's picture, loss against p on a linear axis.
  Axis left{L, T, panel_w - L - R, h - T - B, 0, 1, 0, 5};
  frame(left, "binary cross-entropy against the predicted p", "predicted probability p of class 1", 0.1, 1,
        [](double v) { return fmt::format("{:.1f}", v); });
  curve(left, [](double p) { return bce_loss(p, 1); }, 0.12, 0.47, 0.71);
  curve(left, [](double p) { return bce_loss(p, 0); }, 0.84, 0.37, 0.0);
  cairo_set_source_rgb(cr, 0.12, 0.47, 0.71);
  for (int i = 1; i <= 10; ++i) {  // the seed's points p = 0.1 ... 1.0 for target 1
    cairo_arc(cr, left.X(i / 10.0), left.Y(bce_loss(i / 10.0, 1)), 3.5, 0, 2 * M_PI);
    cairo_fill(cr);
  }
  text(cr, left.X(0.02), left.Y(4.7), "p = 0, target 1: loss 100 (clamped), off the chart", 10);
  cairo_set_source_rgb(cr, 0.84, 0.37, 0.0);
  text(cr, left.X(0.42), left.Y(2.6), "target 0: -log(1 - p)", 12);
  cairo_set_source_rgb(cr, 0.12, 0.47, 0.71);
  text(cr, left.X(0.42), left.Y(3.0), "target 1: -log(p)", 12);
  // Right: log10(p) from -60 to 0, where the clamp at -100 (loss 100) is visible.
  Axis right{panel_w + L, T, panel_w - L - R, h - T - B, -60, 0, 0, 120};
  frame(right, "the clamp: log(p) >= -100 (PyTorch)", "log10 of p (target 1)", 10, 20,
        [](double v) { return fmt::format("1e{:g}", v); });
  cairo_set_source_rgb(cr, 0.8, 0.1, 0.1);
  cairo_set_line_width(cr, 1.5);
  const double dash[] = {6, 4};
  cairo_set_dash(cr, dash, 2, 0);
  cairo_move_to(cr, right.px, right.Y(100));
  cairo_line_to(cr, right.px + right.pw, right.Y(100));
  cairo_stroke(cr);
  const double knee = -100.0 / std::log(10.0);  // p = e^-100 = 10^-43.43
  cairo_move_to(cr, right.X(knee), right.py);
  cairo_line_to(cr, right.X(knee), right.py + right.ph);
  cairo_stroke(cr);
  cairo_set_dash(cr, nullptr, 0, 0);
  text(cr, right.X(-41), right.Y(106), "loss capped at 100 (log clamped at -100)", 11);
  text(cr, right.X(knee) + 4, right.Y(10), "p = e^-100 = 3.7e-44", 11);
  curve(right, [](double lg) { return bce_loss(std::pow(10.0, lg), 1); }, 0.12, 0.47, 0.71);
}

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

}  // namespace

Result<std::string> render_image_png(const std::uint8_t* pixels, std::int64_t h, std::int64_t w, int scale) {
  if (h < 1 || w < 1 || scale < 1 || h * scale > 16000 || w * scale > 16000)
    return invalid_argument(fmt::format("image {} x {} at scale {} out of range", h, w, scale));
  auto canvas = make_canvas(static_cast<int>(w * scale), static_cast<int>(h * scale));
  if (!canvas.ok()) return canvas.status();
  cairo_t* cr = canvas->cr.get();
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      const double v = pixels[y * w + x] / 255.0;
      cairo_set_source_rgb(cr, v, v, v);
      cairo_rectangle(cr, static_cast<double>(x * scale), static_cast<double>(y * scale), scale, scale);
      cairo_fill(cr);
    }
  return to_png(*canvas);
}

namespace {
struct PngReader {
  const std::uint8_t* p;
  std::size_t left;
};
extern "C" cairo_status_t read_png_bytes(void* closure, unsigned char* data, unsigned int length) {
  auto* r = static_cast<PngReader*>(closure);
  if (length > r->left) return CAIRO_STATUS_READ_ERROR;
  std::memcpy(data, r->p, length);
  r->p += length, r->left -= length;
  return CAIRO_STATUS_SUCCESS;
}
}  // namespace

Result<GrayImage> read_png_gray(const std::string& path) {
  auto bytes = io::read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  const std::uint8_t* b = bytes->data();
  const std::size_t n = bytes->size();
  static const std::uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  // Signature, then the IHDR chunk: length 13, "IHDR", width, height (big-endian).
  if (n < 33 || std::memcmp(b, kSig, 8) != 0 || std::memcmp(b + 12, "IHDR", 4) != 0)
    return data_loss(fmt::format("{}: not a PNG file (expected the PNG signature and an IHDR chunk)", path));
  auto be32 = [&](std::size_t o) {
    return (std::uint32_t{b[o]} << 24) | (std::uint32_t{b[o + 1]} << 16) | (std::uint32_t{b[o + 2]} << 8) | b[o + 3];
  };
  const std::uint32_t w = be32(16), h = be32(20);
  if (w < 1 || h < 1 || w > 4096 || h > 4096)
    return data_loss(fmt::format("{}: a {} x {} image; expected 1 to 4096 pixels a side", path, w, h));
  PngReader reader{b, n};
  SurfacePtr s(cairo_image_surface_create_from_png_stream(read_png_bytes, &reader));
  if (cairo_surface_status(s.get()) != CAIRO_STATUS_SUCCESS)
    return data_loss(fmt::format("{}: cannot decode the PNG: {}", path, cairo_status_to_string(cairo_surface_status(s.get()))));
  cairo_surface_flush(s.get());
  const cairo_format_t f = cairo_image_surface_get_format(s.get());
  const int sw = cairo_image_surface_get_width(s.get()), sh = cairo_image_surface_get_height(s.get());
  const int stride = cairo_image_surface_get_stride(s.get());
  const unsigned char* data = cairo_image_surface_get_data(s.get());
  if (sw != static_cast<int>(w) || sh != static_cast<int>(h) || !data || (f != CAIRO_FORMAT_ARGB32 && f != CAIRO_FORMAT_RGB24 && f != CAIRO_FORMAT_A8))
    return data_loss(fmt::format("{}: the decoded PNG is not a {} x {} image of a known pixel format", path, w, h));
  GrayImage g;
  g.height = h, g.width = w;
  g.pixels.resize(static_cast<std::size_t>(w) * h);
  for (int y = 0; y < sh; ++y) {
    const unsigned char* row = data + static_cast<std::ptrdiff_t>(y) * stride;
    for (int x = 0; x < sw; ++x) {
      double v;
      if (f == CAIRO_FORMAT_A8) {
        v = row[x];
      } else {  // native-endian 0xAARRGGBB, premultiplied: the colour over black as it is
        std::uint32_t px;
        std::memcpy(&px, row + 4 * x, 4);
        v = 0.299 * ((px >> 16) & 255) + 0.587 * ((px >> 8) & 255) + 0.114 * (px & 255);
      }
      g.pixels[static_cast<std::size_t>(y) * w + static_cast<std::size_t>(x)] = static_cast<std::uint8_t>(std::lround(std::min(v, 255.0)));
    }
  }
  return g;
}

Result<std::string> render_bce_curve(ImageFormat format) {
  constexpr int kW = 1000, kH = 420;
  if (format == ImageFormat::kPng) {
    auto canvas = make_canvas(kW, kH);
    if (!canvas.ok()) return canvas.status();
    draw_bce_curve(canvas->cr.get(), kW, kH);
    return to_png(*canvas);
  }
  std::string out;
  SurfacePtr surface(cairo_svg_surface_create_for_stream(append_bytes, &out, kW, kH));
  if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS) return resource_exhausted("cairo: cannot create an SVG surface");
  {
    ContextPtr cr(cairo_create(surface.get()));
    draw_bce_curve(cr.get(), kW, kH);
  }
  cairo_surface_finish(surface.get());
  if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS) return internal_error("cairo: SVG encoding failed");
  return out;
}

}  // namespace xent::train
