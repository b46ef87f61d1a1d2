#include "core/engine/tensor_parallel.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <thread>

#include "core/common/error.h"
#include "core/common/thread_pool.h"
#include "core/cpu/cpu_backend.h"

namespace folio {

namespace {

std::string count_of(int64_t n, const char* what) { return std::to_string(n) + " " + what; }

}  // namespace

TensorParallelLayout plan_tensor_parallel(const LoadedModel& model, int ranks) {
  const ModelConfig& c = model.config;
  if (ranks < 1) throw Error(ErrorCode::BadArgument, "tensor parallel needs at least one rank");
  TensorParallelLayout t;
  t.ranks = ranks;
  const std::string over = " over " + count_of(ranks, ranks == 1 ? "rank" : "ranks");
  if (c.n_heads % ranks != 0)
    throw Error(ErrorCode::BadArgument, "this model's " + count_of(c.n_heads, "query heads") +
                                            " cannot be split evenly" + over + "; use a rank count that divides " +
                                            std::to_string(c.n_heads));
  t.heads_per_rank = c.n_heads / ranks;
  if (c.n_kv_heads % ranks == 0) {
    t.kv_heads_per_rank = c.n_kv_heads / ranks;
  } else if (ranks % c.n_kv_heads == 0) {
    // fewer KV heads than ranks: each KV head on the ranks whose query heads read it
    t.kv_heads_per_rank = 1;
    t.kv_replicas = ranks / c.n_kv_heads;
  } else {
    throw Error(ErrorCode::BadArgument, "this model's " + count_of(c.n_kv_heads, "KV heads") +
                                            " cannot be split evenly" + over +
                                            " (nor each copied to a whole number of ranks); use a rank count that "
                                            "divides " + std::to_string(c.n_kv_heads) + " or is a multiple of it");
  }
  // Column slices of the attention output projection begin at a head: whole blocks only.
  const auto& layers = model.weights.layers;
  const int64_t q_slice = int64_t{t.heads_per_rank} * c.head_dim;
  for (const LayerWeights& L : layers)
    if (q_slice % block_elements(L.wo.dtype) != 0)
      throw Error(ErrorCode::BadArgument, "the attention output projection is " + std::string(dtype_name(L.wo.dtype)) +
                                              " (blocks of " + std::to_string(block_elements(L.wo.dtype)) +
                                              " values); a rank's " + std::to_string(q_slice) +
                                              " columns are not whole blocks" + over);
  // MLP columns: as even as the down projection's blocks allow; every rank gets some.
  int64_t block = 1;
  for (const LayerWeights& L : layers) block = std::max(block, block_elements(L.w_down.dtype));
  t.ffn_begin.resize(static_cast<size_t>(ranks) + 1);
  const int64_t blocks = c.ffn_hidden / block;
  if (c.ffn_hidden % block != 0 || blocks < ranks)
    throw Error(ErrorCode::BadArgument, "the MLP's " + std::to_string(c.ffn_hidden) + " columns (blocks of " +
                                            std::to_string(block) + ") cannot be split" + over);
  for (int r = 0; r <= ranks; ++r) t.ffn_begin[static_cast<size_t>(r)] = blocks * r / ranks * block;
  return t;
}

namespace {

// Columns [first, first + count) of every row, copied (whole blocks of a quantized type).
TensorView column_slice(LoadedModel& shard, const TensorView& t, int64_t first, int64_t count) {
  TensorView v = t;
  v.cols = count;
  if (t.data == nullptr) return v;  // a random model's shape only
  if (t.rows == 1) {                // a vector: a view
    v.data = static_cast<const uint8_t*>(t.data) + row_bytes(t.dtype, first);
    return v;
  }
  const size_t src_row = row_bytes(t.dtype, t.cols), dst_row = row_bytes(t.dtype, count);
  const size_t offset = row_bytes(t.dtype, first);
  std::vector<uint8_t> bytes(static_cast<size_t>(t.rows) * dst_row);
  const auto* src = static_cast<const uint8_t*>(t.data);
  for (int64_t r = 0; r < t.rows; ++r)
    std::memcpy(bytes.data() + static_cast<size_t>(r) * dst_row, src + static_cast<size_t>(r) * src_row + offset,
                dst_row);
  return shard.own_bytes(t.dtype, t.rows, count, std::move(bytes));
}

// Rows [first, first + count): a view (a random model's stays without data).
TensorView rows_of(const TensorView& t, int64_t first, int64_t count) {
  if (t.data != nullptr) return t.row_slice(first, count);
  TensorView v = t;
  v.rows = count;
  return v;
}

}  // namespace

std::shared_ptr<const LoadedModel> shard_model(const std::shared_ptr<const LoadedModel>& model,
                                               const TensorParallelLayout& layout, int rank) {
  const ModelConfig& c = model->config;
  auto shard = std::make_shared<LoadedModel>();
  shard->whole = model;
  shard->format = model->format;
  shard->path = model->path;
  shard->tokenizer_path = model->tokenizer_path;
  shard->chat_template = model->chat_template;
  shard->random_on_device = model->random_on_device;
  shard->random_seed = model->random_seed;
  ModelConfig& sc = shard->config;
  sc = c;
  sc.n_heads = layout.heads_per_rank;
  sc.n_kv_heads = layout.kv_heads_per_rank;
  const int64_t f0 = layout.ffn_begin[static_cast<size_t>(rank)];
  sc.ffn_hidden = static_cast<int32_t>(layout.ffn_begin[static_cast<size_t>(rank) + 1] - f0);
  const int64_t hd = c.head_dim;
  const int64_t q0 = layout.first_head(rank) * hd, qn = int64_t{layout.heads_per_rank} * hd;
  const int64_t k0 = layout.first_kv_head(rank) * hd, kn = int64_t{layout.kv_heads_per_rank} * hd;
  const ModelWeights& w = model->weights;
  ModelWeights& sw = shard->weights;
  sw.tok_embd = w.tok_embd;
  sw.out_norm = w.out_norm;
  sw.output = w.output;
  sw.layers.reserve(w.layers.size());
  for (const LayerWeights& L : w.layers) {
    LayerWeights s;
    s.attn_norm = L.attn_norm;
    s.ffn_norm = L.ffn_norm;
    s.wq = rows_of(L.wq, q0, qn);
    s.wk = rows_of(L.wk, k0, kn);
    s.wv = rows_of(L.wv, k0, kn);
    if (!L.bq.empty()) s.bq = column_slice(*shard, L.bq, q0, qn);
    if (!L.bk.empty()) s.bk = column_slice(*shard, L.bk, k0, kn);
    if (!L.bv.empty()) s.bv = column_slice(*shard, L.bv, k0, kn);
    s.wo = column_slice(*shard, L.wo, q0, qn);
    s.w_gate = rows_of(L.w_gate, f0, sc.ffn_hidden);
    s.w_up = rows_of(L.w_up, f0, sc.ffn_hidden);
    s.w_down = column_slice(*shard, L.w_down, f0, sc.ffn_hidden);
    sw.layers.push_back(s);
  }
  return shard;
}

namespace {

class HostCollective final : public Collective {
 public:
  explicit HostCollective(ThreadPool& threads) : threads_(threads) {}
  std::string name() const override { return "host all-reduce"; }
  void all_reduce_sum(std::span<const PartBuffer> parts) override {
    if (parts.empty()) return;
    const int64_t count = parts[0].count;
    std::vector<float*> p;
    for (const PartBuffer& b : parts) {
      if (b.on_device || b.element_bytes != 4)
        throw Error(ErrorCode::Internal, "the host all-reduce sums fp32 parts in host memory only");
      if (b.count != count) throw Error(ErrorCode::Internal, "all-reduce: the ranks' parts differ in size");
      p.push_back(static_cast<float*>(b.data));
    }
    threads_.parallel_for(count, [&](int64_t begin, int64_t end, int) {
      for (int64_t i = begin; i < end; ++i) {
        float s = p[0][i];
        for (size_t r = 1; r < p.size(); ++r) s += p[r][i];
        for (float* part : p) part[i] = s;
      }
    });
  }

