#include "core/model/gguf_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "core/common/error.h"
#include "core/common/input_limits.h"
#include "core/model/gguf.h"

namespace folio {

namespace {

const char* kSupported = "Folio runs GGUF models of the architectures llama, qwen2 and phi3";

[[noreturn]] void bad_config(const GgufFile& f, const std::string& what) {
  throw Error(ErrorCode::BadConfig, f.path() + ": " + what + "; the GGUF metadata is incomplete or damaged");
}

// Numeric metadata of the architecture ("{arch}.key").
class ArchKeys {
 public:
  ArchKeys(const GgufFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}

  std::string name(const std::string& key) const { return arch_ + "." + key; }

  // An integer in [lo, hi]; `fallback` when absent (nullopt: the key is required).
  int64_t integer(const std::string& key, std::optional<int64_t> fallback, int64_t lo, int64_t hi) const {
    const std::string full = name(key);
    const GgufValue* v = f_.find(full);
    if (v == nullptr) {
      if (!fallback) bad_config(f_, "metadata key \"" + full + "\" is missing");
      return *fallback;
    }
    if (v->type == GgufType::Array)
      throw Error(ErrorCode::UnsupportedModel, f_.path() + ": metadata key \"" + full +
                                                   "\" holds per-layer values, which Folio does not support");
    if (v->type == GgufType::String || v->type == GgufType::Float32 || v->type == GgufType::Float64)
      bad_config(f_, "metadata key \"" + full + "\" is not an integer");
    if (v->integer < lo || v->integer > hi)
      bad_config(f_, "metadata key \"" + full + "\" is " + std::to_string(v->integer) + ", outside [" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v->integer;
  }

  double number(const std::string& key, double fallback) const {
    const std::string full = name(key);
    const GgufValue* v = f_.find(full);
    if (v == nullptr) return fallback;
    if (v->type == GgufType::String || v->type == GgufType::Array)
      bad_config(f_, "metadata key \"" + full + "\" is not a number");
    if (!std::isfinite(v->number)) bad_config(f_, "metadata key \"" + full + "\" is not finite");
    return v->number;
  }

  std::optional<std::string> text(const std::string& key) const { return f_.get_string(name(key)); }

 private:
  const GgufFile& f_;
  std::string arch_;
};

std::string type_text(uint32_t ggml_type) {
  const std::string name = ggml_type_name(ggml_type);
  return name == "unknown" ? "an unknown ggml type (" + std::to_string(ggml_type) + ")" : "ggml type " + name;
}

std::string shape_str(const std::vector<int64_t>& dims) {
  // Folio order: outer dimension first ([rows, cols] for a matrix); GGUF lists dims[0] first.
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[dims.size() - 1 - i]);
  return s + "]";
}

// The tensors of the file, with the checks of a model's needs.
class Tensors {
 public:
  Tensors(const GgufFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}

  bool has(const std::string& name) const { return f_.find_tensor(name) != nullptr; }

  const GgufTensorInfo& find(const std::string& name) const {
    const GgufTensorInfo* t = f_.find_tensor(name);
    if (t == nullptr)
      throw Error(ErrorCode::BadModelFile, f_.path() + ": tensor \"" + name + "\" is missing; the file is incomplete or "
                                               "is not a complete " + arch_ + " model");
    if (!t->supported)
      throw Error(ErrorCode::UnsupportedModel,
                  f_.path() + ": tensor \"" + name + "\" has " + type_text(t->ggml_type) +
                      ", which Folio does not read (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K); "
                      "use a GGUF quantized to one of those (e.g. Q4_K_M or Q8_0)");
    return *t;
  }

