#include "ui/main_window.h"

#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QCloseEvent>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFutureWatcher>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QRandomGenerator>
#include <QSettings>
#include <QSignalBlocker>
#include <QSplitter>
#include <QStatusBar>
#include <QTabWidget>
#include <QTimer>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>
#include <algorithm>

#include "core/docs/ingest.h"
#include "core/docs/prompt_layout.h"
#include "core/store/stored_documents.h"
#include "ui/app_icon.h"
#include "ui/attention_modes.h"
#include "ui/chat_view.h"
#include "ui/conversation_export.h"
#include "ui/demo.h"
#include "ui/document_panel.h"
#include "ui/engine_worker.h"
#include "ui/error_banner.h"
#include "ui/history_panel.h"
#include "ui/performance_panel.h"
#include "ui/settings_dialog.h"
#include "ui/source_viewer.h"

namespace folio::ui {

namespace {

QString count(int64_t n) {
  return QLocale().toString(qint64(n));
}

QString ms_text(double ms) {
  return ms < 1000.0 ? QObject::tr("%1 ms").arg(qRound64(ms)) : QObject::tr("%1 s").arg(ms / 1000.0, 0, 'f', 2);
}

// One line under an answer: what it cost, from the engine's metrics.
QString metrics_footer(const Metrics& m) {
  QStringList parts;
  if (m.decode_tokens > 0) parts << QObject::tr("first token after %1").arg(ms_text(m.ttft_ms));
  if (m.prefill_tokens > 0)
    parts << QObject::tr("read %1 tokens at %2 tok/s").arg(count(m.prefill_tokens)).arg(m.prefill_tok_s, 0, 'f', 0);
  if (m.reused_tokens > 0) parts << QObject::tr("reused %1 tokens").arg(count(m.reused_tokens));
  // A rate needs two tokens: a run stopped before then says "stopped", never "0 tok/s".
  if (m.decode_tok_s > 0.0)
    parts << QObject::tr("%1 tokens at %2 tok/s").arg(count(m.decode_tokens)).arg(m.decode_tok_s, 0, 'f', 1);
  else if (m.decode_tokens > 0)
    parts << (m.decode_tokens == 1 ? QObject::tr("1 token") : QObject::tr("%1 tokens").arg(count(m.decode_tokens)));
  switch (m.stop) {
    case StopReason::Cancelled:
      parts << QObject::tr("stopped");
      break;
    case StopReason::MaxTokens:
      parts << QObject::tr("reached the answer limit (Settings ▸ Max answer tokens)");
      break;
    case StopReason::ContextFull:
      parts << QObject::tr("the context is full");
      break;
    default:
      break;
  }
  return parts.join(" · ");
}

// The line that ends a comparison: dense against sparse at the longest length both measured.
QString verdict_line(const QVector<MeasuredRun>& runs, const QString& backend) {
  const MeasuredRun* dense = nullptr;
  const MeasuredRun* sparse = nullptr;
  for (const MeasuredRun& r : runs) {
    const MeasuredRun*& slot = r.attention_mode == "dense" ? dense : sparse;
    if (r.attention_mode != "dense" && r.attention_mode != "sparse") continue;
    if (slot == nullptr || r.metrics.prompt_tokens >= slot->metrics.prompt_tokens) slot = &r;
  }
  if (dense == nullptr || sparse == nullptr || dense->metrics.ttft_ms <= 0 || sparse->metrics.ttft_ms <= 0)
    return QObject::tr("Comparison done; dense and sparse were not both measured, so there is no verdict.");
  const QString where = QObject::tr("at %1 tokens on this %2")
                            .arg(count(sparse->metrics.prompt_tokens),
                                 backend.startsWith("cuda", Qt::CaseInsensitive) ? QObject::tr("GPU")
                                                                                 : QObject::tr("CPU"));
  const double ratio = dense->metrics.ttft_ms / sparse->metrics.ttft_ms;
  QString line;
  if (ratio >= 1.05)
    line = QObject::tr("Sparse prefill %1x faster than dense %2").arg(ratio, 0, 'f', 1).arg(where);
  else if (ratio <= 1.0 / 1.05)
    line = QObject::tr("Sparse prefill %1x slower than dense %2").arg(1.0 / ratio, 0, 'f', 1).arg(where);
  else
    line = QObject::tr("Sparse and dense prefill take the same time (within 5%) %1").arg(where);
  line += QObject::tr(" (first token after %1 vs. %2)")
              .arg(ms_text(sparse->metrics.ttft_ms), ms_text(dense->metrics.ttft_ms));
  if (sparse->metrics.sparse_chunks == 0) line += QObject::tr("; no chunk used a sparse pattern at this length");
  if (sparse->first_token >= 0 && dense->first_token >= 0)
    line += sparse->first_token == dense->first_token ? QObject::tr("; same first token")
                                                      : QObject::tr("; the first token differs");
  return line + ".";
}

struct ReadResult {
  folio::docs::Document doc;
  QString error;
  bool encrypted = false;  // a password-protected PDF: no password or a wrong one
  bool from_store = false;  // a PDF read before: its text came from the store, not parsed again
};

}  // namespace

MainWindow::MainWindow(const MainWindowOptions& options, QWidget* parent)
    : QMainWindow(parent), options_(options), settings_(AppSettings::load()) {
  init_resources();
  setWindowTitle(tr("Folio"));
  setAcceptDrops(true);
  resize(1440, 900);

  documents_ = new DocumentPanel(this);
  chat_ = new ChatView(this);
  performance_ = new PerformancePanel(this);
  viewer_ = new SourceViewer(this);
  viewer_->hide();
  banner_ = new ErrorBanner(this);
  gpu_notice_ = new NoticeBar(this);
  gpu_notice_->setObjectName("gpuNotice");

  auto* center = new QWidget(this);
  auto* center_layout = new QVBoxLayout(center);
  center_layout->setContentsMargins(6, 6, 6, 6);
  center_layout->addWidget(banner_);
  center_layout->addWidget(gpu_notice_);
  center_split_ = new QSplitter(Qt::Horizontal, center);
  center_split_->addWidget(chat_);
  center_split_->addWidget(viewer_);
  center_split_->setStretchFactor(0, 3);
  center_split_->setStretchFactor(1, 2);
  center_layout->addWidget(center_split_, 1);

  history_ = new HistoryPanel(this);
  left_tabs_ = new QTabWidget(this);
  left_tabs_->setObjectName("leftTabs");
  left_tabs_->addTab(documents_, tr("Documents"));
  left_tabs_->addTab(history_, tr("History"));
  delete_timer_ = new QTimer(this);
  delete_timer_->setSingleShot(true);
  delete_timer_->setInterval(10000);  // the time to undo a deletion
  connect(delete_timer_, &QTimer::timeout, this, &MainWindow::commit_deletion);

  main_split_ = new QSplitter(Qt::Horizontal, this);
  main_split_->addWidget(left_tabs_);
  main_split_->addWidget(center);
  main_split_->addWidget(performance_);
  main_split_->setStretchFactor(0, 0);
  main_split_->setStretchFactor(1, 1);
  main_split_->setStretchFactor(2, 0);
  main_split_->setChildrenCollapsible(false);
  setCentralWidget(main_split_);
  main_split_->installEventFilter(this);
  // A width the user drags the documents to is kept (as far as the chat's half allows).
  connect(main_split_, &QSplitter::splitterMoved, this, [this](int, int index) {
    if (index == 1) docs_width_ = main_split_->sizes().value(0);
  });

  status_model_ = new QLabel(this);
  statusBar()->addPermanentWidget(status_model_);
  build_menus();

  if (options_.persist_settings) {
    QSettings s(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio");
    restoreGeometry(s.value("window/geometry").toByteArray());
    set_performance_visible(s.value("window/performance_panel", true).toBool());
  }

  // The engine's thread. The worker is deleted in ~MainWindow after the thread has stopped.
  worker_ = new EngineWorker();
  worker_->moveToThread(&engine_thread_);
  engine_thread_.setObjectName("folio-engine");
  connect_worker();
  engine_thread_.start();

  connect(documents_, &DocumentPanel::add_files_requested, this, [this] {
    const QStringList files = QFileDialog::getOpenFileNames(
        this, tr("Add documents"), QString(),
        tr("Documents (*.pdf *.txt *.md *.markdown *.rst *.tex *.html *.json *.csv *.c *.cc *.cpp *.h *.hpp *.py "
           "*.rs *.go *.java *.js *.ts);;All files (*)"));
    add_paths(files);
  });
  connect(documents_, &DocumentPanel::add_folder_requested, this, [this] {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Add a folder (source tree)"));
    if (!dir.isEmpty()) add_paths({dir});
  });
  connect(documents_, &DocumentPanel::paths_dropped, this, &MainWindow::add_paths);
  connect(documents_, &DocumentPanel::remove_requested, this, [this](quint64 key) { remove_document(key); });
  connect(documents_, &DocumentPanel::entries_changed, this, &MainWindow::refresh_send_state);
  connect(documents_, &DocumentPanel::use_whole_requested, this, [this](quint64 key) {
    documents_->set_keep_tokens(key, 0);
    documents_->set_selection(key, {}, 0);
    if (const DocumentEntry* e = documents_->entry(key))
      chat_->add_notice(tr("**%1** is used whole again.").arg(e->doc.title));
  });
  connect(chat_, &ChatView::send_requested, this, &MainWindow::ask);
  connect(chat_, &ChatView::stop_requested, this, &MainWindow::stop);
  connect(chat_, &ChatView::regenerate_requested, this, &MainWindow::regenerate);
  connect(chat_, &ChatView::suggestion_activated, this, [this](int i) {
    if (i >= 0 && i < chat_->suggestions().size()) ask(chat_->suggestions()[i]);
  });
  connect(chat_, &ChatView::copy_requested, this, [this](int i) {
    if (i < 0 || i >= chat_->count()) return;
    QGuiApplication::clipboard()->setText(chat_->entry(i).text);
    statusBar()->showMessage(tr("Answer copied"), 3000);
  });
  connect(chat_, &ChatView::citation_activated, this, &MainWindow::open_citation);
  connect(chat_, &ChatView::source_activated, this, [this](int entry, int index) {
    const auto docs = answer_sources_.find(entry);
    const auto passages = answer_passages_.find(entry);
    if (docs == answer_sources_.end() || passages == answer_passages_.end() || index < 0 ||
        index >= static_cast<int>(passages->size()))
      return;
    const folio::chat::SourcePassage& p = (*passages)[static_cast<size_t>(index)];
    if (p.document >= static_cast<size_t>(docs->size())) return;
    open_passage((*docs)[static_cast<int>(p.document)], p);
    show_viewer(entry);
  });
  // The width the user drags the source pane to is kept for the next time it opens.
  connect(center_split_, &QSplitter::splitterMoved, this, [this](int, int) {
    const QList<int> sizes = center_split_->sizes();
    if (viewer_->isVisible() && sizes.size() == 2 && sizes[0] + sizes[1] > 0)
      viewer_share_ = std::clamp(static_cast<double>(sizes[1]) / (sizes[0] + sizes[1]), 0.2, 0.8);
  });
  connect(viewer_, &SourceViewer::close_requested, this, &MainWindow::close_viewer);
  connect(performance_, &PerformancePanel::compare_requested, this, &MainWindow::compare);
  connect(gpu_notice_, &NoticeBar::dismissed_for_good, this, [] {
    QSettings(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio").setValue("notices/no_gpu_dismissed", true);
  });

  try {
    db_ = std::make_unique<folio::store::Database>(
        options_.database_path.isEmpty() ? folio::store::Database::default_path() : options_.database_path);
  } catch (const std::exception& e) {
    banner_->show_message(
        tr("Conversations and measurements will not be saved: %1").arg(QString::fromStdString(e.what())));
  }
  history_->set_database(db_.get());
  history_->refresh();
  connect(history_, &HistoryPanel::open_requested, this, [this](qint64 id) { open_conversation(id); });
  connect(history_, &HistoryPanel::rename_requested, this, &MainWindow::rename_conversation);
  connect(history_, &HistoryPanel::delete_requested, this, [this](qint64 id) { delete_conversation(id); });
  connect(history_, &HistoryPanel::undo_requested, this, &MainWindow::undo_deletion);
  connect(history_, &HistoryPanel::export_requested, this, [this](qint64 id) {
    const QString path = QFileDialog::getSaveFileName(this, tr("Export as Markdown"), QString(), tr("Markdown (*.md)"));
    if (!path.isEmpty()) export_markdown(id, path);
  });
  // The engine's thread records the chat as it answers, through its own connection to the file.
  if (db_)
    QMetaObject::invokeMethod(
        worker_, [w = worker_, path = db_->path()] { w->open_store(path); }, Qt::QueuedConnection);
  refresh_ttft_chart();

  if (options_.load_demo) {
    const QString demo = demo_document_path(demo_for_model(model_path()));
    if (demo.isEmpty())
      banner_->show_message(
          tr("The demo document could not be written to the app's data folder; add your own "
             "documents instead."));
    else
      add_paths({demo});
  }
  show_welcome();
  load_model();
  refresh_send_state();
}

MainWindow::~MainWindow() {
  commit_deletion();  // a deletion waiting for undo happens (closeEvent may not have run)
  // Stop what runs (the engine checks between chunks and tokens), then end the thread.
  if (current_cancel_) current_cancel_->cancel();
  for (auto& c : reads_) c->cancel();
  QMetaObject::invokeMethod(
      worker_, [w = worker_] { w->unload(); }, Qt::QueuedConnection);
  engine_thread_.quit();
  engine_thread_.wait();
  delete worker_;
}

void MainWindow::build_menus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("Add &files…"), QKeySequence::Open, documents_, &DocumentPanel::add_files_requested);
  file->addAction(tr("Add f&older…"), documents_, &DocumentPanel::add_folder_requested);
  file->addSeparator();
  file->addAction(tr("&New conversation"), QKeySequence::New, this, &MainWindow::new_conversation);
  file->addAction(tr("&Export conversation as Markdown…"), this, [this] {
    if (conversation_id_ <= 0) {
      statusBar()->showMessage(tr("Nothing to export yet: ask a question first"), 5000);
      return;
    }
    const QString path = QFileDialog::getSaveFileName(this, tr("Export as Markdown"), QString(), tr("Markdown (*.md)"));
    if (!path.isEmpty()) export_markdown(conversation_id_, path);
  });
  file->addSeparator();
  file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);
  QMenu* chat = menuBar()->addMenu(tr("&Chat"));
  chat->addAction(tr("&Stop"), QKeySequence(Qt::Key_Escape), this, &MainWindow::stop);
  chat->addAction(tr("&Regenerate answer"), QKeySequence(tr("Ctrl+R")), this, &MainWindow::regenerate);
  QMenu* view = menuBar()->addMenu(tr("&View"));
  performance_action_ = view->addAction(tr("&Performance panel"));
  performance_action_->setObjectName("togglePerformancePanel");
  performance_action_->setCheckable(true);
  performance_action_->setChecked(true);
  performance_action_->setShortcut(QKeySequence(tr("Ctrl+Shift+P")));
  connect(performance_action_, &QAction::toggled, this, &MainWindow::set_performance_visible);
  QMenu* perf = menuBar()->addMenu(tr("&Performance"));
  perf->addAction(tr("&Compare attention modes"), this, &MainWindow::compare);
  QMenu* settings = menuBar()->addMenu(tr("&Settings"));
  settings->addAction(tr("&Preferences…"), QKeySequence::Preferences, this, [this] { open_settings(); });
  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About Folio"), this, [this] {
    // The app's own icon (the desktop menu's), not the generic information sign.
    QMessageBox box(this);
    box.setWindowTitle(tr("About Folio"));
    box.setObjectName("aboutBox");
    box.setIconPixmap(app_icon().pixmap(96, 96));
    box.setTextFormat(Qt::RichText);
    box.setText(tr("<b>Folio</b> %1<br>Chat with long documents through a language model that runs inside the "
                   "app.<br>Apache-2.0.")
                    .arg(QCoreApplication::applicationVersion()));
    box.exec();
  });
}