 private:
  ThreadPool& threads_;
};

// One KV cache per rank, each with the rank's KV heads.
class TpKvCache final : public KvCache {
 public:
  explicit TpKvCache(std::vector<std::unique_ptr<KvCache>> ranks) : ranks_(std::move(ranks)) {}
  int64_t capacity() const override { return ranks_[0]->capacity(); }
  size_t bytes() const override {
    size_t b = 0;
    for (const auto& r : ranks_) b += r->bytes();
    return b;
  }
  KvCache& rank(size_t r) { return *ranks_[r]; }

 private:
  std::vector<std::unique_ptr<KvCache>> ranks_;
};

class TensorParallelBackend final : public Backend {
 public:
  TensorParallelBackend(std::shared_ptr<const LoadedModel> model, const TensorParallelLayout& layout,
                        std::vector<std::unique_ptr<Backend>> ranks, std::unique_ptr<Collective> collective)
      : model_(std::move(model)), layout_(layout), ranks_(std::move(ranks)), threads_(static_cast<int>(ranks_.size())),
        collective_(collective ? std::move(collective) : make_host_collective(threads_)) {
    if (ranks_.size() != static_cast<size_t>(layout_.ranks) || ranks_.empty())
      throw Error(ErrorCode::Internal, "tensor parallel: the layout's rank count differs from the backends given");
    parts_.resize(ranks_.size());
  }

