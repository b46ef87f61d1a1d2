#include "core/engine/metrics_json.h"

#include <nlohmann/json.hpp>

namespace folio {

std::string metrics_to_json(const Metrics& m, int indent) {
  nlohmann::json j;
  j["backend"] = m.backend;
  j["prompt_tokens"] = m.prompt_tokens;
  j["reused_tokens"] = m.reused_tokens;
  j["prefill_tokens"] = m.prefill_tokens;
  j["prefill_chunk"] = m.prefill_chunk;
  j["prefill_ms"] = m.prefill_ms;
  j["prefill_tok_s"] = m.prefill_tok_s;
  j["ttft_ms"] = m.ttft_ms;
  j["decode_tokens"] = m.decode_tokens;
  j["decode_ms"] = m.decode_ms;
  j["decode_tok_s"] = m.decode_tok_s;
  j["total_ms"] = m.total_ms;
  j["stop_reason"] = stop_reason_name(m.stop);
  j["attention"] = {{"mode", m.attention_mode},
                    {"sparse_chunks", m.sparse_chunks},
                    {"dense_chunks", m.dense_chunks},
                    {"density", m.attention_density},
                    {"est_mass_mean", m.est_mass_mean},
                    {"heads_short_of_mass", m.heads_short_of_mass},
                    {"estimate_ms", m.estimate_ms},
                    {"sparse_attention_ms", m.sparse_attention_ms},
                    {"head_density", m.head_density},
                    {"note", m.attention_note}};
  nlohmann::json mem = nlohmann::json::array();
  for (const auto& d : m.memory) {
    mem.push_back({{"device", d.device},
                   {"weights_bytes", d.weights_bytes},
                   {"kv_cache_bytes", d.kv_bytes},
                   {"scratch_bytes", d.scratch_bytes},
                   {"total_bytes", d.total_bytes},
                   {"free_bytes", d.free_bytes}});
  }
  j["memory"] = mem;
  return j.dump(indent);
}

}  // namespace folio
