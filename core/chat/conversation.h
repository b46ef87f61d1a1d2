// folio::chat::Conversation: one document chat as a service, without Qt. It owns what a chat
// needs: the engine's chat format, the documents, the history of turns, the Session whose KV cache
// keeps the shared prefix across questions, the prompt builder, the fit check, and the hook that
// records each answered turn. The app (through EngineWorker, on its thread) and folio-cli both
// ask through it, so the same documents and question give the same prompt bytes everywhere.
//
// Prompt order: a system turn with the user's system prompt (if any) and then the documents
// (documents_system_text: an instruction made from the first document, the documents, a note on
// what the later ones add), then the history, then the question. Every follow-up shares that
// prefix, so Session::run reuses its KV; a document added after the others keeps the prefix up to
// the end of those, so only the new one is prefilled.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/chat/chat_document.h"
#include "core/chat/context_packing.h"
#include "core/chat/kv_store.h"
#include "core/chat/token_count_cache.h"
#include "core/engine/engine.h"
#include "core/tokenizer/chat_format.h"

namespace folio::chat {

// The session's context for a requested size (0 = min(model max, 8192)), never above what the
// model was trained for (the app's Settings may ask for more than a newly chosen model has).
int64_t effective_context(int64_t requested_tokens, int64_t model_max_context);
// Tokens kept free for the answer when judging whether a prompt fits.
int64_t answer_reserve(int64_t context_tokens, int max_tokens);

struct Turn {
  std::string role;  // "user" or "assistant"
  std::string text;
};

// A prompt as the model gets it: the rendered chat text and its token ids.
struct Prompt {
  std::string text;
  std::vector<int32_t> tokens;
};

// The system turn: the user's system prompt, then (separated by a blank line) the documents'
// system text; "" when both are empty.
std::string system_text(ChatFormatKind format, const std::vector<Document>& docs, const std::string& system_prompt);

// The messages of system prompt + documents + history + question (the system turn first).
std::vector<ChatMessage> prompt_messages(ChatFormatKind format, const std::vector<Document>& docs,
                                         const std::vector<Turn>& history, const std::string& question,
                                         const std::string& system_prompt = {});

// The rendered prompt of system prompt + documents + history + question in the model's chat format.
Prompt build_prompt(const Engine& engine, ChatFormatKind format, const std::vector<Document>& docs,
                    const std::vector<Turn>& history, const std::string& question,
                    const std::string& system_prompt = {});

// Whether a prompt and the room kept for the answer fit the context. Nothing is ever cut here:
// when it does not fit, the caller asks the user (the app) or reports it (folio-cli).
struct FitCheck {
  bool fits = true;
  int64_t prompt_tokens = 0;
  int64_t context_tokens = 0;
  int64_t reserve_tokens = 0;            // kept free for the answer
  int64_t fixed_tokens = 0;              // prompt tokens that are not documents (template, history, question)
  std::vector<int64_t> document_tokens;  // per document, as laid out in the prompt
  // The prompt is far larger than the context and was counted only until that was clear (so a huge
  // document costs memory and time in proportion to the context, not to its size): prompt_tokens
  // and each document's count marked in documents_over are lower bounds ("more than N").
  bool counted_in_part = false;
  std::vector<bool> documents_over;  // per document: its count is a lower bound
  // One line for people: what does not fit and what to do.
  std::string message() const;
};

// One answered (or stopped) turn, as the service hands it to a Recorder.
struct TurnRecord {
  std::string question;
  std::string answer;  // "" when stopped before the first token
  Metrics metrics;     // the engine's own figures of the request
  bool cancelled = false;
  const std::vector<Document>* documents = nullptr;  // the documents it was asked over
  std::vector<int64_t> document_tokens;              // per document, as laid out
};

// Where the service records turns (the app: the SQLite store). Called on the service's thread;
// may throw, the service then reports Answer::record_error and keeps the answer.
class Recorder {
 public:
  virtual ~Recorder() = default;
  virtual void record_turn(const TurnRecord& turn) = 0;
  // The conversation starts again: the next turn belongs to a new conversation.
  virtual void new_conversation() = 0;
};

struct AskOptions {
  int64_t context_tokens = 0;  // the session's context (already resolved, e.g. by effective_context)
  GenerateOptions generate;    // sampler, max_tokens, stop strings, on_token, cancel (stop tokens are added)
  PrefillOptions prefill;      // chunk, progress, cancel
  sparse::AttentionMode attention = sparse::AttentionMode::Auto;
  std::shared_ptr<const sparse::SparseConfig> sparse_config;  // null = the engine's
  std::function<void()> on_start;                             // the prompt fits and the request starts (before prefill)
  // When the documents do not fit: report it (Error), or pack the sections that matter for the
  // question (Relevant) or the first ones (Beginning) with visible gap markers.
  FitMode fit = FitMode::Error;
};

struct Answer {
  FitCheck fit;  // !fit.fits: nothing ran, history unchanged
  std::string packing;  // what packing kept and left out ("" = the documents went in whole)
  std::vector<std::string> used;  // packed: per document what of it went in ("" = all); else empty
  bool repacked = false;          // packed afresh for this question (false: the last question's packing held)
  std::string question;
  RequestResult result;  // when it ran
  bool cancelled = false;
  std::string record_error;  // the recorder failed (the answer stands)
  size_t history_turns = 0;  // turns in the history afterwards
  // KV kept on disk (set_kv_store): tokens of the documents' prefix loaded from it for this answer
  // (0 = none; also the metrics' reused_tokens, as the session had nothing else), bytes saved after it (0 = none), and why a file was not used or not saved ("" = fine).
  int64_t kv_loaded_tokens = 0;
  double kv_load_ms = 0.0;  // reading and checking the file and filling the cache (not in the metrics' TTFT)
  uint64_t kv_saved_bytes = 0;
  std::string kv_note;
};

class Conversation {
 public:
  // The format detected from the model (detect_chat_format), or the one given.
  explicit Conversation(Engine& engine);
  Conversation(Engine& engine, ChatFormatKind format);
  ~Conversation();

