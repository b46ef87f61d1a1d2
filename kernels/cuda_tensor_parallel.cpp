// Tensor parallel over several GPUs of one host: one CudaBackend per GPU, each made from its shard of
// the model (core/engine/tensor_parallel.h), and the ranks' shares of the attention output and MLP
// down projections summed by NCCL's all-reduce (one communicator per GPU from ncclCommInitAll, one
// group call per sum, on each rank's own stream). NCCL is found at build time (its header gives the
// types) and loaded at run time (dlopen), so the programs start where it is not installed and say
// why several GPUs cannot be used. NVLink multicast is never asked for (NCCL_NVLS_ENABLE is left as
// the environment sets it).

#include <algorithm>
#include <exception>
#include <mutex>
#include <string>

#include "core/common/error.h"
#include "core/engine/tensor_parallel.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda_probe.h"
#include "kernels/gemm.h"
#include "kernels/memory_plan.h"

#if FOLIO_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "kernels/shared_library.h"
#endif

namespace folio {

#if FOLIO_HAVE_NCCL
namespace {

struct NcclApi {
  decltype(&ncclCommInitAll) comm_init_all = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclGroupStart) group_start = nullptr;
  decltype(&ncclGroupEnd) group_end = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  std::string missing;  // why it could not be loaded ("" when loaded)
};

const NcclApi& nccl() {
  static NcclApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    cuda::SharedLibrary lib("NCCL (" FOLIO_NCCL_SONAME ")", {FOLIO_NCCL_SONAME, FOLIO_NCCL_BUILD_PATH});
    lib.bind("ncclCommInitAll", api.comm_init_all);
    lib.bind("ncclCommDestroy", api.comm_destroy);
    lib.bind("ncclAllReduce", api.all_reduce);
    lib.bind("ncclGroupStart", api.group_start);
    lib.bind("ncclGroupEnd", api.group_end);
    lib.bind("ncclGetErrorString", api.error_string);
    api.missing = lib.error();
  });
  return api;
}

void cuda_check(cudaError_t e) {
  if (e != cudaSuccess)
    throw Error(ErrorCode::BackendUnavailable, std::string("CUDA, preparing NCCL: ") + cudaGetErrorString(e));
}

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    throw Error(ErrorCode::BackendUnavailable, std::string("NCCL ") + what + " failed: " + nccl().error_string(r));
}

// fp32 parts on each rank's GPU, summed in place by one group of all-reduces.
class NcclCollective final : public Collective {
 public:
  explicit NcclCollective(const std::vector<int>& devices) : comms_(devices.size(), nullptr) {
    check(nccl().comm_init_all(comms_.data(), static_cast<int>(devices.size()), devices.data()), "ncclCommInitAll");
  }
  ~NcclCollective() override {
    for (ncclComm_t c : comms_)
      if (c != nullptr) nccl().comm_destroy(c);
  }
  std::string name() const override { return "NCCL all-reduce"; }
  void all_reduce_sum(std::span<const PartBuffer> parts) override {
    if (parts.size() != comms_.size()) throw Error(ErrorCode::Internal, "NCCL: one part per rank is expected");
    for (const PartBuffer& p : parts)
      if (!p.on_device || p.element_bytes != 4) throw Error(ErrorCode::Internal, "NCCL sums fp32 parts on the GPUs");
    check(nccl().group_start(), "ncclGroupStart");
    // the group is always closed, even when a call in it fails (an open group would swallow every
    // later all-reduce and leave the parts unsummed)
    ncclResult_t first = ncclSuccess;
    for (size_t r = 0; r < parts.size() && first == ncclSuccess; ++r)
      first = nccl().all_reduce(parts[r].data, parts[r].data, static_cast<size_t>(parts[r].count), ncclFloat32,
                                ncclSum, comms_[r], static_cast<cudaStream_t>(parts[r].stream));
    const ncclResult_t end = nccl().group_end();
    check(first, "ncclAllReduce");
    check(end, "ncclGroupEnd");
  }

  // One small sum on every GPU, so NCCL's own buffers (connected lazily on first use) are on the
  // devices before the ranks measure their free memory.
  void warm_up(const std::vector<int>& devices) {
    std::vector<float*> bufs(devices.size(), nullptr);
    std::vector<PartBuffer> parts(devices.size());
    for (size_t r = 0; r < devices.size(); ++r) {
      cuda_check(cudaSetDevice(devices[r]));
      cuda_check(cudaMalloc(&bufs[r], 256 * sizeof(float)));
      cuda_check(cudaMemset(bufs[r], 0, 256 * sizeof(float)));
      parts[r].data = bufs[r];
      parts[r].count = 256;
      parts[r].on_device = true;
      parts[r].device = devices[r];
    }
    std::exception_ptr error;
    try {
      all_reduce_sum(parts);
      for (size_t r = 0; r < devices.size(); ++r) {
        cuda_check(cudaSetDevice(devices[r]));
        cuda_check(cudaDeviceSynchronize());
      }
    } catch (...) {
      error = std::current_exception();
    }
    for (size_t r = 0; r < devices.size(); ++r) {
      cudaSetDevice(devices[r]);
      cudaFree(bufs[r]);
    }
    if (error) std::rethrow_exception(error);
  }

 private:
  std::vector<ncclComm_t> comms_;
};

}  // namespace

