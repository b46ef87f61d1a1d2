// Document ingestion: PDFs through Qt PDF (pages, labels, broken / encrypted / scanned files),
// text files and their encodings, source trees with .gitignore, the prompt layout with citation
// markers, citation parsing, token counting and the token budget with explicit truncation.
#include <sys/stat.h>
#include <QCryptographicHash>
#include <QElapsedTimer>
#include <QFile>
#include <QPainter>
#include <QPdfWriter>
#include <QProcess>
#include <QRandomGenerator>
#include <QTemporaryDir>
#include <QtTest>
#include <map>

#include "core/common/mapped_file.h"
#include "core/docs/document.h"
#include "core/docs/gitignore.h"
#include "core/docs/ingest.h"
#include "core/docs/prompt_layout.h"
#include "core/docs/token_budget.h"
#include "tests/test_support.h"

using namespace folio::docs;
using folio::test::make_pdf;

// Qt 6.4's QPdfDocument leaks a little PDFium state when getAllText() meets a page without text and
// when a load fails (close() skips the cleanup when no document was opened); those leaks are in Qt,
// not in core/docs, so LeakSanitizer (the ASan run of tools/test.sh) is told to ignore them.
extern "C" __attribute__((used)) const char* __lsan_default_suppressions() {
  return "leak:QPdfDocument::getAllText\n"
         "leak:QPdfDocumentPrivate::initiateAsyncLoadWithTotalSizeKnown\n"
         "leak:QPdfDocumentPrivate::tryLoadDocument\n"
         "leak:QPdfDocumentPrivate::checkPageComplete\n";
}

namespace {

// ---- writing test files -----------------------------------------------------------------------

void write_file(const QString& path, const QByteArray& bytes) {
  QDir().mkpath(QFileInfo(path).absolutePath());
  QFile f(path);
  QVERIFY2(f.open(QIODevice::WriteOnly), qPrintable(path));
  QCOMPARE(f.write(bytes), bytes.size());
}

QByteArray read_file(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

// A PDF made by Qt: one page per entry, each line of an entry drawn as text; an entry "#rect"
// draws only a filled rectangle (a page without a text layer, like a scan).
void write_qt_pdf(const QString& path, const QStringList& pages) {
  QPdfWriter writer(path);
  writer.setPageSize(QPageSize(QPageSize::A4));
  writer.setResolution(72);
  QPainter painter(&writer);
  QFont font("Helvetica");
  font.setPointSize(14);
  painter.setFont(font);
  for (int i = 0; i < pages.size(); ++i) {
    if (i > 0) writer.newPage();
    if (pages[i] == "#rect") {
      painter.fillRect(QRect(60, 60, 300, 400), Qt::darkGray);
      continue;
    }
    int y = 80;
    for (const QString& line : pages[i].split('\n')) {
      painter.drawText(60, y, line);
      y += 24;
    }
  }
  painter.end();
}

// Runs fn, expects a DocumentError of that problem whose message names the file; returns the message.
template <typename Fn>
QString expect_error(Fn fn, DocumentProblem problem, const QString& file_name) {
  try {
    fn();
  } catch (const DocumentError& e) {
    const QString msg = QString::fromStdString(e.what());
    if (e.problem() != problem) {
      qWarning("unexpected problem %s: %s", document_problem_name(e.problem()), qPrintable(msg));
      return "WRONG PROBLEM: " + msg;
    }
    if (!msg.contains(file_name)) return "DOES NOT NAME THE FILE: " + msg;
    return msg;
  }
  return "NO ERROR";
}

std::unique_ptr<folio::Tokenizer> tok512() {
  return folio::load_tokenizer(folio::test::source_dir() + "/resources/models/stories260K/tok512.bin");
}

QString valgrind_gz() { return "/usr/share/doc/valgrind/valgrind_manual.pdf.gz"; }

// The valgrind manual, gunzipped into dir; "" (and a skip message) when it is not installed.
QString gunzip_valgrind(const QTemporaryDir& dir) {
  if (!QFile::exists(valgrind_gz())) return {};
  QProcess gz;
  gz.start("gzip", {"-dc", valgrind_gz()});
  if (!gz.waitForFinished(60000) || gz.exitCode() != 0) return {};
  const QString path = dir.filePath("valgrind_manual.pdf");
  QFile f(path);
  if (!f.open(QIODevice::WriteOnly)) return {};
  f.write(gz.readAllStandardOutput());
  return path;
}

QStringList numbered_lines(int n, const QString& prefix) {
  QStringList lines;
  for (int i = 1; i <= n; ++i) lines << QString("%1 line %2").arg(prefix).arg(i);
  return lines;
}

}  // namespace

class DocsTest : public QObject {
  Q_OBJECT

  QTemporaryDir tmp_;

 private slots:
  void initTestCase() { QVERIFY(tmp_.isValid()); }

  // ---- PDF --------------------------------------------------------------------------------------

  // A FIFO, a device or a symbolic link loop handed over as a document is refused by its type at
  // once (a FIFO used to block the reader forever), with a message that names what it is.
  void special_files_are_refused_by_type() {
    const QString fifo = tmp_.filePath("pipe.txt");
    QVERIFY(::mkfifo(QFile::encodeName(fifo).constData(), 0600) == 0);
    const QString a = tmp_.filePath("loop-a.txt"), b = tmp_.filePath("loop-b.txt");
    QVERIFY(QFile::link(b, a));
    QVERIFY(QFile::link(a, b));
    struct Case {
      QString path;
      const char* says;
    };
    for (const Case& c : {Case{fifo, "FIFO"}, Case{"/dev/zero", "character device"}, Case{a, "symbolic link loop"}}) {
      try {
        folio::docs::load_document(c.path);
        QFAIL(qPrintable(c.path + " was read"));
      } catch (const folio::docs::DocumentError& e) {
        QVERIFY2(QString::fromUtf8(e.what()).contains(c.says), e.what());
      }
      // the engine side (folio-cli documents, model and tokenizer files) says the same
      try {
        folio::read_text_file(c.path.toStdString());
        QFAIL(qPrintable(c.path + " was read"));
      } catch (const folio::Error& e) {
        QVERIFY2(QString::fromUtf8(e.what()).contains(c.says), e.what());
      }
    }
    try {
      folio::read_text_file(fifo.toStdString(), 1);
      QFAIL("read");
    } catch (const folio::Error&) {
    }
    // a size limit is checked before reading
    const QString big = tmp_.filePath("big.txt");
    {
      QFile f(big);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QByteArray(4096, 'x'));
    }
    QVERIFY_THROWS_EXCEPTION(folio::Error, folio::read_text_file(big.toStdString(), 1024));
    QCOMPARE(folio::read_text_file(big.toStdString(), 4096).size(), size_t{4096});
  }

