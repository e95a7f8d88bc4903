// test_features.cc: feature datasets: the CSV reader (xent/io/csv.h) on hand-written tables, good
// and hostile; the standardisation a model records (against a long-double mean and std); the
// normalization's round trip through the model file, old files loading as pixels/255, and a
// trainer run on float rows agreeing with the same run on the rows standardised by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "xent/io/csv.h"
#include "xent/io/safetensors.h"
#include "xent/train/model.h"
#include "xent/train/train.h"

namespace xent {
namespace {

using namespace ::xent::io;
using namespace ::xent::train;

Result<CsvFeatures> csv(const std::string& text, const std::string& label_column = "", bool require = true) {
  CsvFeatureOptions o;
  o.label_column = label_column;
  o.require_label = require;
  return parse_csv_features(reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), "t.csv", o);
}

void expect_refused(const std::string& text, const std::string& fragment, const std::string& label_column = "") {
  auto r = csv(text, label_column);
  ASSERT_FALSE(r.ok()) << "accepted: " << text;
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().message();
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(fragment), std::string::npos) << m;
  EXPECT_NE(m.find("t.csv"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
}

// A label column with any field that is not a number holds class names: every field is a name,
// the classes are the distinct names in byte order, and the labels index them.
TEST(Csv, LabelsGivenAsClassNames) {
  auto r = csv("x,species\n1,setosa\n2,virginica\n3,setosa\n4,\"versi, color\"\n5,3\n", "species");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->label_names, (std::vector<std::string>{"3", "setosa", "versi, color", "virginica"}));
  EXPECT_EQ(r->labels, (std::vector<std::int32_t>{1, 3, 1, 2, 0}));
  EXPECT_EQ(r->features, (std::vector<float>{1, 2, 3, 4, 5}));
  // Numbers stay numbers: no names, the values themselves.
  auto numbers = csv("x,label\n1,4\n2,+0\n3,4\n");
  ASSERT_TRUE(numbers.ok()) << numbers.status().message();
  EXPECT_TRUE(numbers->label_names.empty());
  EXPECT_EQ(numbers->labels, (std::vector<std::int32_t>{4, 0, 4}));
  // Names are compared as bytes: "Cat" and "cat" are two classes, UTF-8 sorts after ASCII.
  auto bytes = csv("x,label\n1,cat\n2,Cat\n3,\xC3\xA9t\xC3\xA9\n4,cat\n");
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  EXPECT_EQ(bytes->label_names, (std::vector<std::string>{"Cat", "cat", "\xC3\xA9t\xC3\xA9"}));
  EXPECT_EQ(bytes->labels, (std::vector<std::int32_t>{1, 0, 2, 1}));
}

TEST(Csv, ReadsFeaturesAndLabelsByNameOrIndex) {
  const std::string t = "\xEF\xBB\xBF" "a,\"b, quoted\",label\r\n1.5,-2,0\r\n\n+3e-1, 4 ,2\r\n\"5\",3e38,1";
  auto r = csv(t);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->n, 3);
  EXPECT_EQ(r->d, 2);
  EXPECT_EQ(r->feature_names, (std::vector<std::string>{"a", "b, quoted"}));
  EXPECT_EQ(r->label_name, "label");
  EXPECT_EQ(r->labels, (std::vector<std::int32_t>{0, 2, 1}));
  EXPECT_EQ(r->features, (std::vector<float>{1.5f, -2.0f, 0.3f, 4.0f, 5.0f, 3e38f}));
  // By index (0-based) and by name: the same table seen with "a" as the label.
  auto by_index = csv("a,b\n1,2.5\n0,3\n", "0");
  ASSERT_TRUE(by_index.ok()) << by_index.status().message();
  EXPECT_EQ(by_index->labels, (std::vector<std::int32_t>{1, 0}));
  EXPECT_EQ(by_index->features, (std::vector<float>{2.5f, 3.0f}));
  auto by_name = csv("a,b\n1,2.5\n0,3\n", "a");
  ASSERT_TRUE(by_name.ok());
  EXPECT_EQ(by_name->features, by_index->features);
  // A column named like an index wins over the index.
  auto named_digit = csv("1,0\n7,3\n", "1");
  ASSERT_TRUE(named_digit.ok()) << named_digit.status().message();
  EXPECT_EQ(named_digit->labels, (std::vector<std::int32_t>{7}));
  // Rows to predict: no label column at all.
  auto unlabeled = csv("x,y\n1,2\n", "", false);
  ASSERT_TRUE(unlabeled.ok()) << unlabeled.status().message();
  EXPECT_FALSE(unlabeled->has_labels);
  EXPECT_EQ(unlabeled->d, 2);
  EXPECT_TRUE(unlabeled->labels.empty());
}

