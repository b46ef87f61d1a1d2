// The forward pass: the layer loop of every supported architecture (the Llama family: Llama 2/3,
// Mistral, Qwen2 with q/k/v bias, Phi-3 with fused weights and LongRoPE, SmolLM2), the attention
// policy per step (dense, sparse, or auto from a crossover), estimation, stats and timing, written
// once over the op-level Backend interface. A Session owns the policy and the stats; tools look
// inside a run through a ForwardObserver attached to the session.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/attention/sparse.h"
#include "core/engine/backend.h"

namespace folio {

// How a session's prefill attends: dense, sparse, or sparse from a crossover length (auto), with
// each head's pattern and budget from `config` (never null when mode is not Dense).
struct AttentionPolicy {
  sparse::AttentionMode mode = sparse::AttentionMode::Dense;
  std::shared_ptr<const sparse::SparseConfig> config;
};

// The keys from which auto attention runs sparse on `backend`: the crossover measured on this
// backend where the config holds one (folio-sparse crossover; never if sparse measured no gain),
// else the config's crossover, or later where the backend's sparse path does not pay yet. The
// same rule on every backend.
int64_t auto_sparse_keys(const AttentionPolicy& policy, const Backend& backend);

// True when a step of n tokens at pos runs sparse attention under `policy` on `backend`.
bool use_sparse(const AttentionPolicy& policy, const Backend& backend, int64_t n, int64_t pos);

// What sparse prefill did, summed over the steps since the last reset.
struct AttentionStats {
  int64_t sparse_chunks = 0, dense_chunks = 0;
  int64_t tiles_computed = 0, tiles_causal = 0;  // over layers, heads and sparse steps
  int64_t heads_short_of_mass = 0;               // head plans that missed their mass target
  int64_t head_plans = 0;
  double est_mass_sum = 0.0;                     // over head plans
  double estimate_ms = 0.0;                      // time spent estimating and building tile lists
  double sparse_attention_ms = 0.0;              // time in attention of sparse steps
  // per layer and head: tiles computed / causal tiles, over the sparse steps
  std::vector<std::vector<int64_t>> head_computed, head_causal;
  std::string note;                              // e.g. why sparse was not used
  void reset() { *this = AttentionStats{}; }
  // Counts one head's plan for one sparse step.
  void add_plan(int layer, int head, int n_layers, int n_heads, int64_t computed, int64_t causal, double est_mass,
                bool mass_reached);
  double density() const { return tiles_causal > 0 ? double(tiles_computed) / double(tiles_causal) : 1.0; }
};

// One step of the forward pass, as an observer sees it.
struct StepInfo {
  int64_t pos = 0, n = 0;
  bool sparse = false;
  double estimate_ms = 0.0, sparse_attention_ms = 0.0;  // this step's (sparse steps only)
};

// Looks inside a run (llama.cpp's eval callback is the model): the offline pattern search, logits
// dumps, per-step timing. Attach with Session::set_observer; calls come on the session's thread.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // Each layer's queries and keys of steps of more than one token, after RoPE (costs a copy).
  virtual bool wants_attention_inputs() const { return false; }
  virtual void on_attention_inputs(int /*layer*/, const AttentionInputs& /*inputs*/) {}
  // The logits of every position ([rows][vocab], rows at positions [pos, pos + rows)).
  virtual bool wants_all_logits() const { return false; }
  virtual void on_logits(int64_t /*pos*/, int64_t /*rows*/, const float* /*logits*/) {}
  virtual void on_step(const StepInfo& /*step*/) {}
};

// Runs tokens at positions [pos, pos + tokens.size()) through every layer in steps of at most
// backend.max_step() tokens, writing their keys and values into `kv`. `last_logits` (vocab floats)
// receives the last token's logits when non-null. Throws Error on bad arguments.
void forward(Backend& backend, KvCache& kv, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
             const AttentionPolicy& policy, AttentionStats& stats, ForwardObserver* observer, float* last_logits);

}  // namespace folio
