// The app on a remote engine, offscreen, against a real folio-server on loopback (stories260K):
// Settings ▸ Remote server (URL, API key kept out of the settings file, Test connection with a
// message for each failure a user can act on), and a document chat that runs through the server
// with the panel saying it is remote; and the server killed mid-answer (SmolLM2). Skips (77 is
// not used by Qt Test: QSKIP) where folio-server or the model is missing.
#include <QApplication>
#include <QFile>
#include <QFileInfo>
#include <QProcess>
#include <QRegularExpression>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>
#include <memory>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ui/app_settings.h"
#include "ui/chat_view.h"
#include "ui/document_panel.h"
#include "ui/main_window.h"
#include "ui/performance_panel.h"
#include "tests/test_support.h"
#include "ui/settings_dialog.h"

using namespace folio::ui;

namespace {

const char* kKey = "sk-remote-test-7d41";

QString bin(const QString& name) {
  const QString p = qEnvironmentVariable("FOLIO_BIN_DIR") + "/" + name;
  return QFileInfo(p).isExecutable() ? p : QString();
}

QString stories_model() {
  const QString p = qEnvironmentVariable("FOLIO_SOURCE_DIR") + "/resources/models/stories260K/stories260K.bin";
  return QFile::exists(p) ? p : QString();
}

// SmolLM2-135M-Instruct in the model cache, as tools/fetch_model.py puts it; "" when absent.
QString smollm2_model() {
  const QString p = QString::fromStdString(folio::test::smollm2_path());
  return QFile::exists(p) ? p : QString();
}

// folio-server on a free loopback port; its stdout's first line says which.
class ServerProcess {
 public:
  bool start(const QStringList& extra, const QString& model = stories_model()) {
    proc_.setProgram(bin("folio-server"));
    proc_.setArguments(QStringList{"--model", model, "--port", "0", "--threads", "1"} + extra);
    proc_.setProcessChannelMode(QProcess::SeparateChannels);
    proc_.start();
    if (!proc_.waitForStarted(10000)) return false;
    QElapsedTimer t;
    t.start();
    QByteArray out;
    while (t.elapsed() < 30000 && !out.contains('\n')) {
      proc_.waitForReadyRead(200);
      out += proc_.readAllStandardOutput();
      if (proc_.state() == QProcess::NotRunning) return false;
    }
    const QRegularExpressionMatch m = QRegularExpression("listening on (http://\\S+)").match(QString::fromUtf8(out));
    if (!m.hasMatch()) return false;
    url_ = m.captured(1);
    return true;
  }
  ~ServerProcess() {
    if (proc_.state() != QProcess::NotRunning) {
      proc_.terminate();
      if (!proc_.waitForFinished(5000)) proc_.kill();
      proc_.waitForFinished(2000);
    }
  }
  QString url() const { return url_; }  // http://127.0.0.1:PORT/v1
  // SIGKILL: the server goes away mid-answer, with no goodbye.
  void kill() {
    proc_.kill();
    proc_.waitForFinished(5000);
  }

 private:
  QProcess proc_;
  QString url_;
};

// A loopback port nobody listens on: one the kernel just handed out and was closed again.
int closed_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t n = sizeof(a);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) {
    if (fd >= 0) close(fd);
    return 1;  // nothing listens on port 1 either
  }
  close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

class TstRemoteGui : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir tmp_;
  std::unique_ptr<ServerProcess> server_;

  QString write_file(const QString& name, const QString& text) {
    const QString path = tmp_.filePath(name);
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate)) return {};
    f.write(text.toUtf8());
    return path;
  }
  AppSettings remote_settings() const {
    AppSettings s;
    s.backend = "remote";
    s.remote_url = server_->url();
    s.remote_api_key = kKey;
    s.temperature = 0.0;
    s.max_tokens = 32;
    s.seed = 1;
    return s;
  }
  // Settings ▸ Remote server ▸ Test connection with these fields; the message it shows.
  static QString check(SettingsDialog& d, const QString& url, const QString& key) {
    d.remote_url_edit()->setText(url);
    d.api_key_edit()->setText(key);
    QSignalSpy done(&d, &SettingsDialog::connection_checked);
    QTest::mouseClick(d.test_connection_button(), Qt::LeftButton);
    if (!done.wait(20000)) return "(no answer)";
    return d.connection_status();
  }
  static bool wait_idle(MainWindow* w, int timeout_ms = 60000) {
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < timeout_ms) {
      if (!w->busy() && w->phase() == Phase::Idle) return true;
      QTest::qWait(10);
    }
    return false;
  }

 private slots:
  void initTestCase() {
    QVERIFY(tmp_.isValid());
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("Folio");
    QCoreApplication::setApplicationName("Folio");
    QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, tmp_.filePath("settings"));
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, tmp_.filePath("settings"));
#if !FOLIO_UI_REMOTE
    QSKIP("built without the remote engine (cpp-httplib)");