void MainWindow::connect_worker() {
  connect(worker_, &EngineWorker::phase_changed, this, [this](Phase p) {
    phase_ = p;
    performance_->set_phase(p);
    emit phase_changed(p);
  });
  connect(worker_, &EngineWorker::load_progress, this, [this](double f, const QString& stage) {
    performance_->set_load_progress(f, stage);
    if (settings_dialog_ != nullptr) settings_dialog_->show_load_progress(f, stage);
  });
  connect(worker_, &EngineWorker::model_loaded, this, [this](const ModelInfo& info) {
    loading_ = false;
    model_ready_ = true;
    model_error_.clear();
    model_info_ = info;
    if (banner_->text().startsWith(tr("The model could not be loaded"))) banner_->hide();
    show_backend_notice(info);
    performance_->set_model(info, context_tokens());
    if (settings_dialog_ != nullptr) settings_dialog_->show_loaded(info);
    refresh_context();
    for (const auto& e : documents_->entries())
      if (e.state == DocumentEntry::State::Counting || e.state == DocumentEntry::State::Ready) count_document(e.key);
    show_welcome();
    refresh_ttft_chart();
    refresh_send_state();
    emit model_ready_changed(true);
  });
  connect(worker_, &EngineWorker::load_failed, this, [this](const QString& message) {
    loading_ = false;
    model_ready_ = false;
    model_error_ = message;
    banner_->show_message(tr("The model could not be loaded: %1").arg(message), tr("Open Settings…"),
                          [this] { open_settings(); });
    if (settings_dialog_ != nullptr) settings_dialog_->show_load_error(message);
    performance_->set_model(ModelInfo{}, 0);
    status_model_->setText(tr("No model"));
    for (const auto& e : documents_->entries())
      if (e.state == DocumentEntry::State::Counting) documents_->set_count_note(e.key, tr("no model is loaded"));
    refresh_send_state();
    emit model_ready_changed(false);
  });
  connect(worker_, &EngineWorker::document_counted, this,
          [this](quint64 key, qint64 tokens) { documents_->set_tokens(key, tokens); });
  connect(worker_, &EngineWorker::document_count_failed, this,
          [this](quint64 key, const QString& message) { documents_->set_count_note(key, message); });
  connect(worker_, &EngineWorker::prefill_progress, this, [this](quint64, qint64 done, qint64 total, double ms) {
    performance_->set_prefill_progress(done, total, ms);
  });
  connect(worker_, &EngineWorker::tokens_arrived, this, [this](quint64 id, const QString& text, qint64 n, double ms) {
    if (id != current_request_) return;
    chat_->append_to_answer(text);
    performance_->set_decode_progress(n, ms);
    emit answer_text_changed(static_cast<int>(chat_->last_answer().size()));
  });
  connect(worker_, &EngineWorker::ask_finished, this, &MainWindow::on_answer);
  connect(worker_, &EngineWorker::ask_failed, this, &MainWindow::on_ask_failed);
  connect(worker_, &EngineWorker::prompt_does_not_fit, this, &MainWindow::on_does_not_fit);
  connect(worker_, &EngineWorker::run_measured, this, [this](const MeasuredRun& run) {
    compare_runs_.push_back(run);
    performance_->show_metrics(run.metrics);
    if (db_) {
      try {
        db_->record_run(run.metrics, store_model_name(), run.attention_mode, run.metrics.attention_density);
      } catch (const std::exception& e) {
        banner_->show_message(tr("The measurement could not be saved: %1").arg(QString::fromStdString(e.what())));
      }
    }
    refresh_ttft_chart();
  });
  connect(worker_, &EngineWorker::compare_finished, this, [this](quint64, bool cancelled, const QString& error) {
    comparing_ = false;
    current_cancel_.reset();
    performance_->set_comparing(false);
    if (!error.isEmpty()) {
      chat_->add_notice(tr("The comparison failed: %1").arg(error), true);
    } else if (cancelled) {
      compare_verdict_ = tr("Comparison stopped after %1 of its runs; no verdict.").arg(compare_runs_.size());
      statusBar()->showMessage(compare_verdict_, 8000);
    } else {
      compare_verdict_ = verdict_line(compare_runs_, model_info_.backend);
      chat_->add_notice(compare_verdict_);
      statusBar()->showMessage(compare_verdict_, 15000);
    }
    set_busy(false);
    emit compare_finished();
  });
}