  // A [rows, cols] weight used in place.
  TensorView matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const GgufTensorInfo& t = find(name);
    if (t.dims.size() != 2 || t.dims[0] != cols || t.dims[1] != rows)
      throw Error(ErrorCode::BadModelFile, f_.path() + ": tensor \"" + name + "\" has shape " + shape_str(t.dims) +
                                               " but the model's metadata needs [" + std::to_string(rows) + ", " +
                                               std::to_string(cols) + "]; the weights do not match the metadata");
    return TensorView{t.dtype, rows, cols, t.data};
  }

  // A vector of n values converted to fp32.
  std::vector<float> values(const std::string& name, int64_t n) const {
    const GgufTensorInfo& t = find(name);
    if (t.dims.size() != 1 || t.dims[0] != n)
      throw Error(ErrorCode::BadModelFile, f_.path() + ": tensor \"" + name + "\" has shape " + shape_str(t.dims) +
                                               " but the model's metadata needs [" + std::to_string(n) + "]");
    std::vector<float> out(static_cast<size_t>(n));
    row_to_f32(TensorView{t.dtype, 1, n, t.data}, 0, out.data());
    return out;
  }

  TensorView vector(LoadedModel& m, const std::string& name, int64_t n) const {
    return m.own_f32(values(name, n), 1, n);
  }

 private:
  const GgufFile& f_;
  std::string arch_;
};

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

int32_t token_id(const GgufFile& f, const std::string& key, int32_t vocab) {
  const auto id = f.get_int(key);
  if (!id || *id < 0 || *id >= vocab) return -1;
  return static_cast<int32_t>(*id);
}

}  // namespace

