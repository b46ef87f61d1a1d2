// Loading a model from a llama.cpp GGUF file: the ModelConfig from the `{arch}.*` metadata and
// the weights used in place from the file's memory map (quantized types stay quantized).
#pragma once

#include <memory>
#include <string>

#include "core/model/model_weights.h"

namespace folio {

class GgufFile;

// The config of a GGUF model (architectures llama, qwen2, phi3), validated. Throws
// Error(UnsupportedModel) for another architecture, Error(BadConfig) for missing or bad keys.
ModelConfig gguf_model_config(const GgufFile& file);

// Loads a GGUF model file. The tokenizer lives in the file's metadata (tokenizer.ggml.*), so
// tokenizer_path stays empty; chat_template is taken from tokenizer.chat_template. Throws Error
// with a message naming the file: a vocabulary-only file, a missing tensor, a tensor of the wrong
// shape or of a ggml type Folio does not read.
std::unique_ptr<LoadedModel> load_gguf_model(const std::string& path, const LoadProgressFn& progress = {});

}  // namespace folio