QString MainWindow::model_path() const {
  return options_.model_override.isEmpty() ? settings_.effective_model_path() : options_.model_override;
}

QString MainWindow::store_model_name() const {
  return model_info_.name;
}

int64_t MainWindow::context_tokens() const {
  return model_ready_ ? effective_context(settings_.context_tokens, model_info_.max_context) : 0;
}

void MainWindow::load_model() {
  loading_ = true;
  model_ready_ = false;
  EngineConfig config;
  config.model_path = model_path();
  config.backend = settings_.backend;
  // A model given on the command line runs here.
  if (config.backend == "remote" && !options_.model_override.isEmpty()) config.backend = "cpu";
  config.threads = settings_.threads;
  config.gpus = settings_.gpu_list();
  config.kv_dtype = settings_.kv_dtype;
  config.remote_url = settings_.remote_url;
  config.remote_api_key = settings_.remote_api_key;
  config.remote_model = settings_.remote_model;
  status_model_->setText(config.backend == "remote"
                             ? tr("Connecting to %1…").arg(config.remote_url)
                             : tr("Loading %1…").arg(QFileInfo(config.model_path).fileName()));
  emit model_ready_changed(false);
  QMetaObject::invokeMethod(
      worker_, [w = worker_, config] { w->load_model(config); }, Qt::QueuedConnection);
  refresh_send_state();
}

void MainWindow::refresh_context() {
  const int64_t ctx = context_tokens();
  documents_->set_context(ctx, ctx > 0 ? answer_reserve(ctx, settings_.max_tokens) : 0);
  if (model_ready_)
    status_model_->setText(tr("%1 · %2 · context %3 tokens · chat format %4")
                               .arg(model_info_.name, model_info_.backend, count(ctx), model_info_.chat_format));
}

bool MainWindow::ready_to_ask() const {
  return model_ready_ && !busy() && !documents_->busy();
}

void MainWindow::refresh_send_state() {
  QString why;
  if (loading_)
    why = tr("The model is loading…");
  else if (!model_ready_)
    why = tr("No model is loaded: choose one in Settings.");
  else if (documents_->busy())
    why = tr("Reading documents…");
  chat_->set_send_blocked(why);
  QString compare_why = why;
  if (compare_why.isEmpty() && prompt_documents().isEmpty()) compare_why = tr("Add a document first.");
  // While it measures, the button cancels.
  performance_->set_compare_enabled(comparing_ || (compare_why.isEmpty() && !busy()), compare_why);
}

void MainWindow::set_busy(bool b) {
  chat_->set_busy(b);
  refresh_send_state();
}

void MainWindow::show_welcome() {
  DemoDocument demo = DemoDocument::None;
  for (const DemoDocument d : {DemoDocument::Manual, DemoDocument::PlantedFacts})
    if (std::any_of(documents_->entries().begin(), documents_->entries().end(),
                    [&](const DocumentEntry& e) { return e.path.endsWith("/" + demo_file_name(d)); }))
      demo = d;
  const QString name = model_ready_ ? model_info_.name : QFileInfo(model_path()).fileName();
  const bool tiny = name.startsWith("stories", Qt::CaseInsensitive);
  chat_->set_welcome(welcome_markdown(name, tiny, demo), demo_questions(demo));
}

// ---------------------------------------------------------------------------------------------
// Documents

void MainWindow::add_paths(const QStringList& paths) {
  for (const QString& raw : paths) {
    const QString path = QFileInfo(raw).absoluteFilePath();
    const bool known = std::any_of(documents_->entries().begin(), documents_->entries().end(),
                                   [&](const DocumentEntry& e) { return e.path == path; });
    if (known) {
      statusBar()->showMessage(tr("%1 is already in the list").arg(QFileInfo(path).fileName()), 5000);
      continue;
    }
    read_document(documents_->add_reading(path), path, {});
  }
}

