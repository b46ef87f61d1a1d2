// What crosses between the GUI thread and the EngineWorker's thread: requests (by value, posted
// to the worker) and results (queued signal arguments).
#pragma once

#include <QMetaType>
#include <QString>
#include <QStringList>
#include <QVector>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/chat/conversation.h"
#include "core/chat/grounding.h"
#include "core/docs/document.h"
#include "core/docs/token_budget.h"
#include "core/engine/engine.h"

namespace folio::ui {

enum class Phase { Idle, Loading, Prefill, Generating, Measuring };
QString phase_label(Phase phase);

// The context and answer room rules of the Conversation service (core/chat).
using folio::chat::answer_reserve;
using folio::chat::effective_context;

struct EngineConfig {
  QString model_path;
  QString backend = "cpu";  // "cpu", "cuda" or "remote"
  int threads = 0;
  std::vector<int> gpus;  // backend "cuda": one GPU, or several to lay the model across (empty: the first)
  QString kv_dtype = "native";  // the KV cache's values: "native" or "q8" (AppSettings::kv_dtype)
  // backend "remote": the OpenAI-compatible API base, its key ("" = none) and model ("" = its first).
  QString remote_url;
  QString remote_api_key;
  QString remote_model;
};

struct ModelInfo {
  QString path;
  QString name;  // file or folder name
  QString architecture;
  QString chat_format;  // "plain", "chatml", ...
  QString backend;
  bool remote = false;      // the model runs behind an OpenAI-compatible server (path = its URL)
  QString notice;           // e.g. a backend fallback
  int64_t max_context = 0;  // what the model was trained for
  int64_t largest_context = 0;  // what this backend's memory holds beside the model (0: unknown)
  QString kv_type;              // the KV cache's element type ("bf16", "fp32")
  QString auto_attention;       // where auto attention turns sparse here, and from what (Engine::auto_attention_note)
  int64_t vocab_size = 0;
  double load_ms = 0.0;
  std::vector<DeviceMemory> memory;
};

// A document as it goes into the prompt: keep_tokens > 0 means the user chose to keep only the
// first keep_tokens tokens of it (the prompt then carries a visible notice).
// selection not empty: only those pages or files of it (applied before keep_tokens).
struct PromptDocument {
  folio::docs::Document doc;
  int64_t keep_tokens = 0;
  folio::docs::PartSelection selection;
};

struct AskRequest {
  uint64_t id = 0;
  QVector<PromptDocument> documents;
  QString question;
  bool regenerate = false;  // ask the conversation's last question again in place of its answer (question unused)
  int64_t context_tokens = 0;  // the session's context; 0 = min(model max, 8192)
  SamplerParams sampler;
  int max_tokens = 512;
  QString system_prompt;  // first in the system turn, before the documents ("" = none)
  QString attention_mode = "auto";
  int64_t sparse_threshold_tokens = 0;  // auto: sparse for chunks whose keys reach this (0: as the model's config says)
  // When the documents do not fit: ask the user (Error: prompt_does_not_fit), or fill the context
  // with the parts most relevant to the question (Relevant).
  folio::chat::FitMode fit = folio::chat::FitMode::Error;
  bool keep_kv_on_disk = false;  // load / save the documents' KV in kv_cache_folder()
  std::shared_ptr<CancelToken> cancel;
};

// The request's prompt does not fit the context: the user decides what to leave out.
struct FitProblem {
  uint64_t request_id = 0;
  int64_t prompt_tokens = 0;
  int64_t context_tokens = 0;
  int64_t reserve_tokens = 0;        // kept free for the answer
  int64_t fixed_tokens = 0;          // prompt tokens that are not documents (template, history, question)
  QVector<int64_t> document_tokens;  // per document of the request, whole
};

struct AskOutcome {
  uint64_t id = 0;
  QString question;  // what was asked (the last question again when regenerating)
  QString text;
  Metrics metrics;
  bool cancelled = false;
  int64_t context_tokens = 0;
  int history_turns = 0;         // turns of the conversation after this answer (regenerate needs 2)
  int64_t conversation_id = 0;   // where the store recorded it (0 = not recorded)
  QString record_error;          // why it could not be recorded ("" = recorded or no store)
  // The passages of the request's documents (whole, in request order) that support the answer.
  std::vector<folio::chat::SourcePassage> sources;
  // Packed to fit (request.fit Relevant): what packing kept, and per document what of it went in
  // ("" = all of it). Empty when the documents went in whole.
  QString packing;
  QStringList used;
  bool repacked = false;         // packed afresh for this question (false: the last question's packing held)
  int64_t kv_loaded_tokens = 0;  // the documents' KV loaded from disk (0 = none)
  double kv_load_ms = 0.0;       // ... in this time, before the request's TTFT
  uint64_t kv_saved_bytes = 0;   // ... saved to disk after this answer (0 = none)
  QString kv_note;               // why the disk's KV was not used or saved ("" = fine)
  // A remote server's stream ended before the answer did (the server went away, the connection
  // was lost): why, in the user's words. `text` keeps what came. "" = the answer is whole.
  QString cut_reason;
};

struct CompareRequest {
  uint64_t id = 0;
  QVector<PromptDocument> documents;
  QString question;
  QString system_prompt;
  QStringList modes;          // attention modes to measure
  QVector<double> fractions;  // of the full prompt's length, one measurement each
  std::shared_ptr<CancelToken> cancel;
};

struct MeasuredRun {
  uint64_t request_id = 0;
  QString attention_mode;
  Metrics metrics;
  int32_t first_token = -1;  // the greedy first token (-1 = none)
};

}  // namespace folio::ui

Q_DECLARE_METATYPE(folio::ui::Phase)
Q_DECLARE_METATYPE(folio::ui::ModelInfo)
Q_DECLARE_METATYPE(folio::ui::FitProblem)
Q_DECLARE_METATYPE(folio::ui::AskOutcome)
Q_DECLARE_METATYPE(folio::ui::MeasuredRun)
