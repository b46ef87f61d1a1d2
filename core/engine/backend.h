// The one backend interface, at the level of ops. A backend holds the weights in its own memory (or
// uses them in place), the activations of one step of at most max_step() tokens, and KV caches;
// it runs ops on them. The layer loop, the attention policy, estimation's bookkeeping, stats and
// timing live once in core/engine/forward.cpp and drive every backend through these calls. The
// CPU backend (core/cpu) is the reference of every op; the CUDA backend (kernels/) implements the
// same ops and a GPU test compares them. A tensor-parallel backend wraps N such backends, each
// holding a slice of the heads and MLP columns, and sums the two residual-adding projections.
//
// Activations by role (the forward pass names them, never touches their memory):
//   x    residual stream [n][hidden]            xb   normed input of a projection [n][hidden]
//   qkv  fused projection (then q after RoPE)   att  attention output [n][q_dim]
//   gu   fused gate|up [n][2 ffn]               act  silu(gate) * up [n][ffn]
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/attention/sparse.h"
#include "core/model/model_config.h"
#include "core/model/quant.h"

namespace folio {

class LoadedModel;

enum class BackendKind { Cpu, Cuda };
const char* backend_kind_name(BackendKind k);
const char* backend_key(BackendKind k);  // "cpu" or "cuda": as on the command line and in configs

// Memory a backend holds, by category, on one device.
struct DeviceMemory {
  std::string device;          // "cpu", "cuda:0" ...
  size_t weights_bytes = 0;    // weights as the backend holds them (mapped files count for the CPU)
  size_t kv_bytes = 0;         // all live KV caches
  size_t scratch_bytes = 0;    // activations and workspaces
  size_t total_bytes = 0;      // device capacity (0 = unknown)
  size_t free_bytes = 0;       // free as the device reports it (0 = unknown)
};

// What creating a backend needs besides the model. Kernel variants are options here, never
// environment variables read inside library code.
struct BackendOptions {
  int threads = 0;             // CPU threads; 0 = all
  int device = 0;              // GPU index
  size_t mem_limit_bytes = 0;  // cap on what Folio may use on the device; 0 = its free memory
  int64_t context_tokens = 0;  // the context sessions will ask for (checked before loading); 0 = 8192
  int64_t chunk = 0;           // largest prefill step (scratch is sized for it); 0 = the backend's default
  // GPU: quantized weights (GGUF Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K) stay in their blocks in device
  // memory; false expands every weight to bf16 at load (more memory, the same GEMMs as safetensors).
  bool quantized_weights = true;
  // CUDA kernel variants (benchmarks compare them): 1 or 2 m16 query tiles per warp in the prefill
  // kernel; the prefill attention kernel (0 = the best this GPU runs, 1 = mma.sync, 2 = Hopper
  // wgmma/TMA); sparse sample sums through cuBLASLt instead of the fused kernel.
  int attention_query_mtiles = 2;
  int attention_kernel = 0;
  bool sparse_sums_gemm = false;
  // Decode steps recorded once and replayed (CUDA graphs; Backend::recorded_step); false issues
  // every op of every token (benchmarks compare the two).
  bool decode_graphs = true;
  // The decode attention kernel: 0 = the tensor-core kernel where it applies (bf16 KV, head dims 64,
  // 96, 128), 1 = the SIMT kernel (benchmarks compare the two).
  int decode_kernel = 0;
  // GPU: the devices to lay the model across, tensor parallel (core/engine/tensor_parallel.h; two or
  // more: one rank per device, summed through NCCL); empty or one: `device` alone.
  std::vector<int> devices;
  // This backend is one rank of such a layout: it keeps a buffer for its share of the projections.
  bool tensor_parallel_rank = false;
  // An 8-bit KV cache (EngineOptions::kv_quant).
  KvQuant kv_quant = KvQuant::None;
};

// A backend's KV cache for one session: keys and values of positions [0, capacity).
class KvCache {
 public:
  virtual ~KvCache() = default;
  virtual int64_t capacity() const = 0;
  virtual size_t bytes() const = 0;
};

// What estimation chose for one head of one layer and step.
struct HeadPlanResult {
  int64_t computed = 0;  // key tiles listed
  double est_mass = 1.0;  // estimated share of the attention mass kept
  bool mass_reached = true;
};

// Whether a backend can run sparse prefill for a step, and what the user should know.
struct SparseSupport {
  bool ok = true;
  std::string note;  // why not, or what differs (e.g. a pattern estimated as another)
};

// A layer's queries and keys as fp32 on the host, for tools that look inside a run.
struct AttentionInputs {
  int64_t n = 0, pos = 0;  // the step's queries sit at positions [pos, pos + n)
  std::vector<float> q;    // [n][n_heads * head_dim] after RoPE
  std::vector<float> k;    // [n_kv_heads][pos + n][head_dim] after RoPE
};

// A rank's share of a residual-adding projection ([n][hidden]), which a Collective sums over the
// ranks in place (Backend::project_part).
struct PartBuffer {
  void* data = nullptr;
  int64_t count = 0;         // values
  int element_bytes = 4;     // 4: fp32, 2: bf16
  bool on_device = false;    // false: host memory
  int device = -1;           // the GPU index when on_device
  void* stream = nullptr;    // the rank's queue (a cudaStream_t) the part is written on
};

// Host memory a backend lends (Backend::host_buffer).
class HostBuffer {
 public:
  virtual ~HostBuffer() = default;
  virtual std::span<uint8_t> bytes() = 0;
};

class Backend {
 public:
  enum class Norm { Attention, Ffn };
  // qkv = xb Wqkv^T; x += att Wo^T; gu = xb Wgu^T; x += act Wdown^T
  enum class Proj { Qkv, Out, GateUp, Down };

  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  virtual std::string name() const = 0;
  virtual const ModelConfig& config() const = 0;
  // Tokens of one step at most (the activations are sized for it).
  virtual int64_t max_step() const = 0;
  // The prefill chunk this backend runs best with (the session default when none is asked for).
  virtual int64_t preferred_chunk() const = 0;
  // Keys from which this backend's sparse prefill measured faster than its dense prefill (the
  // crossover of auto attention is the larger of this and the model's configured crossover).
  virtual int64_t sparse_gain_keys() const = 0;
  virtual std::unique_ptr<KvCache> create_kv_cache(int64_t capacity_tokens) = 0;
  virtual std::vector<DeviceMemory> memory() const = 0;
  // The most tokens one session's KV cache can hold on this backend beside the model, as its
  // memory stood when the backend was made (GPU: the memory plan against the free memory or the
  // limit; CPU: half the memory the system had available); 0 where that is not known.
  virtual int64_t largest_context() const { return 0; }
  // The KV cache's element type in words ("bf16", "fp32").
  virtual std::string kv_type() const { return kv_element_bytes() == 2 ? "bf16" : "fp32"; }

