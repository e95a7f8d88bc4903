// test_idx.cc: the IDX reader on good, bad, truncated and hostile input, plain and gzip'd. The
// expected bytes come from the test's own IDX writer and zlib's deflate, not from xent.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "train_test_util.h"
#include "xent/io/idx.h"

namespace xent {
namespace {

using namespace ::xent::io;

using test::gzip_bytes;
using test::idx_bytes;

std::vector<std::uint8_t> pattern(std::size_t n) {
  std::vector<std::uint8_t> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(i * 37 + 11);
  return p;
}

ByteBuffer buffer_of(const std::vector<std::uint8_t>& b) {
  ByteBuffer buf(b.size());
  if (!b.empty()) std::memcpy(buf.data(), b.data(), b.size());
  return buf;
}

// Both parsers (bytes by pointer, bytes in a buffer the result may take over) on b: they must give
// the same array or the same error; the pointer one's result is returned.
Result<IdxArray> parse(const std::vector<std::uint8_t>& b, IdxLimits lim = {}) {
  Result<IdxArray> r = parse_idx(b.data(), b.size(), "f.idx", lim);
  Result<IdxArray> in_place = parse_idx(buffer_of(b), "f.idx", lim);
  EXPECT_EQ(r.ok(), in_place.ok());
  if (r.ok() && in_place.ok()) {
    EXPECT_EQ(r->type, in_place->type);
    EXPECT_EQ(r->dims, in_place->dims);
    EXPECT_EQ(r->payload.size(), in_place->payload.size());
    if (r->payload.size() > 0)
      EXPECT_EQ(std::memcmp(r->payload.data(), in_place->payload.data(), r->payload.size()), 0);
  } else if (!r.ok() && !in_place.ok()) {
    EXPECT_EQ(r.status().code(), in_place.status().code());
    EXPECT_EQ(r.status().message(), in_place.status().message());
  }
  return r;
}

void expect_error(const Result<IdxArray>& r, StatusCode code, const std::string& fragment) {
  ASSERT_FALSE(r.ok()) << "expected an error containing '" << fragment << "'";
  EXPECT_EQ(r.status().code(), code) << r.status().message();
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("f.idx"), std::string::npos) << "error must name the file: " << r.status().message();
}

TEST(Idx, PlainAndGzipGiveTheSameArray) {
  const auto payload = pattern(5 * 4 * 3);
  const auto plain = idx_bytes(0x08, {5, 4, 3}, payload);
  for (const auto& bytes : {plain, gzip_bytes(plain), gzip_bytes(plain, 0), gzip_bytes(plain, 9)}) {
    auto r = parse(bytes);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->type, 0x08);
    EXPECT_EQ(r->dims, (std::vector<std::int64_t>{5, 4, 3}));
    ASSERT_EQ(r->payload.size(), payload.size());
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), r->payload.data()));
  }
}

// A plain array parsed from a buffer keeps its payload where it was: right after the header, in the
// same memory (what lets the dataset cache hand a mapped file to the trainer without a copy).
TEST(Idx, PlainPayloadStaysInItsBuffer) {
  const auto payload = pattern(6 * 7);
  const auto plain = idx_bytes(0x08, {6, 7}, payload);
  ByteBuffer buf = buffer_of(plain);
  const std::uint8_t* where = buf.data() + 4 + 2 * 4;
  auto r = parse_idx(std::move(buf), "f.idx");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->payload.data(), where);
  ASSERT_EQ(r->payload.size(), payload.size());
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), r->payload.data()));
}

// map_file_bytes: a file's bytes without a copy; writes stay in the buffer (copy-on-write), the
// file is unchanged; an empty file is an empty buffer; a pipe cannot be mapped or read from the
// start: an error naming it, no crash.
TEST(Idx, MappedFileBytes) {
  test::TempDir dir;
  const auto bytes = idx_bytes(0x08, {3, 5}, pattern(15));
  const std::string path = dir / "m.idx";
  test::write_bytes(path, bytes);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  {
    auto m = map_file_bytes(fd, bytes.size(), path);
    ASSERT_TRUE(m.ok()) << m.status().message();
    ASSERT_EQ(m->size(), bytes.size());
    EXPECT_EQ(std::memcmp(m->data(), bytes.data(), bytes.size()), 0);
    m->data()[20] ^= 0xff;
    auto r = parse_idx(std::move(*m), path);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->payload.data()[8], static_cast<std::uint8_t>(bytes[20] ^ 0xff));
  }
  ::close(fd);
  auto again = read_file_bytes(path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(std::memcmp(again->data(), bytes.data(), bytes.size()), 0) << "a write to the mapping reached the file";
  test::write_bytes(dir / "empty", {});
  fd = ::open((dir / "empty").c_str(), O_RDONLY | O_CLOEXEC);
  auto e = map_file_bytes(fd, 0, "empty");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size(), 0u);
  ::close(fd);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  auto bad = map_file_bytes(pipefd[0], 16, "the-pipe");
  EXPECT_FALSE(bad.ok());
  if (!bad.ok()) EXPECT_NE(bad.status().message().find("the-pipe"), std::string::npos) << bad.status().message();
  ::close(pipefd[0]);
  ::close(pipefd[1]);
}

