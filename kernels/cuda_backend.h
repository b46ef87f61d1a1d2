// The CUDA backend: every op of the Backend interface (core/engine/backend.h) on one NVIDIA GPU,
// bf16 weights and activations with fp32 accumulation and an fp32 residual stream. The memory plan
// (kernels/memory_plan.h) is checked against the device's free memory and the optional cap before
// anything is allocated.
#pragma once

#include <cstdint>
#include <memory>

#include "core/engine/backend.h"

namespace folio {

// Prefill chunk chosen from measurements on the H200 (docs/benchmarks.md).
constexpr int64_t kDefaultCudaChunk = 4096;

// Makes BackendKind::Cuda available to Engine::load/create in this executable. Without CUDA in
// the build, or without a usable GPU, the engine then says so once and runs on the CPU.
void register_cuda_backend();

// The backend itself (GPU tests); throws Error (OutOfMemory with the numbers, UnsupportedModel,
// BackendUnavailable without CUDA in the build).
std::unique_ptr<Backend> create_cuda_backend(std::shared_ptr<const LoadedModel> model, const BackendOptions& options);

}  // namespace folio
