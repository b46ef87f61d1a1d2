#include "kernels/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <vector>

#include "core/common/error.h"
#include "core/model/model_weights.h"
#include "kernels/cuda_ops.h"
#include "kernels/cuda_probe.h"
#include "kernels/cuda_util.h"
#include "kernels/gemm.h"
#include "kernels/memory_plan.h"
#include "kernels/quant_ops.h"
#include "kernels/sparse_estimate.h"

namespace folio {

namespace {

using cuda::bf16;

// Page-locked host memory (copy_kv's pieces: copies at full bus speed, beside the host's work).
class PinnedBuffer final : public HostBuffer {
 public:
  explicit PinnedBuffer(size_t n) : n_(n) {
    if (cudaMallocHost(&p_, std::max<size_t>(n, 1)) != cudaSuccess) {
      cudaGetLastError();
      throw Error(ErrorCode::OutOfMemory, "cannot lock " + std::to_string(n >> 20) +
                                              " MiB of host memory for moving the KV cache; close other programs");
    }
  }
  ~PinnedBuffer() override { cudaFreeHost(p_); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  std::span<uint8_t> bytes() override { return {static_cast<uint8_t*>(p_), n_}; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

class CudaKvCache final : public KvCache {
 public:
  CudaKvCache(int device, const ModelConfig& c, int64_t capacity, int64_t chunk, KvQuant quant,
              std::atomic<size_t>* live, std::atomic<size_t>* live_sparse)
      : capacity_(capacity), layers_(c.n_layers), live_(live), live_sparse_(live_sparse) {
    layout_ = plan_kv(c, capacity, quant);
    const MemoryPlan p = plan_memory(c, capacity, chunk, nullptr, quant);
    arena_ = cuda::Arena(device, p.kv_bytes, "the KV cache");
    *live_ += arena_.bytes();
    // sparse prefill's estimation scratch and tile lists, sized for this context
    if (p.sparse_bytes > 0) {
      sparse_arena_ = cuda::Arena(device, p.sparse_bytes, "sparse prefill's tile lists");
      *live_sparse_ += sparse_arena_.bytes();
      sparse = cuda::SparseScratch::carve(sparse_arena_.base(), plan_sparse(c, capacity, chunk), capacity, chunk);
    }
  }
  ~CudaKvCache() override {
    *live_ -= arena_.bytes();
    *live_sparse_ -= sparse_arena_.bytes();
  }
  int64_t capacity() const override { return capacity_; }
  size_t bytes() const override { return arena_.bytes(); }
  // The bf16 rows attention and estimation read: the layer's own (bf16 cache), or the stage the
  // 8-bit rows are expanded into (q8 cache).
  bf16* k(int layer) const { return q8() ? stage(0) : reinterpret_cast<bf16*>(at(2 * static_cast<size_t>(layer))); }
  bf16* v(int layer) const { return q8() ? stage(1) : reinterpret_cast<bf16*>(at(2 * static_cast<size_t>(layer) + 1)); }
  bool q8() const { return layout_.quant == KvQuant::Q8; }
  const KvLayout& layout() const { return layout_; }
  // q8: tensor 0 (K) or 1 (V) of a layer, int8 values and fp16 scales
  int8_t* values(int layer, int tensor) const {
    return reinterpret_cast<int8_t*>(at(2 * static_cast<size_t>(layer) + static_cast<size_t>(tensor)));
  }
  uint16_t* scales(int layer, int tensor) const {
    return reinterpret_cast<uint16_t*>(base() + 2 * static_cast<size_t>(layers_) * layout_.values +
                                       (2 * static_cast<size_t>(layer) + static_cast<size_t>(tensor)) * layout_.scales);
  }
  bool has_sparse() const { return sparse.col != nullptr; }

  cuda::SparseScratch sparse;
  std::shared_ptr<const sparse::SparseConfig> budgets_of;  // the config whose budgets are on the device
  std::vector<uint8_t> layer_kinds;  // per layer: 1 some head needs sample sums, 2 some is Block-Cluster

 private:
  uint8_t* base() const { return static_cast<uint8_t*>(arena_.base()); }
  uint8_t* at(size_t i) const { return base() + i * layout_.values; }
  bf16* stage(int tensor) const {
    return reinterpret_cast<bf16*>(base() + 2 * static_cast<size_t>(layers_) * (layout_.values + layout_.scales) +
                                   static_cast<size_t>(tensor) * layout_.stage);
  }
  int64_t capacity_;
  int layers_;
  KvLayout layout_;
  std::atomic<size_t>* live_;
  std::atomic<size_t>* live_sparse_;
  cuda::Arena arena_, sparse_arena_;
};

// A weight matrix on the device: bf16 (cuBLASLt directly), or row segments each in its stored GGUF
// blocks (a float segment beside quantized ones as bf16 rows): GEMV for one token, else expanded
// into a bf16 scratch before the GEMM.
struct DeviceMatrix {
  struct Part {
    DType dtype = DType::BF16;
    int64_t rows = 0;
    void* data = nullptr;
  };
  bf16* dense = nullptr;
  std::vector<Part> parts;
  int64_t rows = 0, cols = 0;
};

struct DeviceLayer {
  DeviceMatrix wqkv, wo, wgu, wdown;
  float *attn_norm = nullptr, *ffn_norm = nullptr, *bqkv = nullptr;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<const LoadedModel> model, const BackendOptions& o)
      : model_(std::move(model)), device_(o.device), limit_(o.mem_limit_bytes), options_(o) {
    const ModelConfig& c = model_->config;
    if (!cuda::attention_head_dim_supported(c.head_dim))
      throw Error(ErrorCode::UnsupportedModel, "the CUDA backend supports head dims up to 256; this model has " +
                                                   std::to_string(c.head_dim) + " (use --backend cpu)");
    plan_kv(c, 0, o.kv_quant);  // a format the GPU does not keep (fp8) is refused here, naming q8
    if (c.n_heads / c.n_kv_heads > 16)
      throw Error(ErrorCode::UnsupportedModel, "the CUDA backend supports up to 16 query heads per KV head");
    cuda::DeviceScope scope(device_);
    cudaDeviceProp prop{};
    FOLIO_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    device_name_ = prop.name;
    num_sms_ = prop.multiProcessorCount;
    chunk_ = o.chunk > 0 ? o.chunk : kDefaultCudaChunk;
    const int64_t context = o.context_tokens > 0 ? o.context_tokens : std::min<int64_t>(c.max_context, 8192);

    // The plan, before anything is allocated.
    FOLIO_CUDA_CHECK(cudaFree(nullptr));  // create the context so free memory is what we can use
    size_t free_b = 0, total_b = 0;
    FOLIO_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    native_ = o.quantized_weights ? &model_->weights : nullptr;
    const MemoryPlan plan = plan_memory(c, context, chunk_, native_, o.kv_quant);
    // a rank of a tensor-parallel layout also keeps its share of a projection, fp32 [chunk][hidden]
    const size_t part_bytes = o.tensor_parallel_rank ? part_arena_bytes() : 0;
    const size_t held_back = available_bytes(free_b, 0);
    const size_t available = held_back > part_bytes ? held_back - part_bytes : 0;
    largest_context_ = folio::largest_context(c, chunk_, available, native_, o.kv_quant);
    if (plan.total() > available) {
      const int64_t fits = largest_context_;
      std::string msg = where() + " cannot hold this model with a context of " + std::to_string(context) +
                        " tokens: it needs " + describe_plan(plan) + ", and " + format_gib(available) +
                        (limit_ > 0 && limit_ < free_b ? " are allowed by --gpu-mem-limit" : " are free") + ". ";
      if (fits > 0)
        msg += "The largest context that fits is " + std::to_string(fits) +
               " tokens; choose a smaller context (--ctx) or free GPU memory.";
      else
        msg += "Not even the weights and one prefill chunk fit; use a smaller model, a smaller --chunk, or the CPU "
               "backend (--backend cpu).";
      throw Error(ErrorCode::OutOfMemory, msg);
    }

    FOLIO_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    const WeightPlan wp = plan_weights(c, native_);
    weights_ = cuda::Arena(device_, wp.bytes, "the weights");
    scratch_ = cuda::Arena(device_, plan_scratch_bytes(c, chunk_), "activations");
    if (part_bytes > 0) {
      part_arena_ = cuda::Arena(device_, part_bytes, "a tensor-parallel rank's share of a projection");
      part_ = static_cast<float*>(part_arena_.base());
    }
    if (wp.dequant_bytes > 0) {
      dequant_ = cuda::Arena(device_, wp.dequant_bytes, "quantized weights expanded for a GEMM");
      output_piece_rows_ = wp.output_piece_rows;
    }
    carve_scratch();
    upload_weights();
    gemm_ = std::make_unique<cuda::Gemm>(workspace_, kGemmWorkspaceBytes);
  }

  ~CudaBackend() override {
    cuda::DeviceScope scope(device_);
    for (Recording& r : recordings_) cudaGraphExecDestroy(r.exec);
    if (step_host_ != nullptr) cudaFreeHost(step_host_);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    for (cudaEvent_t e : kv_copied_)
      if (e != nullptr) cudaEventDestroy(e);
    gemm_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  BackendKind kind() const override { return BackendKind::Cuda; }
  std::string name() const override { return where() + " " + device_name_; }
  const ModelConfig& config() const override { return model_->config; }
  int64_t preferred_chunk() const override { return chunk_; }
  int64_t largest_context() const override { return largest_context_; }
  int64_t max_step() const override { return chunk_; }
  // Sparse prefill measured faster than dense from 4K keys on the H200 (Llama-3.1-8B shape,
  // docs/benchmarks.md: 0.101 vs 0.107 s at 4K).
  int64_t sparse_gain_keys() const override { return 4096; }

  std::unique_ptr<KvCache> create_kv_cache(int64_t capacity_tokens) override {
    if (capacity_tokens <= 0) throw Error(ErrorCode::BadArgument, "KV cache capacity must be positive");
    cuda::DeviceScope scope(device_);
    const ModelConfig& c = model_->config;
    const MemoryPlan plan = plan_memory(c, capacity_tokens, chunk_, nullptr, options_.kv_quant);
    const size_t need = plan.kv_bytes + plan.sparse_bytes;
    size_t free_b = 0, total_b = 0;
    FOLIO_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const size_t available =
        available_bytes(free_b, weights_.bytes() + scratch_.bytes() + dequant_.bytes() + part_arena_.bytes() +
                                    all_logits_.bytes() + piece_logits_.bytes() + kv_bytes_.load() +
                                    sparse_bytes_.load());
    if (need > available) {
      const size_t per_token = plan.kv_bytes_per_token;
      const int64_t fits = static_cast<int64_t>(available / per_token) / 256 * 256;
      throw Error(ErrorCode::OutOfMemory,
                  "a context of " + std::to_string(capacity_tokens) + " tokens needs a KV cache of " +
                      format_gib(plan.kv_bytes) +
                      (plan.sparse_bytes > 0 ? " and " + format_gib(plan.sparse_bytes) + " for sparse prefill" : "") +
                      " on " + where() + ", but only " + format_gib(available) +
                      (limit_ > 0 ? " are left under --gpu-mem-limit" : " are free") +
                      "; the largest context that fits is " + std::to_string(fits) +
                      " tokens. Choose a smaller context (--ctx)" + (limit_ > 0 ? " or raise --gpu-mem-limit." : "."));
    }
    return std::make_unique<CudaKvCache>(device_, c, capacity_tokens, chunk_, options_.kv_quant, &kv_bytes_,
                                         &sparse_bytes_);
  }

  std::vector<DeviceMemory> memory() const override {
    DeviceMemory m;
    m.device = where() + " " + device_name_;
    m.weights_bytes = weights_.bytes();
    m.kv_bytes = kv_bytes_.load();
    m.scratch_bytes = scratch_.bytes() + dequant_.bytes() + all_logits_.bytes() + piece_logits_.bytes() +
                      part_arena_.bytes() + sparse_bytes_.load();
    cuda::DeviceScope scope(device_);
    cudaMemGetInfo(&m.free_bytes, &m.total_bytes);
    return {m};
  }

 private:
  std::string where() const { return "cuda:" + std::to_string(device_); }
  size_t part_arena_bytes() const {
    const size_t b = static_cast<size_t>(chunk_) * static_cast<size_t>(model_->config.hidden) * sizeof(float);
    return (b + (size_t{2} << 20) - 1) / (size_t{2} << 20) * (size_t{2} << 20);  // whole 2 MiB granules
  }

  // What Folio may still take: the device's free memory, within the cap (less what it holds).
  size_t available_bytes(size_t free_b, size_t held) const {
    size_t avail = free_b;
    if (limit_ > 0) avail = std::min(avail, limit_ > held ? limit_ - held : 0);
    return avail;
  }

  void carve_scratch() {
    const ModelConfig& c = model_->config;
    const size_t n = static_cast<size_t>(chunk_);
    const size_t H = static_cast<size_t>(c.hidden), F = static_cast<size_t>(c.ffn_hidden);
    const size_t QD = static_cast<size_t>(c.q_dim()), KVD = static_cast<size_t>(c.kv_dim());
    // same order and sizes as plan_scratch_bytes
    x_ = scratch_.take<float>(n * H);
    xb_ = scratch_.take<bf16>(n * std::max(H, QD));
    qkv_ = scratch_.take<bf16>(n * (QD + 2 * KVD));
    q_ = scratch_.take<bf16>(n * QD);
    gu_ = scratch_.take<bf16>(n * 2 * F);
    act_ = scratch_.take<bf16>(n * F);
    tokens_dev_ = scratch_.take<int32_t>(n);
    pos_dev_ = scratch_.take<int64_t>(2);
    logits_dev_ = scratch_.take<float>(static_cast<size_t>(c.vocab_size));
    partial_ = scratch_.take<float>(static_cast<size_t>(c.n_heads) * kMaxDecodeSplits * (static_cast<size_t>(c.head_dim) + 2));
    inv_freq_dev_ = scratch_.take<float>(static_cast<size_t>(c.rope.rotary_dim > 0 ? c.rope.rotary_dim : c.head_dim));
    workspace_ = scratch_.take_bytes(kGemmWorkspaceBytes);
    const int64_t widest = std::max({c.hidden, c.q_dim(), c.ffn_hidden});
    qx_ = cuda::carve_quantized_x(scratch_.take_bytes(cuda::quantized_x_bytes(widest)), widest);
  }

  // Copies a weight (any stored dtype) as bf16 rows into dst; random models fill on the device.
  void upload_bf16(const TensorView& t, bf16* dst, int64_t rows, int64_t cols) {
    if (t.data == nullptr) {
      if (!model_->random_on_device)
        throw Error(ErrorCode::BadModelFile, "a weight tensor is missing from " + model_->path);
      cuda::fill_normal_bf16(dst, rows * cols, model_->random_seed * 1000003ull + (seed_counter_++), 0.02f, stream_);
      return;
    }
    if (t.rows != rows || t.cols != cols)
      throw Error(ErrorCode::BadModelFile, "a weight tensor of " + model_->path + " has the wrong shape");
    if (t.dtype == DType::BF16) {
      FOLIO_CUDA_CHECK(cudaMemcpyAsync(dst, t.data, t.bytes(), cudaMemcpyHostToDevice, stream_));
      FOLIO_CUDA_CHECK(cudaStreamSynchronize(stream_));
      return;
    }
    // convert on the host in batches of rows
    const int64_t batch = std::max<int64_t>(1, (int64_t{8} << 20) / std::max<int64_t>(cols, 1));
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r0 = 0; r0 < rows; r0 += batch) {
      const int64_t nr = std::min(batch, rows - r0);
      staging_.resize(static_cast<size_t>(nr * cols));
      for (int64_t r = 0; r < nr; ++r) {
        row_to_f32(t, r0 + r, row.data());
        for (int64_t i = 0; i < cols; ++i) staging_[static_cast<size_t>(r * cols + i)] = f32_to_bf16(row[static_cast<size_t>(i)]);
      }
      FOLIO_CUDA_CHECK(cudaMemcpyAsync(dst + r0 * cols, staging_.data(), staging_.size() * sizeof(bf16),
                                       cudaMemcpyHostToDevice, stream_));
      FOLIO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
  }

  float* upload_f32(const TensorView& t, int64_t count) {
    float* dst = weights_.take<float>(static_cast<size_t>(count));
    std::vector<float> v(static_cast<size_t>(count));
    if (t.rows * t.cols != count) throw Error(ErrorCode::BadModelFile, "a norm or bias of " + model_->path + " has the wrong size");
    for (int64_t r = 0; r < t.rows; ++r) row_to_f32(t, r, v.data() + r * t.cols);
    FOLIO_CUDA_CHECK(cudaMemcpy(dst, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
    return dst;
  }

  // One matrix from its tensors (fused row-wise): bf16, or each tensor in its blocks (random models
  // with a quantized dtype get random blocks on the device).
  DeviceMatrix upload_matrix(std::initializer_list<const TensorView*> parts, int64_t cols) {
    DeviceMatrix m;
    m.cols = cols;
    for (const TensorView* t : parts) m.rows += t->rows;
    if (native_ == nullptr || !keeps_blocks(parts)) {
      m.dense = weights_.take<bf16>(static_cast<size_t>(m.rows * cols));
      int64_t row = 0;
      for (const TensorView* t : parts) {
        upload_bf16(*t, m.dense + row * cols, t->rows, cols);
        row += t->rows;
      }
      return m;
    }
    for (const TensorView* t : parts) {
      if (t->cols != cols) throw Error(ErrorCode::BadModelFile, "a weight tensor of " + model_->path + " has the wrong shape");
      DeviceMatrix::Part p;
      p.rows = t->rows;
      if (cuda::quant_on_device(t->dtype)) {
        p.dtype = t->dtype;
        p.data = weights_.take_bytes(t->bytes());
        if (t->data == nullptr) {
          if (!model_->random_on_device)
            throw Error(ErrorCode::BadModelFile, "a weight tensor is missing from " + model_->path);
          cuda::fill_random_blocks(t->dtype, p.data, t->rows, cols, model_->random_seed * 1000003ull + (seed_counter_++),
                                   stream_);
        } else {
          FOLIO_CUDA_CHECK(cudaMemcpyAsync(p.data, t->data, t->bytes(), cudaMemcpyHostToDevice, stream_));
          FOLIO_CUDA_CHECK(cudaStreamSynchronize(stream_));
        }
      } else {
        if (cols % 8 != 0)
          throw Error(ErrorCode::UnsupportedModel, "a float tensor beside quantized ones needs rows of a multiple of 8 "
                                                   "values on the GPU (use --gpu-weights bf16)");
        p.dtype = DType::BF16;
        p.data = weights_.take<bf16>(static_cast<size_t>(t->rows * cols));
        upload_bf16(*t, static_cast<bf16*>(p.data), t->rows, cols);
      }
      // a part that continues the last one in memory, in the same type, joins it (q|k|v or
      // gate|up of one type: one decode GEMV instead of one per tensor)
      DeviceMatrix::Part* last = m.parts.empty() ? nullptr : &m.parts.back();
      if (last != nullptr && last->dtype == p.dtype &&
          static_cast<uint8_t*>(last->data) + row_bytes(p.dtype, cols) * static_cast<size_t>(last->rows) ==
              p.data)
        last->rows += p.rows;
      else
        m.parts.push_back(p);
    }
    return m;
  }

  void upload_weights() {
    const ModelConfig& c = model_->config;
    const ModelWeights& w = model_->weights;
    const int64_t H = c.hidden, F = c.ffn_hidden, QD = c.q_dim(), KVD = c.kv_dim();
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& L = w.layers[static_cast<size_t>(l)];
      DeviceLayer d;
      d.wqkv = upload_matrix({&L.wq, &L.wk, &L.wv}, H);
      d.wo = upload_matrix({&L.wo}, QD);
      d.wgu = upload_matrix({&L.w_gate, &L.w_up}, H);
      d.wdown = upload_matrix({&L.w_down}, F);
      // the two norms share one 256-byte aligned piece, as in the plan
      float* norms = weights_.take<float>(static_cast<size_t>(2 * H));
      d.attn_norm = norms;
      d.ffn_norm = norms + H;
      {
        std::vector<float> v(static_cast<size_t>(2 * H));
        auto read = [&](const TensorView& t, float* out) {
          if (t.rows * t.cols != H) throw Error(ErrorCode::BadModelFile, "a norm of " + model_->path + " has the wrong size");
          for (int64_t r = 0; r < t.rows; ++r) row_to_f32(t, r, out + r * t.cols);
        };
        read(L.attn_norm, v.data());
        read(L.ffn_norm, v.data() + H);
        FOLIO_CUDA_CHECK(cudaMemcpy(norms, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
      }
      if (c.qkv_bias) {
        d.bqkv = weights_.take<float>(static_cast<size_t>(QD + 2 * KVD));
        std::vector<float> v(static_cast<size_t>(QD + 2 * KVD), 0.0f);
        auto read = [&](const TensorView& t, float* out, int64_t count) {
          if (t.empty()) return;
          if (t.rows * t.cols != count) throw Error(ErrorCode::BadModelFile, "a bias of " + model_->path + " has the wrong size");
          for (int64_t r = 0; r < t.rows; ++r) row_to_f32(t, r, out + r * t.cols);
        };
        read(L.bq, v.data(), QD);
        read(L.bk, v.data() + QD, KVD);
        read(L.bv, v.data() + QD + KVD, KVD);
        FOLIO_CUDA_CHECK(cudaMemcpy(d.bqkv, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
      }
      layers_.push_back(d);
    }
    embd_ = upload_matrix({&w.tok_embd}, H);
    output_ = c.tied_embeddings ? embd_ : upload_matrix({&w.output}, H);
    out_norm_ = upload_f32(w.out_norm, H);
    FOLIO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    staging_.clear();
    staging_.shrink_to_fit();
  }

  void embed(std::span<const int32_t> tokens) override {
    const int n = static_cast<int>(tokens.size());
    // Every op of the step runs on this thread after embed(): the device stays current until the next.
    FOLIO_CUDA_CHECK(cudaSetDevice(device_));
    if (!recording_)  // a recorded step's token is copied ahead of its replay (recorded_step)
      FOLIO_CUDA_CHECK(cudaMemcpyAsync(tokens_dev_, tokens.data(), static_cast<size_t>(n) * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, stream_));
    if (embd_.dense != nullptr)
      cuda::embedding(embd_.dense, tokens_dev_, n, static_cast<int>(model_->config.hidden), x_, stream_);
    else
      cuda::quant_embedding(embd_.parts[0].dtype, embd_.parts[0].data, model_->config.hidden, tokens_dev_, n, x_, stream_);
  }

  void norm(Norm which, int layer, int64_t n) override {
    const DeviceLayer& L = layers_[static_cast<size_t>(layer)];
    const ModelConfig& c = model_->config;
    cuda::rmsnorm(x_, which == Norm::Attention ? L.attn_norm : L.ffn_norm, static_cast<int>(n),
                  static_cast<int>(c.hidden), c.norm_eps, xb_, stream_);
  }

  // The attention output shares xb_ (it is dead between the QKV projection and the O projection).
  void project(Proj which, int layer, int64_t n) override {
    const DeviceLayer& L = layers_[static_cast<size_t>(layer)];
    switch (which) {
      case Proj::Qkv: matmul(L.wqkv, xb_, n, qkv_, cuda::Gemm::Out::Bf16); break;
      case Proj::Out: matmul(L.wo, xb_, n, x_, cuda::Gemm::Out::F32Accumulate); break;
      case Proj::GateUp: matmul(L.wgu, xb_, n, gu_, cuda::Gemm::Out::Bf16); break;
      case Proj::Down: matmul(L.wdown, act_, n, x_, cuda::Gemm::Out::F32Accumulate); break;
    }
  }

  // A rank's share of Out or Down, written (not added) to part_; a Collective sums the ranks' parts.
  void project_part(Proj which, int layer, int64_t n) override {
    if (part_ == nullptr)
      throw Error(ErrorCode::Internal, where() + " was not made as a tensor-parallel rank (no part buffer)");
    const DeviceLayer& L = layers_[static_cast<size_t>(layer)];
    if (which == Proj::Out) matmul(L.wo, xb_, n, part_, cuda::Gemm::Out::F32);
    else if (which == Proj::Down) matmul(L.wdown, act_, n, part_, cuda::Gemm::Out::F32);
    else throw Error(ErrorCode::Internal, "project_part: only the Out and Down projections add to x");
  }
  PartBuffer part_buffer(int64_t n) override {
    PartBuffer p;
    p.data = part_;
    p.count = n * model_->config.hidden;
    p.on_device = true;
    p.device = device_;
    p.stream = stream_;
    return p;
  }
  void add_part(int64_t n) override { cuda::add_f32(x_, part_, n * model_->config.hidden, stream_); }

  // y[n][rows] (+)= x[n][cols] W^T: cuBLASLt on bf16 weights; for weights in blocks, a GEMV per part
  // for one token, else the parts expanded into the bf16 scratch and one GEMM.
  void matmul(const DeviceMatrix& w, const bf16* x, int64_t n, void* y, cuda::Gemm::Out out) {
    if (w.dense != nullptr) {
      gemm_->run(stream_, x, n, w.dense, w.rows, w.cols, y, out);
      return;
    }
    if (n == 1) {
      const cuda::GemvOut go = out == cuda::Gemm::Out::Bf16 ? cuda::GemvOut::Bf16
                               : out == cuda::Gemm::Out::F32 ? cuda::GemvOut::F32
                                                             : cuda::GemvOut::F32Accumulate;
      const size_t elem = out == cuda::Gemm::Out::Bf16 ? sizeof(bf16) : sizeof(float);
      // Q4_K/Q5_K parts meet the activations at 8 bits (quantized once for all parts), as on the CPU
      // (K-quant rows are whole 256-value blocks, so the activations are whole 32-value blocks)
      const auto takes_qx = [](const DeviceMatrix::Part& p) { return cuda::gemv_takes_quantized_x(p.dtype); };
      if (std::any_of(w.parts.begin(), w.parts.end(), takes_qx)) cuda::quantize_x(x, w.cols, qx_, stream_);
      int64_t row = 0;
      for (const DeviceMatrix::Part& p : w.parts) {
        void* yp = static_cast<uint8_t*>(y) + static_cast<size_t>(row) * elem;
        if (takes_qx(p)) cuda::quant_gemv_qx(p.dtype, p.data, p.rows, w.cols, qx_, yp, go, stream_);
        else cuda::quant_gemv(p.dtype, p.data, p.rows, w.cols, x, yp, go, stream_);
        row += p.rows;
      }
      return;
    }
    auto* expanded = static_cast<bf16*>(dequant_.base());
    int64_t row = 0;
    for (const DeviceMatrix::Part& p : w.parts) {
      cuda::quant_to_bf16(p.dtype, p.data, p.rows, w.cols, expanded + row * w.cols, stream_);
      row += p.rows;
    }
    gemm_->run(stream_, x, n, expanded, w.rows, w.cols, y, out);
  }

  void rope_kv_write(int layer, KvCache& kv_base, int64_t n, int64_t pos, const RopeTable& rope) override {
    auto& kv = dynamic_cast<CudaKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    if (layer == 0) upload_rope(rope);
    cuda::RopeArgs ra;
    ra.qkv = qkv_;
    ra.bias = layers_[static_cast<size_t>(layer)].bqkv;
    ra.inv_freq = inv_freq_dev_;
    ra.n = static_cast<int>(n);
    ra.pos0 = pos;
    ra.n_heads = c.n_heads;
    ra.n_kv_heads = c.n_kv_heads;
    ra.head_dim = c.head_dim;
    ra.rotary_half = static_cast<int>(rope.inv_freq.size());
    ra.adjacent_pairs = c.rope.layout == RopeLayout::AdjacentPairs;
    ra.attention_scale = rope.attention_scale;
    ra.q = q_;
    ra.k_cache = kv.k(layer);
    ra.v_cache = kv.v(layer);
    ra.capacity = kv.capacity();
    if (recording_) {
      ra.pos0 = record_pos_;
      ra.pos_dev = pos_dev_;
    }
    cuda::rope_qkv(ra, stream_);
    if (kv.q8()) {
      // the chunk's rows, written to the stage above, become 8-bit rows of this layer; then, unless
      // the decode kernel reads the 8-bit rows itself, all rows so far are expanded back into the
      // stage (the new ones with their rounding: what the CPU's q8 cache holds)
      const cuda::KvQ8Args qa = q8_args(kv, layer, n, ra.pos0, ra.pos_dev);
      cuda::kv_quantize_q8(qa, stream_);
      if (!q8_direct(n)) cuda::kv_expand_q8(qa, ra.pos0 + n, stream_);
    }
  }

  SparseSupport sparse_support(const sparse::SparseConfig& /*config*/, int64_t keys) const override {
    SparseSupport s;
    if (!cuda::sparse_supported(model_->config.head_dim, keys)) {
      s.ok = false;
      s.note = "sparse prefill on the GPU needs head dim 64, 96 or 128 and at most " +
               std::to_string(cuda::kMaxSelectKeyTiles * cuda::kKeyTile) + " tokens; this chunk ran dense";
      return s;
    }
    return s;
  }

  // Tile lists for layer l's heads into the cache's sparse scratch.
  void estimate(int layer, KvCache& kv_base, int64_t n, int64_t pos,
                const std::shared_ptr<const sparse::SparseConfig>& config) override {
    auto& kv = dynamic_cast<CudaKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    if (!kv.has_sparse()) throw Error(ErrorCode::Internal, "sparse prefill without its scratch on " + where());
    if (kv.budgets_of != config) upload_budgets(kv, config);
    cuda::EstimateArgs ea;
    ea.q = q_;
    ea.k_cache = kv.k(layer);
    ea.capacity = kv.capacity();
    ea.n = static_cast<int>(n);
    ea.pos0 = pos;
    ea.n_heads = c.n_heads;
    ea.n_kv_heads = c.n_kv_heads;
    ea.head_dim = c.head_dim;
    ea.rows = std::min({config->last_queries, static_cast<int>(n), cuda::kMaxSampleRows});
    ea.force_gemm = options_.sparse_sums_gemm;
    const size_t off = static_cast<size_t>(layer) * static_cast<size_t>(c.n_heads);
    ea.budgets = kv.sparse.budgets + off;
    ea.results = kv.sparse.results + off;
    const uint8_t kinds = kv.layer_kinds[static_cast<size_t>(layer)];
    ea.any_sums = (kinds & 1) != 0;
    ea.any_pooled = (kinds & 2) != 0;
    cuda::estimate(ea, kv.sparse, *gemm_, stream_);
    sample_rows_ = ea.rows;
    results_of_ = &kv;
  }

  void attention(int layer, KvCache& kv_base, int64_t n, int64_t pos, bool listed) override {
    auto& kv = dynamic_cast<CudaKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    cuda::AttentionArgs aa;
    aa.q = q_;
    aa.k_cache = kv.k(layer);
    aa.v_cache = kv.v(layer);
    aa.out = xb_;
    aa.n = static_cast<int>(n);
    aa.pos0 = pos;
    aa.capacity = kv.capacity();
    aa.n_heads = c.n_heads;
    aa.n_kv_heads = c.n_kv_heads;
    aa.head_dim = c.head_dim;
    aa.query_mtiles = options_.attention_query_mtiles;
    aa.kernel = static_cast<cuda::AttentionKernel>(options_.attention_kernel);
    aa.decode_kernel = static_cast<cuda::DecodeKernel>(options_.decode_kernel);
    if (listed) {
      aa.tile_offset = kv.sparse.tile_offset;
      aa.tile_index = kv.sparse.tile_index;
    }
    if (recording_) {
      aa.pos0 = record_pos_;
      aa.pos_dev = pos_dev_;
    }
    if (kv.q8() && q8_direct(n)) {
      aa.k_q8 = kv.values(layer, 0);
      aa.v_q8 = kv.values(layer, 1);
      aa.k_scale = kv.scales(layer, 0);
      aa.v_scale = kv.scales(layer, 1);
      aa.kv_blocks = kv.layout().blocks;
    }
    if (n == 1) cuda::attention_decode(aa, partial_, num_sms_, stream_);
    else cuda::attention_prefill(aa, stream_);
  }

  void swiglu(int64_t n) override {
    cuda::swiglu(gu_, static_cast<int>(n), static_cast<int>(model_->config.ffn_hidden), act_, stream_);
  }

  void logits(int64_t first_row, int64_t rows, float* out) override {
    const ModelConfig& c = model_->config;
    const int64_t H = c.hidden, V = c.vocab_size;
    float* dev = logits_dev_;
    if (rows > 1) {
      const size_t need = static_cast<size_t>(chunk_ * V) * sizeof(float);
      if (all_logits_.bytes() < need) all_logits_ = cuda::Arena(device_, need, "logits of every position");
      dev = static_cast<float*>(all_logits_.base());
    }
    cuda::rmsnorm(x_ + first_row * H, out_norm_, static_cast<int>(rows), static_cast<int>(H), c.norm_eps, xb_, stream_);
    if (output_.dense != nullptr || rows == 1) {
      matmul(output_, xb_, rows, dev, cuda::Gemm::Out::F32);
    } else {
      // a quantized head over many rows: pieces of vocabulary rows expanded in turn, each GEMM into
      // a slice of the logits (rows x piece), then placed as columns of dev
      const DeviceMatrix::Part& p = output_.parts[0];
      const size_t rb = row_bytes(p.dtype, H);
      auto* expanded = static_cast<bf16*>(dequant_.base());
      const size_t need = static_cast<size_t>(chunk_ * output_piece_rows_) * sizeof(float);
      if (piece_logits_.bytes() < need) piece_logits_ = cuda::Arena(device_, need, "logits of every position");
      auto* piece = static_cast<float*>(piece_logits_.base());
      for (int64_t v0 = 0; v0 < V; v0 += output_piece_rows_) {
        const int64_t pr = std::min(output_piece_rows_, V - v0);
        cuda::quant_to_bf16(p.dtype, static_cast<uint8_t*>(p.data) + static_cast<size_t>(v0) * rb, pr, H, expanded, stream_);
        gemm_->run(stream_, xb_, rows, expanded, pr, H, piece, cuda::Gemm::Out::F32);
        FOLIO_CUDA_CHECK(cudaMemcpy2DAsync(dev + v0, static_cast<size_t>(V) * sizeof(float), piece,
                                           static_cast<size_t>(pr) * sizeof(float), static_cast<size_t>(pr) * sizeof(float),
                                           static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, stream_));
      }
    }
    if (!recording_)  // a recorded step's logits are copied after its replay (recorded_step)
      FOLIO_CUDA_CHECK(cudaMemcpyAsync(out, dev, static_cast<size_t>(rows * V) * sizeof(float), cudaMemcpyDeviceToHost,
                                       stream_));
  }

  void finish_step() override { FOLIO_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // A decode step as a CUDA graph: recorded once per KV cache and context bucket (positions up to
  // the next power of two, at least 64, at most the cache's capacity), replayed for every later
  // token of that bucket. The graph reads the token and the position from device memory, copied
  // just before its launch; the launch of the decode attention is sized for the bucket's largest
  // position (the key ranges past the real position are empty).
  bool recorded_step(KvCache& kv_base, int32_t token, int64_t pos, const RopeTable& rope, float* last_logits,
                     const std::function<void()>& ops) override {
    if (!options_.decode_graphs) return false;
    auto& kv = dynamic_cast<CudaKvCache&>(kv_base);
    FOLIO_CUDA_CHECK(cudaSetDevice(device_));
    upload_rope(rope);  // never inside a recording: it waits for the stream
    int64_t bucket = 64;
    while (bucket < pos + 1) bucket *= 2;
    bucket = std::min(bucket, kv.capacity());
    if (step_host_ == nullptr) {
      void* p = nullptr;
      FOLIO_CUDA_CHECK(cudaMallocHost(&p, sizeof(StepArgs)));
      step_host_ = static_cast<StepArgs*>(p);
    }
    // the last step has finished (finish_step), so its copies no longer read these
    step_host_->pos = pos;
    step_host_->token = token;
    FOLIO_CUDA_CHECK(cudaMemcpyAsync(pos_dev_, &step_host_->pos, sizeof(int64_t), cudaMemcpyHostToDevice, stream_));
    FOLIO_CUDA_CHECK(cudaMemcpyAsync(tokens_dev_, &step_host_->token, sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
    Recording* r = nullptr;
    for (Recording& x : recordings_)
      if (x.k == kv.k(0) && x.capacity == kv.capacity() && x.bucket == bucket && x.inv_freq == inv_freq_host_ &&
          x.attention_scale == rope.attention_scale)
        r = &x;
    if (r == nullptr) r = &record(kv, bucket, rope, ops);
    r->used = ++use_counter_;
    FOLIO_CUDA_CHECK(cudaGraphLaunch(r->exec, stream_));
    FOLIO_CUDA_CHECK(cudaMemcpyAsync(last_logits, logits_dev_, static_cast<size_t>(model_->config.vocab_size) * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream_));
    return true;
  }

  void plan_results(std::vector<HeadPlanResult>& out) override {
    const ModelConfig& c = model_->config;
    const size_t count = static_cast<size_t>(c.n_layers) * static_cast<size_t>(c.n_heads);
    out.assign(count, HeadPlanResult{});
    if (results_of_ == nullptr) return;
    results_host_.resize(count);
    FOLIO_CUDA_CHECK(cudaMemcpy(results_host_.data(), results_of_->sparse.results, count * sizeof(cuda::HeadResult),
                                cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < count; ++i) {
      const cuda::HeadResult& r = results_host_[i];
      const int rows = r.rows > 0 ? r.rows : sample_rows_;  // Block-Cluster: query tiles
      out[i] = HeadPlanResult{r.computed, std::min(1.0, static_cast<double>(r.mass) / (sparse::kFixedOne * rows)),
                              r.reached != 0};
    }
  }

  void mark(int slot) override {
    while (events_.size() <= static_cast<size_t>(slot)) {
      cudaEvent_t e = nullptr;
      FOLIO_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    FOLIO_CUDA_CHECK(cudaEventRecord(events_[static_cast<size_t>(slot)], stream_));
  }

  double elapsed_ms(int from_slot, int to_slot) override {
    float ms = 0.0f;
    FOLIO_CUDA_CHECK(cudaEventElapsedTime(&ms, events_.at(static_cast<size_t>(from_slot)),
                                          events_.at(static_cast<size_t>(to_slot))));
    return ms;
  }

  void read_attention_inputs(int layer, KvCache& kv_base, int64_t n, int64_t pos, AttentionInputs& out) override {
    auto& kv = dynamic_cast<CudaKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    const size_t hd = static_cast<size_t>(c.head_dim), keys = static_cast<size_t>(pos + n);
    const size_t qn = static_cast<size_t>(n) * static_cast<size_t>(c.q_dim());
    std::vector<bf16> q(qn), k(static_cast<size_t>(c.n_kv_heads) * keys * hd);
    FOLIO_CUDA_CHECK(cudaMemcpyAsync(q.data(), q_, qn * sizeof(bf16), cudaMemcpyDeviceToHost, stream_));
    for (int g = 0; g < c.n_kv_heads; ++g)
      FOLIO_CUDA_CHECK(cudaMemcpyAsync(k.data() + static_cast<size_t>(g) * keys * hd,
                                       kv.k(layer) + static_cast<size_t>(g) * static_cast<size_t>(kv.capacity()) * hd,
                                       keys * hd * sizeof(bf16), cudaMemcpyDeviceToHost, stream_));
    FOLIO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    out.n = n;
    out.pos = pos;
    out.q.resize(q.size());
    out.k.resize(k.size());
    for (size_t i = 0; i < q.size(); ++i) out.q[i] = bf16_to_f32(q[i]);
    for (size_t i = 0; i < k.size(); ++i) out.k[i] = bf16_to_f32(k[i]);
  }

  // ---- KV kept on disk: the cache's bf16 rows as they are. Per layer, K and V are
  // [kv head][capacity][head dim]: one strided copy of n positions per tensor, on the backend's
  // queue, through page-locked host buffers.
  // An 8-bit cache is not kept on disk (its file layout is the bf16 rows).
  int kv_element_bytes() const override { return options_.kv_quant == KvQuant::None ? sizeof(bf16) : 0; }
  std::string kv_type() const override { return options_.kv_quant == KvQuant::None ? "bf16" : kv_quant_name(options_.kv_quant); }

  std::unique_ptr<HostBuffer> host_buffer(size_t bytes) override {
    FOLIO_CUDA_CHECK(cudaSetDevice(device_));
    return std::make_unique<PinnedBuffer>(bytes);
  }

  void copy_kv(KvCache& kv_base, int layer, int tensor, int64_t n, int64_t rows, void* host, bool into_cache,
               int slot) override {
    auto& kv = dynamic_cast<CudaKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    const size_t hd_bytes = static_cast<size_t>(c.head_dim) * sizeof(bf16);
    const size_t width = static_cast<size_t>(n) * hd_bytes, host_pitch = static_cast<size_t>(rows) * hd_bytes;
    const size_t cache_pitch = static_cast<size_t>(kv.capacity()) * hd_bytes;
    if (kv.q8()) throw Error(ErrorCode::Internal, "an 8-bit KV cache is not copied to or from disk");
    bf16* base = tensor == 0 ? kv.k(layer) : kv.v(layer);
    cuda::DeviceScope scope(device_);  // the caller's device back afterwards (tensor parallel copies rank by rank)
    if (into_cache)
      FOLIO_CUDA_CHECK(cudaMemcpy2DAsync(base, cache_pitch, host, host_pitch, width, static_cast<size_t>(c.n_kv_heads),
                                         cudaMemcpyHostToDevice, stream_));
    else
      FOLIO_CUDA_CHECK(cudaMemcpy2DAsync(host, host_pitch, base, cache_pitch, width, static_cast<size_t>(c.n_kv_heads),
                                         cudaMemcpyDeviceToHost, stream_));
    cudaEvent_t& e = kv_copied_[slot & 1];
    if (e == nullptr) FOLIO_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    FOLIO_CUDA_CHECK(cudaEventRecord(e, stream_));
  }

  void wait_kv(int slot) override {
    if (kv_copied_[slot & 1] != nullptr) FOLIO_CUDA_CHECK(cudaEventSynchronize(kv_copied_[slot & 1]));
  }

 private:
  // Whether a step of n tokens reads the 8-bit rows directly (the split-K decode kernel's head dims)
  // rather than their expansion into the stage.
  bool q8_direct(int64_t n) const { return n == 1 && cuda::attention_head_dim_fast(model_->config.head_dim); }

  cuda::KvQ8Args q8_args(const CudaKvCache& kv, int layer, int64_t n, int64_t pos, const int64_t* pos_dev) const {
    const ModelConfig& c = model_->config;
    cuda::KvQ8Args a;
    for (int t = 0; t < 2; ++t) {
      a.stage[t] = t == 0 ? kv.k(layer) : kv.v(layer);
      a.values[t] = kv.values(layer, t);
      a.scales[t] = kv.scales(layer, t);
    }
    a.n_kv_heads = c.n_kv_heads;
    a.head_dim = c.head_dim;
    a.blocks = kv.layout().blocks;
    a.capacity = kv.capacity();
    a.pos0 = pos;
    a.n = static_cast<int>(n);
    a.pos_dev = pos_dev;
    return a;
  }

  void upload_budgets(CudaKvCache& kv, const std::shared_ptr<const sparse::SparseConfig>& config) {
    const ModelConfig& c = model_->config;
    std::vector<cuda::DeviceBudget> b(static_cast<size_t>(c.n_layers) * static_cast<size_t>(c.n_heads));
    kv.layer_kinds.assign(static_cast<size_t>(c.n_layers), 0);
    for (int l = 0; l < c.n_layers; ++l)
      for (int h = 0; h < c.n_heads; ++h) {
        const sparse::HeadBudget& hb = config->head(l, h);
        b[static_cast<size_t>(l) * static_cast<size_t>(c.n_heads) + static_cast<size_t>(h)] = cuda::device_budget(hb);
        kv.layer_kinds[static_cast<size_t>(l)] |= hb.pattern == sparse::Pattern::BlockCluster ? 2 : 1;
      }
    FOLIO_CUDA_CHECK(cudaMemcpyAsync(kv.sparse.budgets, b.data(), b.size() * sizeof(cuda::DeviceBudget),
                                     cudaMemcpyHostToDevice, stream_));
    FOLIO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    kv.budgets_of = config;
  }

  void upload_rope(const RopeTable& rope) {
    if (rope.inv_freq == inv_freq_host_) return;
    FOLIO_CUDA_CHECK(cudaMemcpyAsync(inv_freq_dev_, rope.inv_freq.data(), rope.inv_freq.size() * sizeof(float),
                                     cudaMemcpyHostToDevice, stream_));
    FOLIO_CUDA_CHECK(cudaStreamSynchronize(stream_));
    inv_freq_host_ = rope.inv_freq;
  }

  struct StepArgs {
    int64_t pos;
    int32_t token;
  };
  // One recorded decode step: for the cache whose keys start at k (its capacity), positions below
  // `bucket`, and the rope it was recorded with.
  struct Recording {
    const bf16* k = nullptr;
    int64_t capacity = 0, bucket = 0;
    std::vector<float> inv_freq;
    float attention_scale = 1.0f;
    cudaGraphExec_t exec = nullptr;
    uint64_t used = 0;
  };
  static constexpr size_t kMaxRecordings = 16;

  Recording& record(const CudaKvCache& kv, int64_t bucket, const RopeTable& rope, const std::function<void()>& ops) {
    FOLIO_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    recording_ = true;
    record_pos_ = bucket - 1;
    cudaGraph_t graph = nullptr;
    try {
      ops();
    } catch (...) {
      recording_ = false;
      if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess && graph != nullptr) cudaGraphDestroy(graph);
      throw;
    }
    recording_ = false;
    FOLIO_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    FOLIO_CUDA_CHECK(e);
    if (recordings_.size() >= kMaxRecordings) {  // the least recently used goes
      auto old = std::min_element(recordings_.begin(), recordings_.end(),
                                  [](const Recording& a, const Recording& b) { return a.used < b.used; });
      cudaGraphExecDestroy(old->exec);
      recordings_.erase(old);
    }
    Recording r;
    r.k = kv.k(0);
    r.capacity = kv.capacity();
    r.bucket = bucket;
    r.inv_freq = inv_freq_host_;
    r.attention_scale = rope.attention_scale;
    r.exec = exec;
    recordings_.push_back(std::move(r));
    return recordings_.back();
  }

  std::shared_ptr<const LoadedModel> model_;
  int device_;
  size_t limit_;
  std::string device_name_;
  int num_sms_ = 0;
  int64_t chunk_ = 0;
  int64_t largest_context_ = 0;  // the memory plan against what was free (or allowed) at load
  cudaStream_t stream_ = nullptr;
  cuda::Arena weights_, scratch_, all_logits_, dequant_, piece_logits_;
  cuda::Arena part_arena_;  // a tensor-parallel rank's share of Out or Down, fp32 [chunk][hidden]
  float* part_ = nullptr;
  const ModelWeights* native_ = nullptr;  // the model's weights when quantized ones stay in their blocks
  int64_t output_piece_rows_ = 0;
  std::unique_ptr<cuda::Gemm> gemm_;
  std::vector<DeviceLayer> layers_;
  DeviceMatrix embd_, output_;
  float* out_norm_ = nullptr;
  float* x_ = nullptr;
  bf16 *xb_ = nullptr, *qkv_ = nullptr, *q_ = nullptr, *gu_ = nullptr, *act_ = nullptr;
  int32_t* tokens_dev_ = nullptr;
  int64_t* pos_dev_ = nullptr;           // a recorded step's position
  StepArgs* step_host_ = nullptr;        // page-locked: copied into tokens_dev_ and pos_dev_
  std::vector<Recording> recordings_;
  bool recording_ = false;               // ops are being recorded (recorded_step)
  int64_t record_pos_ = 0;               // the largest position of the recording
  uint64_t use_counter_ = 0;
  float *logits_dev_ = nullptr, *partial_ = nullptr, *inv_freq_dev_ = nullptr;
  void* workspace_ = nullptr;
  cuda::QuantizedX qx_;  // a decode GEMV's activations at 8 bits
  std::vector<float> inv_freq_host_;
  std::vector<bf16> staging_;
  uint64_t seed_counter_ = 0;
  std::atomic<size_t> kv_bytes_{0}, sparse_bytes_{0};
  std::vector<cudaEvent_t> events_;  // time marks (Backend::mark)
  cudaEvent_t kv_copied_[2] = {nullptr, nullptr};  // copy_kv's two slots
  std::vector<cuda::HeadResult> results_host_;
  int sample_rows_ = 1;                     // of the last estimate()
  const CudaKvCache* results_of_ = nullptr;  // whose scratch holds the last step's head results
  BackendOptions options_;
};

}  // namespace

std::unique_ptr<Backend> create_cuda_backend(std::shared_ptr<const LoadedModel> model, const BackendOptions& options) {
  return std::make_unique<CudaBackend>(std::move(model), options);
}

void register_cuda_backend() {
  register_gpu_lister([](std::string& why) {
    const CudaProbe probe = probe_cuda();
    std::vector<GpuInfo> gpus;
    for (const CudaDeviceInfo& d : probe.devices) gpus.push_back(GpuInfo{d.index, d.name, d.total_bytes, d.free_bytes});
    if (gpus.empty()) why = probe.summary;
    return gpus;
  });
  register_backend(BackendKind::Cuda, [](std::shared_ptr<const LoadedModel> model, const BackendOptions& options,
                                         std::string& notice) -> std::unique_ptr<Backend> {
    const CudaProbe probe = probe_cuda();
    if (options.devices.size() > 1 && probe.device_count > 0)
      return create_cuda_tensor_parallel_backend(std::move(model), options);
    if (probe.device_count == 0) {
      notice = "no usable GPU (" + probe.summary + "); running on the CPU";
      return nullptr;
    }
    if (const std::string why = cuda::cublaslt_unavailable(); !why.empty()) {
      notice = why + "; running on the CPU";
      return nullptr;
    }
    if (options.device < 0 || options.device >= probe.device_count)
      throw Error(ErrorCode::BadArgument, "there is no GPU cuda:" + std::to_string(options.device) + " (" +
                                              probe.summary + ")");
    try {
      return create_cuda_backend(std::move(model), options);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::UnsupportedModel) throw;
      notice = std::string("the CUDA backend cannot run this model (") + e.what() + "); running on the CPU";
      return nullptr;
    }
  });
}

}  // namespace folio
