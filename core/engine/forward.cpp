#include "core/engine/forward.h"

#include <algorithm>
#include <limits>

#include "core/common/error.h"

namespace folio {

void AttentionStats::add_plan(int layer, int head, int n_layers, int n_heads, int64_t computed, int64_t causal,
                              double est_mass, bool mass_reached) {
  if (head_computed.size() != static_cast<size_t>(n_layers)) {
    head_computed.assign(static_cast<size_t>(n_layers), std::vector<int64_t>(static_cast<size_t>(n_heads), 0));
    head_causal.assign(static_cast<size_t>(n_layers), std::vector<int64_t>(static_cast<size_t>(n_heads), 0));
  }
  tiles_computed += computed;
  tiles_causal += causal;
  head_computed[static_cast<size_t>(layer)][static_cast<size_t>(head)] += computed;
  head_causal[static_cast<size_t>(layer)][static_cast<size_t>(head)] += causal;
  est_mass_sum += est_mass;
  ++head_plans;
  if (!mass_reached) ++heads_short_of_mass;
}

int64_t auto_sparse_keys(const AttentionPolicy& policy, const Backend& backend) {
  if (!policy.config) return std::numeric_limits<int64_t>::max();
  if (const sparse::MeasuredCrossover* m = policy.config->measured_crossover(backend_key(backend.kind())))
    return m->tokens > 0 ? m->tokens : std::numeric_limits<int64_t>::max();
  return std::max(policy.config->crossover_tokens, backend.sparse_gain_keys());
}

bool use_sparse(const AttentionPolicy& policy, const Backend& backend, int64_t n, int64_t pos) {
  if (n <= 1 || !policy.config) return false;  // decode stays dense
  switch (policy.mode) {
    case sparse::AttentionMode::Sparse: return true;
    case sparse::AttentionMode::Auto: return pos + n >= auto_sparse_keys(policy, backend);
    case sparse::AttentionMode::Dense: return false;
  }
  return false;
}

namespace {

// Time marks per layer of a sparse step: estimation start, estimation end, attention end.
constexpr int kMarksPerLayer = 3;

// Whether this step runs sparse: the policy asks for it and the backend can (else a note says why).
bool sparse_step(Backend& backend, const AttentionPolicy& policy, AttentionStats& stats, int64_t n, int64_t pos) {
  if (policy.mode == sparse::AttentionMode::Auto && n > 1 && policy.config &&
      pos + n >= policy.config->crossover_tokens && pos + n < auto_sparse_keys(policy, backend)) {
    const sparse::MeasuredCrossover* m = policy.config->measured_crossover(backend_key(backend.kind()));
    std::string why = "its sparse path measured no gain at this length";
    if (m && m->tokens > 0)
      why = "sparse measured faster only from " + std::to_string(m->tokens) + " tokens on " + m->device;
    else if (m)
      why = "sparse measured no faster up to " + std::to_string(m->up_to) + " tokens on " + m->device;
    stats.note = "auto attention runs dense on " + std::string(backend_kind_name(backend.kind())) + " here: " + why +
                 "; --attention sparse forces it";
  }
  if (!use_sparse(policy, backend, n, pos)) return false;
  const SparseSupport s = backend.sparse_support(*policy.config, pos + n);
  if (!s.note.empty()) stats.note = s.note;
  return s.ok;
}

}  // namespace

void forward(Backend& backend, KvCache& kv, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
             const AttentionPolicy& policy, AttentionStats& stats, ForwardObserver* observer, float* last_logits) {
  const ModelConfig& c = backend.config();
  const int64_t n_total = static_cast<int64_t>(tokens.size());
  if (n_total == 0) return;
  check_forward_args(c, kv, tokens, pos);
  const bool want_inputs = observer != nullptr && observer->wants_attention_inputs();
  const bool all_logits = observer != nullptr && observer->wants_all_logits();
  const int64_t step = backend.max_step();
  const size_t vocab = static_cast<size_t>(c.vocab_size);
  std::vector<float> step_logits;
  AttentionInputs inputs;
  std::vector<HeadPlanResult> plans;
  using P = Backend::Proj;
  for (int64_t done = 0; done < n_total; done += step) {
    const int64_t n = std::min(step, n_total - done);
    const int64_t p0 = pos + done;
    const bool sparse = sparse_step(backend, policy, stats, n, p0);
    if (n > 1) ++(sparse ? stats.sparse_chunks : stats.dense_chunks);
    auto issue = [&] {
      backend.embed(tokens.subspan(static_cast<size_t>(done), static_cast<size_t>(n)));
      for (int l = 0; l < c.n_layers; ++l) {
        backend.norm(Backend::Norm::Attention, l, n);
        backend.project(P::Qkv, l, n);
        backend.rope_kv_write(l, kv, n, p0, rope);
        if (want_inputs && n > 1) {
          backend.read_attention_inputs(l, kv, n, p0, inputs);
          observer->on_attention_inputs(l, inputs);
        }
        if (sparse) {
          backend.mark(kMarksPerLayer * l);
          backend.estimate(l, kv, n, p0, policy.config);
          backend.mark(kMarksPerLayer * l + 1);
        }
        backend.attention(l, kv, n, p0, sparse);
        if (sparse) backend.mark(kMarksPerLayer * l + 2);
        backend.project(P::Out, l, n);
        backend.norm(Backend::Norm::Ffn, l, n);
        backend.project(P::GateUp, l, n);
        backend.swiglu(n);
        backend.project(P::Down, l, n);
      }
      if (all_logits) {
        step_logits.resize(static_cast<size_t>(n) * vocab);
        backend.logits(0, n, step_logits.data());
      } else if (last_logits != nullptr && done + n == n_total) {
        backend.logits(n - 1, 1, last_logits);
      }
    };
    // a decode step (one token, its last logits, nothing looked at inside) may be a recording
    const bool recordable = n_total == 1 && !sparse && !want_inputs && !all_logits && last_logits != nullptr;
    if (!recordable || !backend.recorded_step(kv, tokens[0], p0, rope, last_logits, issue)) issue();
    backend.finish_step();
    StepInfo info{p0, n, sparse, 0.0, 0.0};
    if (sparse) {
      backend.plan_results(plans);
      const int64_t causal = sparse::causal_tiles(n, p0);
      for (int l = 0; l < c.n_layers; ++l) {
        info.estimate_ms += backend.elapsed_ms(kMarksPerLayer * l, kMarksPerLayer * l + 1);
        info.sparse_attention_ms += backend.elapsed_ms(kMarksPerLayer * l + 1, kMarksPerLayer * l + 2);
        for (int h = 0; h < c.n_heads; ++h) {
          const HeadPlanResult& r = plans[static_cast<size_t>(l) * static_cast<size_t>(c.n_heads) + static_cast<size_t>(h)];
          stats.add_plan(l, h, c.n_layers, c.n_heads, r.computed, causal, r.est_mass, r.mass_reached);
        }
      }
      stats.estimate_ms += info.estimate_ms;
      stats.sparse_attention_ms += info.sparse_attention_ms;
    }
    if (all_logits) {
      observer->on_logits(p0, n, step_logits.data());
      if (last_logits != nullptr && done + n == n_total)
        std::copy_n(step_logits.data() + static_cast<size_t>(n - 1) * vocab, vocab, last_logits);
    }
    if (observer != nullptr) observer->on_step(info);
  }
}

}  // namespace folio
