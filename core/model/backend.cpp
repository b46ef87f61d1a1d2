#include "core/model/backend.h"

#include "core/common/error.h"

namespace folio {

void AttentionStats::add_plan(int layer, int head, int n_layers, int n_heads, int64_t computed, int64_t causal,
                              double est_mass, bool mass_reached) {
  if (head_computed.size() != static_cast<size_t>(n_layers)) {
    head_computed.assign(static_cast<size_t>(n_layers), std::vector<int64_t>(static_cast<size_t>(n_heads), 0));
    head_causal.assign(static_cast<size_t>(n_layers), std::vector<int64_t>(static_cast<size_t>(n_heads), 0));
  }
  tiles_computed += computed;
  tiles_causal += causal;
  head_computed[static_cast<size_t>(layer)][static_cast<size_t>(head)] += computed;
  head_causal[static_cast<size_t>(layer)][static_cast<size_t>(head)] += causal;
  est_mass_sum += est_mass;
  ++head_plans;
  if (!mass_reached) ++heads_short_of_mass;
}

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
