// The CPU engine against HF transformers: tiny random-weight models of each architecture and RoPE
// scaling (made by tools/make_hf_fixtures.py on the GPU machine), their logits at the last prompt
// position and over 4 greedy decode steps.
#include <QtTest>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/common/mapped_file.h"
#include "core/engine/engine.h"
#include "tests/test_support.h"

namespace {

// max |a - b| / max |b|
double relative_error(std::span<const float> got, const std::vector<float>& want) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
  }
  return diff / scale;
}

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace

class HfReferenceTest : public QObject {
  Q_OBJECT

 private slots:
  void matches_transformers_data() {
    QTest::addColumn<QString>("fixture");
    for (const char* name : {"llama3_scaled", "mistral_sharded", "qwen2_yarn_tied", "phi3_longrope", "llama_linear_tied"})
      QTest::newRow(name) << QString(name);
  }

  void matches_transformers() {
    QFETCH(QString, fixture);
    const std::string dir = folio::test::source_dir() + "/tests/fixtures/hf/" + fixture.toStdString();
    FOLIO_REQUIRE_FILE(dir + "/reference.json");
    const auto ref = nlohmann::json::parse(folio::read_text_file(dir + "/reference.json"));
    folio::EngineOptions opts;
    opts.model_path = dir;
    opts.threads = 2;
    auto engine = folio::Engine::load(opts);
    QVERIFY(!ref["cases"].empty());
    for (const auto& c : ref["cases"]) {
      const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
      const auto greedy = c["greedy_ids"].get<std::vector<int32_t>>();
      const auto logits = c["logits"].get<std::vector<std::vector<float>>>();
      QCOMPARE(logits.size(), greedy.size());
      // The context is exactly what the reference ran, so LongRoPE picks the same factor set.
      folio::SessionOptions so;
      so.context_tokens = static_cast<int64_t>(prompt.size() + greedy.size());
      auto session = engine->create_session(so);
      session->prefill(prompt);
      for (size_t step = 0; step < greedy.size(); ++step) {
        auto got = session->logits();
        QCOMPARE(got.size(), logits[step].size());
        const double err = relative_error(got, logits[step]);
        if (err > 1e-4)
          QFAIL(qPrintable(QString("%1: prompt of %2 tokens, step %3: relative logit error %4 > 1e-4")
                               .arg(fixture)
                               .arg(prompt.size())
                               .arg(step)
                               .arg(err)));
        QCOMPARE(argmax(got), greedy[step]);
        if (step + 1 < greedy.size()) session->prefill(std::vector<int32_t>{greedy[step]});
      }
    }
  }

  // The rope table the engine builds equals the inv_freq transformers used.
  void rope_tables_match_data() { matches_transformers_data(); }
  void rope_tables_match() {
    QFETCH(QString, fixture);
    const std::string dir = folio::test::source_dir() + "/tests/fixtures/hf/" + fixture.toStdString();
    FOLIO_REQUIRE_FILE(dir + "/reference.json");
    const auto ref = nlohmann::json::parse(folio::read_text_file(dir + "/reference.json"));
    const auto cfg = folio::parse_hf_config(folio::read_text_file(dir + "/config.json"), dir);
    const auto& rope = ref["rope"];
    auto check = [&](const char* key, int64_t ctx, const char* scale_key) {
      if (!rope.contains(key)) return;
      const auto want = rope[key].get<std::vector<double>>();
      const folio::RopeTable t = folio::make_rope_table(cfg.rope, ctx);
      QCOMPARE(t.inv_freq.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i)
        QVERIFY2(std::abs(t.inv_freq[i] - want[i]) <= 1e-6 * std::abs(want[i]) + 1e-12,
                 qPrintable(QString("%1[%2]: %3 vs %4").arg(key).arg(i).arg(t.inv_freq[i]).arg(want[i])));
      if (rope.contains(scale_key))
        QVERIFY(std::abs(t.attention_scale - rope[scale_key].get<double>()) < 1e-6);
    };
    const int64_t orig = cfg.rope.original_context;
    check("inv_freq", 16, "attention_scaling");
    check("inv_freq_short", orig, "attention_scaling");
    check("inv_freq_long", orig + 1, "attention_scaling_long");
  }
};

QTEST_APPLESS_MAIN(HfReferenceTest)
#include "tst_hf_reference.moc"
