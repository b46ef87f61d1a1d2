#include "core/chat/token_count_cache.h"

#include <cstdio>

namespace folio::chat {

std::string TokenCountCache::key(std::string_view tokenizer_id, std::string_view text) {
  // Two differently seeded 64-bit FNV-1a hashes (as KvStore names its files), and the size.
  uint64_t a = 1469598103934665603ull, b = 1469598103934665603ull ^ 0x666f6c696f746f6bull;
  auto add = [](uint64_t& h, std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  };
  for (uint64_t* h : {&a, &b}) {
    add(*h, tokenizer_id);
    add(*h, std::string_view("\0", 1));
    add(*h, text);
  }
  char out[64];
  std::snprintf(out, sizeof out, "%016llx%016llx-%zu", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b), text.size());
  return out;
}

}  // namespace folio::chat