  // ---- ops of one step of n <= max_step() tokens; asynchronous until finish_step()
  // x = embedding rows of tokens.
  virtual void embed(std::span<const int32_t> tokens) = 0;
  // xb = rmsnorm(x) with the layer's attention or FFN norm.
  virtual void norm(Norm which, int layer, int64_t n) = 0;
  virtual void project(Proj which, int layer, int64_t n) = 0;
  // q = rope(q + bias), and the keys (rope(k + bias)) and values (v + bias) into the cache at
  // positions [pos, pos + n).
  virtual void rope_kv_write(int layer, KvCache& kv, int64_t n, int64_t pos, const RopeTable& rope) = 0;
  virtual SparseSupport sparse_support(const sparse::SparseConfig& config, int64_t keys) const = 0;
  // Each head's key-tile list for this layer and step, by the rule of core/attention (sample sums
  // of the last queries, then select_from_sums; CPU Block-Cluster heads by estimate_head).
  virtual void estimate(int layer, KvCache& kv, int64_t n, int64_t pos,
                        const std::shared_ptr<const sparse::SparseConfig>& config) = 0;
  // att = causal attention of q over the cache, over every causal tile, or over the tile lists of
  // this layer's estimate() when `listed`.
  virtual void attention(int layer, KvCache& kv, int64_t n, int64_t pos, bool listed) = 0;
  // act = silu(gate) * up.
  virtual void swiglu(int64_t n) = 0;
  // out = output(rmsnorm(x rows [first_row, first_row + rows))) as fp32 on the host; rows <= max_step().
  virtual void logits(int64_t first_row, int64_t rows, float* out) = 0;
  // Waits for the step's ops; after it, out parameters of logits() are written.
  virtual void finish_step() = 0;
  // A decode step (one token at `pos`, its logits into last_logits) that the backend may record
  // the first time and replay afterwards: `ops` issues the step's ops (embed() to logits()) exactly
  // as forward() does. Returns false where this backend does not record (the caller then calls
  // ops() itself); true when the step is issued (finish_step() still waits for it).
  virtual bool recorded_step(KvCache& /*kv*/, int32_t /*token*/, int64_t /*pos*/, const RopeTable& /*rope*/,
                             float* /*last_logits*/, const std::function<void()>& /*ops*/) {
    return false;
  }

