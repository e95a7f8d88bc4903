// cases.cc: reads tests/cases/cases.json (its path compiled in as XENT_CASES_JSON) into the Table of
// cases.h, checking every field's type and value; any problem ends the program with one line.
#include "cases/cases.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace xent::test::cases {
namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "tests/cases: %s: %s\n", XENT_CASES_JSON, what.c_str());
  std::exit(1);
}

Shape shape_of(const nlohmann::json& j, const std::string& where) {
  if (!j.is_array()) fail(where + ": expected a shape (a list of sizes), found " + j.dump());
  Shape s;
  for (const auto& d : j) {
    if (!d.is_number_integer() || d.get<std::int64_t>() < 0) fail(where + ": expected sizes >= 0, found " + j.dump());
    s.push_back(d.get<std::int64_t>());
  }
  return s;
}

const nlohmann::json& field(const nlohmann::json& j, const char* name) {
  if (!j.contains(name)) fail(std::string("no field '") + name + "'");
  return j.at(name);
}

// The "softmax", "class_losses" and "elementwise_losses" lists of object j (the top level, or
// "threads"); `where` prefixes the field names in messages.
void read_lists(const nlohmann::json& j, const std::string& where, std::vector<SoftmaxCase>* softmax,
                std::vector<Shape>* class_losses, std::vector<Shape>* elementwise_losses) {
  for (const auto& c : field(j, "softmax")) {
    SoftmaxCase s{shape_of(field(c, "shape"), where + "softmax"), field(c, "dims").get<std::vector<std::int64_t>>()};
    const auto rank = static_cast<std::int64_t>(s.shape.size());
    for (std::int64_t d : s.dims)
      if (rank > 0 ? (d < -rank || d >= rank) : (d != 0 && d != -1))
        fail(where + "softmax: dim out of range in " + c.dump());
    softmax->push_back(std::move(s));
  }
  for (const auto& [name, out] :
       {std::pair{"class_losses", class_losses}, std::pair{"elementwise_losses", elementwise_losses}}) {
    for (const auto& c : field(j, name)) {
      Shape s = shape_of(c, where + name);
      if (s.empty() || numel(s) == 0)
        fail(where + name + ": expected a non-empty shape of rank >= 1, found " + c.dump());
      out->push_back(std::move(s));
    }
  }
  if (softmax->empty() || class_losses->empty() || elementwise_losses->empty())
    fail(where + "softmax, class_losses or elementwise_losses is empty: a suite would test nothing");
}

Table load() {
  std::ifstream in(XENT_CASES_JSON);
  if (!in) fail("cannot open it");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail("not a JSON object");
  Table t;
  try {
    t.dtypes = field(j, "dtypes").get<std::vector<std::string>>();
    for (const auto& r : field(j, "reductions").get<std::vector<std::string>>()) {
      if (r == "none") t.reductions.push_back(Reduction::kNone);
      else if (r == "mean") t.reductions.push_back(Reduction::kMean);
      else if (r == "sum") t.reductions.push_back(Reduction::kSum);
      else fail("reductions: expected none, mean or sum, found '" + r + "'");
    }
    t.label_smoothing = field(j, "label_smoothing").get<std::vector<double>>();
    t.gradcheck_max_elements = field(j, "gradcheck_max_elements").get<std::int64_t>();
    read_lists(j, "", &t.softmax, &t.class_losses, &t.elementwise_losses);
    read_lists(field(j, "threads"), "threads.", &t.threads_softmax, &t.threads_class_losses,
               &t.threads_elementwise_losses);
  } catch (const nlohmann::json::exception& e) {
    fail(e.what());
  }
  if (t.dtypes.empty() || t.reductions.empty() || t.label_smoothing.empty())
    fail("dtypes, reductions or label_smoothing is empty: a suite would test nothing");
  return t;
}

}  // namespace

const Table& table() {
  static const Table t = load();
  return t;
}

bool has_dtype(const std::string& dtype) {
  for (const auto& d : table().dtypes)
    if (d == dtype) return true;
  return false;
}

std::int64_t numel(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

}  // namespace xent::test::cases
