#include "core/model/model_config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "core/common/error.h"
#include "core/common/input_limits.h"

namespace folio {

using nlohmann::json;

const char* architecture_name(Architecture arch) {
  switch (arch) {
    case Architecture::Llama: return "llama";
    case Architecture::Qwen2: return "qwen2";
    case Architecture::Phi3: return "phi3";
  }
  return "?";
}

const char* rope_scaling_name(RopeScaling s) {
  switch (s) {
    case RopeScaling::None: return "none";
    case RopeScaling::Linear: return "linear";
    case RopeScaling::Llama3: return "llama3";
    case RopeScaling::LongRope: return "longrope";
    case RopeScaling::Yarn: return "yarn";
  }
  return "?";
}

namespace {

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw Error(ErrorCode::BadConfig, source + ": " + what);
}

// An integer field, checked against the range of the type it is stored in before narrowing (a
// hidden_size of 4294967360 is an error, not 64).
int64_t checked_int(const json& v, const char* key, int64_t min, int64_t max, const std::string& source) {
  if (!v.is_number_integer()) bad(source, std::string("field \"") + key + "\" is not an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    bad(source, std::string("field \"") + key + "\" is " + std::to_string(v.get<uint64_t>()) + ", more than " +
                    std::to_string(max) + "; the file is damaged");
  const int64_t x = v.get<int64_t>();
  if (x < min || x > max)
    bad(source, std::string("field \"") + key + "\" is " + std::to_string(x) + ", outside " + std::to_string(min) +
                    ".." + std::to_string(max) + " (what Folio stores it in); the file is damaged");
  return x;
}

int64_t get_int(const json& j, const char* key, const std::string& source, int64_t min = INT32_MIN,
                int64_t max = INT32_MAX) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) bad(source, std::string("missing field \"") + key + "\"");
  return checked_int(*it, key, min, max, source);
}

int64_t get_int_or(const json& j, const char* key, int64_t fallback, const std::string& source, int64_t min = INT32_MIN,
                   int64_t max = INT32_MAX) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return checked_int(*it, key, min, max, source);
}

double get_num_or(const json& j, const char* key, double fallback, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) bad(source, std::string("field \"") + key + "\" is not a number");
  return it->get<double>();
}

bool get_bool_or(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_boolean()) return fallback;
  return it->get<bool>();
}

std::vector<double> get_factors(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) bad(source, std::string("longrope needs the list \"") + key + "\"");
  std::vector<double> out;
  for (const auto& v : *it) {
    if (!v.is_number()) bad(source, std::string("\"") + key + "\" holds a value that is not a number");
    out.push_back(v.get<double>());
  }
  return out;
}

Architecture detect_architecture(const json& j, std::string* label, const std::string& source) {
  std::string name;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    name = (*it)[0].get<std::string>();
  std::string type;
  if (auto it = j.find("model_type"); it != j.end() && it->is_string()) type = it->get<std::string>();
  *label = name.empty() ? type : name;
  if (name == "LlamaForCausalLM" || name == "MistralForCausalLM" || type == "llama" || type == "mistral")
    return Architecture::Llama;
  if (name == "Qwen2ForCausalLM" || type == "qwen2") return Architecture::Qwen2;
  if (name == "Phi3ForCausalLM" || type == "phi3") return Architecture::Phi3;
  if (label->empty()) bad(source, "no \"architectures\" or \"model_type\" field: is this a model's config.json?");
  throw Error(ErrorCode::UnsupportedModel,
              source + ": unsupported architecture \"" + printable_name(*label) +
                  "\"; Folio runs Llama, Mistral, SmolLM2, Qwen2/2.5 and Phi-3/3.5 models");
}

