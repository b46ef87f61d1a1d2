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
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/engine/engine.h"

namespace folio::chat {

struct KvEntry {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> kv;  // Session::save_prefix's layout and element type
  double compute_ms = 0.0;  // what the prefill of these tokens took (0: not known)
};

// A saved entry that a prompt shares the start of.
struct KvPrefixMatch {
  std::string key;
  KvEntry entry;
  int64_t common_tokens = 0;  // the entry's tokens and the prompt's agree on this many from the start
};

// A saved entry's place in the store: its key, its tokens' count, how many of them start the prompt.
struct KvCandidate {
  std::string key;
  int64_t common_tokens = 0;
  uint64_t n_tokens = 0;
  uint64_t kv_bytes = 0;
  double compute_ms = 0.0;  // what the prefill of its tokens took when it was saved (0: not known)
};

class KvStore {
 public:
  // Files go to `folder` (made when missing); at most max_bytes in all (least recently used first out).
  KvStore(std::string folder, uint64_t max_bytes);
  const std::string& folder() const { return folder_; }
  uint64_t max_bytes() const { return max_bytes_; }

  // The KV layout part of a key: which backend computed it (their numbers differ a little) and the
  // element type it is kept in (Session::kv_element_bytes()).
  static std::string layout(bool on_gpu, int element_bytes);
  // The file name for a prefix: the model's identity (e.g. its path and size), the KV layout and the
  // tokens. Its first 16 characters name the model and layout alone (see load_longest_prefix).
  static std::string key(const std::string& model_id, const std::string& kv_layout, std::span<const int32_t> tokens);

  // ---- in pieces (a KV of gigabytes never held whole in memory: Session::save_prefix and
  // restore_prefix stream it one tensor at a time)
  // A save under way: write() the KV's bytes in order, then commit(), which syncs, renames the
  // file into place and evicts (returns the bytes written). Dropped without commit: no file.
  // Throws folio::Error when the folder cannot be written.
  class Saving {
   public:
    ~Saving();
    Saving(Saving&&) noexcept;
    Saving& operator=(Saving&&) = delete;
    bool write(std::span<const uint8_t> bytes);  // false: the disk refused (commit() then says why)
    uint64_t commit();

   private:
    friend class KvStore;
    Saving(KvStore& store, std::string key, std::span<const int32_t> tokens, uint64_t kv_bytes, double compute_ms);
    struct State;
    std::unique_ptr<State> s_;
  };
  // compute_ms: what the prefill of these tokens took (0: not known), for restore_saved_prefix's
  // choice between reading the file and computing the tokens again.
  // A file larger than the folder's whole limit is refused (folio::Error saying so).
  Saving begin_save(const std::string& key, std::span<const int32_t> tokens, uint64_t kv_bytes,
                    double compute_ms = 0.0);

  // A saved entry being read: its tokens at once, its KV with read() in order, then finish() checks
  // the checksum (false: the file is damaged, deleted, `problem` says why; what was read is wrong).
  class Reading {
   public:
    ~Reading();
    Reading(Reading&&) noexcept;
    Reading& operator=(Reading&&) = delete;
    const std::vector<int32_t>& tokens() const;
    uint64_t kv_bytes() const;
    double compute_ms() const;
    bool read(std::span<uint8_t> into);  // false: past the end or the file ended early
    bool finish(std::string* problem = nullptr);

   private:
    friend class KvStore;
    Reading();
    struct State;
    std::unique_ptr<State> s_;
  };
  // The entry under `key`, opened; nullopt when there is none, or its header or length does not
  // check out (then it is deleted and `problem` says why).
  std::optional<Reading> open(const std::string& key, std::string* problem = nullptr) const;
  // Of the entries saved for this model and KV layout, those whose tokens share min_tokens or more
  // with the start of `tokens`, the best first (the longest shared start; of equals the shortest
  // file). Chosen from the files' headers and tokens alone; an entry counts only when the shared start
  // is at least a quarter of its own tokens (reading a file costs in proportion to its length, a
  // prefill only in proportion to what it computes).
  std::vector<KvCandidate> candidates(const std::string& model_id, const std::string& kv_layout,
                                      std::span<const int32_t> tokens, int64_t min_tokens) const;

  // ---- whole, in memory
  // The entry saved under `key`; nullopt when there is none, or when it does not check out (then
  // the file is deleted and `problem` says why).
  std::optional<KvEntry> load(const std::string& key, std::string* problem = nullptr) const;
  // The best of candidates() that checks out, loaded; a file that does not is deleted, `problem`
  // says why, and the next best is tried. A hit counts as a use (the last to be evicted).
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
  // How fast the last load read and restored a KV (bytes per millisecond; 0: none measured yet),
  // kept in the folder across restarts.
  double read_rate() const;
  void note_read(uint64_t bytes, double ms) const;

 private:
  std::string path_of(const std::string& key) const;
  // Least recently used out until the folder is within its limit (never `keep`); leftovers of
  // killed saves older than an hour too.
  void evict(const std::string& keep, uint64_t keep_bytes);
  std::string folder_;
  uint64_t max_bytes_;
  mutable double read_rate_ = -1.0;  // -1: not looked up yet
};

// ---- between a store and a session, streamed a tensor at a time (8B at 128K: 16 GiB)

struct KvRestore {
  int64_t tokens = 0;  // restored (0: none)
  std::string note;    // why a saved KV was not used, when one was refused
};
// Restores into `session` (cleared first) the longest start of `tokens` saved for this model and
// layout (KvStore::candidates, at least min_tokens): the best candidate that checks out; a damaged
// file is deleted, the next best tried, and `note` says so. A file that would take longer to read
// (its size at the store's last measured read rate) than its tokens took to compute is not read
// (a fast GPU beside a slow disk): `note` says so and the tokens are prefilled; `always` reads it
// anyway (measurements).
KvRestore restore_saved_prefix(const KvStore& store, Session& session, const std::string& model_id,
                               const std::string& kv_layout, std::span<const int32_t> tokens, int64_t min_tokens,
                               bool always = false);
// Saves the session's KV of its first tokens.size() positions (which must be `tokens`) under `key`;
// compute_ms: what their prefill took (0: not known). Returns the bytes written. Throws folio::Error
// when it cannot be written.
uint64_t save_session_prefix(KvStore& store, const Session& session, const std::string& key,
                             std::span<const int32_t> tokens, double compute_ms = 0.0);

}  // namespace folio::chat
