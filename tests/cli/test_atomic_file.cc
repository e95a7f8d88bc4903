// test_atomic_file.cc: the output write path (src/io/atomic_file.*): regular files replaced through
// a temporary, symbolic links followed (the link survives and points at the new content), FIFOs,
// character devices, sockets and descriptors written directly and left as they are, directories
// and missing parents refused before anything is created, nothing left behind on abandon; with
// AtomicFileOptions, links refused rather than followed and the mode fixed.
// Every path lives in a fresh temporary directory; the only system files touched are /dev/null
// (through our own link) and pipes/sockets this test creates. Not covered: signals (the CLI
// tests and tests/hardening do those).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "io/atomic_file.h"

namespace fs = std::filesystem;
using xent::Result;
using xent::Status;
using xent::StatusCode;
using xent::io::AtomicFile;
using xent::io::OutputTarget;
using xent::io::resolve_output_path;
using xent::io::write_file_atomic;

namespace {

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "xent_atomic_XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string p(const std::string& name) const { return (dir_ / name).string(); }
  static std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
  }
  static void put(const std::string& path, const std::string& s) { std::ofstream(path, std::ios::binary) << s; }
  // Names in the directory other than those given (a leftover temporary shows up here).
  std::size_t entries() const { return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir_), {})); }
  fs::path dir_;
};

