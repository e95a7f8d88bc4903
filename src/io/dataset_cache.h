// dataset_cache.h (internal, used by the CLI's data loading): a cache of decoded gzip'd IDX files,
// as torchvision keeps one, so that a second run reads the plain bytes instead of inflating them.
//
// Only gzip'd sources are cached (a plain file is already what the cache would hold). An entry is
// one file per source, named after the source's file name and a hash of its canonical path, and
// holds a small header then the decoded (plain IDX) bytes. The header records the source's
// identity and content stamp: canonical path, size, mtime and ctime in ns, inode, device and its
// last 8 bytes (the gzip trailer: CRC-32 and length of the last member); plus the decoded size
// and the CRC-32 of the decoded bytes. An entry is used only when every field matches the source
// as it is now, the entry is a regular file owned by this user and writable by no one else, its
// size is exactly header + decoded bytes, the CRC matches, and the bytes pass parse_idx (the same
// hostile-bytes IDX parser as any file). Anything else is a miss: the source is decoded and the
// entry rewritten.
//
// Writing is atomic (temporary + rename, io/atomic_file.h): readers, and concurrent runs writing
// the same entry, see the old entry or a whole new one, never a partial one; the last rename wins
// and both hold the same bytes. A link planted at the entry path is neither followed nor
// replaced. The directory is created 0700, entries 0600. A cache that cannot be written (no
// directory, read-only, disk full) never fails the load: the data come from the source and the
// failure is returned for the caller to mention once. After writing an entry, entries whose
// source path no longer exists are removed. Not a general file cache, not a lock, no size limit
// (one entry per source path, replaced when the source changes).
#pragma once

#include <string>

#include "xent/io/idx.h"
#include "xent/status.h"

namespace xent::io {

// The cache directory a user would expect: $XENT_CACHE_DIR, else $XDG_CACHE_HOME/xent (when
// absolute, as the XDG spec requires), else $HOME/.cache/xent; empty when none of them is set.
std::string default_dataset_cache_dir();

enum class CacheUse {
  kOff,    // caching turned off (enabled false: --no-cache), or no directory to put it in
  kPlain,  // the source is not gzip'd: read as it is, never cached
  kHit,    // read from the cache entry
  kMiss,   // decoded from the source (no usable entry); the entry was (re)written unless write_error says not
};
const char* cache_use_name(CacheUse u) noexcept;  // "off", "plain", "hit", "miss"

struct CachedIdx {
  Result<IdxArray> array = IdxArray{};
  CacheUse use = CacheUse::kOff;
  std::string entry;       // the entry's path (empty when off or plain)
  Status write_error;      // a miss whose entry could not be written, or kOff for want of a directory
};

// read_idx_file(path, limits) through the cache in `cache_dir` (created 0700 when missing).
// Errors in the source are read_idx_file's; cache problems never are errors (see above): an empty
// cache_dir with `enabled` reads a gzip'd source directly (kOff) and says why in write_error.
CachedIdx read_idx_file_cached(const std::string& path, const std::string& cache_dir, bool enabled,
                               const IdxLimits& limits = {}) noexcept;

}  // namespace xent::io
