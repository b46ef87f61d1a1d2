// The desktop app, offscreen, with the real embedded model (stories260K): documents and the
// context gauge, streaming answers with metrics, Stop, the choice when documents do not fit,
// settings across restarts, errors, the performance panel's charts, citations, and (reported,
// not asserted) how long the GUI event loop stalls while the engine works.
#include <QAbstractScrollArea>
#include <QAction>
#include <QApplication>
#include <QDialogButtonBox>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QInputDialog>
#include <QLineEdit>
#include <QListWidget>
#include <QMessageBox>
#include <QMimeData>
#include <QPainter>
#include <QPdfWriter>
#include <QPushButton>
#include <QRadioButton>
#include <QSettings>
#include <QSignalSpy>
#include <QSplitter>
#include <QStandardPaths>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QTimer>
#include <QToolButton>
#include <QtTest>
#include <memory>

#include "core/chat/grounding.h"
#include "core/docs/ingest.h"
#include "core/docs/prompt_layout.h"
#include "tests/test_support.h"
#include "ui/app_icon.h"
#include "ui/app_settings.h"
#include "ui/chat_view.h"
#include "ui/conversation_export.h"
#include "ui/default_model.h"
#include "ui/demo.h"
#include "ui/document_panel.h"
#include "ui/error_banner.h"
#include "ui/fit_dialog.h"
#include "ui/history_panel.h"
#include "ui/main_window.h"
#include "ui/performance_panel.h"
#include "ui/settings_dialog.h"
#include "ui/source_viewer.h"

// LeakSanitizer in the ASan build: Qt 6.4 keeps allocations it never frees in the widgets this
// suite drives (QScroller gesture recognizers, QPdfView's page renderer and its threads, Qt's
// global thread pool). Without frame pointers in Qt, LSan cannot tell those from ours through
// Qt's frames, so this suite ignores leaks whose stacks pass through the Qt libraries; the
// engine, docs and store suites check leaks without this exception.
extern "C" __attribute__((used)) const char* __lsan_default_suppressions() {
  return "leak:libQt6Core.so\n"
         "leak:libQt6Gui.so\n"
         "leak:libQt6Widgets.so\n"
         "leak:libQt6Pdf.so\n"
         "leak:libQt6PdfWidgets.so\n"
         "leak:libQt6Charts.so\n";
}

using namespace folio::ui;

namespace {

QString stories_model() {
  const QString src = qEnvironmentVariable("FOLIO_SOURCE_DIR");
  const QString p = src + "/resources/models/stories260K/stories260K.bin";
  return !src.isEmpty() && QFile::exists(p) ? p : embedded_model_path();
}

// Text in the style of the model's training stories, so its tokenizer counts it sensibly.
QString story_text(int sentences) {
  const QStringList s = {"Once upon a time there was a little girl named Lily.", "She loved to play in the park.",
                         "One day she saw a big red ball under a tree.", "Her mom said they could share it.",
                         "They played all day and were very happy."};
  QString out;
  for (int i = 0; i < sentences; ++i) out += s[i % s.size()] + (i % 4 == 3 ? "\n" : " ");
  return out;
}

// Records the longest gap between ticks of a 5 ms timer, by the window's phase at the time.
class StallProbe : public QObject {
 public:
  explicit StallProbe(const MainWindow* w) : window_(w) {
    timer_.setInterval(5);
    timer_.setTimerType(Qt::PreciseTimer);
    connect(&timer_, &QTimer::timeout, this, [this] {
      const qint64 now = clock_.nsecsElapsed();
      const double gap_ms = (now - last_) / 1e6;
      last_ = now;
      switch (window_->phase()) {
        case Phase::Prefill:
          max_prefill_ms = std::max(max_prefill_ms, gap_ms);
          ++prefill_ticks;
          break;
        case Phase::Generating:
          max_generate_ms = std::max(max_generate_ms, gap_ms);
          ++generate_ticks;
          break;
        default:
          break;
      }
    });
    clock_.start();
    last_ = clock_.nsecsElapsed();
    timer_.start();
  }
  double max_prefill_ms = 0.0, max_generate_ms = 0.0;
  int prefill_ticks = 0, generate_ticks = 0;

 private:
  const MainWindow* window_;
  QTimer timer_;
  QElapsedTimer clock_;
  qint64 last_ = 0;
};

// Where widgets inside `root` overlap their siblings, stick out of their parent, or clip their
// text (a wrapped label shorter than its text needs, an unwrapped one narrower than its text).
// Chart views are looked at from outside only (their children are Qt's own scroll machinery).
QStringList layout_faults(const QWidget* root) {
  QStringList faults;
  const auto name = [](const QWidget* w) {
    const auto* l = qobject_cast<const QLabel*>(w);
    return QString("%1 %2%3")
        .arg(w->metaObject()->className(), w->objectName())
        .arg(l != nullptr ? " '" + l->text().left(40) + "'" : QString());
  };
  QList<const QWidget*> children;
  for (const QObject* o : root->children())
    if (const auto* w = qobject_cast<const QWidget*>(o); w != nullptr && !w->isWindow() && w->isVisibleTo(root))
      children << w;
  for (int i = 0; i < children.size(); ++i) {
    const QWidget* a = children[i];
    if (a->geometry().left() < 0 || a->geometry().right() > root->width() - 1)
      faults << name(a) + " sticks out of " + name(root);
    for (int j = i + 1; j < children.size(); ++j)
      if (a->geometry().intersects(children[j]->geometry())) faults << name(a) + " overlaps " + name(children[j]);
    if (const auto* l = qobject_cast<const QLabel*>(a); l != nullptr && !l->text().isEmpty()) {
      if (l->wordWrap() && l->height() < l->heightForWidth(l->width())) faults << name(a) + " is clipped (height)";
      if (!l->wordWrap() && l->width() < l->sizeHint().width()) faults << name(a) + " is clipped (width)";
    }
    if (qobject_cast<const QAbstractScrollArea*>(a) == nullptr) faults << layout_faults(a);
  }
  return faults;
}

}  // namespace

