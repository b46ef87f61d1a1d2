// The KV of a prompt prefix (the system turn with the documents) kept on disk, so the same
// documents asked about again, even after a restart, start from it instead of a fresh prefill.
// One file per prefix in a folder: named by a hash of the model's identity and the KV layout and
// one of those and the prefix's tokens; it holds those tokens (the final check: they must be the
// start of the new prompt) and the KV, with a checksum over everything. A prompt that shares only
// the start of a saved prefix (documents added after the saved ones) finds it by its tokens
// (load_longest_prefix) and restores that start. Written to a temporary file, synced and
// renamed into place, so a process killed mid-save leaves no file that loads; a file that does not
// check out is deleted and reported. The folder is kept under a size limit by deleting the least
// recently used files. Qt-free; Conversation uses it (folio-cli --kv-cache).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace folio::chat {

struct KvEntry {
  std::vector<int32_t> tokens;
  std::vector<float> kv;  // Session::save_prefix's layout
};

// A saved entry that a prompt shares the start of.
struct KvPrefixMatch {
  std::string key;
  KvEntry entry;
  int64_t common_tokens = 0;  // the entry's tokens and the prompt's agree on this many from the start
};

class KvStore {
 public:
  // Files go to `folder` (made when missing); at most max_bytes in all (least recently used first out).
  KvStore(std::string folder, uint64_t max_bytes);
  const std::string& folder() const { return folder_; }
  uint64_t max_bytes() const { return max_bytes_; }

  // The file name for a prefix: the model's identity (e.g. its path and size), the KV layout and the
  // tokens. Its first 16 characters name the model and layout alone (see load_longest_prefix).
  static std::string key(const std::string& model_id, const std::string& kv_layout, std::span<const int32_t> tokens);

  // The entry saved under `key`; nullopt when there is none, or when it does not check out (then
  // the file is deleted and `problem` says why).
  std::optional<KvEntry> load(const std::string& key, std::string* problem = nullptr) const;
  // Of the entries saved for this model and KV layout, the one whose tokens share the longest start
  // with `tokens`, loaded and checked as load() does; nullopt when none shares min_tokens or more.
  // Chosen from the files' headers and tokens alone; an entry counts only when the shared start is
  // at least a quarter of its own tokens (reading a file costs in proportion to its length, a
  // prefill only in proportion to what it computes). A file that does not check out is deleted,
  // `problem` says why, and the next best is tried. A hit counts as a use (the last to be evicted).
  std::optional<KvPrefixMatch> load_longest_prefix(const std::string& model_id, const std::string& kv_layout,
                                                   std::span<const int32_t> tokens, int64_t min_tokens,
                                                   std::string* problem = nullptr) const;
  // Saves atomically (temporary file, fsync, rename), then deletes the least recently used files
  // beyond the size limit (never the one just saved). Returns the bytes written; throws folio::Error
  // when the folder cannot be written.
  uint64_t save(const std::string& key, const KvEntry& entry);
  // Whether an entry is saved under `key` (not checked: load() does that).
  bool contains(const std::string& key) const;
  // Bytes of all saved entries.
  uint64_t used_bytes() const;

 private:
  std::string path_of(const std::string& key) const;
  // load() without the last words of `problem` (what the caller does next).
  std::optional<KvEntry> read_checked(const std::string& key, std::string* problem) const;
  std::string folder_;
  uint64_t max_bytes_;
};

}  // namespace folio::chat
