// test_npy.cc: the .npy reader and writer (include/xent/io/npy.h): round trips of every dtype and
// rank 0..8, NumPy's exact header bytes, conversions (big-endian, Fortran order, small integer
// types), and every malformed-file case, each error naming the file. Not CLI behaviour (test_cli.py).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "xent/io/npy.h"
#include "xent/softmax.h"

namespace xent {
namespace {

using namespace ::xent::io;

// A format-1.0 file: preamble + `dict` padded to a multiple of 64 + '\n', then `data`.
std::string make_npy(const std::string& dict, const std::string& data = "", int major = 1) {
  std::size_t pre = major == 1 ? 10 : 12;
  std::string d = dict;
  std::size_t total = pre + d.size() + 1;
  d.append((64 - total % 64) % 64, ' ');
  d += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  out += static_cast<char>(d.size() & 0xff);
  out += static_cast<char>((d.size() >> 8) & 0xff);
  if (major != 1) {
    out += '\0';
    out += '\0';
  }
  return out + d + data;
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

Result<NpyArray> parse(const std::string& s, const NpyReadOptions& o = {}) {
  return parse_npy(s.data(), s.size(), "test.npy", o);
}

// Expects a parse failure whose message names the file and contains `fragment`.
void expect_error(const std::string& file, const std::string& fragment, StatusCode code = StatusCode::kDataLoss,
                  const NpyReadOptions& o = {}) {
  Result<NpyArray> r = parse(file, o);
  ASSERT_FALSE(r.ok()) << "expected an error containing: " << fragment;
  EXPECT_EQ(r.status().code(), code) << r.status().message();
  EXPECT_NE(r.status().message().find("test.npy"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(fragment), std::string::npos)
      << "message: " << r.status().message() << "\nexpected fragment: " << fragment;
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << "one line";
}

std::string temp_path(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/xent_test_npy_" + std::to_string(::getpid()) + "_" + name;
}

const char* kF32Dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

// --- writing ------------------------------------------------------------------------------------

TEST(NpyHeader, MatchesNumpyBytes) {
  // np.save (NumPy 1.24) of a (2, 3) float32 array writes exactly these 128 bytes (64-byte alignment).
  std::string want = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + kF32Dict + std::string(58, ' ') + "\n";
  EXPECT_EQ(npy_header(DType::kF32, Shape{2, 3}).value(), want);
  EXPECT_EQ(want.size() % 64, 0u);
  EXPECT_NE(npy_header(DType::kI64, Shape{5}).value().find("'descr': '<i8', 'fortran_order': False, 'shape': (5,), }"),
            std::string::npos);
  EXPECT_NE(npy_header(DType::kF64, Shape{}).value().find("'shape': (), }"), std::string::npos);
  EXPECT_NE(npy_header(DType::kI32, Shape{1, 2, 3}).value().find("'<i4'"), std::string::npos);
}

TEST(NpyHeader, SixteenBitDescrs) {
  // np.save of a (2, 3) float16 array: the float32 header with '<f2' (same length).
  std::string want = std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                     "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }" + std::string(58, ' ') + "\n";
  EXPECT_EQ(npy_header(DType::kF16, Shape{2, 3}).value(), want);
  // bfloat16: '<V2', what np.save writes for an ml_dtypes.bfloat16 array (npy.h).
  EXPECT_NE(npy_header(DType::kBF16, Shape{4}).value().find("'descr': '<V2', 'fortran_order': False, 'shape': (4,), }"),
            std::string::npos);
}

template <class T>
T value_of(double v) {
  if constexpr (std::is_same_v<T, float16>) return to_float16(v);
  else if constexpr (std::is_same_v<T, bfloat16>) return to_bfloat16(v);
  else return static_cast<T>(v);
}

template <class T>
void round_trip_all_ranks(DType dt, const NpyReadOptions& o = {}) {
  for (int rank = 0; rank <= Shape::kMaxDims; ++rank) {
    std::vector<std::int64_t> dims;
    for (int d = 0; d < rank; ++d) dims.push_back(d % 3 == 0 ? 2 : (d % 3 == 1 ? 3 : 1));
    Shape shape;
    ASSERT_TRUE(Shape::from_dims(dims.data(), rank, &shape));
    std::vector<T> v(static_cast<std::size_t>(shape.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = value_of<T>(static_cast<double>(i) * 1.5 - 7);
    // In memory.
    std::string file = npy_header(dt, shape).value() + bytes_of(v);
    Result<NpyArray> r = parse(file, o);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->dtype(), dt);
    EXPECT_EQ(r->shape(), shape);
    ASSERT_EQ(r->numel(), static_cast<std::int64_t>(v.size()));
    EXPECT_EQ(std::memcmp(r->data(), v.data(), v.size() * sizeof(T)), 0);
    // Through a file.
    std::string path = temp_path("rt.npy");
    ASSERT_TRUE(write_npy(path, ConstTensorView(v.data(), dt, shape)).ok());
    Result<NpyArray> f = read_npy(path, o);
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_EQ(f->dtype(), dt);
    EXPECT_EQ(f->shape(), shape);
    EXPECT_EQ(std::memcmp(f->data(), v.data(), v.size() * sizeof(T)), 0);
    std::ifstream in(path, std::ios::binary);
    std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(on_disk, file);
    ::unlink(path.c_str());
  }
}

TEST(NpyRoundTrip, Float32AllRanks) { round_trip_all_ranks<float>(DType::kF32); }
TEST(NpyRoundTrip, Float64AllRanks) { round_trip_all_ranks<double>(DType::kF64); }
TEST(NpyRoundTrip, Int32AllRanks) { round_trip_all_ranks<std::int32_t>(DType::kI32); }
TEST(NpyRoundTrip, Int64AllRanks) { round_trip_all_ranks<std::int64_t>(DType::kI64); }
TEST(NpyRoundTrip, Float16AllRanks) { round_trip_all_ranks<float16>(DType::kF16); }
TEST(NpyRoundTrip, BFloat16AllRanksWhenAskedFor) {
  NpyReadOptions o;
  o.void2_as_bfloat16 = true;
  round_trip_all_ranks<bfloat16>(DType::kBF16, o);
}

// float16 in every byte order and layout NumPy writes: '<f2', '>f2' (swapped), Fortran order.
TEST(NpyRead, Float16ByteOrdersAndFortranOrder) {
  const std::vector<std::uint16_t> le = {0x3c00, 0xc000, 0x7c00, 0x0001, 0x7e00, 0x3555};  // 1, -2, inf, tiny, nan, ~1/3
  std::vector<std::uint16_t> be;
  for (std::uint16_t b : le) be.push_back(static_cast<std::uint16_t>(b >> 8 | b << 8));
  for (const auto& [descr, data] : {std::pair{"<f2", le}, std::pair{">f2", be}}) {
    SCOPED_TRACE(descr);
    Result<NpyArray> r =
        parse(make_npy(std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (2, 3), }", bytes_of(data)));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->dtype(), DType::kF16);
    EXPECT_EQ(std::memcmp(r->data(), le.data(), 12), 0);
    EXPECT_EQ(r->file_dtype(), std::string("'") + descr + "' (float16)");
  }
  // Fortran order: file element (i, j) at i + 2 j.
  std::vector<std::uint16_t> f = {le[0], le[3], le[1], le[4], le[2], le[5]};
  Result<NpyArray> r = parse(make_npy("{'descr': '<f2', 'fortran_order': True, 'shape': (2, 3), }", bytes_of(f)));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(std::memcmp(r->data(), le.data(), 12), 0);
  EXPECT_FLOAT_EQ(to_float(r->as<float16>()[0]), 1.0f);
  EXPECT_FLOAT_EQ(to_float(r->as<float16>()[1]), -2.0f);
  // Truncated data names the dtype and the byte counts.
  expect_error(make_npy("{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }", std::string(11, '\0')),
               "'<f2' (float16) values (12 bytes) but only 11 bytes");
}

// The bfloat16 convention (npy.h): a 2-byte void descr is bfloat16 only when asked for.
TEST(NpyRead, BFloat16VoidDescrOnlyWhenAskedFor) {
  const std::vector<std::uint16_t> le = {0x3f80, 0xc000, 0x7f80, 0x0001};  // 1, -2, inf, tiny
  std::vector<std::uint16_t> be;
  for (std::uint16_t b : le) be.push_back(static_cast<std::uint16_t>(b >> 8 | b << 8));
  NpyReadOptions ask;
  ask.void2_as_bfloat16 = true;
  for (const auto& [descr, data] :
       {std::pair{"<V2", le}, std::pair{"|V2", le}, std::pair{"=V2", le}, std::pair{">V2", be}}) {
    SCOPED_TRACE(descr);
    const std::string file =
        make_npy(std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (4,), }", bytes_of(data));
    Result<NpyArray> r = parse(file, ask);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->dtype(), DType::kBF16);
    EXPECT_EQ(std::memcmp(r->data(), le.data(), 8), 0);
    EXPECT_FLOAT_EQ(to_float(r->as<bfloat16>()[1]), -2.0f);
    // Not asked for: refused, saying what the bytes probably are and how to ask.
    expect_error(file, "2 bytes of raw data (how np.save stores ml_dtypes' bfloat16)");
    expect_error(file, "--dtype bf16");
  }
  // Other void sizes and 2-byte kinds other than 'f' stay refused even when bfloat16 is asked for.
  expect_error(make_npy("{'descr': '|V4', 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')),
               "raw or structured data", StatusCode::kDataLoss, ask);
  expect_error(make_npy("{'descr': '<V2', 'fortran_order': False, 'shape': (3,), }", std::string(5, '\0')),
               "'<V2' (bfloat16, as ml_dtypes saves it) values (6 bytes) but only 5 bytes", StatusCode::kDataLoss,
               ask);
}

TEST(NpyRoundTrip, EmptyArrays) {
  for (Shape s : {Shape{0}, Shape{3, 0}, Shape{0, 5, 2}}) {
    Result<NpyArray> r = parse(npy_header(DType::kF32, s).value());
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->shape(), s);
    EXPECT_EQ(r->numel(), 0);
  }
}

TEST(NpyWrite, MissingDirectoryIsInvalidArgument) {
  float v = 1;
  Status s = write_npy("/nonexistent-dir-xent/x.npy", ConstTensorView(&v, Shape{}));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("does not exist"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("/nonexistent-dir-xent"), std::string::npos) << s.message();
}

TEST(NpyZeros, AllocatesAndRefusesOverflow) {
  Result<NpyArray> a = NpyArray::zeros(DType::kF64, Shape{2, 3});
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a->as<double>()[i], 0.0);
  EXPECT_FALSE(NpyArray::zeros(DType::kF64, Shape{std::int64_t{1} << 62, 4}).ok());
  EXPECT_FALSE(NpyArray::zeros(DType::kF64, Shape{-1}).ok());
}

// A view of an NpyArray knows how many elements the array holds: one reshaped to need more is
// refused by the library (and by write_npy) instead of reading past the allocation.
TEST(NpyZeros, ViewsCarryTheArraysSize) {
  Result<NpyArray> a = NpyArray::zeros(DType::kF32, Shape{2, 3});
  ASSERT_TRUE(a.ok());
  Result<NpyArray> b = NpyArray::zeros(DType::kF32, Shape{2, 4});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->view().capacity, 6);
  EXPECT_EQ(a->mutable_view().capacity, 6);
  ConstTensorView x = a->view();
  EXPECT_TRUE(softmax_forward(x, -1, a->mutable_view()).ok());
  x.shape = Shape{2, 4};
  const Status s = softmax_forward(x, -1, b->mutable_view());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("6"), std::string::npos) << s.message();
  TensorView y = a->mutable_view();
  y.shape = Shape{3, 3};
  EXPECT_FALSE(softmax_forward(b->view(), -1, y).ok());
  x.shape = Shape{7};
  const std::string out = ::testing::TempDir() + "/xent_view_capacity.npy";
  std::remove(out.c_str());
  const Status w = write_npy(out, x);
  EXPECT_FALSE(w.ok());
  EXPECT_NE(w.message().find("shape [7] needs 7 elements, but the buffer holds 6"), std::string::npos) << w.message();
  EXPECT_NE(access(out.c_str(), F_OK), 0) << "a refused write left a file";
  // A 16-bit view is checked the same way.
  std::vector<std::uint16_t> h(3);
  const Status hw = write_npy(out, ConstTensorView(h.data(), DType::kBF16, Shape{4}, 3));
  EXPECT_FALSE(hw.ok());
  EXPECT_NE(hw.message().find("needs 4 elements, but the buffer holds 3"), std::string::npos) << hw.message();
  EXPECT_NE(access(out.c_str(), F_OK), 0) << "a refused write left a file";
}

// --- accepted variations ------------------------------------------------------------------------

TEST(NpyParse, AcceptsKeyOrderSpacingQuotesTrailingCommaAndVersions) {
  std::vector<float> v = {1, 2, 3, 4, 5, 6};
  const std::string data = bytes_of(v);
  for (const std::string& dict : {
           std::string("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}"),
           std::string("{ 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }"),
           std::string("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}"),
           std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }"),
       }) {
    Result<NpyArray> r = parse(make_npy(dict, data));
    ASSERT_TRUE(r.ok()) << dict << ": " << r.status().message();
    EXPECT_EQ(r->shape(), (Shape{2, 3}));
    EXPECT_EQ(r->as<float>()[5], 6.0f);
  }
  for (int major : {2, 3}) {
    Result<NpyArray> r = parse(make_npy(kF32Dict, data, major));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->as<float>()[0], 1.0f);
  }
}

