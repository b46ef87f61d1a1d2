// The engine API as the app uses it: chunked prefill, cancellation, prefix reuse, stop
// conditions, streaming, metrics and memory accounting, context limits.
#include <QtTest>
#include <cmath>

#include "core/engine/engine.h"
#include "tests/test_support.h"

namespace {

std::string stories_path() { return folio::test::source_dir() + "/resources/models/stories260K/stories260K.bin"; }

std::unique_ptr<folio::Engine> load(const std::string& path) {
  folio::EngineOptions opts;
  opts.model_path = path;
  opts.threads = 2;
  return folio::Engine::load(opts);
}

double relative_error(std::span<const float> a, std::span<const float> b) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

std::vector<int32_t> story_prompt(const folio::Engine& e) {
  return e.tokenizer().encode(
      "Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend, a "
      "big red ball. One day the ball rolled into the pond and Max was sad. His friend the duck came to help.",
      true);
}

}  // namespace

class EngineTest : public QObject {
  Q_OBJECT

 private slots:
  // --kv-dtype fp8 / q8 on the CPU: keys and values rounded to FP8 E4M3 with a scale per token and
  // head, or to int8 blocks of 32 (the reference of the GPU's 8-bit cache). The logits stay near the
  // fp32 cache's, the KV type says so, and such a cache is not kept on disk.
  void eight_bit_kv_cache_on_the_cpu_data() {
    QTest::addColumn<int>("format");
    QTest::newRow("fp8") << static_cast<int>(folio::KvQuant::Fp8);
    QTest::newRow("q8") << static_cast<int>(folio::KvQuant::Q8);
  }
  void eight_bit_kv_cache_on_the_cpu() {
    QFETCH(int, format);
    const auto q = static_cast<folio::KvQuant>(format);
    FOLIO_REQUIRE_FILE(stories_path());
    folio::EngineOptions o;
    o.model_path = stories_path();
    o.threads = 2;
    auto exact = folio::Engine::load(o);
    o.kv_quant = q;
    auto fp8 = folio::Engine::load(o);
    QCOMPARE(QString::fromStdString(exact->kv_type()), QString("fp32"));
    QVERIFY(QString::fromStdString(fp8->kv_type()).startsWith(folio::kv_quant_name(q)));
    const auto prompt = story_prompt(*exact);
    auto a = exact->create_session({});
    auto b = fp8->create_session({});
    a->prefill(prompt);
    b->prefill(prompt);
    const double err = relative_error(b->logits(), a->logits());
    qInfo("stories260K, %zu-token prompt: %s KV logits against fp32 KV: relative %.3g", prompt.size(),
          folio::kv_quant_name(q), err);
    QVERIFY2(err > 0.0 && err < 0.05, qPrintable(QString("relative logit error %1").arg(err)));
    // (a 260K-parameter model is sensitive: greedy stories part after 9 tokens on 2026-12-05; the
    // accuracy measure is SmolLM2's perplexity, tst_smollm2 fp8_kv_cache_keeps_perplexity)
    std::vector<uint8_t> saved;
    QVERIFY(!b->save_prefix(8, [&](std::span<const uint8_t> s) {
      saved.insert(saved.end(), s.begin(), s.end());
      return true;
    }));
    QVERIFY(saved.empty());
  }

  void chunked_prefill_matches_one_chunk_data() {
    QTest::addColumn<QString>("model");
    QTest::newRow("stories260K") << QString::fromStdString(stories_path());
    QTest::newRow("qwen2 (bias, yarn)") << QString::fromStdString(folio::test::source_dir() +
                                                                  "/tests/fixtures/hf/qwen2_yarn_tied");
    QTest::newRow("phi3 (fused, longrope)") << QString::fromStdString(folio::test::source_dir() +
                                                                      "/tests/fixtures/hf/phi3_longrope");
  }

  void chunked_prefill_matches_one_chunk() {
    QFETCH(QString, model);
    FOLIO_REQUIRE_FILE(model.toStdString());
    auto engine = load(model.toStdString());
    std::vector<int32_t> prompt;
    for (int i = 0; i < 61; ++i) prompt.push_back(3 + (i * 37) % (engine->config().vocab_size - 3));
    folio::SessionOptions so;
    so.context_tokens = 64;
    auto whole = engine->create_session(so);
    folio::PrefillOptions one;
    one.chunk_tokens = 1000;
    whole->prefill(prompt, one);
    const std::vector<float> want(whole->logits().begin(), whole->logits().end());
    for (int64_t chunk : {1, 3, 16, 60}) {
      auto s = engine->create_session(so);
      folio::PrefillOptions po;
      po.chunk_tokens = chunk;
      int64_t events = 0;
      po.on_progress = [&](const folio::PrefillProgress& p) {
        ++events;
        QVERIFY(p.done_tokens <= p.total_tokens);
      };
      s->prefill(prompt, po);
      QCOMPARE(events, (static_cast<int64_t>(prompt.size()) + chunk - 1) / chunk);
      QCOMPARE(s->n_past(), static_cast<int64_t>(prompt.size()));
      const double err = relative_error(s->logits(), want);
      QVERIFY2(err < 1e-5, qPrintable(QString("chunk %1: relative error %2").arg(chunk).arg(err)));
    }
  }

