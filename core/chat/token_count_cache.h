// Token counts kept across runs. Counting a large document's units with the tokenizer is the slow
// part of indexing it for packing (the R reference manual: 1.4 million tokens); a document opened
// again, even after a restart, has the same units, so their counts are looked up instead (the app
// keeps them in its SQLite store: folio::store::StoredTokenCounts). Only exact counts are kept
// (a count that stopped at a limit is a lower bound). Qt-free.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace folio::chat {

class TokenCountCache {
 public:
  virtual ~TokenCountCache() = default;
  // The key of a text counted with a tokenizer: 128 bits of hash over both, and the text's size.
  static std::string key(std::string_view tokenizer_id, std::string_view text);
  // The saved count of `key`, or -1.
  virtual int64_t find(const std::string& key) = 0;
  // Saves a count (it may be held until flush()).
  virtual void put(const std::string& key, int64_t tokens) = 0;
  // Writes what put() holds (one transaction for many units).
  virtual void flush() {}
};

}  // namespace folio::chat
