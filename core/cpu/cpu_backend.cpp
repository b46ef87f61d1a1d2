#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/common/error.h"
#include "core/common/thread_pool.h"
#include "core/cpu/cpu_ops.h"
#include "core/cpu/cpu_backend.h"
#include "core/model/model_weights.h"
#include "core/model/quant.h"

namespace folio {

namespace {

// Per layer: K and V as [n_kv_heads][capacity][head_dim] fp32, so one head's keys are contiguous.
class CpuKvCache final : public KvCache {
 public:
  CpuKvCache(const ModelConfig& c, int64_t capacity, std::atomic<size_t>* live_bytes)
      : capacity_(capacity), live_bytes_(live_bytes) {
    const size_t per_layer = static_cast<size_t>(c.n_kv_heads) * static_cast<size_t>(capacity) *
                             static_cast<size_t>(c.head_dim);
    try {
      k_.resize(static_cast<size_t>(c.n_layers));
      v_.resize(static_cast<size_t>(c.n_layers));
      for (int l = 0; l < c.n_layers; ++l) {
        k_[static_cast<size_t>(l)].assign(per_layer, 0.0f);
        v_[static_cast<size_t>(l)].assign(per_layer, 0.0f);
      }
    } catch (const std::bad_alloc&) {
      throw Error(ErrorCode::OutOfMemory, "not enough memory for a KV cache of " + std::to_string(capacity) +
                                              " tokens; choose a smaller context");
    }
    bytes_ = per_layer * 2 * static_cast<size_t>(c.n_layers) * sizeof(float);
    *live_bytes_ += bytes_;
  }
  ~CpuKvCache() override { *live_bytes_ -= bytes_; }
  int64_t capacity() const override { return capacity_; }
  size_t bytes() const override { return bytes_; }
  float* k(int layer) { return k_[static_cast<size_t>(layer)].data(); }
  float* v(int layer) { return v_[static_cast<size_t>(layer)].data(); }
  const float* k(int layer) const { return k_[static_cast<size_t>(layer)].data(); }
  const float* v(int layer) const { return v_[static_cast<size_t>(layer)].data(); }

 private:
  int64_t capacity_;
  size_t bytes_ = 0;
  std::atomic<size_t>* live_bytes_;
  std::vector<std::vector<float>> k_, v_;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::shared_ptr<const LoadedModel> model, int threads, KvQuant kv_quant)
      : model_(std::move(model)), pool_(threads), kv_quant_(kv_quant) {
    if (model_->random_on_device)
      throw Error(ErrorCode::BadArgument, "this random model's weights are made on the GPU; use the CUDA backend");
  }

  BackendKind kind() const override { return BackendKind::Cpu; }
  std::string name() const override { return "cpu (" + std::to_string(pool_.size()) + " threads)"; }
  const ModelConfig& config() const override { return model_->config; }
  // Activations grow with the step, so any step fits; 512-token chunks measured best.
  int64_t max_step() const override { return int64_t{1} << 30; }
  int64_t preferred_chunk() const override { return 512; }
  // The CPU's sparse path is the scalar reference: its estimation costs more than the attention it
  // saves at every length measured (docs/sparse.md), so auto stays dense here.
  int64_t sparse_gain_keys() const override { return std::numeric_limits<int64_t>::max(); }

  std::unique_ptr<KvCache> create_kv_cache(int64_t capacity_tokens) override {
    if (capacity_tokens <= 0) throw Error(ErrorCode::BadArgument, "KV cache capacity must be positive");
    return std::make_unique<CpuKvCache>(model_->config, capacity_tokens, &kv_bytes_);
  }

