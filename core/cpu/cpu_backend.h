// The CPU backend: the reference implementation of every op of the Backend interface, in fp32,
// over the weights as stored (quantized blocks are dequantized per row panel), multi-threaded.
#pragma once

#include <memory>

#include "core/engine/backend.h"

namespace folio {

// threads <= 0: all hardware threads.
// kv_fp8: keys and values rounded as the 8-bit KV cache holds them (core/model/quant.h), kept in
// fp32: the reference of the GPU's fp8 cache and of its accuracy, not a memory saving here.
std::unique_ptr<Backend> create_cpu_backend(std::shared_ptr<const LoadedModel> model, int threads,
                                            bool kv_fp8 = false);

}  // namespace folio