void parse_rope(const json& j, ModelConfig& cfg, const std::string& source) {
  RopeConfig& r = cfg.rope;
  r.layout = RopeLayout::RotateHalf;  // HF checkpoints
  // transformers 5 writes "rope_parameters" (with rope_theta inside); older files "rope_scaling"
  // next to a top-level "rope_theta".
  const json* params = nullptr;
  if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) params = &*it;
  if (auto it = j.find("rope_scaling"); params == nullptr && it != j.end() && it->is_object()) params = &*it;
  r.theta = get_num_or(j, "rope_theta", 10000.0, source);
  if (params != nullptr) r.theta = get_num_or(*params, "rope_theta", r.theta, source);
  double partial = get_num_or(j, "partial_rotary_factor", 1.0, source);
  if (params != nullptr) partial = get_num_or(*params, "partial_rotary_factor", partial, source);
  r.rotary_dim = static_cast<int>(cfg.head_dim * partial);
  r.original_context =
      get_int_or(j, "original_max_position_embeddings", 0, source, INT32_MIN, limits::kMaxModelContext);
  if (params == nullptr) return;

  std::string type;
  if (auto it = params->find("rope_type"); it != params->end() && it->is_string()) type = it->get<std::string>();
  if (auto it = params->find("type"); type.empty() && it != params->end() && it->is_string()) type = it->get<std::string>();
  if (type.empty() || type == "default") return;
  r.factor = get_num_or(*params, "factor", 1.0, source);
  r.original_context = get_int_or(*params, "original_max_position_embeddings", r.original_context, source, INT32_MIN,
                                  limits::kMaxModelContext);
  r.attention_factor = get_num_or(*params, "attention_factor", 0.0, source);
  if (type == "linear") {
    r.scaling = RopeScaling::Linear;
  } else if (type == "llama3") {
    r.scaling = RopeScaling::Llama3;
    r.low_freq_factor = get_num_or(*params, "low_freq_factor", 1.0, source);
    r.high_freq_factor = get_num_or(*params, "high_freq_factor", 4.0, source);
    if (r.original_context <= 0) bad(source, "llama3 rope scaling needs original_max_position_embeddings");
  } else if (type == "longrope" || type == "su") {
    r.scaling = RopeScaling::LongRope;
    r.short_factor = get_factors(*params, "short_factor", source);
    r.long_factor = get_factors(*params, "long_factor", source);
    if (r.original_context <= 0) bad(source, "longrope needs original_max_position_embeddings");
    // As transformers: without an explicit factor the scale is the context extension.
    if (!params->contains("factor"))
      r.factor = static_cast<double>(cfg.max_context) / static_cast<double>(r.original_context);
    size_t half = static_cast<size_t>(r.rotary_dim / 2);
    if (r.short_factor.size() != half || r.long_factor.size() != half)
      bad(source, "longrope short_factor/long_factor must have rotary_dim/2 = " + std::to_string(half) + " values");
  } else if (type == "yarn") {
    r.scaling = RopeScaling::Yarn;
    r.beta_fast = get_num_or(*params, "beta_fast", 32.0, source);
    r.beta_slow = get_num_or(*params, "beta_slow", 1.0, source);
    r.yarn_truncate = get_bool_or(*params, "truncate", true);
    if (r.original_context <= 0) r.original_context = cfg.max_context;
    double mscale = get_num_or(*params, "mscale", 0.0, source);
    double mscale_all_dim = get_num_or(*params, "mscale_all_dim", 0.0, source);
    if (!params->contains("factor"))
      r.factor = static_cast<double>(cfg.max_context) / static_cast<double>(r.original_context);
    if (r.attention_factor <= 0.0) {
      auto get_mscale = [](double scale, double m) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
      if (mscale > 0.0 && mscale_all_dim > 0.0)
        r.attention_factor = get_mscale(r.factor, mscale) / get_mscale(r.factor, mscale_all_dim);
      else
        r.attention_factor = get_mscale(r.factor, 1.0);
    }
  } else {
    throw Error(ErrorCode::UnsupportedModel, source + ": unsupported rope scaling \"" + printable_name(type) +
                                                 "\" (Folio supports linear, llama3, longrope, yarn)");
  }
}

}  // namespace