  void pdf_pages_text_and_labels() {
    const QString path = tmp_.filePath("three.pdf");
    write_qt_pdf(path, {"Alpha page one\nsecond line of alpha", "Bravo page two", "Charlie page three"});
    QVector<QPair<int, int>> progress;
    LoadOptions opts;
    opts.on_progress = [&](int done, int total) { progress.push_back({done, total}); };
    const Document doc = load_document(path, opts);
    QCOMPARE(doc.kind, DocumentKind::Pdf);
    QCOMPARE(doc.title, QString("three.pdf"));
    QCOMPARE(doc.page_count, 3);
    QCOMPARE(doc.sections.size(), 3);
    QCOMPARE(doc.sections[0].text, QString("Alpha page one\nsecond line of alpha"));
    QCOMPARE(doc.sections[1].text, QString("Bravo page two"));
    QCOMPARE(doc.sections[2].text, QString("Charlie page three"));
    for (int i = 0; i < 3; ++i) {
      QCOMPARE(doc.sections[i].page_index, i);
      QCOMPARE(doc.sections[i].page_label, QString::number(i + 1));
    }
    QCOMPARE(doc.page_labels, QStringList({"1", "2", "3"}));
    QVERIFY(doc.notices.isEmpty());
    QCOMPARE(doc.content_hash, QString(QCryptographicHash::hash(read_file(path), QCryptographicHash::Sha256).toHex()));
    QCOMPARE(progress.size(), 4);
    QCOMPARE(progress.front(), qMakePair(0, 3));
    QCOMPARE(progress.back(), qMakePair(3, 3));
  }

  void pdf_printed_labels() {
    // Roman front matter, then arabic from 1: /PageLabels as books have them.
    const QString path = tmp_.filePath("labels.pdf");
    write_file(path, make_pdf({"Preface text", "Contents text", "Chapter one text", "Chapter one goes on"},
                              "/PageLabels << /Nums [0 << /S /r >> 2 << /S /D >>] >>"));
    const Document doc = load_pdf(path);
    QCOMPARE(doc.page_count, 4);
    QCOMPARE(doc.page_labels, QStringList({"i", "ii", "1", "2"}));
    QCOMPARE(doc.sections[2].page_label, QString("1"));
    QCOMPARE(doc.sections[2].text, QString("Chapter one text"));
    QVERIFY(!doc.cite_by_page_number);
    QCOMPARE(citation_label(doc, 1), QString("ii"));
    const QString laid = layout_document(doc);
    QVERIFY(laid.contains("[p. ii]\nContents text"));
    QVERIFY(laid.contains("[p. 1]\nChapter one text"));
  }

  void pdf_some_pages_without_text() {
    const QString path = tmp_.filePath("mixed.pdf");
    write_qt_pdf(path, {"Text on the first page", "#rect", "#rect", "Text on page four", "#rect"});
    const Document doc = load_pdf(path);
    QCOMPARE(doc.page_count, 5);
    QCOMPARE(doc.sections.size(), 2);
    QCOMPARE(doc.sections[1].page_index, 3);
    QCOMPARE(doc.notices.size(), 1);
    qInfo("notice: %s", qPrintable(doc.notices[0]));
    QVERIFY(doc.notices[0].contains("mixed.pdf"));
    QVERIFY(doc.notices[0].contains("pages 2-3, 5 (3 of 5)"));
    QVERIFY(doc.notices[0].contains("no text layer"));
  }

  void pdf_scanned_has_no_text_layer() {
    const QString path = tmp_.filePath("scanned.pdf");
    write_qt_pdf(path, {"#rect", "#rect"});
    const QString msg = expect_error([&] { load_document(path); }, DocumentProblem::NoTextLayer, "scanned.pdf");
    qInfo("message: %s", qPrintable(msg));
    QVERIFY2(msg.contains("no text layer on any of its 2 pages") && msg.contains("OCR"), qPrintable(msg));
  }

  void pdf_broken() {
    // A real PDF cut in half, random bytes behind a %PDF header (with and without an end marker),
    // an empty file, a text file named .pdf.
    const QString real = tmp_.filePath("real.pdf");
    write_qt_pdf(real, {"Some text", "More text", "Even more text"});
    const QByteArray bytes = read_file(real);
    const QString cut = tmp_.filePath("truncated.pdf");
    write_file(cut, bytes.left(bytes.size() * 6 / 10));
    QString msg = expect_error([&] { load_pdf(cut); }, DocumentProblem::Broken, "truncated.pdf");
    qInfo("truncated: %s", qPrintable(msg));
    QVERIFY2(msg.contains("incomplete"), qPrintable(msg));

    QRandomGenerator rng(1234);
    QByteArray noise = "%PDF-1.7\n";
    for (int i = 0; i < 20000; ++i) noise += static_cast<char>(rng.bounded(256));
    const QString random = tmp_.filePath("random.pdf");
    write_file(random, noise);
    msg = expect_error([&] { load_pdf(random); }, DocumentProblem::Broken, "random.pdf");
    qInfo("random: %s", qPrintable(msg));
    const QString random_eof = tmp_.filePath("random_eof.pdf");
    write_file(random_eof, noise + "\n%%EOF\n");
    msg = expect_error([&] { load_pdf(random_eof); }, DocumentProblem::Broken, "random_eof.pdf");
    qInfo("random with %%%%EOF: %s", qPrintable(msg));
    QVERIFY2(msg.contains("damaged"), qPrintable(msg));

    const QString empty = tmp_.filePath("empty.pdf");
    write_file(empty, {});
    msg = expect_error([&] { load_document(empty); }, DocumentProblem::Empty, "empty.pdf");
    QVERIFY2(!msg.startsWith("NO ERROR") && !msg.startsWith("WRONG") && !msg.startsWith("DOES"), qPrintable(msg));
    const QString fake = tmp_.filePath("fake.pdf");
    write_file(fake, "just some words\n");
    msg = expect_error([&] { load_document(fake); }, DocumentProblem::Broken, "fake.pdf");
    QVERIFY2(msg.contains("not a PDF"), qPrintable(msg));
    QCOMPARE(expect_error([&] { load_document(tmp_.filePath("missing.pdf")); }, DocumentProblem::NotFound,
                          "missing.pdf")
                 .contains("not found"),
             true);
  }

  void pdf_valgrind_truncated() {
    QTemporaryDir dir;
    const QString path = gunzip_valgrind(dir);
    if (path.isEmpty()) QSKIP(qPrintable(valgrind_gz() + " is not installed (package valgrind) or gzip failed"));
    const QByteArray bytes = read_file(path);
    const QString cut = dir.filePath("valgrind_cut.pdf");
    write_file(cut, bytes.left(bytes.size() / 2));
    const QString msg = expect_error([&] { load_pdf(cut); }, DocumentProblem::Broken, "valgrind_cut.pdf");
    qInfo("%s", qPrintable(msg));
    QVERIFY2(msg.contains("incomplete"), qPrintable(msg));
  }

