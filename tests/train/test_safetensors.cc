// test_safetensors.cc: the safetensors parser on hand-written files (the oracle is the format
// description, not xent's writer), malformed and hostile headers, and model round trips.
#include <gtest/gtest.h>

#include <cstring>

#include "train_test_util.h"
#include "xent/io/safetensors.h"
#include "xent/train/model.h"

namespace xent {
namespace {

using namespace ::xent::io;
using namespace ::xent::train;

// header JSON + data, laid out by hand.
std::vector<std::uint8_t> file(const std::string& header, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> b(8);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Result<SafetensorsFile> parse(const std::vector<std::uint8_t>& b) { return parse_safetensors(b.data(), b.size(), "m.st"); }

void expect_error(const std::vector<std::uint8_t>& b, const std::string& fragment) {
  auto r = parse(b);
  ASSERT_FALSE(r.ok()) << "accepted; expected an error with '" << fragment << "'";
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("m.st"), std::string::npos) << r.status().message();
}

TEST(Safetensors, ParsesAHandWrittenFile) {
  // a: F32 [2] = {1, -2}; b: U8 [3] = {7, 8, 9}.
  std::vector<std::uint8_t> data(8);
  const float a[2] = {1.0f, -2.0f};
  std::memcpy(data.data(), a, 8);
  data.insert(data.end(), {7, 8, 9});
  auto r = parse(file(R"({"__metadata__":{"k":"v"},"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]},)"
                      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  )",
                      data));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->metadata.at("k"), "v");
  ASSERT_EQ(r->tensors.size(), 2u);
  EXPECT_EQ(r->tensors[0].name, "a");  // file order
  const SafetensorsEntry* b = r->find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->shape, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(b->size, 3u);
  auto bytes = file(R"({"__metadata__":{"k":"v"},"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]},)"
                    R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  )",
                    data);
  EXPECT_EQ(bytes[b->begin], 7);
  float back[2];
  std::memcpy(back, bytes.data() + r->find("a")->begin, 8);
  EXPECT_EQ(back[1], -2.0f);
}

TEST(Safetensors, WriterOutputParsesAndIsAligned) {
  const float w[3] = {1, 2, 3};
  const std::uint64_t u[1] = {42};
  std::string s = serialize_safetensors({{"x", "y"}}, {{"w", "F32", {3}, w, 12}, {"u", "U64", {1}, u, 8}}).value();
  std::uint64_t hlen;
  std::memcpy(&hlen, s.data(), 8);
  EXPECT_EQ(hlen % 8, 0u);
  EXPECT_EQ(s.size(), 8 + hlen + 20);
  std::vector<std::uint8_t> b(s.begin(), s.end());
  auto r = parse(b);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->metadata.at("x"), "y");
  std::uint64_t back;
  std::memcpy(&back, b.data() + r->find("u")->begin, 8);
  EXPECT_EQ(back, 42u);
}

TEST(Safetensors, MalformedFiles) {
  expect_error({1, 2, 3}, "at least 8 bytes");
  expect_error({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'}, "exceeds the limit");
  {
    auto b = file("{}", {});
    b[0] = 200;  // header length beyond the file
    expect_error(b, "truncated");
  }
  expect_error(file("[1]", {}), "JSON object");
  expect_error(file("{\"a\":", {}), "not valid JSON");
  expect_error(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    std::vector<std::uint8_t>(8)),
               "repeats the key \"a\"");
  expect_error(file(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", std::vector<std::uint8_t>(4)), "unknown dtype");
  expect_error(file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::vector<std::uint8_t>(4)), "non-negative");
  expect_error(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::vector<std::uint8_t>(4)), "needs 8 bytes");
  expect_error(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::vector<std::uint8_t>(2)), "outside");
  expect_error(file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", std::vector<std::uint8_t>(4)), "outside");
  expect_error(file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                    std::vector<std::uint8_t>(6)),
               "overlap");
  expect_error(file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", std::vector<std::uint8_t>(4)), "hole");
  expect_error(file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", std::vector<std::uint8_t>(4)), "cover 2");
  expect_error(file(R"({"__metadata__":{"k":1}})", {}), "must be a string");
  expect_error(file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"x":1}})", std::vector<std::uint8_t>(2)),
               "unexpected field");
  expect_error(file(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,2]}})",
                    std::vector<std::uint8_t>(2)),
               "overflows");
  expect_error(file("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}", {}), "nests deeper");
}

TEST(Safetensors, EveryTruncationFails) {
  const float w[2] = {1, 2};
  std::string s = serialize_safetensors({}, {{"w", "F32", {2}, w, 8}}).value();
  for (std::size_t n = 0; n < s.size(); ++n) {
    auto r = parse_safetensors(reinterpret_cast<const std::uint8_t*>(s.data()), n, "m.st");
    EXPECT_FALSE(r.ok()) << "accepted a file cut at " << n;
  }
}

SoftmaxModel small_model() {
  SoftmaxModel m;
  m.features = 6, m.classes = 3, m.height = 2, m.width = 3;
  for (int i = 0; i < 18; ++i) m.weight.push_back(0.25f * static_cast<float>(i) - 1.0f);
  m.bias = {0.5f, -0.125f, 3.0f};
  m.class_names = {"cat", "dog \"quoted\"", "ünïcode"};
  m.info = {{"epochs", "7"}, {"test_accuracy", "0.9"}};
  return m;
}

TEST(Model, RoundTripIsExactAndDeterministic) {
  test::TempDir dir;
  const SoftmaxModel m = small_model();
  ASSERT_TRUE(save_model(dir / "m.safetensors", m).ok());
  auto back = load_model(dir / "m.safetensors");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->weight, m.weight);
  EXPECT_EQ(back->bias, m.bias);
  EXPECT_EQ(back->class_names, m.class_names);
  EXPECT_EQ(back->height, 2);
  EXPECT_EQ(back->width, 3);
  EXPECT_EQ(back->info.at("epochs"), "7");
  EXPECT_EQ(serialize_model(*back).value(), serialize_model(m).value());
  // No temporary left behind.
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path)) ++files;
  EXPECT_EQ(files, 1);
}

TEST(Model, RejectsInconsistentModels) {
  const float w[6] = {};
  const float b[3] = {};
  auto check = [](const std::string& bytes, const std::string& fragment) {
    auto r = parse_model(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "m.st");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  };
  check(serialize_safetensors({}, {{"W", "F32", {3, 2}, w, 24}}).value(), "\"W\" and \"b\"");
  check(serialize_safetensors({}, {{"W", "F32", {3, 2}, w, 24}, {"b", "F32", {3}, b, 12}}).value(), "to match W");
  check(serialize_safetensors({}, {{"W", "F32", {6}, w, 24}, {"b", "F32", {3}, b, 12}}).value(), "[D, C]");
  check(serialize_safetensors({{"input_shape", "[2, 2]"}}, {{"W", "F32", {3, 2}, w, 24}, {"b", "F32", {2}, b, 8}}).value(),
        "input_shape");
  check(serialize_safetensors({{"class_names", "[\"a\"]"}}, {{"W", "F32", {3, 2}, w, 24}, {"b", "F32", {2}, b, 8}}).value(),
        "class_names");
  auto ok = serialize_safetensors({}, {{"W", "F32", {3, 2}, w, 24}, {"b", "F32", {2}, b, 8}}).value();
  auto r = parse_model(reinterpret_cast<const std::uint8_t*>(ok.data()), ok.size(), "m.st");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->class_names, (std::vector<std::string>{"0", "1"}));
}

}  // namespace
}  // namespace xent
