// Loading a model from disk in any supported format (the format modules below do the reading).
#pragma once

#include <memory>
#include <string>

#include "core/model/model_weights.h"

namespace folio {

// Loads a model from a folder with config.json and *.safetensors (one file or shards listed in
// model.safetensors.index.json), a .safetensors file inside such a folder, or a llama2.c
// checkpoint. Throws Error with a message naming the file and the fault.
std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadProgressFn& progress = {});

// The tokenizer of the model at `path`, found without loading its weights: a GGUF file itself (a
// vocabulary-only GGUF too), tokenizer.model or tokenizer.json in a safetensors folder, and beside a
// llama2.c checkpoint tokenizer.model, tokenizer.bin or tok<vocab>.bin (the vocabulary size read from
// its header). The same files load_model() picks. Throws Error naming the model when there is none.
std::string find_tokenizer(const std::string& path);

}  // namespace folio
