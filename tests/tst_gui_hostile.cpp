// The desktop app, offscreen, while a hostile PDF is being read (issue 22): a PDF whose page tree is
// nested 2,000 levels deep keeps Qt PDF busy for minutes, so it is read by the app's own binary in
// a worker process. The window must stay responsive meanwhile (the target: no GUI stall
// over 100 ms), and closing it, or removing the document, must end the worker and let the app exit
// within 2 s. The figures measured are printed (qInfo) so a run on a loaded machine can be read.
//
// Bounds, so a shared 2-core CI machine does not make this flaky: the stall is compared with the
// longest gap of the same probe while the window is idle (before the PDF is added); the PDF may add
// at most 100 ms to what the machine's own load causes. A GUI thread blocked on the reader would
// stall for the whole read (seconds), far past either bound.
#include <QApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QSettings>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QThreadPool>
#include <QTimer>
#include <QtTest>
#include <memory>

#include <signal.h>
#include <unistd.h>

#include "tests/test_support.h"
#include "ui/app_settings.h"
#include "ui/default_model.h"
#include "ui/document_panel.h"
#include "ui/main_window.h"

// As in tst_gui: Qt keeps allocations it never frees in the widgets driven here.
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

// The longest gap between ticks of a 5 ms timer in the GUI thread, while it runs.
class GapProbe : public QObject {
 public:
  GapProbe() {
    timer_.setInterval(5);
    timer_.setTimerType(Qt::PreciseTimer);
    connect(&timer_, &QTimer::timeout, this, [this] {
      const qint64 now = clock_.nsecsElapsed();
      longest_ms = std::max(longest_ms, static_cast<double>(now - last_) / 1e6);
      last_ = now;
      ++ticks;
    });
    clock_.start();
    last_ = clock_.nsecsElapsed();
    timer_.start();
  }
  double longest_ms = 0.0;
  int ticks = 0;

 private:
  QTimer timer_;
  QElapsedTimer clock_;
  qint64 last_ = 0;
};

// The PDF worker processes this process started ("PROGRAM --parse-pdf PATH"), by pid.
QList<qint64> pdf_workers() {
  return folio::test::child_processes(::getpid(), "--parse-pdf");
}

bool alive(qint64 pid) {
  return folio::test::process_running(pid);
}

}  // namespace

