#include "core/store/token_counts.h"

#include <vector>

namespace folio::store {

int64_t StoredTokenCounts::find(const std::string& key) {
  if (auto it = pending_.find(key); it != pending_.end()) return it->second;  // put, not yet written
  const int64_t n = db_.token_count(key);
  (n >= 0 ? hits_ : misses_) += 1;
  return n;
}

void StoredTokenCounts::put(const std::string& key, int64_t tokens) {
  pending_[key] = tokens;
}

void StoredTokenCounts::flush() {
  if (pending_.empty()) return;
  std::vector<std::pair<std::string, int64_t>> counts(pending_.begin(), pending_.end());
  pending_.clear();
  db_.save_token_counts(counts);
}

}  // namespace folio::store
