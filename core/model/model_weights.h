// The weights of a loaded model: config, tensor views into memory-mapped files, and the small
// tensors (norms, biases) converted to fp32 and owned here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/common/mapped_file.h"
#include "core/model/model_config.h"
#include "core/model/tensor.h"

namespace folio {

struct LayerWeights {
  TensorView attn_norm;                // [hidden] fp32
  TensorView wq, wk, wv, wo;           // [q_dim, hidden], [kv_dim, hidden] x2, [hidden, q_dim]
  TensorView bq, bk, bv;               // fp32 biases, empty when the model has none
  TensorView ffn_norm;                 // [hidden] fp32
  TensorView w_gate, w_up, w_down;     // [ffn, hidden] x2, [hidden, ffn]
};

struct ModelWeights {
  TensorView tok_embd;  // [vocab, hidden]
  TensorView out_norm;  // [hidden] fp32
  TensorView output;    // [vocab, hidden]; the embedding when tied
  std::vector<LayerWeights> layers;
};

enum class ModelFormat { Safetensors, Llama2c, Gguf };

// Progress of a load: fraction in [0, 1] and what is being done.
using LoadProgressFn = std::function<void(float fraction, std::string_view stage)>;

class LoadedModel {
 public:
  ModelConfig config;
  ModelWeights weights;
  ModelFormat format = ModelFormat::Safetensors;
  std::string path;            // what the user gave
  std::string tokenizer_path;  // the tokenizer found beside the weights ("" if none)
  std::string chat_template;   // the model's Jinja chat template, where it ships one ("" if none)

  // Random-weight benchmarks at real sizes: matrices carry shapes but no data, and a GPU backend
  // fills them with seeded normal values on the device (the CPU backend refuses such a model).
  bool random_on_device = false;
  uint64_t random_seed = 0;

  size_t weight_bytes() const;  // bytes of all tensors as stored

  // Keeps fp32 copies of small tensors alive; returns a view of the stored copy.
  TensorView own_f32(std::vector<float> values, int64_t rows, int64_t cols);
  // Keeps a tensor's bytes (as stored: a whole number of blocks per row) alive; returns a view.
  TensorView own_bytes(DType dtype, int64_t rows, int64_t cols, std::vector<uint8_t> bytes);
  std::vector<std::unique_ptr<MappedFile>> files;
  // A shard (core/engine/tensor_parallel.h): the whole model, whose files and tensors its views use.
  std::shared_ptr<const LoadedModel> whole;

 private:
  std::vector<std::unique_ptr<std::vector<float>>> owned_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned_bytes_;
};

}  // namespace folio