TEST(NpyParse, ByteSwapsBigEndian) {
  auto swapped = [](auto x) {
    std::string s(reinterpret_cast<const char*>(&x), sizeof x);
    return std::string(s.rbegin(), s.rend());
  };
  {
    std::string data = swapped(1.5f) + swapped(-2.25f);
    Result<NpyArray> r = parse(make_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", data));
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->dtype(), DType::kF32);
    EXPECT_EQ(r->as<float>()[0], 1.5f);
    EXPECT_EQ(r->as<float>()[1], -2.25f);
  }
  {
    Result<NpyArray> r = parse(make_npy("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", swapped(0.1)));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->as<double>()[0], 0.1);
  }
  {
    Result<NpyArray> r =
        parse(make_npy("{'descr': '>i4', 'fortran_order': False, 'shape': (1,), }", swapped(std::int32_t{-7})));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->dtype(), DType::kI32);
    EXPECT_EQ(r->as<std::int32_t>()[0], -7);
  }
  {
    Result<NpyArray> r = parse(make_npy("{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }",
                                        swapped(std::int64_t{1} << 40)));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->as<std::int64_t>()[0], std::int64_t{1} << 40);
  }
  {
    Result<NpyArray> r =
        parse(make_npy("{'descr': '>i2', 'fortran_order': False, 'shape': (1,), }", swapped(std::int16_t{-300})));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->dtype(), DType::kI64);
    EXPECT_EQ(r->as<std::int64_t>()[0], -300);
  }
}