TEST(Csv, RefusesBadTablesWithOneLine) {
  expect_refused("", "empty");
  expect_refused("a,label\n", "no data rows");
  expect_refused("a,b\n1,2\n", "no label column 'label'");
  expect_refused("a,b\n1,2\n", "at index 5", "5");
  expect_refused("a,b\n1,2\n", "no label column 'zz'", "zz");
  expect_refused("label\n1\n", "at least one feature column");
  expect_refused("label,label,x\n1,1,2\n", "2 columns are named 'label'");
  expect_refused("a,label\n1,0\n1,2,3\n", "data row 2 has 3 fields, the header has 2");
  expect_refused("a,label\n1,0\n4\n", "data row 2 has 1 fields");
  expect_refused("a,label\nx1,0\n", "column 0 ('a'): expected a finite number");
  expect_refused("a,label\nnan,0\n", "found 'nan'");
  expect_refused("a,label\n-inf,0\n", "found '-inf'");
  expect_refused("a,label\n1e39,0\n", "float32's range");
  expect_refused("a,label\n1e400,0\n", "float32's range");
  expect_refused("a,label\n0x10,0\n", "found '0x10'");
  expect_refused("a,label\n,0\n", "empty field");
  expect_refused("a,label\n1,\n", "empty field");
  expect_refused("a,label\n1,-1\n", "class label in [0, 2^31), found '-1'");
  expect_refused("a,label\n1,2147483648\n", "found '2147483648'");
  expect_refused("a,label\n1,1.5\n", "expected an integer class label, found '1.5'");
  // A numeric column is checked after the last row; the message names the row where the bad value
  // first appeared.
  expect_refused("a,label\n1,0\n2,1e400\n3,1e400\n", "data row 2, column 1 ('label'): expected an integer class label");
  expect_refused("a,label\n1,0\n2,+7\n3,-0.5\n", "data row 3, column 1 ('label')");
  expect_refused("a,label\n1,\"0\n", "not closed");
  expect_refused("a,label\n1\"2,0\n", "malformed CSV");
  expect_refused("a,label\n\x01\n,0\n", "found '\\x01'");
  // A hostile field is shown escaped, on one line.
  expect_refused("a,label\n\"1\n\x1b[2J\",0\n", "'1\\x0a\\x1b[2J'");
  // Underflow is a tiny number, not an error.
  auto tiny = csv("a,label\n1e-400,0\n");
  ASSERT_TRUE(tiny.ok()) << tiny.status().message();
  EXPECT_EQ(tiny->features[0], 0.0f);
}

