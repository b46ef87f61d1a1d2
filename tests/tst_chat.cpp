// The document-chat request (core/chat): folio-cli --ask sends byte for byte the prompt the app's
// path builds (core/docs loader -> the Conversation service the EngineWorker drives), for a plain
// model (stories260K) and a chat model (SmolLM2, skipped when it is not in the cache); folio-cli's
// text reader sections a file exactly as the app's loader does; the service keeps the history,
// reuses the documents' KV prefix, regenerates in place, reports a prompt that does not fit
// instead of cutting it, and hands each answered turn to its recorder.
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/chat/chat_document.h"
#include "core/chat/context_packing.h"
#include "core/chat/conversation.h"
#include "core/chat/grounding.h"
#include "core/chat/kv_store.h"
#include "core/chat/prompt_layout.h"
#include "core/docs/ingest.h"
#include "core/docs/prompt_layout.h"
#include "tests/test_support.h"

namespace {

std::string stories_path() {
  return folio::test::source_dir() + "/resources/models/stories260K/stories260K.bin";
}
std::string demo_path() {
  return folio::test::source_dir() + "/resources/demo/halcyon-h40-manual.md";
}

using folio::test::smollm2_path;

std::unique_ptr<folio::Engine> load(const std::string& model) {
  folio::EngineOptions o;
  o.model_path = model;
  o.threads = 2;
  return folio::Engine::load(o);
}

struct CliRun {
  int code = -1;
  QByteArray out, err;
};

CliRun run_cli(const QStringList& args) {
  QProcess p;
  p.start(QString::fromStdString(folio::test::bin_dir() + "/folio-cli"), args);
  CliRun r;
  if (!p.waitForStarted(30000) || !p.waitForFinished(120000)) return r;
  r.code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
  r.out = p.readAllStandardOutput();
  r.err = p.readAllStandardError();
  return r;
}

bool write_bytes(const QString& path, const QByteArray& bytes) {
  QFile f(path);
  return f.open(QIODevice::WriteOnly | QIODevice::Truncate) && f.write(bytes) == bytes.size();
}

class CountingRecorder : public folio::chat::Recorder {
 public:
  std::vector<folio::chat::TurnRecord> turns;
  int new_conversations = 0;
  void record_turn(const folio::chat::TurnRecord& t) override { turns.push_back(t); }
  void new_conversation() override { ++new_conversations; }
};

}  // namespace

class TstChat : public QObject {
  Q_OBJECT
  QTemporaryDir tmp_;