  void pdf_encrypted() {
    // Qt 6.4's QPdfWriter cannot encrypt and qpdf is not a dependency, so the test writes the PDF by
    // hand with the standard security handler (RC4 40-bit, revision 2) and a user password.
    const QString path = tmp_.filePath("locked.pdf");
    write_file(path, make_pdf({"Secret text on page one", "More secrets on page two"}, {}, "folio-pw"));
    QString msg = expect_error([&] { load_pdf(path); }, DocumentProblem::Encrypted, "locked.pdf");
    qInfo("no password: %s", qPrintable(msg));
    QVERIFY2(msg.contains("password-protected"), qPrintable(msg));
    LoadOptions wrong;
    wrong.pdf_password = "guess";
    msg = expect_error([&] { load_pdf(path, wrong); }, DocumentProblem::Encrypted, "locked.pdf");
    QVERIFY2(msg.contains("password given for this PDF is wrong"), qPrintable(msg));
    LoadOptions right;
    right.pdf_password = "folio-pw";
    const Document doc = load_pdf(path, right);
    QCOMPARE(doc.page_count, 2);
    QCOMPARE(doc.sections.size(), 2);
    QCOMPARE(doc.sections[0].text, QString("Secret text on page one"));
    QCOMPARE(doc.sections[1].text, QString("More secrets on page two"));
  }

  void pdf_cancel_between_pages() {
    const QString path = tmp_.filePath("cancel.pdf");
    write_qt_pdf(path, {"one", "two", "three", "four"});
    folio::CancelToken cancel;
    LoadOptions opts;
    opts.cancel = &cancel;
    int last_done = -1;
    opts.on_progress = [&](int done, int) {
      last_done = done;
      if (done == 2) cancel.cancel();
    };
    const QString msg = expect_error([&] { load_pdf(path, opts); }, DocumentProblem::Cancelled, "cancel.pdf");
    QVERIFY2(msg.contains("cancelled"), qPrintable(msg));
    QCOMPARE(last_done, 2);
  }

  void pdf_valgrind_manual() {
    QTemporaryDir dir;
    const QString path = gunzip_valgrind(dir);
    if (path.isEmpty()) QSKIP(qPrintable(valgrind_gz() + " is not installed (package valgrind) or gzip failed"));
    int calls = 0;
    LoadOptions opts;
    opts.on_progress = [&](int, int total) {
      ++calls;
      QCOMPARE(total, 397);
    };
    QElapsedTimer timer;
    timer.start();
    const Document doc = load_pdf(path, opts);
    const double load_ms = static_cast<double>(timer.nsecsElapsed()) / 1e6;
    QCOMPARE(doc.page_count, 397);
    QCOMPARE(doc.page_labels.size(), 397);
    QCOMPARE(calls, 398);
    qsizetype chars = 0;
    for (const Section& s : doc.sections) {
      QVERIFY(!s.text.trimmed().isEmpty());
      chars += s.text.size();
    }
    qInfo("valgrind manual: %d pages, %lld pages with text, %lld characters, loaded in %.0f ms; labels %s .. %s; %s",
          doc.page_count, static_cast<long long>(doc.sections.size()), static_cast<long long>(chars), load_ms,
          qPrintable(doc.page_labels.front()), qPrintable(doc.page_labels.back()),
          qPrintable(doc.notices.isEmpty() ? QString("no notices") : doc.notices.join("; ")));
    QVERIFY(doc.sections.size() >= 390);
    QVERIFY(chars > 500000);
    // Its printed labels restart in every part (i, 2, iii, iv, 1, 2, 3, ..., 1, 2, ...): pages are
    // cited by their number in the file then, and a notice says so.
    const bool repeated = QSet<QString>(doc.page_labels.begin(), doc.page_labels.end()).size() < 397;
    QCOMPARE(doc.cite_by_page_number, repeated);
    if (repeated) {
      QVERIFY(doc.notices.join('\n').contains("cited by their number in the file, 1-397"));
      QVERIFY(layout_document(doc).contains("\n\n[p. 397]\n"));
      const QVector<CitationTarget> t = resolve_citations("see p. 200", {doc});
      QCOMPARE(t.size(), 1);
      QCOMPARE(t[0].first_page, 199);
    }

    // Token count of the laid-out manual with the tok512 tokenizer, once; the second count comes
    // from the cache.
    const std::string tok_path = folio::test::source_dir() + "/resources/models/stories260K/tok512.bin";
    FOLIO_REQUIRE_FILE(tok_path);
    auto tokenizer = tok512();
    TokenCounter counter(*tokenizer);
    const QString laid = layout_document(doc);
    timer.restart();
    const int64_t tokens = counter.count(doc);
    const double count_s = static_cast<double>(timer.nsecsElapsed()) / 1e9;
    qInfo("valgrind manual: %lld tokens (tok512) from %lld characters in %.2f s: %.0f tokens/s",
          static_cast<long long>(tokens), static_cast<long long>(laid.size()), count_s, tokens / count_s);
    QVERIFY(tokens > chars / 8);
    timer.restart();
    QCOMPARE(counter.count(doc), tokens);
    QVERIFY(timer.elapsed() < count_s * 1000 / 2 + 50);
    QCOMPARE(counter.encodes(), int64_t{1});

    // Keep the first 20,000 tokens: whole pages, then the notice naming the pages left out.
    const Document cut = truncate_document(doc, 20000, counter);
    const int64_t cut_tokens = counter.count_text(layout_document(cut));
    qInfo("truncated to %lld tokens: %s", static_cast<long long>(cut_tokens), qPrintable(cut.truncation_notice));
    QVERIFY(cut_tokens <= 20000);
    QVERIFY(cut_tokens > 19000);
    QVERIFY(cut.truncation_notice.startsWith("[... truncated by the user: the rest of valgrind_manual.pdf ("));
    QVERIFY(cut.truncation_notice.endsWith("-397) is not included ...]"));
  }

  // ---- text files ---------------------------------------------------------------------------