void MainWindow::read_document(uint64_t key, const QString& path, const QString& password) {
  auto cancel = std::make_shared<CancelToken>();
  reads_.insert(key, cancel);
  auto* watcher = new QFutureWatcher<ReadResult>(this);
  connect(watcher, &QFutureWatcher<ReadResult>::finished, this, [this, watcher, key, password] {
    const ReadResult r = watcher->result();
    watcher->deleteLater();
    reads_.remove(key);
    if (r.from_store)
      statusBar()->showMessage(
          tr("%1: its text was kept from an earlier reading, so it was not parsed again").arg(r.doc.title), 8000);
    on_document_read(key, r.doc, r.error, r.encrypted, password);
  });
  // Loaders are synchronous and may take long (a large PDF, a source tree): a pool thread reads.
  const QString database = db_ ? db_->path() : QString();
  watcher->setFuture(QtConcurrent::run([path, cancel, password, worker = options_.pdf_worker, database]() {
    ReadResult r;
    try {
      folio::docs::LoadOptions o;
      o.cancel = cancel.get();
      o.pdf_password = password;
      o.pdf_worker = worker;  // PDFs are read in a guarded process
      // A PDF read before is looked up in the store instead of parsed (a connection of this thread's own).
      std::unique_ptr<folio::store::Database> db;
      std::unique_ptr<folio::store::StoredDocuments> kept;
      if (!database.isEmpty()) {
        try {
          db = std::make_unique<folio::store::Database>(database);
          kept = std::make_unique<folio::store::StoredDocuments>(*db);
          o.document_cache = kept.get();
        } catch (const std::exception&) {
          // the window said at start that the store cannot be used; the PDF is parsed
        }
      }
      if (kept) kept->set_defer_writes(true);
      r.doc = folio::docs::load_document(path, o);
      r.from_store = kept && kept->hits() > 0;
      // A PDF parsed for the first time is kept in the store after the window has it (saving the
      // R manual's text and its full-text index takes about a second).
      if (kept) {
        if (auto deferred = kept->take_deferred(); !deferred.empty())
          (void)QtConcurrent::run([database, deferred = std::move(deferred)] {
            (void)folio::store::StoredDocuments::save_deferred(database, deferred);
          });
      }
    } catch (const folio::docs::DocumentError& e) {
      r.error = QString::fromStdString(e.what());
      r.encrypted = e.problem() == folio::docs::DocumentProblem::Encrypted &&
                    !QString::fromStdString(e.what()).contains("security scheme");
    } catch (const std::exception& e) {
      r.error = QString::fromStdString(e.what());
    }
    return r;
  }));
}

void MainWindow::ask_password(uint64_t key, const QString& path, bool wrong_before) {
  const QString name = QFileInfo(path).fileName();
  auto answer = [this, key, path, name](const std::optional<QString>& password) {
    if (documents_->entry(key) == nullptr) return;  // removed meanwhile
    if (!password || password->isEmpty()) {
      documents_->set_failed(key, tr("%1: the PDF is password-protected and no password was entered; add it again to "
                                     "enter its password")
                                      .arg(name));
      return;
    }
    documents_->set_reading(key);
    read_document(key, path, *password);
  };
  if (password_asker_) {
    answer(password_asker_(name, wrong_before));
    return;
  }
  auto* dialog = new QInputDialog(this);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->setObjectName("pdfPasswordDialog");
  dialog->setWindowTitle(tr("Password for %1").arg(name));
  dialog->setLabelText(wrong_before ? tr("That password is wrong. The password of %1:").arg(name)
                                    : tr("%1 is password-protected. Its password:").arg(name));
  dialog->setTextEchoMode(QLineEdit::Password);
  dialog->setOkButtonText(tr("Open"));
  connect(dialog, &QInputDialog::finished, this, [dialog, answer](int result) {
    answer(result == QDialog::Accepted ? std::optional<QString>(dialog->textValue()) : std::nullopt);
  });
  dialog->open();
}

void MainWindow::on_document_read(uint64_t key, const folio::docs::Document& doc, const QString& error, bool encrypted,
                                  const QString& password) {
  const DocumentEntry* entry = documents_->entry(key);
  if (entry == nullptr) return;  // removed while it was read
  const auto expected = reopen_expected_.find(entry->path);
  if (encrypted) {
    // A password-protected PDF: ask for its password (again, when the one given was wrong).
    documents_->set_failed(key, error);
    ask_password(key, entry->path, !password.isEmpty());
    return;
  }
  if (!password.isEmpty()) viewer_->set_pdf_password(entry->path, password);
  if (!error.isEmpty()) {
    documents_->set_failed(key, error);
    banner_->show_message(tr("A document could not be read: %1").arg(error));
    if (expected != reopen_expected_.end()) {
      chat_->add_notice(tr("**%1** of this conversation could not be read again (%2); the answers above were "
                           "given with it.")
                            .arg(QFileInfo(entry->path).fileName(), error),
                        true);
      reopen_expected_.erase(expected);
      if (reopen_expected_.isEmpty()) ground_reopened();
    }
    return;
  }
  bool reopen_read = false;  // the last document of a reopened conversation is read
  if (expected != reopen_expected_.end()) {
    if (!expected->isEmpty() && doc.content_hash != *expected)
      chat_->add_notice(tr("**%1** has changed since this conversation: the answers above were given on its "
                           "earlier content.")
                            .arg(doc.title),
                        true);
    else
      reopen_same_.insert(key);
    reopen_expected_.erase(expected);
    reopen_read = reopen_expected_.isEmpty();
  }
  for (const auto& e : documents_->entries()) {
    if (e.key != key && e.state != DocumentEntry::State::Failed && !doc.content_hash.isEmpty() &&
        e.doc.content_hash == doc.content_hash) {
      statusBar()->showMessage(
          tr("%1 has the same content as %2, which is already in the list").arg(doc.title, e.doc.title), 8000);
      documents_->remove(key);
      if (reopen_read) ground_reopened();
      return;
    }
  }
  documents_->set_loaded(key, doc);
  if (model_ready_)
    count_document(key);
  else
    documents_->set_count_note(key, loading_ ? tr("waiting for the model") : tr("no model is loaded"));
  if (reopen_read) ground_reopened();
}

void MainWindow::count_document(uint64_t key) {
  const DocumentEntry* e = documents_->entry(key);
  if (e == nullptr) return;
  const folio::docs::Document doc = e->doc;
  QMetaObject::invokeMethod(
      worker_, [w = worker_, key, doc] { w->count_document(key, doc); }, Qt::QueuedConnection);
}

void MainWindow::remove_document(uint64_t key) {
  if (auto it = reads_.find(key); it != reads_.end()) (*it)->cancel();
  documents_->remove(key);
}

QVector<PromptDocument> MainWindow::prompt_documents(QVector<uint64_t>* keys) const {
  QVector<PromptDocument> docs;
  for (const auto& e : documents_->entries()) {
    if (e.state != DocumentEntry::State::Ready) continue;
    docs.push_back({e.doc, e.keep_tokens, e.selection});
    if (keys != nullptr) keys->push_back(e.key);
  }
  return docs;
}

// ---------------------------------------------------------------------------------------------
// Asking

void MainWindow::ask(const QString& question) {
  const QString q = question.trimmed();
  if (q.isEmpty()) return;
  if (busy()) {
    statusBar()->showMessage(tr("Wait for the answer, or press Stop"), 5000);
    return;
  }
  if (!ready_to_ask()) {
    chat_->set_input_text(q);
    statusBar()->showMessage(model_ready_ ? tr("Documents are still being read") : tr("No model is loaded yet"), 5000);
    return;
  }
  chat_->add_user(q);
  pending_question_ = q;
  regenerating_ = false;
  send_request();
}

void MainWindow::send_request() {
  AskRequest r;
  r.id = ++next_request_;
  request_doc_keys_.clear();
  r.documents = prompt_documents(&request_doc_keys_);
  r.question = pending_question_;
  r.regenerate = regenerating_;
  r.context_tokens = settings_.context_tokens;
  r.sampler = settings_.sampler(QRandomGenerator::global()->generate64());
  r.max_tokens = settings_.max_tokens;
  r.system_prompt = settings_.system_prompt;
  r.attention_mode = settings_.attention_mode;
  r.sparse_threshold_tokens = settings_.sparse_threshold_tokens;
  if (remembered_fit_ && remembered_fit_->relevant && remembered_fit_->documents == documents_signature())
    r.fit = folio::chat::FitMode::Relevant;
  r.keep_kv_on_disk = settings_.keep_kv_on_disk;
  r.cancel = std::make_shared<CancelToken>();
  current_request_ = r.id;
  current_cancel_ = r.cancel;
  chat_->begin_assistant();
  set_busy(true);
  QMetaObject::invokeMethod(
      worker_, [w = worker_, r] { w->ask(r); }, Qt::QueuedConnection);
}