TEST(Normalization, StandardizationMatchesLongDouble) {
  const std::int64_t n = 37, D = 4;
  std::vector<float> x(static_cast<std::size_t>(n * D));
  for (std::int64_t i = 0; i < n; ++i) {
    x[static_cast<std::size_t>(i * D + 0)] = 1000.0f + 0.25f * static_cast<float>(i % 7);
    x[static_cast<std::size_t>(i * D + 1)] = -3.5f;  // constant: std 0 -> 1
    x[static_cast<std::size_t>(i * D + 2)] = static_cast<float>(std::sin(static_cast<double>(i))) * 1e-3f;
    x[static_cast<std::size_t>(i * D + 3)] = static_cast<float>(i * i);
  }
  SoftmaxModel m;
  m.features = D;
  ASSERT_TRUE(set_normalization(&m, Normalization::kStandardize, x.data(), n).ok());
  ASSERT_EQ(m.input_mean.size(), static_cast<std::size_t>(D));
  for (std::int64_t k = 0; k < D; ++k) {
    long double s = 0, ss = 0;
    for (std::int64_t i = 0; i < n; ++i) s += x[static_cast<std::size_t>(i * D + k)];
    const long double mean = s / n;
    for (std::int64_t i = 0; i < n; ++i) {
      const long double d = x[static_cast<std::size_t>(i * D + k)] - mean;
      ss += d * d;
    }
    const long double sd = std::sqrt(ss / n);
    EXPECT_EQ(m.input_mean[static_cast<std::size_t>(k)], static_cast<float>(mean)) << k;
    EXPECT_EQ(m.input_std[static_cast<std::size_t>(k)], sd == 0 ? 1.0f : static_cast<float>(sd)) << k;
  }
  std::vector<float> out(static_cast<std::size_t>(D));
  normalize_features(m, x.data() + 5 * D, out.data());
  for (std::int64_t k = 0; k < D; ++k)
    EXPECT_EQ(out[static_cast<std::size_t>(k)],
              (x[static_cast<std::size_t>(5 * D + k)] - m.input_mean[static_cast<std::size_t>(k)]) / m.input_std[static_cast<std::size_t>(k)]);
  EXPECT_EQ(out[1], 0.0f);  // the constant feature
  ASSERT_TRUE(set_normalization(&m, Normalization::kNone, x.data(), n).ok());
  EXPECT_TRUE(m.input_mean.empty());
  normalize_features(m, x.data() + 5 * D, out.data());
  EXPECT_EQ(out[3], 25.0f);
}

SoftmaxModel small_model(Normalization kind) {
  SoftmaxModel m;
  m.features = 3, m.classes = 2, m.height = 1, m.width = 3;
  m.weight = {1, 2, 3, 4, 5, 6};
  m.bias = {0.5f, -0.5f};
  m.class_names = {"no", "yes"};
  const float x[6] = {1, 10, 100, 3, 10, 300};
  EXPECT_TRUE(set_normalization(&m, kind, x, 2).ok());
  return m;
}

TEST(Normalization, RoundTripsThroughTheModelFile) {
  for (Normalization kind : {Normalization::kPixels, Normalization::kNone, Normalization::kStandardize}) {
    const SoftmaxModel m = small_model(kind);
    const std::string bytes = serialize_model(m).value();
    auto r = parse_model(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "m");
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->normalization, kind);
    EXPECT_EQ(r->input_mean, m.input_mean);
    EXPECT_EQ(r->input_std, m.input_std);
    EXPECT_EQ(r->weight, m.weight);
  }
  // Models written before the field: no "normalization" at all loads as pixels / 255.
  const SoftmaxModel m = small_model(Normalization::kPixels);
  std::vector<float> wt = {1, 3, 5, 2, 4, 6};
  const std::string old = serialize_safetensors(
      {{"format", "xent.softmax_regression"}}, {{"weight", "F32", {2, 3}, wt.data(), 24}, {"bias", "F32", {2}, m.bias.data(), 8}}).value();
  auto r = parse_model(reinterpret_cast<const std::uint8_t*>(old.data()), old.size(), "old");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->normalization, Normalization::kPixels);
}

