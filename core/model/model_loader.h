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

}  // namespace folio
