// Tensor parallel on the CPU (issue 21's split logic before a multi-GPU machine): the model split
// over N ranks (threads, a host all-reduce) gives the logits of one rank within fp32 rounding, on
// the HF fixtures, stories260K and SmolLM2 (GGUF Q4_1), for prefill, decode and sparse prefill;
// the layout's rules and errors; the KV cache each rank holds and its copy to and from the file layout.
#include <QtTest>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "core/common/error.h"
#include "core/cpu/cpu_backend.h"
#include "core/engine/engine.h"
#include "core/engine/forward.h"
#include "core/engine/tensor_parallel.h"
#include "core/model/model_loader.h"
#include "tests/test_support.h"

namespace {

// Logits of every position of a prefill, then of each decode step.
class AllLogits final : public folio::ForwardObserver {
 public:
  bool wants_all_logits() const override { return true; }
  void on_logits(int64_t, int64_t rows, const float* logits) override {
    all.insert(all.end(), logits, logits + static_cast<size_t>(rows) * width);
  }
  size_t width = 0;  // the vocabulary
  std::vector<float> all;
};

struct Run {
  std::vector<float> logits;  // [positions][vocab]: the prompt's, then each decode step's
  std::vector<folio::HeadPlanResult> plans;
  folio::AttentionStats stats;
};

// Prefill `prompt` in chunks of `chunk`, then `decode` greedy steps, on `backend`.
Run run(folio::Backend& backend, const std::vector<int32_t>& prompt, int decode, int64_t chunk,
        const folio::AttentionPolicy& policy) {
  const folio::ModelConfig& c = backend.config();
  auto kv = backend.create_kv_cache(static_cast<int64_t>(prompt.size()) + decode);
  const folio::RopeTable rope = folio::make_rope_table(c.rope, kv->capacity());
  AllLogits obs;
  obs.width = static_cast<size_t>(c.vocab_size);
  Run r;
  std::vector<float> last(static_cast<size_t>(c.vocab_size));
  for (size_t done = 0; done < prompt.size(); done += static_cast<size_t>(chunk)) {
    const size_t n = std::min(prompt.size() - done, static_cast<size_t>(chunk));
    folio::forward(backend, *kv, std::span<const int32_t>(prompt).subspan(done, n), static_cast<int64_t>(done), rope,
                   policy, r.stats, &obs, last.data());
    if (r.stats.sparse_chunks > 0 && r.plans.empty()) backend.plan_results(r.plans);
  }
  int64_t pos = static_cast<int64_t>(prompt.size());
  for (int s = 0; s < decode; ++s, ++pos) {
    const int32_t next = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    const int32_t token[1] = {next};
    folio::forward(backend, *kv, token, pos, rope, policy, r.stats, &obs, last.data());
  }
  r.logits = std::move(obs.all);
  return r;
}

// max |a - b| over max |b|, and the share of rows whose argmax agrees.
std::pair<double, double> compare(const std::vector<float>& got, const std::vector<float>& want, size_t vocab) {
  double diff = 0.0, scale = 0.0;
  size_t same = 0, rows = want.size() / vocab;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(got[i]) - want[i]));
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
  }
  for (size_t r = 0; r < rows; ++r) {
    auto a = got.begin() + static_cast<std::ptrdiff_t>(r * vocab), b = want.begin() + static_cast<std::ptrdiff_t>(r * vocab);
    same += std::max_element(a, a + static_cast<std::ptrdiff_t>(vocab)) - a ==
            std::max_element(b, b + static_cast<std::ptrdiff_t>(vocab)) - b;
  }
  return {diff / scale, rows > 0 ? double(same) / double(rows) : 1.0};
}

using folio::test::smollm2_path;

std::string model_path(const QString& name) {
  if (name == "stories260K") return folio::test::shared_models() + "/stories260K.bin";
  if (name == "smollm2") return smollm2_path();
  return folio::test::source_dir() + "/tests/fixtures/hf/" + name.toStdString();
}

// A prompt of `n` ids spread over the vocabulary (seeded), so every position differs.
std::vector<int32_t> prompt_of(int n, int32_t vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  uint32_t s = 12345;
  for (auto& t : p) {
    s = s * 1664525u + 1013904223u;
    t = static_cast<int32_t>(3 + (s >> 8) % static_cast<uint32_t>(vocab - 3));
  }
  return p;
}

