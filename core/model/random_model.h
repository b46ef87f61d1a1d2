// Models with random weights at real shapes, for benchmarks where no real model can be had.
// Speed and memory only: their output means nothing.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/model/model_weights.h"

namespace folio {

// Named shapes: "smollm2-135m", "llama-3.1-8b", "phi-3.5-mini", "qwen2.5-7b". Throws BadArgument.
ModelConfig named_model_shape(const std::string& name);
std::vector<std::string> named_model_shapes();

// Random weights (normal, std 0.02; norms 1) stored as `dtype`, deterministic in `seed`.
// on_device: matrices get shapes but no host data; a GPU backend fills them (LoadedModel::random_on_device),
// in the blocks of a quantized `dtype` (random quants with sane scales) or else as bf16.
std::unique_ptr<LoadedModel> make_random_model(const ModelConfig& config, DType dtype, uint64_t seed,
                                               bool on_device = false);

}  // namespace folio