ModelConfig parse_hf_config(const std::string& json_text, const std::string& source) {
  limits::check_json_bounds(json_text, limits::kModelConfig, source, ErrorCode::BadConfig);
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    bad(source, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) bad(source, "not a JSON object");
  ModelConfig cfg;
  cfg.arch = detect_architecture(j, &cfg.arch_label, source);
  cfg.vocab_size = static_cast<int32_t>(get_int(j, "vocab_size", source));
  cfg.hidden = static_cast<int32_t>(get_int(j, "hidden_size", source));
  cfg.ffn_hidden = static_cast<int32_t>(get_int(j, "intermediate_size", source));
  cfg.n_layers = static_cast<int32_t>(get_int(j, "num_hidden_layers", source));
  cfg.n_heads = static_cast<int32_t>(get_int(j, "num_attention_heads", source));
  cfg.n_kv_heads = static_cast<int32_t>(get_int_or(j, "num_key_value_heads", cfg.n_heads, source));
  if (cfg.n_heads <= 0) bad(source, "num_attention_heads must be positive");
  cfg.head_dim = static_cast<int32_t>(get_int_or(j, "head_dim", cfg.hidden / cfg.n_heads, source));
  cfg.max_context = get_int_or(j, "max_position_embeddings", 2048, source, INT32_MIN, limits::kMaxModelContext);
  cfg.norm_eps = static_cast<float>(get_num_or(j, "rms_norm_eps", 1e-5, source));
  cfg.tied_embeddings = get_bool_or(j, "tie_word_embeddings", false);
  cfg.qkv_bias = cfg.arch == Architecture::Qwen2 || get_bool_or(j, "attention_bias", false);
  if (get_bool_or(j, "mlp_bias", false)) throw Error(ErrorCode::UnsupportedModel, source + ": mlp_bias is not supported");
  cfg.bos_id = static_cast<int32_t>(get_int_or(j, "bos_token_id", -1, source));
  if (auto it = j.find("eos_token_id"); it != j.end()) {
    if (it->is_number_integer())
      cfg.eos_ids.push_back(static_cast<int32_t>(checked_int(*it, "eos_token_id", INT32_MIN, INT32_MAX, source)));
    if (it->is_array())
      for (const auto& v : *it)
        if (v.is_number_integer())
          cfg.eos_ids.push_back(static_cast<int32_t>(checked_int(v, "eos_token_id", INT32_MIN, INT32_MAX, source)));
  }
  parse_rope(j, cfg, source);
  validate_config(cfg, source);
  return cfg;
}

void validate_config(const ModelConfig& c, const std::string& source) {
  auto positive = [&](int64_t v, const char* what) {
    if (v <= 0) bad(source, std::string(what) + " must be positive (got " + std::to_string(v) + ")");
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden, "hidden_size");
  positive(c.ffn_hidden, "intermediate_size");
  positive(c.n_layers, "num_hidden_layers");
  positive(c.n_heads, "num_attention_heads");
  positive(c.n_kv_heads, "num_key_value_heads");
  positive(c.head_dim, "head_dim");
  positive(c.max_context, "max_position_embeddings");
  if (c.n_heads % c.n_kv_heads != 0)
    bad(source, "num_attention_heads (" + std::to_string(c.n_heads) + ") is not a multiple of num_key_value_heads (" +
                    std::to_string(c.n_kv_heads) + ")");
  if (c.head_dim % 2 != 0) bad(source, "head_dim must be even");
  if (c.rope.rotary_dim <= 0 || c.rope.rotary_dim > c.head_dim || c.rope.rotary_dim % 2 != 0)
    bad(source, "rotary dimension must be even and at most head_dim");
  if (c.rope.theta <= 0) bad(source, "rope_theta must be positive");
  if (c.vocab_size > (1 << 24) || c.hidden > (1 << 16) || c.n_layers > 1024 || c.ffn_hidden > (1 << 20) ||
      c.n_heads > 1024 || c.head_dim > 1024)
    bad(source, "implausibly large dimensions (vocab " + std::to_string(c.vocab_size) + ", hidden " +
                    std::to_string(c.hidden) + ", heads " + std::to_string(c.n_heads) + ", head_dim " +
                    std::to_string(c.head_dim) + "); the file is probably corrupt");
  const RopeConfig& r = c.rope;
  if (r.scaling != RopeScaling::None && !(r.factor > 0.0))
    bad(source, "rope scaling factor must be positive (got " + std::to_string(r.factor) + ")");
  if (r.scaling == RopeScaling::Llama3 && !(r.high_freq_factor > r.low_freq_factor && r.low_freq_factor > 0.0))
    bad(source, "llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor");
  if (r.scaling == RopeScaling::Yarn && !(r.beta_fast > 0.0 && r.beta_slow > 0.0))
    bad(source, "yarn beta_fast and beta_slow must be positive");
  for (const auto* factors : {&r.short_factor, &r.long_factor})
    for (double f : *factors)
      if (!(f > 0.0)) bad(source, "longrope factors must be positive");
  if (!r.freq_factors.empty() && r.freq_factors.size() != static_cast<size_t>(r.rotary_dim / 2))
    bad(source, "rope frequency factors must have rotary_dim/2 = " + std::to_string(r.rotary_dim / 2) + " values (got " +
                    std::to_string(r.freq_factors.size()) + ")");
  for (double f : r.freq_factors)
    if (!(f > 0.0) || !std::isfinite(f)) bad(source, "rope frequency factors must be positive");
}

