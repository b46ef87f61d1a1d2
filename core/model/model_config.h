// The shape and numerics of a Llama-family model, filled from HF config.json, a llama2.c header
// or (later) GGUF metadata. Everything the backends need to run the forward pass is here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace folio {

enum class Architecture { Llama, Qwen2, Phi3 };
const char* architecture_name(Architecture arch);

// How the two halves of a rotated pair are laid out inside a head.
enum class RopeLayout {
  RotateHalf,     // HF transformers: pairs (i, i + head_dim/2)
  AdjacentPairs,  // GGUF / llama2.c: pairs (2i, 2i+1)
};

enum class RopeScaling { None, Linear, Llama3, LongRope, Yarn };
const char* rope_scaling_name(RopeScaling s);

struct RopeConfig {
  RopeLayout layout = RopeLayout::RotateHalf;
  RopeScaling scaling = RopeScaling::None;
  double theta = 10000.0;
  int rotary_dim = 0;  // dims of each head that rotate (head_dim unless partial rotary)
  double factor = 1.0;
  int64_t original_context = 0;  // original_max_position_embeddings
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // longrope (Phi-3): per-pair factors, long ones used when the context exceeds original_context
  std::vector<double> short_factor;
  std::vector<double> long_factor;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool yarn_truncate = true;
  // Multiplies cos and sin (yarn/longrope "attention_factor"); 0 = derive from the scaling.
  double attention_factor = 0.0;
  // Per-pair divisors of the inverse frequencies, applied after the scaling (GGUF's
  // rope_freqs.weight, how llama.cpp stores Llama-3 scaling); empty = none, else rotary_dim/2.
  std::vector<double> freq_factors;
};

struct ModelConfig {
  Architecture arch = Architecture::Llama;
  std::string arch_label;  // e.g. "LlamaForCausalLM", "llama2.c"
  int32_t vocab_size = 0;
  int32_t hidden = 0;       // model width
  int32_t ffn_hidden = 0;   // intermediate size
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  int64_t max_context = 0;  // max_position_embeddings
  float norm_eps = 1e-5f;
  bool tied_embeddings = false;
  bool qkv_bias = false;
  RopeConfig rope;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;

  int32_t q_dim() const { return n_heads * head_dim; }
  int32_t kv_dim() const { return n_kv_heads * head_dim; }
  // K and V bytes one token adds to an fp32 cache over all layers.
  int64_t kv_bytes_per_token(int bytes_per_value) const {
    return int64_t{2} * n_layers * kv_dim() * bytes_per_value;
  }
};

// Reads an HF config.json (text). Throws Error(BadConfig / UnsupportedModel) naming `source`.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& source);

// Checks that the numbers agree with each other (heads divide, dims positive ...).
void validate_config(const ModelConfig& cfg, const std::string& source);

// The per-pair inverse frequencies and the cos/sin multiplier for a session whose context is
// `context_tokens` long (LongRoPE picks its long factors when that exceeds the original context).
struct RopeTable {
  std::vector<float> inv_freq;  // rotary_dim / 2 entries
  float attention_scale = 1.0f;
};
RopeTable make_rope_table(const RopeConfig& rope, int64_t context_tokens);

}  // namespace folio
