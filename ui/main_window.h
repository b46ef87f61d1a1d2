// Folio's main window: documents on the left, the conversation in the middle (with the source
// pane that citations open), the performance panel on the right. It owns the EngineWorker's
// thread and turns what the user does into requests, and what the worker reports into widgets.
#pragma once

#include <QHash>
#include <QMainWindow>
#include <QPointer>
#include <QSet>
#include <QThread>
#include <functional>
#include <memory>
#include <optional>

#include "core/docs/prompt_layout.h"
#include "core/store/store.h"
#include "ui/app_settings.h"
#include "ui/engine_types.h"
#include "ui/fit_dialog.h"

class QAction;
class QTabWidget;
class QTimer;
class QSplitter;
class QLabel;

namespace folio::ui {

class ChatView;
class DocumentPanel;
class EngineWorker;
class ErrorBanner;
class HistoryPanel;
class NoticeBar;
class PerformancePanel;
class SettingsDialog;
class SourceViewer;

struct MainWindowOptions {
  QString database_path;         // "" = folio::store::Database::default_path()
  bool load_demo = true;         // start with the demo document
  bool persist_settings = true;  // save settings and window geometry (off for screenshots)
  QString model_override;        // use this model instead of the settings' (not saved)
  // PDFs are read by this program run as "PROGRAM --parse-pdf PATH" (the app itself; see
  // folio::docs::LoadOptions::pdf_worker); "" = in this process (tests).
  QString pdf_worker;
};

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(const MainWindowOptions& options = {}, QWidget* parent = nullptr);
  ~MainWindow() override;

  // What the user can do (menus and buttons call these; so do tests).
  void add_paths(const QStringList& paths);
  void remove_document(uint64_t key);
  void ask(const QString& question);
  void stop();
  void regenerate();
  void new_conversation();
  void compare();
  void apply_settings(const AppSettings& settings);
  // History: reopens a stored conversation (its messages, and its documents read again from their
  // paths; the chat says which changed or vanished); false if it cannot.
  bool open_conversation(int64_t id);
  void rename_conversation(qint64 id, const QString& title);
  void delete_conversation(int64_t id);  // hidden at once, deleted after 10 s unless undone
  void undo_deletion();
  void commit_deletion();
  bool export_markdown(int64_t id, const QString& path);
  SettingsDialog* open_settings();
  // The performance panel (View ▸ Performance panel, Ctrl+Shift+P), remembered across restarts.
  void set_performance_visible(bool visible);
  bool performance_visible() const;
  QAction* performance_action() const { return performance_action_; }

  // Opens what a citation points to in the source pane: a PDF page, or a file's lines.
  void open_source(const folio::docs::Document& doc, const folio::docs::CitationTarget& target);
  // Opens a passage found to support an answer: its PDF page with the passage highlighted, or its
  // lines marked in the file. The answer stays in view beside it.
  void open_passage(const folio::docs::Document& doc, const folio::chat::SourcePassage& passage);
  // The passages found for the answer of chat entry `entry` (empty when none or not an answer).
  std::vector<folio::chat::SourcePassage> answer_passages(int entry) const { return answer_passages_.value(entry); }

  // The choice when documents do not fit the context. Unset: a FitDialog asks the user. Set (tests):
  // called instead of the dialog; nullopt = the user cancelled.
  using FitChooser = std::function<std::optional<FitChoice>(const FitQuestion&)>;
  void set_fit_chooser(FitChooser chooser) { fit_chooser_ = std::move(chooser); }

  // A password-protected PDF: asks for its password (wrong_before: the last one given was wrong);
  // nullopt = the user cancelled. Unset: a password dialog asks. Set (tests): called instead.
  using PasswordAsker = std::function<std::optional<QString>(const QString& file_name, bool wrong_before)>;
  void set_password_asker(PasswordAsker asker) { password_asker_ = std::move(asker); }

  // Before Compare starts: its estimate; true = start. Unset: a dialog asks. Set (tests): instead.
  using CompareConfirm = std::function<bool(const QString& estimate)>;
  void set_compare_confirm(CompareConfirm confirm) { compare_confirm_ = std::move(confirm); }
  QString compare_verdict() const { return compare_verdict_; }  // the last comparison's last line

  // State.
  const AppSettings& settings() const { return settings_; }
  bool model_ready() const { return model_ready_; }
  bool busy() const { return current_request_ != 0 || comparing_; }
  bool ready_to_ask() const;  // model loaded, documents read and counted, nothing running
  Phase phase() const { return phase_; }
  const ModelInfo& model_info() const { return model_info_; }
  int64_t context_tokens() const;
  const std::optional<Metrics>& last_metrics() const { return last_metrics_; }
  QString model_error() const { return model_error_; }
  int64_t conversation_id() const { return conversation_id_; }
  int history_turns() const { return history_turns_; }  // turns the engine's conversation holds

  DocumentPanel* documents() const { return documents_; }
  HistoryPanel* history() const { return history_; }
  ChatView* chat() const { return chat_; }
  PerformancePanel* performance() const { return performance_; }
  SourceViewer* viewer() const { return viewer_; }
  // Closes the source pane (its close button); a performance panel that made room comes back.
  void close_source_pane() { close_viewer(); }
  ErrorBanner* banner() const { return banner_; }
  NoticeBar* gpu_notice() const { return gpu_notice_; }
  folio::store::Database* database() const { return db_.get(); }

