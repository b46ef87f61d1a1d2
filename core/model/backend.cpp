#include "core/model/backend.h"

#include "core/common/error.h"

namespace folio {

void check_forward_args(const ModelConfig& c, const KvCache& kv, std::span<const int32_t> tokens, int64_t pos) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (pos < 0 || pos + n > kv.capacity())
    throw Error(ErrorCode::OutOfContext, "positions " + std::to_string(pos) + ".." + std::to_string(pos + n) +
                                             " do not fit the context of " + std::to_string(kv.capacity()) + " tokens");
  for (int32_t t : tokens)
    if (t < 0 || t >= c.vocab_size)
      throw Error(ErrorCode::BadArgument, "token id " + std::to_string(t) + " is outside the vocabulary (" +
                                              std::to_string(c.vocab_size) + ")");
}

void Backend::forward_all_logits(KvCache& kv, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
                                 float* logits) {
  const size_t vocab = static_cast<size_t>(config().vocab_size);
  for (size_t t = 0; t < tokens.size(); ++t)
    forward(kv, tokens.subspan(t, 1), pos + static_cast<int64_t>(t), rope, logits + t * vocab);
}

}  // namespace folio
