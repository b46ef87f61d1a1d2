// The CPU backend: the reference implementation of every op of the Backend interface, in fp32,
// over the weights as stored (quantized blocks are dequantized per row panel), multi-threaded.
#pragma once

#include <memory>

#include "core/engine/backend.h"

namespace folio {

// threads <= 0: all hardware threads.
// kv_quant: keys and values rounded as an 8-bit KV cache holds them (core/model/quant.h), kept in
// fp32: the reference of the GPU's 8-bit cache and of its accuracy, not a memory saving here.
std::unique_ptr<Backend> create_cpu_backend(std::shared_ptr<const LoadedModel> model, int threads,
                                            KvQuant kv_quant = KvQuant::None);

}  // namespace folio
