// The one backend interface. A backend owns the weights in its own memory (or uses them in place),
// keeps KV caches, and runs the forward pass over a chunk of tokens. The CPU backend (core/cpu) is
// the reference; the CUDA backend (kernels/) implements the same interface.
#pragma once

#include <cstddef>
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/attention/sparse.h"
#include "core/model/model_config.h"
#include "core/model/model_weights.h"

namespace folio {

enum class BackendKind { Cpu, Cuda };

// Memory a backend holds, by category, on one device.
struct DeviceMemory {
  std::string device;          // "cpu", "cuda:0" ...
  size_t weights_bytes = 0;    // weights as the backend holds them (mapped files count for the CPU)
  size_t kv_bytes = 0;         // all live KV caches
  size_t scratch_bytes = 0;    // activations and workspaces
  size_t total_bytes = 0;      // device capacity (0 = unknown)
  size_t free_bytes = 0;       // free as the device reports it (0 = unknown)
};

// How a session's prefill attends: dense, sparse, or sparse from a crossover length (auto), with
// each head's pattern and budget from `config` (never null when mode is not Dense).
struct AttentionPolicy {
  sparse::AttentionMode mode = sparse::AttentionMode::Dense;
  std::shared_ptr<const sparse::SparseConfig> config;
  // Offline pattern search (folio-sparse search): attention stays dense; for every head and
  // chunk, each pattern kind is estimated at the same tile budget (search_density of the causal
  // tiles) and scored by the exact attention mass it keeps (on every search_row_step-th row).
  bool search = false;
  double search_density = 0.2;
  int64_t search_row_step = 8;
};

// What sparse prefill did, summed over the chunks of the forward calls since the last reset.
struct AttentionStats {
  int64_t sparse_chunks = 0, dense_chunks = 0;
  int64_t tiles_computed = 0, tiles_causal = 0;  // over layers, heads and sparse chunks
  int64_t heads_short_of_mass = 0;               // head plans that missed their mass target
  int64_t head_plans = 0;
  double est_mass_sum = 0.0;                     // over head plans
  double estimate_ms = 0.0;                      // time spent estimating and building tile lists
  double sparse_attention_ms = 0.0;              // time in attention of sparse chunks
  // per layer and head: tiles computed / causal tiles, over the sparse chunks
  std::vector<std::vector<int64_t>> head_computed, head_causal;
  std::string note;                              // e.g. why sparse was not used
  // search: [layer][head][pattern] summed exact mass kept and tiles computed / causal
  std::vector<std::vector<std::array<double, 3>>> search_mass, search_density;
  int64_t search_chunks = 0;
  void reset() { *this = AttentionStats{}; }
  // Counts one head's plan for one sparse chunk (every backend reports through this).
  void add_plan(int layer, int head, int n_layers, int n_heads, int64_t computed, int64_t causal, double est_mass,
                bool mass_reached);
  double density() const { return tiles_causal > 0 ? double(tiles_computed) / double(tiles_causal) : 1.0; }
};

// A backend's KV cache for one session: keys and values of positions [0, capacity).
class KvCache {
 public:
  virtual ~KvCache() = default;
  virtual int64_t capacity() const = 0;
  virtual size_t bytes() const = 0;
  AttentionPolicy policy;  // set by the session
  AttentionStats stats;    // filled by forward()
};

// True when a prefill chunk of n tokens at pos should use sparse attention under `policy`.
inline bool use_sparse(const AttentionPolicy& policy, int64_t n, int64_t pos) {
  if (n <= 1 || !policy.config) return false;  // decode stays dense
  switch (policy.mode) {
    case sparse::AttentionMode::Sparse: return true;
    case sparse::AttentionMode::Auto: return pos + n >= policy.config->crossover_tokens;
    case sparse::AttentionMode::Dense: return false;
  }
  return false;
}

// Throws Error when tokens at positions [pos, pos + tokens.size()) do not fit `kv` or a token id
// is outside the vocabulary; every backend's forward() starts with it.
void check_forward_args(const ModelConfig& c, const KvCache& kv, std::span<const int32_t> tokens, int64_t pos);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  virtual std::string name() const = 0;
  virtual const ModelConfig& config() const = 0;

  virtual std::unique_ptr<KvCache> create_kv_cache(int64_t capacity_tokens) = 0;

  // Runs tokens at positions [pos, pos + tokens.size()) through every layer, writing their keys
  // and values into `kv`. If `logits` is non-null it receives the last token's logits
  // (vocab_size floats). Throws Error on bad arguments (positions past the cache).
  virtual void forward(KvCache& kv, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
                       float* logits) = 0;

  // Logits of every position of the chunk ([tokens.size()][vocab_size] floats), for reference
  // comparisons (tests, tools). The default runs one token at a time.
  virtual void forward_all_logits(KvCache& kv, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
                                  float* logits);

  // The prefill chunk this backend runs best with (the session default when none is asked for).
  virtual int64_t preferred_chunk() const { return 512; }

  virtual std::vector<DeviceMemory> memory() const = 0;
};

// threads <= 0: all hardware threads.
std::unique_ptr<Backend> create_cpu_backend(std::shared_ptr<const LoadedModel> model, int threads);

}  // namespace folio