  ChatFormatKind format() const { return format_; }
  Engine& engine() { return engine_; }

  // The documents of the next questions (the history stays; changed documents change the prefix,
  // so the next request prefills again from where they differ).
  void set_documents(std::vector<Document> docs);
  const std::vector<Document>& documents() const { return docs_; }
  // The user's system prompt, put first in the system turn, before the documents (the app's
  // Settings, folio-cli --system). "" = none. A change changes the prefix (prefilled again).
  void set_system_prompt(std::string text) { system_prompt_ = std::move(text); }
  const std::string& system_prompt() const { return system_prompt_; }
  const std::vector<Turn>& history() const { return history_; }
  // Continues from these turns (e.g. the same chat after the model was changed); the KV cache
  // is rebuilt by the next request.
  void set_history(std::vector<Turn> turns) { history_ = std::move(turns); }
  void set_recorder(Recorder* recorder) { recorder_ = recorder; }
  // Keeps the KV of the documents' prefix (the system turn) on disk: a new session (after a restart,
  // a reset or a changed context) starts from the saved KV that shares the longest start with its
  // prompt (the same documents, or the first of them when others were added after them; see
  // KvStore::load_longest_prefix), and a prefix computed afresh, or only in part, is saved. model_id names the model (e.g. its path, size and
  // time). Null: off. Backends that cannot read their cache out (Backend::read_kv) prefill as before.
  void set_kv_store(KvStore* store, std::string model_id) {
    kv_store_ = store;
    model_id_ = std::move(model_id);
  }

