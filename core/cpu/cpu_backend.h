// The CPU backend: the reference implementation of every op of the Backend interface, in fp32,
// over the weights as stored (quantized blocks are dequantized per row panel), multi-threaded.
#pragma once

#include <memory>

#include "core/engine/backend.h"

namespace folio {

// threads <= 0: all hardware threads.
std::unique_ptr<Backend> create_cpu_backend(std::shared_ptr<const LoadedModel> model, int threads);

}  // namespace folio
