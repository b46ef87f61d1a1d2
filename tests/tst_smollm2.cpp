// SmolLM2-135M-Instruct (Q4_1 GGUF, the embedded default model) against llama.cpp: the same
// prompt ids, the same top-5 ids at the last position and the same 32 greedy tokens
// (tests/fixtures/smollm2/reference.json, made by tools/make_smollm2_reference.py); and
// folio-cli --ask answers simple questions with the fact in them.
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/common/mapped_file.h"
#include "core/engine/chat_prompt.h"
#include "core/engine/engine.h"
#include "tests/test_support.h"

namespace {

std::string model_path() { return folio::test::smollm2_path(); }

#define REQUIRE_SMOLLM2()                                                                              \
  do {                                                                                                 \
    if (!std::filesystem::exists(model_path()))                                                        \
      QSKIP(qPrintable(QString("SmolLM2 is not in the cache (%1); run python3 tools/fetch_model.py") \
                           .arg(QString::fromStdString(model_path()))));                               \
  } while (0)

std::vector<int32_t> top_ids(std::span<const float> logits, size_t k) {
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                    [&](int32_t a, int32_t b) { return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)]; });
  ids.resize(k);
  return ids;
}

}  // namespace

class SmolLM2Test : public QObject {
  Q_OBJECT
  std::unique_ptr<folio::Engine> engine_;
  nlohmann::json ref_;

  void compare_case(const nlohmann::json& c, const std::vector<int32_t>& prompt) {
    QCOMPARE(prompt, c["prompt_ids"].get<std::vector<int32_t>>());
    folio::SessionOptions so;
    so.context_tokens = 256;
    auto session = engine_->create_session(so);
    session->prefill(prompt);
    // The same five ids. Their order may differ only where llama.cpp's own logits are within
    // 0.1 of each other (its 8-bit activations and ours round differently).
    std::vector<int32_t> want_top;
    for (const auto& t : c["top5"]) want_top.push_back(t["id"].get<int32_t>());
    // Two independent references: llama.cpp (8-bit activations, f16 KV cache) and an exact fp32
    // pass over the dequantized weights. Their top-5 differ where logits are within 0.2; ours
    // must hold the same five ids as one of them, and the same first id.
    std::vector<int32_t> exact_top;
    for (const auto& t : c["fp32_dequant"]["top5"]) exact_top.push_back(t["id"].get<int32_t>());
    auto got_top = top_ids(session->logits(), 5);
    QVERIFY(got_top[0] == want_top[0] || got_top[0] == exact_top[0]);
    std::sort(got_top.begin(), got_top.end());
    std::sort(want_top.begin(), want_top.end());
    std::sort(exact_top.begin(), exact_top.end());
    QVERIFY2(got_top == want_top || got_top == exact_top, "the top-5 ids match neither reference");
    folio::GenerateOptions gen;
    gen.max_tokens = 32;
    gen.stop_at_eos = false;
    const auto r = session->generate(gen);
    // The same greedy tokens as llama.cpp up to the first step where llama.cpp's own choice was a
    // near-tie (winner within 0.5 of the runner-up: the size of the rounding differences above).
    const auto want = c["greedy_ids"].get<std::vector<int32_t>>();
    QCOMPARE(r.tokens.size(), want.size());
    size_t same = 0;
    while (same < want.size() && r.tokens[same] == want[same]) ++same;
    qInfo("%zu of %zu greedy tokens identical to llama.cpp", same, want.size());
    if (same < want.size()) {
      const auto& step = c["greedy"][same];
      const double margin = step["logit"].get<double>() - step["runner_up_logit"].get<double>();
      QVERIFY2(margin < 0.5, qPrintable(QString("diverged at step %1 where llama.cpp was sure (margin %2)")
                                            .arg(same).arg(margin)));
      QVERIFY2(same >= 8, "fewer than 8 identical greedy tokens");
    }
  }

 private slots:
  void initTestCase() {
    const std::string ref_path = folio::test::source_dir() + "/tests/fixtures/smollm2/reference.json";
    ref_ = nlohmann::json::parse(folio::read_text_file(ref_path));
    if (!std::filesystem::exists(model_path())) return;
    folio::EngineOptions opts;
    opts.model_path = model_path();
    opts.threads = 2;
    engine_ = folio::Engine::load(opts);
  }

  void raw_completion_matches_llama_cpp() {
    REQUIRE_SMOLLM2();
    const auto& c = ref_["raw"];
    compare_case(c, engine_->tokenizer().encode(c["text"].get<std::string>(), true));
  }

  void chat_matches_llama_cpp() {
    REQUIRE_SMOLLM2();
    const auto& c = ref_["chat"];
    QCOMPARE(folio::detect_chat_format(*engine_), folio::ChatFormatKind::SmolLM2);
    std::vector<folio::ChatMessage> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    QCOMPARE(QString::fromStdString(folio::render_chat(folio::ChatFormatKind::SmolLM2, messages, true)),
             QString::fromStdString(c["text"].get<std::string>()));
    compare_case(c, folio::encode_chat(*engine_, folio::ChatFormatKind::SmolLM2, messages));
  }