  // ---- looking inside (after finish_step())
  // Estimation's choices for every layer and head of the last step ([layer][head], row-major).
  virtual void plan_results(std::vector<HeadPlanResult>& out) = 0;
  // Time marks on the backend's queue (mark(i) at a point of the step; elapsed_ms after it).
  virtual void mark(int slot) = 0;
  virtual double elapsed_ms(int from_slot, int to_slot) = 0;
  // A copy of the layer's queries (this step) and keys (so far); call after rope_kv_write().
  virtual void read_attention_inputs(int layer, KvCache& kv, int64_t n, int64_t pos, AttentionInputs& out) = 0;

  // ---- KV kept on disk (Session::save_prefix / restore_prefix), one tensor at a time
  // The cache's own element type, nothing converted (fp32 on the CPU, bf16 on the GPU); 0: this
  // backend keeps no KV on disk (the caller prefills instead).
  virtual int kv_element_bytes() const { return 0; }
  // Host memory for the pieces (page-locked on the GPU, so copies run beside the file's reads and
  // writes); freed with the returned object.
  virtual std::unique_ptr<HostBuffer> host_buffer(size_t bytes);
  // Layer `layer`'s keys (tensor 0) or values (1), positions [0, n), to or from host memory laid
  // out [kv head][rows][head dim] (rows >= n per head; the rows past n are skipped). May run
  // asynchronously on queue slot 0 or 1 until wait_kv(slot); `host` must stay valid until then.
  virtual void copy_kv(KvCache& /*kv*/, int /*layer*/, int /*tensor*/, int64_t /*n*/, int64_t /*rows*/, void* /*host*/,
                       bool /*into_cache*/, int /*slot*/) {}
  virtual void wait_kv(int /*slot*/) {}

  // ---- tensor parallel (core/engine/tensor_parallel.h drives N backends, each made from a shard of
  // the model: a slice of the heads and MLP columns). A rank computes its share of a residual-adding
  // projection (Out or Down) into its part buffer without adding it; a Collective sums the ranks'
  // parts in place; add_part() then adds the sum to x, so every rank's x stays the same.
  // Backends that cannot be a rank keep the defaults, which refuse.
  virtual void project_part(Proj which, int layer, int64_t n);
  // Where the part of n rows lies (after project_part, until add_part).
  virtual PartBuffer part_buffer(int64_t n);
  virtual void add_part(int64_t n);
};

// Throws Error when tokens at positions [pos, pos + tokens.size()) do not fit `kv` or a token id
// is outside the vocabulary.
void check_forward_args(const ModelConfig& c, const KvCache& kv, std::span<const int32_t> tokens, int64_t pos);

// Backends beyond the CPU are registered by the executables that link them (the engine does not
// include kernels/). A factory returns null with `notice` set when it cannot serve this machine
// (no GPU, or a model it does not run), and throws Error for a request it must refuse (memory).
using BackendFactory = std::unique_ptr<Backend> (*)(std::shared_ptr<const LoadedModel> model,
                                                    const BackendOptions& options, std::string& notice);
void register_backend(BackendKind kind, BackendFactory factory);
BackendFactory registered_backend(BackendKind kind);

// The GPUs this machine offers, for the app's Settings (the CUDA backend registers its probe with
// register_cuda_backend). Empty with `why` set where there are none or the program has no GPU backend.
struct GpuInfo {
  int index = 0;
  std::string name;
  size_t total_bytes = 0, free_bytes = 0;
};
using GpuLister = std::vector<GpuInfo> (*)(std::string& why);
void register_gpu_lister(GpuLister lister);
std::vector<GpuInfo> list_gpus(std::string& why);

}  // namespace folio