void MainWindow::stop() {
  if (current_cancel_) current_cancel_->cancel();  // atomic: the engine sees it at its next check
}

void MainWindow::regenerate() {
  if (busy() || !model_ready_ || history_turns_ < 2) return;
  chat_->remove_last_answer();
  regenerating_ = true;  // stays for a retry after a fit question (apply_fit_choice)
  send_request();
}

void MainWindow::new_conversation() {
  stop();
  ++conversation_generation_;
  reopen_answers_.clear();
  history_turns_ = 0;
  conversation_id_ = 0;
  remembered_fit_.reset();
  answer_sources_.clear();
  answer_passages_.clear();
  chat_->clear_messages();
  documents_->set_conversation_tokens(0);
  QMetaObject::invokeMethod(
      worker_, [w = worker_] { w->reset_conversation(); }, Qt::QueuedConnection);
  show_welcome();
}

// ---------------------------------------------------------------------------------------------
// History

bool MainWindow::open_conversation(int64_t id) {
  if (!db_ || busy()) {
    if (busy()) statusBar()->showMessage(tr("Wait for the answer, or press Stop"), 5000);
    return false;
  }
  std::optional<folio::store::Conversation> c;
  std::vector<folio::store::Message> messages;
  std::vector<folio::store::DocumentRecord> docs;
  try {
    c = db_->conversation(id);
    if (!c) return false;
    messages = db_->list_messages(id);
    docs = db_->conversation_documents(id);
  } catch (const std::exception& e) {
    banner_->show_message(tr("The conversation could not be read: %1").arg(QString::fromStdString(e.what())));
    return false;
  }
  new_conversation();
  chat_->clear_messages();
  // The settings it was held with (sampling, system prompt, attention, context), not the model.
  if (!c->settings.isEmpty()) {
    const AppSettings restored = settings_.with_conversation(c->settings);
    if (!(restored == settings_)) {
      apply_settings(restored);
      chat_->add_notice(tr("The settings of this conversation are back (Settings shows them)."));
    }
  }
  std::vector<folio::chat::Turn> turns;
  for (const auto& m : messages) {
    if (m.role == folio::store::Role::User) {
      chat_->add_user(m.text);
      turns.push_back({"user", m.text.toStdString()});
      pending_question_ = m.text;
    } else if (m.role == folio::store::Role::Assistant) {
      reopen_answers_.push_back({chat_->begin_assistant(), pending_question_});
      chat_->append_to_answer(m.text);
      QString footer;
      if (m.metrics)
        footer = tr("%1 tokens · first token after %2").arg(count(m.metrics->decode_tokens), ms_text(m.metrics->ttft_ms));
      chat_->finish_answer(footer, {});
      turns.push_back({"assistant", m.text.toStdString()});
    }
  }
  // The documents again, from where they were; what changed or vanished is said in the chat.
  for (const auto& e : std::vector<DocumentEntry>(documents_->entries())) remove_document(e.key);
  reopen_expected_.clear();
  reopen_same_.clear();
  QStringList paths;
  for (const auto& d : docs) {
    if (!QFileInfo::exists(d.path)) {
      chat_->add_notice(tr("**%1** is no longer at %2: add it again if you ask more about it.").arg(d.title, d.path), true);
      continue;
    }
    reopen_expected_.insert(QFileInfo(d.path).absoluteFilePath(), d.content_hash);
    paths << d.path;
  }
  add_paths(paths);
  if (paths.isEmpty()) ground_reopened();  // nothing to read: no sources, the answers stand as they are
  conversation_id_ = id;
  history_turns_ = static_cast<int>(turns.size());
  QMetaObject::invokeMethod(
      worker_, [w = worker_, id, turns] { w->continue_conversation(id, turns); }, Qt::QueuedConnection);
  history_->set_current(id);
  statusBar()->showMessage(tr("Opened “%1”").arg(c->title), 5000);
  return true;
}

void MainWindow::rename_conversation(qint64 id, const QString& title) {
  if (!db_) return;
  try {
    db_->rename_conversation(id, title);
  } catch (const std::exception& e) {
    banner_->show_message(tr("The conversation could not be renamed: %1").arg(QString::fromStdString(e.what())));
  }
  history_->refresh();
}

void MainWindow::delete_conversation(int64_t id) {
  if (!db_) return;
  commit_deletion();  // one undo at a time
  std::optional<folio::store::Conversation> c = db_->conversation(id);
  if (!c) return;
  if (id == conversation_id_) new_conversation();
  history_->mark_deleted(id, c->title);
  delete_timer_->start();
}

void MainWindow::undo_deletion() {
  delete_timer_->stop();
  history_->undo_deletion();
}

void MainWindow::commit_deletion() {
  delete_timer_->stop();
  try {
    history_->take_pending_deletion();
  } catch (const std::exception& e) {
    banner_->show_message(tr("The conversation could not be deleted: %1").arg(QString::fromStdString(e.what())));
  }
}

bool MainWindow::export_markdown(int64_t id, const QString& path) {
  if (!db_) return false;
  try {
    const std::optional<folio::store::Conversation> c = db_->conversation(id);
    if (!c) return false;
    // Citations are checked against the documents read now, where their content is unchanged.
    QVector<folio::docs::Document> read;
    for (const auto& e : documents_->entries())
      if (e.state == DocumentEntry::State::Ready) read.push_back(e.doc);
    const QString md = conversation_markdown(*c, db_->conversation_documents(id), db_->list_messages(id), read);
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate) || f.write(md.toUtf8()) < 0)
      throw std::runtime_error(f.errorString().toStdString());
  } catch (const std::exception& e) {
    banner_->show_message(tr("The conversation could not be exported: %1").arg(QString::fromStdString(e.what())));
    return false;
  }
  statusBar()->showMessage(tr("Exported to %1").arg(path), 5000);
  return true;
}

void MainWindow::on_does_not_fit(const FitProblem& p) {
  if (p.request_id != current_request_) return;
  current_request_ = 0;
  current_cancel_.reset();
  chat_->remove_last_answer();  // the empty placeholder
  set_busy(false);
  FitQuestion q;
  q.context_tokens = p.context_tokens;
  q.reserve_tokens = p.reserve_tokens;
  q.fixed_tokens = p.fixed_tokens;
  q.tokens = p.document_tokens;
  for (uint64_t key : request_doc_keys_) {
    const DocumentEntry* e = documents_->entry(key);
    q.titles << (e != nullptr ? e->doc.title : tr("(removed)"));
    bool by_page = false;
    q.parts << (e != nullptr ? FitQuestion::parts_of(e->doc, e->tokens, &by_page) : QVector<FitPart>{});
    q.parts_by_page << by_page;
  }
  if (q.tokens.isEmpty() || q.room() <= 0) {
    chat_->add_notice(tr("The question and the conversation so far need %1 tokens, more than the context of %2 tokens "
                         "holds even without documents. Start a new conversation (File ▸ New conversation) or "
                         "choose a larger context in Settings.")
                          .arg(count(p.fixed_tokens + p.reserve_tokens), count(p.context_tokens)),
                      true);
    chat_->set_input_text(pending_question_);
    return;
  }
  // The user already chose to keep the beginning of a document in this conversation, over these
  // same documents: keep as much of it as fits now (the conversation grew), without asking again.
  if (remembered_fit_ && remembered_fit_->documents == documents_signature()) {
    const int index = static_cast<int>(request_doc_keys_.indexOf(remembered_fit_->truncate_key));
    const int64_t keep = index >= 0 ? q.max_keep(index) : 0;
    if (keep > 0) {
      FitChoice c;
      c.kind = FitChoice::Kind::Truncate;
      c.truncate_index = index;
      c.keep_tokens = keep;
      apply_fit_choice(c, /*remembered=*/true);
      return;
    }
  }
  remembered_fit_.reset();
  auto on_cancel = [this] {
    chat_->add_notice(tr("Not sent: the documents do not fit the context. Remove documents, keep only part of one, "
                         "or choose a larger context in Settings."),
                      true);
    chat_->set_input_text(pending_question_);
  };
  if (fit_chooser_) {
    std::optional<FitChoice> c = fit_chooser_(q);
    if (c)
      apply_fit_choice(*c);
    else
      on_cancel();
    return;
  }
  auto* dialog = new FitDialog(q, this);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  connect(dialog, &QDialog::finished, this, [this, dialog, on_cancel](int result) {
    if (result == QDialog::Accepted)
      apply_fit_choice(dialog->choice());
    else
      on_cancel();
  });
  dialog->open();
}

