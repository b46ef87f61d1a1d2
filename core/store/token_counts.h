// The store as the Conversation service's token-count cache: counts of documents' units saved in
// the database's token_counts table, so a document opened again (after a restart too) is indexed
// for packing without counting its units again. Counts put() are held and written in one
// transaction by flush(). Used on the thread of the Database it is given.
#pragma once

#include <string>
#include <unordered_map>

#include "core/chat/token_count_cache.h"
#include "core/store/store.h"

namespace folio::store {

class StoredTokenCounts : public folio::chat::TokenCountCache {
 public:
  explicit StoredTokenCounts(Database& db) : db_(db) {}
  int64_t find(const std::string& key) override;
  void put(const std::string& key, int64_t tokens) override;
  void flush() override;  // throws folio::Error when the database cannot be written
  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }

 private:
  Database& db_;
  std::unordered_map<std::string, int64_t> pending_;
  int64_t hits_ = 0, misses_ = 0;
};

}  // namespace folio::store