  // The cache is [kv_head][capacity][head_dim] per layer: each head's first n positions.
  // An fp8-rounded cache is not kept on disk (a file holds one element type per model).
  int kv_element_bytes() const override { return kv_quant_ != KvQuant::None ? 0 : static_cast<int>(sizeof(float)); }
  std::string kv_type() const override {
    if (kv_quant_ == KvQuant::None) return "fp32";
    return std::string(kv_quant_name(kv_quant_)) + " (values held in fp32 here)";
  }
  void copy_kv(KvCache& kv, int layer, int tensor, int64_t n, int64_t rows, void* host, bool into_cache,
               int /*slot*/) override {
    auto& cache = static_cast<CpuKvCache&>(kv);
    const ModelConfig& c = model_->config;
    const size_t hd = static_cast<size_t>(c.head_dim), bytes = static_cast<size_t>(n) * hd * sizeof(float);
    float* base = tensor == 0 ? cache.k(layer) : cache.v(layer);
    auto* h = static_cast<uint8_t*>(host);
    for (int g = 0; g < c.n_kv_heads; ++g) {
      float* at = base + static_cast<size_t>(g) * static_cast<size_t>(kv.capacity()) * hd;
      uint8_t* row = h + static_cast<size_t>(g) * static_cast<size_t>(rows) * hd * sizeof(float);
      if (into_cache) std::memcpy(at, row, bytes);
      else std::memcpy(row, at, bytes);
    }
  }

  // Half the memory the system had available when the backend was made, for an fp32 KV cache, in
  // whole 256-token steps (Linux: /proc/meminfo's MemAvailable; 0 elsewhere).
  int64_t largest_context() const override {
    std::ifstream meminfo("/proc/meminfo");
    std::string key, unit;
    int64_t kib = 0;
    while (meminfo >> key >> kib >> unit) {
      if (key != "MemAvailable:") continue;
      const int64_t per_token = model_->config.kv_bytes_per_token(sizeof(float));
      if (per_token <= 0) return 0;
      return std::max<int64_t>(256, kib * 1024 / 2 / per_token / 256 * 256);
    }
    return 0;
  }

  std::vector<DeviceMemory> memory() const override {
    DeviceMemory m;
    m.device = "cpu";
    m.weights_bytes = model_->weight_bytes();
    m.kv_bytes = kv_bytes_.load();
    m.scratch_bytes = scratch_bytes_;
    return {m};
  }

  void embed(std::span<const int32_t> tokens) override {
    reserve(static_cast<int64_t>(tokens.size()));
    cpu::embedding(model_->weights.tok_embd, tokens, x_.data());
  }

  void norm(Norm which, int layer, int64_t n) override {
    const LayerWeights& L = layer_weights(layer);
    const ModelConfig& c = model_->config;
    cpu::rmsnorm(x_.data(), f32(which == Norm::Attention ? L.attn_norm : L.ffn_norm), n, c.hidden, c.norm_eps,
                 xb_.data());
  }

  void project(Proj which, int layer, int64_t n) override {
    const LayerWeights& L = layer_weights(layer);
    const ModelConfig& c = model_->config;
    switch (which) {
      case Proj::Qkv:
        cpu::matmul(pool_, xb_.data(), n, L.wq, f32(L.bq), q_.data());
        cpu::matmul(pool_, xb_.data(), n, L.wk, f32(L.bk), k_.data());
        cpu::matmul(pool_, xb_.data(), n, L.wv, f32(L.bv), v_.data());
        break;
      case Proj::Out:
        cpu::matmul(pool_, att_.data(), n, L.wo, nullptr, xb_.data());
        cpu::add_inplace(x_.data(), xb_.data(), n * c.hidden);
        break;
      case Proj::GateUp:
        cpu::matmul(pool_, xb_.data(), n, L.w_gate, nullptr, gate_.data());
        cpu::matmul(pool_, xb_.data(), n, L.w_up, nullptr, up_.data());
        break;
      case Proj::Down:
        cpu::matmul(pool_, gate_.data(), n, L.w_down, nullptr, xb_.data());
        cpu::add_inplace(x_.data(), xb_.data(), n * c.hidden);
        break;
    }
  }

  // A rank's share of Out or Down goes to xb_ (as project() computes it before adding it to x).
  void project_part(Proj which, int layer, int64_t n) override {
    const LayerWeights& L = layer_weights(layer);
    if (which == Proj::Out) cpu::matmul(pool_, att_.data(), n, L.wo, nullptr, xb_.data());
    else if (which == Proj::Down) cpu::matmul(pool_, gate_.data(), n, L.w_down, nullptr, xb_.data());
    else throw Error(ErrorCode::Internal, "project_part: only the Out and Down projections add to x");
  }
  PartBuffer part_buffer(int64_t n) override {
    PartBuffer p;
    p.data = xb_.data();
    p.count = n * model_->config.hidden;
    return p;
  }
  void add_part(int64_t n) override { cpu::add_inplace(x_.data(), xb_.data(), n * model_->config.hidden); }

