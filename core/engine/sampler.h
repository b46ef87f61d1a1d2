// Picks the next token from logits: repetition penalty, then greedy (temperature <= 0) or
// top-k -> temperature -> softmax -> top-p -> min-p -> a seeded draw.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace folio {

struct SamplerParams {
  float temperature = 0.0f;  // <= 0: greedy
  int top_k = 0;             // <= 0: off
  float top_p = 1.0f;        // >= 1: off
  float min_p = 0.0f;        // <= 0: off; keeps tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  // 1: off; > 1 discourages tokens seen in the last window
  int repetition_window = 64;
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& params);
  // `recent`: tokens already in the context (the penalty looks at the last repetition_window).
  int32_t sample(std::span<const float> logits, std::span<const int32_t> recent);
  const SamplerParams& params() const { return params_; }

 private:
  SamplerParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> order_;
};

}  // namespace folio