TEST(NpyParse, TransposesFortranOrder) {
  // The (2, 3) array [[0, 1, 2], [3, 4, 5]] in Fortran order is stored 0 3 1 4 2 5.
  std::vector<double> f = {0, 3, 1, 4, 2, 5};
  Result<NpyArray> r = parse(make_npy("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", bytes_of(f)));
  ASSERT_TRUE(r.ok()) << r.status().message();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(r->as<double>()[i], i);
  // (2, 3, 4): element (i, j, k) stored at i + 2 * (j + 3 * k).
  std::vector<std::int32_t> g(24);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) g[i + 2 * (j + 3 * k)] = 100 * i + 10 * j + k;
  r = parse(make_npy("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3, 4), }", bytes_of(g)));
  ASSERT_TRUE(r.ok()) << r.status().message();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_EQ(r->as<std::int32_t>()[(i * 3 + j) * 4 + k], 100 * i + 10 * j + k);
  // Rank 0 and 1 are the same in both orders; empty arrays transpose to nothing.
  r = parse(make_npy("{'descr': '<f8', 'fortran_order': True, 'shape': (2,), }", bytes_of(std::vector<double>{1, 2})));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->as<double>()[1], 2.0);
  EXPECT_TRUE(parse(make_npy("{'descr': '<f8', 'fortran_order': True, 'shape': (0, 3), }")).ok());
}

