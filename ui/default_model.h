// Which model Folio starts with when the user has not chosen one.
#pragma once

#include <QString>

namespace folio::ui {

// SmolLM2 (a GGUF in ~/.cache/folio/models, or $XDG_CACHE_HOME/folio/models, where
// `python3 tools/fetch_model.py` puts it) when present, else the embedded stories260K.
// The one place that decides the default model.
QString default_model_path();

// The stories260K checkpoint that ships with Folio (installed share/folio, or the build tree's); ""
// when it cannot be found.
QString embedded_model_path();

// Folder where tools/fetch_model.py keeps downloaded models.
QString model_cache_dir();

}  // namespace folio::ui