// The model with every matrix dequantized to fp32 (the CPU then runs the fp32 products, with no
// rounding of the activations to 8 bits).
std::shared_ptr<const folio::LoadedModel> dequantized(const std::shared_ptr<const folio::LoadedModel>& q) {
  auto f = std::make_shared<folio::LoadedModel>();
  f->config = q->config;
  f->whole = q;
  auto to_f32 = [&](const folio::TensorView& t) {
    if (t.empty() || t.dtype == folio::DType::F32) return t;
    std::vector<float> v(static_cast<size_t>(t.numel()));
    for (int64_t r = 0; r < t.rows; ++r) folio::row_to_f32(t, r, v.data() + r * t.cols);
    return f->own_f32(std::move(v), t.rows, t.cols);
  };
  f->weights.tok_embd = to_f32(q->weights.tok_embd);
  f->weights.out_norm = q->weights.out_norm;
  f->weights.output = q->weights.output.data == q->weights.tok_embd.data ? f->weights.tok_embd : to_f32(q->weights.output);
  for (const folio::LayerWeights& L : q->weights.layers) {
    folio::LayerWeights d = L;
    for (folio::TensorView* t : {&d.wq, &d.wk, &d.wv, &d.wo, &d.w_gate, &d.w_up, &d.w_down}) *t = to_f32(*t);
    f->weights.layers.push_back(d);
  }
  return f;
}

}  // namespace

class TensorParallelTest : public QObject {
  Q_OBJECT

 private slots:
  // Heads split evenly; KV heads split, or copied to the ranks that read them; clear errors.
  void layout_rules() {
    folio::LoadedModel m;
    folio::ModelConfig& c = m.config;
    c.n_heads = 32;
    c.n_kv_heads = 8;
    c.head_dim = 128;
    c.ffn_hidden = 14336;
    folio::LayerWeights L;
    L.wo.dtype = folio::DType::BF16;
    L.w_down.dtype = folio::DType::BF16;
    m.weights.layers.assign(2, L);
    auto t = folio::plan_tensor_parallel(m, 2);
    QCOMPARE(t.heads_per_rank, 16);
    QCOMPARE(t.kv_heads_per_rank, 4);
    QCOMPARE(t.kv_replicas, 1);
    QCOMPARE(t.first_kv_head(1), 4);
    QCOMPARE(t.ffn_begin, (std::vector<int64_t>{0, 7168, 14336}));
    t = folio::plan_tensor_parallel(m, 16);  // 8 KV heads over 16 ranks: each on 2 ranks
    QCOMPARE(t.heads_per_rank, 2);
    QCOMPARE(t.kv_heads_per_rank, 1);
    QCOMPARE(t.kv_replicas, 2);
    QCOMPARE(t.first_kv_head(5), 2);
    QVERIFY(t.owns_kv(4) && !t.owns_kv(5));
    // the query heads of rank r read KV head r / replicas: head h reads h / (32 / 8)
    for (int r = 0; r < 16; ++r)
      for (int h = t.first_head(r); h < t.first_head(r) + t.heads_per_rank; ++h) QCOMPARE(h / 4, t.first_kv_head(r));
    auto refused = [&](int ranks, const char* words) {
      try {
        folio::plan_tensor_parallel(m, ranks);
      } catch (const folio::Error& e) {
        QCOMPARE(e.code(), folio::ErrorCode::BadArgument);
        if (!QString(e.what()).contains(words)) QFAIL(qPrintable(QString("message: %1").arg(e.what())));
        return;
      }
      QFAIL(qPrintable(QString("%1 ranks were accepted").arg(ranks)));
    };
    refused(3, "32 query heads cannot be split evenly over 3 ranks");
    refused(0, "at least one rank");
    c.n_kv_heads = 12;
    c.n_heads = 24;
    refused(8, "12 KV heads cannot be split evenly over 8 ranks");
    // K-quant down projection: MLP columns in whole 256-value blocks, as even as they allow
    c.n_kv_heads = 8;
    c.n_heads = 32;
    for (auto& l : m.weights.layers) l.w_down.dtype = folio::DType::Q4_K;
    c.ffn_hidden = 14336;  // 56 blocks
    t = folio::plan_tensor_parallel(m, 8);
    QCOMPARE(t.ffn_begin[1], int64_t{7 * 256});
    c.n_heads = 24;  // 3 ranks: 56 blocks as 18, 19, 19
    c.n_kv_heads = 3;
    t = folio::plan_tensor_parallel(m, 3);
    QCOMPARE(t.ffn_begin, (std::vector<int64_t>{0, 18 * 256, 37 * 256, 56 * 256}));
    c.n_heads = 64;  // 2 heads of 64 values per rank of 32: 128 columns, half a Q6_K block
    c.head_dim = 64;
    c.n_kv_heads = 32;
    for (auto& l : m.weights.layers) l.wo.dtype = folio::DType::Q6_K;
    refused(32, "not whole blocks");
  }

