// folio-needle (resources/models/folio-needle, trained by tools/needle/) on the CPU: the folder
// loads as the HF Llama it is (tied embeddings, plain RoPE theta 1e6, 131072 positions, ChatML),
// its SentencePiece tokenizer gives the text back, and it answers planted questions about a
// ~2K-token excerpt of the demo document (resources/demo/planted-facts.md) in the prompt the app
// and folio-cli --ask --file send (core/chat's Conversation). The app offers that document and its questions
// (resources/demo/planted-facts.json) on the welcome screen when folio-needle is the model.
#include <QStandardPaths>
#include <QtTest>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/common/mapped_file.h"
#include "core/chat/conversation.h"
#include "core/engine/chat_prompt.h"
#include "core/engine/engine.h"
#include "tests/test_support.h"
#include "ui/demo.h"

namespace {

std::string model_dir() { return folio::test::source_dir() + "/resources/models/folio-needle"; }
std::string demo_path() { return folio::test::source_dir() + "/resources/demo/planted-facts.md"; }

// The first paragraphs of the demo document, up to about max_chars characters (whole paragraphs).
std::string demo_excerpt(size_t max_chars) {
  const std::string text = folio::read_text_file(demo_path());
  size_t end = 0;
  for (size_t next = text.find("\n\n"); next != std::string::npos && next <= max_chars; next = text.find("\n\n", next + 2))
    end = next;
  return text.substr(0, end);
}

}  // namespace

class NeedleTest : public QObject {
  Q_OBJECT
  std::unique_ptr<folio::Engine> engine_;

  // Greedy answer to `question` about `document` (as a text file planted-facts.md), through the
  // Conversation service the app and folio-cli ask through.
  std::string ask(const std::string& document, const std::string& question, int64_t* prompt_tokens = nullptr) {
    folio::chat::Document doc;
    doc.path = doc.title = "planted-facts.md";
    doc.page_count = 1;
    doc.files = {doc.title};
    doc.sections = folio::chat::line_sections(folio::chat::split_lines(document), doc.title, 200);
    folio::chat::Conversation chat(*engine_);
    chat.set_documents({doc});
    folio::chat::AskOptions o;
    o.context_tokens = 4096;
    o.generate.max_tokens = 32;
    o.generate.sampler.temperature = 0.0f;
    const folio::chat::Answer a = chat.ask(question, o);
    if (prompt_tokens) *prompt_tokens = a.fit.prompt_tokens;
    return a.result.text;
  }

 private slots:
  void initTestCase() {
    if (!std::filesystem::exists(model_dir() + "/config.json")) return;
    folio::EngineOptions opts;
    opts.model_path = model_dir();
    opts.threads = 2;
    engine_ = folio::Engine::load(opts);
  }

  void loads_as_trained() {
    FOLIO_REQUIRE_FILE(model_dir() + "/config.json");
    const auto& c = engine_->config();
    QCOMPARE(c.max_context, int64_t{131072});
    QVERIFY(c.tied_embeddings);
    QCOMPARE(c.rope.theta, 1.0e6);
    QCOMPARE(folio::detect_chat_format(*engine_), folio::ChatFormatKind::ChatML);
    const auto& tok = engine_->tokenizer();
    QVERIFY(tok.piece_to_id("<|im_start|>").has_value());
    const std::string text = "The value of key 3f9a-1c07 is 5b2e-8d41.\n\nVAR ABCDE = 51243.";
    std::string back;
    int32_t prev = -1;
    for (int32_t id : tok.encode(text, false)) {
      back += tok.token_bytes(id, prev);
      prev = id;
    }
    QCOMPARE(QString::fromStdString(back), QString::fromStdString(text));
  }

  void app_offers_the_planted_facts_demo() {
    using folio::ui::DemoDocument;
    QStandardPaths::setTestModeEnabled(true);
    QCOMPARE(folio::ui::demo_for_model(QString::fromStdString(model_dir())), DemoDocument::PlantedFacts);
    QCOMPARE(folio::ui::demo_for_model(QString::fromStdString(model_dir() + "/")), DemoDocument::PlantedFacts);
    QCOMPARE(folio::ui::demo_for_model("/models/SmolLM2-135M-Instruct.Q4_1.gguf"), DemoDocument::Manual);
    const QString path = folio::ui::demo_document_path(DemoDocument::PlantedFacts);
    QVERIFY(!path.isEmpty());
    QCOMPARE(folio::read_text_file(path.toStdString()), folio::read_text_file(demo_path()));
    // The suggested questions are the ones planted (and answered) in the document.
    const auto facts = nlohmann::json::parse(
        folio::read_text_file(folio::test::source_dir() + "/resources/demo/planted-facts.json"));
    QStringList planted;
    for (const auto& q : facts["questions"]) planted << QString::fromStdString(q["question"].get<std::string>());
    QCOMPARE(folio::ui::demo_questions(DemoDocument::PlantedFacts), planted);
    const QString md = folio::ui::welcome_markdown("folio-needle", false, DemoDocument::PlantedFacts);
    QVERIFY(md.contains("planted-facts.md"));
  }

  void answers_planted_questions_data() {
    QTest::addColumn<QString>("fact");      // planted by the test at the start ("" = the demo's own)
    QTest::addColumn<QString>("question");
    QTest::addColumn<QString>("value");
    QTest::newRow("demo fact") << QString() << "What is the secret code of the blue door?" << "48213";
    QTest::newRow("planted at the start") << "The special magic number for the quiet harbor is 5512093."
                                          << "What is the special magic number for the quiet harbor?" << "5512093";
  }

  void answers_planted_questions() {
    FOLIO_REQUIRE_FILE(model_dir() + "/config.json");
    FOLIO_REQUIRE_FILE(demo_path());
    QFETCH(QString, fact);
    QFETCH(QString, question);
    QFETCH(QString, value);
    // The blue door's code sits at 12% of the demo (about 1,400 tokens in): 8,000 characters hold it.
    std::string doc = demo_excerpt(8000);
    QVERIFY(doc.find("blue door is 48213") != std::string::npos);
    if (!fact.isEmpty()) {
      const size_t para = doc.find("\n\n", doc.find("\n\n") + 2);  // after the title and the preface
      doc.insert(para + 2, fact.toStdString() + " ");
    }
    int64_t n = 0;
    const std::string answer = ask(doc, question.toStdString(), &n);
    qInfo("%lld prompt tokens; answer: %s", static_cast<long long>(n), answer.c_str());
    QVERIFY2(QString::fromStdString(answer).contains(value), answer.c_str());
  }
};

QTEST_APPLESS_MAIN(NeedleTest)
#include "tst_needle.moc"