TEST(Idx, MultiMemberGzip) {
  const auto plain = idx_bytes(0x08, {100}, pattern(100));
  std::vector<std::uint8_t> a(plain.begin(), plain.begin() + 30), b(plain.begin() + 30, plain.end());
  auto ga = gzip_bytes(a), gb = gzip_bytes(b);
  ga.insert(ga.end(), gb.begin(), gb.end());
  auto r = parse(ga);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(std::equal(plain.begin() + 8, plain.end(), r->payload.data()));
}

TEST(Idx, EmptyArrayIsFine) {
  auto r = parse(idx_bytes(0x08, {0, 28, 28}, {}));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->payload.size(), 0u);
}

TEST(Idx, OtherTypesKeepTheirWidth) {
  auto r = parse(idx_bytes(0x0D, {2, 2}, pattern(16)));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->payload.size(), 16u);
  expect_error(parse(idx_bytes(0x0D, {2, 2}, pattern(15))), StatusCode::kDataLoss, "truncated");
}

TEST(Idx, BadMagic) {
  expect_error(parse({1, 0, 8, 3, 0, 0, 0, 0}), StatusCode::kDataLoss, "not an IDX file");
  expect_error(parse({0, 0, 7, 1, 0, 0, 0, 0}), StatusCode::kDataLoss, "found 00 00 07 01");
  expect_error(parse({0, 0, 8, 0}), StatusCode::kDataLoss, "rank");
  expect_error(parse({}), StatusCode::kDataLoss, "empty");
  expect_error(parse({0, 0}), StatusCode::kDataLoss, "truncated IDX header");
}

TEST(Idx, TruncatedHeaderAndPayload) {
  const auto plain = idx_bytes(0x08, {10, 3}, pattern(30));
  expect_error(parse(std::vector<std::uint8_t>(plain.begin(), plain.begin() + 9)), StatusCode::kDataLoss, "header");
  expect_error(parse(std::vector<std::uint8_t>(plain.begin(), plain.end() - 1)), StatusCode::kDataLoss, "truncated");
  auto longer = plain;
  longer.push_back(0);
  expect_error(parse(longer), StatusCode::kDataLoss, "trailing");
}

TEST(Idx, EveryTruncationOfAGzipFileFails) {
  const auto gz = gzip_bytes(idx_bytes(0x08, {20, 7}, pattern(140)));
  for (std::size_t n = 0; n < gz.size(); ++n) {
    auto r = parse_idx(gz.data(), n, "f.idx");
    EXPECT_FALSE(r.ok()) << "a gzip file cut at " << n << " of " << gz.size() << " bytes was accepted";
  }
  EXPECT_TRUE(parse(gz).ok());
}

TEST(Idx, GzipWithTrailingDataOrGarbage) {
  const auto plain = idx_bytes(0x08, {4}, pattern(4));
  // The gzip'd data holds more than the header declares.
  auto more = plain;
  more.push_back(9);
  expect_error(parse(gzip_bytes(more)), StatusCode::kDataLoss, "more than");
  // Bytes after the gzip stream that are not another member.
  auto gz = gzip_bytes(plain);
  gz.push_back(0x42);
  expect_error(parse(gz), StatusCode::kDataLoss, "not another gzip member");
}

TEST(Idx, CorruptGzipIsAnErrorOrDecodesTheSameBytes) {
  const auto payload = pattern(64);
  auto gz = gzip_bytes(idx_bytes(0x08, {64}, payload));
  int failures = 0;
  for (std::size_t i = 10; i < gz.size(); ++i) {  // every byte after the gzip header
    auto bad = gz;
    bad[i] ^= 0x5a;
    auto r = parse(bad);
    if (!r.ok()) {
      ++failures;
      continue;
    }
    // Only bits that do not matter (e.g. the padding after the last block) may change.
    ASSERT_EQ(r->payload.size(), payload.size()) << "flip at " << i;
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), r->payload.data())) << "flip at " << i;
  }
  EXPECT_GT(failures, static_cast<int>(gz.size()) - 14);
  auto crc = gz;
  crc[crc.size() - 6] ^= 1;
  EXPECT_FALSE(parse(crc).ok());
}