  void matches_one_rank_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<int>("ranks");
    QTest::addColumn<int>("prompt");
    QTest::newRow("stories260K x2") << "stories260K" << 2 << 200;
    QTest::newRow("stories260K x4") << "stories260K" << 4 << 200;
    QTest::newRow("llama3_scaled x2 (1 KV head copied)") << "llama3_scaled" << 2 << 40;
    QTest::newRow("llama3_scaled x4 (1 KV head copied)") << "llama3_scaled" << 4 << 40;
    QTest::newRow("mistral_sharded x2") << "mistral_sharded" << 2 << 40;
    QTest::newRow("mistral_sharded x4 (KV heads copied)") << "mistral_sharded" << 4 << 40;
    QTest::newRow("qwen2_yarn_tied x2 (qkv bias)") << "qwen2_yarn_tied" << 2 << 40;
    QTest::newRow("phi3_longrope x2 (fused weights)") << "phi3_longrope" << 2 << 40;
    QTest::newRow("llama_linear_tied x2") << "llama_linear_tied" << 2 << 40;
    QTest::newRow("smollm2 x3 (GGUF Q4_1 dequantized)") << "smollm2" << 3 << 96;
  }

  // Prefill in chunks (several steps), then decode: every position's logits against one rank.
  void matches_one_rank() {
    QFETCH(QString, model);
    QFETCH(int, ranks);
    QFETCH(int, prompt);
    const std::string path = model_path(model);
    FOLIO_REQUIRE_FILE(path);
    std::shared_ptr<const folio::LoadedModel> m = folio::load_model(path);
    // Quantized weights round the activations to 8 bits, where a last-bit difference of the
    // split's sums can flip a rounding (quantized_split_adds_no_error measures that): this
    // comparison runs their fp32 products.
    if (m->format == folio::ModelFormat::Gguf) m = dequantized(m);
    auto one = folio::create_cpu_backend(m, 2);
    auto split = folio::create_cpu_tensor_parallel_backend(m, ranks, 2);
    QVERIFY(split->name().find("tensor parallel over " + std::to_string(ranks) + " ranks") != std::string::npos);
    const auto tokens = prompt_of(prompt, m->config.vocab_size);
    const folio::AttentionPolicy dense;
    const Run a = run(*one, tokens, 6, 32, dense);
    const Run b = run(*split, tokens, 6, 32, dense);
    QCOMPARE(b.logits.size(), a.logits.size());
    QCOMPARE(a.logits.size(), static_cast<size_t>(prompt + 6) * static_cast<size_t>(m->config.vocab_size));
    const auto [err, agree] = compare(b.logits, a.logits, static_cast<size_t>(m->config.vocab_size));
    qInfo("%s over %d ranks: relative logit error %.3g, argmax agrees at %.1f%% of %d positions", qPrintable(model),
          ranks, err, 100.0 * agree, prompt + 6);
    QVERIFY2(err < 1e-4, qPrintable(QString("relative logit error %1").arg(err)));
    QVERIFY2(agree >= 0.99, qPrintable(QString("argmax agrees at %1").arg(agree)));
    // each rank holds its share of the KV cache: 1/N of it, or one copied KV head per rank
    auto kv_one = one->create_kv_cache(256);
    auto kv_split = split->create_kv_cache(256);
    const auto layout = folio::plan_tensor_parallel(*m, ranks);
    QCOMPARE(kv_split->bytes(), kv_one->bytes() / static_cast<size_t>(m->config.n_kv_heads) *
                                    static_cast<size_t>(layout.kv_heads_per_rank * ranks));
    const auto mem = split->memory();
    QCOMPARE(mem.size(), static_cast<size_t>(ranks));
    QCOMPARE(QString::fromStdString(mem.back().device), QString("cpu rank %1").arg(ranks - 1));
    QCOMPARE(mem[0].kv_bytes, kv_split->bytes() / static_cast<size_t>(ranks));
  }

  // With quantized weights the split's logits differ from one rank's by more than fp32 rounding
  // (8-bit activations: a last-bit difference flips a rounding, and the flips add up over the
  // layers), but no more than one rank's own differ from the fp32 products: splitting adds no
  // error of its own.
  void quantized_split_adds_no_error() {
    const std::string path = smollm2_path();
    FOLIO_REQUIRE_FILE(path);
    std::shared_ptr<const folio::LoadedModel> q = folio::load_model(path);
    const size_t vocab = static_cast<size_t>(q->config.vocab_size);
    const auto tokens = prompt_of(96, q->config.vocab_size);
    const folio::AttentionPolicy dense;
    auto exact = folio::create_cpu_backend(dequantized(q), 2);
    auto one = folio::create_cpu_backend(q, 2);
    auto split = folio::create_cpu_tensor_parallel_backend(q, 3, 2);
    const Run f = run(*exact, tokens, 4, 32, dense);
    const Run a = run(*one, tokens, 4, 32, dense);
    const Run b = run(*split, tokens, 4, 32, dense);
    const auto [err_one, agree_one] = compare(a.logits, f.logits, vocab);
    const auto [err_split, agree_split] = compare(b.logits, f.logits, vocab);
    const auto [err_between, agree_between] = compare(b.logits, a.logits, vocab);
    qInfo("SmolLM2 Q4_1 against its fp32 products: one rank %.3g (argmax %.1f%%), 3 ranks %.3g (argmax %.1f%%); "
          "3 ranks against one %.3g (argmax %.1f%%)", err_one, 100 * agree_one, err_split, 100 * agree_split,
          err_between, 100 * agree_between);
    QVERIFY2(err_split <= 1.5 * err_one, "the split adds logit error of its own");
    QVERIFY2(agree_split >= agree_one - 0.05, "the split's argmax leaves the fp32 products' more often than one rank's");
  }

  // Sparse prefill per rank on its own heads: the plans of the whole model's heads come back in
  // order, and the logits match one rank's sparse prefill.
  void sparse_prefill_per_rank() {
    const std::string path = model_path("stories260K");
    FOLIO_REQUIRE_FILE(path);
    std::shared_ptr<const folio::LoadedModel> m = folio::load_model(path);
    auto one = folio::create_cpu_backend(m, 2);
    auto split = folio::create_cpu_tensor_parallel_backend(m, 2, 2);
    folio::AttentionPolicy policy;
    policy.mode = folio::sparse::AttentionMode::Sparse;
    auto cfg = std::make_shared<folio::sparse::SparseConfig>();
    cfg->last_queries = 16;
    // heads of one layer with different patterns, so a rank given another's budgets would differ
    cfg->layers.assign(static_cast<size_t>(m->config.n_layers), {});
    for (int h = 0; h < m->config.n_heads; ++h) {
      folio::sparse::HeadBudget b = cfg->default_head;
      b.pattern = h % 2 == 0 ? folio::sparse::Pattern::IntervalSlash : folio::sparse::Pattern::Triangular;
      cfg->layers[1].push_back(b);
    }
    policy.config = cfg;
    const auto tokens = prompt_of(448, m->config.vocab_size);
    const Run a = run(*one, tokens, 2, 448, policy);
    const Run b = run(*split, tokens, 2, 448, policy);
    QVERIFY(a.stats.sparse_chunks == 1 && b.stats.sparse_chunks == 1);
    QCOMPARE(b.plans.size(), a.plans.size());
    QCOMPARE(b.plans.size(), static_cast<size_t>(m->config.n_layers * m->config.n_heads));
    for (size_t i = 0; i < a.plans.size(); ++i) QCOMPARE(b.plans[i].computed, a.plans[i].computed);
    QCOMPARE(b.stats.tiles_computed, a.stats.tiles_computed);
    QVERIFY(a.stats.density() < 1.0);
    const auto [err, agree] = compare(b.logits, a.logits, static_cast<size_t>(m->config.vocab_size));
    QVERIFY2(err < 1e-4, qPrintable(QString("relative logit error %1").arg(err)));
    QVERIFY(agree >= 0.99);
  }

  // KV to and from the file's layout ([KV head][rows][hd], the whole model's): what a split cache
  // writes equals one rank's cache, and a split cache restored from it continues identically.
  void kv_copy_in_file_layout_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<int>("ranks");
    QTest::newRow("stories260K x4 (KV heads split)") << "stories260K" << 4;
    QTest::newRow("mistral_sharded x4 (KV heads copied)") << "mistral_sharded" << 4;
  }
  void kv_copy_in_file_layout() {
    QFETCH(QString, model);
    QFETCH(int, ranks);
    const std::string path = model_path(model);
    FOLIO_REQUIRE_FILE(path);
    std::shared_ptr<const folio::LoadedModel> m = folio::load_model(path);
    const folio::ModelConfig& c = m->config;
    auto one = folio::create_cpu_backend(m, 2);
    auto split = folio::create_cpu_tensor_parallel_backend(m, ranks, 2);
    QCOMPARE(split->kv_element_bytes(), one->kv_element_bytes());
    const auto tokens = prompt_of(50, c.vocab_size);
    const int64_t n = 50, rows = 64, cap = 64;
    const folio::AttentionPolicy dense;
    folio::AttentionStats stats;
    auto kv1 = one->create_kv_cache(cap), kv2 = split->create_kv_cache(cap);
    const folio::RopeTable rope = folio::make_rope_table(c.rope, cap);
    folio::forward(*one, *kv1, tokens, 0, rope, dense, stats, nullptr, nullptr);
    folio::forward(*split, *kv2, tokens, 0, rope, dense, stats, nullptr, nullptr);
    const size_t floats = static_cast<size_t>(c.n_kv_heads * rows * c.head_dim);
    auto kv3 = split->create_kv_cache(cap);
    for (int layer = 0; layer < c.n_layers; ++layer)
      for (int tensor = 0; tensor < 2; ++tensor) {
        std::vector<float> a(floats, -1.0f), b(floats, -1.0f);
        one->copy_kv(*kv1, layer, tensor, n, rows, a.data(), false, 0);
        split->copy_kv(*kv2, layer, tensor, n, rows, b.data(), false, 0);
        one->wait_kv(0);
        split->wait_kv(0);
        double diff = 0.0, scale = 0.0;
        for (size_t i = 0; i < floats; ++i) {
          diff = std::max(diff, std::abs(double(a[i]) - b[i]));
          scale = std::max(scale, std::abs(double(a[i])));
        }
        QVERIFY2(diff <= 1e-4 * scale, qPrintable(QString("layer %1: KV differs by %2").arg(layer).arg(diff / scale)));
        split->copy_kv(*kv3, layer, tensor, n, rows, b.data(), true, 1);
        split->wait_kv(1);
      }
    // the restored split cache continues as the one that computed the prompt
    std::vector<float> l2(static_cast<size_t>(c.vocab_size)), l3(l2.size());
    const int32_t next[1] = {7};
    folio::forward(*split, *kv2, next, n, rope, dense, stats, nullptr, l2.data());
    folio::forward(*split, *kv3, next, n, rope, dense, stats, nullptr, l3.data());
    QVERIFY(l2 == l3);
  }

  // The engine and folio-cli's --cpu-ranks: a session runs on the split model end to end.
  void engine_runs_split() {
    const std::string path = model_path("stories260K");
    FOLIO_REQUIRE_FILE(path);
    folio::EngineOptions o;
    o.model_path = path;
    o.tokenizer_path = folio::test::shared_models() + "/tok512.bin";
    o.threads = 2;
    std::vector<std::vector<int32_t>> out;
    for (int ranks : {1, 2}) {
      o.cpu_ranks = ranks;
      auto engine = folio::Engine::load(o);
      QCOMPARE(engine->backend_name().find("tensor parallel") != std::string::npos, ranks > 1);
      QVERIFY(engine->largest_context() > 0);
      auto session = engine->create_session({});
      session->prefill(std::vector<int32_t>{1});
      folio::GenerateOptions g;
      g.max_tokens = 24;
      g.sampler.temperature = 0.0f;
      out.push_back(session->generate(g).tokens);
    }
    // stories260K's golden greedy ids (llama2.c's reference), on one rank and two
    const std::vector<int32_t> golden{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                                      395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292};
    QCOMPARE(out[0], golden);
    QCOMPARE(out[1], golden);
    // several GPUs asked for by name where they cannot be used: refused with the reason, not run
    // on the CPU or on one GPU instead
    o.cpu_ranks = 1;
    o.backend = folio::BackendKind::Cuda;
    o.gpu_devices = {0, 1};
    try {
      folio::Engine::load(o);
      QFAIL("--gpus 0,1 ran without two usable GPUs");
    } catch (const folio::Error& e) {
      QVERIFY2(QString(e.what()).contains("cannot be laid across 2 GPUs (0,1)"), e.what());
    }
    o.backend = folio::BackendKind::Cpu;
    o.gpu_devices.clear();
    o.cpu_ranks = 3;
    try {
      folio::Engine::load(o);
      QFAIL("3 ranks of 8 heads were accepted");
    } catch (const folio::Error& e) {
      QVERIFY(QString(e.what()).contains("8 query heads cannot be split evenly over 3 ranks"));
    }
  }
};

QTEST_GUILESS_MAIN(TensorParallelTest)
#include "tst_tensor_parallel.moc"