TEST(Normalization, RefusesInconsistentFiles) {
  const SoftmaxModel m = small_model(Normalization::kStandardize);
  auto refused = [](const std::map<std::string, std::string>& meta, const std::vector<SafetensorsTensorRef>& t,
                    const std::string& fragment) {
    const std::string b = serialize_safetensors(meta, t).value();
    auto r = parse_model(reinterpret_cast<const std::uint8_t*>(b.data()), b.size(), "bad");
    ASSERT_FALSE(r.ok()) << fragment;
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  };
  const float w[6] = {}, b[2] = {}, zero[3] = {0, 0, 0}, nan3[3] = {NAN, 0, 0};
  std::vector<SafetensorsTensorRef> base = {{"weight", "F32", {2, 3}, w, 24}, {"bias", "F32", {2}, b, 8}};
  refused({{"normalization", "log"}}, base, "must be");
  refused({{"normalization", "standardize"}}, base, "needs tensor \"input_mean\"");
  auto with = base;
  with.push_back({"input_mean", "F32", {3}, m.input_mean.data(), 12});
  with.push_back({"input_std", "F32", {2}, m.input_std.data(), 8});
  refused({{"normalization", "standardize"}}, with, "needs tensor \"input_std\" F32 [3]");
  with.back() = {"input_std", "F32", {3}, zero, 12};
  refused({{"normalization", "standardize"}}, with, "std > 0");
  with.back() = {"input_std", "F32", {3}, m.input_std.data(), 12};
  with[2] = {"input_mean", "F32", {3}, nan3, 12};
  refused({{"normalization", "standardize"}}, with, "finite");
}

// Training on float rows with kStandardize gives the same bits as training with kNone on rows
// standardised beforehand by normalize_features (one conversion path), and the evaluation and
// logits refuse the wrong kind of rows.
TEST(FloatRows, StandardizedTrainingEqualsPrestandardizedRows) {
  const std::int64_t n = 300, D = 6, C = 3;
  LabeledImages raw;
  raw.n = n, raw.height = 1, raw.width = D, raw.floats = true;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t y = static_cast<std::int32_t>(i % C);
    raw.labels.push_back(y);
    for (std::int64_t k = 0; k < D; ++k)
      raw.values.push_back(50.0f + 10.0f * static_cast<float>(k) + 3.0f * static_cast<float>(y == k % C) +
                           static_cast<float>(std::cos(static_cast<double>(i * D + k))));
  }
  TrainOptions o;
  o.epochs = 3, o.batch_size = 64, o.threads = 2;
  auto a = init_train_state(1, D, C, o);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(set_normalization(&a->model, Normalization::kStandardize, raw.values.data(), n).ok());
  LabeledImages pre;
  pre.n = n, pre.height = 1, pre.width = D, pre.floats = true, pre.labels = raw.labels, pre.values = raw.values;
  for (std::int64_t i = 0; i < n; ++i) normalize_features(a->model, raw.values.data() + i * D, pre.values.data() + i * D);
  auto b = init_train_state(1, D, C, o);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(set_normalization(&b->model, Normalization::kNone, nullptr, 0).ok());
  ASSERT_TRUE(train_softmax_regression(raw, raw, o, *a, {}, nullptr).ok());
  ASSERT_TRUE(train_softmax_regression(pre, pre, o, *b, {}, nullptr).ok());
  EXPECT_EQ(a->model.weight, b->model.weight);
  EXPECT_EQ(a->model.bias, b->model.bias);
  EXPECT_GT(a->history.back().test_accuracy, 0.9);
  // The same bits with 1 thread.
  o.threads = 1;
  auto c = init_train_state(1, D, C, o);
  ASSERT_TRUE(set_normalization(&c->model, Normalization::kStandardize, raw.values.data(), n).ok());
  ASSERT_TRUE(train_softmax_regression(raw, raw, o, *c, {}, nullptr).ok());
  EXPECT_EQ(a->model.weight, c->model.weight);
  // Wrong kinds.
  Evaluation ev;
  LabeledImages bytes;
  bytes.n = 1, bytes.height = 1, bytes.width = D, bytes.pixels = ByteBuffer(D), bytes.labels = {0};
  Status s = evaluate_model(a->model, bytes, 1, &ev);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("unsigned-byte pixels, but the model takes float features"), std::string::npos) << s.message();
  std::vector<float> z(C);
  EXPECT_FALSE(compute_logits(a->model, bytes.pixels.data(), 1, 1, z.data()).ok());
  EXPECT_TRUE(compute_logits(a->model, raw.values.data(), 1, 1, z.data()).ok());
}

}  // namespace
}  // namespace xent
