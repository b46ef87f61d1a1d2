// The CUDA backend: the whole Llama-family forward pass on one NVIDIA GPU, bf16 weights and
// activations with fp32 accumulation and an fp32 residual stream. The memory plan
// (core/model/memory_plan.h) is checked against the device's free memory and the optional cap
// before anything is allocated. Without CUDA in the build, creating it throws BackendUnavailable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/model/backend.h"

namespace folio {

struct CudaBackendOptions {
  int device = 0;
  size_t mem_limit_bytes = 0;  // cap on what Folio may use on the device; 0 = its free memory
  int64_t context_tokens = 0;  // the context the caller will ask for (checked before loading); 0 = 8192
  int64_t chunk = 0;           // largest prefill chunk (scratch is sized for it); 0 = default
};

// Prefill chunk chosen from measurements on the H200 (docs/benchmarks.md).
constexpr int64_t kDefaultCudaChunk = 4096;

std::unique_ptr<Backend> create_cuda_backend(std::shared_ptr<const LoadedModel> model,
                                             const CudaBackendOptions& options);

}  // namespace folio
