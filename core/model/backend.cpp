#include "core/model/backend.h"

namespace folio {

void Backend::forward_all_logits(KvCache& kv, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
                                 float* logits) {
  const size_t vocab = static_cast<size_t>(config().vocab_size);
  for (size_t t = 0; t < tokens.size(); ++t)
    forward(kv, tokens.subspan(t, 1), pos + static_cast<int64_t>(t), rope, logits + t * vocab);
}

}  // namespace folio
