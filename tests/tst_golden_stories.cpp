// stories260K, greedy from BOS, against the values of llama2.c's own reference program
// (../shared/models/README.md): logits at position 0, the first 24 ids, and their text.
#include <QtTest>
#include <cmath>

#include "core/engine/engine.h"
#include "tests/test_support.h"

namespace {
const std::vector<int32_t> kGolden = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                                      395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292};
const char* kGoldenText = "Once upon a time, there was a little girl named Lily. She loved to play outsid";
}  // namespace

class GoldenStoriesTest : public QObject {
  Q_OBJECT

 private slots:
  void golden_data() {
    QTest::addColumn<QString>("model");
    QTest::newRow("embedded") << QString::fromStdString(folio::test::source_dir() +
                                                        "/resources/models/stories260K/stories260K.bin");
    QTest::newRow("shared") << QString::fromStdString(folio::test::shared_models() + "/stories260K.bin");
  }

  void golden() {
    QFETCH(QString, model);
    FOLIO_REQUIRE_FILE(model.toStdString());
    folio::EngineOptions opts;
    opts.model_path = model.toStdString();
    opts.tokenizer_path = folio::test::source_dir() + "/resources/models/stories260K/tok512.bin";
    auto engine = folio::Engine::load(opts);
    auto session = engine->create_session();

    session->prefill(std::vector<int32_t>{1});
    auto logits = session->logits();
    QCOMPARE(logits.size(), size_t{512});
    auto rel = [](float got, float want) { return std::abs(got - want) / std::abs(want); };
    const auto max_it = std::max_element(logits.begin(), logits.end());
    QCOMPARE(static_cast<int>(max_it - logits.begin()), 403);
    QVERIFY(rel(*max_it, 17.023516f) < 1e-4f);
    const float want[4] = {-6.222911f, 8.404342f, -6.223737f, -6.222542f};
    for (int i = 0; i < 4; ++i) QVERIFY2(rel(logits[static_cast<size_t>(i)], want[i]) < 1e-4f, qPrintable(QString::number(i)));

    folio::GenerateOptions gen;
    gen.max_tokens = 24;
    std::string streamed;
    gen.on_token = [&](int32_t, std::string_view text) { streamed += text; };
    auto result = session->generate(gen);
    QCOMPARE(result.tokens, kGolden);
    QCOMPARE(QString::fromStdString(result.text), QString(kGoldenText));
    QCOMPARE(streamed, result.text);
    QCOMPARE(result.metrics.stop, folio::StopReason::MaxTokens);
  }

  // The same through the request API, as folio-cli runs it (empty --prompt = BOS alone).
  void golden_through_run() {
    const std::string path = folio::test::source_dir() + "/resources/models/stories260K/stories260K.bin";
    FOLIO_REQUIRE_FILE(path);
    folio::EngineOptions opts;
    opts.model_path = path;
    auto engine = folio::Engine::load(opts);  // tok512.bin is found beside the model
    QVERIFY(engine->has_tokenizer());
    auto prompt = engine->tokenizer().encode("", true);
    QCOMPARE(prompt, std::vector<int32_t>{1});
    auto session = engine->create_session();
    folio::RequestOptions req;
    req.generate.max_tokens = 24;
    auto r = session->run(prompt, req);
    QCOMPARE(r.tokens, kGolden);
    QCOMPARE(QString::fromStdString(r.text), QString(kGoldenText));
    QVERIFY(r.metrics.ttft_ms > 0.0);
    QCOMPARE(r.metrics.prefill_tokens, int64_t{1});
    QCOMPARE(r.metrics.decode_tokens, int64_t{24});
  }
};

QTEST_APPLESS_MAIN(GoldenStoriesTest)
#include "tst_golden_stories.moc"