#endif
    if (bin("folio-server").isEmpty() || stories_model().isEmpty())
      QSKIP("folio-server or stories260K not found (FOLIO_BIN_DIR, FOLIO_SOURCE_DIR)");
    server_ = std::make_unique<ServerProcess>();
    QVERIFY2(server_->start({"--api-key", kKey}), "folio-server did not start");
  }

  // The URL and model go with the settings; the key goes to a file only the user can read, and
  // never into the settings file.
  void key_is_kept_apart() {
    AppSettings s = remote_settings();
    s.save();
    const AppSettings back = AppSettings::load();
    QCOMPARE(back.backend, QString("remote"));
    QCOMPARE(back.remote_url, server_->url());
    QCOMPARE(back.remote_api_key, QString(kKey));
    QFile key_file(AppSettings::api_key_path());
    QVERIFY(key_file.exists());
    QCOMPARE(key_file.permissions() &
                 ~(QFileDevice::ReadOwner | QFileDevice::WriteOwner | QFileDevice::ReadUser | QFileDevice::WriteUser),
             QFileDevice::Permissions());
    QSettings raw(QSettings::NativeFormat, QSettings::UserScope, "Folio", "Folio");
    QFile settings_file(raw.fileName());
    QVERIFY(settings_file.open(QIODevice::ReadOnly));
    QVERIFY2(!settings_file.readAll().contains(kKey), "the API key is in the settings file");
    // No key: no file.
    s.remote_api_key.clear();
    s.save();
    QVERIFY(!QFile::exists(AppSettings::api_key_path()));
    QVERIFY(AppSettings::load().remote_api_key.isEmpty());
  }

  void settings_page_shows_remote_fields() {
    AppSettings s;
    SettingsDialog d(s);
    d.show();
    QVERIFY(!d.remote_box()->isVisible());
    d.backend_combo()->setCurrentIndex(d.backend_combo()->findData("remote"));
    QVERIFY(d.remote_box()->isVisible());
    QVERIFY(!d.model_edit()->isVisible());  // the server has the model
    QCOMPARE(d.api_key_edit()->echoMode(), QLineEdit::Password);
    d.remote_url_edit()->setText(" " + server_->url() + " ");
    d.api_key_edit()->setText(kKey);
    const AppSettings out = d.settings();
    QCOMPARE(out.backend, QString("remote"));
    QCOMPARE(out.remote_url, server_->url());
    QCOMPARE(out.remote_api_key, QString(kKey));
    QVERIFY(out.needs_reload(s));
  }

  // Test connection: one clear message for each case, and never the key in it.
  void test_connection_says_what_is_wrong() {
    SettingsDialog d(AppSettings{});
    d.show();
    d.backend_combo()->setCurrentIndex(d.backend_combo()->findData("remote"));

    QString m = check(d, server_->url(), kKey);
    QVERIFY2(m.startsWith("Connected") && m.contains("stories260K") && m.contains("context 512 tokens"), qPrintable(m));

    m = check(d, server_->url(), "sk-wrong");
    QVERIFY2(m.contains("refused the API key") && m.contains("401"), qPrintable(m));
    m = check(d, server_->url(), "");
    QVERIFY2(m.contains("refused the API key"), qPrintable(m));

    // The server's root instead of its API base: HTTP answers, but not the OpenAI API.
    QString root = server_->url();
    root.chop(3);
    m = check(d, root, kKey);
    QVERIFY2(m.contains("not as an OpenAI-compatible API") && m.contains("/v1"), qPrintable(m));

    // A port nobody listens on.
    const int port = closed_port();
    m = check(d, QString("http://127.0.0.1:%1/v1").arg(port), kKey);
    QVERIFY2(m.startsWith("Cannot reach") && m.contains("running"), qPrintable(m));

    m = check(d, "ftp://example/v1", kKey);
    QVERIFY2(m.contains("URL is not valid"), qPrintable(m));

    QVERIFY(!d.connection_status().contains(kKey));
  }

  // The app's document chat through the server: the answer streams in, the panel says remote, the
  // server's own prefill figures show, a follow-up carries the history, and folio-cli --backend
  // remote gives the same greedy answer for the same document and question.
  void document_chat_runs_remotely() {
    MainWindowOptions o;
    o.database_path = tmp_.filePath("folio.sqlite");
    o.load_demo = false;
    o.persist_settings = false;
    remote_settings().save();
    MainWindow w(o);
    w.show();
    QTRY_VERIFY_WITH_TIMEOUT(w.model_ready(), 20000);
    QVERIFY(w.model_info().remote);
    QCOMPARE(w.model_info().name, QString("stories260K"));
    QCOMPARE(w.context_tokens(), qint64(512));
    QVERIFY2(w.performance()->model_text().startsWith("Remote: stories260K at " + server_->url()),
             qPrintable(w.performance()->model_text()));

    const QString doc = write_file("lily.txt", "Lily had a red ball. She played with it in the park every day.\n");
    w.add_paths({doc});
    QTRY_VERIFY_WITH_TIMEOUT(w.ready_to_ask() && !w.documents()->entries().empty(), 20000);
    QCOMPARE(w.documents()->entries().front().state, DocumentEntry::State::Ready);
    QVERIFY(w.documents()->entries().front().tokens > 0);  // estimated here; the server counts

    const QString question = "What did Lily have?";
    w.ask(question);
    QVERIFY(wait_idle(&w));
    const QString answer = w.chat()->last_answer();
    QVERIFY2(!answer.trimmed().isEmpty(), "no answer came");
    QVERIFY(w.last_metrics().has_value());
    const folio::Metrics m = *w.last_metrics();
    QVERIFY2(QString::fromStdString(m.backend).startsWith("remote"), m.backend.c_str());
    QVERIFY(m.ttft_ms > 0.0);
    QVERIFY(m.decode_tokens > 0);
    QVERIFY(m.prompt_tokens > 0);   // the server's usage
    QVERIFY(m.prefill_tokens > 0);  // the server's own figures (folio field)
    QCOMPARE(w.history_turns(), 2);

    // The same document and question through folio-cli --backend remote: the same answer.
    QProcess cli;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert("FOLIO_API_KEY", kKey);
    cli.setProcessEnvironment(env);
    cli.start(bin("folio-cli"), {"--backend", "remote", "--url", server_->url(), "--quiet", "--file", doc, "--ask",
                                 question, "--max-tokens", "32", "--temperature", "0", "--seed", "1"});
    QVERIFY(cli.waitForFinished(60000));
    QCOMPARE(cli.exitCode(), 0);
    const QString cli_answer = QString::fromUtf8(cli.readAllStandardOutput()).trimmed();
    QCOMPARE(answer.trimmed(), cli_answer);

    w.ask("Where did she play?");
    QVERIFY(wait_idle(&w));
    QCOMPARE(w.history_turns(), 4);
  }

  // A server that goes away: the next load says it cannot be reached, in the app's words.
  void unreachable_server_is_said_plainly() {
    const int port = closed_port();
    AppSettings s = remote_settings();
    s.remote_url = QString("http://127.0.0.1:%1/v1").arg(port);
    s.save();
    MainWindowOptions o;
    o.database_path = tmp_.filePath("folio2.sqlite");
    o.load_demo = false;
    o.persist_settings = false;
    MainWindow w(o);
    w.show();
    QTRY_VERIFY_WITH_TIMEOUT(!w.model_error().isEmpty(), 20000);
    QVERIFY2(w.model_error().startsWith("Cannot reach a server at http://127.0.0.1"), qPrintable(w.model_error()));
    QVERIFY(!w.model_error().contains(kKey));
  }

  // The server killed while it streams an answer (SmolLM2 on folio-server, slow enough to be
  // caught mid-answer): what came stays in the view, the answer is marked and an error says why,
  // and the app is idle again instead of waiting on a dead connection.
  void server_killed_mid_answer_keeps_the_partial_answer() {
    if (smollm2_model().isEmpty()) QSKIP("SmolLM2 is not in the model cache (python3 tools/fetch_model.py)");
    ServerProcess victim;
    QVERIFY2(victim.start({"--ctx", "2048"}, smollm2_model()), "folio-server did not start on SmolLM2");
    AppSettings s = remote_settings();
    s.remote_url = victim.url();
    s.remote_api_key.clear();
    s.max_tokens = 1500;
    s.save();
    MainWindowOptions o;
    o.database_path = tmp_.filePath("folio3.sqlite");
    o.load_demo = false;
    o.persist_settings = false;
    MainWindow w(o);
    w.show();
    QTRY_VERIFY_WITH_TIMEOUT(w.model_ready(), 20000);
    QVERIFY(w.model_info().remote);
    w.ask("Write a very long story about a dragon.");
    QTRY_VERIFY_WITH_TIMEOUT(w.chat()->last_answer().size() >= 20, 60000);
    victim.kill();
    const QString partial = w.chat()->last_answer();
    QVERIFY(wait_idle(&w, 30000));
    QVERIFY(!w.busy());
    const QString kept = w.chat()->last_answer();
    QVERIFY2(kept.startsWith(partial), qPrintable(kept));
    w.chat()->flush_render();  // notices are rendered on a timer
    const QString shown = w.chat()->transcript();
    QVERIFY2(shown.contains("The answer was cut off: ") && shown.contains(victim.url()) &&
                 shown.contains("What came before is kept above."),
             qPrintable(shown.right(600)));
    QVERIFY2(!shown.contains("The answer failed"), qPrintable(shown.right(600)));
    QCOMPARE(w.history_turns(), 2);  // the partial answer is part of the conversation
  }

  void cleanupTestCase() {
    server_.reset();
  }
};

QTEST_MAIN(TstRemoteGui)
#include "tst_remote_gui.moc"
