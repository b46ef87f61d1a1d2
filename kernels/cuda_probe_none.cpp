// Builds without CUDA: no devices, and the backend cannot be created.
#include "core/common/error.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda_bench.h"
#include "kernels/cuda_probe.h"

namespace folio {

CudaProbe probe_cuda() {
  CudaProbe p;
  p.summary = "this build has no CUDA support";
  return p;
}

std::unique_ptr<Backend> create_cuda_backend(std::shared_ptr<const LoadedModel>, const BackendOptions&) {
  throw Error(ErrorCode::BackendUnavailable, "this build of Folio has no CUDA support; use --backend cpu");
}

std::unique_ptr<Backend> create_cuda_tensor_parallel_backend(std::shared_ptr<const LoadedModel>, const BackendOptions&) {
  throw Error(ErrorCode::BackendUnavailable, "this build of Folio has no CUDA support; use --backend cpu");
}

std::string nccl_unavailable() { return "this build has no CUDA support"; }

void register_cuda_backend() {
  register_gpu_lister([](std::string& why) {
    why = probe_cuda().summary;
    return std::vector<GpuInfo>();
  });
  register_backend(BackendKind::Cuda,
                   [](std::shared_ptr<const LoadedModel>, const BackendOptions&, std::string& notice) {
                     notice = "no usable GPU (" + probe_cuda().summary + "); running on the CPU";
                     return std::unique_ptr<Backend>();
                   });
}

AttentionTiming time_attention_prefill(int64_t, int, int, int, int, int, int, int, int) {
  throw Error(ErrorCode::BackendUnavailable, "this build of Folio has no CUDA support");
}

}  // namespace folio