  void text_encodings_data() {
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("encoding");
    const QString text = QString::fromUtf8("Grüße aus Köln, naïve café ½\nzweite Zeile ÿ\n");
    auto utf16 = [&](bool le) {
      QByteArray b = le ? QByteArray("\xFF\xFE") : QByteArray("\xFE\xFF");
      for (QChar c : text) {
        const char16_t u = c.unicode();
        const char lo = static_cast<char>(u & 0xFF), hi = static_cast<char>(u >> 8);
        b += le ? lo : hi;
        b += le ? hi : lo;
      }
      return b;
    };
    QTest::newRow("UTF-8") << text.toUtf8() << "UTF-8";
    QTest::newRow("UTF-8 BOM") << QByteArray("\xEF\xBB\xBF") + text.toUtf8() << "UTF-8 (BOM)";
    QTest::newRow("UTF-16LE BOM") << utf16(true) << "UTF-16LE (BOM)";
    QTest::newRow("UTF-16BE BOM") << utf16(false) << "UTF-16BE (BOM)";
    QTest::newRow("Latin-1") << text.toLatin1() << "Latin-1";
  }

  void text_encodings() {
    QFETCH(QByteArray, bytes);
    QFETCH(QString, encoding);
    const QString expected = QString::fromUtf8("Grüße aus Köln, naïve café ½\nzweite Zeile ÿ\n");
    const DecodedText d = decode_text(bytes);
    QVERIFY(d.ok);
    QCOMPARE(d.encoding, encoding);
    QCOMPARE(d.text, expected);
    const QString path = tmp_.filePath(QString("enc_%1.txt").arg(QTest::currentDataTag()).replace(' ', '_'));
    write_file(path, bytes);
    const Document doc = load_document(path);
    QCOMPARE(doc.kind, DocumentKind::Text);
    QCOMPARE(doc.encoding, encoding);
    QCOMPARE(doc.sections.size(), 1);
    QCOMPARE(doc.sections[0].text, QString::fromUtf8("Grüße aus Köln, naïve café ½\nzweite Zeile ÿ"));
    QCOMPARE(doc.sections[0].first_line, 1);
    QCOMPARE(doc.sections[0].last_line, 2);
    QCOMPARE(doc.notices.size(), encoding == "Latin-1" ? 1 : 0);
    if (encoding == "Latin-1") QVERIFY(doc.notices[0].contains("Latin-1"));
  }

  void text_binary_refused() {
    const QString nul = tmp_.filePath("program.dat");
    write_file(nul, QByteArray("ELF\x01\x02\x00\x00\x00 some words", 20));
    QString msg = expect_error([&] { load_document(nul); }, DocumentProblem::Binary, "program.dat");
    qInfo("%s", qPrintable(msg));
    QVERIFY2(msg.contains("not a text file") && msg.contains("NUL"), qPrintable(msg));
    QByteArray controls;
    for (int i = 0; i < 400; ++i) controls += static_cast<char>(i % 3 == 0 ? 'a' : 1 + i % 7);
    const QString ctl = tmp_.filePath("noise.txt");
    write_file(ctl, controls);
    msg = expect_error([&] { load_document(ctl); }, DocumentProblem::Binary, "noise.txt");
    QVERIFY2(msg.contains("control bytes"), qPrintable(msg));
    const QString empty = tmp_.filePath("empty.md");
    write_file(empty, {});
    QVERIFY(!expect_error([&] { load_document(empty); }, DocumentProblem::Empty, "empty.md").startsWith("NO"));
  }

  void text_sections_keep_line_numbers() {
    const QString path = tmp_.filePath("notes.md");
    write_file(path, (numbered_lines(450, "note").join("\r\n") + "\r\n").toUtf8());
    const Document doc = load_document(path);
    QCOMPARE(doc.title, QString("notes.md"));
    QCOMPARE(doc.files.size(), 1);
    QCOMPARE(doc.files[0].line_count, 450);
    QCOMPARE(doc.files[0].language, QString("Markdown"));
    QCOMPARE(doc.sections.size(), 3);
    QCOMPARE(doc.sections[0].first_line, 1);
    QCOMPARE(doc.sections[0].last_line, 200);
    QCOMPARE(doc.sections[1].first_line, 201);
    QCOMPARE(doc.sections[1].last_line, 400);
    QCOMPARE(doc.sections[2].first_line, 401);
    QCOMPARE(doc.sections[2].last_line, 450);
    QCOMPARE(doc.sections[1].text.section('\n', 0, 0), QString("note line 201"));
    QCOMPARE(doc.sections[2].text.section('\n', -1), QString("note line 450"));
    QCOMPARE(doc.sections[0].language, QString("Markdown"));
    QCOMPARE(doc.sections[0].file, QString("notes.md"));
    QCOMPARE(split_lines("a\r\nb\rc\n\nd"), QStringList({"a", "b", "c", "", "d"}));
  }

  // ---- source trees -------------------------------------------------------------------------

  void gitignore_patterns_data() {
    QTest::addColumn<QString>("patterns");
    QTest::addColumn<QString>("path");
    QTest::addColumn<bool>("is_dir");
    QTest::addColumn<bool>("ignored");
    QTest::newRow("star") << "*.log" << "a/b/x.log" << false << true;
    QTest::newRow("star no slash") << "*.log" << "a/x.txt" << false << false;
    QTest::newRow("negation") << "*.log\n!keep.log" << "a/keep.log" << false << false;
    QTest::newRow("negation later wins") << "!keep.log\n*.log" << "keep.log" << false << true;
    QTest::newRow("comment") << "# *.txt\n" << "a.txt" << false << false;
    QTest::newRow("escaped hash") << "\\#notes" << "#notes" << false << true;
    QTest::newRow("dir only, file") << "build/" << "build" << false << false;
    QTest::newRow("dir only, dir") << "build/" << "src/build" << true << true;
    QTest::newRow("leading slash") << "/todo.txt" << "todo.txt" << false << true;
    QTest::newRow("leading slash, deeper") << "/todo.txt" << "src/todo.txt" << false << false;
    QTest::newRow("middle slash anchored") << "doc/frotz" << "a/doc/frotz" << false << false;
    QTest::newRow("middle slash") << "doc/frotz" << "doc/frotz" << true << true;
    QTest::newRow("question mark") << "file?.c" << "file1.c" << false << true;
    QTest::newRow("question mark not slash") << "a?b" << "a/b" << false << false;
    QTest::newRow("leading **") << "**/cache" << "x/y/cache" << true << true;
    QTest::newRow("leading ** top") << "**/cache" << "cache" << true << true;
    QTest::newRow("trailing **") << "logs/**" << "logs/a/b.txt" << false << true;
    QTest::newRow("trailing ** not the dir") << "logs/**" << "logs" << true << false;
    QTest::newRow("middle **") << "a/**/b" << "a/x/y/b" << false << true;
    QTest::newRow("middle ** zero") << "a/**/b" << "a/b" << false << true;
    QTest::newRow("star not across slash") << "a/*.c" << "a/b/c.c" << false << false;
    QTest::newRow("brackets") << "*.[oa]" << "lib.a" << false << true;
    QTest::newRow("negated brackets") << "x[!0-9]" << "x5" << false << false;
    QTest::newRow("trailing spaces") << "*.tmp   " << "a.tmp" << false << true;
  }

