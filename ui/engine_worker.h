// EngineWorker: the engine on its own thread. A QObject moved to a QThread; the GUI posts work to
// it (QMetaObject::invokeMethod, queued) and hears back through queued signals: load progress,
// prefill progress, streamed text, metrics, errors. Stop is a CancelToken in each request that
// the GUI thread sets directly (it is atomic); the engine polls it between prefill chunks and
// between tokens. Nothing here blocks the GUI thread and nothing in ui/ waits on this object.
//
// One Session per conversation: the documents come first in the prompt, so a follow-up question
// shares the prompt's prefix and Session::run reuses its KV cache (Metrics::reused_tokens).
#pragma once

#include <QElapsedTimer>
#include <QHash>
#include <QObject>
#include <memory>

#include "core/docs/token_budget.h"
#include "core/engine/engine.h"
#include "core/tokenizer/chat_format.h"
#include "ui/engine_types.h"

namespace folio::ui {

class EngineWorker : public QObject {
  Q_OBJECT

 public:
  EngineWorker();
  ~EngineWorker() override;

  // These run on the worker's thread: post them, e.g.
  //   QMetaObject::invokeMethod(worker, [=] { worker->ask(request); }, Qt::QueuedConnection);
  void load_model(const folio::ui::EngineConfig& config);
  // Tokens of a document as the prompt lays it out (document_counted / document_count_failed).
  void count_document(quint64 key, const folio::docs::Document& doc);
  // Forgets the conversation's KV cache (a new conversation starts from scratch).
  void reset_conversation();
  void ask(const folio::ui::AskRequest& request);
  // Measures TTFT of the documents' prompt at several lengths under each attention mode.
  void compare(const folio::ui::CompareRequest& request);
  // Frees the engine (call before the thread ends).
  void unload();

  // The system text that holds the documents. Chat models are told how to cite; base models
  // (plain format) get the documents alone, as they cannot follow the instruction.
  static QString documents_system_text(const QVector<folio::docs::Document>& docs, bool with_instruction);

 signals:
  void phase_changed(folio::ui::Phase phase);
  void load_progress(double fraction, const QString& stage);
  void model_loaded(const folio::ui::ModelInfo& info);
  void load_failed(const QString& message);
  void document_counted(quint64 key, qint64 tokens);
  void document_count_failed(quint64 key, const QString& message);
  void prefill_progress(quint64 request, qint64 done_tokens, qint64 total_tokens, double elapsed_ms);
  // Text generated since the last emission (coalesced to about 60 per second), the tokens so far
  // and the time since the first token.
  void tokens_arrived(quint64 request, const QString& text, qint64 tokens, double decode_ms);
  void ask_finished(const folio::ui::AskOutcome& outcome);
  void ask_failed(quint64 request, const QString& message);
  void prompt_does_not_fit(const folio::ui::FitProblem& problem);
  void run_measured(const folio::ui::MeasuredRun& run);
  void compare_finished(quint64 request, bool cancelled, const QString& error);

 private:
  int64_t session_context(int64_t requested) const;
  int64_t prefill_chunk() const;
  std::shared_ptr<const sparse::SparseConfig> sparse_config_with_threshold(int64_t threshold) const;  // tokens per prefill chunk (0 = the session's default)
  int64_t document_tokens(const folio::docs::Document& doc);
  folio::docs::Document prepared(const PromptDocument& d);
  std::vector<int32_t> encode_prompt(const QVector<folio::docs::Document>& docs, const QVector<ChatTurn>& history,
                                     const QString& question) const;
  QString describe(const std::exception& e) const;

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Session> session_;
  ModelInfo info_;
  ChatFormatKind format_ = ChatFormatKind::Plain;
  std::unique_ptr<folio::docs::TokenCounter> counter_;  // over engine_'s tokenizer; caches by layout
  QHash<QString, folio::docs::Document> truncated_;     // content hash + keep -> cut document
};

}  // namespace folio::ui
