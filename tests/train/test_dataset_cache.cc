// test_dataset_cache.cc: every byte of a decoded-dataset cache entry (src/io/dataset_cache.h) is
// hostile. After a miss writes an entry, each single-byte change anywhere in it (header, path,
// IDX header, data) and each truncation must be a miss that returns the source's own array and
// rewrites the entry; the untouched entry must hit with the same array. The expected bytes come
// from the test's own IDX writer and zlib, not from xent. The CLI side (flags, metrics, links,
// unwritable caches) is test_dataset_cache_cli.py.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "io/dataset_cache.h"
#include "train_test_util.h"

namespace xent {
namespace {

using namespace ::xent::io;

std::vector<std::uint8_t> payload_of(const IdxArray& a) { return {a.payload.data(), a.payload.data() + a.payload.size()}; }

class DatasetCache : public ::testing::Test {
 protected:
  void SetUp() override {
    plain_ = test::idx_bytes(0x08, {7, 3, 5}, pixels());
    src_ = (dir_.path / "images-idx3-ubyte.gz").string();
    cache_ = (dir_.path / "cache").string();
    test::write_bytes(src_, test::gzip_bytes(plain_));
    CachedIdx first = read_idx_file_cached(src_, cache_, true);
    ASSERT_TRUE(first.array.ok()) << first.array.status().message();
    ASSERT_EQ(first.use, CacheUse::kMiss);
    ASSERT_TRUE(first.write_error.ok()) << first.write_error.message();
    entry_ = first.entry;
    pristine_ = test::read_bytes(entry_);
    ASSERT_GT(pristine_.size(), plain_.size());
  }
  static std::vector<std::uint8_t> pixels() {
    std::vector<std::uint8_t> p(7 * 3 * 5);
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::uint8_t>(i * 29 + 3);
    return p;
  }
  // Reads through the cache and checks the array is the source's; returns how it was read.
  CacheUse read_and_check(const std::string& what) {
    CachedIdx r = read_idx_file_cached(src_, cache_, true);
    EXPECT_TRUE(r.array.ok()) << what << ": " << r.array.status().message();
    if (!r.array.ok()) return r.use;
    EXPECT_EQ(r.array->dims, (std::vector<std::int64_t>{7, 3, 5})) << what;
    EXPECT_EQ(payload_of(*r.array), pixels()) << what;
    EXPECT_TRUE(r.write_error.ok()) << what << ": " << r.write_error.message();
    return r.use;
  }
  test::TempDir dir_;
  std::vector<std::uint8_t> plain_, pristine_;
  std::string src_, cache_, entry_;
};

TEST_F(DatasetCache, EntryIsPrivateAndEndsWithTheDecodedBytesAndHits) {
  struct stat st {};
  ASSERT_EQ(::stat(entry_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat(cache_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_TRUE(std::equal(plain_.begin(), plain_.end(), pristine_.end() - static_cast<std::ptrdiff_t>(plain_.size())));
  EXPECT_EQ(read_and_check("untouched"), CacheUse::kHit);
  EXPECT_EQ(test::read_bytes(entry_), pristine_);
}

TEST_F(DatasetCache, EverySingleByteChangeIsAMissAndTheEntryIsRewritten) {
  for (std::size_t at = 0; at < pristine_.size(); ++at) {
    const std::uint8_t flip = at % 2 ? 0x80 : 0x01;  // the low and the high bit, alternately
    auto bad = pristine_;
    bad[at] ^= flip;
    test::write_bytes(entry_, bad);
    ASSERT_EQ(read_and_check("byte " + std::to_string(at)), CacheUse::kMiss) << "byte " << at << " ^ " << int{flip};
    ASSERT_EQ(test::read_bytes(entry_), pristine_) << "not rewritten after byte " << at;
  }
}

TEST_F(DatasetCache, EveryTruncationAndAnExtensionIsAMiss) {
  for (std::size_t n = 0; n < pristine_.size(); ++n) {
    test::write_bytes(entry_, std::vector<std::uint8_t>(pristine_.begin(), pristine_.begin() + static_cast<std::ptrdiff_t>(n)));
    ASSERT_EQ(read_and_check("truncated to " + std::to_string(n)), CacheUse::kMiss) << n;
  }
  auto longer = pristine_;
  longer.push_back(0);
  test::write_bytes(entry_, longer);
  EXPECT_EQ(read_and_check("one byte appended"), CacheUse::kMiss);
  EXPECT_EQ(read_and_check("rewritten"), CacheUse::kHit);
}

TEST_F(DatasetCache, PlainSourcesAreNeverCachedAndOffReadsTheSource) {
  const std::string plain = (dir_.path / "plain-idx3-ubyte").string();
  test::write_bytes(plain, plain_);
  CachedIdx r = read_idx_file_cached(plain, cache_, true);
  ASSERT_TRUE(r.array.ok());
  EXPECT_EQ(r.use, CacheUse::kPlain);
  EXPECT_TRUE(r.entry.empty());
  CachedIdx off = read_idx_file_cached(src_, cache_, false);
  ASSERT_TRUE(off.array.ok());
  EXPECT_EQ(off.use, CacheUse::kOff);
  EXPECT_EQ(payload_of(*off.array), pixels());
  CachedIdx nodir = read_idx_file_cached(src_, "", true);
  ASSERT_TRUE(nodir.array.ok());
  EXPECT_EQ(nodir.use, CacheUse::kOff);
  EXPECT_FALSE(nodir.write_error.ok());
}

TEST_F(DatasetCache, BadSourceErrorsAreTheReadersAndNothingIsCached) {
  auto gz = test::gzip_bytes(plain_);
  gz.resize(gz.size() - 5);  // truncated gzip stream
  const std::string bad = (dir_.path / "bad-idx3-ubyte.gz").string();
  test::write_bytes(bad, gz);
  CachedIdx r = read_idx_file_cached(bad, cache_, true);
  ASSERT_FALSE(r.array.ok());
  Result<IdxArray> direct = read_idx_file(bad);
  ASSERT_FALSE(direct.ok());
  EXPECT_EQ(r.array.status().message(), direct.status().message());
  EXPECT_FALSE(std::filesystem::exists(r.entry));
}

}  // namespace
}  // namespace xent
