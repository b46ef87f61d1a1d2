// The CUDA backend: every op of the Backend interface (core/engine/backend.h) on one NVIDIA GPU,
// bf16 weights and activations with fp32 accumulation and an fp32 residual stream. The memory plan
// (kernels/memory_plan.h) is checked against the device's free memory and the optional cap before
// anything is allocated.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

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

// The model laid across options.devices (kernels/cuda_tensor_parallel.cpp): one CUDA backend per GPU
// on its shard, summed through NCCL. Every GPU's memory plan is checked before anything is allocated
// (Error OutOfMemory naming the GPU, the numbers and the largest context that fits on all of them);
// BackendUnavailable where NCCL is not in the build or cannot be loaded. One device is allowed (one
// rank through NCCL: the GPU test of the path).
std::unique_ptr<Backend> create_cuda_tensor_parallel_backend(std::shared_ptr<const LoadedModel> model,
                                                             const BackendOptions& options);
// Why NCCL cannot be used here; "" when it can.
std::string nccl_unavailable();

}  // namespace folio