  // The ranks' queues drained before the collective (NCCL's communicators) goes: a step cut short by
  // an error may still have work queued that uses them.
  ~TensorParallelBackend() override {
    for (auto& r : ranks_) {
      try {
        r->finish_step();
      } catch (...) {
      }
    }
  }

  BackendKind kind() const override { return ranks_[0]->kind(); }
  std::string name() const override {
    return "tensor parallel over " + std::to_string(ranks_.size()) + " ranks of " + ranks_[0]->name() + ", " +
           collective_->name();
  }
  const ModelConfig& config() const override { return model_->config; }
  int64_t max_step() const override {
    int64_t m = ranks_[0]->max_step();
    for (const auto& r : ranks_) m = std::min(m, r->max_step());
    return m;
  }
  int64_t preferred_chunk() const override { return ranks_[0]->preferred_chunk(); }
  int64_t sparse_gain_keys() const override {
    int64_t k = 0;
    for (const auto& r : ranks_) k = std::max(k, r->sparse_gain_keys());
    return k;
  }

  std::unique_ptr<KvCache> create_kv_cache(int64_t capacity_tokens) override {
    std::vector<std::unique_ptr<KvCache>> caches;
    for (const auto& r : ranks_) caches.push_back(r->create_kv_cache(capacity_tokens));
    return std::make_unique<TpKvCache>(std::move(caches));
  }

  // Each rank's memory; ranks that share a device are named by rank.
  std::vector<DeviceMemory> memory() const override {
    std::vector<DeviceMemory> out;
    const std::map<std::string, int> sharing = ranks_per_device();
    for (size_t r = 0; r < ranks_.size(); ++r)
      for (DeviceMemory m : ranks_[r]->memory()) {
        if (sharing.at(m.device) > 1) m.device += " rank " + std::to_string(r);
        out.push_back(m);
      }
    return out;
  }

  // The smallest over the ranks; ranks sharing a device (CPU ranks share the host's memory) share
  // what that device holds.
  int64_t largest_context() const override {
    const std::map<std::string, int> sharing = ranks_per_device();
    int64_t best = 0;
    for (const auto& r : ranks_) {
      const int64_t fits = r->largest_context();
      if (fits <= 0) return 0;
      const int64_t share = fits / sharing.at(r->memory().at(0).device) / 256 * 256;
      best = best == 0 ? share : std::min(best, share);
    }
    return std::max<int64_t>(best, 256);
  }
  std::string kv_type() const override { return ranks_[0]->kv_type(); }

  void embed(std::span<const int32_t> tokens) override {
    on_ranks([&](size_t, Backend& b) { b.embed(tokens); });
  }
  void norm(Norm which, int layer, int64_t n) override {
    on_ranks([&](size_t, Backend& b) { b.norm(which, layer, n); });
  }
  void project(Proj which, int layer, int64_t n) override {
    if (which == Proj::Qkv || which == Proj::GateUp) {
      on_ranks([&](size_t, Backend& b) { b.project(which, layer, n); });
      return;
    }
    on_ranks([&](size_t r, Backend& b) {
      b.project_part(which, layer, n);
      parts_[r] = b.part_buffer(n);
    });
    collective_->all_reduce_sum(parts_);
    on_ranks([&](size_t, Backend& b) { b.add_part(n); });
  }
  void rope_kv_write(int layer, KvCache& kv, int64_t n, int64_t pos, const RopeTable& rope) override {
    auto& tp = cache(kv);
    on_ranks([&](size_t r, Backend& b) { b.rope_kv_write(layer, tp.rank(r), n, pos, rope); });
  }
  SparseSupport sparse_support(const sparse::SparseConfig& config, int64_t keys) const override {
    SparseSupport all;
    for (size_t r = 0; r < ranks_.size(); ++r) {
      const SparseSupport s = ranks_[r]->sparse_support(rank_config(config, r), keys);
      all.ok = all.ok && s.ok;
      if (all.note.empty()) all.note = s.note;
    }
    return all;
  }
  void estimate(int layer, KvCache& kv, int64_t n, int64_t pos,
                const std::shared_ptr<const sparse::SparseConfig>& config) override {
    if (config != sparse_whole_) {  // each rank's heads' budgets, made once per config
      sparse_whole_ = config;
      sparse_ranks_.clear();
      for (size_t r = 0; r < ranks_.size(); ++r)
        sparse_ranks_.push_back(std::make_shared<const sparse::SparseConfig>(rank_config(*config, r)));
    }
    auto& tp = cache(kv);
    on_ranks([&](size_t r, Backend& b) { b.estimate(layer, tp.rank(r), n, pos, sparse_ranks_[r]); });
  }
  void attention(int layer, KvCache& kv, int64_t n, int64_t pos, bool listed) override {
    auto& tp = cache(kv);
    on_ranks([&](size_t r, Backend& b) { b.attention(layer, tp.rank(r), n, pos, listed); });
  }
  void swiglu(int64_t n) override {
    on_ranks([&](size_t, Backend& b) { b.swiglu(n); });
  }
  // Every rank holds the same x: rank 0 computes the logits.
  void logits(int64_t first_row, int64_t rows, float* out) override { ranks_[0]->logits(first_row, rows, out); }
  void finish_step() override {
    for (auto& r : ranks_) r->finish_step();
  }

