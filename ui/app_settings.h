// What the user chose in Settings, remembered across restarts with QSettings
// (organization "Folio", application "Folio").
#pragma once

#include <QString>
#include <cstdint>

#include "core/engine/sampler.h"

namespace folio::ui {

struct AppSettings {
  // Model and backend. model_path "" = default_model_path().
  QString model_path;
  QString backend = "cpu";     // "cpu" or "cuda"
  int threads = 0;             // 0 = all cores
  int64_t context_tokens = 0;  // 0 = min(model's max context, 8192)

  // Prefill attention: a name from attention_modes(), and the length above which a sparse mode
  // takes over from dense (kept for sparse modes; dense ignores it).
  QString attention_mode = "auto";
  int64_t sparse_threshold_tokens = 16384;

  // Sampling.
  double temperature = 0.3;  // low: answers about documents should stick to them
  double top_p = 0.9;
  int top_k = 40;
  double min_p = 0.05;
  double repetition_penalty = 1.1;
  int max_tokens = 512;
  int64_t seed = -1;  // -1 = a new seed for every answer

  QString effective_model_path() const;
  SamplerParams sampler(uint64_t random_seed) const;
  // Whether a change from `before` needs the model loaded again (model, backend, threads).
  bool needs_reload(const AppSettings& before) const;

  static AppSettings load();  // from QSettings("Folio", "Folio"), defaults where unset
  void save() const;

  bool operator==(const AppSettings&) const = default;
};

}  // namespace folio::ui