ModelConfig gguf_model_config(const GgufFile& f) {
  const auto arch_name = f.get_string("general.architecture");
  if (!arch_name)
    bad_config(f, "metadata key \"general.architecture\" is missing");
  ModelConfig c;
  if (*arch_name == "llama") c.arch = Architecture::Llama;
  else if (*arch_name == "qwen2") c.arch = Architecture::Qwen2;
  else if (*arch_name == "phi3") c.arch = Architecture::Phi3;
  else
    throw Error(ErrorCode::UnsupportedModel,
                f.path() + ": unsupported architecture \"" + printable_name(*arch_name) + "\"; " + kSupported);
  c.arch_label = "gguf " + *arch_name;
  const ArchKeys k(f, *arch_name);
  const Tensors tensors(f, *arch_name);
  constexpr int64_t kMax32 = std::numeric_limits<int32_t>::max();

  c.hidden = static_cast<int32_t>(k.integer("embedding_length", std::nullopt, 1, kMax32));
  c.ffn_hidden = static_cast<int32_t>(k.integer("feed_forward_length", std::nullopt, 1, kMax32));
  c.n_layers = static_cast<int32_t>(k.integer("block_count", std::nullopt, 1, kMax32));
  c.n_heads = static_cast<int32_t>(k.integer("attention.head_count", std::nullopt, 1, kMax32));
  c.n_kv_heads = static_cast<int32_t>(k.integer("attention.head_count_kv", c.n_heads, 1, kMax32));
  c.head_dim = static_cast<int32_t>(k.integer("attention.key_length", c.hidden / c.n_heads, 1, kMax32));
  if (k.integer("attention.value_length", c.head_dim, 1, kMax32) != c.head_dim)
    throw Error(ErrorCode::UnsupportedModel, f.path() + ": attention.value_length differs from attention.key_length, "
                                                 "which Folio does not support");
  c.max_context = k.integer("context_length", 2048, 1, limits::kMaxModelContext);
  c.norm_eps = static_cast<float>(k.number("attention.layer_norm_rms_epsilon", 1e-5));
  if (!(c.norm_eps > 0.0f)) bad_config(f, "attention.layer_norm_rms_epsilon must be positive");

  // Vocabulary: the tokenizer's token list, else the embedding's rows.
  int64_t vocab = 0;
  if (const GgufValue* tokens = f.find("tokenizer.ggml.tokens"); tokens != nullptr && tokens->type == GgufType::Array)
    vocab = static_cast<int64_t>(tokens->count);
  else if (const GgufTensorInfo* e = f.find_tensor("token_embd.weight"); e != nullptr && e->dims.size() == 2)
    vocab = e->dims[1];
  if (vocab <= 0 || vocab > kMax32) bad_config(f, "no vocabulary size (tokenizer.ggml.tokens or token_embd.weight)");
  c.vocab_size = static_cast<int32_t>(vocab);
  c.bos_id = token_id(f, "tokenizer.ggml.bos_token_id", c.vocab_size);
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    const int32_t id = token_id(f, key, c.vocab_size);
    if (id >= 0 && std::find(c.eos_ids.begin(), c.eos_ids.end(), id) == c.eos_ids.end()) c.eos_ids.push_back(id);
  }
  c.tied_embeddings = !tensors.has("output.weight");
  c.qkv_bias = c.arch == Architecture::Qwen2 || tensors.has("blk.0.attn_q.bias") || tensors.has("blk.0.attn_qkv.bias");

  // RoPE. llama.cpp's converter permutes Q/K of llama models so their pairs are adjacent
  // (LLAMA_ROPE_TYPE_NORM); qwen2 and phi3 keep the halves layout (LLAMA_ROPE_TYPE_NEOX).
  RopeConfig& r = c.rope;
  r.layout = c.arch == Architecture::Llama ? RopeLayout::AdjacentPairs : RopeLayout::RotateHalf;
  r.theta = k.number("rope.freq_base", 10000.0);
  r.rotary_dim = static_cast<int>(k.integer("rope.dimension_count", c.head_dim, 1, kMax32));
  r.original_context = k.integer("rope.scaling.original_context_length", 0, 0, int64_t{1} << 40);
  const double attn_factor = k.number("rope.scaling.attn_factor", 0.0);
  const std::string type = k.text("rope.scaling.type").value_or("none");
  const double factor = k.number("rope.scaling.factor", 1.0);
  if (type == "linear" && factor != 1.0) {
    r.scaling = RopeScaling::Linear;
    r.factor = factor;
  } else if (type == "yarn") {
    r.scaling = RopeScaling::Yarn;
    r.factor = factor;
    if (r.original_context <= 0) r.original_context = c.max_context;
    r.beta_fast = k.number("rope.scaling.yarn_beta_fast", 32.0);
    r.beta_slow = k.number("rope.scaling.yarn_beta_slow", 1.0);
    // llama.cpp: 0.1 ln(factor) + 1, times rope.scaling.attn_factor where given
    r.attention_factor = (factor > 1.0 ? 0.1 * std::log(factor) + 1.0 : 1.0) * (attn_factor > 0.0 ? attn_factor : 1.0);
  } else if (type != "none" && type != "linear") {
    throw Error(ErrorCode::UnsupportedModel, f.path() + ": unsupported rope scaling \"" + printable_name(type) +
                                                 "\" (Folio reads none, linear and yarn from GGUF files)");
  }
  const size_t half = static_cast<size_t>(std::max(r.rotary_dim / 2, 0));
  if (tensors.has("rope_freqs.weight")) r.freq_factors = to_double(tensors.values("rope_freqs.weight", half));
  if (tensors.has("rope_factors_long.weight") || tensors.has("rope_factors_short.weight")) {
    // Phi-3 LongRoPE: the long factors serve contexts beyond the original one.
    r.scaling = RopeScaling::LongRope;
    r.long_factor = to_double(tensors.values("rope_factors_long.weight", half));
    r.short_factor = to_double(tensors.values("rope_factors_short.weight", half));
    if (r.original_context <= 0)
      bad_config(f, "LongRoPE factors need \"" + k.name("rope.scaling.original_context_length") + "\"");
    r.factor = static_cast<double>(c.max_context) / static_cast<double>(r.original_context);
    r.attention_factor = attn_factor;
  }
  validate_config(c, f.path());
  return c;
}