  void rope_kv_write(int layer, KvCache& kv_base, int64_t n, int64_t pos, const RopeTable& rope) override {
    auto& kv = dynamic_cast<CpuKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    const int64_t KVD = c.kv_dim(), hd = c.head_dim;
    positions_.resize(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) positions_[static_cast<size_t>(t)] = static_cast<int32_t>(pos + t);
    cpu::rope(q_.data(), n, c.q_dim(), c.n_heads, static_cast<int>(hd), positions_, rope, c.rope.layout);
    cpu::rope(k_.data(), n, KVD, c.n_kv_heads, static_cast<int>(hd), positions_, rope, c.rope.layout);
    float* kc = kv.k(layer);
    float* vc = kv.v(layer);
    for (int64_t t = 0; t < n; ++t)
      for (int g = 0; g < c.n_kv_heads; ++g) {
        const size_t dst = (static_cast<size_t>(g) * static_cast<size_t>(kv.capacity()) + static_cast<size_t>(pos + t)) *
                           static_cast<size_t>(hd);
        std::memcpy(kc + dst, k_.data() + t * KVD + g * hd, static_cast<size_t>(hd) * sizeof(float));
        std::memcpy(vc + dst, v_.data() + t * KVD + g * hd, static_cast<size_t>(hd) * sizeof(float));
        round_kv_row(kv_quant_, kc + dst, hd);
        round_kv_row(kv_quant_, vc + dst, hd);
      }
  }

  SparseSupport sparse_support(const sparse::SparseConfig&, int64_t) const override { return {}; }

  // Per head: its pattern from this step's queries and the keys so far (core/attention/sparse.h
  // is the reference this runs).
  void estimate(int layer, KvCache& kv_base, int64_t n, int64_t pos,
                const std::shared_ptr<const sparse::SparseConfig>& config) override {
    auto& kv = dynamic_cast<CpuKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    const int hd = c.head_dim;
    const int group = c.n_heads / c.n_kv_heads;
    const sparse::SparseConfig& cfg = *config;
    const float* kc = kv.k(layer);
    plans_.resize(static_cast<size_t>(c.n_heads));
    pool_.parallel_for(c.n_heads, [&](int64_t b, int64_t e, int) {
      for (int64_t h = b; h < e; ++h)
        plans_[static_cast<size_t>(h)] =
            sparse::estimate_head(cfg.head(layer, static_cast<int>(h)), cfg.last_queries, q_.data() + h * hd,
                                  c.q_dim(), n, pos, kc + (h / group) * kv.capacity() * hd, hd, hd);
    });
    results_.resize(static_cast<size_t>(c.n_layers) * static_cast<size_t>(c.n_heads));
    for (int h = 0; h < c.n_heads; ++h) {
      const sparse::HeadPlan& p = plans_[static_cast<size_t>(h)];
      results_[static_cast<size_t>(layer) * static_cast<size_t>(c.n_heads) + static_cast<size_t>(h)] =
          HeadPlanResult{p.list.computed(), p.est_mass, p.mass_reached};
    }
  }

  void attention(int layer, KvCache& kv_base, int64_t n, int64_t pos, bool listed) override {
    auto& kv = dynamic_cast<CpuKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    const int hd = c.head_dim;
    const float* kc = kv.k(layer);
    const float* vc = kv.v(layer);
    if (!listed) {
      cpu::attention(pool_, q_.data(), n, pos, kc, vc, kv.capacity(), c.n_heads, c.n_kv_heads, hd, att_.data());
      return;
    }
    const int group = c.n_heads / c.n_kv_heads;
    const int64_t QD = c.q_dim();
    pool_.parallel_for(c.n_heads, [&](int64_t b, int64_t e, int) {
      for (int64_t h = b; h < e; ++h) {
        const int64_t g = h / group;
        sparse::tile_attention(q_.data() + h * hd, QD, n, pos, kc + g * kv.capacity() * hd, vc + g * kv.capacity() * hd,
                               hd, hd, plans_[static_cast<size_t>(h)].list, att_.data() + h * hd, QD);
      }
    });
  }

  void swiglu(int64_t n) override {
    cpu::swiglu(gate_.data(), up_.data(), n * model_->config.ffn_hidden, gate_.data());
  }