RopeTable make_rope_table(const RopeConfig& r, int64_t context_tokens) {
  RopeTable t;
  const int half = r.rotary_dim / 2;
  const double dim = r.rotary_dim;
  t.inv_freq.resize(static_cast<size_t>(half));
  std::vector<double> base(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) base[static_cast<size_t>(i)] = 1.0 / std::pow(r.theta, (2.0 * i) / dim);
  double scale = 1.0;
  switch (r.scaling) {
    case RopeScaling::None:
      break;
    case RopeScaling::Linear:
      for (auto& f : base) f /= r.factor;
      break;
    case RopeScaling::Llama3: {
      const double orig = static_cast<double>(r.original_context);
      const double low_wavelen = orig / r.low_freq_factor;
      const double high_wavelen = orig / r.high_freq_factor;
      for (auto& f : base) {
        double wavelen = 2.0 * std::numbers::pi / f;
        if (wavelen < high_wavelen) continue;
        if (wavelen > low_wavelen) {
          f /= r.factor;
        } else {
          double smooth = (orig / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
          f = (1.0 - smooth) * f / r.factor + smooth * f;
        }
      }
      break;
    }
    case RopeScaling::LongRope: {
      const bool use_long = context_tokens > r.original_context;
      const auto& ext = use_long ? r.long_factor : r.short_factor;
      for (int i = 0; i < half; ++i) base[static_cast<size_t>(i)] /= ext[static_cast<size_t>(i)];
      if (r.attention_factor > 0.0) {
        scale = r.attention_factor;
      } else if (r.factor > 1.0) {
        scale = std::sqrt(1.0 + std::log(r.factor) / std::log(static_cast<double>(r.original_context)));
      }
      break;
    }
    case RopeScaling::Yarn: {
      auto correction_dim = [&](double rotations) {
        return dim * std::log(static_cast<double>(r.original_context) / (rotations * 2.0 * std::numbers::pi)) /
               (2.0 * std::log(r.theta));
      };
      double low = correction_dim(r.beta_fast);
      double high = correction_dim(r.beta_slow);
      if (r.yarn_truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, dim - 1.0);
      if (low == high) high += 0.001;
      for (int i = 0; i < half; ++i) {
        double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
        double extrapolation = 1.0 - ramp;  // share of the unscaled frequency
        double f = base[static_cast<size_t>(i)];
        base[static_cast<size_t>(i)] = (f / r.factor) * (1.0 - extrapolation) + f * extrapolation;
      }
      scale = r.attention_factor > 0.0 ? r.attention_factor : 1.0;
      break;
    }
  }
  if (r.freq_factors.size() == static_cast<size_t>(half))
    for (int i = 0; i < half; ++i) base[static_cast<size_t>(i)] /= r.freq_factors[static_cast<size_t>(i)];
  for (int i = 0; i < half; ++i) t.inv_freq[static_cast<size_t>(i)] = static_cast<float>(base[static_cast<size_t>(i)]);
  t.attention_scale = static_cast<float>(scale);
  return t;
}

}  // namespace folio