TEST(NpyParse, WidensSmallIntegerTypesToInt64) {
  struct Case {
    const char* descr;
    std::string data;
    std::vector<std::int64_t> want;
  };
  std::vector<Case> cases = {
      {"|b1", std::string("\x00\x01\x01", 3), {0, 1, 1}},
      {"|u1", std::string("\x00\x07\xff", 3), {0, 7, 255}},
      {"|i1", std::string("\x00\x07\xff", 3), {0, 7, -1}},
      {"<i2", std::string("\x01\x00\x00\x80\xff\xff", 6), {1, -32768, -1}},
      {"<u2", std::string("\x01\x00\x00\x80\xff\xff", 6), {1, 32768, 65535}},
      {"<u4", std::string("\x01\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x80", 12), {1, 4294967295LL, 2147483648LL}},
      {">u2", std::string("\x00\x01\x80\x00\xff\xff", 6), {1, 32768, 65535}},
  };
  for (const Case& c : cases) {
    Result<NpyArray> r =
        parse(make_npy(std::string("{'descr': '") + c.descr + "', 'fortran_order': False, 'shape': (3,), }", c.data));
    ASSERT_TRUE(r.ok()) << c.descr << ": " << r.status().message();
    EXPECT_EQ(r->dtype(), DType::kI64);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(r->as<std::int64_t>()[i], c.want[i]) << c.descr << " [" << i << "]";
    EXPECT_NE(r->file_dtype().find(c.descr), std::string::npos);
  }
}

