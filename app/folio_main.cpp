// folio: the desktop app. A thin main over ui::MainWindow, plus a screenshot mode for the docs:
//   folio --screenshot OUT.png [--question N | --welcome] [--compare] [--model PATH] [--size WxH]
// loads the demo document, (optionally measures TTFT under each attention mode,) asks suggested
// question N, waits for the answer and saves the main window's picture (--welcome: as soon as the
// app is ready, before any question). FOLIO_SCREENSHOT=OUT.png does the same.
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QPixmap>
#include <QTemporaryDir>
#include <QTimer>
#include <cstdio>
#include <cstring>

#include "core/docs/ingest.h"
#include "kernels/cuda_backend.h"
#include "ui/app_icon.h"
#include "ui/chat_view.h"
#include "ui/demo.h"
#include "ui/main_window.h"

namespace {

int fail(const QString& message) {
  std::fprintf(stderr, "folio: error: %s\n", qPrintable(message));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // The guarded PDF reader (folio::docs::LoadOptions::pdf_worker): this binary reads one PDF and
  // answers on stdout, without a window.
  if (argc == 3 && std::strcmp(argv[1], "--parse-pdf") == 0) {
    QCoreApplication worker(argc, argv);
    return folio::docs::run_pdf_worker(QFile::decodeName(argv[2]));
  }
  folio::register_cuda_backend();
  QApplication app(argc, argv);
  QApplication::setOrganizationName("Folio");
  QApplication::setApplicationName("Folio");
  QApplication::setApplicationVersion(FOLIO_VERSION_STR);
  QApplication::setWindowIcon(folio::ui::app_icon());
  // Wayland and X11 match the window to io.github.folio.Folio.desktop (its icon, its menu entry).
  QGuiApplication::setDesktopFileName(QString::fromLatin1(folio::ui::kAppId));

  QCommandLineParser cli;
  cli.setApplicationDescription("Chat with long documents through a local language model.");
  cli.addHelpOption();
  cli.addVersionOption();
  QCommandLineOption shot(QStringLiteral("screenshot"),
                          "Ask a suggested question about the demo and save the window to FILE.", "FILE");
  QCommandLineOption question(QStringLiteral("question"), "Which suggested question the screenshot asks (0-2).", "N",
                              "0");
  QCommandLineOption welcome(QStringLiteral("welcome"), "Take the screenshot when the app is ready, without asking.");
  QCommandLineOption compare(QStringLiteral("compare"),
                             "Before the screenshot's question, measure TTFT under each attention mode.");
  QCommandLineOption model(QStringLiteral("model"), "Use this model for this run (not saved in the settings).", "PATH");
  QCommandLineOption size(QStringLiteral("size"), "Window size for the screenshot.", "WxH", "1440x900");
  QCommandLineOption timeout(QStringLiteral("timeout"), "Give up on the screenshot after this many seconds.", "S",
                             "900");
  cli.addOptions({shot, question, welcome, compare, model, size, timeout});
  cli.addPositionalArgument("documents", "Documents to add (files or folders).", "[documents...]");
  cli.process(app);

  QString shot_path = cli.value(shot);
  if (shot_path.isEmpty()) shot_path = qEnvironmentVariable("FOLIO_SCREENSHOT");

  folio::ui::MainWindowOptions options;
  options.model_override = cli.value(model);
  options.pdf_worker = QCoreApplication::applicationFilePath();
  std::unique_ptr<QTemporaryDir> scratch;
  if (!shot_path.isEmpty()) {
    // A screenshot leaves the user's settings, history and measurements alone.
    scratch = std::make_unique<QTemporaryDir>();
    options.persist_settings = false;
    options.database_path = scratch->filePath("folio.sqlite");
  }
  folio::ui::MainWindow window(options);
  if (!shot_path.isEmpty()) window.set_compare_confirm([](const QString&) { return true; });  // nobody to ask
  window.add_paths(cli.positionalArguments());
  if (shot_path.isEmpty()) {
    window.show();
    return app.exec();
  }

  const QStringList wh = cli.value(size).split('x');
  if (wh.size() == 2) window.resize(wh[0].toInt(), wh[1].toInt());
  window.show();
  const int n = cli.value(question).toInt();
  const QStringList questions = folio::ui::demo_questions();
  if (n < 0 || n >= questions.size()) return fail("--question takes 0 to " + QString::number(questions.size() - 1));

  int rc = 0;
  QTimer::singleShot(cli.value(timeout).toInt() * 1000, &app, [&] {
    rc = fail("the screenshot timed out waiting for the answer");
    app.quit();
  });
  bool measured = !cli.isSet(compare), asked = false;
  auto save = [&] {
    window.chat()->flush_render();
    // Let the charts and the view lay themselves out before the grab.
    QTimer::singleShot(300, &app, [&] {
      const QPixmap pm = window.grab();
      if (!pm.save(shot_path))
        rc = fail("cannot write " + shot_path);
      else
        std::fprintf(stderr, "folio: saved %s (%dx%d)\n", qPrintable(shot_path), pm.width(), pm.height());
      app.quit();
    });
  };
  auto step = [&] {
    if (!window.model_ready() && !window.model_error().isEmpty()) {
      rc = fail("the model could not be loaded: " + window.model_error());
      app.quit();
      return;
    }
    if (!window.ready_to_ask() || asked) return;
    if (cli.isSet(welcome)) {
      asked = true;
      save();
    } else if (!measured) {
      measured = true;
      window.compare();
    } else if (!asked) {
      asked = true;
      window.ask(questions[n]);
    }
  };
  QObject::connect(&window, &folio::ui::MainWindow::compare_finished, &app, [&] { QTimer::singleShot(0, &app, step); });
  QObject::connect(&window, &folio::ui::MainWindow::answer_finished, &app, [&] { save(); });
  QTimer poll;
  QObject::connect(&poll, &QTimer::timeout, &app, step);
  poll.start(100);
  app.exec();
  return rc;
}
