// atomic_file.h (internal): write an output file so that readers see either the old file or the
// complete new one, never a partial write, and so that naming a link or a device as the output
// never replaces the link or the device.
//
// What open(path) does with each kind of path:
//  - a regular file or a new name: a temporary beside it ("<name>.tmp.<random>"); commit()
//    flushes, fsyncs and renames it over the file. A file that exists keeps its permission bits.
//  - a symbolic link (a chain of them, relative or absolute, dangling or not): followed to its
//    final target, and the target is written as above; the link itself stays as it was and now
//    points at the new content.
//  - "-", /dev/stdout, /dev/fd/N, /proc/self/fd/N (and links to them): this process's descriptor
//    N, written directly (no temporary, no rename); the bytes are kept until commit().
//  - a character device, a FIFO or a socket: opened for writing without O_CREAT or O_TRUNC and
//    written directly at commit() (a FIFO's open waits for a reader, as a shell's would).
//  - a directory, or a name whose directory does not exist: refused (kInvalidArgument), before
//    anything is created.
// If commit() is not reached (an error, an exception, a signal that unwinds), the destructor
// removes the temporary and the destination is untouched. Not a lock: two writers race, and the
// last rename wins. Not a guard against another process swapping links while we write.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

#include "xent/status.h"

namespace xent::io {

// How open() will write `path` (see above). Exposed so that callers can refuse a bad output
// before doing any work (check_output_path) and tests can see the decision.
struct OutputTarget {
  enum class Kind { kFile, kDescriptor, kDevice };
  Kind kind = Kind::kFile;
  std::string path;  // kFile: the final regular-file path (links followed); kDevice: the path to open
  int fd = -1;       // kDescriptor: this process's descriptor to write to
};

// Resolves `path` as described above without creating anything. kInvalidArgument for a directory,
// a missing parent directory, a link loop, or a descriptor that is not open.
Result<OutputTarget> resolve_output_path(const std::string& path);
// Just the yes/no of resolve_output_path, for a command to refuse a bad --out before it computes.
Status check_output_path(const std::string& path);

// For files that are not an output the user named (the decoded-dataset cache, dataset_cache.h):
// open(path, options) with follow_links = false refuses anything but a regular file or a new name
// at `path` (a link planted there is neither followed nor replaced, and a link planted later is
// replaced by the rename, never followed); `mode` sets the new file's permission bits whatever the
// old file's; durable = false skips the fsyncs (for content that is checked on every read, where a
// file torn by a crash is detected and rewritten).
struct AtomicFileOptions {
  bool follow_links = true;
  int mode = -1;  // -1: an existing file's bits, else 0644
  bool durable = true;
};

class AtomicFile {
 public:
  AtomicFile() = default;
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Resolves the path and creates the temporary (or opens the device). kInvalidArgument for a
  // path that cannot be an output (see resolve_output_path), an I/O error otherwise.
  Status open(const std::string& path) { return open(path, AtomicFileOptions{}); }
  Status open(const std::string& path, const AtomicFileOptions& options);
  // Appends bytes; a short write (disk full) is an I/O error naming the file.
  Status write(const void* data, std::size_t n);
  Status write(const std::string& s) { return write(s.data(), s.size()); }
  // Flushes and fsyncs the temporary without renaming it, so that several outputs can all be
  // known complete before any of them replaces its destination; commit() still renames. For a
  // device or descriptor nothing is written before commit().
  Status flush();
  // Flushes, fsyncs, renames over the destination and fsyncs the directory; for a device or a
  // descriptor, writes the kept bytes.
  Status commit();
  // Removes the temporary (also done by the destructor when not committed).
  void abandon() noexcept;

  // The path as given to open().
  const std::string& path() const noexcept { return path_; }
  // Whether this output is written directly (a device, a FIFO, a socket, a descriptor).
  bool direct() const noexcept { return direct_fd_ >= 0; }

 private:
  std::string path_;
  std::string target_path_;  // the regular file the rename replaces (links followed)
  std::string tmp_path_;
  std::FILE* f_ = nullptr;
  int direct_fd_ = -1;  // a device or descriptor written at commit(); owned (a dup or an open)
  std::string direct_bytes_;
  bool durable_ = true;
  int slot_ = -1;  // in the table of temporaries that install_signal_cleanup's handler removes
};

// For programs (the CLI's main): installs handlers for SIGINT, SIGTERM and SIGHUP (those not
// ignored at startup) that remove the temporary of every AtomicFile still open, then let the signal
// take its default action (the exit status still says "killed by SIGTERM"), and ignores SIGXFSZ so
// that exceeding a file-size limit is a write error (EFBIG) rather than death. SIGKILL cannot be
// caught: after it a temporary may remain, the destination is still intact. SIGPIPE keeps its
// default (a closed pipe ends the program, as for any filter).
void install_signal_cleanup();

// Convenience: the whole content at once.
Status write_file_atomic(const std::string& path, const void* data, std::size_t n);
inline Status write_file_atomic(const std::string& path, const std::string& s) {
  return write_file_atomic(path, s.data(), s.size());
}

}  // namespace xent::io