QString MainWindow::documents_signature() const {
  QStringList parts;
  for (const auto& e : documents_->entries())
    if (e.state == DocumentEntry::State::Ready)
      parts << QString::number(e.key) + ":" + (e.doc.content_hash.isEmpty() ? e.path : e.doc.content_hash);
  return parts.join('|');
}

void MainWindow::apply_fit_choice(const FitChoice& c, bool remembered) {
  if (c.kind == FitChoice::Kind::Relevant) {
    remembered_fit_ = RememberedFit{documents_signature(), 0, true};
    chat_->add_notice(
        tr("The documents are larger than the context, so each question gets the parts of them most "
           "relevant to it, in order, with markers for what is left out (your choice for this "
           "conversation, until the documents change). The document panel shows what each question "
           "used."));
  } else if (c.kind == FitChoice::Kind::Part) {
    if (c.part_index < 0 || c.part_index >= request_doc_keys_.size() || c.selection.empty()) return;
    const uint64_t key = request_doc_keys_[c.part_index];
    const DocumentEntry* e = documents_->entry(key);
    if (e == nullptr) return;
    bool by_page = false;
    const QVector<FitPart> parts = FitQuestion::parts_of(e->doc, e->tokens, &by_page);
    int64_t estimate = 0;
    for (int i = 0; i < parts.size(); ++i)
      if (c.selection.first_page >= 0 ? (i >= c.selection.first_page && i <= c.selection.last_page)
                                      : c.selection.files.contains(parts[i].label))
        estimate += parts[i].tokens;
    documents_->set_keep_tokens(key, 0);
    documents_->set_selection(key, c.selection, estimate);
    remembered_fit_.reset();  // the selection stays with the document until it is used whole again
    chat_->add_notice(tr("Only %1 of **%2** is included, as you chose, until you use it whole again (right-click "
                         "it in the document panel). The model is told what is left out.")
                          .arg(c.selection.describe(e->doc), e->doc.title));
  } else if (c.kind == FitChoice::Kind::Truncate) {
    if (c.truncate_index < 0 || c.truncate_index >= request_doc_keys_.size() || c.keep_tokens <= 0) return;
    const uint64_t key = request_doc_keys_[c.truncate_index];
    const DocumentEntry* e = documents_->entry(key);
    if (e == nullptr) return;
    documents_->set_keep_tokens(key, c.keep_tokens);
    remembered_fit_ = RememberedFit{documents_signature(), key};
    chat_->add_notice(
        (remembered ? tr("As you chose for this conversation, only the first %1 of %2 tokens of **%3** are included "
                         "now (the conversation grew). The model is told that the rest is missing.")
                    : tr("Only the first %1 of %2 tokens of **%3** are included, as you chose; later questions in "
                         "this conversation keep that choice until the documents change. The model is told that "
                         "the rest is missing."))
            .arg(count(c.keep_tokens), count(e->tokens), e->doc.title));
  } else {
    remembered_fit_.reset();
    QStringList titles;
    for (int i : c.drop) {
      if (i < 0 || i >= request_doc_keys_.size()) continue;
      if (const DocumentEntry* e = documents_->entry(request_doc_keys_[i])) titles << e->doc.title;
      documents_->remove(request_doc_keys_[i]);
    }
    if (!titles.isEmpty()) chat_->add_notice(tr("Left out, as you chose: %1.").arg(titles.join(", ")));
  }
  if (ready_to_ask()) send_request();
}

void MainWindow::on_answer(const AskOutcome& outcome) {
  if (outcome.id != current_request_) return;
  current_request_ = 0;
  current_cancel_.reset();
  const Metrics& m = outcome.metrics;
  last_metrics_ = m;
  pending_question_ = outcome.question;
  history_turns_ = outcome.history_turns;
  if (outcome.conversation_id > 0) conversation_id_ = outcome.conversation_id;
  if (db_ && conversation_id_ > 0) {
    try {
      db_->set_conversation_settings(conversation_id_, settings_.conversation_json());
    } catch (const std::exception& e) {
      banner_->show_message(tr("The conversation could not be saved: %1").arg(QString::fromStdString(e.what())));
    }
  }
  history_->set_current(conversation_id_);
  if (!outcome.record_error.isEmpty())
    banner_->show_message(tr("The conversation could not be saved: %1").arg(outcome.record_error));

  // The documents this answer was asked over, for its citations and sources (in request order; a
  // document removed meanwhile keeps its place, empty).
  QVector<folio::docs::Document> sources;
  for (uint64_t key : request_doc_keys_) {
    const DocumentEntry* e = documents_->entry(key);
    sources.push_back(e != nullptr ? e->doc : folio::docs::Document{});
  }
  int answer_entry = -1;
  for (int i = chat_->count() - 1; i >= 0; --i)
    if (chat_->entry(i).kind == ChatEntry::Kind::Assistant) {
      answer_entry = i;
      break;
    }
  if (outcome.cancelled && outcome.text.isEmpty()) {
    chat_->remove_last_answer();
    chat_->add_notice(tr("Stopped before the answer began."));
  } else {
    QString footer = metrics_footer(m);
    if (!outcome.packing.isEmpty())
      footer += " · " + (outcome.repacked ? tr("documents packed for this question")
                                          : tr("the previous question's parts of the documents kept"));
    if (outcome.kv_loaded_tokens > 0)
      footer += " · " + tr("the documents' KV (%1 tokens) loaded from disk in %2")
                            .arg(count(outcome.kv_loaded_tokens), ms_text(outcome.kv_load_ms));
    if (outcome.kv_saved_bytes > 0)
      footer += " · " + tr("the documents' KV saved on disk (%1 MiB)")
                            .arg(static_cast<double>(outcome.kv_saved_bytes) / 1048576.0, 0, 'f', 1);
    if (!outcome.kv_note.isEmpty()) statusBar()->showMessage(outcome.kv_note, 10000);
    if (!outcome.cut_reason.isEmpty()) footer += " · " + tr("cut off");
    chat_->finish_answer(footer, {});
    show_grounding(answer_entry, sources, outcome.sources);
  }
  if (!outcome.cut_reason.isEmpty()) {
    // The streamed part stays in the view; the error says why it stops there.
    chat_->add_notice(tr("The answer was cut off: %1. What came before is kept above.").arg(outcome.cut_reason), true);
    statusBar()->showMessage(tr("The answer was cut off: the server stopped sending"), 10000);
  }
  // What of each document the question used, when they were packed.
  for (int i = 0; i < request_doc_keys_.size(); ++i)
    documents_->set_used(request_doc_keys_[i], outcome.packing.isEmpty() ? QString() : outcome.used.value(i));
  performance_->show_metrics(m);
  // The same per document in the performance panel: what this prompt held (packed parts, the pages
  // or files the user chose, the beginning kept, or all of it).
  QStringList used_lines;
  for (int i = 0; i < request_doc_keys_.size(); ++i) {
    const DocumentEntry* e = documents_->entry(request_doc_keys_[i]);
    if (e == nullptr) continue;
    QString what = outcome.packing.isEmpty() ? QString() : outcome.used.value(i);
    if (what.isEmpty() && !e->selection.empty()) what = e->selection.describe(e->doc);
    if (what.isEmpty() && e->keep_tokens > 0 && e->keep_tokens < e->tokens)
      what = tr("the first %1 of %2 tokens").arg(count(e->keep_tokens), count(e->tokens));
    used_lines << tr("%1: %2").arg(e->doc.title, what.isEmpty() ? tr("all") : what);
  }
  performance_->show_documents_used(used_lines);
  int64_t doc_tokens = 0;
  for (uint64_t key : request_doc_keys_)
    if (const DocumentEntry* e = documents_->entry(key)) doc_tokens += e->prompt_tokens();
  documents_->set_conversation_tokens(m.prompt_tokens + m.decode_tokens - doc_tokens);
  refresh_ttft_chart();
  set_busy(false);
  emit answer_finished();
}