TEST(Idx, HostileDimensions) {
  // Product overflows 64 bits.
  expect_error(parse(idx_bytes(0x0E, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {})), StatusCode::kResourceExhausted, "overflow");
  // Beyond the limit.
  IdxLimits lim;
  lim.max_payload_bytes = 1000;
  expect_error(parse(idx_bytes(0x08, {10, 101}, {}), lim), StatusCode::kResourceExhausted, "limit");
  // Plain: declared size far beyond the file.
  expect_error(parse(idx_bytes(0x08, {60000, 28, 28}, pattern(10))), StatusCode::kDataLoss, "truncated");
  // Gzip: a few bytes cannot hold 3.9 GB; refused before allocating.
  expect_error(parse(gzip_bytes(idx_bytes(0x08, {0xfffffff0u}, {}))), StatusCode::kDataLoss, "can hold at most");
}

TEST(Idx, MakeLabeledImagesChecksMagicAndCounts) {
  auto img = [](std::uint8_t type, std::vector<std::uint32_t> dims) {
    std::size_t n = 1;
    for (auto d : dims) n *= d;
    auto b = idx_bytes(type, dims, pattern(n * (type == 0x0D ? 4 : 1)));
    return parse_idx(b.data(), b.size(), "x").value();
  };
  auto ok = make_labeled_images(img(0x08, {3, 2, 2}), "i", img(0x08, {3}), "l");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->n, 3);
  EXPECT_EQ(ok->height, 2);
  EXPECT_EQ(ok->features(), 4);
  EXPECT_EQ(ok->labels[1], pattern(3)[1]);
  auto flat = make_labeled_images(img(0x08, {3, 5}), "i", img(0x08, {3}), "l");
  ASSERT_TRUE(flat.ok());
  EXPECT_EQ(flat->height, 1);
  EXPECT_EQ(flat->width, 5);

  auto count = make_labeled_images(img(0x08, {3, 2, 2}), "imgs", img(0x08, {4}), "labs");
  ASSERT_FALSE(count.ok());
  EXPECT_NE(count.status().message().find("imgs has 3 images but labs has 4 labels"), std::string::npos)
      << count.status().message();
  auto swapped = make_labeled_images(img(0x08, {3}), "imgs", img(0x08, {3, 2, 2}), "labs");
  ASSERT_FALSE(swapped.ok());
  EXPECT_NE(swapped.status().message().find("magic 2049"), std::string::npos) << swapped.status().message();
  auto floats = make_labeled_images(img(0x0D, {3, 2, 2}), "imgs", img(0x08, {3}), "labs");
  ASSERT_FALSE(floats.ok());
  EXPECT_NE(floats.status().message().find("float32"), std::string::npos) << floats.status().message();
}

TEST(Idx, FilesAndDirectories) {
  test::TempDir dir;
  auto r = read_idx_file(dir / "missing.gz");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_NE(r.status().message().find("missing.gz"), std::string::npos);

  auto found = find_idx_dataset(dir.path.string());
  ASSERT_FALSE(found.ok());
  EXPECT_NE(found.status().message().find("train-images-idx3-ubyte"), std::string::npos) << found.status().message();

  auto s = test::make_synthetic(20, 4, 4, 3, 1);
  test::write_idx_pair(dir.path.string(), "train", s, 4, 4, true);
  test::write_idx_pair(dir.path.string(), "t10k", s, 4, 4, false);
  found = find_idx_dataset(dir.path.string());
  ASSERT_TRUE(found.ok()) << found.status().message();
  EXPECT_EQ(found->train_images, dir / "train-images-idx3-ubyte.gz");
  EXPECT_EQ(found->test_labels, dir / "t10k-labels-idx1-ubyte");
  auto li = load_labeled_images(found->train_images, found->train_labels);
  ASSERT_TRUE(li.ok()) << li.status().message();
  EXPECT_EQ(li->n, 20);
  EXPECT_TRUE(std::equal(s.pixels.begin(), s.pixels.end(), li->pixels.data()));
}


