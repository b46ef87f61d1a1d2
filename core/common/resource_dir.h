// Where Folio's bundled files are: the models that ship with it (models/stories260K,
// models/folio-needle), the demo documents (demo/) and their sparse configs. Found relative to
// the running executable, never through a path compiled into it:
//   installed:   <prefix>/bin/folio-cli        -> <prefix>/share/folio
//   build tree:  <build>/app/folio-cli         -> <build>/share/folio (links into resources/,
//                                                 made by CMake at configure time)
// FOLIO_RESOURCE_DIR, when set, names the folder instead.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace folio {

// The running executable's own file (/proc/self/exe); empty when it cannot be read.
std::filesystem::path executable_path();

// The first of FOLIO_RESOURCE_DIR and <executable's folder>/../share/folio that holds a models/
// folder; nullopt when neither does.
std::optional<std::filesystem::path> resource_dir();

// The model that ships with Folio under this name (a folder in models/): the folder itself when it
// holds config.json (safetensors), else models/NAME/NAME.bin (llama2.c) or the folder's one .gguf.
// nullopt when there is no such model or no resource folder.
std::optional<std::filesystem::path> bundled_model_path(const std::string& name);

// The names of the models in the resource folder's models/, sorted.
std::string bundled_model_names();

}  // namespace folio