void MainWindow::show_grounding(int entry, const QVector<folio::docs::Document>& docs,
                                const std::vector<folio::chat::SourcePassage>& passages) {
  if (entry < 0 || entry >= chat_->count()) return;
  const QString answer = chat_->entry(entry).text;
  QVector<folio::docs::CitationTarget> citations;
  QVector<folio::docs::CitationCheck> flagged;
  for (const folio::docs::CitationCheck& c : folio::docs::check_citations(answer, docs)) {
    if (c.found)
      citations.push_back(c.target);
    else
      flagged.push_back(c);
  }
  answer_sources_.insert(entry, docs);
  answer_passages_.insert(entry, passages);
  QVector<SourceLink> links;
  for (const folio::chat::SourcePassage& p : passages) {
    if (p.document >= static_cast<size_t>(docs.size())) continue;
    folio::chat::Document heading;  // source_location() names the document by its title
    heading.title = docs[static_cast<int>(p.document)].title.toStdString();
    links.push_back(
        {QString::fromStdString(folio::chat::source_location(heading, p)), QString::fromStdString(p.quote)});
  }
  QString note;
  if (links.isEmpty() && !docs.isEmpty())
    note =
        tr("No passage of the documents was found that says what this answer says; check it against the "
           "documents.");
  chat_->set_citations(entry, citations);
  chat_->set_sources(entry, links, flagged, note);
}

void MainWindow::ground_reopened() {
  // The reopened answers against the documents read again unchanged (a changed one says other things).
  QVector<folio::docs::Document> docs;
  for (const auto& e : documents_->entries())
    if ((e.state == DocumentEntry::State::Ready || e.state == DocumentEntry::State::Counting) &&
        reopen_same_.contains(e.key))
      docs.push_back(e.doc);
  reopen_same_.clear();
  const QVector<std::pair<int, QString>> answers = std::exchange(reopen_answers_, {});
  if (docs.isEmpty() || answers.isEmpty()) return;
  QVector<std::pair<QString, QString>> work;  // question, answer
  for (const auto& [entry, question] : answers) work.push_back({question, chat_->entry(entry).text});
  const uint64_t generation = conversation_generation_;
  auto* watcher = new QFutureWatcher<std::vector<std::vector<folio::chat::SourcePassage>>>(this);
  connect(watcher, &QFutureWatcher<std::vector<std::vector<folio::chat::SourcePassage>>>::finished, this,
          [this, watcher, docs, answers, generation] {
            const auto found = watcher->result();
            watcher->deleteLater();
            if (generation != conversation_generation_) return;  // another conversation since
            for (int i = 0; i < answers.size() && i < static_cast<int>(found.size()); ++i)
              show_grounding(answers[i].first, docs, found[static_cast<size_t>(i)]);
          });
  // Indexing a long document takes a while: a pool thread does it.
  watcher->setFuture(QtConcurrent::run([docs, work]() {
    const folio::chat::GroundingIndex index(folio::docs::chat_documents(docs));
    std::vector<std::vector<folio::chat::SourcePassage>> out;
    for (const auto& [question, answer] : work)
      out.push_back(index.ground(answer.toStdString(), question.toStdString()));
    return out;
  }));
}

void MainWindow::on_ask_failed(quint64 id, const QString& message) {
  if (id != current_request_) return;
  current_request_ = 0;
  current_cancel_.reset();
  chat_->remove_last_answer();
  chat_->add_notice(tr("The answer failed: %1").arg(message), true);
  chat_->set_input_text(pending_question_);
  set_busy(false);
  emit answer_finished();
}

void MainWindow::refresh_ttft_chart() {
  if (!db_) return;
  try {
    performance_->set_ttft_series(db_->ttft_series(model_ready_ ? store_model_name() : QString()));
  } catch (const std::exception& e) {
    banner_->show_message(tr("The measurements could not be read: %1").arg(QString::fromStdString(e.what())));
  }
}

double MainWindow::prefill_rate_tok_s() const {
  // The newest full prefill of this model (a reused prefix says little about the rate).
  if (last_metrics_ && last_metrics_->reused_tokens == 0 && last_metrics_->prefill_tok_s > 0)
    return last_metrics_->prefill_tok_s;
  if (!db_) return 0.0;
  try {
    const auto runs = db_->list_runs(store_model_name());
    for (auto it = runs.rbegin(); it != runs.rend(); ++it)
      if (it->reused_tokens == 0 && it->prefill_tok_s > 0) return it->prefill_tok_s;
  } catch (const std::exception&) {
  }
  return 0.0;
}

QString MainWindow::compare_estimate(const QVector<double>& fractions, int modes) const {
  int64_t doc_tokens = 0;
  for (const auto& e : documents_->entries()) doc_tokens += e.prompt_tokens();
  const int64_t max_ctx = model_info_.max_context > 0 ? model_info_.max_context : 8192;
  const int64_t n = std::min<int64_t>(doc_tokens + 64, max_ctx - 1);  // + template and question
  double total = 0.0;
  for (double f : fractions) total += f * static_cast<double>(n);
  total *= modes;
  const double rate = prefill_rate_tok_s();
  QString text = tr("Compare runs %1 prefills of up to %2 tokens (%3 tokens in all)")
                     .arg(fractions.size() * modes)
                     .arg(count(n), count(static_cast<int64_t>(total)));
  if (rate <= 0) return text + tr("; how long it takes is not known yet (no answer measured on this model).");
  const double ms = total * 1000.0 / rate;
  return text + tr(", about %1 on this machine at the last measured %2 tok/s (longer prompts run slower). Stop "
                   "cancels it.")
                    .arg(ms_text(ms))
                    .arg(rate, 0, 'f', 0);
}

void MainWindow::compare() {
  if (comparing_) {  // the button cancels while it measures
    stop();
    return;
  }
  if (busy() || !model_ready_ || documents_->busy()) return;
  if (prompt_documents().isEmpty()) return;
  const QVector<double> fractions = {0.25, 0.5, 1.0};
  const QStringList modes = {"dense", "sparse"};  // what Compare is for: the two prefills side by side
  const QString estimate = compare_estimate(fractions, static_cast<int>(modes.size()));
  compare_estimate_ = estimate;
  if (compare_confirm_) {
    if (compare_confirm_(estimate)) start_compare(modes, fractions);
    return;
  }
  auto* box = new QMessageBox(QMessageBox::Question, tr("Compare attention modes"), estimate,
                              QMessageBox::Ok | QMessageBox::Cancel, this);
  box->button(QMessageBox::Ok)->setText(tr("Start"));
  box->setAttribute(Qt::WA_DeleteOnClose);
  connect(box, &QMessageBox::finished, this, [this, modes, fractions](int result) {
    if (result == QMessageBox::Ok) start_compare(modes, fractions);
  });
  box->open();
}

void MainWindow::start_compare(const QStringList& modes, const QVector<double>& fractions) {
  if (busy() || !model_ready_ || documents_->busy()) return;
  CompareRequest r;
  r.id = ++next_request_;
  r.documents = prompt_documents();
  if (r.documents.isEmpty()) return;
  r.question = pending_question_.isEmpty() ? tr("Summarise the documents.") : pending_question_;
  r.system_prompt = settings_.system_prompt;
  r.modes = modes;
  r.fractions = fractions;
  r.cancel = std::make_shared<CancelToken>();
  current_cancel_ = r.cancel;
  compare_runs_.clear();
  compare_verdict_.clear();
  statusBar()->showMessage(compare_estimate_, 10000);
  comparing_ = true;
  performance_->set_comparing(true);
  set_busy(true);
  QMetaObject::invokeMethod(
      worker_, [w = worker_, r] { w->compare(r); }, Qt::QueuedConnection);
}