TEST(Idx, FilesLargerThanTheReadChunkAndSplitIntoMembers) {
  test::TempDir dir;
  std::vector<std::uint8_t> payload(3u << 20);
  std::uint32_t x = 12345;
  for (auto& b : payload) x = x * 1664525u + 1013904223u, b = static_cast<std::uint8_t>(x >> 24);  // incompressible
  const auto plain = idx_bytes(0x08, {3, 1024, 1024}, payload);
  const std::size_t cut = (1u << 20) + 12345;  // the member boundary is not at a read-chunk boundary
  auto gz = gzip_bytes(std::vector<std::uint8_t>(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(cut)), 1);
  auto gz2 = gzip_bytes(std::vector<std::uint8_t>(plain.begin() + static_cast<std::ptrdiff_t>(cut), plain.end()), 1);
  gz.insert(gz.end(), gz2.begin(), gz2.end());
  ASSERT_GT(gz.size(), 2u << 20);
  for (const auto& [name, bytes] : {std::pair{"a.gz", gz}, std::pair{"a", plain}}) {
    test::write_bytes(dir / name, bytes);
    auto r = read_idx_file(dir / name);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), r->payload.data())) << name;
    auto cut_file = bytes;
    cut_file.resize(bytes.size() - 100000);
    test::write_bytes(dir / name, cut_file);
    auto t = read_idx_file(dir / name);
    ASSERT_FALSE(t.ok()) << name;
    EXPECT_NE(t.status().message().find("truncated"), std::string::npos) << t.status().message();
  }
}

// Gzip'd input takes a whole-buffer inflater (libdeflate) when it is well formed and a streaming
// one (zlib) otherwise; from a file or from memory, good or bad, the outcome must be the same.
TEST(Idx, GzipFastAndStreamingPathsAgree) {
  test::TempDir dir;
  const auto plain = idx_bytes(0x08, {40, 5}, pattern(200));
  const auto gz = gzip_bytes(plain);
  std::vector<std::pair<std::string, std::vector<std::uint8_t>>> cases;
  cases.emplace_back("good", gz);
  auto two = gzip_bytes({plain.begin(), plain.begin() + 3});  // the header split across members
  auto rest = gzip_bytes({plain.begin() + 3, plain.end()});
  two.insert(two.end(), rest.begin(), rest.end());
  cases.emplace_back("header split over members", two);
  auto empty_tail = gz;
  auto empty = gzip_bytes({});
  empty_tail.insert(empty_tail.end(), empty.begin(), empty.end());
  cases.emplace_back("empty trailing member", empty_tail);
  auto garbage = gz;
  garbage.push_back(0x00);
  cases.emplace_back("trailing garbage", garbage);
  auto more = plain;
  more.push_back(7);
  cases.emplace_back("more data than declared", gzip_bytes(more));
  auto less = plain;
  less.pop_back();
  cases.emplace_back("less data than declared", gzip_bytes(less));
  auto bad_crc = gz;
  bad_crc[bad_crc.size() - 6] ^= 0x40;  // the CRC32 in the trailer
  cases.emplace_back("bad CRC", bad_crc);
  auto bad_len = gz;
  bad_len[bad_len.size() - 2] ^= 0x01;  // ISIZE in the trailer
  cases.emplace_back("bad length", bad_len);
  auto cut = gz;
  cut.resize(cut.size() - 3);
  cases.emplace_back("truncated trailer", cut);
  for (const auto& [what, bytes] : cases) {
    test::write_bytes(dir / "f.idx", bytes);
    auto from_file = read_idx_file(dir / "f.idx");
    auto from_memory = parse_idx(bytes.data(), bytes.size(), dir / "f.idx");
    ASSERT_EQ(from_file.ok(), from_memory.ok()) << what;
    if (!from_file.ok()) {
      EXPECT_EQ(from_file.status().code(), from_memory.status().code()) << what;
      EXPECT_EQ(from_file.status().message(), from_memory.status().message()) << what;
      continue;
    }
    ASSERT_EQ(from_file->payload.size(), 200u) << what;
    EXPECT_TRUE(std::equal(plain.begin() + 12, plain.end(), from_file->payload.data())) << what;
    EXPECT_TRUE(std::equal(plain.begin() + 12, plain.end(), from_memory->payload.data())) << what;
  }
  // The good, split and empty-tail cases are accepted; every damaged one is refused.
  for (std::size_t i = 0; i < cases.size(); ++i) {
    auto r = parse_idx(cases[i].second.data(), cases[i].second.size(), "f.idx");
    EXPECT_EQ(r.ok(), i < 3) << cases[i].first << ": " << (r.ok() ? "accepted" : r.status().message());
  }
}

}  // namespace
}  // namespace xent
