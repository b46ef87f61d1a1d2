// EngineWorker: the engine on its own thread. A QObject moved to a QThread; the GUI posts work to
// it (QMetaObject::invokeMethod, queued) and hears back through queued signals: load progress,
// prefill progress, streamed text, metrics, errors. Stop is a CancelToken in each request that
// the GUI thread sets directly (it is atomic); the engine polls it between prefill chunks and
// between tokens. Nothing here blocks the GUI thread and nothing in ui/ waits on this object.
//
// The chat itself (prompt, history, fit check, KV prefix reuse, recording in the store) is
// folio::chat::Conversation, the service folio-cli uses too; this class only carries requests to
// it on the engine's thread and its results back as signals.
#pragma once

#include <QElapsedTimer>
#include <QHash>
#include <QObject>
#include <memory>

#include "core/chat/conversation.h"
#include "core/chat/kv_store.h"
#include "core/docs/token_budget.h"
#include "core/engine/engine.h"
#include "core/store/chat_recorder.h"
#include "core/store/token_counts.h"
#include "ui/engine_types.h"

#if FOLIO_UI_REMOTE
namespace folio::remote {
class RemoteEngine;
}
#endif

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
  // Records the conversation's turns in the store at this path (its own connection, on this thread).
  void open_store(const QString& database_path);
  // Forgets the conversation (history, KV cache); the next answer starts a new stored conversation.
  void reset_conversation();
  // Goes on with a stored conversation (reopened from the history): these turns are the history,
  // the next answers are recorded in it; the KV cache is rebuilt by the next question.
  void continue_conversation(qint64 conversation_id, const std::vector<folio::chat::Turn>& turns);
  void ask(const folio::ui::AskRequest& request);
  // Measures TTFT of the documents' prompt at several lengths under each attention mode.
  void compare(const folio::ui::CompareRequest& request);
  // Frees the engine (call before the thread ends).
  void unload();

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
  int64_t prefill_chunk() const;
  std::shared_ptr<const sparse::SparseConfig> sparse_config_with_threshold(int64_t threshold) const;  // tokens per prefill chunk (0 = the session's default)
  int64_t document_tokens(const folio::docs::Document& doc);
  std::vector<folio::chat::Document> prepared(const QVector<PromptDocument>& docs);
  QString describe(const std::exception& e) const;

#if FOLIO_UI_REMOTE
  // The remote engine (EngineConfig::backend "remote"), in place of engine_: the same documents,
  // system turn and history go to it as chat messages; the history is kept here.
  void load_remote(const EngineConfig& config, std::vector<folio::chat::Turn> history);
  void ask_remote(const AskRequest& request);
  std::unique_ptr<folio::remote::RemoteEngine> remote_;
  std::vector<folio::chat::Turn> remote_history_;
  QString remote_url_;
#endif

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<folio::chat::Conversation> conversation_;
  std::unique_ptr<folio::store::ChatRecorder> recorder_;
  // Token counts kept in the store (through recorder_'s connection), so documents opened again are
  // neither counted nor indexed for packing again. Set when a model and the store are both there.
  std::unique_ptr<folio::store::StoredTokenCounts> token_counts_;
  void attach_token_counts();
  QString store_error_;  // why the store could not be opened here ("" = fine or none)
  ModelInfo info_;
  std::unique_ptr<folio::docs::TokenCounter> counter_;  // over engine_'s tokenizer; caches by layout
  QHash<QString, folio::docs::Document> truncated_;     // content hash + keep -> cut document
  std::vector<folio::chat::Turn> pending_history_;      // for the next model, when none is loaded
  // Grounding of answers over the whole documents of the last request, kept while they are the same.
  std::unique_ptr<folio::chat::KvStore> kv_store_;  // the documents' KV on disk (made on first use)
  std::unique_ptr<folio::chat::GroundingIndex> grounding_;
  QString grounding_key_;
  std::vector<folio::chat::SourcePassage> ground(const AskRequest& request, const QString& question,
                                                 const QString& answer);
};

}  // namespace folio::ui