  void gitignore_patterns() {
    QFETCH(QString, patterns);
    QFETCH(QString, path);
    QFETCH(bool, is_dir);
    QFETCH(bool, ignored);
    GitignoreStack stack;
    stack.add(parse_gitignore(patterns, "", ".gitignore"));
    QCOMPARE(stack.ignored(path, is_dir), ignored);
  }

  // An exclude file past 1 MiB is not parsed (every file would be matched against all its
  // patterns), and the listing says so instead of applying it silently in part.
  void source_tree_with_a_huge_exclude_file() {
    const QString root = tmp_.filePath("huge-exclude");
    write_file(root + "/main.c", "int main(void) { return 0; }\n");
    QByteArray patterns;
    while (patterns.size() <= (1 << 20)) patterns += "*.generated-" + QByteArray::number(patterns.size()) + "\n";
    write_file(root + "/.git/info/exclude", patterns);
    const Document doc = load_document(root, LoadOptions());
    QCOMPARE(doc.files.size(), 1);
    QCOMPARE(doc.files[0].path, QString("main.c"));
    bool listed = false;
    for (const SkippedFile& s : doc.skipped)
      if (s.path == ".git/info/exclude") listed = s.kind == SkipKind::TooLarge && s.reason.contains("not applied");
    QVERIFY(listed);
  }

  // The same bound for a .gitignore anywhere in the tree: listed once, its patterns not applied,
  // the rest of the walk unchanged (the folder's other .gitignore rules still hold).
  void source_tree_with_a_huge_gitignore() {
    const QString root = tmp_.filePath("huge-gitignore");
    write_file(root + "/.gitignore", "*.log\n");
    write_file(root + "/main.c", "int main(void) { return 0; }\n");
    write_file(root + "/run.log", "ignored by the root's .gitignore\n");
    write_file(root + "/lib/util.c", "int util(void) { return 1; }\n");
    write_file(root + "/lib/debug.log", "still ignored below lib/\n");
    QByteArray patterns = "util.c\n";
    while (patterns.size() <= (1 << 20)) patterns += "*.generated-" + QByteArray::number(patterns.size()) + "\n";
    write_file(root + "/lib/.gitignore", patterns);
    const Document doc = load_document(root, LoadOptions());
    QStringList paths;
    for (const auto& f : doc.files) paths << f.path;
    QVERIFY2(paths.contains("lib/util.c"), qPrintable(paths.join(", ")));  // its pattern was not applied
    QVERIFY(paths.contains("main.c"));
    QVERIFY(!paths.contains("run.log"));
    QVERIFY(!paths.contains("lib/debug.log"));
    int listed = 0;
    for (const SkippedFile& s : doc.skipped)
      if (s.path == "lib/.gitignore") {
        ++listed;
        QCOMPARE(s.kind, SkipKind::TooLarge);
        QVERIFY2(s.reason.contains("not applied"), qPrintable(s.reason));
      }
    QCOMPARE(listed, 1);
  }

  // A .git that links out of the tree is not followed for its exclude file either.
  void source_tree_with_a_git_link_outside() {
    QTemporaryDir outside;
    write_file(outside.filePath("info/exclude"), "*.c\n");
    const QString root = tmp_.filePath("git-link");
    write_file(root + "/main.c", "int main(void) { return 0; }\n");
    QVERIFY(QFile::link(outside.path(), root + "/.git"));
    const Document doc = load_document(root, LoadOptions());
    QCOMPARE(doc.files.size(), 1);
    QCOMPARE(doc.files[0].path, QString("main.c"));
  }