  // The 8-bit KV caches (the CPU rounds its cache to their values) against the fp32 cache on real
  // text (the demo's 35 KB document, its first 1,536 tokens, teacher forced). fp8 (E4M3, a scale per
  // token and head): perplexity within 1.5%, argmax the same at >= 92% of positions (measured
  // +0.37%, 95.1%); q8 (int8 blocks of 32): within 0.5% and >= 94% (-0.10%, 96.4%). At 8K tokens of public-domain
  // prose (folio-sparse ppl, docs/quantized-gpu.md): fp8 +1.00%, q8 +0.17%.
  void eight_bit_kv_cache_keeps_perplexity() {
#ifdef __SANITIZE_ADDRESS__
    QSKIP("an accuracy measurement (three runs over 1,536 tokens, over 5 minutes under ASan); the 8-bit KV "
          "code runs under ASan in tst_engine eight_bit_kv_cache_on_the_cpu");
#endif
    REQUIRE_SMOLLM2();
    struct Scores final : folio::ForwardObserver {
      std::vector<int32_t> tokens;
      std::vector<int32_t> argmax;
      double nll = 0.0;
      int64_t counted = 0;
      size_t vocab = 0;
      bool wants_all_logits() const override { return true; }
      void on_logits(int64_t pos, int64_t rows, const float* logits) override {
        for (int64_t r = 0; r < rows; ++r) {
          const float* l = logits + static_cast<size_t>(r) * vocab;
          const float* best = std::max_element(l, l + vocab);
          argmax.push_back(static_cast<int32_t>(best - l));
          const size_t next = static_cast<size_t>(pos + r + 1);
          if (next >= tokens.size()) continue;
          double sum = 0.0;
          for (size_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(l[i] - *best));
          nll += std::log(sum) - static_cast<double>(l[static_cast<size_t>(tokens[next])] - *best);
          ++counted;
        }
      }
    };
    const std::string text = folio::read_text_file(folio::test::source_dir() + "/resources/demo/planted-facts.md");
    std::vector<int32_t> tokens = engine_->tokenizer().encode(text, true);
    QVERIFY(tokens.size() > 1536);
    tokens.resize(1536);
    const folio::KvQuant formats[3] = {folio::KvQuant::None, folio::KvQuant::Fp8, folio::KvQuant::Q8};
    double ppl[3] = {0, 0, 0};
    std::vector<int32_t> argmax[3];
    for (int fp8 = 0; fp8 < 3; ++fp8) {
      folio::EngineOptions o;
      o.model_path = model_path();
      o.threads = 2;
      o.kv_quant = formats[fp8];
      auto engine = folio::Engine::load(o);
      folio::SessionOptions so;
      so.context_tokens = 2048;
      auto session = engine->create_session(so);
      Scores s;
      s.tokens = tokens;
      s.vocab = static_cast<size_t>(engine->config().vocab_size);
      session->set_observer(&s);
      session->prefill(tokens);
      ppl[fp8] = std::exp(s.nll / static_cast<double>(s.counted));
      argmax[fp8] = s.argmax;
    }
    for (int f = 1; f < 3; ++f) {
      size_t same = 0;
      for (size_t i = 0; i < argmax[0].size(); ++i) same += argmax[0][i] == argmax[f][i] ? 1 : 0;
      const double agree = double(same) / double(argmax[0].size());
      const double change = ppl[f] / ppl[0] - 1.0;
      qInfo("SmolLM2, 1,536 tokens of the demo document: perplexity %.4f (fp32 KV) vs %.4f (%s KV), %+.2f%%; "
            "argmax equal at %.1f%%", ppl[0], ppl[f], folio::kv_quant_name(formats[f]), 100.0 * change, 100.0 * agree);
      QVERIFY(std::abs(change) < (f == 1 ? 0.015 : 0.005));
      QVERIFY(agree >= (f == 1 ? 0.92 : 0.94));
    }
  }

  void cli_answers_questions_data() {
    QTest::addColumn<QString>("document");
    QTest::addColumn<QString>("question");
    QTest::addColumn<QString>("fact");
    QTest::newRow("general knowledge") << QString() << "Name the capital of France." << "Paris";
    QTest::newRow("from a file") << "Maria's favourite fruit is the mango. She eats one every morning."
                                 << "What is Maria's favourite fruit?" << "mango";
  }

  void cli_answers_questions() {
    REQUIRE_SMOLLM2();
    QFETCH(QString, document);
    QFETCH(QString, question);
    QFETCH(QString, fact);
    QStringList args{"--model", QString::fromStdString(model_path()), "--ask", question, "--max-tokens", "48",
                     "--temperature", "0", "--quiet"};
    QTemporaryDir dir;
    if (!document.isEmpty()) {
      QFile f(dir.filePath("notes.txt"));
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(document.toUtf8());
      f.close();
      args << "--file" << f.fileName();
    }
    QProcess p;
    p.start(QString::fromStdString(folio::test::bin_dir() + "/folio-cli"), args);
    QVERIFY(p.waitForFinished(180000));
    const QString out = QString::fromUtf8(p.readAllStandardOutput());
    QCOMPARE(p.exitCode(), 0);
    QVERIFY2(out.contains(fact, Qt::CaseInsensitive), qPrintable("answer: " + out));
  }
};

QTEST_APPLESS_MAIN(SmolLM2Test)
#include "tst_smollm2.moc"