std::string nccl_unavailable() { return nccl().missing; }
#else
std::string nccl_unavailable() {
  return "this build has no NCCL (its header and library were not found when it was configured)";
}
#endif

std::unique_ptr<Backend> create_cuda_tensor_parallel_backend(std::shared_ptr<const LoadedModel> model,
                                                             const BackendOptions& options) {
  const std::vector<int>& devices = options.devices;
  if (devices.empty()) throw Error(ErrorCode::BadArgument, "tensor parallel needs a list of GPUs");
  if (const std::string why = nccl_unavailable(); !why.empty())
    throw Error(ErrorCode::BackendUnavailable,
                "the model cannot be laid across " + std::to_string(devices.size()) + " GPUs: " + why +
                    ". Install NCCL (the CUDA toolkit's, or pip's nvidia-nccl-cu13), or use one GPU (--gpu N)");
  if (const std::string why = cuda::cublaslt_unavailable(); !why.empty())
    throw Error(ErrorCode::BackendUnavailable, "the model cannot be laid across GPUs: " + why);
  const CudaProbe found = probe_cuda();
  for (size_t i = 0; i < devices.size(); ++i) {
    if (devices[i] < 0 || devices[i] >= found.device_count)
      throw Error(ErrorCode::BadArgument, "the model cannot be laid across " + std::to_string(devices.size()) +
                                              " GPUs: there is no GPU cuda:" + std::to_string(devices[i]) + " (" +
                                              found.summary + ")");
    if (std::find(devices.begin(), devices.begin() + static_cast<std::ptrdiff_t>(i), devices[i]) !=
        devices.begin() + static_cast<std::ptrdiff_t>(i))
      throw Error(ErrorCode::BadArgument, "cuda:" + std::to_string(devices[i]) + " is listed twice");
  }
  const int ranks = static_cast<int>(devices.size());
  const TensorParallelLayout layout = plan_tensor_parallel(*model, ranks);
#if FOLIO_HAVE_NCCL
  // NCCL first, so its memory is taken before the plans below measure what is free
  auto collective = std::make_unique<NcclCollective>(devices);
  collective->warm_up(devices);
#else
  std::unique_ptr<Collective> collective;  // unreachable: nccl_unavailable() refused above
#endif
  const CudaProbe probe = probe_cuda();
  std::vector<std::shared_ptr<const LoadedModel>> shards;
  for (int r = 0; r < ranks; ++r) shards.push_back(shard_model(model, layout, r));

  // Every GPU's plan before anything is allocated on any of them.
  const int64_t chunk = options.chunk > 0 ? options.chunk : kDefaultCudaChunk;
  const ModelConfig& c = model->config;
  const int64_t context = options.context_tokens > 0 ? options.context_tokens : std::min<int64_t>(c.max_context, 8192);
  const size_t part_bytes = static_cast<size_t>(chunk) * static_cast<size_t>(c.hidden) * sizeof(float);
  std::string refused;
  int64_t fits_everywhere = -1;
  for (int r = 0; r < ranks; ++r) {
    const ModelConfig& sc = shards[static_cast<size_t>(r)]->config;
    const ModelWeights* native = options.quantized_weights ? &shards[static_cast<size_t>(r)]->weights : nullptr;
    const CudaDeviceInfo& d = probe.devices[static_cast<size_t>(devices[static_cast<size_t>(r)])];
    size_t available = d.free_bytes;
    if (options.mem_limit_bytes > 0) available = std::min(available, options.mem_limit_bytes);
    available = available > part_bytes ? available - part_bytes : 0;
    const MemoryPlan plan = plan_memory(sc, context, chunk, native, options.kv_quant);
    const int64_t fits = largest_context(sc, chunk, available, native, options.kv_quant);
    fits_everywhere = fits_everywhere < 0 ? fits : std::min(fits_everywhere, fits);
    if (plan.total() > available && refused.empty())
      refused = "cuda:" + std::to_string(d.index) + " (" + d.name + ", rank " + std::to_string(r) + " of " +
                std::to_string(ranks) + ") cannot hold its share with a context of " + std::to_string(context) +
                " tokens: it needs " + describe_plan(plan) + ", and " + format_gib(available) +
                (options.mem_limit_bytes > 0 && options.mem_limit_bytes < d.free_bytes ? " are allowed by --gpu-mem-limit"
                                                                                       : " are free") + ". ";
  }
  if (!refused.empty()) {
    if (fits_everywhere > 0)
      refused += "The largest context that fits on all " + std::to_string(ranks) + " GPUs is " +
                 std::to_string(fits_everywhere) + " tokens; choose a smaller context (--ctx) or add GPUs.";
    else
      refused += "Not even the weights' shares and one prefill chunk fit; add GPUs or use a smaller model.";
    throw Error(ErrorCode::OutOfMemory, refused);
  }

  std::vector<std::unique_ptr<Backend>> backends;
  for (int r = 0; r < ranks; ++r) {
    BackendOptions o = options;
    o.device = devices[static_cast<size_t>(r)];
    o.devices.clear();
    o.tensor_parallel_rank = true;
    // decode steps are not recorded per rank yet: the all-reduce sits between a rank's ops
    o.decode_graphs = false;
    backends.push_back(create_cuda_backend(shards[static_cast<size_t>(r)], o));
  }
  return create_tensor_parallel_backend(std::move(model), layout, std::move(backends), std::move(collective));
}

}  // namespace folio