  void source_tree() {
    QTemporaryDir outside;
    write_file(outside.filePath("secret.txt"), "outside the tree\n");
    const QString root = tmp_.filePath("proj");
    auto put = [&](const QString& rel, const QByteArray& bytes) { write_file(root + "/" + rel, bytes); };
    put(".gitignore", "# build output\n*.log\n!keep.log\nbuild/\n/root_only.txt\ndocs/**/*.tmp\n");
    put("src/.gitignore", "generated_*.cpp\n!generated_keep.cpp\n");
    put("src/main.cpp", numbered_lines(250, "// main").join('\n').toUtf8() + "\n");
    put("src/util.h", "#pragma once\nint util();\n");
    put("src/generated_x.cpp", "int x;\n");
    put("src/generated_keep.cpp", "int keep;\n");
    put("src/sub/root_only.txt", "anchored patterns match at the root only\n");
    put("src/sub/deep/mod.py", "def f():\n    return 1\n");
    put("root_only.txt", "ignored\n");
    put("debug.log", "ignored\n");
    put("keep.log", "kept by negation\n");
    put("build/out.txt", "ignored folder\n");
    put(".git/config", "[core]\n");
    put(".git/info/exclude", "# local files kept out of git\nscratch/\n*.bak\n!src/keep.bak\n");
    put("scratch/notes.txt", "excluded locally\n");
    put("src/old.bak", "excluded locally\n");
    put("src/keep.bak", "kept by the exclude file's own negation\n");
    put("bin/data.bin", QByteArray("\x7F" "ELF\x00\x00\x01", 7));
    put("web/app.min.js", "var a=1;\n");
    put("web/bundle.js", QByteArray(2000, 'x') + "\n");
    put("web/app.js", "console.log('hi');\n");
    put("docs/readme.md", "# Readme\n");
    put("docs/a/b/x.tmp", "ignored by **\n");
    put("big.txt", QByteArray((1 << 20) + 10, 'a'));
    put("empty.txt", {});
    put("wide.txt", QByteArray("\xFF\xFE" "h\0i\0\n\0", 8));
    QVERIFY(QFile::link(outside.filePath("secret.txt"), root + "/outside_link.txt"));
    QVERIFY(QFile::link(root + "/src/util.h", root + "/util_link.h"));
    QVERIFY(QFile::link(root + "/src", root + "/src_link"));

    QVector<int> progress;
    LoadOptions opts;
    opts.on_progress = [&](int done, int) { progress.push_back(done); };
    const Document doc = load_document(root, opts);
    QCOMPARE(doc.kind, DocumentKind::SourceTree);
    QCOMPARE(doc.title, QString("proj"));
    QStringList files;
    for (const FileEntry& f : doc.files) files << f.path;
    const QStringList want = {".gitignore",   "docs/readme.md",  "keep.log",
                              "src/.gitignore", "src/generated_keep.cpp", "src/keep.bak", "src/main.cpp",
                              "src/sub/deep/mod.py", "src/sub/root_only.txt", "src/util.h",
                              "util_link.h",  "web/app.js",      "wide.txt"};
    QCOMPARE(files, want);
    QCOMPARE(doc.page_count, static_cast<int>(want.size()));
    QVERIFY(!progress.isEmpty());

    QMap<QString, QPair<SkipKind, QString>> skipped;
    for (const SkippedFile& s : doc.skipped) skipped[s.path] = {s.kind, s.reason};
    for (auto it = skipped.cbegin(); it != skipped.cend(); ++it)
      qInfo("skipped %-22s %s", qPrintable(it.key()), qPrintable(it.value().second));
    const QMap<QString, SkipKind> want_skips = {
        {".git/", SkipKind::GitFolder},        {"bin/data.bin", SkipKind::Binary},
        {"big.txt", SkipKind::TooLarge},       {"build/", SkipKind::Ignored},
        {"debug.log", SkipKind::Ignored},      {"docs/a/b/x.tmp", SkipKind::Ignored},
        {"empty.txt", SkipKind::Empty},        {"outside_link.txt", SkipKind::Symlink},
        {"root_only.txt", SkipKind::Ignored},  {"src/generated_x.cpp", SkipKind::Ignored},
        {"scratch/", SkipKind::Ignored},       {"src/old.bak", SkipKind::Ignored},
        {"src_link/", SkipKind::Symlink},      {"web/app.min.js", SkipKind::Generated},
        {"web/bundle.js", SkipKind::Generated}};
    QCOMPARE(skipped.keys(), want_skips.keys());
    for (auto it = want_skips.cbegin(); it != want_skips.cend(); ++it) QCOMPARE(skipped[it.key()].first, it.value());
    QVERIFY(skipped["src/generated_x.cpp"].second.contains("src/.gitignore (line 1: generated_*.cpp)"));
    QVERIFY(skipped["src/old.bak"].second.contains(".git/info/exclude (line 3: *.bak)"));
    QVERIFY(skipped["bin/data.bin"].second.contains("NUL"));
    QVERIFY(skipped["big.txt"].second.contains("larger than 1 MiB"));
    QVERIFY(skipped["web/bundle.js"].second.contains("2000 characters"));
    QVERIFY(skipped["web/app.min.js"].second.contains("minified"));
    QVERIFY(skipped["outside_link.txt"].second.contains("outside the folder"));

    QVector<Section> main_sections;
    for (const Section& s : doc.sections)
      if (s.file == "src/main.cpp") main_sections << s;
    QCOMPARE(main_sections.size(), 2);
    QCOMPARE(main_sections[0].first_line, 1);
    QCOMPARE(main_sections[0].last_line, 200);
    QCOMPARE(main_sections[1].first_line, 201);
    QCOMPARE(main_sections[1].last_line, 250);
    QCOMPARE(main_sections[1].language, QString("C++"));
    QCOMPARE(main_sections[1].text.section('\n', 0, 0), QString("// main line 201"));
    for (const FileEntry& f : doc.files)
      if (f.path == "wide.txt") QCOMPARE(f.encoding, QString("UTF-16LE (BOM)"));
    QCOMPARE(language_for_file("src/sub/deep/mod.py"), QString("Python"));

    // The same tree read again gives the same document.
    const Document again = load_source_tree(root);
    QCOMPARE(again.content_hash, doc.content_hash);
    QCOMPARE(again.sections.size(), doc.sections.size());
  }

  // ---- prompt layout and citations ------------------------------------------------------------

  void layout_and_citations() {
    const QString pdf_path = tmp_.filePath("manual.pdf");
    write_file(pdf_path, make_pdf({"Preface", "Contents", "Install with make", "Run the tool", "Options list"},
                                  "/PageLabels << /Nums [0 << /S /r >> 2 << /S /D >>] >>"));
    const Document pdf = load_pdf(pdf_path);
    const QString root = tmp_.filePath("cite");
    write_file(root + "/src/engine.cpp", numbered_lines(300, "code").join('\n').toUtf8());
    write_file(root + "/src/x.cpp", numbered_lines(80, "x").join('\n').toUtf8());
    write_file(root + "/README.md", "# readme\n");
    const Document tree = load_source_tree(root);
    const QVector<Document> docs = {pdf, tree};

    const QString prompt = layout_documents(docs);
    QVERIFY(prompt.startsWith("[document: manual.pdf, 5 pages]\n\n[p. i]\nPreface\n\n[p. ii]\nContents"));
    QVERIFY(prompt.contains("[p. 1]\nInstall with make\n\n[p. 2]\nRun the tool"));
    QVERIFY(prompt.contains("[end of document: manual.pdf]\n\n[folder: cite, 3 files]"));
    QVERIFY(prompt.contains("[file: src/engine.cpp, lines 1-200]\ncode line 1\n"));
    QVERIFY(prompt.contains("[file: src/engine.cpp, lines 201-300]\ncode line 201\n"));
    QVERIFY(prompt.contains("[file: README.md, line 1]\n# readme"));
    QVERIFY(prompt.endsWith("[end of folder: cite]"));
    LayoutOptions numbered;
    numbered.number_lines = true;
    QVERIFY(layout_document(tree, numbered).contains("[file: src/engine.cpp, lines 201-300]\n201| code line 201\n"));

    const QString instruction = citation_instruction(docs);
    qInfo("instruction: %s", qPrintable(instruction));
    QVERIFY(instruction.contains("(p. 12)"));
    QVERIFY(instruction.contains("(README.md:40-58)"));

    const QString answer =
        "Install it with make (p. 1), then run it (pp. 1-2; see also page ii). The engine starts in "
        "src/engine.cpp:40-58 and src/x.cpp line 7, and x.cpp:9 too; lines 3-4 of src/engine.cpp set it up. "
        "Not real: p. 99, nothing.cpp:3, src/x.cpp:500, 10:30, e.g. the manual.pdf, page 2.";
    const QVector<Citation> parsed = parse_citations(answer);
    QStringList texts;
    for (const Citation& c : parsed) texts << c.text;
    QCOMPARE(texts, QStringList({"p. 1", "pp. 1-2", "page ii", "src/engine.cpp:40-58", "src/x.cpp line 7", "x.cpp:9",
                                 "lines 3-4 of src/engine.cpp", "p. 99", "nothing.cpp:3", "src/x.cpp:500",
                                 "page 2"}));

    const QVector<CitationTarget> targets = resolve_citations(answer, docs);
    QStringList got;
    for (const CitationTarget& t : targets) {
      if (t.citation.kind == CitationKind::Pages)
        got << QString("%1 -> doc %2 pages %3-%4 section %5")
                   .arg(t.citation.text)
                   .arg(t.document)
                   .arg(t.first_page)
                   .arg(t.last_page)
                   .arg(t.section);
      else
        got << QString("%1 -> doc %2 %3:%4-%5 section %6")
                   .arg(t.citation.text)
                   .arg(t.document)
                   .arg(t.file)
                   .arg(t.first_line)
                   .arg(t.last_line)
                   .arg(t.section);
    }
    const QStringList want = {
        "p. 1 -> doc 0 pages 2-2 section 2",
        "pp. 1-2 -> doc 0 pages 2-3 section 2",
        "page ii -> doc 0 pages 1-1 section 1",
        "src/engine.cpp:40-58 -> doc 1 src/engine.cpp:40-58 section 1",
        "src/x.cpp line 7 -> doc 1 src/x.cpp:7-7 section 3",
        "x.cpp:9 -> doc 1 src/x.cpp:9-9 section 3",
        "lines 3-4 of src/engine.cpp -> doc 1 src/engine.cpp:3-4 section 1",
        "page 2 -> doc 0 pages 3-3 section 3",
    };
    QCOMPARE(got, want);
    // Sections of the tree: README.md (0), src/engine.cpp 1-200 (1), 201-300 (2), src/x.cpp (3).
    QCOMPARE(tree.sections[1].file, QString("src/engine.cpp"));
    QCOMPARE(tree.sections[3].file, QString("src/x.cpp"));
    QCOMPARE(targets[0].citation.start, answer.indexOf("p. 1"));
  }

