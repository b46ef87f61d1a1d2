#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>

#include "core/common/error.h"
#include "core/common/thread_pool.h"
#include "core/cpu/cpu_ops.h"
#include "core/model/backend.h"

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

 private:
  int64_t capacity_;
  size_t bytes_ = 0;
  std::atomic<size_t>* live_bytes_;
  std::vector<std::vector<float>> k_, v_;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::shared_ptr<const LoadedModel> model, int threads) : model_(std::move(model)), pool_(threads) {
    if (model_->random_on_device)
      throw Error(ErrorCode::BadArgument, "this random model's weights are made on the GPU; use the CUDA backend");
  }

  BackendKind kind() const override { return BackendKind::Cpu; }
  std::string name() const override { return "cpu (" + std::to_string(pool_.size()) + " threads)"; }
  const ModelConfig& config() const override { return model_->config; }

  std::unique_ptr<KvCache> create_kv_cache(int64_t capacity_tokens) override {
    if (capacity_tokens <= 0) throw Error(ErrorCode::BadArgument, "KV cache capacity must be positive");
    return std::make_unique<CpuKvCache>(model_->config, capacity_tokens, &kv_bytes_);
  }

  void forward(KvCache& kv_base, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
               float* logits) override {
    run(kv_base, tokens, pos, rope, logits, false);
  }

  void forward_all_logits(KvCache& kv_base, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
                          float* logits) override {
    run(kv_base, tokens, pos, rope, logits, true);
  }

  void run(KvCache& kv_base, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope, float* logits,
           bool all_logits) {
    auto& kv = dynamic_cast<CpuKvCache&>(kv_base);
    const ModelConfig& c = model_->config;
    const ModelWeights& w = model_->weights;
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n == 0) return;
    check_forward_args(c, kv, tokens, pos);
    reserve(n);
    const int64_t H = c.hidden, QD = c.q_dim(), KVD = c.kv_dim(), F = c.ffn_hidden, hd = c.head_dim;
    std::vector<int32_t> positions(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) positions[static_cast<size_t>(t)] = static_cast<int32_t>(pos + t);

    // Auto mode runs dense here: the CPU's sparse path is the reference (its estimation costs more
    // than the attention it saves); --attention sparse forces it.
    const bool sparse_chunk = kv.policy.mode == sparse::AttentionMode::Sparse && use_sparse(kv.policy, n, pos);
    if (kv.policy.mode == sparse::AttentionMode::Auto && use_sparse(kv.policy, n, pos))
      kv.stats.note = "auto attention runs dense on the CPU (sparse prefill pays on the GPU); --attention sparse forces it";
    if (sparse_chunk) ++kv.stats.sparse_chunks;
    else if (n > 1) ++kv.stats.dense_chunks;
    cpu::embedding(w.tok_embd, tokens, x_.data());
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& L = w.layers[static_cast<size_t>(l)];
      cpu::rmsnorm(x_.data(), f32(L.attn_norm), n, H, c.norm_eps, xb_.data());
      cpu::matmul(pool_, xb_.data(), n, L.wq, f32(L.bq), q_.data());
      cpu::matmul(pool_, xb_.data(), n, L.wk, f32(L.bk), k_.data());
      cpu::matmul(pool_, xb_.data(), n, L.wv, f32(L.bv), v_.data());
      cpu::rope(q_.data(), n, QD, c.n_heads, static_cast<int>(hd), positions, rope, c.rope.layout);
      cpu::rope(k_.data(), n, KVD, c.n_kv_heads, static_cast<int>(hd), positions, rope, c.rope.layout);
      float* kc = kv.k(l);
      float* vc = kv.v(l);
      for (int64_t t = 0; t < n; ++t)
        for (int g = 0; g < c.n_kv_heads; ++g) {
          const size_t dst = (static_cast<size_t>(g) * static_cast<size_t>(kv.capacity()) + static_cast<size_t>(pos + t)) *
                             static_cast<size_t>(hd);
          std::memcpy(kc + dst, k_.data() + t * KVD + g * hd, static_cast<size_t>(hd) * sizeof(float));
          std::memcpy(vc + dst, v_.data() + t * KVD + g * hd, static_cast<size_t>(hd) * sizeof(float));
        }
      if (kv.policy.search && n > 1) search_patterns(kv, l, n, pos, kc);
      if (sparse_chunk) {
        sparse_attention(kv, l, n, pos, kc, vc);
      } else {
        cpu::attention(pool_, q_.data(), n, pos, kc, vc, kv.capacity(), c.n_heads, c.n_kv_heads, static_cast<int>(hd),
                       att_.data());
      }
      cpu::matmul(pool_, att_.data(), n, L.wo, nullptr, xb_.data());
      cpu::add_inplace(x_.data(), xb_.data(), n * H);
      cpu::rmsnorm(x_.data(), f32(L.ffn_norm), n, H, c.norm_eps, xb_.data());
      cpu::matmul(pool_, xb_.data(), n, L.w_gate, nullptr, gate_.data());
      cpu::matmul(pool_, xb_.data(), n, L.w_up, nullptr, up_.data());
      cpu::swiglu(gate_.data(), up_.data(), n * F, gate_.data());
      cpu::matmul(pool_, gate_.data(), n, L.w_down, nullptr, xb_.data());
      cpu::add_inplace(x_.data(), xb_.data(), n * H);
    }
    if (logits != nullptr && all_logits) {
      // every row, a few at a time (xb_ holds at most `hidden` floats per reserved token)
      const int64_t V = c.vocab_size;
      std::vector<float> normed(static_cast<size_t>(H));
      constexpr int64_t kRows = 16;
      std::vector<float> rows(static_cast<size_t>(kRows * H));
      for (int64_t t0 = 0; t0 < n; t0 += kRows) {
        const int64_t cnt = std::min(kRows, n - t0);
        cpu::rmsnorm(x_.data() + t0 * H, f32(w.out_norm), cnt, H, c.norm_eps, rows.data());
        cpu::matmul(pool_, rows.data(), cnt, w.output, nullptr, logits + t0 * V);
      }
    } else if (logits != nullptr) {
      cpu::rmsnorm(x_.data() + (n - 1) * H, f32(w.out_norm), 1, H, c.norm_eps, xb_.data());
      cpu::matmul(pool_, xb_.data(), 1, w.output, nullptr, logits);
    }
  }

  // Offline search: each pattern kind at the same tile budget, scored by the exact mass it keeps.
  void search_patterns(CpuKvCache& kv, int layer, int64_t n, int64_t pos, const float* kc) {
    const ModelConfig& c = model_->config;
    const int hd = c.head_dim;
    const int group = c.n_heads / c.n_kv_heads;
    AttentionStats& st = kv.stats;
    if (st.search_mass.size() != static_cast<size_t>(c.n_layers)) {
      st.search_mass.assign(static_cast<size_t>(c.n_layers), std::vector<std::array<double, 3>>(static_cast<size_t>(c.n_heads)));
      st.search_density = st.search_mass;
    }
    if (layer == 0) ++st.search_chunks;
    const sparse::SparseConfig defaults;
    const sparse::SparseConfig& cfg = kv.policy.config ? *kv.policy.config : defaults;
    const sparse::Pattern kinds[3] = {sparse::Pattern::Triangular, sparse::Pattern::IntervalSlash,
                                      sparse::Pattern::BlockCluster};
    pool_.parallel_for(c.n_heads * 3, [&](int64_t b, int64_t e, int) {
      for (int64_t idx = b; idx < e; ++idx) {
        const int64_t h = idx / 3, which = idx % 3;
        sparse::HeadBudget budget = cfg.head(layer, static_cast<int>(h));
        budget.pattern = kinds[which];
        budget.mass_target = 1.0;  // fill the budget: compare at equal cost
        budget.min_density = kv.policy.search_density;
        budget.max_density = kv.policy.search_density;
        budget.window_tiles = 0;
        const float* qh = q_.data() + h * hd;
        const float* kh = kc + (h / group) * kv.capacity() * hd;
        const sparse::HeadPlan plan = sparse::estimate_head(budget, cfg.last_queries, qh, c.q_dim(), n, pos, kh, hd, hd);
        const double mass = sparse::exact_mass(qh, c.q_dim(), n, pos, kh, hd, hd, plan.list, kv.policy.search_row_step);
        st.search_mass[static_cast<size_t>(layer)][static_cast<size_t>(h)][static_cast<size_t>(which)] += mass;
        st.search_density[static_cast<size_t>(layer)][static_cast<size_t>(h)][static_cast<size_t>(which)] += plan.list.density();
      }
    });
  }

  // Per head: estimate its pattern from this chunk's queries and the keys so far, then attend over
  // the chosen tiles only (core/attention/sparse.h is the reference this runs).
  void sparse_attention(CpuKvCache& kv, int layer, int64_t n, int64_t pos, const float* kc, const float* vc) {
    const ModelConfig& c = model_->config;
    const int hd = c.head_dim;
    const int64_t QD = c.q_dim();
    const int group = c.n_heads / c.n_kv_heads;
    const sparse::SparseConfig& cfg = *kv.policy.config;
    AttentionStats& st = kv.stats;
    std::vector<sparse::HeadPlan> plans(static_cast<size_t>(c.n_heads));
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    pool_.parallel_for(c.n_heads, [&](int64_t b, int64_t e, int) {
      for (int64_t h = b; h < e; ++h) {
        const int64_t g = h / group;
        plans[static_cast<size_t>(h)] = sparse::estimate_head(
            cfg.head(layer, static_cast<int>(h)), cfg.last_queries, q_.data() + h * hd, QD, n, pos,
            kc + g * kv.capacity() * hd, hd, hd);
      }
    });
    const auto t1 = clock::now();
    pool_.parallel_for(c.n_heads, [&](int64_t b, int64_t e, int) {
      for (int64_t h = b; h < e; ++h) {
        const int64_t g = h / group;
        sparse::tile_attention(q_.data() + h * hd, QD, n, pos, kc + g * kv.capacity() * hd, vc + g * kv.capacity() * hd,
                               hd, hd, plans[static_cast<size_t>(h)].list, att_.data() + h * hd, QD);
      }
    });
    const auto t2 = clock::now();
    st.estimate_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
    st.sparse_attention_ms += std::chrono::duration<double, std::milli>(t2 - t1).count();
    const int64_t causal = sparse::causal_tiles(n, pos);
    for (int h = 0; h < c.n_heads; ++h) {
      const sparse::HeadPlan& p = plans[static_cast<size_t>(h)];
      st.add_plan(layer, h, c.n_layers, c.n_heads, p.list.computed(), causal, p.est_mass, p.mass_reached);
    }
  }

  std::vector<DeviceMemory> memory() const override {
    DeviceMemory m;
    m.device = "cpu";
    m.weights_bytes = model_->weight_bytes();
    m.kv_bytes = kv_bytes_.load();
    m.scratch_bytes = scratch_bytes_;
    return {m};
  }

 private:
  static const float* f32(const TensorView& t) { return t.empty() ? nullptr : static_cast<const float*>(t.data); }

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
  std::atomic<size_t> kv_bytes_{0};
  int64_t reserved_tokens_ = 0;
  size_t scratch_bytes_ = 0;
  std::vector<float> x_, xb_, q_, k_, v_, att_, gate_, up_;
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend(std::shared_ptr<const LoadedModel> model, int threads) {
  return std::make_unique<CpuBackend>(std::move(model), threads);
}

}  // namespace folio
