// llama2.c v0 checkpoints: seven int32 header values (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size (negative: separate classifier), seq_len), then fp32 tensors in llama2.c
// order. RoPE on adjacent pairs, theta 10000, RMSNorm eps 1e-5.
#pragma once

#include <memory>
#include <string>

#include "core/model/model_weights.h"

namespace folio {

std::unique_ptr<LoadedModel> load_llama2c_model(const std::string& path, const LoadProgressFn& progress);

}  // namespace folio
