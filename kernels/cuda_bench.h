// Times kernels alone on the GPU (folio-bench --attention-only). Without CUDA: throws.
#pragma once

#include <cstdint>
#include <string>

namespace folio {

struct AttentionTiming {
  double ms = 0.0;       // median over reps
  double tflops = 0.0;   // causal: 2 * 2 * n^2 / 2 * head_dim * heads FLOP per call
  std::string device;
};

// Causal prefill attention over n tokens (one chunk: queries = keys = n), bf16, random inputs.
AttentionTiming time_attention_prefill(int64_t n, int heads, int kv_heads, int head_dim, int reps, int device);

}  // namespace folio
