#include "core/model/random_model.h"

#include <cstring>
#include <random>

#include "core/common/error.h"

namespace folio {

namespace {

ModelConfig shape(int32_t vocab, int32_t hidden, int32_t ffn, int32_t layers, int32_t heads, int32_t kv_heads,
                  int64_t ctx, double theta, bool tied) {
  ModelConfig c;
  c.arch = Architecture::Llama;
  c.vocab_size = vocab;
  c.hidden = hidden;
  c.ffn_hidden = ffn;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_context = ctx;
  c.norm_eps = 1e-5f;
  c.tied_embeddings = tied;
  c.rope.theta = theta;
  c.rope.rotary_dim = c.head_dim;
  c.bos_id = 1;
  c.eos_ids = {2};
  return c;
}

}  // namespace

std::vector<std::string> named_model_shapes() { return {"smollm2-135m", "llama-3.1-8b", "phi-3.5-mini", "qwen2.5-7b"}; }

ModelConfig named_model_shape(const std::string& name) {
  ModelConfig c;
  if (name == "smollm2-135m") {
    c = shape(49152, 576, 1536, 30, 9, 3, 8192, 100000.0, true);
  } else if (name == "llama-3.1-8b") {
    c = shape(128256, 4096, 14336, 32, 32, 8, 131072, 500000.0, false);
    c.rope.scaling = RopeScaling::Llama3;
    c.rope.factor = 8.0;
    c.rope.low_freq_factor = 1.0;
    c.rope.high_freq_factor = 4.0;
    c.rope.original_context = 8192;
  } else if (name == "phi-3.5-mini") {
    c = shape(32064, 3072, 8192, 32, 32, 32, 131072, 10000.0, false);
    c.arch = Architecture::Phi3;
    c.rope.scaling = RopeScaling::LongRope;
    c.rope.original_context = 4096;
    c.rope.factor = 32.0;
    c.rope.short_factor.assign(48, 1.0);
    c.rope.long_factor.assign(48, 4.0);
  } else if (name == "qwen2.5-7b") {
    c = shape(152064, 3584, 18944, 28, 28, 4, 32768, 1000000.0, false);
    c.arch = Architecture::Qwen2;
    c.qkv_bias = true;
  } else {
    std::string known;
    for (const auto& n : named_model_shapes()) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::BadArgument, "unknown model shape \"" + name + "\"; known shapes: " + known);
  }
  c.arch_label = "random " + name;
  return c;
}

std::unique_ptr<LoadedModel> make_random_model(const ModelConfig& config, DType dtype, uint64_t seed,
                                               bool on_device) {
  validate_config(config, "random model");
  if (is_quantized(dtype) && !on_device)
    throw Error(ErrorCode::BadArgument, std::string("random ") + dtype_name(dtype) +
                                            " weights are made on the GPU only (use bf16, f16 or f32 on the CPU)");
  auto model = std::make_unique<LoadedModel>();
  model->config = config;
  model->path = config.arch_label;
  model->random_on_device = on_device;
  model->random_seed = seed;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  auto matrix = [&](int64_t rows, int64_t cols) {
    if (on_device) {
      TensorView v;
      v.dtype = is_quantized(dtype) ? dtype : DType::BF16;
      v.rows = rows;
      v.cols = cols;
      return v;
    }
    const int64_t n = rows * cols;
    std::vector<float> values(static_cast<size_t>(n));
    for (auto& v : values) v = normal(rng);
    if (dtype == DType::F32) return model->own_f32(std::move(values), rows, cols);
    // 16-bit storage: pack two values per float slot of an owned buffer
    std::vector<float> storage(static_cast<size_t>((n + 1) / 2));
    auto* dst = reinterpret_cast<uint16_t*>(storage.data());
    for (int64_t i = 0; i < n; ++i)
      dst[i] = dtype == DType::BF16 ? f32_to_bf16(values[static_cast<size_t>(i)])
                                    : f32_to_f16(values[static_cast<size_t>(i)]);
    TensorView v = model->own_f32(std::move(storage), 1, (n + 1) / 2);
    v.dtype = dtype;
    v.rows = rows;
    v.cols = cols;
    return v;
  };
  auto ones = [&](int64_t n) { return model->own_f32(std::vector<float>(static_cast<size_t>(n), 1.0f), 1, n); };
  const ModelConfig& c = config;
  ModelWeights& w = model->weights;
  w.tok_embd = matrix(c.vocab_size, c.hidden);
  w.out_norm = ones(c.hidden);
  w.output = c.tied_embeddings ? w.tok_embd : matrix(c.vocab_size, c.hidden);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights L;
    L.attn_norm = ones(c.hidden);
    L.ffn_norm = ones(c.hidden);
    L.wq = matrix(c.q_dim(), c.hidden);
    L.wk = matrix(c.kv_dim(), c.hidden);
    L.wv = matrix(c.kv_dim(), c.hidden);
    L.wo = matrix(c.hidden, c.q_dim());
    if (c.qkv_bias) {
      L.bq = model->own_f32(std::vector<float>(static_cast<size_t>(c.q_dim()), 0.0f), 1, c.q_dim());
      L.bk = model->own_f32(std::vector<float>(static_cast<size_t>(c.kv_dim()), 0.0f), 1, c.kv_dim());
      L.bv = model->own_f32(std::vector<float>(static_cast<size_t>(c.kv_dim()), 0.0f), 1, c.kv_dim());
    }
    L.w_gate = matrix(c.ffn_hidden, c.hidden);
    L.w_up = matrix(c.ffn_hidden, c.hidden);
    L.w_down = matrix(c.hidden, c.ffn_hidden);
    w.layers.push_back(L);
  }
  return model;
}

}  // namespace folio
