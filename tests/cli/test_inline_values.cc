// test_inline_values.cc: the nested-list literal parser behind `xent explain --logits "[[...]]"`
// (cli/ops/inline_values.h): shapes, number forms, and errors with their character positions.
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "inline_values.h"

namespace xent::cli {
namespace {

InlineArray ok(const std::string& text) {
  Result<InlineArray> r = parse_inline_array(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().message();
  return r.ok() ? r.value() : InlineArray{};
}

void bad(const std::string& text, const std::string& fragment) {
  Result<InlineArray> r = parse_inline_array(text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_NE(r.status().message().find(fragment), std::string::npos)
      << text << " -> " << r.status().message() << "\nexpected: " << fragment;
}

TEST(InlineValues, Shapes) {
  EXPECT_EQ(ok("7").shape, Shape{});
  EXPECT_EQ(ok("[1, 2, 3]").shape, Shape{3});
  InlineArray a = ok(" [[1,2,3], [2,4,6]] ");
  EXPECT_EQ(a.shape, (Shape{2, 3}));
  EXPECT_EQ(a.values, (std::vector<double>{1, 2, 3, 2, 4, 6}));
  EXPECT_TRUE(a.all_integers);
  EXPECT_EQ(a.integers, (std::vector<std::int64_t>{1, 2, 3, 2, 4, 6}));
  EXPECT_EQ(ok("[]").shape, Shape{0});
  EXPECT_EQ(ok("[[], []]").shape, (Shape{2, 0}));
  EXPECT_EQ(ok("[[[1],[2]],[[3],[4]],]").shape, (Shape{2, 2, 1}));
  EXPECT_EQ(ok("[1, 2,]").shape, Shape{2});
  EXPECT_EQ(ok("[[[[[[[[1]]]]]]]]").shape.rank(), 8);
}

TEST(InlineValues, Numbers) {
  InlineArray a = ok("[-1.5, 2e3, .5, 1., +4, inf, -inf, nan, 1e400, -0]");
  ASSERT_EQ(a.values.size(), 10u);
  EXPECT_EQ(a.values[0], -1.5);
  EXPECT_EQ(a.values[1], 2000);
  EXPECT_EQ(a.values[2], 0.5);
  EXPECT_EQ(a.values[3], 1);
  EXPECT_EQ(a.values[4], 4);
  EXPECT_TRUE(std::isinf(a.values[5]) && a.values[5] > 0);
  EXPECT_TRUE(std::isinf(a.values[6]) && a.values[6] < 0);
  EXPECT_TRUE(std::isnan(a.values[7]));
  EXPECT_TRUE(std::isinf(a.values[8]));
  EXPECT_FALSE(a.all_integers);
  EXPECT_TRUE(a.integers.empty());
  EXPECT_EQ(ok("[9223372036854775807]").integers[0], INT64_MAX);
}

TEST(InlineValues, ErrorsNameThePosition) {
  bad("", "at character 0: expected a number or '[', found the end of the text");
  bad("[1, 2", "at character 5: expected ',' or ']', found the end of the text");
  bad("[1, x]", "at character 4: expected a number or '['");
  bad("[[1, 2], [3]]", "at character 9: expected a list of 2 entries");
  bad("[[1, 2], 3]", "at character 9: expected '['");
  bad("[1, [2]]", "at character 4: expected a number");
  bad("[[1], []]", "at character 6");
  bad("[1 2]", "at character 3: expected ',' or ']'");
  bad("[1,,2]", "at character 3");
  bad("[1] [2]", "at character 4: expected the end of the array");
  bad("[1e]", "expected digits in the exponent");
  bad("[1.2.3]", "at character 4");
  bad("[12abc]", "at character 3");
  bad("[infinite]", "at character 1");
  bad("[99999999999999999999]", "fits in 64 bits");
  bad("[[[[[[[[[1]]]]]]]]]", "at most 8 nested lists");
  bad("'1'", "found byte 0x27");
  bad(std::string("[1\0]", 4), "found byte 0x00");
}

TEST(InlineValues, Limits) {
  InlineLimits l;
  l.max_elements = 3;
  EXPECT_TRUE(parse_inline_array("[1,2,3]", l).ok());
  EXPECT_FALSE(parse_inline_array("[1,2,3,4]", l).ok());
  l.max_chars = 4;
  EXPECT_FALSE(parse_inline_array("[1,2]", l).ok());
}

}  // namespace
}  // namespace xent::cli