  void citations_pick_the_named_pdf() {
    Document a, b;
    for (Document* d : {&a, &b}) {
      d->kind = DocumentKind::Pdf;
      d->page_count = 3;
      d->page_labels = {"1", "2", "3"};
      for (int i = 0; i < 3; ++i) d->sections.push_back({QString("page %1").arg(i + 1), i, QString::number(i + 1)});
    }
    a.title = "guide.pdf";
    b.title = "reference.pdf";
    const QVector<CitationTarget> t =
        resolve_citations("See reference.pdf, p. 3 and also guide.pdf (p. 2); then p. 1.", {a, b});
    QCOMPARE(t.size(), 3);
    QCOMPARE(t[0].document, 1);
    QCOMPARE(t[0].first_page, 2);
    QCOMPARE(t[1].document, 0);
    QCOMPARE(t[1].first_page, 1);
    QCOMPARE(t[2].document, 0);  // the closest name before it is guide.pdf
  }

  // ---- tokens and budget --------------------------------------------------------------------

  void budget_and_truncation() {
    const std::string tok_path = folio::test::source_dir() + "/resources/models/stories260K/tok512.bin";
    FOLIO_REQUIRE_FILE(tok_path);
    auto tokenizer = tok512();
    TokenCounter counter(*tokenizer);

    QStringList pages;
    for (int p = 0; p < 12; ++p) {
      QStringList lines;
      for (int l = 0; l < 10; ++l)
        lines << QString("Page %1 line %2: the little dog ran to the park to play with the ball.").arg(p + 1).arg(l + 1);
      pages << lines.join('\n');
    }
    const QString pdf_path = tmp_.filePath("book.pdf");
    write_file(pdf_path, make_pdf(pages));
    const Document book = load_pdf(pdf_path);
    QCOMPARE(book.sections.size(), 12);
    const QString root = tmp_.filePath("budget_tree");
    write_file(root + "/a.cpp", numbered_lines(500, "int value =").join('\n').toUtf8());
    write_file(root + "/b.py", numbered_lines(60, "x =").join('\n').toUtf8());
    const Document tree = load_source_tree(root);
    QVERIFY(!book.truncated());
    QVERIFY(!tree.truncated());

    const int64_t book_tokens = counter.count(book);
    const int64_t tree_tokens = counter.count(tree);
    QCOMPARE(book_tokens, counter.count_text(layout_document(book)));
    QCOMPARE(counter.encodes(), int64_t{2});
    QCOMPARE(counter.count(book), book_tokens);  // cached
    QCOMPARE(counter.encodes(), int64_t{2});
    qInfo("book %lld tokens, tree %lld tokens", static_cast<long long>(book_tokens), static_cast<long long>(tree_tokens));

    const QVector<Document> docs = {book, tree};
    const int64_t whole = counter.count_text(layout_documents(docs));
    Budget fit = plan_budget(docs, counter, whole + 1000, 1000);
    QVERIFY(fit.fits);
    QCOMPARE(fit.document_tokens, QVector<int64_t>({book_tokens, tree_tokens}));
    QVERIFY2(std::abs(fit.total_tokens - whole) <= 4,
             qPrintable(QString("budget %1, actual %2").arg(fit.total_tokens).arg(whole)));
    QVERIFY(fit.truncations.isEmpty() && fit.drop_any_one.isEmpty());
    qInfo("%s", qPrintable(fit.summary));

    // Half of the book too much: dropping either document or keeping half of the book fits.
    const int64_t reserve = 1000;
    const int64_t context = fit.total_tokens - book_tokens / 2 + reserve;
    Budget over = plan_budget(docs, counter, context, reserve);
    qInfo("%s", qPrintable(over.summary));
    QVERIFY(!over.fits);
    QCOMPARE(over.over_by, book_tokens / 2);
    QCOMPARE(over.drop_any_one, QVector<int>({0, 1}));
    QCOMPARE(over.drop_largest, QVector<int>({tree_tokens >= book_tokens ? 1 : 0}));
    QCOMPARE(over.truncations.size(), 2);
    const TruncationOption option = over.truncations.front();
    QCOMPARE(option.document, 0);
    QCOMPARE(option.keep_tokens, book_tokens - over.over_by);
    qInfo("option: %s", qPrintable(option.description));

    // The explicit truncation of the book to the option's size.
    const Document cut = truncate_document(book, option.keep_tokens, counter);
    QVERIFY(cut.truncated());
    const QString laid = layout_document(cut);
    const int64_t cut_tokens = counter.count_text(laid);
    qInfo("kept %lld of %lld tokens: %s", static_cast<long long>(cut_tokens), static_cast<long long>(option.keep_tokens),
          qPrintable(cut.truncation_notice));
    QVERIFY(cut_tokens <= option.keep_tokens);
    QVERIFY(cut_tokens >= option.keep_tokens - 40);
    QVERIFY(laid.contains("[... truncated by the user: the rest of book.pdf ("));
    QVERIFY(laid.endsWith(cut.truncation_notice + "\n\n[end of document: book.pdf]"));
    QVERIFY(cut.notices.last().contains("truncated by the user"));
    QVERIFY(cut.notices.last().contains("book.pdf"));
    // What is kept is the start of the original, in order.
    const QString original = layout_document(book);
    const QString kept = laid.left(laid.indexOf("\n\n[... truncated"));
    QVERIFY(original.startsWith(kept.left(kept.lastIndexOf(' '))));
    QVERIFY(plan_budget({cut, tree}, counter, context, reserve).fits);

    // Truncating at a section boundary names the pages left out as a range.
    Document two_pages = book;
    two_pages.sections.resize(2);
    two_pages.truncation_notice = "[... truncated by the user: the rest of book.pdf (pages 3-12) is not included ...]";
    const int64_t two_tokens = counter.count_text(layout_document(two_pages));
    const Document at_boundary = truncate_document(book, two_tokens, counter);
    QCOMPARE(at_boundary.sections.size(), 2);
    QCOMPARE(at_boundary.sections[1].text, book.sections[1].text);
    QCOMPARE(at_boundary.truncation_notice, two_pages.truncation_notice);
    QCOMPARE(layout_document(at_boundary), layout_document(two_pages));

    // Files: cut at a line, the notice names the file, the line and the files after it.
    const Document tree_cut = truncate_document(tree, tree_tokens / 3, counter);
    qInfo("%s", qPrintable(tree_cut.truncation_notice));
    QVERIFY(counter.count_text(layout_document(tree_cut)) <= tree_tokens / 3);
    QVERIFY(tree_cut.truncation_notice.contains("the rest of budget_tree (a.cpp lines "));
    QVERIFY(tree_cut.truncation_notice.contains("and the file after it, b.py)"));
    const Section& last = tree_cut.sections.last();
    QCOMPARE(last.file, QString("a.cpp"));
    QCOMPARE(last.text.count('\n') + 1, last.last_line - last.first_line + 1);
    QCOMPARE(last.text.section('\n', -1), QString("int value = line %1").arg(last.last_line));

    // Too small to hold even the heading and the notice: a clear error, nothing cut.
    const QString msg = expect_error([&] { truncate_document(book, 10, counter); }, DocumentProblem::TooLarge, "book.pdf");
    QVERIFY2(msg.contains("cannot keep only 10 tokens"), qPrintable(msg));
    // A document that fits comes back as it is.
    QVERIFY(!truncate_document(book, book_tokens, counter).truncated());
  }

