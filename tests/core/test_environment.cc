// test_environment.cc: a bad XENT_ISA or XENT_THREADS is reported through the API
// (xent::environment_status), never printed by the library, and the kernels still run on the
// fallbacks (the best kernel set, the CPUs' thread count). Its own main() sets the variables before
// anything reads them (they are read once per process, at first use), so every test here runs in
// a process whose environment is bad; the good case is the rest of the suite's (unset variables).
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "xent/xent.h"

namespace {

// Runs fn with file descriptor 2 redirected to a temporary file; returns what was written there.
template <class F>
std::string stderr_of(F&& fn) {
  std::fflush(stderr);
  char path[] = "/tmp/xent_test_environment_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "(mkstemp failed)";
  const int saved = dup(2);
  dup2(fd, 2);
  fn();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string out;
  char buf[256];
  lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, static_cast<std::size_t>(n));
  close(fd);
  unlink(path);
  return out;
}

TEST(Environment, FirstUseWithBadValuesPrintsNothingAndRuns) {
  std::vector<float> x(4 * 1000), y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
  xent::Status s;
  const std::string err = stderr_of([&] { s = xent::softmax_forward({x, {4, 1000}}, -1, {y, {4, 1000}}); });
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(err, "") << "the library wrote to stderr";
  double row0 = 0;
  for (int j = 0; j < 1000; ++j) row0 += y[static_cast<std::size_t>(j)];
  EXPECT_NEAR(row0, 1.0, 1e-5);
  // The fallbacks: the best kernel set, and a thread count from the CPUs, not from the bad value.
  EXPECT_EQ(xent::active_isa(), xent::supported_isas().front());
  EXPECT_GE(xent::num_threads(), 1);
}

TEST(Environment, StatusNamesEachBadValueAndTheFallback) {
  const xent::Status s = xent::environment_status();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), xent::StatusCode::kInvalidArgument);
  const std::string& m = s.message();
  EXPECT_NE(m.find("XENT_ISA=no_such_isa is not available on this CPU (available: "), std::string::npos) << m;
  EXPECT_NE(m.find("scalar); using " + xent::supported_isas().front()), std::string::npos) << m;
  EXPECT_NE(
      m.find("XENT_THREADS=two is not a positive integer; using " + std::to_string(xent::num_threads()) + " threads"),
      std::string::npos)
      << m;
  // Asking again gives the same answer (the variables were read once), and setting the ISA by
  // the API does not erase what the environment said.
  ASSERT_TRUE(xent::set_isa("scalar").ok());
  EXPECT_EQ(xent::environment_status().message(), m);
  ASSERT_TRUE(xent::set_isa("auto").ok());
}

}  // namespace

int main(int argc, char** argv) {
  setenv("XENT_ISA", "no_such_isa", 1);
  setenv("XENT_THREADS", "two", 1);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