 signals:
  void model_ready_changed(bool ready);
  void answer_text_changed(int length);  // the streamed answer grew
  void answer_finished();
  void compare_finished();
  void phase_changed(folio::ui::Phase phase);

 protected:
  void closeEvent(QCloseEvent* event) override;
  bool eventFilter(QObject* watched, QEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  void build_menus();
  void start_compare(const QStringList& modes, const QVector<double>& fractions);
  QString compare_estimate(const QVector<double>& fractions, int modes) const;
  double prefill_rate_tok_s() const;  // of this model's newest full prefill (0 = none measured)
  void show_backend_notice(const ModelInfo& info);
  void keep_chat_room();  // the splitter's sizes for the window's width
  void connect_worker();
  void load_model();
  void count_document(uint64_t key);
  void send_request();
  void on_does_not_fit(const FitProblem& problem);
  void apply_fit_choice(const FitChoice& choice, bool remembered = false);
  QString documents_signature() const;  // the ready documents (key and content), in prompt order
  void on_answer(const AskOutcome& outcome);
  void on_ask_failed(quint64 id, const QString& message);
  // Under answer `entry`: its written citations checked against `docs` and the passages found.
  void show_grounding(int entry, const QVector<folio::docs::Document>& docs,
                      const std::vector<folio::chat::SourcePassage>& passages);
  void ground_reopened();  // the reopened conversation's answers, once its documents are read again
  void on_document_read(uint64_t key, const folio::docs::Document& doc, const QString& error, bool encrypted,
                        const QString& password);
  void read_document(uint64_t key, const QString& path, const QString& password);
  void ask_password(uint64_t key, const QString& path, bool wrong_before);
  void open_citation(int entry, const folio::docs::CitationTarget& target);
  void show_viewer(int entry);  // opens the source pane wide, keeping chat entry `entry` in view
  void close_viewer();
  void refresh_ttft_chart();
  void refresh_send_state();
  void refresh_context();
  void set_busy(bool busy);
  void show_welcome();
  QVector<PromptDocument> prompt_documents(QVector<uint64_t>* keys = nullptr) const;
  QString model_path() const;
  QString store_model_name() const;

  MainWindowOptions options_;
  AppSettings settings_;
  QThread engine_thread_;
  EngineWorker* worker_ = nullptr;
  std::unique_ptr<folio::store::Database> db_;

  DocumentPanel* documents_ = nullptr;
  ChatView* chat_ = nullptr;
  PerformancePanel* performance_ = nullptr;
  SourceViewer* viewer_ = nullptr;
  ErrorBanner* banner_ = nullptr;
  NoticeBar* gpu_notice_ = nullptr;  // no usable GPU: once, until "Don't show again"
  QSplitter* center_split_ = nullptr;
  QSplitter* main_split_ = nullptr;
  QTabWidget* left_tabs_ = nullptr;  // Documents | History
  int docs_width_ = 0;               // the documents' width the user dragged to (0 = not dragged)
  HistoryPanel* history_ = nullptr;
  QTimer* delete_timer_ = nullptr;
  QHash<QString, QString> reopen_expected_;  // reopened conversation: absolute path -> content hash then
  QSet<uint64_t> reopen_same_;               // reopened documents read again with the same content
  QVector<std::pair<int, QString>> reopen_answers_;  // reopened answers to ground: chat entry, its question
  uint64_t conversation_generation_ = 0;             // grows with each new or reopened conversation
  QAction* performance_action_ = nullptr;
  QLabel* status_model_ = nullptr;
  QPointer<SettingsDialog> settings_dialog_;  // cleared by Qt when the dialog closes (WA_DeleteOnClose)

  bool model_ready_ = false;
  bool loading_ = false;
  QString model_error_;
  ModelInfo model_info_;
  Phase phase_ = Phase::Idle;
  std::optional<Metrics> last_metrics_;

  uint64_t next_request_ = 0;
  uint64_t current_request_ = 0;
  std::shared_ptr<CancelToken> current_cancel_;
  QString pending_question_;
  QVector<uint64_t> request_doc_keys_;  // the documents of the current request, in prompt order
  bool regenerating_ = false;           // the current request asks the last question again
  int history_turns_ = 0;               // turns of the worker's conversation (regenerate needs 2)
  int64_t conversation_id_ = 0;         // where the worker's store recorder keeps the chat
  bool comparing_ = false;
  QHash<int, QVector<folio::docs::Document>> answer_sources_;  // chat entry -> documents it was asked over
  QHash<int, std::vector<folio::chat::SourcePassage>> answer_passages_;  // chat entry -> passages that support it
  bool perf_hidden_for_viewer_ = false;  // the performance panel makes room while the source pane is open
  double viewer_share_ = 0.55;  // of the chat column's width the source pane takes (the user may drag it)
  QHash<uint64_t, std::shared_ptr<CancelToken>> reads_;        // documents being read
  FitChooser fit_chooser_;
  PasswordAsker password_asker_;
  CompareConfirm compare_confirm_;
  QString compare_estimate_;
  QString compare_verdict_;
  QVector<MeasuredRun> compare_runs_;  // of the comparison that runs
  // "Keep the beginning of this document" or "the parts most relevant to each question", chosen in
  // this conversation over these documents.
  struct RememberedFit {
    QString documents;  // documents_signature() when chosen
    uint64_t truncate_key = 0;
    bool relevant = false;  // fill the context with the parts most relevant to each question
  };
  std::optional<RememberedFit> remembered_fit_;
};

}  // namespace folio::ui