  // A document's count kept in a persistent cache (the app: its SQLite store) is found by a new
  // counter (as after a restart): the document is not encoded again; another tokenizer's is not used.
  void token_counts_survive_a_new_counter() {
    const std::string tok_path = folio::test::source_dir() + "/resources/models/stories260K/tok512.bin";
    FOLIO_REQUIRE_FILE(tok_path);
    auto tokenizer = tok512();
    struct MapCache : folio::chat::TokenCountCache {
      std::map<std::string, int64_t> saved;
      int flushes = 0;
      int64_t find(const std::string& key) override {
        auto it = saved.find(key);
        return it == saved.end() ? -1 : it->second;
      }
      void put(const std::string& key, int64_t tokens) override { saved[key] = tokens; }
      void flush() override { ++flushes; }
    } cache;
    const QString path = tmp_.filePath("kept.pdf");
    write_file(path, make_pdf({"The little dog ran to the park.", "It played with the ball all day."}));
    const Document doc = load_pdf(path);
    TokenCounter first(*tokenizer);
    first.set_persistent_cache(&cache, "tok512");
    const int64_t n = first.count(doc);
    QVERIFY(n > 0);
    QCOMPARE(first.encodes(), qint64(1));
    QCOMPARE(cache.saved.size(), size_t{1});
    QVERIFY(cache.flushes >= 1);
    TokenCounter again(*tokenizer);
    again.set_persistent_cache(&cache, "tok512");
    QCOMPARE(again.count(doc), n);
    QCOMPARE(again.encodes(), qint64(0));
    TokenCounter other(*tokenizer);
    other.set_persistent_cache(&cache, "another tokenizer");
    QCOMPARE(other.count(doc), n);
    QCOMPARE(other.encodes(), qint64(1));
  }

  // The fit dialog's "some pages of a PDF / some files of a folder": only those sections go into the
  // prompt, the layout ends with a notice of what the user left out, and the panel's description.
  void select_parts_keeps_the_chosen_pages_or_files() {
    const QString pdf_path = tmp_.filePath("parts.pdf");
    QStringList pages;
    for (int p = 1; p <= 6; ++p) pages << QString("Text of page %1.").arg(p);
    write_file(pdf_path, make_pdf(pages));
    const Document book = load_pdf(pdf_path);
    PartSelection pages_2_4;
    pages_2_4.first_page = 1;
    pages_2_4.last_page = 3;
    QCOMPARE(pages_2_4.describe(book), QString("pages 2-4 of 6"));
    const Document part = select_parts(book, pages_2_4);
    QCOMPARE(part.sections.size(), 3);
    QCOMPARE(part.sections.front().page_index, 1);
    QCOMPARE(part.sections.back().page_index, 3);
    const QString laid = layout_document(part);
    QVERIFY(laid.contains("[p. 2]\nText of page 2.") && laid.contains("[p. 4]\nText of page 4."));
    QVERIFY(!laid.contains("Text of page 1.") && !laid.contains("Text of page 5."));
    QVERIFY2(laid.endsWith("[... left out by the user: page 1 and pages 5-6 of parts.pdf ...]\n\n"
                           "[end of document: parts.pdf]"),
             qPrintable(laid));
    QVERIFY(part.notices.join('\n').contains("only pages 2-4 of 6 is used"));
    // The whole range, or no selection: the document unchanged.
    QVERIFY(!select_parts(book, PartSelection{}).truncated());
    PartSelection all;
    all.first_page = 0;
    all.last_page = 5;
    QVERIFY(!select_parts(book, all).truncated());
    QCOMPARE(select_parts(book, all).sections.size(), 6);

    const QString root = tmp_.filePath("parts_tree");
    write_file(root + "/a.cpp", "int a = 1;\n");
    write_file(root + "/b.cpp", "int b = 2;\n");
    write_file(root + "/docs/c.md", "# C\n");
    const Document tree = load_source_tree(root);
    QCOMPARE(tree.files.size(), 3);
    PartSelection two;
    two.files = {"a.cpp", "docs/c.md"};
    QCOMPARE(two.describe(tree), QString("2 of 3 files"));
    const Document chosen = select_parts(tree, two);
    const QString tree_text = layout_document(chosen);
    QVERIFY(tree_text.contains("int a = 1;") && tree_text.contains("# C") && !tree_text.contains("int b = 2;"));
    QVERIFY2(tree_text.contains("[... left out by the user: b.cpp of parts_tree ...]"), qPrintable(tree_text));
    // Nothing chosen that holds text: a clear error, nothing sent.
    PartSelection none;
    none.files = {"missing.cpp"};
    const QString msg = expect_error([&] { select_parts(tree, none); }, DocumentProblem::Empty, "parts_tree");
    QVERIFY2(msg.contains("holds no text"), qPrintable(msg));
  }
};

QTEST_MAIN(DocsTest)
#include "tst_docs.moc"
