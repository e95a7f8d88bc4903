// atomic_file.h (internal): write a file so that readers see either the old file or the complete
// new one, never a partial write.
//
// AtomicFile writes to a temporary file in the destination's directory ("<path>.tmp.<random>"),
// and commit() flushes, fsyncs and renames it over the destination. If commit() is not reached
// (an error, an exception, a signal that unwinds), the destructor removes the temporary and the
// destination is untouched. Not a lock: two writers race, and the last rename wins.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

#include "xent/status.h"

namespace xent::io {

class AtomicFile {
 public:
  AtomicFile() = default;
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Creates the temporary. Fails with an I/O error naming the directory if it cannot.
  Status open(const std::string& path);
  // Appends bytes; a short write (disk full) is an I/O error naming the file.
  Status write(const void* data, std::size_t n);
  Status write(const std::string& s) { return write(s.data(), s.size()); }
  // Flushes and fsyncs the temporary without renaming it, so that several outputs can all be
  // known complete before any of them replaces its destination; commit() still renames.
  Status flush();
  // Flushes, fsyncs, renames over the destination and fsyncs the directory.
  Status commit();
  // Removes the temporary (also done by the destructor when not committed).
  void abandon() noexcept;

  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* f_ = nullptr;
  int slot_ = -1;  // in the table of temporaries that install_signal_cleanup's handler removes
};

// For programs (the CLI's main): installs handlers for SIGINT, SIGTERM and SIGHUP (those not
// ignored at startup) that remove the temporary of every AtomicFile still open, then let the signal
// take its default action (the exit status still says "killed by SIGTERM"), and ignores SIGXFSZ so
// that exceeding a file-size limit is a write error (EFBIG) rather than death. SIGKILL cannot be
// caught: after it a temporary may remain, the destination is still intact.
void install_signal_cleanup();

// Convenience: the whole content at once.
Status write_file_atomic(const std::string& path, const void* data, std::size_t n);
inline Status write_file_atomic(const std::string& path, const std::string& s) {
  return write_file_atomic(path, s.data(), s.size());
}

}  // namespace xent::io
