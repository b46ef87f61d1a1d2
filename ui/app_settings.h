// What the user chose in Settings, remembered across restarts with QSettings
// (organization "Folio", application "Folio").
#pragma once

#include <QString>
#include <cstdint>
#include <vector>

#include "core/engine/sampler.h"

namespace folio::ui {

// Where the documents' KV is kept on disk (AppSettings::keep_kv_on_disk): the user's cache folder.
QString kv_cache_folder();

struct AppSettings {
  // Model and backend. model_path "" = default_model_path().
  QString model_path;
  QString backend = "cpu";     // "cpu", "cuda" or "remote" (the model runs behind remote_url)
  int threads = 0;             // 0 = all cores
  // Backend "cuda": the GPUs, e.g. "1" or "0,1" (two or more: the model laid across them, tensor
  // parallel); "" = the first GPU.
  QString gpus;
  std::vector<int> gpu_list() const;  // the indices of `gpus` (empty for "")
  int64_t context_tokens = 0;  // 0 = min(model's max context, 8192)
  // The KV cache's values: "native" (fp32 on the CPU, bf16 on the GPU) or "q8" (8-bit blocks: about
  // 0.53x of bf16's bytes on the GPU, so a longer context fits; SmolLM2's perplexity +0.17% at 8K).
  QString kv_dtype = "native";
  // Keep the KV of the documents' prefix on disk (the user's cache folder, at most kKvCacheBytes),
  // so the same documents are answered without a new prefill after a restart. Opt-in: it takes disk.
  bool keep_kv_on_disk = false;
  static constexpr uint64_t kKvCacheBytes = uint64_t{4} << 30;

  // The remote engine (backend "remote"): an OpenAI-compatible API base such as
  // http://host:8080/v1 (folio-server, vLLM, SGLang, llama.cpp's server), the model to ask there
  // ("" = the first it lists) and its API key ("" = none). The key is not kept with the other
  // settings: save() writes it to api_key_path(), readable by the user only, and nothing logs it.
  QString remote_url;
  QString remote_model;
  QString remote_api_key;
  static QString api_key_path();

  // Prefill attention: a name from attention_modes(), and the length above which a sparse mode
  // takes over from dense (kept for sparse modes; dense ignores it).
  QString attention_mode = "auto";
  int64_t sparse_threshold_tokens = 0;  // 0: as measured (the model's folio-sparse.json)

  // Sampling. Document questions want the most likely answer: greedy, and no repetition penalty
  // (it pushes the model off numbers and names the document repeats; 1.1 made SmolLM2 answer the
  // demo's battery question with "2 years" instead of "about 14 months").
  double temperature = 0.0;
  double top_p = 0.9;
  int top_k = 40;
  double min_p = 0.05;
  double repetition_penalty = 1.0;
  int max_tokens = 512;
  int64_t seed = -1;  // -1 = a new seed for every answer

  // The user's system prompt: first in the system turn, before the documents ("" = none).
  QString system_prompt;

  QString effective_model_path() const;
  SamplerParams sampler(uint64_t random_seed) const;
  // Whether a change from `before` needs the model loaded again (model, backend, threads; for the
  // remote backend its URL, model and key).
  bool needs_reload(const AppSettings& before) const;

  // These settings with everything but the model choice (model, backend, threads, context) back to
  // the defaults (Settings ▸ Reset to defaults).
  AppSettings with_defaults() const;

  // Settings saved before version 2 kept temperature 0.3 and repetition penalty 1.1 as defaults:
  // load() moves those two (when still at the old defaults) to the new ones.
  static constexpr int kVersion = 2;

  // What a conversation was held with (sampling, answer length, system prompt, attention,
  // context), as JSON for the store; with_conversation() puts those fields of `json` over these
  // settings (the model choice stays).
  QString conversation_json() const;
  AppSettings with_conversation(const QString& json) const;
  static AppSettings load();  // from QSettings("Folio", "Folio"), defaults where unset
  void save() const;

  bool operator==(const AppSettings&) const = default;
};

}  // namespace folio::ui