TEST_F(AtomicFileTest, NewAndExistingRegularFile) {
  ASSERT_TRUE(write_file_atomic(p("a.bin"), "first").ok());
  EXPECT_EQ(slurp(p("a.bin")), "first");
  ::chmod(p("a.bin").c_str(), 0600);
  ASSERT_TRUE(write_file_atomic(p("a.bin"), "second").ok());
  EXPECT_EQ(slurp(p("a.bin")), "second");
  struct stat st {};
  ASSERT_EQ(::stat(p("a.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "the replaced file keeps its permission bits";
  EXPECT_EQ(entries(), 1u) << "no temporary left behind";
}

TEST_F(AtomicFileTest, RelativeSymlinkSurvivesAndPointsAtNewContent) {
  put(p("real.npy"), "old");
  fs::create_symlink("real.npy", p("link.npy"));
  ASSERT_TRUE(write_file_atomic(p("link.npy"), "new").ok());
  EXPECT_TRUE(fs::is_symlink(p("link.npy")));
  EXPECT_EQ(fs::read_symlink(p("link.npy")), fs::path("real.npy"));
  EXPECT_EQ(slurp(p("real.npy")), "new");
  EXPECT_EQ(slurp(p("link.npy")), "new");
  EXPECT_EQ(entries(), 2u);
}

TEST_F(AtomicFileTest, ChainOfLinksAcrossDirectories) {
  fs::create_directory(p("sub"));
  put(p("sub/target"), "old");
  fs::create_symlink(p("sub/target"), p("sub/abs"));  // absolute
  fs::create_symlink("sub/abs", p("rel"));           // relative, resolved from the link's directory
  fs::create_symlink("rel", p("top"));
  Result<OutputTarget> r = resolve_output_path(p("top"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r.value().kind, OutputTarget::Kind::kFile);
  EXPECT_EQ(fs::path(r.value().path).lexically_normal(), fs::path(p("sub/target")).lexically_normal());
  ASSERT_TRUE(write_file_atomic(p("top"), "new").ok());
  EXPECT_TRUE(fs::is_symlink(p("top")) && fs::is_symlink(p("rel")) && fs::is_symlink(p("sub/abs")));
  EXPECT_EQ(slurp(p("sub/target")), "new");
}

TEST_F(AtomicFileTest, DanglingLinkCreatesItsTarget) {
  fs::create_symlink("made.bin", p("dangling"));
  ASSERT_TRUE(write_file_atomic(p("dangling"), "hello").ok());
  EXPECT_TRUE(fs::is_symlink(p("dangling")));
  EXPECT_EQ(slurp(p("made.bin")), "hello");
}

TEST_F(AtomicFileTest, LinkLoopIsRefused) {
  fs::create_symlink("b", p("a"));
  fs::create_symlink("a", p("b"));
  xent::Status s = write_file_atomic(p("a"), "x");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("symbolic links"), std::string::npos) << s.message();
}

TEST_F(AtomicFileTest, DirectoryAndMissingParentAreRefusedBeforeAnythingIsCreated) {
  fs::create_directory(p("d"));
  xent::Status s = write_file_atomic(p("d"), "x");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("is a directory"), std::string::npos) << s.message();
  EXPECT_TRUE(fs::is_empty(p("d")));
  s = write_file_atomic(p("d/"), "x");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  s = write_file_atomic(p("missing/out.npy"), "x");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("does not exist"), std::string::npos) << s.message();
  fs::create_symlink("d", p("dirlink"));
  EXPECT_EQ(write_file_atomic(p("dirlink"), "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(entries(), 2u);
}

TEST_F(AtomicFileTest, AbandonLeavesTheDestinationAndNoTemporary) {
  put(p("keep"), "old");
  {
    AtomicFile f;
    ASSERT_TRUE(f.open(p("keep")).ok());
    ASSERT_TRUE(f.write(std::string("partial")).ok());
    ASSERT_TRUE(f.flush().ok());
  }  // destroyed without commit
  EXPECT_EQ(slurp(p("keep")), "old");
  EXPECT_EQ(entries(), 1u);
}

// AtomicFileOptions (the decoded-dataset cache's entries): no link followed or replaced, a fixed
// mode whatever the old file's, and the same rename without fsync.
TEST_F(AtomicFileTest, NoFollowRefusesLinksAndOtherKindsAndSetsTheMode) {
  xent::io::AtomicFileOptions o;
  o.follow_links = false;
  o.mode = 0600;
  o.durable = false;
  put(p("target"), "precious");
  ASSERT_EQ(::symlink(p("target").c_str(), p("link").c_str()), 0);
  AtomicFile f;
  Status st = f.open(p("link"), o);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("symbolic link"), std::string::npos) << st.message();
  EXPECT_EQ(slurp(p("target")), "precious");
  EXPECT_TRUE(fs::is_symlink(p("link")));
  ASSERT_EQ(::mkfifo(p("fifo").c_str(), 0600), 0);
  EXPECT_EQ(f.open(p("fifo"), o).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(entries(), 3u);  // nothing created
  // A new name and an existing 0644 file both end up 0600 with the new content.
  put(p("old"), "old");
  ::chmod(p("old").c_str(), 0644);
  for (const char* name : {"new", "old"}) {
    AtomicFile g;
    ASSERT_TRUE(g.open(p(name), o).ok());
    ASSERT_TRUE(g.write("fresh").ok());
    ASSERT_TRUE(g.commit().ok());
    EXPECT_EQ(slurp(p(name)), "fresh");
    struct stat sb {};
    ASSERT_EQ(::lstat(p(name).c_str(), &sb), 0);
    EXPECT_TRUE(S_ISREG(sb.st_mode));
    EXPECT_EQ(sb.st_mode & 07777, 0600u) << name;
  }
  EXPECT_EQ(entries(), 5u);  // no temporary left
}

TEST_F(AtomicFileTest, FifoIsWrittenDirectlyAndStaysAFifo) {
  ASSERT_EQ(::mkfifo(p("fifo").c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] { got = slurp(p("fifo")); });
  xent::Status s = write_file_atomic(p("fifo"), "through the pipe");
  reader.join();
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(got, "through the pipe");
  struct stat st {};
  ASSERT_EQ(::lstat(p("fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFileTest, LinkToCharacterDeviceIsWrittenThroughAndKept) {
  fs::create_symlink("/dev/null", p("null"));
  Result<OutputTarget> r = resolve_output_path(p("null"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().kind, OutputTarget::Kind::kDevice);
  ASSERT_TRUE(write_file_atomic(p("null"), "discarded").ok());
  EXPECT_TRUE(fs::is_symlink(p("null")));
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFileTest, DescriptorPathsWriteToTheDescriptor) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string dev_fd = "/dev/fd/" + std::to_string(fds[1]);
  fs::create_symlink(dev_fd, p("to_pipe"));  // like /dev/stdout -> /proc/self/fd/1
  for (const std::string& path : {dev_fd, p("to_pipe"), "/proc/self/fd/" + std::to_string(fds[1])}) {
    Result<OutputTarget> r = resolve_output_path(path);
    ASSERT_TRUE(r.ok()) << path;
    EXPECT_EQ(r.value().kind, OutputTarget::Kind::kDescriptor) << path;
    EXPECT_EQ(r.value().fd, fds[1]) << path;
    ASSERT_TRUE(write_file_atomic(path, "abc").ok()) << path;
    char buf[8] = {};
    ASSERT_EQ(::read(fds[0], buf, 3), 3);
    EXPECT_EQ(std::string(buf, 3), "abc");
  }
  EXPECT_TRUE(fs::is_symlink(p("to_pipe")));
  ::close(fds[0]);
  ::close(fds[1]);
  Result<OutputTarget> dash = resolve_output_path("-");
  ASSERT_TRUE(dash.ok());
  EXPECT_EQ(dash.value().kind, OutputTarget::Kind::kDescriptor);
  EXPECT_EQ(dash.value().fd, STDOUT_FILENO);
  // A descriptor that is not open is bad input, not a file to create.
  EXPECT_EQ(resolve_output_path("/dev/fd/" + std::to_string(fds[1])).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(AtomicFileTest, UnixSocketIsConnectedAndWritten) {
  const std::string sock = p("s");
  int srv = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(srv, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock.size(), sizeof addr.sun_path);
  std::strcpy(addr.sun_path, sock.c_str());
  ASSERT_EQ(::bind(srv, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(srv, 1), 0);
  std::string got;
  std::thread server([&] {
    int c = ::accept(srv, nullptr, nullptr);
    char buf[64];
    ssize_t n;
    while ((n = ::read(c, buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
    ::close(c);
  });
  xent::Status s = write_file_atomic(sock, "over a socket");
  if (!s.ok()) {  // unblock the server before failing
    int c = ::socket(AF_UNIX, SOCK_STREAM, 0);
    (void)::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::close(c);
  }
  server.join();
  ::close(srv);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(got, "over a socket");
  struct stat st {};
  ASSERT_EQ(::lstat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
}

}  // namespace