class TstGuiHostile : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir tmp_;
  QString worker_;

  QString write_pdf(const QString& name) {
    const QString path = tmp_.filePath(name);
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate)) return {};
    f.write(folio::test::nested_page_tree_pdf(2000));
    return path;
  }
  std::unique_ptr<MainWindow> make_window() {
    MainWindowOptions o;
    o.database_path = tmp_.filePath("folio.sqlite");
    o.load_demo = false;
    o.pdf_worker = worker_;  // as the app runs: its own binary reads PDFs
    auto w = std::make_unique<MainWindow>(o);
    w->show();
    return w;
  }
  static bool wait_ready(MainWindow* w, int timeout_ms = 120000) {
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < timeout_ms) {
      if (w->model_ready() || !w->model_error().isEmpty()) return true;
      QTest::qWait(20);
    }
    return false;
  }
  // Waits (in the event loop) until the worker for the PDF runs; its pid, or 0.
  static qint64 wait_worker(int timeout_ms = 30000) {
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < timeout_ms) {
      const QList<qint64> workers = pdf_workers();
      if (!workers.isEmpty()) return workers.front();
      QTest::qWait(10);
    }
    return 0;
  }
  // The idle window's own stall over `ms`: what this machine's load alone causes.
  static double idle_gap_ms(int ms) {
    GapProbe probe;
    QTest::qWait(ms);
    return probe.longest_ms;
  }

 private slots:
  void initTestCase() {
    QVERIFY(tmp_.isValid());
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("Folio");
    QCoreApplication::setApplicationName("Folio");
    QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, tmp_.filePath("settings"));
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, tmp_.filePath("settings"));
    // The app's binary reads PDFs in the app; folio-cli's worker mode is the same code.
    for (const char* name : {"/folio", "/folio-cli"}) {
      const std::string path = folio::test::bin_dir() + name;
      if (folio::test::exists(path)) {
        worker_ = QString::fromStdString(path);
        break;
      }
    }
    if (worker_.isEmpty()) QSKIP("neither folio nor folio-cli is built (set FOLIO_BIN_DIR)");
    const QString src = qEnvironmentVariable("FOLIO_SOURCE_DIR");
    AppSettings s;
    const QString stories = src + "/resources/models/stories260K/stories260K.bin";
    s.model_path = QFile::exists(stories) ? stories : embedded_model_path();
    s.save();
    QVERIFY(pdf_workers().isEmpty());
  }

  void the_window_stays_responsive_and_closes_promptly_while_a_hostile_pdf_is_read() {
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    const double idle_ms = idle_gap_ms(1500);

    const QString pdf = write_pdf("nested-2000.pdf");
    QVERIFY(!pdf.isEmpty());
    QElapsedTimer clock;
    clock.start();
    GapProbe probe;
    w->add_paths({pdf});
    const qint64 worker = wait_worker();
    QVERIFY2(worker > 0, "no PDF worker process was started");
    const qint64 started_ms = clock.elapsed();
    // Reading, for a while: the worker spins inside Qt PDF (its time limit here is 8 s).
    QTest::qWait(2500);
    QVERIFY(alive(worker));
    QCOMPARE(static_cast<int>(w->documents()->entries().size()), 1);
    QVERIFY(w->documents()->entries().front().state == DocumentEntry::State::Reading);
    const double reading_ms = probe.longest_ms;
    const int ticks = probe.ticks;
    const qint64 probed_ms = clock.elapsed();

    // Closing the window ends the read: the worker is killed at its next poll, and what Qt's
    // global pool runs (the read) ends, which QApplication waits for when it exits.
    clock.restart();
    w->close();
    w.reset();
    const qint64 destroyed_ms = clock.elapsed();
    const bool pool_done = QThreadPool::globalInstance()->waitForDone(10000);
    const qint64 pool_ms = clock.elapsed();
    while (alive(worker) && clock.elapsed() < 10000) QTest::qWait(5);
    const qint64 worker_gone_ms = clock.elapsed();
    qInfo(
        "hostile PDF in the app: worker started after %lld ms; longest GUI stall while it read %.1f ms (%d ticks of "
        "5 ms in %lld ms; idle before: %.1f ms); window closed in %lld ms, reads ended %lld ms, worker gone %lld ms "
        "after the close",
        qlonglong(started_ms), reading_ms, ticks, qlonglong(probed_ms), idle_ms, qlonglong(destroyed_ms),
        qlonglong(pool_ms), qlonglong(worker_gone_ms));
    QVERIFY(pool_done);
    QVERIFY2(!alive(worker), "the PDF worker outlived the window");
    // The bounds: a GUI stall under 100 ms (beyond what the idle window already shows on
    // this machine), and an exit within 2 s.
    QVERIFY2(
        reading_ms < 100.0 + idle_ms,
        qPrintable(QString("GUI stalled %1 ms while the PDF was read (idle: %2 ms)").arg(reading_ms).arg(idle_ms)));
    QVERIFY2(ticks > 2500 / 5 / 4, qPrintable(QString("only %1 timer ticks in 2.5 s").arg(ticks)));
    QVERIFY2(worker_gone_ms < 2000, qPrintable(QString("the app took %1 ms to close").arg(worker_gone_ms)));
  }

  void removing_the_document_stops_its_reader() {
    auto w = make_window();
    QVERIFY(wait_ready(w.get()));
    w->add_paths({write_pdf("nested-remove.pdf")});
    const qint64 worker = wait_worker();
    QVERIFY2(worker > 0, "no PDF worker process was started");
    QTest::qWait(300);
    QCOMPARE(static_cast<int>(w->documents()->entries().size()), 1);
    QElapsedTimer clock;
    clock.start();
    w->remove_document(w->documents()->entries().front().key);
    QTRY_VERIFY_WITH_TIMEOUT(!alive(worker), 2000);
    const qint64 gone_ms = clock.elapsed();
    QVERIFY(w->documents()->entries().empty());
    qInfo("hostile PDF removed while read: worker gone after %lld ms", qlonglong(gone_ms));
    // The window lives on and can take the next document.
    QVERIFY(w->isVisible());
  }

  void cleanupTestCase() {
    QThreadPool::globalInstance()->waitForDone(10000);
    for (qint64 pid : pdf_workers()) ::kill(static_cast<pid_t>(pid), SIGKILL);  // never left spinning
  }
};

QTEST_MAIN(TstGuiHostile)
#include "tst_gui_hostile.moc"