void MainWindow::open_citation(int entry, const folio::docs::CitationTarget& t) {
  const auto it = answer_sources_.find(entry);
  if (it == answer_sources_.end() || t.document < 0 || t.document >= it->size()) return;
  open_source((*it)[t.document], t);
  show_viewer(entry);
}

void MainWindow::close_viewer() {
  viewer_->hide();
  if (perf_hidden_for_viewer_) {  // it made room for the source pane: back now
    perf_hidden_for_viewer_ = false;
    performance_->show();
    keep_chat_room();
  }
}

void MainWindow::show_viewer(int entry) {
  const bool was_hidden = viewer_->isHidden();
  viewer_->show();
  if (was_hidden) {
    // Below 1280 px the performance panel makes room for the source pane while it is open (its
    // menu entry and the setting stay as they are; closing the pane brings it back).
    if (width() < 1280 && !performance_->isHidden()) {
      perf_hidden_for_viewer_ = true;
      performance_->hide();
      keep_chat_room();
    }
    // Wide enough to read: the share the user chose last (55% at first) of the chat's column.
    const int total = center_split_->width() - center_split_->handleWidth();
    const int pane = std::max(static_cast<int>(total * viewer_share_), std::min(total / 2, 420));
    center_split_->setSizes({std::max(0, total - pane), pane});
  }
  if (entry >= 0) chat_->scroll_to_entry(entry);  // the answer stays in view beside its source
}

void MainWindow::open_passage(const folio::docs::Document& doc, const folio::chat::SourcePassage& p) {
  show_viewer(-1);
  if (p.page_index >= 0) {
    const QString label = p.page_index < doc.page_labels.size() ? doc.page_labels[p.page_index] : QString();
    viewer_->show_pdf_page(doc.path, p.page_index, label, QString::fromStdString(p.quote));
    return;
  }
  const QString file = QString::fromStdString(p.file);
  QVector<const folio::docs::Section*> parts;
  for (const auto& s : doc.sections)
    if (s.file == file) parts.push_back(&s);
  std::sort(parts.begin(), parts.end(), [](auto* a, auto* b) { return a->first_line < b->first_line; });
  QStringList text;
  for (auto* s : parts) text << s->text;
  viewer_->show_file_lines(file, text.join('\n'), p.first_line, p.last_line);
}

void MainWindow::open_source(const folio::docs::Document& doc, const folio::docs::CitationTarget& t) {
  show_viewer(-1);
  if (t.citation.kind == folio::docs::CitationKind::Pages) {
    const QString label =
        t.first_page >= 0 && t.first_page < doc.page_labels.size() ? doc.page_labels[t.first_page] : QString();
    viewer_->show_pdf_page(doc.path, t.first_page, label);
    return;
  }
  // A file's text from its sections (in line order), so the pane shows what the model read.
  QVector<const folio::docs::Section*> parts;
  for (const auto& s : doc.sections)
    if (s.file == t.file) parts.push_back(&s);
  std::sort(parts.begin(), parts.end(), [](auto* a, auto* b) { return a->first_line < b->first_line; });
  QStringList text;
  for (auto* s : parts) text << s->text;
  viewer_->show_file_lines(t.file, text.join('\n'), t.first_line, t.last_line);
}

// ---------------------------------------------------------------------------------------------
// Settings

SettingsDialog* MainWindow::open_settings() {
  if (settings_dialog_ == nullptr) {
    settings_dialog_ = new SettingsDialog(settings_, this);
    settings_dialog_->setAttribute(Qt::WA_DeleteOnClose);
    connect(settings_dialog_, &SettingsDialog::applied, this, &MainWindow::apply_settings);
    if (!model_error_.isEmpty())
      settings_dialog_->show_load_error(model_error_);
    else if (model_ready_)
      settings_dialog_->show_loaded(model_info_);
  }
  settings_dialog_->show();
  settings_dialog_->raise();
  settings_dialog_->activateWindow();
  return settings_dialog_;
}

void MainWindow::apply_settings(const AppSettings& s) {
  const AppSettings before = settings_;
  settings_ = s;
  if (options_.persist_settings) settings_.save();
  if (settings_.needs_reload(before) && options_.model_override.isEmpty()) {
    if (busy()) stop();
    load_model();
  } else {
    refresh_context();
    if (model_ready_) performance_->set_model(model_info_, context_tokens());
  }
  show_welcome();
}

// ---------------------------------------------------------------------------------------------
// Notices

void MainWindow::show_backend_notice(const ModelInfo& info) {
  QSettings settings(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio");
  const bool no_gpu = info.notice.startsWith("no usable GPU");
  if (!no_gpu) {
    gpu_notice_->hide();
    // Anything else the engine says about the backend (e.g. a model the GPU backend cannot run).
    if (!info.notice.isEmpty()) statusBar()->showMessage(info.notice, 10000);
    return;
  }
  if (settings.value("notices/no_gpu_dismissed", false).toBool()) {
    gpu_notice_->hide();
    return;
  }
  // Say what was looked for, not a guess at why (the CUDA runtime reports a missing driver as an
  // "insufficient driver version"); the engine's own words go in the tooltip.
  const bool built_without = info.notice.contains("without the CUDA backend") || info.notice.contains("no CUDA support");
  gpu_notice_->show_notice(
      built_without ? tr("This build of Folio has no GPU support, so answers are computed on the CPU "
                         "(%1). Settings ▸ Backend can be set back to CPU.")
                          .arg(info.backend)
                    : tr("Folio looked for an NVIDIA GPU it can use through CUDA (Ampere or newer, with the NVIDIA "
                         "driver installed) and found none, so answers are computed on the CPU (%1).")
                          .arg(info.backend),
      tr("Engine: %1").arg(info.notice));
}

// ---------------------------------------------------------------------------------------------
// Layout

void MainWindow::set_performance_visible(bool visible) {
  {
    const QSignalBlocker quiet(performance_action_);  // its toggled signal calls this
    performance_action_->setChecked(visible);
  }
  performance_->setVisible(visible);
  perf_hidden_for_viewer_ = false;
  if (options_.persist_settings) {
    QSettings s(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio");
    s.setValue("window/performance_panel", visible);
  }
  keep_chat_room();
}

bool MainWindow::performance_visible() const {
  return !performance_->isHidden();
}

void MainWindow::keep_chat_room() {
  // The documents take the width the user dragged them to, else about a fifth of the window
  // (180-300 px), and less when the chat would get under half of the window; the performance
  // panel has its fixed width.
  const int perf = performance_->isHidden() ? 0 : PerformancePanel::kWidth;
  const int total = main_split_->width() - main_split_->handleWidth() * (perf > 0 ? 2 : 1);
  const int docs_min = std::max(left_tabs_->minimumSizeHint().width(), 150);
  int docs = docs_width_ > 0 ? std::max(docs_width_, docs_min) : std::clamp(total / 5, docs_min, 300);
  const int margins = 12;  // the chat's column keeps 6 px each side
  const int half = main_split_->width() / 2;
  if (total - docs - perf - margins < half) docs = std::max(docs_min, total - perf - margins - half);
  main_split_->setSizes({docs, std::max(0, total - docs - perf), perf});
}

bool MainWindow::eventFilter(QObject* watched, QEvent* event) {
  // Before the splitter lays out its new width, so it lays out these sizes.
  if (watched == main_split_ && event->type() == QEvent::Resize) keep_chat_room();
  return QMainWindow::eventFilter(watched, event);
}

// ---------------------------------------------------------------------------------------------
// Window events

void MainWindow::closeEvent(QCloseEvent* event) {
  commit_deletion();
  if (options_.persist_settings) {
    QSettings s(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio");
    s.setValue("window/geometry", saveGeometry());
  }
  QMainWindow::closeEvent(event);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  QStringList paths;
  for (const QUrl& url : event->mimeData()->urls())
    if (url.isLocalFile()) paths << url.toLocalFile();
  if (!paths.isEmpty()) {
    event->acceptProposedAction();
    add_paths(paths);
  }
}

}  // namespace folio::ui