  // Keeps the token counts of the documents' units (what indexing them for packing costs) in
  // `cache`, so documents opened again are not counted again. tokenizer_id names the tokenizer
  // (e.g. the model's path, size and time). Null: off.
  void set_token_count_cache(TokenCountCache* cache, std::string tokenizer_id) {
    count_cache_ = cache;
    tokenizer_id_ = std::move(tokenizer_id);
  }

  // Forgets the history and the KV cache; the recorder starts a new conversation.
  void reset();

  // The prompt the next question would be sent as.
  Prompt prompt(const std::string& question) const;
  // Prompt + answer reserve against the context.
  FitCheck check_fit(const Prompt& prompt, int64_t context_tokens, int max_tokens);
  // The prompt a question is sent as under `options` (context, answer reserve, fit mode): the whole
  // documents when they fit, else packed as options.fit says; `fit` says whether it fits and
  // `packing` what packing kept ("" when nothing was packed).
  Prompt fitted_prompt(const std::string& question, const AskOptions& options, FitCheck& fit, std::string& packing);

  // Asks a question: builds the prompt, checks the fit (returns without running when it does not
  // fit), runs it in the conversation's session (reusing the cached prefix), appends the turn to
  // the history (unless stopped before any text) and records it. Throws folio::Error from the
  // engine; the session is then dropped, so the next request starts afresh.
  Answer ask(const std::string& question, const AskOptions& options);
  // Asks the last question again in place of its answer. Without an answered turn: nothing runs
  // and the Answer has fit.fits set and an empty question.
  Answer regenerate(const AskOptions& options);

  // Tokens of a document as laid out (doc.tokens when set; else counted once and cached).
  int64_t document_tokens(const Document& doc);
  // The same, counted only until it passes limit_tokens (then *over is set and the count is a
  // lower bound; not cached).
  int64_t document_tokens(const Document& doc, int64_t limit_tokens, bool* over);

  // The packing of the last prompt that needed one: what of each document went in, and whether it
  // was packed afresh. A follow-up keeps the last packing (so the documents' prefix, and its KV,
  // stays the same) when it holds every unit the new question needs most (strongest_units()) and
  // still fits; otherwise it packs again.
  struct Packing {
    std::string signature;  // of the documents and fit mode it was made for
    std::vector<Document> docs;
    std::vector<size_t> kept_units;
    std::string summary;
    std::vector<std::string> used;
    bool repacked = false;
  };
  const Packing* last_packing() const { return packing_ ? &*packing_ : nullptr; }

 private:
  Answer run(const std::string& question, std::vector<Turn> history, const AskOptions& options);
  Prompt fitted(const std::string& question, const std::vector<Turn>& history, const AskOptions& options,
                FitCheck& fit, std::string& packing);

  Engine& engine_;
  ChatFormatKind format_;
  std::vector<Document> docs_;
  std::vector<Turn> history_;
  std::string system_prompt_;
  std::unique_ptr<Session> session_;
  Recorder* recorder_ = nullptr;
  std::unordered_map<size_t, int64_t> token_cache_;  // hash of laid-out text -> tokens
  // Packing: the index of the documents (token counts of every unit; built once per documents) and
  // the last packing made.
  std::string index_signature_;
  std::unique_ptr<PackingIndex> packing_index_;
  std::optional<Packing> packing_;
  std::string documents_signature() const;
  KvStore* kv_store_ = nullptr;
  std::string model_id_;
  TokenCountCache* count_cache_ = nullptr;
  std::string tokenizer_id_;
  // Of a prompt fitted() made, the tokens every question over the same documents shares: the
  // system turn and the user turn's start.
  int64_t shared_prefix(const Prompt& prompt) const;
  const std::vector<Document>* prompt_docs_ = nullptr;  // the documents fitted() last laid out (docs_ or packed)
  // What the documents' prefix last saved to or loaded from the KV store was made of (documents,
  // packing, system prompt): a running session saves a prefix that changed (a document added)
  // once, without measuring it again for every question.
  std::string kv_prefix_signature_;
};

}  // namespace folio::chat
