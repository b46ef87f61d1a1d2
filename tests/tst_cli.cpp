// folio-cli as a user runs it (QProcess): the golden stories260K generation on stdout with the
// metrics on stderr, --metrics-json, tokenize, --ask over a document, the CUDA fallback, and bad
// input of every kind answered with a non-zero exit and one "folio-cli: ..." line on stderr,
// never a crash.
#include <QByteArray>
#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "core/docs/ingest.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/test_support.h"

using folio::test::bin_dir;
using folio::test::shared_models;
using folio::test::source_dir;

namespace {

constexpr int kTimeoutMs = 60000;
const QByteArray kStoriesText = "Once upon a time, there was a little girl named Lily. She loved to play outsid";
const QString kStoriesRel = "resources/models/stories260K/stories260K.bin";

QString qs(const std::string& s) { return QString::fromStdString(s); }
QString stories_bin() { return qs(source_dir()) + "/" + kStoriesRel; }
QString cli_path() { return qs(bin_dir()) + "/folio-cli"; }

struct Run {
  bool started = false;
  bool finished = false;
  QProcess::ExitStatus status = QProcess::NormalExit;
  int code = -1;
  QByteArray out;
  QByteArray err;

  QString describe() const {
    return QString("exit status %1, exit code %2\n--- stdout:\n%3\n--- stderr:\n%4")
        .arg(status == QProcess::NormalExit ? "normal" : "CRASH")
        .arg(code)
        .arg(QString::fromUtf8(out.left(2000)), QString::fromUtf8(err.left(4000)));
  }
};

// Runs `program` in the repository root with `args` (and `env` added to the environment).
Run run_program(const QString& program, const QStringList& args, const QProcessEnvironment& env = {}) {
  Run r;
  QProcess p;
  p.setWorkingDirectory(qs(source_dir()));
  if (!env.isEmpty()) {
    QProcessEnvironment all = QProcessEnvironment::systemEnvironment();
    all.insert(env);
    p.setProcessEnvironment(all);
  }
  p.start(program, args);
  r.started = p.waitForStarted(kTimeoutMs);
  if (!r.started) return r;
  p.closeWriteChannel();
  r.finished = p.waitForFinished(kTimeoutMs);
  if (!r.finished) {
    p.kill();
    p.waitForFinished(5000);
  }
  r.status = p.exitStatus();
  r.code = p.exitCode();
  r.out = p.readAllStandardOutput();
  r.err = p.readAllStandardError();
  return r;
}

Run run_cli(const QStringList& args, const QProcessEnvironment& env = {}) { return run_program(cli_path(), args, env); }

bool write_bytes(const QString& path, const QByteArray& bytes) {
  QFile f(path);
  if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate)) return false;
  return f.write(bytes) == bytes.size();
}

}  // namespace

// The process ran to the end on its own, without a signal.
#define VERIFY_RAN(r)                                                                                 \
  do {                                                                                                \
    QVERIFY2((r).started, qPrintable("cannot start " + cli_path()));                                  \
    QVERIFY2((r).finished, qPrintable("folio-cli did not finish in 60 s\n" + (r).describe()));       \
    QVERIFY2((r).status == QProcess::NormalExit, qPrintable("folio-cli crashed\n" + (r).describe())); \
  } while (0)

