#include "core/model/llama2c.h"

#include <cstring>
#include <filesystem>

#include "core/common/error.h"

namespace folio {

std::unique_ptr<LoadedModel> load_llama2c_model(const std::string& path, const LoadProgressFn& progress) {
  auto model = std::make_unique<LoadedModel>();
  model->format = ModelFormat::Llama2c;
  auto file = std::make_unique<MappedFile>(path);
  const size_t size = file->size();
  if (size < 28)
    throw Error(ErrorCode::BadModelFile, path + ": too short for a llama2.c checkpoint (" + std::to_string(size) +
                                             " bytes); expected a folder with config.json, or a llama2.c .bin file");
  int32_t h[7];
  std::memcpy(h, file->data(), sizeof(h));
  ModelConfig& c = model->config;
  c.arch = Architecture::Llama;
  c.arch_label = "llama2.c";
  c.hidden = h[0];
  c.ffn_hidden = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.tied_embeddings = h[5] > 0;
  const int64_t vocab = h[5] > 0 ? int64_t{h[5]} : -int64_t{h[5]};
  c.vocab_size = vocab > (1 << 24) ? -1 : static_cast<int32_t>(vocab);
  c.max_context = h[6];
  c.head_dim = c.n_heads > 0 ? c.hidden / c.n_heads : 0;
  c.norm_eps = 1e-5f;
  c.rope.layout = RopeLayout::AdjacentPairs;
  c.rope.theta = 10000.0;
  c.rope.rotary_dim = c.head_dim;
  c.bos_id = 1;
  c.eos_ids = {2};
  try {
    validate_config(c, path + " (llama2.c header)");
  } catch (const Error& e) {
    throw Error(ErrorCode::BadModelFile,
                path + " is not a llama2.c checkpoint (" + e.what() +
                    "); a model is a folder with config.json and .safetensors files, or a llama2.c .bin file");
  }
  if (c.head_dim * c.n_heads != c.hidden)
    throw Error(ErrorCode::BadModelFile, path + ": llama2.c header has dim not divisible by n_heads");

  const int64_t D = c.hidden, F = c.ffn_hidden, L = c.n_layers, V = c.vocab_size, KV = c.kv_dim();
  const int64_t S = c.max_context, HS = c.head_dim;
  const int64_t floats = V * D + L * D + L * D * D + 2 * L * KV * D + L * D * D + L * D + 3 * L * F * D + D +
                         S * HS + (c.tied_embeddings ? 0 : V * D);
  const uint64_t expected = 28 + static_cast<uint64_t>(floats) * 4;
  if (size != expected)
    throw Error(ErrorCode::BadModelFile, path + ": llama2.c file is " + std::to_string(size) + " bytes but its header (dim " +
                                             std::to_string(D) + ", " + std::to_string(L) + " layers, vocab " +
                                             std::to_string(V) + ") needs " + std::to_string(expected) +
                                             "; the file is truncated or not a llama2.c checkpoint");
  if (progress) progress(0.5f, "mapping weights");

  const uint8_t* p = file->data() + 28;
  auto take = [&](int64_t rows, int64_t cols) {
    TensorView v{DType::F32, rows, cols, p};
    p += static_cast<size_t>(rows * cols) * 4;
    return v;
  };
  ModelWeights& w = model->weights;
  w.layers.resize(static_cast<size_t>(L));
  w.tok_embd = take(V, D);
  for (auto& l : w.layers) l.attn_norm = take(1, D);
  for (auto& l : w.layers) l.wq = take(D, D);
  for (auto& l : w.layers) l.wk = take(KV, D);
  for (auto& l : w.layers) l.wv = take(KV, D);
  for (auto& l : w.layers) l.wo = take(D, D);
  for (auto& l : w.layers) l.ffn_norm = take(1, D);
  for (auto& l : w.layers) l.w_gate = take(F, D);
  for (auto& l : w.layers) l.w_down = take(D, F);
  for (auto& l : w.layers) l.w_up = take(F, D);
  w.out_norm = take(1, D);
  take(S, HS);  // precomputed freq_cis (real, imag): unused, RoPE is computed
  w.output = c.tied_embeddings ? w.tok_embd : take(V, D);
  model->files.push_back(std::move(file));

  // A tokenizer beside the checkpoint: tokenizer.bin, or tok<vocab>.bin as llama2.c names them.
  namespace fs = std::filesystem;
  fs::path dir = fs::path(path).parent_path();
  for (const auto& name : {std::string("tokenizer.model"), std::string("tokenizer.bin"),
                           "tok" + std::to_string(V) + ".bin"}) {
    if (fs::exists(dir / name)) {
      model->tokenizer_path = (dir / name).string();
      break;
    }
  }
  if (progress) progress(1.0f, "weights mapped");
  return model;
}

}  // namespace folio