std::unique_ptr<LoadedModel> load_gguf_model(const std::string& path, const LoadProgressFn& progress) {
  if (progress) progress(0.0f, "reading the GGUF header");
  auto file = std::make_unique<GgufFile>(path);
  const GgufFile& f = *file;
  if (f.tensors().empty())
    throw Error(ErrorCode::BadModelFile, path + " has no weights: it is a vocabulary-only GGUF file; "
                                                "load a model's .gguf file");
  auto model = std::make_unique<LoadedModel>();
  model->format = ModelFormat::Gguf;
  model->config = gguf_model_config(f);
  const ModelConfig& c = model->config;
  const Tensors t(f, *f.get_string("general.architecture"));
  const int64_t H = c.hidden, QD = c.q_dim(), KVD = c.kv_dim(), F = c.ffn_hidden;

  ModelWeights& w = model->weights;
  w.tok_embd = t.matrix("token_embd.weight", c.vocab_size, H);
  w.out_norm = t.vector(*model, "output_norm.weight", H);
  w.output = c.tied_embeddings ? w.tok_embd : t.matrix("output.weight", c.vocab_size, H);
  for (int i = 0; i < c.n_layers; ++i) {
    if (progress) progress(static_cast<float>(i) / static_cast<float>(c.n_layers), "mapping weights");
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights l;
    l.attn_norm = t.vector(*model, p + "attn_norm.weight", H);
    l.ffn_norm = t.vector(*model, p + "ffn_norm.weight", H);
    if (t.has(p + "attn_qkv.weight")) {
      const TensorView qkv = t.matrix(p + "attn_qkv.weight", QD + 2 * KVD, H);
      l.wq = qkv.row_slice(0, QD);
      l.wk = qkv.row_slice(QD, KVD);
      l.wv = qkv.row_slice(QD + KVD, KVD);
    } else {
      l.wq = t.matrix(p + "attn_q.weight", QD, H);
      l.wk = t.matrix(p + "attn_k.weight", KVD, H);
      l.wv = t.matrix(p + "attn_v.weight", KVD, H);
    }
    if (c.qkv_bias) {
      if (t.has(p + "attn_qkv.bias")) {
        const std::vector<float> b = t.values(p + "attn_qkv.bias", QD + 2 * KVD);
        l.bq = model->own_f32(std::vector<float>(b.begin(), b.begin() + QD), 1, QD);
        l.bk = model->own_f32(std::vector<float>(b.begin() + QD, b.begin() + QD + KVD), 1, KVD);
        l.bv = model->own_f32(std::vector<float>(b.begin() + QD + KVD, b.end()), 1, KVD);
      } else {
        l.bq = t.vector(*model, p + "attn_q.bias", QD);
        l.bk = t.vector(*model, p + "attn_k.bias", KVD);
        l.bv = t.vector(*model, p + "attn_v.bias", KVD);
      }
    }
    l.wo = t.matrix(p + "attn_output.weight", H, QD);
    if (c.arch == Architecture::Phi3 && !t.has(p + "ffn_gate.weight")) {
      // llama.cpp's phi3: ffn_up holds gate (first ffn rows) and up (next ffn rows)
      const TensorView gate_up = t.matrix(p + "ffn_up.weight", 2 * F, H);
      l.w_gate = gate_up.row_slice(0, F);
      l.w_up = gate_up.row_slice(F, F);
    } else {
      l.w_gate = t.matrix(p + "ffn_gate.weight", F, H);
      l.w_up = t.matrix(p + "ffn_up.weight", F, H);
    }
    l.w_down = t.matrix(p + "ffn_down.weight", H, F);
    w.layers.push_back(l);
  }
  if (auto tmpl = f.get_string("tokenizer.chat_template")) model->chat_template = *tmpl;
  model->files.push_back(file->release_mapping());
  if (progress) progress(1.0f, "weights mapped");
  return model;
}

}  // namespace folio