class TestCli : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir tmp_;

 private slots:
  void initTestCase() {
    QVERIFY2(tmp_.isValid(), "cannot create a temporary folder");
    QVERIFY2(QFile::exists(cli_path()), qPrintable("folio-cli not built at " + cli_path() + " (FOLIO_BIN_DIR)"));
    FOLIO_REQUIRE_FILE(stories_bin().toStdString());
  }

  // --- generation -------------------------------------------------------------------------------

  void goldenStories() {
    Run r = run_cli({"--model", kStoriesRel, "--prompt", "", "--max-tokens", "24", "--temperature", "0"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QCOMPARE(r.out, kStoriesText + "\n");
    QVERIFY2(r.err.contains("ttft"), qPrintable(r.describe()));
    QVERIFY2(r.err.contains("decode 24 tokens"), qPrintable(r.describe()));
    QVERIFY2(r.err.contains("stop: max-tokens"), qPrintable(r.describe()));
    QVERIFY2(r.err.contains("memory"), qPrintable(r.describe()));
    QVERIFY2(!r.err.contains("error"), qPrintable(r.describe()));
  }

  // --model NAME runs a model that ships with Folio: from share/folio beside folio-cli's bin/ folder
  // (in a build tree <build>/share/folio, links into resources/; installed <prefix>/share/folio).
  void bundledModelByName() {
    Run r = run_cli({"--model", "stories260K", "--prompt", "", "--max-tokens", "24", "--temperature", "0"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QCOMPARE(r.out, kStoriesText + "\n");
    const QString share = QDir::cleanPath(qs(bin_dir()) + "/../share/folio");
    QVERIFY2(r.err.contains(("ships with Folio: " + share + "/models/stories260K/stories260K.bin").toUtf8()),
             qPrintable(r.describe()));
    // A safetensors folder by name too (tokenize reads only its tokenizer).
    Run t = run_cli({"tokenize", "--model", "folio-needle", "Once upon a time"});
    VERIFY_RAN(t);
    QVERIFY2(t.code == 0 && !t.out.trimmed().isEmpty(), qPrintable(t.describe()));
  }

  // FOLIO_RESOURCE_DIR names another folder laid out like share/folio.
  void bundledModelFromResourceDir() {
    const QString dir = tmp_.filePath("resources-elsewhere/models/stories260K");
    QVERIFY(QDir().mkpath(dir));
    for (const char* f : {"stories260K.bin", "tok512.bin"})
      QVERIFY(QFile::copy(qs(source_dir()) + "/resources/models/stories260K/" + f, dir + "/" + f));
    QProcessEnvironment env;
    env.insert("FOLIO_RESOURCE_DIR", tmp_.filePath("resources-elsewhere"));
    Run r = run_cli({"--model", "stories260K", "--prompt", "", "--max-tokens", "24", "--temperature", "0"}, env);
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QCOMPARE(r.out, kStoriesText + "\n");
    QVERIFY2(r.err.contains(("ships with Folio: " + dir + "/stories260K.bin").toUtf8()), qPrintable(r.describe()));
  }

  // A name that is neither a file here nor a bundled model: the error lists the bundled ones.
  void unknownModelName() {
    Run r = run_cli({"--model", "no-such-model", "--prompt", "hi"});
    VERIFY_RAN(r);
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("no-such-model not found") && r.err.contains("bundled: folio-needle, stories260K"),
             qPrintable(r.describe()));
  }

  void quietHasNoMetrics() {
    Run r = run_cli({"--model", kStoriesRel, "--prompt", "", "--max-tokens", "24", "--temperature", "0", "--quiet"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QCOMPARE(r.out, kStoriesText + "\n");
    QVERIFY2(!r.err.contains("ttft"), qPrintable(r.describe()));
  }

  void metricsJson() {
    const QString path = tmp_.filePath("metrics.json");
    Run r = run_cli({"--model", stories_bin(), "--prompt", "", "--max-tokens", "24", "--temperature", "0",
                     "--metrics-json", path});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QCOMPARE(r.out, kStoriesText + "\n");
    QFile f(path);
    QVERIFY2(f.open(QIODevice::ReadOnly), qPrintable("no metrics file written at " + path));
    QJsonParseError perr;
    const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &perr);
    QVERIFY2(doc.isObject(), qPrintable("metrics file is not a JSON object: " + perr.errorString()));
    const QJsonObject m = doc.object();
    QCOMPARE(m["prompt_tokens"].toInteger(-1), qint64{1});
    QCOMPARE(m["decode_tokens"].toInteger(-1), qint64{24});
    QVERIFY2(m["ttft_ms"].toDouble() > 0.0, qPrintable(QJsonDocument(m).toJson()));
    QVERIFY(m["total_ms"].toDouble() >= m["ttft_ms"].toDouble());
    QCOMPARE(m["stop_reason"].toString(), QString("max-tokens"));
    QVERIFY2(m["memory"].isArray() && !m["memory"].toArray().isEmpty(), qPrintable(QJsonDocument(m).toJson()));
    const QJsonObject mem = m["memory"].toArray().first().toObject();
    QVERIFY(!mem["device"].toString().isEmpty());
    QVERIFY2(mem["weights_bytes"].toDouble() > 0, qPrintable(QJsonDocument(mem).toJson()));
    QVERIFY2(mem["kv_cache_bytes"].toDouble() > 0, qPrintable(QJsonDocument(mem).toJson()));
  }

  void metricsJsonUnwritable() {
    // The generation itself is done; the failed write is still reported.
    const QString path = tmp_.filePath("no-such-folder/metrics.json");
    Run r = run_cli({"--model", stories_bin(), "--prompt", "", "--max-tokens", "4", "--metrics-json", path});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 1, qPrintable(r.describe()));
    QVERIFY2(r.err.contains("folio-cli:") && r.err.contains(path.toUtf8()), qPrintable(r.describe()));
  }

  void askWithFile() {
    const QString doc = tmp_.filePath("doc.txt");
    QVERIFY(write_bytes(doc, "Lily has a red ball. She plays with it in the park every day.\n"
                             "Her friend Tom has a blue kite.\n"));
    const QString with_json = tmp_.filePath("ask-with-file.json");
    Run r = run_cli({"--model", stories_bin(), "--file", doc, "--ask", "What color is the ball?", "--max-tokens",
                     "16", "--temperature", "0", "--metrics-json", with_json});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QVERIFY2(!r.out.trimmed().isEmpty(), qPrintable(r.describe()));
    QVERIFY2(r.err.contains("ttft"), qPrintable(r.describe()));
    // The document is part of the prompt: far more tokens than the question alone.
    const QString without_json = tmp_.filePath("ask-without-file.json");
    Run q = run_cli({"--model", stories_bin(), "--ask", "What color is the ball?", "--max-tokens", "1",
                     "--temperature", "0", "--metrics-json", without_json});
    VERIFY_RAN(q);
    QVERIFY2(q.code == 0, qPrintable(q.describe()));
    auto prompt_tokens = [](const QString& path) {
      QFile f(path);
      if (!f.open(QIODevice::ReadOnly)) return qint64{-1};
      return QJsonDocument::fromJson(f.readAll()).object()["prompt_tokens"].toInteger(-1);
    };
    const qint64 with = prompt_tokens(with_json), without = prompt_tokens(without_json);
    QVERIFY2(without > 0 && with > without + 20,
             qPrintable(QString("prompt tokens with the file %1, without %2").arg(with).arg(without)));
  }

  void cudaBackendFallsBackToCpu() {
    Run r = run_cli({"--model", kStoriesRel, "--prompt", "", "--max-tokens", "24", "--temperature", "0", "--backend",
                     "cuda"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QCOMPARE(r.out, kStoriesText + "\n");
    QVERIFY2(r.err.contains("no usable GPU"), qPrintable(r.describe()));
    QVERIFY2(r.err.contains("CPU"), qPrintable(r.describe()));
  }

  // --- tokenize ---------------------------------------------------------------------------------

  void tokenizeStories() {
    Run r = run_cli({"tokenize", "--model", stories_bin(), "Once upon a time"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QVERIFY2(r.out.endsWith('\n') && r.out.count('\n') == 1, qPrintable(r.describe()));
    const QList<QByteArray> fields = r.out.trimmed().split(' ');
    std::vector<int32_t> got;
    for (const QByteArray& f : fields) {
      bool ok = false;
      got.push_back(f.toInt(&ok));
      QVERIFY2(ok, qPrintable("not an id: \"" + QString::fromUtf8(f) + "\" in " + r.describe()));
    }
    QVERIFY(!got.empty());
    QVERIFY2(got.front() != 1, "tokenize must not add BOS");
    auto tok = folio::load_tokenizer(source_dir() + "/resources/models/stories260K/tok512.bin");
    const std::vector<int32_t> want = tok->encode("Once upon a time", /*add_bos=*/false);
    QCOMPARE(got, want);
  }

  void tokenizeLlama2() {
    const std::string tok = shared_models() + "/llama2-tokenizer.model";
    FOLIO_REQUIRE_FILE(tok);
    Run r = run_cli({"tokenize", "--tokenizer", qs(tok), "Hello world"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QCOMPARE(r.out, QByteArray("15043 3186\n"));
    // With a model given too, --tokenizer wins.
    Run r2 = run_cli({"tokenize", "--model", stories_bin(), "--tokenizer", qs(tok), "Hello world"});
    VERIFY_RAN(r2);
    QCOMPARE(r2.out, QByteArray("15043 3186\n"));
  }

  // --- context, tokenizer-only, version, help -----------------------------------------------------

  // Without --ctx the context is what the prompt needs (with room for --max-tokens), up to the
  // model's trained context: folio-needle is trained for 131072 tokens, so a 9K-token document goes in
  // whole (it used to be refused at 8192), and a short question gets a short context.
  void contextDefaultsToWhatThePromptNeeds() {
#ifdef __SANITIZE_ADDRESS__
    QSKIP("a real 9K-token prefill takes over a minute under ASan; the release suite runs it");
#endif
    const QString needle = qs(source_dir()) + "/resources/models/folio-needle";
    FOLIO_REQUIRE_FILE(needle.toStdString() + "/config.json");
    QByteArray text;
    for (int i = 0; text.size() < 28000; ++i)  // about 9.3K tokens: past the 8192 default, cheap to prefill
      text += "Paragraph " + QByteArray::number(i) + ": the pump log records pressure, flow and the valve state.\n";
    const QString doc = tmp_.filePath("long-log.txt");
    QVERIFY(write_bytes(doc, text));
    auto context_of = [](const Run& r) {
      const QByteArray key = "; context ";
      const qsizetype at = r.err.indexOf(key);
      if (at < 0) return qint64{-1};
      return r.err.mid(at + key.size()).split(' ').front().toLongLong();
    };
    auto prompt_of = [](const Run& r) {
      const QByteArray key = "the prompt is ";
      const qsizetype at = r.err.indexOf(key);
      if (at < 0) return qint64{-1};
      return r.err.mid(at + key.size()).split(' ').front().toLongLong();
    };
    Run r = run_cli({"--model", needle, "--file", doc, "--ask", "What is logged?", "--fit", "error", "--max-tokens",
                     "64", "--print-prompt"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    const qint64 prompt = prompt_of(r), ctx = context_of(r);
    QVERIFY2(prompt > 8192 + 512, qPrintable(r.describe()));
    QVERIFY2(ctx >= prompt + 64 && ctx < prompt + 64 + 256 && ctx % 256 == 0, qPrintable(r.describe()));
    QVERIFY2(!r.err.contains("packed"), qPrintable(r.describe()));

    Run s = run_cli({"--model", needle, "--ask", "Hi?", "--max-tokens", "16", "--print-prompt"});
    VERIFY_RAN(s);
    QVERIFY2(s.code == 0, qPrintable(s.describe()));
    QCOMPARE(context_of(s), qint64{256});

    // An explicit --ctx is kept, and a document larger than it is packed.
    Run e = run_cli({"--model", needle, "--file", doc, "--ask", "What is logged?", "--ctx", "4096", "--max-tokens",
                     "64", "--print-prompt"});
    VERIFY_RAN(e);
    QVERIFY2(e.code == 0, qPrintable(e.describe()));
    QCOMPARE(context_of(e), qint64{4096});
    QVERIFY2(e.err.contains("documents packed"), qPrintable(e.describe()));

    // A real run of the 9K-token prompt under the default context.
    Run g = run_cli({"--model", needle, "--file", doc, "--ask", "What is logged?", "--fit", "error", "--max-tokens",
                     "1", "--temperature", "0"});
    VERIFY_RAN(g);
    QVERIFY2(g.code == 0, qPrintable(g.describe()));
    QVERIFY2(g.err.contains(("prefill " + QString::number(prompt) + " tokens").toUtf8()), qPrintable(g.describe()));
  }

  // tokenize reads only the tokenizer: a vocabulary-only GGUF (no weights at all) works, and gives
  // the ids of the full model's vocabulary.
  void tokenizeVocabularyOnlyGguf() {
    const std::string vocab = shared_models() + "/vocab/ggml-vocab-llama-spm.gguf";
    FOLIO_REQUIRE_FILE(vocab);
    Run r = run_cli({"tokenize", "--model", qs(vocab), "Hello world"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QCOMPARE(r.out, QByteArray("15043 3186\n"));
    // A safetensors folder: its tokenizer.model, without reading the shards.
    const QString folder = tmp_.filePath("tok-only-model");
    QVERIFY(QDir().mkpath(folder));
    QVERIFY(
        QFile::copy(qs(source_dir()) + "/resources/models/folio-needle/tokenizer.model", folder + "/tokenizer.model"));
    Run f = run_cli({"tokenize", "--model", folder, "Once upon a time"});
    VERIFY_RAN(f);
    QVERIFY2(f.code == 0, qPrintable(f.describe()));
    Run full =
        run_cli({"tokenize", "--model", qs(source_dir()) + "/resources/models/folio-needle", "Once upon a time"});
    VERIFY_RAN(full);
    QCOMPARE(f.out, full.out);
    Run none = run_cli({"tokenize", "--model", tmp_.path(), "hi"});
    VERIFY_RAN(none);
    QVERIFY2(none.code == 1 && none.err.contains("no tokenizer.model or tokenizer.json"), qPrintable(none.describe()));
  }

  void version() {
    Run r = run_cli({"--version"});
    VERIFY_RAN(r);
    QCOMPARE(r.code, 0);
    QVERIFY2(QRegularExpression("^folio-cli \\d+\\.\\d+\\.\\d+\n$").match(QString::fromUtf8(r.out)).hasMatch(),
             qPrintable(r.describe()));
  }

  // --help names and describes every option folio-cli's parser takes (read from its source).
  void helpDescribesEveryOption() {
    QFile src(qs(source_dir()) + "/app/folio_cli.cpp");
    QVERIFY(src.open(QIODevice::ReadOnly));
    const QString code = QString::fromUtf8(src.readAll());
    QStringList options;
    auto it = QRegularExpression("a == \"(--[a-z-]+)\"").globalMatch(code);
    while (it.hasNext()) options << it.next().captured(1);
    options.removeDuplicates();
    options << "--version"
            << "--help";
    QVERIFY2(options.size() >= 28, qPrintable(options.join(' ')));
    Run r = run_cli({"--help"});
    VERIFY_RAN(r);
    QCOMPARE(r.code, 0);
    const QString help = QString::fromUtf8(r.out);
    for (const QString& o : options) {
      const QRegularExpression described("\n  " + QRegularExpression::escape(o) + "( [A-Za-z|]+)? +\\S");
      QVERIFY2(described.match(help).hasMatch(), qPrintable(o + " is not described in --help:\n" + help));
    }
  }

  // folio-sparse crossover: dense and sparse prefill timed at doubling lengths on this backend, the
  // crossover and the times written into the model's config (here --out), which the engine reads.
  void sparseCrossoverIsWrittenToTheConfig() {
    const QString out = tmp_.filePath("folio-sparse.json");
    Run r = run_program(qs(bin_dir()) + "/folio-sparse",
                        {"crossover", "--model", qs(source_dir()) + "/resources/models/folio-needle", "--file",
                         qs(source_dir()) + "/resources/demo/planted-facts.md", "--from", "256", "--tokens", "512",
                         "--repeat", "1", "--threads", "1", "--out", out});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QVERIFY2(r.out.contains("crossover: "), qPrintable(r.describe()));
    QFile f(out);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QJsonObject cfg = QJsonDocument::fromJson(f.readAll()).object();
    const QJsonArray measured = cfg["measured"].toArray();
    QCOMPARE(measured.size(), 1);
    const QJsonObject m = measured[0].toObject();
    QCOMPARE(m["backend"].toString(), QString("cpu"));
    QCOMPARE(m["up_to"].toInteger(), qint64{512});
    QVERIFY(m["device"].toString().startsWith("cpu"));
    const QJsonArray points = m["points"].toArray();
    QCOMPARE(points.size(), 2);
    QCOMPARE(points[0].toObject()["tokens"].toInteger(), qint64{256});
    for (const auto& p : points) QVERIFY(p.toObject()["dense_ms"].toDouble() > 0 && p.toObject()["sparse_ms"].toDouble() > 0);
    // the crossover follows from the points by the rule
    const bool faster_at_512 = points[1].toObject()["sparse_ms"].toDouble() < points[1].toObject()["dense_ms"].toDouble();
    const bool faster_at_256 = points[0].toObject()["sparse_ms"].toDouble() < points[0].toObject()["dense_ms"].toDouble();
    QCOMPARE(m["tokens"].toInteger(), faster_at_512 ? (faster_at_256 ? qint64{256} : qint64{512}) : qint64{0});
    QCOMPARE(cfg["layers"].toArray().size(), 6);  // the model's own searched config, kept
  }

  // folio-sparse search --goal: per head the cheapest kind and mass target whose plans keep the goal
  // of the exact attention mass, written as a config the engine loads.
  void sparseSearchCalibratesEachHead() {
    const QString out = tmp_.filePath("searched.json");
    Run r = run_program(qs(bin_dir()) + "/folio-sparse",
                        {"search", "--model", stories_bin(), "--file",
                         qs(source_dir()) + "/resources/demo/planted-facts.md", "--tokens", "384", "--chunk", "128",
                         "--goal", "0.9", "--threads", "1", "--out", out});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QVERIFY2(r.out.contains("short of the goal; mean density"), qPrintable(r.describe()));
    QFile f(out);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QJsonArray layers = QJsonDocument::fromJson(f.readAll()).object()["layers"].toArray();
    QCOMPARE(layers.size(), 5);  // stories260K: 5 layers of 8 heads
    for (const auto& l : layers) {
      QCOMPARE(l.toArray().size(), 8);
      for (const auto& h : l.toArray()) {
        const QJsonObject b = h.toObject();
        const double mass = b["mass"].toDouble();
        QVERIFY2(mass == 0.9 || mass == 0.95 || mass == 0.98 || mass == 0.995, qPrintable(QString::number(mass)));
        // the uncapped candidate is the only one past 0.35 of the tiles
        QCOMPARE(b["max_keys"].toInteger() == 0, b["max_density"].toDouble() == 1.0);
      }
    }
    // the engine takes it: the golden run with every chunk sparse under it still runs
    QDir().mkpath(tmp_.filePath("searched-model"));
    QFile::remove(tmp_.filePath("searched-model/stories260K.bin"));
    QFile::remove(tmp_.filePath("searched-model/tok512.bin"));
    QFile::remove(tmp_.filePath("searched-model/folio-sparse.json"));
    QVERIFY(QFile::copy(stories_bin(), tmp_.filePath("searched-model/stories260K.bin")));
    QVERIFY(QFile::copy(QFileInfo(stories_bin()).dir().filePath("tok512.bin"), tmp_.filePath("searched-model/tok512.bin")));
    QVERIFY(QFile::copy(out, tmp_.filePath("searched-model/folio-sparse.json")));
    Run g = run_cli({"--model", tmp_.filePath("searched-model/stories260K.bin"), "--prompt", "Once upon a time",
                     "--max-tokens", "8", "--temperature", "0", "--attention", "sparse"});
    VERIFY_RAN(g);
    QVERIFY2(g.code == 0 && !g.out.trimmed().isEmpty(), qPrintable(g.describe()));
  }

  // --sources: after the answer, the passages of the documents that support it. With the default
  // model (when it is in the cache) the demo question finds its section of the manual; with any
  // model the list (or that none was found) follows the answer; --sources needs documents.
  void sourcesFollowTheAnswer() {
    const QString manual = qs(source_dir()) + "/resources/demo/halcyon-h40-manual.md";
    Run r = run_cli({"--model", stories_bin(), "--file", manual, "--ask", "How long is the warranty?", "--max-tokens",
                     "24", "--temperature", "0", "--fit", "relevant", "--sources", "--quiet"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QVERIFY2(r.out.contains("\nSources:\n  "), qPrintable(r.describe()));
    Run u = run_cli({"--model", stories_bin(), "--ask", "Why?", "--sources"});
    VERIFY_RAN(u);
    QCOMPARE(u.code, 2);
    QVERIFY2(u.err.contains("--sources goes with --ask and --file or --dir"), qPrintable(u.describe()));

#ifdef __SANITIZE_ADDRESS__
    QSKIP("a SmolLM2 answer takes over the 60 s limit under ASan; the release suite runs it");
#endif
    const QString smol = QString::fromStdString(folio::test::smollm2_path());
    if (!QFile::exists(smol)) QSKIP("SmolLM2-135M-Instruct is not in the cache; run python3 tools/fetch_model.py");
    Run s =
        run_cli({"--model", smol, "--file", manual, "--ask", "How long do the batteries in the outdoor sensor last?",
                 "--max-tokens", "60", "--temperature", "0", "--sources", "--quiet"});
    VERIFY_RAN(s);
    QVERIFY2(s.code == 0, qPrintable(s.describe()));
    qInfo("%s", s.out.constData());
    // Section 5 of the manual, lines 60-71, says how long the cells last.
    const QRegularExpressionMatch m =
        QRegularExpression("\nSources:\n  1\\. halcyon-h40-manual\\.md:(\\d+)(?:-(\\d+))?: \"[^\"]*14 months")
            .match(QString::fromUtf8(s.out));
    QVERIFY2(m.hasMatch(), qPrintable(s.describe()));
    QVERIFY(m.captured(1).toInt() >= 60 && m.captured(1).toInt() <= 71);
  }

  // --kv-cache: the first run saves the documents' KV, the next one (another process) loads it and
  // answers the same; --kv-cache needs documents.
  void kvCacheIsLoadedByTheNextRun() {
    const QString doc = tmp_.filePath("kv-doc.txt");
    QVERIFY(write_bytes(doc,
                        "Lily has a red ball. She plays with it in the park every day.\n"
                        "Her friend Tom has a blue kite that flies very high.\n"));
    const QString folder = tmp_.filePath("kv-cache");
    const QStringList args = {"--model",      stories_bin(), "--file",        doc, "--ask",      "What does Tom have?",
                              "--max-tokens", "16",          "--temperature", "0", "--kv-cache", folder};
    Run first = run_cli(args);
    VERIFY_RAN(first);
    QVERIFY2(first.code == 0, qPrintable(first.describe()));
    QVERIFY2(first.err.contains("the documents' KV was saved to"), qPrintable(first.describe()));
    Run second = run_cli(args);
    VERIFY_RAN(second);
    QVERIFY2(second.code == 0, qPrintable(second.describe()));
    QVERIFY2(second.err.contains("the documents' KV (") && second.err.contains("was loaded from"),
             qPrintable(second.describe()));
    QCOMPARE(second.out, first.out);
    // A document added after it, in a new process: the first document's saved KV is loaded, the
    // rest prefilled, the answer the one without the cache; the prefix of both is saved.
    const QString added = tmp_.filePath("kv-doc2.txt");
    QVERIFY(write_bytes(added, "Tom's kite is blue with a long yellow tail.\n"));
    QStringList both = args;
    both.insert(4, "--file");
    both.insert(5, added);
    Run third = run_cli(both);
    VERIFY_RAN(third);
    QVERIFY2(third.code == 0, qPrintable(third.describe()));
    QVERIFY2(third.err.contains("was loaded from") && third.err.contains("the documents' KV was saved to"),
             qPrintable(third.describe()));
    Run fresh = run_cli(both.mid(0, both.size() - 2));  // without --kv-cache
    VERIFY_RAN(fresh);
    QCOMPARE(third.out, fresh.out);
    Run u = run_cli({"--model", stories_bin(), "--ask", "Why?", "--kv-cache", folder});
    VERIFY_RAN(u);
    QCOMPARE(u.code, 2);
  }

  // --- documents through the app's loaders (core/docs) --------------------------------------------

  // A real PDF: its pages are in the prompt with the app's page markers.
  void pdfFile() {
    const QString pdf = tmp_.filePath("manual.pdf");
    QVERIFY(write_bytes(pdf, folio::test::make_pdf({"The red lever starts the pump.", "The blue lever stops it."})));
    Run r =
        run_cli({"--model", stories_bin(), "--file", pdf, "--ask", "Which lever stops the pump?", "--print-prompt"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QVERIFY2(r.out.contains("[document: manual.pdf, 2 pages]"), qPrintable(r.describe()));
    QVERIFY2(r.out.contains("[p. 1]\nThe red lever starts the pump."), qPrintable(r.describe()));
    QVERIFY2(r.out.contains("[p. 2]\nThe blue lever stops it."), qPrintable(r.describe()));
    QVERIFY2(!r.out.contains("%PDF"), qPrintable(r.describe()));
  }

  // --password opens a protected PDF; a wrong one gives the app's message and exit 1.
  void passwordOpensAProtectedPdf() {
#ifdef __SANITIZE_ADDRESS__
    QSKIP("Qt PDF leaks on an encrypted PDF (LeakSanitizer in the child); the release suite runs it");
#endif
    const QString pdf = tmp_.filePath("locked-pw.pdf");
    QVERIFY(write_bytes(pdf, folio::test::make_pdf({"The vault opens with the brass key."}, {}, "folio-pw")));
    Run r = run_cli({"--model", stories_bin(), "--file", pdf, "--password", "folio-pw", "--ask",
                     "What opens the vault?", "--print-prompt"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QVERIFY2(r.out.contains("[p. 1]\nThe vault opens with the brass key."), qPrintable(r.describe()));
    Run w = run_cli({"--model", stories_bin(), "--file", pdf, "--password", "guess", "--ask", "What opens the vault?",
                     "--print-prompt"});
    VERIFY_RAN(w);
    QCOMPARE(w.code, 1);
    QVERIFY2(w.err.contains("the password given for this PDF is wrong"), qPrintable(w.describe()));
    Run u = run_cli({"--model", stories_bin(), "--password", "x", "--prompt", "Once"});
    VERIFY_RAN(u);
    QCOMPARE(u.code, 2);
  }

  // A source folder, by --file and by --dir: its files with file:line markers.
  void sourceFolder() {
    const QString dir = tmp_.filePath("src-tree");
    QVERIFY(QDir().mkpath(dir + "/lib"));
    QVERIFY(write_bytes(dir + "/main.cpp", "int main() { return pump_start(); }\n"));
    QVERIFY(write_bytes(dir + "/lib/pump.cpp", "int pump_start() { return 7; }\n"));
    for (const QString& option : {QString("--file"), QString("--dir")}) {
      Run r =
          run_cli({"--model", stories_bin(), option, dir, "--ask", "What does pump_start return?", "--print-prompt"});
      VERIFY_RAN(r);
      QVERIFY2(r.code == 0, qPrintable(option + "\n" + r.describe()));
      QVERIFY2(r.out.contains("[folder: src-tree, 2 files]"), qPrintable(r.describe()));
      QVERIFY2(r.out.contains("[file: lib/pump.cpp, line 1]\nint pump_start() { return 7; }"),
               qPrintable(r.describe()));
      QVERIFY2(r.out.contains("[file: main.cpp, line 1]"), qPrintable(r.describe()));
    }
    // --dir takes folders only.
    Run f = run_cli({"--model", stories_bin(), "--dir", dir + "/main.cpp", "--ask", "what?"});
    VERIFY_RAN(f);
    QVERIFY2(f.code == 1 && f.err.contains("not a folder"), qPrintable(f.describe()));
  }

  // A folder with files that cannot be read: the others are used and each unreadable one is named
  // on stderr; a folder of nothing readable is an error. A FIFO is unreadable for every user; a
  // file without read permission only when not running as root.
  void folderWithUnreadableFiles() {
    const QString dir = tmp_.filePath("partly-unreadable");
    QVERIFY(QDir().mkpath(dir));
    QVERIFY(write_bytes(dir + "/good.md", "The pump runs at 40 litres a minute.\n"));
    QVERIFY(::mkfifo(QFile::encodeName(dir + "/pipe.txt").constData(), 0644) == 0);
    QVERIFY(write_bytes(dir + "/secret.md", "Hidden text.\n"));
    QVERIFY(::chmod(QFile::encodeName(dir + "/secret.md").constData(), 0) == 0);
    const bool root = ::geteuid() == 0;
    Run r = run_cli({"--model", stories_bin(), "--file", dir, "--ask", "How fast is the pump?", "--print-prompt"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 0, qPrintable(r.describe()));
    QVERIFY2(r.out.contains("The pump runs at 40 litres a minute."), qPrintable(r.describe()));
    QVERIFY2(r.err.contains("left out of partly-unreadable: pipe.txt: a FIFO (named pipe), not a regular file"),
             qPrintable(r.describe()));
    if (!root) {
      QVERIFY2(r.err.contains("left out of partly-unreadable: secret.md: cannot be read"), qPrintable(r.describe()));
      QVERIFY2(!r.out.contains("Hidden text."), qPrintable(r.describe()));
    }
    // The app's notice is printed as is.
    try {
      const folio::docs::Document doc = folio::docs::load_document(dir);
      for (const QString& n : doc.notices)
        QVERIFY2(r.err.contains(("folio-cli: note: " + n + "\n").toUtf8()), qPrintable(n + "\n" + r.describe()));
      QVERIFY(!doc.notices.isEmpty());
    } catch (const std::exception& e) {
      QFAIL(e.what());
    }

    const QString none = tmp_.filePath("all-unreadable");
    QVERIFY(QDir().mkpath(none));
    QVERIFY(::mkfifo(QFile::encodeName(none + "/a.txt").constData(), 0644) == 0);
    QVERIFY(::mkfifo(QFile::encodeName(none + "/b.txt").constData(), 0644) == 0);
    Run n = run_cli({"--model", stories_bin(), "--file", none, "--ask", "what?"});
    VERIFY_RAN(n);
    QVERIFY2(n.code == 1, qPrintable(n.describe()));
    QVERIFY2(n.err.contains("no text or source files to read (2 skipped: 2 unreadable)"), qPrintable(n.describe()));
  }

  // Bad documents: exit 1 and the app's own message (core/docs), word for word.
  void badDocument_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("phrase");
    const QByteArray pdf = folio::test::make_pdf({"Page one has text.", "Page two has text.", "Page three too."});
    QTest::newRow("encrypted PDF") << "locked.pdf" << folio::test::make_pdf({"Secret"}, {}, "pw")
                                   << "password-protected";
    QTest::newRow("truncated PDF") << "cut.pdf" << pdf.left(pdf.size() / 2) << "incomplete";
    QTest::newRow("empty file") << "empty.txt" << QByteArray() << "the file is empty";
    QTest::newRow("empty PDF") << "empty.pdf" << QByteArray() << "the file is empty";
    QTest::newRow("binary file") << "program.bin"
                                 << QByteArray(
                                        "\x7f"
                                        "ELF\x02\x01\x01\x00\x00\x00\x00\x00",
                                        12) +
                                        QByteArray(200, '\0')
                                 << "not a text file";
    QTest::newRow("white space only") << "blank.txt" << QByteArray("  \n\n\t\n") << "only white space";
  }

  void badDocument() {
#ifdef __SANITIZE_ADDRESS__
    QSKIP("Qt PDF leaks on an encrypted PDF (LeakSanitizer in the child); the release suite runs it");
#endif
    QFETCH(QString, name);
    QFETCH(QByteArray, bytes);
    QFETCH(QString, phrase);
    const QString path = tmp_.filePath("bad-" + name);
    QVERIFY(write_bytes(path, bytes));
    QString app_message;
    try {
      folio::docs::load_document(path);
    } catch (const std::exception& e) {
      app_message = QString::fromUtf8(e.what());
    }
    QVERIFY2(app_message.contains(phrase), qPrintable("the app's loader says: " + app_message));
    Run r = run_cli({"--model", stories_bin(), "--file", path, "--ask", "what?", "--max-tokens", "4"});
    VERIFY_RAN(r);
    QVERIFY2(r.code == 1, qPrintable(r.describe()));
    QVERIFY2(r.out.isEmpty(), qPrintable(r.describe()));
    QCOMPARE(QString::fromUtf8(r.err), "folio-cli: error: " + app_message + "\n");
  }

  // --- bad input --------------------------------------------------------------------------------

  void badInput_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<int>("code");        // 1 = error, 2 = usage error
    QTest::addColumn<QStringList>("phrases");  // in the first stderr line

    const QString model = stories_bin();
    const QString missing = tmp_.filePath("no-such-model.bin");
    const QString truncated = tmp_.filePath("truncated.bin");
    const QString nofile = tmp_.filePath("no-such-doc.txt");
    const QString binary = tmp_.filePath("binary.dat");
    const QString folder = tmp_.filePath("a-folder");
    const QString long_prompt =
        "Once upon a time there was a little girl named Lily who loved to play outside in the park with her dog";

    QTest::newRow("missing model") << QStringList{"--model", missing, "--prompt", "hi"} << 1
                                   << QStringList{missing, "not found"};
    QTest::newRow("truncated model") << QStringList{"--model", truncated, "--prompt", "hi"} << 1
                                     << QStringList{truncated, "truncated"};
    QTest::newRow("model is a text file") << QStringList{"--model", tmp_.filePath("text.txt"), "--prompt", "hi"} << 1
                                          << QStringList{tmp_.filePath("text.txt")};
    QTest::newRow("missing --file") << QStringList{"--model", model, "--file", nofile, "--ask", "what?"} << 1
                                    << QStringList{nofile, "not found"};
    QTest::newRow("binary --file") << QStringList{"--model", model, "--file", binary, "--ask", "what?"} << 1
                                   << QStringList{binary, "binary"};
    QTest::newRow("folder as --file") << QStringList{"--model", model, "--file", folder, "--ask", "what?"} << 1
                                      << QStringList{folder, "folder"};
    QTest::newRow("prompt longer than --ctx")
        << QStringList{"--model", model, "--ctx", "8", "--prompt", long_prompt} << 1 << QStringList{"context", "8"};
    QTest::newRow("--ctx beyond the model") << QStringList{"--model", model, "--ctx", "100000", "--prompt", "hi"} << 1
                                            << QStringList{"512"};
    QTest::newRow("missing tokenizer") << QStringList{"--model", model, "--tokenizer", nofile, "--prompt", "hi"} << 1
                                       << QStringList{nofile, "not found"};
    QTest::newRow("unknown option") << QStringList{"--model", model, "--prompt", "hi", "--frobnicate"} << 2
                                    << QStringList{"--frobnicate"};
    QTest::newRow("--max-tokens abc") << QStringList{"--model", model, "--prompt", "hi", "--max-tokens", "abc"} << 2
                                      << QStringList{"--max-tokens", "abc"};
    QTest::newRow("--max-tokens -5") << QStringList{"--model", model, "--prompt", "hi", "--max-tokens", "-5"} << 2
                                     << QStringList{"--max-tokens", "-5"};
    QTest::newRow("--temperature x") << QStringList{"--model", model, "--prompt", "hi", "--temperature", "x"} << 2
                                     << QStringList{"--temperature"};
    QTest::newRow("--max-tokens without value") << QStringList{"--model", model, "--prompt", "hi", "--max-tokens"}
                                                << 2 << QStringList{"--max-tokens"};
    QTest::newRow("--backend tpu") << QStringList{"--model", model, "--prompt", "hi", "--backend", "tpu"} << 2
                                   << QStringList{"tpu"};
    QTest::newRow("both --prompt and --ask") << QStringList{"--model", model, "--prompt", "hi", "--ask", "what?"} << 2
                                             << QStringList{"--prompt", "--ask"};
    QTest::newRow("neither --prompt nor --ask") << QStringList{"--model", model} << 2
                                                << QStringList{"--prompt", "--ask"};
    QTest::newRow("no --model") << QStringList{"--prompt", "hi"} << 2 << QStringList{"--model"};
    QTest::newRow("no arguments") << QStringList{} << 2 << QStringList{};
    QTest::newRow("tokenize without text") << QStringList{"tokenize", "--model", model} << 2
                                           << QStringList{"TEXT"};
    QTest::newRow("tokenize missing model") << QStringList{"tokenize", "--model", missing, "hi"} << 1
                                            << QStringList{missing, "not found"};
  }

  void badInput() {
    QFETCH(QStringList, args);
    QFETCH(int, code);
    QFETCH(QStringList, phrases);
    // The files the rows use.
    QByteArray model = [] {
      QFile f(stories_bin());
      return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
    }();
    QVERIFY(model.size() > 1000);
    QVERIFY(write_bytes(tmp_.filePath("truncated.bin"), model.left(model.size() - 1000)));
    QVERIFY(write_bytes(tmp_.filePath("text.txt"), "This is not a model. It is a plain text file of some length.\n"));
    QVERIFY(write_bytes(tmp_.filePath("binary.dat"), QByteArray("\x7f" "ELF\x02\x01\x01\x00\x00\x00\x00\x00", 12) +
                                                        QByteArray(200, '\0')));
    QVERIFY(QDir().mkpath(tmp_.filePath("a-folder")));

    Run r = run_cli(args);
    VERIFY_RAN(r);
    QVERIFY2(r.code == code, qPrintable(QString("expected exit code %1\n").arg(code) + r.describe()));
    QVERIFY2(r.out.trimmed().isEmpty(), qPrintable("stdout should be empty\n" + r.describe()));
    const QString err = QString::fromUtf8(r.err);
    const QString message = err.trimmed().section('\n', 0, 0);
    QVERIFY2(message.startsWith("folio-cli:"), qPrintable("no \"folio-cli:\" line on stderr\n" + r.describe()));
    for (const QString& p : phrases)
      QVERIFY2(message.contains(p), qPrintable("the stderr message does not say \"" + p + "\"\n" + r.describe()));
    QVERIFY2(!err.contains("internal error"), qPrintable(r.describe()));
    // The first line of stderr is the message; a runtime error is that one line alone (a usage
    // error may add the usage text).
    const QString first = err.section('\n', 0, 0);
    QVERIFY2(first.startsWith("folio-cli:"),
             qPrintable("stderr does not start with a \"folio-cli:\" line\n" + r.describe()));
    if (code == 1)
      QVERIFY2(err.count('\n') == 1 && err.endsWith('\n'), qPrintable("stderr is not one line\n" + r.describe()));
    else
      QVERIFY2(err.contains("usage: folio-cli"), qPrintable(r.describe()));
  }

  void helpGoesToStdout() {
    Run r = run_cli({"--help"});
    VERIFY_RAN(r);
    QCOMPARE(r.code, 0);
    QVERIFY2(r.out.startsWith("usage: folio-cli"), qPrintable(r.describe()));
  }
};

QTEST_GUILESS_MAIN(TestCli)
#include "tst_cli.moc"