// --- malformed files ----------------------------------------------------------------------------

TEST(NpyMalformed, Preamble) {
  expect_error("", "is empty");
  expect_error("\x93NUM", "truncated");
  expect_error("PK\x03\x04 zip file here", "not a NumPy .npy file");
  expect_error("hello world, not numpy", "found 'hello world,");
  std::string v = make_npy(kF32Dict, std::string(24, '\0'));
  v[6] = 4;
  expect_error(v, "unsupported .npy format version 4.0");
  v[6] = 1;
  v[7] = 1;
  expect_error(v, "version 1.1");
  expect_error(std::string("\x93NUMPY\x01", 7), "truncated");
  expect_error(std::string("\x93NUMPY\x01\x00\x10", 9), "truncated");
  expect_error(std::string("\x93NUMPY\x02\x00\x10\x00\x00", 11), "truncated");
}

TEST(NpyMalformed, HeaderLengthLies) {
  std::string f = make_npy(kF32Dict, std::string(24, '\0'));
  std::string longer = f;
  longer[8] = '\xff';
  longer[9] = '\x7f';  // 32767 bytes of header, the file is shorter
  expect_error(longer, "the header declares 32767 bytes but only");
  std::string huge = make_npy(kF32Dict, "", 2);
  huge[10] = '\x10';  // 2.0 header of ~1 MiB
  expect_error(huge, "expected at most 65536");
  std::string shorter = f;
  shorter[8] = 20;  // the dict ends mid-way
  shorter[9] = 0;
  expect_error(shorter, "malformed .npy header");
}