  void logits(int64_t first_row, int64_t rows, float* out) override {
    const ModelConfig& c = model_->config;
    const ModelWeights& w = model_->weights;
    const int64_t H = c.hidden, V = c.vocab_size;
    // a few rows at a time: xb_ may hold fewer rows than the step when it is one token
    constexpr int64_t kRows = 16;
    rows_.resize(static_cast<size_t>(std::min(kRows, rows) * H));
    for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
      const int64_t cnt = std::min(kRows, rows - r0);
      cpu::rmsnorm(x_.data() + (first_row + r0) * H, f32(w.out_norm), cnt, H, c.norm_eps, rows_.data());
      cpu::matmul(pool_, rows_.data(), cnt, w.output, nullptr, out + r0 * V);
    }
  }

  void finish_step() override {}

  void plan_results(std::vector<HeadPlanResult>& out) override { out = results_; }

  void mark(int slot) override {
    if (static_cast<size_t>(slot) >= marks_.size()) marks_.resize(static_cast<size_t>(slot) + 1);
    marks_[static_cast<size_t>(slot)] = std::chrono::steady_clock::now();
  }
  double elapsed_ms(int from_slot, int to_slot) override {
    return std::chrono::duration<double, std::milli>(marks_.at(static_cast<size_t>(to_slot)) -
                                                     marks_.at(static_cast<size_t>(from_slot)))
        .count();
  }

  void read_attention_inputs(int layer, KvCache& kv_base, int64_t n, int64_t pos, AttentionInputs& out) override {
    auto& kv = dynamic_cast<CpuKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    const size_t hd = static_cast<size_t>(c.head_dim), keys = static_cast<size_t>(pos + n);
    out.n = n;
    out.pos = pos;
    out.q.assign(q_.begin(), q_.begin() + n * c.q_dim());
    out.k.resize(static_cast<size_t>(c.n_kv_heads) * keys * hd);
    for (int g = 0; g < c.n_kv_heads; ++g)
      std::memcpy(out.k.data() + static_cast<size_t>(g) * keys * hd,
                  kv.k(layer) + static_cast<size_t>(g) * static_cast<size_t>(kv.capacity()) * hd,
                  keys * hd * sizeof(float));
  }

 private:
  static const float* f32(const TensorView& t) { return t.empty() ? nullptr : static_cast<const float*>(t.data); }
  const LayerWeights& layer_weights(int layer) const { return model_->weights.layers[static_cast<size_t>(layer)]; }

  void reserve(int64_t n) {
    if (n <= reserved_tokens_) return;
    const ModelConfig& c = model_->config;
    auto sz = [n](int64_t width) { return static_cast<size_t>(n * width); };
    x_.resize(sz(c.hidden));
    xb_.resize(sz(std::max<int64_t>(c.hidden, 1)));
    q_.resize(sz(c.q_dim()));
    k_.resize(sz(c.kv_dim()));
    v_.resize(sz(c.kv_dim()));
    att_.resize(sz(c.q_dim()));
    gate_.resize(sz(c.ffn_hidden));
    up_.resize(sz(c.ffn_hidden));
    reserved_tokens_ = n;
    scratch_bytes_ = (x_.size() + xb_.size() + q_.size() + k_.size() + v_.size() + att_.size() + gate_.size() +
                      up_.size()) * sizeof(float);
  }

  std::shared_ptr<const LoadedModel> model_;
  ThreadPool pool_;
  KvQuant kv_quant_ = KvQuant::None;
  std::atomic<size_t> kv_bytes_{0};
  int64_t reserved_tokens_ = 0;
  size_t scratch_bytes_ = 0;
  std::vector<float> x_, xb_, q_, k_, v_, att_, gate_, up_, rows_;
  std::vector<int32_t> positions_;
  std::vector<sparse::HeadPlan> plans_;     // this layer's, between estimate() and attention()
  std::vector<HeadPlanResult> results_;     // [layer][head] of the step
  std::vector<std::chrono::steady_clock::time_point> marks_;
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend(std::shared_ptr<const LoadedModel> model, int threads, KvQuant kv_quant) {
  return std::make_unique<CpuBackend>(std::move(model), threads, kv_quant);
}

}  // namespace folio