class TstGui : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir tmp_;
  QString write_file(const QString& name, const QString& text) {
    const QString path = tmp_.filePath(name);
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate)) return {};
    f.write(text.toUtf8());
    return path;
  }
  std::unique_ptr<MainWindow> make_window(bool demo = false) {
    MainWindowOptions o;
    o.database_path = tmp_.filePath("folio.sqlite");
    o.load_demo = demo;
    auto w = std::make_unique<MainWindow>(o);
    w->show();
    return w;
  }
  static bool wait_ready(MainWindow* w, int timeout_ms = 60000) {
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < timeout_ms) {
      if (w->ready_to_ask()) return true;
      QTest::qWait(20);
    }
    return false;
  }
  static bool wait_idle(MainWindow* w, int timeout_ms = 120000) {
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < timeout_ms) {
      if (!w->busy() && w->phase() == Phase::Idle) return true;
      QTest::qWait(10);
    }
    return false;
  }
  AppSettings baseline() const {
    AppSettings s;
    s.model_path = stories_model();
    s.temperature = 0.0;  // greedy: the same answer every run
    s.max_tokens = 48;
    s.seed = 1;
    return s;
  }

 private slots:
  void initTestCase() {
    QVERIFY(tmp_.isValid());
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("Folio");
    QCoreApplication::setApplicationName("Folio");
    // Settings go to the temporary folder, never to the user's.
    QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, tmp_.filePath("settings"));
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, tmp_.filePath("settings"));
    if (stories_model().isEmpty()) QSKIP("stories260K not found (set FOLIO_SOURCE_DIR)");
  }

  void init() { baseline().save(); }

  void starts_with_demo_and_welcome() {
    auto w = make_window(/*demo=*/true);
    QVERIFY(wait_ready(w.get()));
    QVERIFY(w->windowTitle().contains("Folio"));
    QCOMPARE(w->documents()->entries().size(), size_t(1));
    const DocumentEntry& e = w->documents()->entries().front();
    QCOMPARE(e.state, DocumentEntry::State::Ready);
    QVERIFY(e.tokens > 0);
    w->chat()->flush_render();
    const QString text = w->chat()->transcript();
    QVERIFY2(text.contains("Welcome to Folio"), qPrintable(text));
    QVERIFY(text.contains("warranty"));  // a suggested question
    QCOMPARE(w->chat()->suggestions().size(), 3);
    // stories260K holds 512 tokens: the demo is over, and the gauge says so before anyone asks.
    QVERIFY(w->documents()->used_tokens() > w->context_tokens());
    QVERIFY(w->findChild<QLabel*>("contextGaugeLabel")->text().contains("more than the context"));
  }

  // The icon of installer/icons (built in) is the window's and the About box's; the bundled model
  // comes from share/folio beside the executable's folder (the build tree's: links into resources/).
  void icon_and_bundled_model() {
    const QIcon icon = app_icon();
    QVERIFY(!icon.isNull());
    for (int size : {16, 48, 256, 512}) QCOMPARE(icon.pixmap(size, size).size(), QSize(size, size));
    QCOMPARE(QString(kAppId), QString("io.github.folio.Folio"));
    const QString share = QDir::cleanPath(QCoreApplication::applicationDirPath() + "/../share/folio");
    QCOMPARE(embedded_model_path(), share + "/models/stories260K/stories260K.bin");

    auto w = make_window();
    QAction* about = nullptr;
    for (QAction* a : w->findChildren<QAction*>())
      if (a->text() == "&About Folio") about = a;
    QVERIFY(about != nullptr);
    QImage shown;
    QTimer::singleShot(0, w.get(), [&] {
      auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
      if (box == nullptr) return;
      shown = box->iconPixmap().toImage();
      box->accept();
    });
    about->trigger();
    QVERIFY2(!shown.isNull(), "the About box did not open, or showed no icon");
    QCOMPARE(shown, icon.pixmap(96, 96).toImage().convertToFormat(shown.format()));
  }

  void adding_a_document_updates_the_gauge() {
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    QCOMPARE(w->context_tokens(), qint64(512));  // stories260K's trained context
    QCOMPARE(w->documents()->gauge()->value(), 0);
    w->add_paths({write_file("park.txt", story_text(6))});
    QTRY_VERIFY_WITH_TIMEOUT(w->ready_to_ask() && !w->documents()->entries().empty(), 30000);
    const DocumentEntry e = w->documents()->entries().front();
    QVERIFY(e.tokens > 20);
    QCOMPARE(w->documents()->gauge()->value(), int(e.tokens));
    QCOMPARE(w->documents()->gauge()->maximum(), 512);
    QVERIFY(w->documents()->gauge()->text().contains(QLocale().toString(qint64(e.tokens))));

    // A second one by drag and drop adds to the gauge.
    const QString second = write_file("garden.md", story_text(3));
    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(second)});
    // (A synthetic QDropEvent is swallowed without a drag in progress; this is what dropEvent does.)
    QVERIFY(w->documents()->accept_drop(&mime));
    QTRY_VERIFY_WITH_TIMEOUT(w->documents()->entries().size() == 2 && w->ready_to_ask(), 30000);
    QCOMPARE(w->documents()->entries()[1].state, DocumentEntry::State::Ready);
    const int64_t both = w->documents()->entries()[0].tokens + w->documents()->entries()[1].tokens;
    QCOMPARE(w->documents()->gauge()->value(), int(both));

    w->remove_document(e.key);
    QCOMPARE(w->documents()->gauge()->value(), int(w->documents()->entries()[0].tokens));
  }

  void a_pdf_read_before_is_not_parsed_again() {
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    const QString path = tmp_.filePath("kept-manual.pdf");
    {
      QFile f(path);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(folio::test::make_pdf({"The outdoor hygrometer runs on two AA cells.", "They last about 14 months."}));
    }
    auto loaded = [&] {
      return !w->documents()->busy() && w->documents()->entries().size() == 1 &&
             w->documents()->entries().front().state == DocumentEntry::State::Ready;
    };
    w->add_paths({path});
    QTRY_VERIFY_WITH_TIMEOUT(loaded(), 30000);
    QVERIFY(!w->statusBar()->currentMessage().contains("earlier reading"));
    const DocumentEntry first = w->documents()->entries().front();
    // Its text goes to the store once the window has it, off the path to the user.
    QTRY_VERIFY_WITH_TIMEOUT(w->database()->document_text(first.doc.content_hash, folio::docs::kPdfReadVersion), 30000);
    w->remove_document(first.key);
    // Added again (the same in another conversation, or after a restart): its text comes from the store.
    w->add_paths({path});
    QTRY_VERIFY_WITH_TIMEOUT(loaded(), 30000);
    QVERIFY2(w->statusBar()->currentMessage().contains("kept-manual.pdf: its text was kept from an earlier reading"),
             qPrintable(w->statusBar()->currentMessage()));
    const DocumentEntry again = w->documents()->entries().front();
    QCOMPARE(again.doc.content_hash, first.doc.content_hash);
    QCOMPARE(again.doc.sections.size(), first.doc.sections.size());
    for (qsizetype i = 0; i < first.doc.sections.size(); ++i)
      QCOMPARE(again.doc.sections[i].text, first.doc.sections[i].text);
    QCOMPARE(again.tokens, first.tokens);

    // The history finds the conversation by a word of its PDF that no message holds.
    QSignalSpy finished(w.get(), &MainWindow::answer_finished);
    w->ask("How long do the cells last?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    const int64_t id = w->conversation_id();
    QVERIFY(id > 0);
    QVERIFY(!w->chat()->last_answer().contains("hygrometer", Qt::CaseInsensitive));
    w->history()->search()->setText("hygrometer");
    QCOMPARE(w->history()->listed_ids(), QList<int64_t>{id});
    w->history()->search()->setText("barometer");
    QVERIFY(w->history()->listed_ids().isEmpty());
    w->history()->search()->clear();
  }

  void a_document_that_fails_shows_why() {
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    QByteArray binary(4096, '\0');
    binary[10] = 'x';
    const QString path = tmp_.filePath("blob.bin");
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(binary);
    f.close();
    w->add_paths({path, tmp_.filePath("missing.txt")});
    QTRY_VERIFY_WITH_TIMEOUT(!w->documents()->busy(), 30000);
    QCOMPARE(w->documents()->entries().size(), size_t(2));
    for (const auto& e : w->documents()->entries()) {
      QCOMPARE(e.state, DocumentEntry::State::Failed);
      QVERIFY(!e.error.isEmpty());
    }
    QVERIFY(w->banner()->isVisible());
    QVERIFY(w->ready_to_ask());  // the app carries on
  }

  void failed_documents_go_together() {
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    const QString good = write_file("kept.txt", story_text(3));
    w->add_paths({good, tmp_.filePath("gone-1.txt"), tmp_.filePath("gone-2.txt"), tmp_.filePath("gone-3.txt")});
    QTRY_VERIFY_WITH_TIMEOUT(!w->documents()->busy() && w->ready_to_ask(), 30000);
    DocumentPanel* panel = w->documents();
    QCOMPARE(panel->failed_count(), 3);
    QVERIFY(panel->remove_failed_button()->isVisible());
    QVERIFY(panel->remove_failed_button()->text().contains("3"));

    // Two selected rows go with one Delete.
    QListWidget* list = panel->list();
    QCOMPARE(list->selectionMode(), QAbstractItemView::ExtendedSelection);
    list->clearSelection();
    list->item(1)->setSelected(true);
    list->item(2)->setSelected(true);
    list->setFocus();
    QTest::keyClick(list, Qt::Key_Delete);
    QCOMPARE(panel->entries().size(), size_t(2));
    QCOMPARE(panel->failed_count(), 1);
    QVERIFY(panel->remove_failed_button()->text().contains("the document that failed"));

    // The rest of the failed ones in one click; the good document stays.
    w->add_paths({tmp_.filePath("gone-4.txt")});
    QTRY_COMPARE_WITH_TIMEOUT(panel->failed_count(), 2, 30000);
    QTRY_VERIFY(!panel->busy());
    panel->remove_failed_button()->click();
    QCOMPARE(panel->failed_count(), 0);
    QVERIFY(!panel->remove_failed_button()->isVisible());
    QCOMPARE(panel->entries().size(), size_t(1));
    QCOMPARE(panel->entries().front().path, QFileInfo(good).absoluteFilePath());
  }

  void question_streams_tokens_and_fills_metrics() {
    AppSettings s = baseline();
    s.max_tokens = 120;  // leaves room in the 512-token context for a follow-up
    s.save();
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    w->add_paths({write_file("lily.txt", story_text(2))});
    QVERIFY(wait_ready(w.get()));

    QVector<int> lengths;
    QVector<Phase> phases;
    connect(w.get(), &MainWindow::answer_text_changed, this, [&](int n) {
      lengths << n;
      phases << w->phase();
    });
    QSignalSpy finished(w.get(), &MainWindow::answer_finished);
    w->ask("What did Lily find?");
    QVERIFY(w->busy());
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    QVERIFY(wait_idle(w.get()));

    // Text arrived while the engine was still generating, in growing pieces.
    QVERIFY(!lengths.isEmpty());
    QCOMPARE(phases.front(), Phase::Generating);
    for (int i = 1; i < lengths.size(); ++i) QVERIFY(lengths[i] > lengths[i - 1]);
    qInfo("answer streamed in %d pieces, %d characters", int(lengths.size()), lengths.back());
    const QString answer = w->chat()->last_answer();
    QVERIFY(!answer.trimmed().isEmpty());
    w->chat()->flush_render();
    const QString first_word = answer.simplified().section(' ', 0, 0);
    QVERIFY2(w->chat()->transcript().contains(first_word), qPrintable(first_word));

    QVERIFY(w->last_metrics().has_value());
    const folio::Metrics& m = *w->last_metrics();
    QVERIFY(m.prompt_tokens > 0);
    QCOMPARE(m.reused_tokens, qint64(0));
    QVERIFY(m.ttft_ms > 0);
    QVERIFY(m.decode_tokens > 0);
    QVERIFY(w->performance()->ttft_text() != "–");
    QVERIFY(w->performance()->decode_text().contains("tok/s"));
    QVERIFY(w->performance()->memory_devices().contains("cpu"));
    QVERIFY(w->performance()->memory_value_mib("weights", 0) > 0.5);  // stories260K is ~1 MiB of fp32
    QVERIFY(w->performance()->memory_value_mib("kv", 0) > 0.0);
    QCOMPARE(w->phase(), Phase::Idle);
    // The answer was grounded: sources under it, or the note that none were found.
    const ChatEntry& answered = w->chat()->entry(w->chat()->count() - 1);
    QVERIFY(!answered.sources.isEmpty() || answered.sources_note.contains("No passage"));
    QCOMPARE(answered.sources.size(), static_cast<qsizetype>(w->answer_passages(w->chat()->count() - 1).size()));

    // A follow-up on the same documents reuses the cached prefix (documents first in the prompt).
    w->set_fit_chooser([](const FitQuestion& q) -> std::optional<FitChoice> {
      qWarning("unexpected fit question: context %lld, fixed %lld, reserve %lld", qlonglong(q.context_tokens),
               qlonglong(q.fixed_tokens), qlonglong(q.reserve_tokens));
      return std::nullopt;
    });
    finished.clear();
    w->ask("And then?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    QVERIFY(wait_idle(w.get()));
    const folio::Metrics& m2 = *w->last_metrics();
    qInfo("follow-up: %lld of %lld prompt tokens reused", qlonglong(m2.reused_tokens), qlonglong(m2.prompt_tokens));
    QVERIFY(m2.reused_tokens > 0);
    QVERIFY(w->performance()->reuse_text().contains("reused"));

    // Regenerate replaces the last answer.
    const int entries = w->chat()->count();
    finished.clear();
    w->regenerate();
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    QCOMPARE(w->chat()->count(), entries);
  }

  void stop_cancels_and_returns_to_idle() {
    AppSettings s = baseline();
    s.max_tokens = 100000;  // bounded by the context: ~500 tokens without documents
    s.save();
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    bool stopped = false;
    connect(w.get(), &MainWindow::answer_text_changed, this, [&](int) {
      if (!stopped) {
        stopped = true;
        w->stop();  // the GUI thread sets the token directly
      }
    });
    QSignalSpy finished(w.get(), &MainWindow::answer_finished);
    w->ask("Once upon a time");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    QVERIFY(stopped);
    QVERIFY(wait_idle(w.get(), 5000));
    QCOMPARE(w->phase(), Phase::Idle);
    QVERIFY(!w->busy());
    QCOMPARE(w->last_metrics()->stop, folio::StopReason::Cancelled);
    const int64_t generated = w->last_metrics()->decode_tokens;
    qInfo("stopped after %lld tokens", qlonglong(generated));
    QVERIFY(generated < 400);
    const QString text = w->chat()->last_answer();
    QTest::qWait(300);
    QCOMPARE(w->chat()->last_answer(), text);  // nothing more arrives
    QVERIFY(w->chat()->send_button()->isEnabled());
    QVERIFY(!w->chat()->stop_button()->isEnabled());
    // The run says it was stopped; no rate of zero.
    QVERIFY2(w->performance()->decode_text().contains("stopped"), qPrintable(w->performance()->decode_text()));
    QVERIFY(!w->performance()->decode_text().contains(" 0.0 tok/s"));
    if (!text.isEmpty()) {
      const QString footer = w->chat()->entry(w->chat()->count() - 1).footer;
      QVERIFY2(footer.contains("stopped") && !footer.contains(" 0.0 tok/s"), qPrintable(footer));
    }
  }

  void a_run_stopped_before_a_rate_says_stopped() {
    PerformancePanel panel;
    folio::Metrics m;
    m.stop = folio::StopReason::Cancelled;
    panel.show_metrics(m);
    QCOMPARE(panel.decode_text(), QString("stopped"));
    m.decode_tokens = 1;  // one token: no rate yet
    panel.show_metrics(m);
    QCOMPARE(panel.decode_text(), QString("stopped after 1 token"));
    m.decode_tokens = 9;
    m.decode_tok_s = 30.0;
    panel.show_metrics(m);
    QCOMPARE(panel.decode_text(), QString("9 tokens, 30.0 tok/s, stopped"));
    m.stop = folio::StopReason::Eos;
    panel.show_metrics(m);
    QCOMPARE(panel.decode_text(), QString("9 tokens, 30.0 tok/s"));
  }

  void over_long_document_asks_instead_of_truncating() {
    AppSettings s = baseline();
    s.context_tokens = 256;
    s.max_tokens = 16;
    s.save();
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    QCOMPARE(w->context_tokens(), qint64(256));
    w->add_paths({write_file("long.txt", story_text(60))});
    QVERIFY(wait_ready(w.get()));
    const DocumentEntry doc = w->documents()->entries().front();
    QVERIFY(doc.tokens > 256);
    QVERIFY(w->findChild<QLabel*>("contextGaugeLabel")->text().contains("more than the context"));

    // 1. The user cancels: nothing runs, nothing is cut, the question comes back to the input box.
    QVector<FitQuestion> asked;
    w->set_fit_chooser([&](const FitQuestion& q) -> std::optional<FitChoice> {
      asked << q;
      return std::nullopt;
    });
    QSignalSpy phases(w.get(), &MainWindow::phase_changed);
    w->ask("What did Lily see?");
    QTRY_VERIFY_WITH_TIMEOUT(asked.size() == 1, 30000);
    QVERIFY(wait_idle(w.get()));
    QCOMPARE(asked[0].context_tokens, qint64(256));
    QCOMPARE(asked[0].tokens.size(), 1);
    QCOMPARE(asked[0].tokens[0], doc.tokens);
    QVERIFY(!w->last_metrics().has_value());  // no request ran
    for (const auto& args : phases) QVERIFY(args[0].value<Phase>() != Phase::Prefill);
    QCOMPARE(w->documents()->entries().front().keep_tokens, qint64(0));
    QCOMPARE(w->chat()->input_text(), QString("What did Lily see?"));
    w->chat()->flush_render();
    QVERIFY(w->chat()->transcript().contains("Not sent"));

    // 2. Without a hook the dialog asks; the request waits for it.
    w->set_fit_chooser({});
    w->ask("What did Lily see?");
    FitDialog* dialog = nullptr;
    QTRY_VERIFY_WITH_TIMEOUT((dialog = w->findChild<FitDialog*>("fitDialog")) != nullptr && dialog->isVisible(), 30000);
    QVERIFY(!w->busy());
    QVERIFY(!w->last_metrics().has_value());
    QCOMPARE(dialog->choice().kind, FitChoice::Kind::Relevant);  // proposes the parts most relevant to the question
    dialog->reject();
    QTRY_VERIFY(w->findChild<FitDialog*>("fitDialog") == nullptr);

    // 3. The user keeps the beginning: the run fits, and the panel and the chat say what was cut.
    w->set_fit_chooser([&](const FitQuestion& q) -> std::optional<FitChoice> {
      asked << q;
      FitChoice c;
      c.kind = FitChoice::Kind::Truncate;
      c.truncate_index = 0;
      c.keep_tokens = q.max_keep(0);
      return c;
    });
    QSignalSpy finished(w.get(), &MainWindow::answer_finished);
    w->ask("What did Lily see?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    QVERIFY(w->last_metrics().has_value());
    QVERIFY(w->last_metrics()->prompt_tokens <= 256);
    const DocumentEntry cut = w->documents()->entries().front();
    QVERIFY(cut.keep_tokens > 0 && cut.keep_tokens < cut.tokens);
    QVERIFY(w->documents()->list()->item(0)->text().contains("only the first"));
    w->chat()->flush_render();
    QVERIFY(w->chat()->transcript().contains("Only the first"));

    // 4. A follow-up needs more room (the conversation grew): the choice holds, nobody is asked again.
    const int asked_before = asked.size();
    w->ask("And then what did Lily and her mom do with the big red ball in the park after they had shared it, and "
           "were they happy all day long?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 2, 120000);
    QCOMPARE(asked.size(), asked_before);
    QVERIFY(w->last_metrics()->prompt_tokens <= 256);
    const DocumentEntry again = w->documents()->entries().front();
    QVERIFY2(again.keep_tokens > 0 && again.keep_tokens < cut.keep_tokens,
             qPrintable(QString("%1 then %2").arg(cut.keep_tokens).arg(again.keep_tokens)));
    w->chat()->flush_render();
    QVERIFY(w->chat()->transcript().contains("As you chose for this conversation"));

    // 5. Other documents: the choice no longer holds, the user is asked.
    w->add_paths({write_file("more.txt", story_text(20))});
    QVERIFY(wait_ready(w.get()));
    w->set_fit_chooser([&](const FitQuestion& q) -> std::optional<FitChoice> {
      asked << q;
      return std::nullopt;
    });
    w->ask("What else?");
    QTRY_VERIFY_WITH_TIMEOUT(asked.size() == asked_before + 1, 30000);
    QCOMPARE(asked.back().tokens.size(), 2);
  }

  // Documents larger than the context: the fit dialog's first choice fills the context with the
  // parts most relevant to each question (and says how much fits); chosen, the question runs on
  // those parts, the document panel says which pages it used, nobody is asked again, and a follow-up
  // that needs the same pages keeps them (their KV reused).
  void relevant_parts_fill_the_context_and_the_panel_says_what_was_used() {
    FitQuestion fq;
    fq.context_tokens = 1000;
    fq.reserve_tokens = 100;
    fq.fixed_tokens = 100;
    fq.titles = {"a.pdf", "b.txt"};
    fq.tokens = {3000, 1000};
    QCOMPARE(fq.share_that_fits(), 0.2);
    {
      FitDialog dialog(fq);
      QCOMPARE(dialog.choice().kind, FitChoice::Kind::Relevant);
      QVERIFY(dialog.findChild<QRadioButton*>("fitRelevant")->isChecked());
      bool said = false;
      for (const QLabel* l : dialog.findChildren<QLabel*>())
        said = said || l->text().contains("about 20% of the documents fit");
      QVERIFY(said);
      // The long text beside the first choice chooses it when clicked, as a radio button's text does.
      for (QRadioButton* b : dialog.findChildren<QRadioButton*>())
        if (b->objectName() != "fitRelevant" && b->text().startsWith("Leave out")) b->setChecked(true);
      QCOMPARE(dialog.choice().kind, FitChoice::Kind::Drop);
      QTest::mouseClick(dialog.findChild<QLabel*>("fitRelevantText"), Qt::LeftButton);
      QCOMPARE(dialog.choice().kind, FitChoice::Kind::Relevant);
      if (qEnvironmentVariableIsSet("FOLIO_GUI_GRAB")) {
        dialog.resize(dialog.sizeHint());
        dialog.grab().save(qEnvironmentVariable("FOLIO_GUI_GRAB") + "/fit-dialog.png");
      }
    }

    AppSettings s = baseline();
    s.max_tokens = 16;
    s.save();
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    QStringList pages;
    for (int p = 1; p <= 14; ++p)
      pages << (p == 9 ? QString("The outdoor sensor battery lasts about fourteen months.")
                       : QString("Page %1 has general notes on mounting and wiring the unit in a dry place.").arg(p));
    const QString path = tmp_.filePath("long-manual.pdf");
    {
      QFile f(path);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(folio::test::make_pdf(pages));
    }
    w->add_paths({path});
    QVERIFY(wait_ready(w.get()));
    QVERIFY(w->documents()->entries().front().tokens > w->context_tokens());
    QVector<FitQuestion> asked;
    w->set_fit_chooser([&](const FitQuestion& q) -> std::optional<FitChoice> {
      asked << q;
      FitChoice c;
      c.kind = FitChoice::Kind::Relevant;
      return c;
    });
    QSignalSpy finished(w.get(), &MainWindow::answer_finished);
    w->ask("How long does the outdoor sensor battery last?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    QCOMPARE(asked.size(), 1);
    QVERIFY(w->last_metrics().has_value());
    QVERIFY(w->last_metrics()->prompt_tokens + 16 <= w->context_tokens());
    const DocumentEntry& e = w->documents()->entries().front();
    qInfo("the question used %s; the document has %lld tokens, the context %lld", qPrintable(e.used),
          qlonglong(e.tokens), qlonglong(w->context_tokens()));
    QVERIFY2(e.used.startsWith("pages ") && e.used.endsWith("of 14"), qPrintable(e.used));
    bool page_9 = false;  // in "pages 1-3, 8-10 of 14"
    for (auto it = QRegularExpression("(\\d+)(?:-(\\d+))?(?=,| of)").globalMatch(e.used); it.hasNext();) {
      const auto m = it.next();
      const int first = m.captured(1).toInt(), last = m.captured(2).isEmpty() ? first : m.captured(2).toInt();
      page_9 = page_9 || (first <= 9 && 9 <= last);
    }
    QVERIFY2(page_9, qPrintable(e.used));
    QVERIFY(w->documents()->list()->item(0)->text().contains("the last question used pages"));
    // The performance panel says the same for the prompt it measured.
    QCOMPARE(w->performance()->documents_used_text(), "long-manual.pdf: " + e.used);
    QVERIFY(w->findChild<QLabel*>("contextGaugeLabel")->text().contains("each question gets the parts most relevant"));
    w->chat()->flush_render();
    QVERIFY(w->chat()->transcript().contains("most relevant to it"));
    QVERIFY(w->chat()->entry(w->chat()->count() - 1).footer.contains("documents packed for this question"));

    // A follow-up on the same pages: not asked again, the same parts kept, the prefix reused.
    w->ask("Which battery does the outdoor sensor use?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 2, 120000);
    QCOMPARE(asked.size(), 1);
    QVERIFY(w->chat()->entry(w->chat()->count() - 1).footer.contains("parts of the documents kept"));
    QVERIFY(w->last_metrics()->reused_tokens > 0);
    QCOMPARE(w->documents()->entries().front().used, e.used);
  }

  // The fit dialog's part choice: some pages of a PDF or some files of a folder. The dialog lists
  // them with their tokens, proposes what fits from the start, and says whether the choice fits;
  // chosen, only those pages go into the prompt, the document panel says so, the choice holds for
  // the next questions, and "Use the whole document" undoes it.
  void fit_dialog_keeps_pages_of_a_pdf_or_files_of_a_folder() {
    FitQuestion fq;
    fq.context_tokens = 1000;
    fq.reserve_tokens = 100;
    fq.fixed_tokens = 100;  // 800 for documents
    fq.titles = {"manual.pdf", "src", "notes.txt"};
    fq.tokens = {3000, 300, 100};
    fq.parts = {QVector<FitPart>(20, FitPart{"p. x", 150}), {{"a.cpp", 100}, {"b.cpp", 100}, {"lib/c.cpp", 100}}, {}};
    for (int i = 0; i < 20; ++i) fq.parts[0][i].label = QString("p. %1").arg(i + 1);
    fq.parts_by_page = {true, false, false};
    QCOMPARE(fq.room_for(0), qint64(800 - 400 - 8));
    {
      FitDialog dialog(fq);
      auto* part = dialog.findChild<QRadioButton*>("fitPart");
      auto* which = dialog.findChild<QComboBox*>("fitPartDocument");
      QVERIFY(part != nullptr && !part->isHidden());
      QCOMPARE(which->count(), 2);  // notes.txt has one part: nothing to choose
      part->setChecked(true);
      auto verdict = [&] {
        QString all;
        for (const QLabel* l : dialog.findChildren<QLabel*>()) all += l->text() + "\n";
        return all;
      };
      // Proposed: pages 1-2 (300 of the 392 tokens left beside the other documents).
      QCOMPARE(dialog.findChild<QSpinBox*>("fitFirstPage")->value(), 1);
      QCOMPARE(dialog.findChild<QSpinBox*>("fitLastPage")->value(), 2);
      QVERIFY2(verdict().contains("Fits: Pages 1-2 of manual.pdf, about 300 tokens"), qPrintable(verdict()));
      FitChoice c = dialog.choice();
      QCOMPARE(c.kind, FitChoice::Kind::Part);
      QCOMPARE(c.part_index, 0);
      QCOMPARE(c.selection.first_page, 0);
      QCOMPARE(c.selection.last_page, 1);
      auto* ok = dialog.findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Ok);
      QVERIFY(ok->isEnabled());
      dialog.findChild<QSpinBox*>("fitFirstPage")->setValue(5);  // pages 5-5 then (the end follows)
      QCOMPARE(dialog.findChild<QSpinBox*>("fitLastPage")->value(), 5);
      dialog.findChild<QSpinBox*>("fitLastPage")->setValue(9);
      QVERIFY2(verdict().contains("Pages 5-9 of manual.pdf need about 750 tokens, 358 more than the room of 392"),
               qPrintable(verdict()));
      QVERIFY(!ok->isEnabled());
      // The folder: its files, the first checked (the whole PDF beside it leaves no room, which the
      // dialog says).
      which->setCurrentIndex(1);
      auto* files = dialog.findChild<QListWidget*>("fitFiles");
      QCOMPARE(files->count(), 3);
      QVERIFY(files->item(2)->text().startsWith("lib/c.cpp (about 100 tokens)"));
      QVERIFY2(verdict().contains("The other documents alone fill the context"), qPrintable(verdict()));
      QVERIFY(!ok->isEnabled());
      QCOMPARE(files->item(0)->checkState(), Qt::Checked);
      files->item(0)->setCheckState(Qt::Unchecked);
      QVERIFY2(verdict().contains("Choose at least one file"), qPrintable(verdict()));
      files->item(1)->setCheckState(Qt::Checked);
      c = dialog.choice();
      QCOMPARE(c.part_index, 1);
      QCOMPARE(c.selection.first_page, -1);
      QCOMPARE(c.selection.files, QStringList({"b.cpp"}));
      if (qEnvironmentVariableIsSet("FOLIO_GUI_GRAB")) {
        which->setCurrentIndex(0);
        dialog.resize(dialog.sizeHint());
        dialog.grab().save(qEnvironmentVariable("FOLIO_GUI_GRAB") + "/fit-dialog-parts.png");
      }
    }

    // Through the window: a 14-page PDF larger than the context, page 9 chosen.
    AppSettings s = baseline();
    s.max_tokens = 16;
    s.save();
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    QStringList pages;
    for (int p = 1; p <= 14; ++p)
      pages << (p == 9 ? QString("The outdoor sensor battery lasts about fourteen months.")
                       : QString("Page %1 has general notes on mounting and wiring the unit in a dry place.").arg(p));
    const QString path = tmp_.filePath("parts-manual.pdf");
    {
      QFile f(path);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(folio::test::make_pdf(pages));
    }
    w->add_paths({path});
    QVERIFY(wait_ready(w.get()));
    const DocumentEntry whole = w->documents()->entries().front();
    QVERIFY(whole.tokens > w->context_tokens());
    QVector<FitQuestion> asked;
    w->set_fit_chooser([&](const FitQuestion& q) -> std::optional<FitChoice> {
      asked << q;
      FitChoice c;
      c.kind = FitChoice::Kind::Part;
      c.part_index = 0;
      c.selection.first_page = 8;
      c.selection.last_page = 8;
      return c;
    });
    QSignalSpy finished(w.get(), &MainWindow::answer_finished);
    w->ask("How long does the outdoor sensor battery last?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    QCOMPARE(asked.size(), 1);
    QCOMPARE(asked[0].parts.size(), 1);
    QCOMPARE(asked[0].parts[0].size(), 14);  // the dialog was offered every page
    QVERIFY(asked[0].parts_by_page[0]);
    QCOMPARE(asked[0].parts[0][8].label, QString("p. 9"));
    QVERIFY(w->last_metrics().has_value());
    QVERIFY(w->last_metrics()->prompt_tokens + 16 <= w->context_tokens());
    const DocumentEntry e = w->documents()->entries().front();
    QCOMPARE(e.selection.first_page, 8);
    QVERIFY(e.selection_tokens > 0 && e.selection_tokens < whole.tokens);
    QVERIFY2(w->documents()->list()->item(0)->text().contains("only page 9 of 14 is used"),
             qPrintable(w->documents()->list()->item(0)->text()));
    w->chat()->flush_render();
    QVERIFY(w->chat()->transcript().contains("Only page 9 of 14 of"));
    QCOMPARE(w->performance()->documents_used_text(), QString("parts-manual.pdf: page 9 of 14"));
    // The next question keeps the choice without asking.
    w->ask("What does the manual say about the battery?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 2, 120000);
    QCOMPARE(asked.size(), 1);
    // Used whole again: the selection is gone (and the next question would ask).
    emit w->documents()->use_whole_requested(e.key);
    QVERIFY(w->documents()->entries().front().selection.empty());
    QVERIFY(!w->documents()->list()->item(0)->text().contains("is used (your choice)"));
  }

  // A password-protected PDF: the app asks for its password (again when it is wrong), reads the
  // PDF with it, and the source pane opens its pages with it; cancelled, the row says what to do.
  void an_encrypted_pdf_asks_for_its_password() {
    const QString path = tmp_.filePath("locked.pdf");
    {
      QFile f(path);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(folio::test::make_pdf({"The vault opens with the brass key.", "The alarm code is kept in the safe."}, {},
                                    "folio-pw"));
    }
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    QVector<std::pair<QString, bool>> asked;
    QStringList answers = {"guess", "folio-pw"};
    w->set_password_asker([&](const QString& name, bool wrong_before) -> std::optional<QString> {
      asked.push_back({name, wrong_before});
      return answers.isEmpty() ? std::nullopt : std::optional<QString>(answers.takeFirst());
    });
    w->add_paths({path});
    QTRY_VERIFY_WITH_TIMEOUT(
        w->documents()->entries().size() == 1 && w->documents()->entries().front().state == DocumentEntry::State::Ready,
        30000);
    QCOMPARE(asked.size(), 2);
    QCOMPARE(asked[0], (std::pair<QString, bool>{"locked.pdf", false}));
    QCOMPARE(asked[1], (std::pair<QString, bool>{"locked.pdf", true}));  // the first one was wrong
    const DocumentEntry e = w->documents()->entries().front();
    QCOMPARE(e.doc.page_count, 2);
    QVERIFY(e.tokens > 0);
    QVERIFY(!w->banner()->isVisible());  // asked, not an error
    // The source pane opens the protected PDF too.
    const folio::chat::GroundingIndex index({folio::docs::chat_document(e.doc)});
    const auto found = index.ground("The alarm code is kept in the safe.", "");
    QCOMPARE(found.size(), size_t{1});
    w->open_passage(e.doc, found.front());
    QVERIFY(w->viewer()->showing_pdf());
    QCOMPARE(w->viewer()->current_pdf_page(), 1);
    QVERIFY(!w->viewer()->highlight_bounds().isEmpty());

    // Cancelled: the row says it needs the password, and how to give it.
    w->remove_document(e.key);
    answers.clear();
    w->add_paths({path});
    QTRY_VERIFY_WITH_TIMEOUT(asked.size() == 3 && !w->documents()->busy(), 30000);
    const DocumentEntry failed = w->documents()->entries().front();
    QCOMPARE(failed.state, DocumentEntry::State::Failed);
    QVERIFY2(failed.error.contains("password-protected") && failed.error.contains("add it again"),
             qPrintable(failed.error));

    // Without a hook, a password dialog asks (its text hidden).
    w->remove_document(failed.key);
    w->set_password_asker({});
    w->add_paths({path});
    QInputDialog* dialog = nullptr;
    QTRY_VERIFY_WITH_TIMEOUT((dialog = w->findChild<QInputDialog*>("pdfPasswordDialog")) != nullptr, 30000);
    QVERIFY(dialog->labelText().contains("locked.pdf is password-protected"));
    QCOMPARE(dialog->textEchoMode(), QLineEdit::Password);
    dialog->setTextValue("folio-pw");
    dialog->accept();
    QTRY_VERIFY_WITH_TIMEOUT(
        w->documents()->entries().size() == 1 && w->documents()->entries().front().state == DocumentEntry::State::Ready,
        30000);
  }

  // KV kept on disk (Settings, opt-in): the first answer saves the documents' KV; after a restart,
  // the reopened conversation's follow-up loads it instead of reading the documents again.
  void the_documents_kv_on_disk_survives_a_restart() {
    QDir(kv_cache_folder()).removeRecursively();
    AppSettings s = baseline();
    s.keep_kv_on_disk = true;
    s.max_tokens = 24;
    s.save();
    MainWindowOptions o;
    o.database_path = tmp_.filePath("kv-restart.sqlite");
    o.load_demo = false;
    const QString doc = write_file("kv-story.txt", story_text(8));
    int64_t id = 0;
    {
      MainWindow w(o);
      w.show();
      QVERIFY(wait_ready(&w));
      QVERIFY(w.settings().keep_kv_on_disk);
      w.add_paths({doc});
      QVERIFY(wait_ready(&w));
      QSignalSpy finished(&w, &MainWindow::answer_finished);
      w.ask("Who played in the park?");
      QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
      const QString footer = w.chat()->entry(w.chat()->count() - 1).footer;
      QVERIFY2(footer.contains("KV saved on disk"), qPrintable(footer));
      QCOMPARE(w.last_metrics()->reused_tokens, qint64(0));
      id = w.conversation_id();
    }
    QVERIFY(!QDir(kv_cache_folder()).entryList({"*.kv"}, QDir::Files).isEmpty());
    MainWindow w(o);  // a restart
    w.show();
    QVERIFY(wait_ready(&w));
    QVERIFY(w.open_conversation(id));
    QTRY_VERIFY_WITH_TIMEOUT(w.documents()->entries().size() == 1 && w.ready_to_ask(), 30000);
    QSignalSpy finished(&w, &MainWindow::answer_finished);
    w.ask("What did they do next?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    const QString footer = w.chat()->entry(w.chat()->count() - 1).footer;
    qInfo("after the restart: %s", qPrintable(footer));
    QVERIFY2(footer.contains("loaded from disk"), qPrintable(footer));
    QVERIFY(w.last_metrics()->reused_tokens > 0);
    // The settings dialog offers it with the space it takes.
    SettingsDialog* d = w.open_settings();
    QVERIFY(d->keep_kv_box()->isChecked());
    QVERIFY2(d->keep_kv_box()->text().contains("MiB now"), qPrintable(d->keep_kv_box()->text()));
    d->close();
  }

  void settings_survive_a_restart() {
    {
      auto w = make_window();
      QVERIFY(wait_ready(w.get()));
      SettingsDialog* d = w->open_settings();
      QVERIFY(d->isVisible());
      QCOMPARE(d->model_edit()->text(), stories_model());
      d->context_spin()->setValue(384);
      d->max_tokens_spin()->setValue(77);
      d->temperature_spin()->setValue(0.35);
      // the KV cache in 8 bits (issue 18): a reload, and the panel says so
      QCOMPARE(d->kv_dtype_combo()->currentData().toString(), QString("native"));
      d->kv_dtype_combo()->setCurrentIndex(d->kv_dtype_combo()->findData("q8"));
      d->findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Ok)->click();
      QCOMPARE(w->settings().context_tokens, qint64(384));
      QCOMPARE(w->settings().kv_dtype, QString("q8"));
      QTRY_COMPARE(w->context_tokens(), qint64(384));
      QVERIFY(wait_ready(w.get()));
      QTRY_VERIFY2(w->performance()->model_text().contains("KV q8"), qPrintable(w->performance()->model_text()));
    }
    auto w = make_window();
    QCOMPARE(w->settings().context_tokens, qint64(384));
    QCOMPARE(w->settings().max_tokens, 77);
    QCOMPARE(w->settings().temperature, 0.35);
    QCOMPARE(w->settings().model_path, stories_model());
    QVERIFY(wait_ready(w.get()));
    QCOMPARE(w->context_tokens(), qint64(384));
    SettingsDialog* d = w->open_settings();
    QCOMPARE(d->context_spin()->value(), 384);
    QCOMPARE(d->max_tokens_spin()->value(), 77);
    QCOMPARE(d->kv_dtype_combo()->currentData().toString(), QString("q8"));
    QVERIFY2(d->load_status().contains("KV cache q8"), qPrintable(d->load_status()));
    QVERIFY2(w->performance()->model_text().contains("KV q8"), qPrintable(w->performance()->model_text()));
    // The file really is in the test folder, not the user's.
    QVERIFY(
        QSettings(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio").fileName().startsWith(tmp_.path()));
  }

  void defaults_suit_document_questions_and_old_ones_move() {
    const AppSettings d;
    QCOMPARE(d.temperature, 0.0);
    QCOMPARE(d.repetition_penalty, 1.0);
    QVERIFY(d.system_prompt.isEmpty());
    const folio::SamplerParams p = d.sampler(7);
    QCOMPARE(p.temperature, 0.0f);
    QCOMPARE(p.repetition_penalty, 1.0f);

    // Settings saved by an older Folio with its defaults (0.3, 1.1) take the new ones; values the
    // user chose stay, and so does everything else.
    auto write_old = [](double temperature, double penalty) {
      QSettings s(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio");
      s.clear();
      s.setValue("model/context_tokens", 384);
      s.setValue("sampling/temperature", temperature);
      s.setValue("sampling/repetition_penalty", penalty);
      s.setValue("sampling/max_tokens", 77);
      s.sync();
    };
    write_old(0.3, 1.1);
    AppSettings a = AppSettings::load();
    QCOMPARE(a.temperature, 0.0);
    QCOMPARE(a.repetition_penalty, 1.0);
    QCOMPARE(a.context_tokens, qint64(384));
    QCOMPARE(a.max_tokens, 77);
    a.temperature = 0.3;  // chosen again after the move: kept from now on
    a.save();
    QCOMPARE(AppSettings::load().temperature, 0.3);
    write_old(0.7, 1.25);
    a = AppSettings::load();
    QCOMPARE(a.temperature, 0.7);
    QCOMPARE(a.repetition_penalty, 1.25);

    // The system prompt is kept across restarts.
    a.system_prompt = "Answer in one sentence.";
    a.save();
    QCOMPARE(AppSettings::load().system_prompt, QString("Answer in one sentence."));
  }

  // Settings ▸ Backend CUDA lists the GPUs found: one checked runs the model there, two or more lay
  // it across them (issue 21); the choice survives a restart, and the memory chart has a bar per GPU.
  void settings_offer_the_gpus() {
    AppSettings s = baseline();
    s.backend = "cuda";
    SettingsDialog d(s);
    QVERIFY(d.gpus_row_visible());
    QVERIFY(d.gpu_boxes().isEmpty());  // this test program registers no GPU backend
    QVERIFY2(d.gpus_note().contains("No GPU found"), qPrintable(d.gpus_note()));
    QCOMPARE(d.settings(), s);
    folio::GpuInfo a{0, "NVIDIA RTX A5000", size_t{24} << 30, size_t{23} << 30};
    folio::GpuInfo b{1, "NVIDIA RTX A5000", size_t{24} << 30, size_t{22} << 30};
    d.set_gpus({a, b}, QString());
    QCOMPARE(d.gpu_boxes().size(), 2);
    QVERIFY(d.gpu_boxes()[0]->text().contains("cuda:0 NVIDIA RTX A5000 (24.0 GiB, 23.0 free)"));
    QVERIFY(d.gpu_boxes()[0]->isChecked() && !d.gpu_boxes()[1]->isChecked());
    QCOMPARE(d.settings().gpus, QString());  // the first alone: the default
    d.gpu_boxes()[1]->setChecked(true);
    QCOMPARE(d.settings().gpus, QString("0,1"));
    QVERIFY2(d.gpus_note().contains("laid across the 2 checked GPUs"), qPrintable(d.gpus_note()));
    if (qEnvironmentVariableIsSet("FOLIO_GUI_GRAB")) {
      d.resize(d.sizeHint());
      d.grab().save(qEnvironmentVariable("FOLIO_GUI_GRAB") + "/settings-gpus.png");
    }
    qInfo("settings dialog with two GPUs: %d x %d px", d.sizeHint().width(), d.sizeHint().height());
    QVERIFY(d.settings().needs_reload(s));
    d.gpu_boxes()[0]->setChecked(false);
    QCOMPARE(d.settings().gpus, QString("1"));
    s.gpus = "0,1";
    d.set_settings(s);
    QVERIFY(d.gpu_boxes()[0]->isChecked() && d.gpu_boxes()[1]->isChecked());
    d.backend_combo()->setCurrentIndex(d.backend_combo()->findData("cpu"));
    QVERIFY(!d.gpus_row_visible());
    {
      const AppSettings on_cpu = d.settings();
      AppSettings other = on_cpu;
      other.gpus = "1";
      QVERIFY(!on_cpu.needs_reload(other));  // the CPU backend does not use them
    }
    // kept across restarts; a hand-edited value keeps only indices, each once
    s.save();
    QCOMPARE(AppSettings::load().gpus, QString("0,1"));
    QSettings(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio").setValue("model/gpus", "0,x,1,1");
    QCOMPARE(AppSettings::load().gpus, QString("0,1"));
    QCOMPARE(AppSettings::load().gpu_list(), (std::vector<int>{0, 1}));
    baseline().save();
    // the performance panel: a memory bar per GPU
    folio::ui::PerformancePanel panel;
    folio::DeviceMemory m0, m1;
    m0.device = "cuda:0 NVIDIA RTX A5000";
    m0.weights_bytes = size_t{8} << 30;
    m0.kv_bytes = size_t{8} << 30;
    m1 = m0;
    m1.device = "cuda:1 NVIDIA RTX A5000";
    panel.show_memory({m0, m1});
    QCOMPARE(panel.memory_devices().size(), 2);
    QCOMPARE(panel.memory_value_mib("kv", 1), 8192.0);
  }

  void settings_reset_to_defaults_keeps_the_model() {
    AppSettings s = baseline();
    s.temperature = 0.8;
    s.repetition_penalty = 1.3;
    s.top_k = 5;
    s.max_tokens = 99;
    s.attention_mode = "dense";
    s.system_prompt = "Talk like a pirate.";
    s.context_tokens = 384;
    SettingsDialog d(s);
    QCOMPARE(d.system_prompt_edit()->toPlainText(), QString("Talk like a pirate."));
    QCOMPARE(d.settings(), s);
    QSignalSpy applied(&d, &SettingsDialog::applied);
    QVERIFY(d.reset_button() != nullptr && d.reset_button()->isVisibleTo(&d));
    d.reset_button()->click();
    QCOMPARE(applied.count(), 0);  // shown, not applied until Apply or OK
    const AppSettings r = d.settings();
    QCOMPARE(r.temperature, 0.0);
    QCOMPARE(r.repetition_penalty, 1.0);
    QCOMPARE(r.top_k, AppSettings{}.top_k);
    QCOMPARE(r.max_tokens, AppSettings{}.max_tokens);
    QCOMPARE(r.attention_mode, AppSettings{}.attention_mode);
    QVERIFY(r.system_prompt.isEmpty());
    QCOMPARE(r.model_path, s.model_path);
    QCOMPARE(r.context_tokens, qint64(384));
    QCOMPARE(r, s.with_defaults());
    // It fits a 1024x640 screen.
    qInfo("settings dialog: %d x %d px", d.sizeHint().width(), d.sizeHint().height());
    QVERIFY(d.sizeHint().width() <= 1000 && d.sizeHint().height() <= 580);
    if (qEnvironmentVariableIsSet("FOLIO_GUI_GRAB")) {
      d.resize(d.sizeHint());
      d.grab().save(qEnvironmentVariable("FOLIO_GUI_GRAB") + "/settings.png");
    }
  }

  void demo_questions_are_answered_right_at_the_defaults() {
    // The default model at the default settings, through the window, as a new user meets it.
#ifdef __SANITIZE_ADDRESS__
    QSKIP("three SmolLM2 answers take over the 300 s test limit under ASan; the release suite runs it");
#endif
    const QString smol = default_model_path();
    if (!smol.endsWith(".gguf") || !QFile::exists(smol))
      QSKIP("SmolLM2-135M-Instruct is not in the cache; run python3 tools/fetch_model.py");
    AppSettings s;  // every default
    s.model_path = smol;
    s.save();
    MainWindowOptions o;
    o.database_path = tmp_.filePath("demo-answers.sqlite");
    o.load_demo = true;
    MainWindow w(o);
    w.show();
    QVERIFY(wait_ready(&w, 300000));
    const QStringList questions = w.chat()->suggestions();
    const QList<QStringList> answers = demo_answers(DemoDocument::Manual);
    QCOMPARE(questions, demo_questions(DemoDocument::Manual));
    QCOMPARE(answers.size(), questions.size());
    // The lines of the manual's sections 5, 10 and 7 (resources/demo/halcyon-h40-manual.md).
    const QList<std::pair<int, int>> sections = {{60, 71}, {112, 117}, {83, 92}};
    for (int i = 0; i < questions.size(); ++i) {
      w.new_conversation();
      QSignalSpy finished(&w, &MainWindow::answer_finished);
      w.ask(questions[i]);
      QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 600000);
      QString answer;
      for (int e = w.chat()->count() - 1; e >= 0 && answer.isEmpty(); --e)
        if (w.chat()->entry(e).kind == ChatEntry::Kind::Assistant) answer = w.chat()->entry(e).text;
      const bool right = std::any_of(answers[i].begin(), answers[i].end(),
                                     [&](const QString& a) { return answer.contains(a, Qt::CaseInsensitive); });
      qInfo("demo question %d: %s -> %s", i + 1, qPrintable(questions[i]), qPrintable(answer.simplified()));
      QVERIFY2(right, qPrintable(questions[i] + " was answered: " + answer));
      // The answer is grounded: its first source is the manual's section that answers the question.
      int entry = -1;
      for (int e = w.chat()->count() - 1; e >= 0 && entry < 0; --e)
        if (w.chat()->entry(e).kind == ChatEntry::Kind::Assistant) entry = e;
      const std::vector<folio::chat::SourcePassage> sources = w.answer_passages(entry);
      QVERIFY2(!sources.empty(), qPrintable(questions[i] + " has no sources"));
      QCOMPARE(w.chat()->entry(entry).sources.size(), static_cast<qsizetype>(sources.size()));
      qInfo("  source: %s \"%s\"", qPrintable(w.chat()->entry(entry).sources.front().where),
            sources.front().quote.c_str());
      QVERIFY2(sources.front().first_line >= sections[i].first && sources.front().last_line <= sections[i].second,
               qPrintable(w.chat()->entry(entry).sources.front().where));
    }
  }

  void layout_gives_the_chat_half_and_the_panel_a_fixed_width_data() {
    QTest::addColumn<QSize>("size");
    QTest::newRow("1024x640") << QSize(1024, 640);
    QTest::newRow("1440x900") << QSize(1440, 900);
  }

  void layout_gives_the_chat_half_and_the_panel_a_fixed_width() {
    QFETCH(QSize, size);
    auto w = make_window(/*demo=*/true);
    w->resize(size);
    QVERIFY(wait_ready(w.get()));
    // Long figures, as after a long document on a GPU: they wrap instead of widening the panel.
    folio::Metrics m;
    m.prompt_tokens = 131072;
    m.reused_tokens = 65536;
    m.prefill_tokens = 65536;
    m.prefill_ms = 123456.0;
    m.prefill_tok_s = 531.0;
    m.ttft_ms = 123999.0;
    m.decode_tokens = 1234;
    m.decode_tok_s = 12.5;
    m.attention_mode = "sparse";
    m.sparse_chunks = 12;
    m.attention_density = 0.12;
    m.est_mass_mean = 0.97;
    m.stop = folio::StopReason::MaxTokens;
    w->performance()->show_metrics(m);
    QTest::qWait(50);
    QCOMPARE(w->size(), size);
    QVERIFY(w->performance_visible());
    QCOMPARE(w->performance()->width(), PerformancePanel::kWidth);
    QVERIFY2(w->chat()->width() >= size.width() / 2,
             qPrintable(QString("chat %1 px of %2").arg(w->chat()->width()).arg(size.width())));
    // Nothing overlaps or is clipped in the panel, and its content is no wider than the panel.
    const QStringList faults = layout_faults(w->performance()->content());
    QVERIFY2(faults.isEmpty(), qPrintable(faults.join("\n")));
    QVERIFY(w->performance()->content()->width() <= PerformancePanel::kWidth);
    // Nor between the columns of the window.
    const QRect docs(w->documents()->mapTo(w.get(), QPoint()), w->documents()->size());
    const QRect chat(w->chat()->mapTo(w.get(), QPoint()), w->chat()->size());
    const QRect perf(w->performance()->mapTo(w.get(), QPoint()), w->performance()->size());
    QVERIFY(!docs.intersects(chat) && !chat.intersects(perf) && !docs.intersects(perf));
    QVERIFY(perf.right() < w->width());
    qInfo("%dx%d: documents %d px, chat %d px, performance panel %d px", size.width(), size.height(),
          w->documents()->width(), w->chat()->width(), w->performance()->width());
    if (qEnvironmentVariableIsSet("FOLIO_GUI_GRAB")) w->grab().save(qEnvironmentVariable("FOLIO_GUI_GRAB") + QString("/layout-%1.png").arg(size.width()));
  }

  void a_dragged_documents_width_is_kept_within_the_chats_half() {
    auto w = make_window();
    w->resize(1440, 900);
    QVERIFY(wait_ready(w.get()));
    auto* split = qobject_cast<QSplitter*>(w->centralWidget());
    QVERIFY(split != nullptr);
    const int before = split->sizes().value(0);
    QSplitterHandle* handle = split->handle(1);
    const QPoint at(handle->width() / 2, handle->height() / 2);
    QTest::mousePress(handle, Qt::LeftButton, {}, at);
    QTest::mouseMove(handle, at + QPoint(-60, 0));
    QTest::mouseRelease(handle, Qt::LeftButton, {}, at + QPoint(-60, 0));
    const int dragged = split->sizes().value(0);
    QVERIFY2(dragged < before - 30, qPrintable(QString("%1 -> %2").arg(before).arg(dragged)));
    // A resize keeps the dragged width, and a small window still gives the chat half.
    w->resize(1300, 900);
    QTest::qWait(20);
    QCOMPARE(split->sizes().value(0), dragged);
    w->resize(1024, 640);
    QTest::qWait(20);
    QVERIFY(w->chat()->width() >= 512);
  }

  void performance_panel_hides_and_the_choice_is_remembered() {
    {
      auto w = make_window();
      w->resize(1024, 640);
      QVERIFY(wait_ready(w.get()));
      QAction* toggle = w->performance_action();
      QCOMPARE(toggle->shortcut(), QKeySequence("Ctrl+Shift+P"));
      QVERIFY(toggle->isChecked());
      const int chat_before = w->chat()->width();
      toggle->trigger();
      QTest::qWait(20);
      QVERIFY(!w->performance_visible());
      QVERIFY(!w->performance()->isVisible());
      QVERIFY2(w->chat()->width() >= chat_before + PerformancePanel::kWidth / 2,
               qPrintable(QString("%1 -> %2").arg(chat_before).arg(w->chat()->width())));
      w->close();
    }
    {
      auto w = make_window();  // a restart
      QTest::qWait(20);
      QVERIFY(!w->performance_visible());
      QVERIFY(!w->performance_action()->isChecked());
      w->performance_action()->trigger();
      QVERIFY(w->performance_visible());
      QTest::qWait(20);
      QCOMPARE(w->performance()->width(), PerformancePanel::kWidth);
    }
    auto w = make_window();
    QVERIFY(w->performance_visible());
  }

  // Settings say where auto attention turns sparse for the loaded model and from what: a crossover
  // measured on this backend (folio-sparse crossover, in the model's folio-sparse.json), which the
  // "Sparse above" setting follows by default ("As measured"), or that none was measured.
  void settings_say_where_auto_attention_turns_sparse() {
    QDir().mkpath(tmp_.filePath("measured-model"));
    const QString model = tmp_.filePath("measured-model/stories260K.bin");
    QFile::remove(model);
    QFile::remove(tmp_.filePath("measured-model/tok512.bin"));
    QVERIFY(QFile::copy(stories_model(), model));
    QVERIFY(QFile::copy(QFileInfo(stories_model()).dir().filePath("tok512.bin"), tmp_.filePath("measured-model/tok512.bin")));
    QVERIFY(!write_file("measured-model/folio-sparse.json",
                        "{\"measured\": [{\"backend\": \"cpu\", \"tokens\": 4096, \"up_to\": 16384, "
                        "\"device\": \"cpu (2 threads)\", \"date\": \"2026-12-06\"}]}")
                    .isEmpty());
    AppSettings s = baseline();
    s.save();
    {
      auto w = make_window();
      QVERIFY(wait_ready(w.get()));
      SettingsDialog* d = w->open_settings();
      QVERIFY2(d->auto_attention_text().startsWith("Auto attention stays dense on the CPU"),
               qPrintable(d->auto_attention_text()));
      QCOMPARE(d->findChild<QSpinBox*>("sparseThreshold")->text(), QString("As measured"));
      d->close();
    }
    s.model_path = model;
    s.save();
    {
      auto w = make_window();
      QVERIFY(wait_ready(w.get()));
      SettingsDialog* d = w->open_settings();
      QVERIFY2(d->auto_attention_text() ==
                   "Auto attention turns sparse from 4096 tokens on the CPU (measured on cpu (2 threads), 2026-12-06).",
               qPrintable(d->auto_attention_text()));
      QCOMPARE(d->settings().sparse_threshold_tokens, int64_t{0});  // the default follows the measurement
      d->close();
    }
    baseline().save();
  }

  void no_gpu_is_one_notice_that_can_be_dismissed_for_good() {
    // This build has no CUDA backend (or the machine no GPU): asking for CUDA falls back to the CPU.
    AppSettings s = baseline();
    s.backend = "cuda";
    s.save();
    {
      auto w = make_window();
      QVERIFY(wait_ready(w.get()));
      QVERIFY(w->model_info().backend.startsWith("cpu"));
      QVERIFY(w->gpu_notice()->isVisible());
      const QString text = w->gpu_notice()->text();
      QVERIFY2(text.contains("CPU") && (text.contains("looked for") || text.contains("no GPU support")),
               qPrintable(text));
      QVERIFY2(!text.contains("driver version"), qPrintable(text));
      QVERIFY(!w->banner()->isVisible());  // a notice, not an error
      QVERIFY(!w->gpu_notice()->styleSheet().contains("2e7d32"));
      // The settings say it plainly too, not in green.
      SettingsDialog* d = w->open_settings();
      QVERIFY(d->load_status().contains("Note:"));
      // what fits here, and the KV cache's type (the panel says it too)
      QVERIFY2(d->load_status().contains("Largest context here:") && d->load_status().contains("KV cache fp32"),
               qPrintable(d->load_status()));
      QVERIFY2(w->performance()->model_text().contains("KV fp32"), qPrintable(w->performance()->model_text()));
      QVERIFY(!d->findChild<QLabel*>("loadStatus")->styleSheet().contains("2e7d32"));
      d->close();
      // Dismiss hides it for now: the next start shows it again.
      w->gpu_notice()->findChild<QToolButton*>()->click();
      QVERIFY(!w->gpu_notice()->isVisible());
    }
    {
      auto w = make_window();
      QVERIFY(wait_ready(w.get()));
      QVERIFY(w->gpu_notice()->isVisible());
      w->gpu_notice()->never_button()->click();
      QVERIFY(!w->gpu_notice()->isVisible());
    }
    auto w = make_window();  // "Don't show again" holds across restarts
    QVERIFY(wait_ready(w.get()));
    QVERIFY(!w->gpu_notice()->isVisible());
    QVERIFY(w->model_ready());
  }

  void history_reopens_a_conversation_after_a_restart() {
    MainWindowOptions o;
    o.database_path = tmp_.filePath("history.sqlite");
    o.load_demo = false;
    const QString kept = write_file("kept.txt", story_text(2));
    const QString changed = write_file("changed.txt", story_text(3));
    const QString gone = write_file("gone.txt", story_text(1));
    const QString question = "Who played in the park?";
    QString answer;
    int64_t id = 0;
    {
      MainWindow w(o);
      w.show();
      QVERIFY(wait_ready(&w));
      QVERIFY(w.history()->listed_ids().isEmpty());
      w.add_paths({kept, changed, gone});
      QTRY_VERIFY_WITH_TIMEOUT(w.documents()->entries().size() == 3 && w.ready_to_ask(), 30000);
      QSignalSpy finished(&w, &MainWindow::answer_finished);
      w.ask(question);
      QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
      answer = w.chat()->last_answer();
      id = w.conversation_id();
      QVERIFY(id > 0 && !answer.isEmpty());
      // Settings changed after the answer belong to the next one; a changed one is saved with it.
      AppSettings held = w.settings();
      held.system_prompt = "Answer briefly.";
      held.top_k = 7;
      w.apply_settings(held);
      w.ask("Who else was there?");
      QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 2, 120000);
      answer = w.chat()->last_answer();
      // Then the user changes them again, and they are what the next start begins with.
      AppSettings later = held;
      later.system_prompt.clear();
      later.top_k = 40;
      w.apply_settings(later);
      QCOMPARE(w.history()->listed_ids(), QList<int64_t>{id});
      QVERIFY(w.history()->list()->item(0)->text().startsWith(question));  // titled from the first question
    }
    // Between the runs one document changes and one vanishes.
    QVERIFY(!write_file("changed.txt", story_text(5)).isEmpty());
    QVERIFY(QFile::remove(gone));
    {
      MainWindow w(o);  // a restart against the same store
      w.show();
      QVERIFY(wait_ready(&w));
      QCOMPARE(w.chat()->count(), 0);
      QCOMPARE(w.history()->listed_ids(), QList<int64_t>{id});
      QVERIFY(w.open_conversation(id));
      QTRY_VERIFY_WITH_TIMEOUT(w.documents()->entries().size() == 2 && w.ready_to_ask(), 30000);
      QCOMPARE(w.conversation_id(), id);
      // The messages are back, in order.
      QStringList users, answers;
      for (int i = 0; i < w.chat()->count(); ++i) {
        if (w.chat()->entry(i).kind == ChatEntry::Kind::User) users << w.chat()->entry(i).text;
        if (w.chat()->entry(i).kind == ChatEntry::Kind::Assistant) answers << w.chat()->entry(i).text;
      }
      QCOMPARE(users, (QStringList{question, "Who else was there?"}));
      QCOMPARE(answers.size(), 2);
      QCOMPARE(answers.back(), answer);
      // And the settings it was held with.
      QCOMPARE(w.settings().system_prompt, QString("Answer briefly."));
      QCOMPARE(w.settings().top_k, 7);
      QCOMPARE(w.settings().model_path, stories_model());
      // The documents are read again from their paths; the chat says which changed or vanished.
      QStringList paths;
      for (const auto& e : w.documents()->entries()) paths << e.path;
      QCOMPARE(paths, (QStringList{QFileInfo(kept).absoluteFilePath(), QFileInfo(changed).absoluteFilePath()}));
      w.chat()->flush_render();
      const QString transcript = w.chat()->transcript();
      QVERIFY2(transcript.contains("changed.txt has changed since this conversation"), qPrintable(transcript));
      QVERIFY2(transcript.contains("gone.txt is no longer at"), qPrintable(transcript));
      QVERIFY(!transcript.contains("kept.txt has changed"));
      // The reopened answers are grounded again (against kept.txt, the one unchanged document).
      for (int i = 0; i < w.chat()->count(); ++i) {
        if (w.chat()->entry(i).kind != ChatEntry::Kind::Assistant) continue;
        QTRY_VERIFY_WITH_TIMEOUT(!w.chat()->entry(i).sources.isEmpty() || !w.chat()->entry(i).sources_note.isEmpty(),
                                 30000);
        for (const auto& p : w.answer_passages(i)) QCOMPARE(p.file, std::string("kept.txt"));
      }

      // A follow-up goes on in the same stored conversation, with the history in the prompt.
      QSignalSpy finished(&w, &MainWindow::answer_finished);
      w.ask("What did they do next?");
      QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
      QCOMPARE(w.conversation_id(), id);
      QCOMPARE(w.database()->count_messages(id), qint64(6));
      QCOMPARE(w.history_turns(), 6);  // the reopened turns went into the prompt's history
      QVERIFY(w.last_metrics()->prompt_tokens > 0);

      // Search, rename, export.
      w.history()->search()->setText("zebra");
      QVERIFY(w.history()->listed_ids().isEmpty());
      w.history()->search()->setText("NEXT?");  // a later question, any case
      QCOMPARE(w.history()->listed_ids(), QList<int64_t>{id});
      w.history()->search()->clear();
      w.rename_conversation(id, "Lily in the park");
      QCOMPARE(w.database()->conversation(id)->title, QString("Lily in the park"));
      QVERIFY(w.history()->list()->item(0)->text().startsWith("Lily in the park"));
      const QString md_path = tmp_.filePath("export.md");
      QVERIFY(w.export_markdown(id, md_path));
      QFile md(md_path);
      QVERIFY(md.open(QIODevice::ReadOnly));
      const QString markdown = QString::fromUtf8(md.readAll());
      QVERIFY(markdown.startsWith("# Lily in the park\n"));
      QVERIFY(markdown.contains("## Question\n\n" + question));
      QVERIFY(markdown.contains(answer));
      QVERIFY(markdown.contains("kept.txt"));

      // Delete, undo, delete for good.
      w.delete_conversation(id);
      QVERIFY(w.history()->listed_ids().isEmpty());
      QVERIFY(w.history()->undo_button()->isVisibleTo(w.history()));  // the History tab need not be shown
      QCOMPARE(w.conversation_id(), qint64(0));  // it was the open one
      w.undo_deletion();
      QCOMPARE(w.history()->listed_ids(), QList<int64_t>{id});
      QVERIFY(w.database()->conversation(id).has_value());
      w.delete_conversation(id);
      w.commit_deletion();
      QVERIFY(!w.database()->conversation(id).has_value());
      QVERIFY(w.history()->listed_ids().isEmpty());
    }
  }

  void markdown_export_resolves_citations() {
    const QString path = write_file("notes.txt", "Lily found a red ball.\nShe shared it with Tom.\nThey played.\n");
    const folio::docs::Document doc = folio::docs::load_text_file(path);
    folio::store::Conversation c;
    c.title = "Ball";
    c.model = "stories260K";
    folio::store::DocumentRecord r;
    r.path = path;
    r.title = "notes.txt";
    r.content_hash = doc.content_hash;
    std::vector<folio::store::Message> messages(2);
    messages[0].role = folio::store::Role::User;
    messages[0].text = "Who shared the ball?";
    messages[1].role = folio::store::Role::Assistant;
    messages[1].text = "Lily shared it with Tom (notes.txt:2). The box says more (p. 99).";
    const QString md = conversation_markdown(c, {r}, messages, {doc});
    QVERIFY2(md.startsWith("# Ball\n"), qPrintable(md));
    QVERIFY(md.contains("- notes.txt (`" + path + "`)"));
    QVERIFY(md.contains("## Question\n\nWho shared the ball?"));
    QVERIFY2(md.contains("- notes.txt:2: notes.txt, line 2 — “She shared it with Tom.”"), qPrintable(md));
    QVERIFY2(md.contains("- p. 99: not in the documents"), qPrintable(md));
    // The passage that supports the answer, found whether or not it was cited.
    QVERIFY2(
        md.contains("Sources found in the documents:\n\n- notes.txt:1-2 — “Lily found a red ball. She shared it with "
                    "Tom.”"),
        qPrintable(md));
    // A document whose content changed since is not used to check them.
    folio::docs::Document changed = doc;
    changed.content_hash = "0000";
    const QString unchecked = conversation_markdown(c, {r}, messages, {changed});
    QVERIFY2(unchecked.contains("- notes.txt:2: not checked"), qPrintable(unchecked));
  }

  void a_bad_model_shows_an_error_and_the_app_keeps_running() {
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    const QString bad = write_file("broken.bin", "this is not a model");
    AppSettings s = w->settings();
    s.model_path = bad;
    SettingsDialog* d = w->open_settings();
    w->apply_settings(s);
    QTRY_VERIFY_WITH_TIMEOUT(!w->model_error().isEmpty(), 30000);
    QVERIFY(!w->model_ready());
    QVERIFY(w->banner()->isVisible());
    QVERIFY(w->banner()->text().contains("could not be loaded"));
    QVERIFY2(d->load_status().contains("could not be loaded"), qPrintable(d->load_status()));
    QVERIFY(!w->chat()->send_button()->isEnabled());
    // Choosing a good model again brings everything back.
    s.model_path = stories_model();
    w->apply_settings(s);
    QVERIFY(wait_ready(w.get()));
    QVERIFY(!w->banner()->isVisible());
  }

  void performance_panel_series_update_after_runs() {
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    w->add_paths({write_file("series.txt", story_text(8))});
    QVERIFY(wait_ready(w.get()));
    const size_t runs_before = w->database()->list_runs().size();
    const int points_before = w->performance()->ttft_point_count();

    QSignalSpy finished(w.get(), &MainWindow::answer_finished);
    w->ask("Who played in the park?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 120000);
    QCOMPARE(w->database()->list_runs().size(), runs_before + 1);
    QCOMPARE(w->database()->list_runs().back().attention_mode, QString("auto"));
    QCOMPARE(w->performance()->ttft_point_count(), points_before + 1);
    QVERIFY2(w->performance()->ttft_series_names().contains("auto, full prefill"),
             qPrintable(w->performance()->ttft_series_names().join("; ")));
    QVERIFY(w->conversation_id() > 0);
    QCOMPARE(w->database()->count_messages(w->conversation_id()), qint64(2));

    // Compare says what it will run and about how long before it starts; declined, nothing runs.
    QSignalSpy compared(w.get(), &MainWindow::compare_finished);
    QVERIFY(w->findChild<QPushButton*>("compareButton")->isEnabled());
    QStringList estimates;
    w->set_compare_confirm([&](const QString& estimate) {
      estimates << estimate;
      return false;
    });
    w->compare();
    QCOMPARE(estimates.size(), 1);
    QVERIFY2(estimates[0].contains("6 prefills") && estimates[0].contains("about"), qPrintable(estimates[0]));
    QVERIFY(!w->busy());
    QCOMPARE(w->database()->list_runs().size(), runs_before + 1);

    // Compare measures the documents at three lengths, dense and sparse, and ends with a verdict.
    w->set_compare_confirm([&](const QString& estimate) {
      estimates << estimate;
      return true;
    });
    w->compare();
    QVERIFY(w->findChild<QPushButton*>("compareButton")->isEnabled());  // it cancels now
    QTRY_VERIFY_WITH_TIMEOUT(compared.count() == 1, 120000);
    qInfo("compare: %s", qPrintable(w->compare_verdict()));
    QVERIFY2(w->compare_verdict().contains(QRegularExpression("(faster|slower|same time).* at [0-9,]+ tokens on this CPU")),
             qPrintable(w->compare_verdict()));
    w->chat()->flush_render();
    QVERIFY(w->chat()->transcript().contains(w->compare_verdict().left(20)));
    QCOMPARE(w->database()->list_runs().size(), runs_before + 7);
    QCOMPARE(w->performance()->ttft_point_count(), points_before + 7);
    for (const char* name : {"auto, full prefill", "dense, full prefill", "sparse, full prefill"})
      QVERIFY2(w->performance()->ttft_series_names().contains(name),
               qPrintable(w->performance()->ttft_series_names().join("; ")));
    QVERIFY(!w->performance()->ttft_series_names().filter(QRegularExpression("^sparse")).isEmpty());
    const auto runs = w->database()->list_runs();
    QCOMPARE(runs.back().attention_mode, QString("sparse"));
    QVERIFY(wait_idle(w.get()));

    // Cancelled (the button again, before a run ends): no verdict, no more runs.
    const size_t runs_now = w->database()->list_runs().size();
    w->compare();
    QVERIFY(w->busy());
    w->compare();  // the Compare button while measuring
    QTRY_VERIFY_WITH_TIMEOUT(compared.count() == 2, 120000);
    QVERIFY2(w->compare_verdict().contains("stopped"), qPrintable(w->compare_verdict()));
    QVERIFY(w->database()->list_runs().size() < runs_now + 6);
    QVERIFY(wait_idle(w.get()));

    // A follow-up reuses the documents' KV: its TTFT goes to a series of its own, in the legend.
    const int points_now = w->performance()->ttft_point_count();  // the cancelled Compare may have added some
    w->ask("What did they do all day?");
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 2, 120000);
    QVERIFY(w->last_metrics()->reused_tokens > 0);
    QCOMPARE(w->performance()->ttft_point_count(), points_now + 1);
    QVERIFY2(w->performance()->ttft_series_names().contains("auto, reused KV"),
             qPrintable(w->performance()->ttft_series_names().join("; ")));
    QVERIFY(w->performance()->ttft_legend_visible());
  }

  void citations_open_the_source() {
    // A two-page PDF and a text file.
    const QString pdf_path = tmp_.filePath("manual.pdf");
    {
      QPdfWriter pdf(pdf_path);
      QPainter p(&pdf);
      p.setFont(QFont("Sans", 14));
      p.drawText(QRect(200, 200, 8000, 1000), "Page one: the sensor runs on three AA cells.");
      pdf.newPage();
      p.drawText(QRect(200, 200, 8000, 1000), "Page two: error E-17 means the rain gauge is blocked.");
    }
    const QString txt_path = write_file("notes.txt", "alpha\nbeta\ngamma\ndelta\nepsilon\n");
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    const folio::docs::Document pdf = folio::docs::load_document(pdf_path);
    const folio::docs::Document txt = folio::docs::load_document(txt_path);
    QCOMPARE(pdf.page_count, 2);

    const auto page = folio::docs::resolve_citations("It is blocked (p. 2).", {pdf});
    QCOMPARE(page.size(), 1);
    w->open_source(pdf, page[0]);
    QVERIFY(w->viewer()->isVisible());
    QVERIFY(w->viewer()->showing_pdf());
    QTRY_COMPARE(w->viewer()->current_pdf_page(), 1);

    const auto lines = folio::docs::resolve_citations("See notes.txt:2-3.", {txt});
    QCOMPARE(lines.size(), 1);
    w->open_source(txt, lines[0]);
    QVERIFY(!w->viewer()->showing_pdf());
    QCOMPARE(w->viewer()->first_marked_line(), 2);
    QVERIFY(w->viewer()->current_title().contains("lines 2–3"));

    // In the chat, a citation is a link that names its target.
    ChatView view;
    view.add_user("Where?");
    view.begin_assistant();
    view.append_to_answer("It is blocked (p. 2).");
    view.finish_answer("metrics", page);
    view.flush_render();
    QVERIFY(view.browser()->toHtml().contains("folio-cite:1/0"));
    QSignalSpy clicked(&view, &ChatView::citation_activated);
    emit view.browser()->anchorClicked(QUrl("folio-cite:1/0"));
    QCOMPARE(clicked.count(), 1);
    QCOMPARE(clicked[0][1].value<folio::docs::CitationTarget>().first_page, 1);
  }

  // Grounded answers in the window: the passages that support an answer are listed under it as
  // links; one opens its PDF page in a wide source pane with the passage highlighted, zoom works,
  // and the answer stays in view; a page the answer cites that the PDF does not have is flagged,
  // not linked. A file's passage opens at its lines.
  void sources_under_an_answer_open_the_page_highlighted() {
    const QString pdf_path = tmp_.filePath("station.pdf");
    {
      QPdfWriter pdf(pdf_path);
      QPainter p(&pdf);
      p.setFont(QFont("Sans", 12));
      p.drawText(QRect(200, 200, 8000, 1000), "Page one: unpacking the station and its parts.");
      pdf.newPage();
      p.drawText(QRect(200, 200, 8000, 600), "Mount the mast on a wooden post.");
      p.drawText(QRect(200, 900, 8000, 600), "The sensor cells last about fourteen months in winter.");
      pdf.newPage();
      p.drawText(QRect(200, 200, 8000, 1000), "Page three: cleaning the rain funnel.");
    }
    const QString txt_path =
        write_file("care.txt", "Care\n\nWipe the display with a dry cloth.\n\nRinse the rain funnel every spring.\n");
    auto w = make_window();
    w->resize(1440, 900);
    QVERIFY(wait_ready(w.get()));
    const folio::docs::Document pdf = folio::docs::load_document(pdf_path);
    const folio::docs::Document txt = folio::docs::load_document(txt_path);
    QCOMPARE(pdf.page_count, 3);

    const folio::chat::GroundingIndex index(folio::docs::chat_documents({pdf, txt}));
    const QString answer = "The cells last about fourteen months (p. 2). Rinse the funnel every spring (p. 12).";
    const std::vector<folio::chat::SourcePassage> found =
        index.ground(answer.toStdString(), "How long do the cells last?");
    QCOMPARE(found.size(), size_t{2});
    const auto on_page = std::find_if(found.begin(), found.end(), [](const auto& p) { return p.page_index >= 0; });
    const auto in_file = std::find_if(found.begin(), found.end(), [](const auto& p) { return p.page_index < 0; });
    QVERIFY(on_page != found.end() && in_file != found.end());
    QCOMPARE(on_page->page_index, 1);
    QCOMPARE(in_file->first_line, 5);
    qInfo("page 2 reads \"%s\"; quoted \"%s\"", qPrintable(pdf.sections[1].text), on_page->quote.c_str());

    // Listed under the answer; the citation of a page the PDF does not have is flagged, not linked.
    const QVector<folio::docs::CitationCheck> checks = folio::docs::check_citations(answer, {pdf, txt});
    QCOMPARE(checks.size(), 2);
    QVERIFY(checks[0].found);
    QVERIFY(!checks[1].found);
    QVERIFY2(checks[1].problem.contains("no page 12 in station.pdf (pages 1-3)"), qPrintable(checks[1].problem));
    ChatView* chat = w->chat();
    chat->add_user("How long do the cells last?");
    const int entry = chat->begin_assistant();
    chat->append_to_answer(answer);
    chat->finish_answer("metrics", {checks[0].target});
    chat->set_sources(entry, {{"station.pdf, p. 2", QString::fromStdString(on_page->quote)}, {"care.txt:5", "Rinse"}},
                      {checks[1]}, {});
    chat->flush_render();
    const QString html = chat->browser()->toHtml();
    QVERIFY(html.contains("folio-source:" + QString::number(entry) + "/0"));
    QVERIFY(html.contains("folio-cite:" + QString::number(entry) + "/0"));
    QVERIFY(!html.contains("folio-cite:" + QString::number(entry) + "/1"));
    const QString shown = chat->transcript();
    QVERIFY2(shown.contains("p. 12 [not in the documents]"), qPrintable(shown));
    QVERIFY2(shown.contains("Sources") && shown.contains("fourteen months"), qPrintable(shown));
    QSignalSpy activated(chat, &ChatView::source_activated);
    emit chat->browser()->anchorClicked(QUrl(QString("folio-source:%1/0").arg(entry)));
    QCOMPARE(activated.count(), 1);
    QCOMPARE(activated[0][1].toInt(), 0);

    // The PDF page opens wide beside the chat, the passage highlighted.
    w->open_passage(pdf, *on_page);
    QTest::qWait(50);
    SourceViewer* viewer = w->viewer();
    QVERIFY(viewer->isVisible());
    QVERIFY(viewer->showing_pdf());
    QCOMPARE(viewer->current_pdf_page(), 1);
    QVERIFY(viewer->current_title().contains("page 2"));
    QVERIFY(!viewer->highlight_bounds().isEmpty());
    QVERIFY2(viewer->highlighted_text().contains("fourteen months"), qPrintable(viewer->highlighted_text()));
    QVERIFY2(!viewer->highlighted_text().contains("Mount"), "the sentence, not the whole line of the page");
    const int pane = viewer->width(), beside = w->chat()->width();
    qInfo("source pane %d px beside the chat's %d px", pane, beside);
    QVERIFY2(pane >= 380 && beside >= 250, qPrintable(QString("pane %1, chat %2").arg(pane).arg(beside)));
    QVERIFY(w->chat()->isVisible());
    // Zoom: in, out, and back to the pane's width.
    QVERIFY(viewer->fits_width());
    const double fitted = viewer->zoom();
    const int page_width = viewer->findChild<QLabel*>("pdfPage")->width();
    viewer->zoom_in();
    QVERIFY(!viewer->fits_width());
    QVERIFY(viewer->zoom() > fitted);
    QVERIFY(viewer->findChild<QLabel*>("pdfPage")->width() > page_width);
    viewer->findChild<QToolButton*>("fitWidth")->click();
    QVERIFY(viewer->fits_width());
    QCOMPARE(viewer->zoom(), fitted);
    QVERIFY(!viewer->highlight_bounds().isEmpty());  // still marked

    // In a small window the performance panel makes room while the pane is open, and comes back.
    w->close_source_pane();
    w->resize(1024, 640);
    QTest::qWait(50);
    QVERIFY(w->performance()->isVisible());
    w->open_passage(pdf, *on_page);
    QTest::qWait(50);
    qInfo("1024x640: source pane %d px beside the chat's %d px", viewer->width(), w->chat()->width());
    QVERIFY(!w->performance()->isVisible());
    QVERIFY(w->performance_action()->isChecked());  // the user's choice is unchanged
    QVERIFY2(viewer->width() >= 380 && w->chat()->width() >= 250,
             qPrintable(QString("pane %1, chat %2").arg(viewer->width()).arg(w->chat()->width())));
    if (qEnvironmentVariableIsSet("FOLIO_GUI_GRAB"))
      w->grab().save(qEnvironmentVariable("FOLIO_GUI_GRAB") + "/sources-1024.png");
    w->close_source_pane();
    QTest::qWait(20);
    QVERIFY(!viewer->isVisible());
    QVERIFY(w->performance()->isVisible());
    w->resize(1440, 900);
    QTest::qWait(20);

    // The file's passage opens at its lines.
    w->open_passage(txt, *in_file);
    QVERIFY(!viewer->showing_pdf());
    QCOMPARE(viewer->first_marked_line(), 5);
    QVERIFY(viewer->current_title().contains("care.txt"));
    if (qEnvironmentVariableIsSet("FOLIO_GUI_GRAB")) {
      w->open_passage(pdf, *on_page);
      QTest::qWait(50);
      w->grab().save(qEnvironmentVariable("FOLIO_GUI_GRAB") + "/sources.png");
    }
  }

  void event_loop_stalls_while_the_engine_works() {
    // Reported, not asserted: the longest gap between ticks of a 5 ms timer in the GUI thread.
    auto measure = [&](MainWindow* w, const QString& question, const char* label) {
      StallProbe probe(w);
      QSignalSpy finished(w, &MainWindow::answer_finished);
      w->ask(question);
      QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 600000);
      const folio::Metrics m = *w->last_metrics();
      qInfo(
          "GUI stall (%s): prefill %lld tokens in %.0f ms -> longest gap %.1f ms (%d ticks); generation %lld tokens "
          "in %.0f ms -> longest gap %.1f ms (%d ticks)",
          label, qlonglong(m.prefill_tokens), m.prefill_ms, probe.max_prefill_ms, probe.prefill_ticks,
          qlonglong(m.decode_tokens), m.decode_ms, probe.max_generate_ms, probe.generate_ticks);
    };
    {
      AppSettings s = baseline();
      s.max_tokens = 200;
      s.save();
      auto w = make_window();
      QVERIFY(wait_ready(w.get()));
      w->add_paths({write_file("stall.txt", story_text(24))});
      QVERIFY(wait_ready(w.get()));
      measure(w.get(), "What happened?", "stories260K");
    }
    // With a real model when one is in the cache: prefill takes seconds there.
    const QString smol = default_model_path();
    if (smol.endsWith(".gguf") && qEnvironmentVariableIntValue("FOLIO_GUI_SKIP_SMOLLM2") == 0) {
      AppSettings s = baseline();
      s.model_path = smol;
      s.max_tokens = 64;
      s.context_tokens = 4096;
      s.save();
      MainWindowOptions o;
      o.database_path = tmp_.filePath("folio.sqlite");
      o.load_demo = true;
      MainWindow w(o);
      w.show();
      QVERIFY(wait_ready(&w, 300000));
      measure(&w, "How long do the batteries in the outdoor sensor last?", "SmolLM2-135M, demo document");
    }
  }
};

QTEST_MAIN(TstGui)
#include "tst_gui.moc"