TEST(NpyMalformed, Dict) {
  const std::string data(24, '\0');
  auto dict_error = [&](const std::string& dict, const std::string& fragment) {
    SCOPED_TRACE(dict);
    expect_error(make_npy(dict, data), fragment);
  };
  dict_error("'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", "expected '{'");
  dict_error("{'descr': '<f4', 'fortran_order': False}", "no 'shape' key");
  dict_error("{'fortran_order': False, 'shape': (2, 3)}", "no 'descr' key");
  dict_error("{'descr': '<f4', 'shape': (2, 3)}", "no 'fortran_order' key");
  dict_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", "appears twice");
  dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", "unexpected key 'extra'");
  dict_error("{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3)}", "expected");
  dict_error("{'descr': <f4, 'fortran_order': False, 'shape': (2, 3)}", "expected a quoted dtype");
  dict_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", "structured dtypes");
  dict_error("{'descr': '<f4', 'fortran_order': false, 'shape': (2, 3)}", "expected True or False");
  dict_error("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3)}", "expected True or False");
  dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", "a list is not a tuple");
  dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", "a 1-tuple is written (n,)");
  dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}", "shape entry -3 is negative");
  dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}", "expected a non-negative integer");
  dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}", "expected ',' or ')'");
  dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", "expected ',' or '}'");
  dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} junk", "after the closing '}'");
  dict_error("{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}", "expected ',' or '}'");
  dict_error("{'descr': 'a\\x', 'fortran_order': False, 'shape': (2, 3)}", "escape sequences");
  dict_error("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
             "does not fit in a signed 64-bit integer");
}

TEST(NpyMalformed, UnsupportedDtypes) {
  for (const char* d : {"<u8", "<c8", "|O", "<U5", "|S3", "<M8", "|V4", "|f4", "f4", "<x4", "<f16", "<fx"}) {
    SCOPED_TRACE(d);
    expect_error(make_npy(std::string("{'descr': '") + d + "', 'fortran_order': False, 'shape': (1,)}",
                          std::string(8, '\0')),
                 "unsupported dtype");
  }
}

TEST(NpyMalformed, RankAndSizes) {
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", "\0\0\0\0"),
               "at most 8");
  // 2^40 * 2^40 elements: the product overflows int64.
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }"),
               "more elements than fit");
  // 2^61 float64 elements: the element count fits, the byte count does not.
  expect_error(make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }"),
               "more bytes than fit in 64 bits");
  // Within 64 bits but over the limit: refused before allocating.
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 10), }"),
               "the limit is", StatusCode::kResourceExhausted);
  NpyReadOptions small;
  small.max_bytes = 16;
  expect_error(make_npy(kF32Dict, std::string(24, '\0')), "needs 24 bytes in memory; the limit is 16",
               StatusCode::kResourceExhausted, small);
  // Widening counts: 3 uint8 become 24 bytes of int64.
  expect_error(make_npy("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", "abc"), "needs 24 bytes",
               StatusCode::kResourceExhausted, small);
}

TEST(NpyMalformed, DataLengthMustMatchTheHeader) {
  expect_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }", std::string(120, '\0')),
               "declares 1000 '<f4' (float32) values (4000 bytes) but only 120 bytes follow the header");
  expect_error(make_npy(kF32Dict, std::string(23, '\0')), "but only 23 bytes follow");
  expect_error(make_npy(kF32Dict, std::string(25, '\0')), "1 byte of trailing data");
  expect_error(make_npy(kF32Dict, ""), "but only 0 bytes follow");
}

// --- files --------------------------------------------------------------------------------------