  void cancel_mid_prefill_leaves_session_usable() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    const auto prompt = story_prompt(*engine);
    QVERIFY(prompt.size() > 40);

    auto reference = engine->create_session();
    folio::RequestOptions plain;
    plain.prefill.chunk_tokens = 8;
    plain.generate.max_tokens = 12;
    const auto want = reference->run(prompt, plain);

    auto session = engine->create_session();
    folio::CancelToken cancel;
    folio::RequestOptions req = plain;
    req.prefill.cancel = &cancel;
    req.prefill.on_progress = [&](const folio::PrefillProgress& p) {
      if (p.done_tokens >= 16) cancel.cancel();
    };
    const auto cancelled = session->run(prompt, req);
    QCOMPARE(cancelled.metrics.stop, folio::StopReason::Cancelled);
    QVERIFY(cancelled.tokens.empty());
    QCOMPARE(session->n_past(), int64_t{16});
    QVERIFY(session->logits().empty());

    // The same request again reuses the 16 tokens done and gives the uncancelled answer.
    cancel.reset();
    req.prefill.on_progress = nullptr;
    const auto again = session->run(prompt, req);
    QCOMPARE(again.metrics.reused_tokens, int64_t{16});
    QCOMPARE(again.metrics.prefill_tokens, static_cast<int64_t>(prompt.size()) - 16);
    QCOMPARE(again.tokens, want.tokens);
    QCOMPARE(again.text, want.text);
  }

  void low_level_prefill_cancel_throws_typed_error() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    auto session = engine->create_session();
    folio::CancelToken cancel;
    cancel.cancel();
    folio::PrefillOptions po;
    po.cancel = &cancel;
    try {
      session->prefill(story_prompt(*engine), po);
      QFAIL("a cancelled prefill must throw");
    } catch (const folio::Error& e) {
      QCOMPARE(e.code(), folio::ErrorCode::Cancelled);
    }
    QCOMPARE(session->n_past(), int64_t{0});
  }

  void prefix_is_kept_or_dropped() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    const auto first = story_prompt(*engine);
    auto second = first;
    for (int32_t t : engine->tokenizer().encode(" Then they went home.", false)) second.push_back(t);

    auto fresh = engine->create_session();
    folio::RequestOptions req;
    req.generate.max_tokens = 8;
    const auto want = fresh->run(second, req);

    auto session = engine->create_session();
    session->run(first, req);
    const auto kept = session->run(second, req);
    QCOMPARE(kept.metrics.reused_tokens, static_cast<int64_t>(first.size()));
    QCOMPARE(kept.metrics.prefill_tokens, static_cast<int64_t>(second.size() - first.size()));
    QCOMPARE(kept.tokens, want.tokens);

    req.keep_prefix = false;
    const auto dropped = session->run(second, req);
    QCOMPARE(dropped.metrics.reused_tokens, int64_t{0});
    QCOMPARE(dropped.metrics.prefill_tokens, static_cast<int64_t>(second.size()));
    QCOMPARE(dropped.tokens, want.tokens);

    // The very same prompt again: only its last token is run again.
    req.keep_prefix = true;
    const auto same = session->run(second, req);
    QCOMPARE(same.metrics.prefill_tokens, int64_t{1});
    QCOMPARE(same.tokens, want.tokens);
  }

  void stop_string_ends_before_it_is_shown() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    auto session = engine->create_session();
    folio::RequestOptions req;
    req.generate.max_tokens = 40;
    req.generate.stop_strings = {"Lily"};
    std::string streamed;
    req.generate.on_token = [&](int32_t, std::string_view text) { streamed += text; };
    const auto r = session->run(std::vector<int32_t>{1}, req);
    QCOMPARE(r.metrics.stop, folio::StopReason::StopString);
    QCOMPARE(QString::fromStdString(r.text), QString("Once upon a time, there was a little girl named "));
    QCOMPARE(streamed, r.text);
  }

  void stop_token_and_max_tokens() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    auto session = engine->create_session();
    folio::RequestOptions req;
    req.generate.max_tokens = 10;
    req.generate.stop_tokens = {407};  // the second greedy token
    auto r = session->run(std::vector<int32_t>{1}, req);
    QCOMPARE(r.metrics.stop, folio::StopReason::Eos);
    QCOMPARE(r.tokens, std::vector<int32_t>{403});

    req.generate.stop_tokens.clear();
    req.generate.max_tokens = 5;
    r = session->run(std::vector<int32_t>{1}, req);
    QCOMPARE(r.metrics.stop, folio::StopReason::MaxTokens);
    QCOMPARE(r.tokens.size(), size_t{5});
    QCOMPARE(r.metrics.decode_tokens, int64_t{5});
  }

  void context_limits_are_reported_not_truncated() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    folio::SessionOptions so;
    so.context_tokens = 12;
    auto session = engine->create_session(so);
    const auto prompt = story_prompt(*engine);
    try {
      session->run(prompt, {});
      QFAIL("a prompt longer than the context must be refused");
    } catch (const folio::Error& e) {
      QCOMPARE(e.code(), folio::ErrorCode::OutOfContext);
      QVERIFY(QString(e.what()).contains("context"));
    }
    QCOMPARE(session->n_past(), int64_t{0});
    folio::RequestOptions req;
    req.generate.max_tokens = 100;
    const auto r = session->run(std::vector<int32_t>(prompt.begin(), prompt.begin() + 5), req);
    QCOMPARE(r.metrics.stop, folio::StopReason::ContextFull);
    QCOMPARE(session->n_past(), int64_t{12});
    QCOMPARE(r.tokens.size(), size_t{8});
  }

  void metrics_and_memory_accounting() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    const auto& c = engine->config();
    folio::SessionOptions so;
    so.context_tokens = 256;
    auto session = engine->create_session(so);
    folio::RequestOptions req;
    req.generate.max_tokens = 6;
    const auto prompt = story_prompt(*engine);
    const auto r = session->run(prompt, req);
    const auto& m = r.metrics;
    QCOMPARE(m.prompt_tokens, static_cast<int64_t>(prompt.size()));
    QCOMPARE(m.prefill_tokens, static_cast<int64_t>(prompt.size()));
    QVERIFY(m.prefill_tok_s > 0.0);
    QVERIFY(m.ttft_ms > 0.0 && m.ttft_ms <= m.total_ms);
    QCOMPARE(m.decode_tokens, int64_t{6});
    QVERIFY(m.decode_tok_s > 0.0);
    QCOMPARE(m.memory.size(), size_t{1});
    QCOMPARE(QString::fromStdString(m.memory[0].device), QString("cpu"));
    // weights: every fp32 tensor of the checkpoint but the unused freq_cis table
    QCOMPARE(m.memory[0].weights_bytes, size_t{1056540 - 28 - 512 * 8 * 4});
    QCOMPARE(m.memory[0].kv_bytes, static_cast<size_t>(c.kv_bytes_per_token(4) * 256));
    QVERIFY(m.memory[0].scratch_bytes > 0);
    session.reset();
    QCOMPARE(engine->memory()[0].kv_bytes, size_t{0});
    // What fits: the trained context at most, and never more than half the available memory's
    // worth of fp32 KV (stories260K's KV is tiny: its trained context of 512 is the bound here)
    QCOMPARE(QString::fromStdString(engine->kv_type()), QString("fp32"));
    QVERIFY(engine->largest_context() > 0);
    QVERIFY(engine->largest_context() <= (c.max_context > 0 ? c.max_context : 8192));
  }

  void sampling_is_reproducible_with_a_seed() {
    FOLIO_REQUIRE_FILE(stories_path());
    auto engine = load(stories_path());
    folio::RequestOptions req;
    req.generate.max_tokens = 30;
    req.generate.sampler.temperature = 1.0f;
    req.generate.sampler.top_p = 0.95f;
    req.generate.sampler.seed = 7;
    auto a = engine->create_session()->run(std::vector<int32_t>{1}, req);
    auto b = engine->create_session()->run(std::vector<int32_t>{1}, req);
    QCOMPARE(a.tokens, b.tokens);
    req.generate.sampler.seed = 8;
    auto c = engine->create_session()->run(std::vector<int32_t>{1}, req);
    QVERIFY(a.tokens != c.tokens);
  }
};

QTEST_APPLESS_MAIN(EngineTest)
#include "tst_engine.moc"