  // [layer][head] over the whole model's heads, from each rank's [layer][its heads].
  void plan_results(std::vector<HeadPlanResult>& out) override {
    const ModelConfig& c = model_->config;
    out.assign(static_cast<size_t>(c.n_layers) * static_cast<size_t>(c.n_heads), HeadPlanResult{});
    std::vector<HeadPlanResult> part;
    const size_t hpr = static_cast<size_t>(layout_.heads_per_rank);
    for (size_t r = 0; r < ranks_.size(); ++r) {
      ranks_[r]->plan_results(part);
      if (part.size() != static_cast<size_t>(c.n_layers) * hpr) continue;  // no sparse step ran
      for (size_t l = 0; l < static_cast<size_t>(c.n_layers); ++l)
        std::copy_n(part.begin() + static_cast<std::ptrdiff_t>(l * hpr), hpr,
                    out.begin() + static_cast<std::ptrdiff_t>(l * static_cast<size_t>(c.n_heads) + r * hpr));
    }
  }
  void mark(int slot) override { ranks_[0]->mark(slot); }
  double elapsed_ms(int from_slot, int to_slot) override { return ranks_[0]->elapsed_ms(from_slot, to_slot); }

  // The whole layer's queries ([n][heads * hd], each rank's heads side by side) and keys (each KV
  // head once, from the rank that owns it).
  void read_attention_inputs(int layer, KvCache& kv, int64_t n, int64_t pos, AttentionInputs& out) override {
    auto& tp = cache(kv);
    const ModelConfig& c = model_->config;
    const size_t hd = static_cast<size_t>(c.head_dim), keys = static_cast<size_t>(pos + n);
    out.n = n;
    out.pos = pos;
    out.q.assign(static_cast<size_t>(n) * static_cast<size_t>(c.q_dim()), 0.0f);
    out.k.assign(static_cast<size_t>(c.n_kv_heads) * keys * hd, 0.0f);
    AttentionInputs part;
    const size_t qn = static_cast<size_t>(layout_.heads_per_rank) * hd;
    for (size_t r = 0; r < ranks_.size(); ++r) {
      ranks_[r]->read_attention_inputs(layer, tp.rank(r), n, pos, part);
      for (size_t t = 0; t < static_cast<size_t>(n); ++t)
        std::copy_n(part.q.begin() + static_cast<std::ptrdiff_t>(t * qn), qn,
                    out.q.begin() + static_cast<std::ptrdiff_t>(t * static_cast<size_t>(c.q_dim()) + r * qn));
      if (layout_.owns_kv(static_cast<int>(r)))
        std::copy(part.k.begin(), part.k.end(),
                  out.k.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(layout_.first_kv_head(static_cast<int>(r))) *
                                                               keys * hd));
    }
  }