TEST(NpyRead, FileErrors) {
  Result<NpyArray> r = read_npy("/nonexistent-xent/missing.npy");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_NE(r.status().message().find("missing.npy"), std::string::npos);
  r = read_npy("/");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("is a directory"), std::string::npos) << r.status().message();

  // The streaming reader agrees with parse_npy on a truncated file and on a lying header.
  std::string path = temp_path("trunc.npy");
  {
    std::ofstream out(path, std::ios::binary);
    out << make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }", std::string(120, '\0'));
  }
  r = read_npy(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find(path), std::string::npos);
  EXPECT_NE(r.status().message().find("but only 120 bytes follow"), std::string::npos) << r.status().message();
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string("\x93NUMPY\x01\x00\x05", 9);
  }
  r = read_npy(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
  {  // Big-endian Fortran-order data read from a file.
    std::string data;
    for (double v : {0.0, 3.0, 1.0, 4.0, 2.0, 5.0}) {
      std::string s(reinterpret_cast<const char*>(&v), 8);
      data += std::string(s.rbegin(), s.rend());
    }
    std::ofstream out(path, std::ios::binary);
    out << make_npy("{'descr': '>f8', 'fortran_order': True, 'shape': (2, 3), }", data);
  }
  r = read_npy(path);
  ASSERT_TRUE(r.ok()) << r.status().message();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(r->as<double>()[i], i);
  ::unlink(path.c_str());
}

// read_npy_rows (each MPI rank reads only its rows of a weight): every range equals the same rows
// of the whole read, for a native and a big-endian (byte-swapped) file; bad ranges, Fortran order
// and a truncated file are refused; the size limit applies to the rows read.
TEST(NpyRows, EqualsSliceOfWholeRead) {
  std::vector<float> v(7 * 5);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.25f - 3.0f;
  const std::string path = temp_path("rows.npy");
  ASSERT_TRUE(write_npy(path, ConstTensorView(v.data(), {7, 5})).ok());
  Shape whole;
  for (std::int64_t r0 = 0; r0 <= 7; ++r0)
    for (std::int64_t n = 0; r0 + n <= 7; ++n) {
      Result<NpyArray> r = read_npy_rows(path, r0, n, {}, &whole);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_EQ(whole, (Shape{7, 5}));
      EXPECT_EQ(r->shape(), (Shape{n, 5}));
      EXPECT_EQ(std::memcmp(r->data(), v.data() + r0 * 5, static_cast<std::size_t>(n * 5) * sizeof(float)), 0);
    }
  Result<NpyArray> bad = read_npy_rows(path, 5, 3);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(bad.status().message().find("rows [5, 8) are outside the 7 rows"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(read_npy_rows(path, -1, 1).ok());
  NpyReadOptions small;
  small.max_bytes = 40;  // two rows of 5 float32 fit, three do not
  EXPECT_TRUE(read_npy_rows(path, 0, 2, small).ok());
  EXPECT_EQ(read_npy_rows(path, 0, 3, small).status().code(), StatusCode::kResourceExhausted);
  ::unlink(path.c_str());

  // Big-endian int16 rows are swapped and widened like read_npy's.
  std::string be;
  for (int i = 0; i < 6; ++i) {
    be += static_cast<char>(0);
    be += static_cast<char>(i + 1);
  }
  const std::string p2 = temp_path("rows_be.npy");
  {
    std::ofstream out(p2, std::ios::binary);
    out << make_npy("{'descr': '>i2', 'fortran_order': False, 'shape': (3, 2), }", be);
  }
  Result<NpyArray> r = read_npy_rows(p2, 1, 2);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->dtype(), DType::kI64);
  EXPECT_EQ(r->as<std::int64_t>()[0], 3);
  EXPECT_EQ(r->as<std::int64_t>()[3], 6);
  {
    std::ofstream out(p2, std::ios::binary);
    out << make_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", std::string(24, '\0'));
  }
  EXPECT_EQ(read_npy_rows(p2, 0, 1).status().code(), StatusCode::kUnimplemented);
  {
    std::ofstream out(p2, std::ios::binary);
    out << make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (100, 3), }", std::string(24, '\0'));
  }
  EXPECT_EQ(read_npy_rows(p2, 0, 1).status().code(), StatusCode::kDataLoss);  // truncated: checked before reading
  ::unlink(p2.c_str());
}

}  // namespace
}  // namespace xent