 private slots:
  void cli_prompt_is_the_apps_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("format");
    QTest::newRow("plain model (stories260K)") << QString::fromStdString(stories_path()) << "plain";
    QTest::newRow("chat model (SmolLM2)") << QString::fromStdString(smollm2_path()) << "smollm2";
  }

  void cli_prompt_is_the_apps() {
    QFETCH(QString, model);
    QFETCH(QString, format);
    if (!std::filesystem::exists(model.toStdString()))
      QSKIP(qPrintable(model + " is not there; run python3 tools/fetch_model.py"));
    FOLIO_REQUIRE_FILE(demo_path());
    const QString question = "How long can the display run on its backup battery?";

    // The app: core/docs reads the file, the worker hands it to the Conversation service.
    const folio::docs::Document doc = folio::docs::load_document(QString::fromStdString(demo_path()));
    auto engine = load(model.toStdString());
    folio::chat::Conversation app(*engine);
    QCOMPARE(QString::fromLatin1(folio::chat_format_name(app.format())), format);
    app.set_documents({folio::docs::chat_document(doc)});
    const folio::chat::Prompt expected = app.prompt(question.toStdString());

    // A context that holds the whole document (stories260K's own 512 do not), so both send it whole.
    const CliRun r = run_cli({"--model", model, "--file", QString::fromStdString(demo_path()), "--ask", question,
                              "--ctx", "8192", "--print-prompt"});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(r.out, QByteArray::fromStdString(expected.text));
    QVERIFY2(r.err.contains(QByteArray::number(qint64(expected.tokens.size())) + " tokens"), r.err.constData());
    // The prompt carries the whole document in its sections, and the question last.
    QVERIFY(r.out.contains("[document: halcyon-h40-manual.md]"));
    QVERIFY(r.out.contains("[end of document: halcyon-h40-manual.md]"));
    QVERIFY(r.out.contains(question.toUtf8()));
    QCOMPARE(r.out.contains("cite the source"), format != "plain");  // base models get no instruction
  }

  // Larger than the context: folio-cli --fit relevant packs a PDF into the same prompt as the app
  // (the same loader, the same Conversation::fitted_prompt, the same budget), byte for byte.
  void cli_packed_prompt_is_the_apps() {
    FOLIO_REQUIRE_FILE(stories_path());
    QStringList pages;
    for (int p = 1; p <= 30; ++p)
      pages << (p == 17 ? QString("The garden gate squeaks because its hinge lost a screw in the storm.")
                        : QString("Page %1: the dog ran to the park, and Lily played with her ball in the sun.").arg(p));
    const QString pdf = tmp_.filePath("packed.pdf");
    QVERIFY(write_bytes(pdf, folio::test::make_pdf(pages)));
    const QString question = "Why does the garden gate squeak?";

    const folio::docs::Document doc = folio::docs::load_document(pdf);
    auto engine = load(stories_path());
    folio::chat::Conversation app(*engine);
    app.set_documents({folio::docs::chat_document(doc)});
    folio::chat::AskOptions o;
    o.context_tokens = 512;
    o.generate.max_tokens = 32;
    o.fit = folio::chat::FitMode::Relevant;
    folio::chat::FitCheck fit;
    std::string packing;
    const folio::chat::Prompt expected = app.fitted_prompt(question.toStdString(), o, fit, packing);
    QVERIFY(fit.fits);
    QVERIFY2(!packing.empty(), "the document must not fit whole");
    QVERIFY(expected.text.find("The garden gate squeaks") != std::string::npos);
    QVERIFY(expected.text.find("omitted]") != std::string::npos);

    const CliRun r = run_cli({"--model", QString::fromStdString(stories_path()), "--file", pdf, "--ask", question,
                              "--ctx", "512", "--max-tokens", "32", "--fit", "relevant", "--print-prompt"});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(r.out, QByteArray::fromStdString(expected.text));
  }

  void system_prompt_opens_the_system_turn_before_the_documents() {
    if (!std::filesystem::exists(smollm2_path())) QSKIP("SmolLM2 is not there; run python3 tools/fetch_model.py");
    FOLIO_REQUIRE_FILE(demo_path());
    const QString system = "You are the support desk of Halcyon Instruments. Answer in one sentence.";
    const QString question = "What does error code E-22 mean?";
    const folio::docs::Document doc = folio::docs::load_document(QString::fromStdString(demo_path()));
    auto engine = load(smollm2_path());
    folio::chat::Conversation app(*engine);
    app.set_documents({folio::docs::chat_document(doc)});
    const std::string without = app.prompt(question.toStdString()).text;
    app.set_system_prompt(system.toStdString());
    const folio::chat::Prompt expected = app.prompt(question.toStdString());

    // In the one system turn: the system prompt first, then the instruction and the documents.
    const std::string& t = expected.text;
    const size_t at_system = t.find(system.toStdString());
    const size_t at_doc = t.find("[document: halcyon-h40-manual.md]");
    QVERIFY(at_system != std::string::npos && at_doc != std::string::npos);
    QVERIFY(at_system < t.find("Answer the question using the documents below."));
    QVERIFY(at_system < at_doc);
    QCOMPARE(t.rfind("<|im_start|>system", at_system), t.find("<|im_start|>system"));
    QCOMPARE(t.find("<|im_end|>", at_system) > at_doc, true);
    QCOMPARE(t.size(), without.size() + system.size() + 2);  // + the blank line between them

    // folio-cli --system sends the same bytes as the app with that system prompt.
    const CliRun r = run_cli({"--model", QString::fromStdString(smollm2_path()), "--file",
                              QString::fromStdString(demo_path()), "--system", system, "--ask", question,
                              "--print-prompt"});
    QVERIFY2(r.code == 0, r.err.constData());
    QCOMPARE(r.out, QByteArray::fromStdString(expected.text));

    // Without documents the system prompt is the whole system turn.
    app.set_documents({});
    const std::string bare = app.prompt(question.toStdString()).text;
    QVERIFY(bare.find("<|im_start|>system\n" + system.toStdString() + "<|im_end|>") != std::string::npos);
  }

  void cli_reads_text_as_the_app_does() {
    // CRLF and CR line ends, a UTF-8 BOM, non-ASCII text, a trailing newline, 450 lines (3 sections).
    QByteArray bytes = "\xEF\xBB\xBF";
    for (int i = 1; i <= 450; ++i)
      bytes += "Zeile " + QByteArray::number(i) + " \xC3\xA4\xE2\x82\xAC" + (i % 3 ? "\r\n" : "\r");
    const QString path = tmp_.filePath("notes.md");
    QVERIFY(write_bytes(path, bytes));
    const folio::chat::Document cli = folio::chat::read_text_document(path.toStdString());
    const folio::chat::Document app = folio::docs::chat_document(folio::docs::load_text_file(path));
    QCOMPARE(cli.title, app.title);
    QCOMPARE(cli.files, app.files);
    QCOMPARE(cli.sections.size(), size_t{3});
    QCOMPARE(cli.sections.size(), app.sections.size());
    for (size_t i = 0; i < cli.sections.size(); ++i) {
      QCOMPARE(cli.sections[i].text, app.sections[i].text);
      QCOMPARE(cli.sections[i].file, app.sections[i].file);
      QCOMPARE(cli.sections[i].first_line, app.sections[i].first_line);
      QCOMPARE(cli.sections[i].last_line, app.sections[i].last_line);
    }
    QCOMPARE(cli.sections.back().last_line, 450);
    QCOMPARE(folio::chat::layout_document(cli), folio::chat::layout_document(app));
  }

  void cli_says_what_it_cannot_read_data() {
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("name");
    QTest::addColumn<QString>("phrase");
    QTest::newRow("PDF") << QByteArray("%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n") << "manual.pdf"
                         << "PDF";
    QTest::newRow("Latin-1") << QByteArray("caf\xE9 au lait\n") << "menu.txt"
                             << "UTF-8";
    QTest::newRow("UTF-16") << QByteArray("\xFF\xFEh\0i\0", 6) << "wide.txt"
                            << "UTF-8";
    QTest::newRow("binary") << (QByteArray("\x7f"
                                           "ELF",
                                           4) +
                                QByteArray(100, '\0'))
                            << "a.out"
                            << "binary";
    QTest::newRow("only white space") << QByteArray(" \n\t\n") << "blank.txt"
                                      << "white space";
  }

  // The Qt-free reader (folio-cli built without Qt) refuses what is not plain UTF-8 text; folio-cli
  // built with Qt reads through the app's loader and says exactly what the app says.
  void cli_says_what_it_cannot_read() {
    QFETCH(QByteArray, bytes);
    QFETCH(QString, name);
    QFETCH(QString, phrase);
    FOLIO_REQUIRE_FILE(stories_path());
    const QString path = tmp_.filePath(name);
    QVERIFY(write_bytes(path, bytes));
    try {
      folio::chat::read_text_document(path.toStdString());
      QFAIL("the Qt-free reader took it");
    } catch (const folio::Error& e) {
      const QString msg = QString::fromUtf8(e.what());
      QVERIFY2(msg.contains(path) && msg.contains(phrase), qPrintable(msg));
    }
    QString app_error;
    folio::docs::Document app;
    try {
      app = folio::docs::load_document(path);
    } catch (const std::exception& e) {
      app_error = QString::fromUtf8(e.what());
    }
    const CliRun r = run_cli(
        {"--model", QString::fromStdString(stories_path()), "--file", path, "--ask", "what?", "--print-prompt"});
    if (!app_error.isEmpty()) {
      QCOMPARE(r.code, 1);
      QVERIFY(r.out.isEmpty());
      QCOMPARE(QString::fromUtf8(r.err), "folio-cli: error: " + app_error + "\n");
    } else {
      QCOMPARE(r.code, 0);
      const std::string laid = folio::chat::layout_document(folio::docs::chat_document(app));
      QVERIFY2(r.out.contains(QByteArray::fromStdString(laid)), r.out.constData());
      for (const QString& n : app.notices) QVERIFY2(r.err.contains(n.toUtf8()), r.err.constData());
    }
  }

  void follow_up_reuses_the_documents_and_regenerate_replaces() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    folio::chat::Conversation c(*engine);
    CountingRecorder recorder;
    c.set_recorder(&recorder);
    folio::chat::Document doc = folio::chat::read_text_document(demo_path());
    doc.sections.resize(1);  // a short excerpt: stories260K has 512 positions and few-letter tokens
    doc.sections[0].text = doc.sections[0].text.substr(0, 200);
    c.set_documents({doc});
    folio::chat::AskOptions o;
    o.context_tokens = 512;
    o.generate.max_tokens = 12;
    o.generate.sampler.temperature = 0.0f;

    const folio::chat::Answer first = c.ask("What is the display?", o);
    QVERIFY(first.fit.fits);
    QCOMPARE(first.result.metrics.reused_tokens, int64_t{0});
    QCOMPARE(c.history().size(), size_t{2});
    QCOMPARE(c.history()[1].text, first.result.text);

    // The follow-up's prompt holds the first turn, and its prefix (the documents) comes from the cache.
    const folio::chat::Prompt next = c.prompt("And the battery?");
    QVERIFY(next.text.find("What is the display?") != std::string::npos);
    QVERIFY(next.text.find(first.result.text) != std::string::npos);
    const folio::chat::Answer second = c.ask("And the battery?", o);
    QVERIFY(second.fit.fits);
    QVERIFY(second.result.metrics.reused_tokens > 0);
    QCOMPARE(c.history().size(), size_t{4});

    const folio::chat::Answer again = c.regenerate(o);
    QCOMPARE(again.question, std::string("And the battery?"));
    QCOMPARE(c.history().size(), size_t{4});
    QCOMPARE(c.history()[2].text, std::string("And the battery?"));
    QVERIFY(again.result.metrics.reused_tokens > 0);

    // Every answered turn went to the recorder with the engine's metrics and its documents.
    QCOMPARE(recorder.turns.size(), size_t{3});
    QCOMPARE(recorder.turns[1].question, std::string("And the battery?"));
    QCOMPARE(recorder.turns[1].metrics.prompt_tokens, second.result.metrics.prompt_tokens);
    QCOMPARE(recorder.turns[1].document_tokens.size(), size_t{1});
    QVERIFY(recorder.turns[1].document_tokens[0] > 0);

    c.reset();
    QVERIFY(c.history().empty());
    QCOMPARE(recorder.new_conversations, 1);
  }


  // Documents larger than the context: the sections that hold the question's words go in, in
  // document order, and every gap is marked; Beginning keeps the first sections.
  void packing_keeps_what_the_question_needs() {
    using folio::chat::FitMode;
    folio::chat::Document doc;
    doc.title = "manual.pdf";
    doc.kind = folio::chat::DocumentKind::Pdf;
    doc.page_count = 30;
    for (int p = 0; p < 30; ++p) {
      folio::chat::Section s;
      s.page_index = p;
      s.text = "General notes about installation, wiring and cleaning of the unit, page " + std::to_string(p + 1) + ".";
      if (p == 17) s.text += " The outdoor sensor battery lasts about fourteen months.";
      doc.sections.push_back(s);
    }
    auto count = [](const std::string& t) { return static_cast<int64_t>(t.size() / 4 + 1); };
    const int64_t whole = count(folio::chat::layout_document(doc));
    const folio::chat::PackResult r =
        folio::chat::pack_documents({doc}, "How long does the outdoor sensor battery last?", whole / 3, FitMode::Relevant, count);
    QVERIFY(r.kept_sections > 0 && r.kept_sections < 30);
    QVERIFY(r.estimated_tokens <= whole / 3);
    const std::string text = folio::chat::layout_documents(r.docs);
    QVERIFY2(text.find("fourteen months") != std::string::npos, text.c_str());
    QVERIFY2(text.find("[p. 1]") != std::string::npos, "the first page leads");
    QVERIFY2(text.find("omitted]") != std::string::npos, text.c_str());
    QVERIFY(count(text) <= whole / 3 + 8);
    // document order, each kept page once
    int last = -1;
    for (const auto& s : r.docs[0].sections) {
      if (!s.note.empty()) continue;
      QVERIFY(s.page_index > last);
      last = s.page_index;
    }
    // Beginning: the first pages in order, then one marker for the rest
    const folio::chat::PackResult b =
        folio::chat::pack_documents({doc}, "How long does the battery last?", whole / 3, FitMode::Beginning, count);
    QCOMPARE(b.docs[0].sections.front().page_index, 0);
    QVERIFY(b.docs[0].sections.back().note.rfind("[pages ", 0) == 0);
    QVERIFY(b.docs[0].sections.back().note.find("-30 omitted]") != std::string::npos);
    // it all fits: unchanged
    const folio::chat::PackResult all = folio::chat::pack_documents({doc}, "battery", whole * 2, FitMode::Relevant, count);
    QCOMPARE(all.kept_sections, int64_t{30});
    QCOMPARE(folio::chat::layout_documents(all.docs), folio::chat::layout_document(doc));
    QVERIFY_THROWS_EXCEPTION(folio::Error, folio::chat::fit_mode_from_name("squeeze"));
  }

  // Words as the ranking counts them: plurals meet their singular, identifiers count whole and as
  // their parts, so questions in plain words find code.
  void index_terms_meet_code_and_plurals() {
    using folio::chat::index_terms;
    const std::vector<std::string> words = index_terms("QString join_ranges(const QVector<int>& sortedNumbers) rows");
    auto has = [&](const char* w) { return std::find(words.begin(), words.end(), w) != words.end(); };
    QVERIFY(has("join_range") && has("join") && has("range"));  // "ranges" -> "range"
    QVERIFY(has("sortednumber") && has("sorted") && has("number"));
    QVERIFY(has("row") && !has("rows"));
    const std::vector<std::string> kept = index_terms("class status analysis bodies");
    QCOMPARE(kept, (std::vector<std::string>{"class", "status", "analysis", "body"}));
  }

  // A section whose words cover the question outranks one that repeats a single common word, the
  // file path counts, and packing from a built index gives what packing the documents gives.
  void ranking_covers_the_question_and_the_index_is_reused() {
    using folio::chat::FitMode;
    folio::chat::Document tree;
    tree.title = "src";
    tree.kind = folio::chat::DocumentKind::SourceTree;
    auto add = [&](const std::string& file, const std::string& text) {
      folio::chat::Section s;
      s.file = file;
      s.first_line = 1;
      s.last_line = 1;
      s.text = text;
      tree.sections.push_back(s);
      tree.files.push_back(file);
    };
    for (int i = 0; i < 20; ++i)
      add("noise" + std::to_string(i) + ".cpp",
          "int function_" + std::to_string(i) + "() { return 0; }  // filler text");
    add("repeats.cpp", "function function function function function function matrix");
    add("apply.cpp", "Apply a function over the rows or columns of a matrix.");
    add("memory_plan.cpp", "int64_t largest(const Config& c) { return c.kv / 2; }");
    const folio::chat::SectionIndex bm25({tree});
    const std::vector<double> s = bm25.scores("apply a function to each row or column of a matrix");
    QVERIFY2(s[21] > s[20], "covering every word beats repeating one");
    const std::vector<double> p = bm25.scores("how is the memory plan made?");
    QVERIFY2(p[22] > 0.0 && std::max_element(p.begin(), p.end()) - p.begin() == 22, "the path names the file");

    auto count = [](const std::string& t) { return static_cast<int64_t>(t.size() / 4 + 1); };
    const folio::chat::PackingIndex index({tree}, count);
    QCOMPARE(index.unit_count(), tree.sections.size());
    const int64_t budget = index.total_tokens() / 3;
    for (const char* q : {"apply a function to each row", "memory plan", "filler"}) {
      const folio::chat::PackResult a = folio::chat::pack_documents(index, q, budget, FitMode::Relevant);
      const folio::chat::PackResult b = folio::chat::pack_documents({tree}, q, budget, FitMode::Relevant, count);
      QCOMPARE(folio::chat::layout_documents(a.docs), folio::chat::layout_documents(b.docs));
      QVERIFY(a.estimated_tokens <= budget);
    }
  }

  // Grounded answers: the right answers to the demo questions find their section of the manual
  // (the lines, and a quote that holds the answer); the question completes a short answer; a
  // statement the manual does not hold finds nothing; citations do not count as words.
  void grounding_finds_the_demo_answers() {
    const folio::chat::Document manual = folio::chat::read_text_document(demo_path());
    const folio::chat::GroundingIndex index({manual});
    QVERIFY(index.passage_count() >= 15);  // its paragraphs, headings kept with their text
    struct Case {
      const char* question;
      const char* answer;
      int first, last;    // the lines of the manual's section that answers it
      const char* quote;  // what the quote must hold
    };
    const Case cases[] = {
        {"How long do the batteries in the outdoor sensor last?",
         "The batteries in the outdoor sensor last about 14 months with the default reporting interval.", 60, 71,
         "14 months"},
        {"How long do the batteries in the outdoor sensor last?", "About 14 months.", 60, 71, "14 months"},
        {"How long is the warranty?", "The H-40 comes with a 3-year warranty from the date of purchase (p. 12).", 112,
         125, "3-year warranty"},
        {"At what time are firmware updates installed?",
         "Firmware updates are installed at 03:00 when the display is on mains power.", 83, 92, "03:00"},
    };
    for (const Case& c : cases) {
      const std::vector<folio::chat::SourcePassage> sources = index.ground(c.answer, c.question);
      QVERIFY2(!sources.empty(), c.answer);
      const folio::chat::SourcePassage& top = sources.front();
      const std::string where = folio::chat::source_location(manual, top);
      qInfo("%s -> %s \"%s\" (support %.2f)", c.answer, where.c_str(), top.quote.c_str(), top.support);
      QCOMPARE(top.file, std::string("halcyon-h40-manual.md"));
      QVERIFY2(top.first_line >= c.first && top.last_line <= c.last && top.first_line <= top.last_line, where.c_str());
      QVERIFY2(top.quote.find(c.quote) != std::string::npos, top.quote.c_str());
      QVERIFY(top.support >= 0.5 && top.support <= 1.0);
      QCOMPARE(top.statements, std::vector<int>{0});
    }
    // Two statements, two sections, each source says which statement it supports.
    const std::vector<folio::chat::SourcePassage> both = index.ground(
        "The sensor cells last about 14 months. The warranty covers the display for three years from the date of "
        "purchase.",
        "Tell me about batteries and warranty.");
    QCOMPARE(both.size(), size_t{2});
    std::vector<int> statements;
    for (const auto& s : both) statements.push_back(s.statements.front());
    std::sort(statements.begin(), statements.end());
    QCOMPARE(statements, (std::vector<int>{0, 1}));
    // Not in the manual: no source, even though the question's words are.
    QVERIFY(index.ground("Penguins hunt krill beneath the Antarctic ice shelf.", "How long do the batteries last?")
                .empty());
    QVERIFY(index.ground("Yes.", "Is there a warranty?").empty());
  }

  void answer_statements_split_sentences_and_items() {
    using folio::chat::answer_statements;
    QCOMPARE(answer_statements("It lasts 14 months (p. 12). Change all cells, e.g. in spring. Version 2.3.1 fixed it!"),
             (std::vector<std::string>{"It lasts 14 months.", "Change all cells, e.g. in spring.",
                                       "Version 2.3.1 fixed it!"}));
    QCOMPARE(answer_statements("Steps:\n1. Open **Settings**.\n- Press `Reset` (src/ui.cpp:40-58)\n\n> Done"),
             (std::vector<std::string>{"Steps:", "Open Settings.", "Press Reset", "Done"}));
  }

  // Planted facts in the R reference manual's text (2,415 pages): each answer finds the page its
  // fact was planted on, and answers in the manual's own words find their topic's page.
  void grounding_finds_planted_facts_in_the_r_manual() {
    const std::string pdf = "/usr/share/R/doc/manual/fullrefman.pdf";
    FOLIO_REQUIRE_FILE(pdf);
    folio::chat::Document manual = folio::docs::chat_document(folio::docs::load_pdf(QString::fromStdString(pdf)));
    if (manual.page_count != 2415)
      QSKIP("another edition of the R manual (the pages differ); r-doc-pdf 4.2.2 has 2,415");
    struct Planted {
      int page;  // 1-based
      const char* fact;
      const char* answer;
    };
    const Planted planted[] = {
        {312, "The quokka tolerance of the zephyr smoother defaults to 0.0371 in every release.",
         "The zephyr smoother uses a quokka tolerance of 0.0371 by default."},
        {1377, "Marmalade frames are flushed to the heliotrope cache every 45 seconds.",
         "Marmalade frames go to the heliotrope cache every 45 seconds."},
        {2203, "Set the option tangerine.depth to 9 to let the walrus parser read nested brackets.",
         "To let the walrus parser read nested brackets, set tangerine.depth to 9."},
    };
    for (const Planted& p : planted) {
      auto it = std::find_if(manual.sections.begin(), manual.sections.end(),
                             [&](const folio::chat::Section& s) { return s.page_index == p.page - 1; });
      QVERIFY(it != manual.sections.end());
      it->text += "\n" + std::string(p.fact);
    }
    QElapsedTimer timer;
    timer.start();
    const folio::chat::GroundingIndex index({manual});
    const qint64 index_ms = timer.elapsed();
    timer.restart();
    for (const Planted& p : planted) {
      const auto sources = index.ground(p.answer, "What does the manual say?");
      QVERIFY2(!sources.empty(), p.answer);
      qInfo("%s -> %s", p.answer, folio::chat::source_location(manual, sources.front()).c_str());
      QCOMPARE(sources.front().page_index, p.page - 1);
      QVERIFY2(sources.front().quote.find(std::string(p.fact).substr(0, 20)) != std::string::npos,
               sources.front().quote.c_str());
    }
    // The manual's own topics (pages from tests/data/retrieval-rmanual.tsv).
    const std::pair<int, const char*> topics[] = {
        {1654,
         "lm is used to fit linear models, including multivariate ones, and can carry out regression and "
         "analysis of covariance."},
        {1641, "kmeans performs k-means clustering on a data matrix."},
    };
    for (const auto& [page, answer] : topics) {
      const auto sources = index.ground(answer, "");
      QVERIFY2(!sources.empty(), answer);
      qInfo("%s -> %s", answer, folio::chat::source_location(manual, sources.front()).c_str());
      QCOMPARE(sources.front().page_index, page - 1);
      // cited by the page's printed label, as the prompt marks it
      const auto& section = manual.sections[sources.front().section];
      QCOMPARE(section.page_index, page - 1);
      QCOMPARE(folio::chat::source_location(manual, sources.front()),
               "fullrefman.pdf, p. " + folio::chat::citation_label(manual, section));
    }
    // Reported, not asserted: what grounding costs on 2,415 pages.
    qInfo("R manual: %zu passages indexed in %lld ms; 5 answers grounded in %lld ms", index.passage_count(),
          static_cast<long long>(index_ms), static_cast<long long>(timer.elapsed()));
  }

  // Through the Conversation and folio-cli (default --fit relevant): a document larger than the
  // context is packed to fit, said so, and the prompt is the same in both.
  void a_large_document_is_packed_to_fit() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    folio::chat::Conversation c(*engine);
    c.set_documents({folio::chat::read_text_document(demo_path(), 10)});
    folio::chat::AskOptions o;
    o.context_tokens = 384;
    o.generate.max_tokens = 16;
    o.fit = folio::chat::FitMode::Relevant;
    folio::chat::FitCheck fit;
    std::string packing;
    const folio::chat::Prompt p = c.fitted_prompt("What is the display?", o, fit, packing);
    QVERIFY(fit.fits);
    QVERIFY(!packing.empty());
    QVERIFY(static_cast<int64_t>(p.tokens.size()) + 16 <= 384);
    QVERIFY2(p.text.find("omitted") != std::string::npos, p.text.c_str());
    const folio::chat::Answer a = c.ask("What is the display?", o);
    QVERIFY(a.fit.fits);
    QCOMPARE(a.packing, packing);
    QVERIFY(a.result.metrics.prompt_tokens + 16 <= 384);
  }

  // A follow-up whose question needs the sections the last packing holds keeps that packing: the
  // prompt starts with the same bytes (documents included), so the session reuses their KV; a
  // question about another part of the document packs again.
  void a_follow_up_keeps_the_packing_when_it_needs_the_same_sections() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    // 60 lines of notes in sections of 4 lines, two facts among them: about 4x stories260K's context.
    QTemporaryDir dir;
    const QString path = dir.filePath("notes.txt");
    QByteArray text;
    for (int line = 1; line <= 60; ++line) {
      if (line == 23)
        text += "The outdoor sensor battery lasts about fourteen months.\n";
      else if (line == 47)
        text += "Firmware updates are installed at three in the morning.\n";
      else
        text += "Line " + QByteArray::number(line) + ": general notes on mounting and wiring the unit.\n";
    }
    QVERIFY(write_bytes(path, text));
    folio::chat::Conversation c(*engine);
    c.set_documents({folio::chat::read_text_document(path.toStdString(), 4)});
    folio::chat::AskOptions o;
    o.context_tokens = 512;
    o.generate.max_tokens = 8;
    o.generate.sampler.temperature = 0.0f;
    o.fit = folio::chat::FitMode::Relevant;
    const folio::chat::Answer first = c.ask("How long does the outdoor sensor battery last?", o);
    QVERIFY(first.fit.fits);
    QVERIFY(!first.packing.empty());
    QVERIFY(first.repacked);
    QCOMPARE(first.used.size(), size_t{1});
    QVERIFY2(first.used[0].rfind("lines ", 0) == 0, first.used[0].c_str());
    const std::vector<folio::chat::Document> packed = c.last_packing()->docs;
    const std::string layout = folio::chat::layout_documents(packed);
    QVERIFY2(layout.find("fourteen months") != std::string::npos, layout.c_str());
    QVERIFY2(layout.find("three in the morning") == std::string::npos, layout.c_str());

    // The same sections: the same documents in the prompt, their tokens reused.
    folio::chat::FitCheck fit;
    std::string packing;
    const folio::chat::Prompt next = c.fitted_prompt("Which battery does the outdoor sensor use?", o, fit, packing);
    QVERIFY(fit.fits);
    QVERIFY(!c.last_packing()->repacked);
    QCOMPARE(folio::chat::layout_documents(c.last_packing()->docs), layout);
    QVERIFY(next.text.find(layout) != std::string::npos);
    const folio::chat::Answer second = c.ask("Which battery does the outdoor sensor use?", o);
    QVERIFY(second.fit.fits);
    QVERIFY(!second.repacked);
    QCOMPARE(second.used, first.used);
    QCOMPARE(second.packing, first.packing);
    // Everything up to the end of the first answer is the same prompt: its KV is reused.
    QVERIFY2(second.result.metrics.reused_tokens >= first.result.metrics.prompt_tokens,
             qPrintable(QString("reused %1 of the first prompt's %2")
                            .arg(second.result.metrics.reused_tokens)
                            .arg(first.result.metrics.prompt_tokens)));

    // Another part of the manual: packed again, the prefix differs.
    const folio::chat::Answer third = c.ask("At what time are firmware updates installed?", o);
    qInfo("first: %s (%s); follow-up: reused %lld of %lld tokens; other question: %s", first.packing.c_str(),
          first.used[0].c_str(), static_cast<long long>(second.result.metrics.reused_tokens),
          static_cast<long long>(second.result.metrics.prompt_tokens), third.used[0].c_str());
    QVERIFY(third.fit.fits);
    QVERIFY(third.repacked);
    const std::string other = folio::chat::layout_documents(c.last_packing()->docs);
    QVERIFY(other != layout);
    QVERIFY2(other.find("three in the morning") != std::string::npos, other.c_str());
    QVERIFY(third.result.metrics.reused_tokens < first.result.metrics.prompt_tokens);
  }

  // A follow-up reuses the previous answer's KV too (it is not encoded again): with the default chat
  // model, everything up to the end of the answer is reused, at most the end-of-turn marker is new.
  void a_follow_up_reuses_the_previous_answer() {
    if (!folio::test::exists(smollm2_path())) QSKIP("SmolLM2-135M-Instruct is not in the cache (tools/fetch_model.py)");
    auto engine = load(smollm2_path());
    folio::chat::Conversation c(*engine);
    c.set_documents({folio::chat::read_text_document(demo_path())});
    folio::chat::AskOptions o;
    o.context_tokens = 4096;
    o.generate.max_tokens = 40;
    const folio::chat::Answer a = c.ask("How long do the batteries in the outdoor sensor last?", o);
    const folio::chat::Answer b = c.ask("And with the fast interval?", o);
    const int64_t before = a.result.metrics.prompt_tokens + a.result.metrics.decode_tokens;
    qInfo("first: %lld prompt + %lld answer tokens (%s); follow-up: %lld of %lld reused",
          static_cast<long long>(a.result.metrics.prompt_tokens),
          static_cast<long long>(a.result.metrics.decode_tokens), folio::stop_reason_name(a.result.metrics.stop),
          static_cast<long long>(b.result.metrics.reused_tokens),
          static_cast<long long>(b.result.metrics.prompt_tokens));
    QVERIFY2(b.result.metrics.reused_tokens >= before - 1,
             qPrintable(QString("reused %1 of the %2 tokens before the follow-up")
                            .arg(b.result.metrics.reused_tokens)
                            .arg(before)));
  }

  // Adding a document keeps the prompt before it: the instruction that opens the system turn is made
  // from the first document only (what later ones add is said after them), so the tokens up to the
  // end of the documents already there stay the same, and their KV is reused instead of prefilled.
  // (Before, a second PDF changed the instruction ahead of the documents: 40 tokens in common.)
  void adding_a_document_keeps_the_earlier_prefix_data() {
    QTest::addColumn<QString>("first");
    QTest::addColumn<QString>("added");
    QTest::newRow("PDF + PDF") << "a.pdf"
                               << "b.pdf";
    QTest::newRow("PDF + folder") << "a.pdf"
                                  << "tree";
    QTest::newRow("folder + PDF") << "tree"
                                  << "a.pdf";
    QTest::newRow("text + PDF + PDF") << "notes.md"
                                      << "a.pdf,b.pdf";
    QTest::newRow("text + text") << "notes.md"
                                 << "more.md";
  }

  void adding_a_document_keeps_the_earlier_prefix() {
    QFETCH(QString, first);
    QFETCH(QString, added);
    if (!folio::test::exists(smollm2_path())) QSKIP("SmolLM2-135M-Instruct is not in the cache (tools/fetch_model.py)");
    const QString dir = tmp_.filePath("prefix");
    QDir().mkpath(dir + "/tree/src");
    QVERIFY(write_bytes(dir + "/a.pdf", folio::test::make_pdf({"The pump runs at 40 litres a minute.",
                                                               "Clean the filter every 3 months."})));
    QVERIFY(write_bytes(dir + "/b.pdf", folio::test::make_pdf({"The valve closes at 6 bar."})));
    QVERIFY(write_bytes(dir + "/tree/src/pump.cpp", "int litres_per_minute() { return 40; }\n"));
    QVERIFY(write_bytes(dir + "/tree/README.md", "# Pump controller\n"));
    QVERIFY(write_bytes(dir + "/notes.md", "# Notes\n\nThe pump was serviced in May.\n"));
    QVERIFY(write_bytes(dir + "/more.md", "# More notes\n\nThe valve was replaced in June.\n"));
    auto read = [&](const QString& name) {
      return folio::docs::chat_document(folio::docs::load_document(dir + "/" + name));
    };
    std::vector<folio::chat::Document> docs = {read(first)};
    auto engine = load(smollm2_path());
    folio::chat::Conversation c(*engine);
    c.set_documents(docs);
    const std::string question = "How fast does the pump run?";
    const folio::chat::Prompt before = c.prompt(question);
    for (const QString& name : added.split(',')) docs.push_back(read(name));
    c.set_documents(docs);
    const folio::chat::Prompt after = c.prompt(question);

    // Bytes: everything up to the end of the first document is the same.
    const std::string& d0 = docs.front().title;
    const std::string footer =
        (docs.front().kind == folio::chat::DocumentKind::SourceTree ? "[end of folder: " : "[end of document: ") + d0 +
        "]";
    const size_t end_of_first = before.text.find(footer);
    QVERIFY(end_of_first != std::string::npos);
    const size_t bytes = end_of_first + footer.size();
    QCOMPARE(after.text.substr(0, bytes), before.text.substr(0, bytes));
    // Tokens: the common start of the two prompts covers the first document to its end marker.
    size_t shared = 0;
    while (shared < before.tokens.size() && shared < after.tokens.size() &&
           before.tokens[shared] == after.tokens[shared])
      ++shared;
    const std::string covered = engine->tokenizer().decode(std::span<const int32_t>(before.tokens.data(), shared));
    qInfo("%zu of %zu tokens shared; they end with: ...%s", shared, before.tokens.size(),
          covered.substr(covered.size() > 40 ? covered.size() - 40 : 0).c_str());
    QVERIFY2(covered.find(footer) != std::string::npos, covered.c_str());
    // The added documents' citation forms are still said (after them), and the instruction ahead of
    // the documents is the one the first document alone gets.
    const std::string system = folio::chat::documents_system_text(docs, true);
    QVERIFY(system.starts_with(folio::chat::documents_system_text({docs.front()}, true)));
    if (added.contains(".pdf") && docs.front().kind != folio::chat::DocumentKind::Pdf)
      QVERIFY(system.find("(p. 12)") > system.find(footer));
    if (added.contains("tree")) QVERIFY(system.find("(README.md:40-58)") > system.find(footer));
    if (added.count(".pdf") + first.count(".pdf") > 1)
      QVERIFY(system.find("There are several PDFs") != std::string::npos);
  }

  // The KV of the first document is reused when one is added (SmolLM2, short documents).
  void adding_a_document_reuses_the_kv_of_the_first() {
    if (!folio::test::exists(smollm2_path())) QSKIP("SmolLM2-135M-Instruct is not in the cache (tools/fetch_model.py)");
    const QString dir = tmp_.filePath("reuse");
    QDir().mkpath(dir);
    QVERIFY(write_bytes(dir + "/a.pdf", folio::test::make_pdf({"The pump runs at 40 litres a minute.",
                                                               "Clean the filter every 3 months."})));
    QVERIFY(write_bytes(dir + "/b.pdf", folio::test::make_pdf({"The valve closes at 6 bar."})));
    auto read = [&](const QString& name) {
      return folio::docs::chat_document(folio::docs::load_pdf(dir + "/" + name));
    };
    auto engine = load(smollm2_path());
    folio::chat::Conversation c(*engine);
    folio::chat::AskOptions o;
    o.context_tokens = 2048;
    o.generate.max_tokens = 1;
    c.set_documents({read("a.pdf")});
    const std::string q1 = "How fast does the pump run?", q2 = "When does the valve close?";
    const folio::chat::Prompt p1 = c.prompt(q1);
    const folio::chat::Answer a = c.ask(q1, o);
    c.set_documents({read("a.pdf"), read("b.pdf")});
    const folio::chat::Prompt p2 = c.prompt(q2);
    const folio::chat::Answer b = c.ask(q2, o);
    size_t shared = 0;
    while (shared < p1.tokens.size() && shared < p2.tokens.size() && p1.tokens[shared] == p2.tokens[shared]) ++shared;
    const std::string covered = engine->tokenizer().decode(std::span<const int32_t>(p1.tokens.data(), shared));
    qInfo("first: %lld prompt tokens; with b.pdf added: %lld of %lld reused (%zu in common)",
          static_cast<long long>(a.result.metrics.prompt_tokens),
          static_cast<long long>(b.result.metrics.reused_tokens),
          static_cast<long long>(b.result.metrics.prompt_tokens), shared);
    QVERIFY(covered.find("[end of document: a.pdf]") != std::string::npos);
    QVERIFY2(b.result.metrics.reused_tokens >= static_cast<int64_t>(shared) - 1,
             qPrintable(QString("reused %1 of the %2 in common").arg(b.result.metrics.reused_tokens).arg(shared)));
  }

  // KV kept on disk: a new conversation (as after a restart) over the same documents loads the
  // documents' prefix instead of prefilling it, and answers exactly as a fresh prefill does; another
  // question over them loads it too; a document changed at its end loads the start it shares.
  void the_documents_kv_saved_on_disk_is_loaded_again() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    QTemporaryDir dir;
    folio::chat::KvStore store(dir.filePath("kv").toStdString(), uint64_t{1} << 30);
    const QString doc_path = dir.filePath("story.txt");
    QVERIFY(write_bytes(doc_path,
                        "Lily had a red ball. She played with it in the park every day.\n"
                        "One day the ball rolled into the pond and a duck brought it back.\n"));
    const folio::chat::Document doc = folio::chat::read_text_document(doc_path.toStdString());
    folio::chat::AskOptions o;
    o.context_tokens = 512;
    o.generate.max_tokens = 24;
    o.generate.sampler.temperature = 0.0f;
    auto ask = [&](folio::chat::KvStore* kv, const std::vector<folio::chat::Document>& docs, const std::string& q) {
      folio::chat::Conversation c(*engine);  // a new session, as after a restart
      c.set_documents(docs);
      if (kv != nullptr) c.set_kv_store(kv, "stories260K");
      return c.ask(q, o);
    };
    const folio::chat::Answer fresh = ask(nullptr, {doc}, "What did the duck do?");
    const folio::chat::Answer first = ask(&store, {doc}, "What did the duck do?");
    QCOMPARE(first.kv_loaded_tokens, int64_t{0});
    QVERIFY(first.kv_saved_bytes > 0);
    QVERIFY2(first.kv_note.empty(), first.kv_note.c_str());
    QCOMPARE(store.used_bytes(), first.kv_saved_bytes);
    const folio::chat::Answer again = ask(&store, {doc}, "What did the duck do?");
    QVERIFY(again.kv_loaded_tokens > 20);
    QCOMPARE(again.kv_saved_bytes, uint64_t{0});
    QCOMPARE(again.result.metrics.reused_tokens, again.kv_loaded_tokens);
    QCOMPARE(again.result.metrics.prefill_tokens, again.result.metrics.prompt_tokens - again.kv_loaded_tokens);
    QCOMPARE(again.result.text, fresh.result.text);  // the same answer as a full prefill
    QCOMPARE(first.result.text, fresh.result.text);
    qInfo("prefix of %lld tokens loaded (%llu bytes on disk); prefill %lld instead of %lld tokens",
          static_cast<long long>(again.kv_loaded_tokens), static_cast<unsigned long long>(first.kv_saved_bytes),
          static_cast<long long>(again.result.metrics.prefill_tokens),
          static_cast<long long>(fresh.result.metrics.prefill_tokens));
    // Another question over the same documents starts from the same saved prefix.
    const folio::chat::Answer other = ask(&store, {doc}, "Where did Lily play?");
    QCOMPARE(other.kv_loaded_tokens, again.kv_loaded_tokens);
    QCOMPARE(other.result.text, ask(nullptr, {doc}, "Where did Lily play?").result.text);
    // A document changed at its end: the saved prefix's start up to the change is loaded, the rest
    // prefilled, and its own prefix saved.
    folio::chat::Document changed = doc;
    changed.sections[0].text += "\nThe duck was called Dot.";
    const folio::chat::Answer third = ask(&store, {changed}, "What did the duck do?");
    QVERIFY(third.kv_loaded_tokens > 20 && third.kv_loaded_tokens < again.kv_loaded_tokens);
    QCOMPARE(third.result.metrics.reused_tokens, third.kv_loaded_tokens);
    QVERIFY(third.kv_saved_bytes > 0);
    QCOMPARE(third.result.text, ask(nullptr, {changed}, "What did the duck do?").result.text);

    // A document added in a running conversation: the session reuses the first document's KV, and
    // the longer prefix is saved once, so after a restart both documents start from disk.
    const QString second_path = dir.filePath("pond.txt");
    QVERIFY(write_bytes(second_path, "The pond had three ducks. The smallest duck was called Dot.\n"));
    const folio::chat::Document second = folio::chat::read_text_document(second_path.toStdString());
    {
      folio::chat::Conversation running(*engine);
      running.set_kv_store(&store, "stories260K");
      running.set_documents({doc});
      const folio::chat::Answer r1 = running.ask("What did the duck do?", o);
      QVERIFY(r1.kv_loaded_tokens > 0);
      running.set_documents({doc, second});
      const folio::chat::Answer r2 = running.ask("Who was Dot?", o);
      QVERIFY2(r2.result.metrics.reused_tokens >= r1.kv_loaded_tokens,
               qPrintable(QString("reused %1, the first document's prefix is %2")
                              .arg(r2.result.metrics.reused_tokens)
                              .arg(r1.kv_loaded_tokens)));
      QVERIFY(r2.kv_saved_bytes > 0);
      const folio::chat::Answer r3 = running.ask("How many ducks were there?", o);
      QCOMPARE(r3.kv_saved_bytes, uint64_t{0});  // saved once, not after every question
    }
    const folio::chat::Answer restarted = ask(&store, {doc, second}, "Who was Dot?");
    QVERIFY(restarted.kv_loaded_tokens > again.kv_loaded_tokens);
    QCOMPARE(restarted.result.text, ask(nullptr, {doc, second}, "Who was Dot?").result.text);

    // A damaged file is refused (and deleted), the documents are read again, the answer is the same.
    for (const auto& entry : std::filesystem::directory_iterator(dir.filePath("kv").toStdString())) {
      std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(entry.path()) / 2));
      f.put('\x5a');
    }
    const folio::chat::Answer damaged = ask(&store, {doc}, "What did the duck do?");
    QCOMPARE(damaged.kv_loaded_tokens, int64_t{0});
    QVERIFY2(damaged.kv_note.find("checksum does not match") != std::string::npos, damaged.kv_note.c_str());
    QCOMPARE(damaged.result.text, fresh.result.text);
    QVERIFY(damaged.kv_saved_bytes > 0);  // saved again, whole
    QVERIFY(ask(&store, {doc}, "What did the duck do?").kv_loaded_tokens > 0);
  }

  // A conversation over document A, then (after a restart: a new conversation and session with no
  // cache) over A and B: the saved prefix of A is found by its tokens, the part the new prompt shares
  // is loaded from disk and only the rest prefilled, the answer is the one a fresh prefill gives, and
  // the prefix of A and B is saved for the next time.
  void a_document_added_after_a_restart_starts_from_the_saved_kv_of_the_first() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    QTemporaryDir dir;
    folio::chat::KvStore store(dir.filePath("kv").toStdString(), uint64_t{1} << 30);
    const QString a_path = dir.filePath("a.txt");
    const QString b_path = dir.filePath("b.txt");
    QVERIFY(write_bytes(a_path,
                        "Tom had a little dog called Max. Max liked to run in the garden.\n"
                        "One day Max found a big bone under the tree and gave it to Tom.\n"));
    QVERIFY(write_bytes(b_path, "The tree was old and tall. A bird lived at the top of it.\n"));
    const folio::chat::Document a = folio::chat::read_text_document(a_path.toStdString());
    const folio::chat::Document b = folio::chat::read_text_document(b_path.toStdString());
    folio::chat::AskOptions o;
    o.context_tokens = 512;
    o.generate.max_tokens = 24;
    o.generate.sampler.temperature = 0.0f;
    const std::string q = "What did Max find?";
    auto ask = [&](folio::chat::KvStore* kv, const std::vector<folio::chat::Document>& docs) {
      folio::chat::Conversation c(*engine);
      c.set_documents(docs);
      if (kv != nullptr) c.set_kv_store(kv, "stories260K");
      return c.ask(q, o);
    };
    auto prompt = [&](const std::vector<folio::chat::Document>& docs) {
      folio::chat::Conversation c(*engine);
      c.set_documents(docs);
      return c.prompt(q);
    };
    const folio::chat::Answer first = ask(&store, {a});
    QCOMPARE(first.kv_loaded_tokens, int64_t{0});
    QVERIFY(first.kv_saved_bytes > 0);

    const folio::chat::Prompt pa = prompt({a}), pab = prompt({a, b});
    size_t shared = 0;
    while (shared < pa.tokens.size() && shared < pab.tokens.size() && pa.tokens[shared] == pab.tokens[shared]) ++shared;
    const std::string covered = engine->tokenizer().decode(std::span<const int32_t>(pab.tokens.data(), shared));
    QVERIFY2(covered.find("[end of document: a.txt]") != std::string::npos, covered.c_str());

    const folio::chat::Answer fresh = ask(nullptr, {a, b});
    const folio::chat::Answer restarted = ask(&store, {a, b});
    QVERIFY2(restarted.kv_note.empty(), restarted.kv_note.c_str());
    QCOMPARE(restarted.kv_loaded_tokens, static_cast<int64_t>(shared));  // all that A's prompt shares
    QCOMPARE(restarted.result.metrics.reused_tokens, restarted.kv_loaded_tokens);
    QCOMPARE(restarted.result.metrics.prefill_tokens,
             restarted.result.metrics.prompt_tokens - restarted.kv_loaded_tokens);
    QCOMPARE(restarted.result.text, fresh.result.text);
    QVERIFY(restarted.kv_saved_bytes > 0);  // the prefix of A and B, for the next time
    qInfo("A and B after a restart: %lld of %lld prompt tokens loaded from A's saved prefix, %lld prefilled",
          static_cast<long long>(restarted.kv_loaded_tokens),
          static_cast<long long>(restarted.result.metrics.prompt_tokens),
          static_cast<long long>(restarted.result.metrics.prefill_tokens));

    // Again: the prefix of A and B itself, nothing saved; A alone still finds its own.
    const folio::chat::Answer again = ask(&store, {a, b});
    QVERIFY(again.kv_loaded_tokens > restarted.kv_loaded_tokens);
    QCOMPARE(again.kv_saved_bytes, uint64_t{0});
    QCOMPARE(again.result.text, fresh.result.text);
    const folio::chat::Answer a_again = ask(&store, {a});
    QCOMPARE(a_again.kv_saved_bytes, uint64_t{0});
    QCOMPARE(a_again.result.text, first.result.text);
  }

  // The store's choice by tokens: the entry sharing the longest start with the prompt, never one of
  // another model or KV layout, nothing under the minimum or for a file far longer than what it
  // shares; a damaged best is refused (and deleted) and the next best loaded.
  void kv_store_loads_the_longest_shared_prefix() {
    QTemporaryDir dir;
    folio::chat::KvStore store(dir.filePath("kv").toStdString(), uint64_t{1} << 30);
    std::vector<int32_t> prompt(200);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(i * 7 % 500);
    // An entry whose first `shared` tokens are the prompt's, then `extra` others.
    auto entry = [&](size_t shared, size_t extra) {
      folio::chat::KvEntry e;
      e.tokens.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(shared));
      for (size_t i = 0; i < extra; ++i) e.tokens.push_back(9000 + static_cast<int32_t>(i));
      e.kv.resize(e.tokens.size() * 8 + 3);  // any byte count: the checksum's partial words too
      for (size_t i = 0; i < e.kv.size(); ++i) e.kv[i] = static_cast<uint8_t>(shared + i * 13);
      return e;
    };
    auto save = [&](const std::string& model, const std::string& layout, const folio::chat::KvEntry& e) {
      const std::string k = folio::chat::KvStore::key(model, layout, e.tokens);
      store.save(k, e);
      return k;
    };
    const std::span<const int32_t> p(prompt);
    QVERIFY(!store.load_longest_prefix("m", "fp32", p, 32).has_value());  // nothing saved

    save("m", "fp32", entry(60, 10));
    const std::string k100 = save("m", "fp32", entry(100, 30));
    save("m", "fp32", entry(80, 0));
    save("other model", "fp32", entry(190, 5));  // longer, but another model's
    save("m", "bf16", entry(180, 5));            // or another layout
    save("m", "fp32", entry(150, 800));          // longer, but the file is over four times what it shares

    std::string why;
    std::optional<folio::chat::KvPrefixMatch> m = store.load_longest_prefix("m", "fp32", p, 32, &why);
    QVERIFY(m.has_value());
    QVERIFY2(why.empty(), why.c_str());
    QCOMPARE(m->common_tokens, int64_t{100});
    QCOMPARE(m->key, k100);
    QCOMPARE(m->entry.tokens, entry(100, 30).tokens);
    QCOMPARE(m->entry.kv, entry(100, 30).kv);
    // The other model and layout find their own.
    QCOMPARE(store.load_longest_prefix("other model", "fp32", p, 32)->common_tokens, int64_t{190});
    QCOMPARE(store.load_longest_prefix("m", "bf16", p, 32)->common_tokens, int64_t{180});
    // Under the minimum: none.
    QVERIFY(!store.load_longest_prefix("m", "fp32", p, 101).has_value());
    // A prompt that the saved ones share all of (an entry longer than the prompt counts too).
    QCOMPARE(store.load_longest_prefix("m", "fp32", p.first(70), 32)->common_tokens, int64_t{70});

    // The best one damaged: refused with the reason and deleted, the next best (80) loaded.
    const std::string path = dir.filePath("kv").toStdString() + "/" + k100 + ".kv";
    {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(path) - 20));
      f.put('\x5a');
    }
    why.clear();
    m = store.load_longest_prefix("m", "fp32", p, 32, &why);
    QVERIFY(m.has_value());
    QCOMPARE(m->common_tokens, int64_t{80});
    QCOMPARE(m->entry.kv, entry(80, 0).kv);
    QVERIFY2(why.find("checksum does not match") != std::string::npos, why.c_str());
    QVERIFY2(why.find("another saved prefix was loaded") != std::string::npos, why.c_str());
    QVERIFY(!std::filesystem::exists(path));
  }

  // A session restores the first n tokens of a saved prefix exactly: the same KV as a prefill of
  // those tokens, and the same answer.
  void a_session_restores_the_start_of_a_saved_prefix() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    folio::SessionOptions so;
    so.context_tokens = 256;
    std::vector<int32_t> long_prompt =
        engine->tokenizer().encode("Once upon a time there was a little girl named Lily.", true);
    const std::vector<int32_t> more =
        engine->tokenizer().encode(" She liked to play with her red ball in the park.", false);
    long_prompt.insert(long_prompt.end(), more.begin(), more.end());
    const auto n = static_cast<int64_t>(long_prompt.size()) / 2;
    folio::RequestOptions ro;
    ro.keep_prefix = true;
    ro.generate.max_tokens = 12;
    ro.generate.sampler.temperature = 0.0f;
    auto saving = engine->create_session(so);
    saving->run(long_prompt, ro);
    std::vector<uint8_t> saved, part, expected;
    QVERIFY(saving->save_prefix(static_cast<int64_t>(long_prompt.size()), saved));
    QVERIFY(saving->save_prefix(n, expected));

    auto restored = engine->create_session(so);
    QVERIFY(!restored->restore_prefix(long_prompt, saved, static_cast<int64_t>(long_prompt.size()) + 1));
    QVERIFY(!restored->restore_prefix(long_prompt, std::span<const uint8_t>(saved).first(saved.size() - 1), n));
    QVERIFY(restored->restore_prefix(long_prompt, saved, n));
    QCOMPARE(restored->n_past(), n);
    QVERIFY(restored->save_prefix(n, part));
    QVERIFY(part == expected);

    const std::vector<int32_t> question(long_prompt.begin(), long_prompt.begin() + n + 3);
    const folio::RequestResult r = restored->run(question, ro);
    QCOMPARE(r.metrics.reused_tokens, n);
    QCOMPARE(r.text, engine->create_session(so)->run(question, ro).text);
  }

  // A saved KV that would take longer to read (its size at the store's last measured read rate) than
  // its tokens took to compute is not read (a fast GPU beside a slow disk); the note says so. Read
  // when asked to anyway, and when its compute time is not known.
  void a_saved_kv_slower_to_read_than_to_compute_is_not_read() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    QTemporaryDir dir;
    const std::string folder = dir.filePath("kv").toStdString();
    folio::chat::KvStore store(folder, uint64_t{1} << 30);
    folio::SessionOptions so;
    so.context_tokens = 256;
    const std::vector<int32_t> prompt =
        engine->tokenizer().encode("Once upon a time there was a little girl named Lily. She liked to play.", true);
    const auto n = static_cast<int64_t>(prompt.size());
    auto computed = engine->create_session(so);
    computed->prefill(prompt);
    const std::string layout = folio::chat::KvStore::layout(false, computed->kv_element_bytes());
    const std::string key = folio::chat::KvStore::key("m", layout, prompt);
    QVERIFY(folio::chat::save_session_prefix(store, *computed, key, prompt, 0.001) > 0);  // computed in 1 us
    { std::ofstream(folder + "/read-rate") << 1.0 << "\n"; }  // reads 1 byte a millisecond
    folio::chat::KvStore slow(folder, uint64_t{1} << 30);
    QCOMPARE(slow.read_rate(), 1.0);

    auto s = engine->create_session(so);
    folio::chat::KvRestore k = folio::chat::restore_saved_prefix(slow, *s, "m", layout, prompt, 8);
    QCOMPARE(k.tokens, int64_t{0});
    QCOMPARE(s->n_past(), int64_t{0});
    QVERIFY2(k.note.find("prefilled instead") != std::string::npos, k.note.c_str());
    k = folio::chat::restore_saved_prefix(slow, *s, "m", layout, prompt, 8, true);
    QCOMPARE(k.tokens, n);
    QCOMPARE(s->n_past(), n);
    QVERIFY2(k.note.empty(), k.note.c_str());

    // Its compute time not known (0): read.
    QVERIFY(folio::chat::save_session_prefix(store, *computed, key, prompt) > 0);
    auto t = engine->create_session(so);
    QCOMPARE(folio::chat::restore_saved_prefix(slow, *t, "m", layout, prompt, 8).tokens, n);
    std::vector<uint8_t> a, b;
    QVERIFY(t->save_prefix(n, a) && computed->save_prefix(n, b) && a == b);
  }

  // The store alone: a file cut short is refused; the least recently used files go when the folder
  // is over its limit; a save killed at any moment (SIGKILL) never leaves a file that loads wrong.
  void kv_files_are_checked_evicted_and_survive_kill() {
    QTemporaryDir dir;
    const std::string folder = dir.filePath("kv").toStdString();
    auto entry = [](int seed, size_t floats) {
      folio::chat::KvEntry e;
      e.tokens = {1, 2, 3, seed};
      std::vector<float> kv(floats);
      for (size_t i = 0; i < floats; ++i) kv[i] = static_cast<float>(seed) + static_cast<float>(i) * 0.5f;
      const auto* bytes = reinterpret_cast<const uint8_t*>(kv.data());
      e.kv.assign(bytes, bytes + kv.size() * sizeof(float));
      return e;
    };
    const uint64_t one = 32 + 4 * 4 + 4000 * 4 + 8;  // header (magic, counts, compute_ms), tokens, KV, checksum
    folio::chat::KvStore store(folder, one * 2 + one / 2);  // room for two
    const std::string a = folio::chat::KvStore::key("m", "fp32", entry(1, 1).tokens);
    const std::string b = folio::chat::KvStore::key("m", "fp32", entry(2, 1).tokens);
    const std::string c = folio::chat::KvStore::key("m", "fp32", entry(3, 1).tokens);
    QVERIFY(a != b && a != folio::chat::KvStore::key("other model", "fp32", entry(1, 1).tokens));
    QCOMPARE(store.save(a, entry(1, 4000)), one);
    QTest::qWait(20);
    store.save(b, entry(2, 4000));
    QTest::qWait(20);
    QVERIFY(store.load(a).has_value());  // a is used again: b is now the least recently used
    QTest::qWait(20);
    store.save(c, entry(3, 4000));
    QVERIFY(store.load(a).has_value());
    QVERIFY(!store.load(b).has_value());
    const std::optional<folio::chat::KvEntry> got = store.load(c);
    QVERIFY(got.has_value());
    QCOMPARE(got->tokens, entry(3, 1).tokens);
    QCOMPARE(got->kv, entry(3, 4000).kv);
    QVERIFY(store.used_bytes() <= store.max_bytes());
    // One entry larger than the whole limit: refused with the reason, nothing evicted for it.
    try {
      store.save(folio::chat::KvStore::key("m", "fp32", entry(9, 1).tokens), entry(9, 20000));
      QFAIL("a KV larger than the folder's limit was saved");
    } catch (const folio::Error& e) {
      QVERIFY2(std::string(e.what()).find("larger than the KV cache folder's limit") != std::string::npos, e.what());
    }
    QVERIFY(store.load(a).has_value());

    // Cut short (a copy that stopped early): refused with the reason, and deleted.
    const std::string path = folder + "/" + c + ".kv";
    std::filesystem::resize_file(path, one - 100);
    std::string problem;
    QVERIFY(!store.load(c, &problem).has_value());
    QVERIFY2(problem.find("size does not match") != std::string::npos, problem.c_str());
    QVERIFY(!std::filesystem::exists(path));

    // SIGKILL while saving, again and again: the file under the key is absent or whole.
    const folio::chat::KvEntry big = entry(7, 4 << 20);  // 16 MiB
    const std::string k = folio::chat::KvStore::key("m", "fp32", big.tokens);
    folio::chat::KvStore roomy(folder, uint64_t{1} << 30);
    int whole = 0, absent = 0;
    for (int round = 0; round < 6; ++round) {
      const pid_t child = ::fork();
      QVERIFY(child >= 0);
      if (child == 0) {
        for (;;) roomy.save(k, big);  // until killed
      }
      ::usleep(static_cast<useconds_t>(20000 + 37000 * round));
      ::kill(child, SIGKILL);
      int status = 0;
      ::waitpid(child, &status, 0);
      std::string why;
      const std::optional<folio::chat::KvEntry> e = roomy.load(k, &why);
      QVERIFY2(why.empty(), why.c_str());  // never a damaged file
      if (e) {
        QCOMPARE(e->kv.size(), big.kv.size());
        QVERIFY(e->kv == big.kv);
        ++whole;
      } else {
        ++absent;
      }
    }
    qInfo("after SIGKILL mid-save: %d times a whole file, %d times none, never a damaged one", whole, absent);
  }

  void a_prompt_that_does_not_fit_is_reported_not_cut() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    folio::chat::Conversation c(*engine);
    CountingRecorder recorder;
    c.set_recorder(&recorder);
    c.set_documents({folio::chat::read_text_document(demo_path())});
    folio::chat::AskOptions o;
    o.context_tokens = 256;
    o.generate.max_tokens = 16;
    bool started = false;
    o.on_start = [&] { started = true; };
    const folio::chat::Answer a = c.ask("What is the display?", o);
    QVERIFY(!a.fit.fits);
    QVERIFY(!started);
    QVERIFY(recorder.turns.empty());
    QVERIFY(c.history().empty());
    QCOMPARE(a.fit.context_tokens, int64_t{256});
    QCOMPARE(a.fit.reserve_tokens, int64_t{16});
    QCOMPARE(a.fit.document_tokens.size(), size_t{1});
    QCOMPARE(a.fit.prompt_tokens, a.fit.fixed_tokens + a.fit.document_tokens[0]);
    QVERIFY(a.fit.document_tokens[0] > 256);
    QVERIFY2(QString::fromStdString(a.fit.message()).contains("larger context"), a.fit.message().c_str());

    // folio-cli says the same, and runs nothing.
    const CliRun r =
        run_cli({"--model", QString::fromStdString(stories_path()), "--file", QString::fromStdString(demo_path()),
                 "--ask", "What is the display?", "--ctx", "256", "--max-tokens", "16", "--fit", "error"});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("more than the context of 256 tokens"), r.err.constData());
  }
};

QTEST_GUILESS_MAIN(TstChat)
#include "tst_chat.moc"