  // The file's layout is the whole model's, [KV head][rows][hd]: each rank reads or writes its KV
  // heads' span of it (saving: one copy of each head; restoring: into every rank that holds it).
  int kv_element_bytes() const override {
    const int b = ranks_[0]->kv_element_bytes();
    for (const auto& r : ranks_)
      if (r->kv_element_bytes() != b) return 0;
    return b;
  }
  std::unique_ptr<HostBuffer> host_buffer(size_t bytes) override { return ranks_[0]->host_buffer(bytes); }
  void copy_kv(KvCache& kv, int layer, int tensor, int64_t n, int64_t rows, void* host, bool into_cache,
               int slot) override {
    auto& tp = cache(kv);
    const size_t head_bytes = static_cast<size_t>(rows) * static_cast<size_t>(model_->config.head_dim) *
                              static_cast<size_t>(kv_element_bytes());
    for (size_t r = 0; r < ranks_.size(); ++r) {
      if (!into_cache && !layout_.owns_kv(static_cast<int>(r))) continue;
      auto* at = static_cast<uint8_t*>(host) + static_cast<size_t>(layout_.first_kv_head(static_cast<int>(r))) * head_bytes;
      ranks_[r]->copy_kv(tp.rank(r), layer, tensor, n, rows, at, into_cache, slot);
    }
  }
  void wait_kv(int slot) override {
    for (auto& r : ranks_) r->wait_kv(slot);
  }

 private:
  static TpKvCache& cache(KvCache& kv) {
    auto* tp = dynamic_cast<TpKvCache*>(&kv);
    if (tp == nullptr) throw Error(ErrorCode::Internal, "a KV cache of another backend was given to tensor parallel");
    return *tp;
  }

  // Runs fn(rank, backend) on every rank at once, one host thread each; rethrows the first error.
  template <class Fn>
  void on_ranks(const Fn& fn) {
    std::vector<std::exception_ptr> errors(ranks_.size());
    threads_.parallel_for(static_cast<int64_t>(ranks_.size()), [&](int64_t begin, int64_t end, int) {
      for (int64_t r = begin; r < end; ++r) {
        try {
          fn(static_cast<size_t>(r), *ranks_[static_cast<size_t>(r)]);
        } catch (...) {
          errors[static_cast<size_t>(r)] = std::current_exception();
        }
      }
    });
    for (const auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

  std::map<std::string, int> ranks_per_device() const {
    std::map<std::string, int> n;
    for (const auto& r : ranks_) ++n[r->memory().at(0).device];
    return n;
  }

  // The budgets of rank r's heads (the whole model's config lists every head of a layer).
  sparse::SparseConfig rank_config(const sparse::SparseConfig& whole, size_t r) const {
    sparse::SparseConfig s = whole;
    const auto first = static_cast<std::ptrdiff_t>(layout_.first_head(static_cast<int>(r)));
    for (auto& heads : s.layers) {
      if (heads.empty()) continue;
      std::vector<sparse::HeadBudget> mine;
      for (std::ptrdiff_t h = first; h < first + layout_.heads_per_rank; ++h)
        mine.push_back(h < static_cast<std::ptrdiff_t>(heads.size()) ? heads[static_cast<size_t>(h)] : whole.default_head);
      heads = std::move(mine);
    }
    return s;
  }

  std::shared_ptr<const LoadedModel> model_;
  TensorParallelLayout layout_;
  std::vector<std::unique_ptr<Backend>> ranks_;
  ThreadPool threads_;
  std::unique_ptr<Collective> collective_;
  std::vector<PartBuffer> parts_;
  std::shared_ptr<const sparse::SparseConfig> sparse_whole_;
  std::vector<std::shared_ptr<const sparse::SparseConfig>> sparse_ranks_;
};

}  // namespace

std::unique_ptr<Collective> make_host_collective(ThreadPool& threads) {
  return std::make_unique<HostCollective>(threads);
}

std::unique_ptr<Backend> create_tensor_parallel_backend(std::shared_ptr<const LoadedModel> model,
                                                        const TensorParallelLayout& layout,
                                                        std::vector<std::unique_ptr<Backend>> ranks,
                                                        std::unique_ptr<Collective> collective) {
  return std::make_unique<TensorParallelBackend>(std::move(model), layout, std::move(ranks), std::move(collective));
}

std::unique_ptr<Backend> create_cpu_tensor_parallel_backend(std::shared_ptr<const LoadedModel> model, int ranks,
                                                            int threads, KvQuant kv_quant) {
  const TensorParallelLayout layout = plan_tensor_parallel(*model, ranks);
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<Backend>> backends;
  for (int r = 0; r < ranks; ++r)
    backends.push_back(create_cpu_backend(shard_model(model, layout, r), std::max(1, threads / ranks), kv_quant));
  return create_tensor_parallel_backend(std::move(model), layout, std::move(backends), nullptr);
}

}  // namespace folio
