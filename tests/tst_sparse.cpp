// Sparse prefill's CPU reference (core/attention/sparse.h): heads with planted structure (sinks,
// a local band, vertical stripes, a slash line, clustered blocks) are recovered, keep >= 95% of
// the attention mass and give outputs within 2e-2 of dense; an unstructured head drives the
// adaptive budget to its maximum and reports the mass target missed; tile lists equal a
// brute-force set construction; with every tile listed sparse attention equals dense exactly.
#include <QtTest>
#include <cmath>
#include <random>
#include <set>

#include "core/attention/sparse.h"
#include "core/common/error.h"
#include "core/common/mapped_file.h"
#include "core/engine/chat_prompt.h"
#include "core/engine/engine.h"
#include "tests/test_support.h"
#include "core/common/thread_pool.h"
#include "core/cpu/cpu_ops.h"

using namespace folio;
using namespace folio::sparse;

namespace {

std::vector<float> normal(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// A head whose attention is planted exactly: each key with a role gets a one-hot slot, and each
// query sums the n_slots of the keys it should attend (score s / sqrt(hd) on those, ~0 elsewhere).
struct PlantedHead {
  int64_t n, pos0, kv_len;
  int hd;
  std::vector<float> q, k, v;
  std::vector<std::pair<int, int>> planted_tiles;  // (query tile, key tile)
};

PlantedHead make_planted(int64_t n, int64_t pos0, int band, int slash_offset, std::vector<int64_t> verticals) {
  PlantedHead h;
  h.n = n;
  h.pos0 = pos0;
  h.kv_len = pos0 + n;
  std::vector<int> slot(static_cast<size_t>(h.kv_len), -1);
  int n_slots = 0;
  auto need = [&](int64_t j) {
    if (j >= 0 && slot[static_cast<size_t>(j)] < 0) slot[static_cast<size_t>(j)] = n_slots++;
  };
  for (int64_t j = 0; j < 4; ++j) need(j);  // sinks
  for (int64_t j : verticals) need(j);
  for (int64_t p = pos0; p < h.kv_len; ++p) {
    for (int d = 0; d <= band; ++d) need(p - d);
    for (int d = slash_offset; d <= slash_offset + band; ++d) need(p - d);
  }
  const int noise_dims = 16;
  h.hd = n_slots + noise_dims;
  const float s = 8.0f * std::sqrt(static_cast<float>(h.hd));  // planted score 8
  h.k.assign(static_cast<size_t>(h.kv_len * h.hd), 0.0f);
  auto kn = normal(static_cast<size_t>(h.kv_len * noise_dims), 5, 1.0f);
  for (int64_t j = 0; j < h.kv_len; ++j) {
    if (slot[static_cast<size_t>(j)] >= 0) h.k[static_cast<size_t>(j * h.hd + slot[static_cast<size_t>(j)])] = 1.0f;
    for (int d = 0; d < noise_dims; ++d) h.k[static_cast<size_t>(j * h.hd + n_slots + d)] = kn[static_cast<size_t>(j * noise_dims + d)];
  }
  h.q.assign(static_cast<size_t>(n * h.hd), 0.0f);
  auto qn = normal(static_cast<size_t>(n * noise_dims), 6, 1.0f);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t p = pos0 + r;
    float* row = h.q.data() + r * h.hd;
    auto attend = [&](int64_t j) {
      if (j >= 0 && j <= p) row[slot[static_cast<size_t>(j)]] = s;
    };
    for (int64_t j = 0; j < 4; ++j) attend(j);
    for (int64_t j : verticals) attend(j);
    for (int d = 0; d <= band; ++d) attend(p - d);
    for (int d = slash_offset; d <= slash_offset + band; ++d) attend(p - d);
    for (int d = 0; d < noise_dims; ++d) row[n_slots + d] = qn[static_cast<size_t>(r * noise_dims + d)];
  }
  h.v = normal(static_cast<size_t>(h.kv_len * h.hd), 7, 1.0f);
  // the planted tiles: every (query tile, key tile) holding a planted (query, key) pair
  std::set<std::pair<int, int>> tiles;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t p = pos0 + r;
    const int i = static_cast<int>(r / kQueryTile);
    auto add = [&](int64_t j) {
      if (j >= 0 && j <= p) tiles.insert({i, static_cast<int>(j / kKeyTile)});
    };
    for (int64_t j = 0; j < 4; ++j) add(j);
    for (int64_t j : verticals) add(j);
    for (int d = 0; d <= band; ++d) add(p - d);
    for (int d = slash_offset; d <= slash_offset + band; ++d) add(p - d);
  }
  h.planted_tiles.assign(tiles.begin(), tiles.end());
  return h;
}

bool listed(const TileList& l, int i, int t) {
  for (int32_t x = l.offsets[static_cast<size_t>(i)]; x < l.offsets[static_cast<size_t>(i) + 1]; ++x)
    if (l.tiles[static_cast<size_t>(x)] == t) return true;
  return false;
}

double recovered(const PlantedHead& h, const TileList& l) {
  int hit = 0;
  for (auto [i, t] : h.planted_tiles) hit += listed(l, i, t) ? 1 : 0;
  return static_cast<double>(hit) / static_cast<double>(h.planted_tiles.size());
}

// Well-formed: ascending, unique, causal, and the first and diagonal tiles always there.
void check_well_formed(const TileList& l) {
  QCOMPARE(l.n_qtiles(), static_cast<int>((l.n + kQueryTile - 1) / kQueryTile));
  for (int i = 0; i < l.n_qtiles(); ++i) {
    const int32_t b = l.offsets[static_cast<size_t>(i)], e = l.offsets[static_cast<size_t>(i) + 1];
    QVERIFY(e > b);
    for (int32_t x = b + 1; x < e; ++x) QVERIFY(l.tiles[static_cast<size_t>(x)] > l.tiles[static_cast<size_t>(x) - 1]);
    QVERIFY(l.tiles[static_cast<size_t>(e) - 1] <= last_key_tile(l.n, l.pos0, i));
    QCOMPARE(l.tiles[static_cast<size_t>(b)], 0);
    const int64_t first_q = l.pos0 + static_cast<int64_t>(i) * kQueryTile;
    for (int64_t t = first_q / kKeyTile; t <= last_key_tile(l.n, l.pos0, i); ++t) QVERIFY(listed(l, i, static_cast<int>(t)));
  }
}

// A backend that only answers where its sparse path pays (the auto rule reads nothing else).
class GainOnlyBackend final : public Backend {
 public:
  GainOnlyBackend(BackendKind kind, int64_t gain_keys) : kind_(kind), gain_(gain_keys) {}
  BackendKind kind() const override { return kind_; }
  std::string name() const override { return "test"; }
  const ModelConfig& config() const override { return config_; }
  int64_t max_step() const override { return 4096; }
  int64_t preferred_chunk() const override { return 4096; }
  int64_t sparse_gain_keys() const override { return gain_; }
  std::unique_ptr<KvCache> create_kv_cache(int64_t) override { return nullptr; }
  std::vector<DeviceMemory> memory() const override { return {}; }
  void embed(std::span<const int32_t>) override {}
  void norm(Norm, int, int64_t) override {}
  void project(Proj, int, int64_t) override {}
  void rope_kv_write(int, KvCache&, int64_t, int64_t, const RopeTable&) override {}
  SparseSupport sparse_support(const SparseConfig&, int64_t) const override { return {}; }
  void estimate(int, KvCache&, int64_t, int64_t, const std::shared_ptr<const SparseConfig>&) override {}
  void attention(int, KvCache&, int64_t, int64_t, bool) override {}
  void swiglu(int64_t) override {}
  void logits(int64_t, int64_t, float*) override {}
  void finish_step() override {}
  void plan_results(std::vector<HeadPlanResult>&) override {}
  void mark(int) override {}
  double elapsed_ms(int, int) override { return 0.0; }
  void read_attention_inputs(int, KvCache&, int64_t, int64_t, AttentionInputs&) override {}

 private:
  BackendKind kind_;
  int64_t gain_;
  ModelConfig config_;
};

// Counts what a session shows an observer.
class Recorder final : public ForwardObserver {
 public:
  bool wants_attention_inputs() const override { return true; }
  void on_attention_inputs(int layer, const AttentionInputs& in) override { inputs.push_back({layer, in}); }
  bool wants_all_logits() const override { return true; }
  void on_logits(int64_t pos, int64_t rows, const float* logits) override {
    QCOMPARE(pos, logits_rows);
    logits_rows += rows;
    last.assign(logits + (rows - 1) * vocab, logits + rows * vocab);
  }
  void on_step(const StepInfo& step) override { steps.push_back(step); }
  int64_t vocab = 0, logits_rows = 0;
  std::vector<float> last;
  std::vector<std::pair<int, AttentionInputs>> inputs;
  std::vector<StepInfo> steps;
};

// Sample sums with no structure (exponential noise around half the sample's mass spread evenly):
// the budget then runs to whatever caps it.
std::pair<std::vector<float>, std::vector<float>> flat_sums(int64_t kv_len, int64_t rows, unsigned seed) {
  std::vector<float> col(static_cast<size_t>(kv_len)), diag(static_cast<size_t>(kv_len));
  std::mt19937 rng(seed);
  std::exponential_distribution<float> ex(1.0f);
  for (int64_t j = 0; j < kv_len; ++j) {
    col[static_cast<size_t>(j)] = ex(rng) * rows / static_cast<float>(2 * kv_len);
    diag[static_cast<size_t>(j)] = ex(rng) * rows / static_cast<float>(2 * kv_len);
  }
  return {std::move(col), std::move(diag)};
}

}  // namespace

class SparseTest : public QObject {
  Q_OBJECT

 private slots:
  // Auto attention is one rule on every backend: sparse from the larger of the model config's
  // crossover and the keys from which the backend's sparse path measured faster than its dense one.
  void auto_attention_is_one_rule() {
    AttentionPolicy p;
    p.mode = AttentionMode::Auto;
    auto cfg = std::make_shared<SparseConfig>();
    cfg->crossover_tokens = 16384;
    p.config = cfg;
    const GainOnlyBackend gpu_like(BackendKind::Cuda, 4096), cpu_like(BackendKind::Cpu, INT64_MAX),
        late(BackendKind::Cuda, 32768);
    QCOMPARE(auto_sparse_keys(p, gpu_like), int64_t{16384});
    QCOMPARE(auto_sparse_keys(p, late), int64_t{32768});
    QVERIFY(!use_sparse(p, gpu_like, 4096, 8192));   // 12K keys: below the crossover
    QVERIFY(use_sparse(p, gpu_like, 4096, 12288));   // 16K keys
    QVERIFY(!use_sparse(p, late, 4096, 12288));      // the backend gains only from 32K
    QVERIFY(!use_sparse(p, cpu_like, 4096, 1 << 20));
    QVERIFY(!use_sparse(p, gpu_like, 1, 1 << 20));   // decode stays dense
    p.mode = AttentionMode::Sparse;
    QVERIFY(use_sparse(p, cpu_like, 64, 0));         // forced sparse runs anywhere
    p.mode = AttentionMode::Dense;
    QVERIFY(!use_sparse(p, gpu_like, 4096, 1 << 20));
    // the CPU engine reports the same rule's answer
    EngineOptions eo;
    eo.model_path = folio::test::source_dir() + "/resources/models/stories260K/stories260K.bin";
    eo.threads = 1;
    auto engine = Engine::load(eo);
    QCOMPARE(engine->auto_sparse_tokens(), INT64_MAX);
  }

  // A crossover measured on a backend (folio-sparse crossover) replaces the rule there, and only
  // there: sparse from its length, or never where sparse measured no gain.
  void a_measured_crossover_decides_on_its_backend() {
    QCOMPARE(crossover_from_points({{2048, 10, 11}, {4096, 20, 19}, {8192, 40, 30}}), int64_t{4096});
    QCOMPARE(crossover_from_points({{8192, 40, 30}, {2048, 10, 9}, {4096, 20, 21}}), int64_t{8192});  // any order
    QCOMPARE(crossover_from_points({{2048, 10, 9}, {4096, 20, 21}}), int64_t{0});  // slower at the longest
    QCOMPARE(crossover_from_points({{2048, 10, 9}, {4096, 20, 19}}), int64_t{2048});
    QCOMPARE(crossover_from_points({}), int64_t{0});
    AttentionPolicy p;
    p.mode = AttentionMode::Auto;
    auto cfg = std::make_shared<SparseConfig>();
    cfg->crossover_tokens = 16384;
    MeasuredCrossover cpu;
    cpu.backend = "cpu";
    cpu.tokens = 2048;
    cpu.up_to = 4096;
    cfg->set_measured_crossover(cpu);
    p.config = cfg;
    const GainOnlyBackend gpu_like(BackendKind::Cuda, 4096), cpu_like(BackendKind::Cpu, INT64_MAX);
    QCOMPARE(auto_sparse_keys(p, cpu_like), int64_t{2048});
    QVERIFY(use_sparse(p, cpu_like, 1024, 1024));
    QCOMPARE(auto_sparse_keys(p, gpu_like), int64_t{16384});  // no measurement on the GPU: the rule
    MeasuredCrossover none;
    none.backend = "cuda";
    none.tokens = 0;  // sparse was not faster at up_to
    none.up_to = 65536;
    none.device = "GPU 0 Test Card";
    cfg->set_measured_crossover(none);
    QCOMPARE(cfg->measured.size(), size_t{2});
    QCOMPARE(auto_sparse_keys(p, gpu_like), INT64_MAX);
    cpu.tokens = 8192;
    cfg->set_measured_crossover(cpu);  // replaces the CPU's entry
    QCOMPARE(cfg->measured.size(), size_t{2});
    QCOMPARE(auto_sparse_keys(p, cpu_like), int64_t{8192});
    // in the config file, with the times
    cpu.points = {{4096, 20.5, 19.25}, {8192, 40, 30}};
    cfg->set_measured_crossover(cpu);
    const SparseConfig back = SparseConfig::from_json(cfg->to_json(), "test");
    QVERIFY(back.measured_crossover("cpu") && back.measured_crossover("cuda"));
    QCOMPARE(back.measured_crossover("cpu")->tokens, int64_t{8192});
    QCOMPARE(back.measured_crossover("cpu")->points.size(), size_t{2});
    QCOMPARE(back.measured_crossover("cpu")->points[0].sparse_ms, 19.25);
    QCOMPARE(back.measured_crossover("cuda")->device, std::string("GPU 0 Test Card"));
    QCOMPARE(back.measured_crossover("cuda")->up_to, int64_t{65536});
    for (const char* bad : {"{\"measured\": [{\"backend\": \"tpu\", \"tokens\": 1}]}",
                            "{\"measured\": [{\"backend\": \"cpu\", \"tokens\": -5}]}",
                            "{\"measured\": [{\"backend\": \"cpu\"}]}"})
      QVERIFY_THROWS_EXCEPTION(Error, SparseConfig::from_json(bad, "bad.json"));
  }

  // Tools look inside a run through the session's observer: every position's logits (the last
  // equal to the session's own), each layer's queries and keys per step, and one call per step.
  void observer_sees_the_run() {
    EngineOptions eo;
    eo.model_path = folio::test::source_dir() + "/resources/models/stories260K/stories260K.bin";
    eo.threads = 1;
    auto engine = Engine::load(eo);
    const ModelConfig& c = engine->config();
    std::vector<int32_t> tokens;
    for (int i = 0; i < 40; ++i) tokens.push_back(1 + (i * 37) % (c.vocab_size - 1));
    SessionOptions so;
    so.context_tokens = 64;
    auto session = engine->create_session(so);
    Recorder rec;
    rec.vocab = c.vocab_size;
    session->set_observer(&rec);
    PrefillOptions po;
    po.chunk_tokens = 16;
    session->prefill(tokens, po);
    QCOMPARE(rec.logits_rows, int64_t{40});
    QCOMPARE(rec.steps.size(), size_t{3});
    const auto logits = session->logits();
    QCOMPARE(rec.last.size(), logits.size());
    for (size_t i = 0; i < logits.size(); ++i) QCOMPARE(rec.last[i], logits[i]);
    QCOMPARE(rec.inputs.size(), size_t{3} * static_cast<size_t>(c.n_layers));
    const AttentionInputs& third = rec.inputs.back().second;
    QCOMPARE(third.pos, int64_t{32});
    QCOMPARE(third.n, int64_t{8});
    QCOMPARE(third.q.size(), static_cast<size_t>(8 * c.q_dim()));
    QCOMPARE(third.k.size(), static_cast<size_t>(c.n_kv_heads) * 40 * static_cast<size_t>(c.head_dim));
    // the keys of the first step are still there, unchanged, at the third
    const AttentionInputs& first_last_layer = rec.inputs[static_cast<size_t>(c.n_layers) - 1].second;
    for (int64_t i = 0; i < 16 * c.head_dim; ++i)
      QCOMPARE(third.k[static_cast<size_t>(i)], first_last_layer.k[static_cast<size_t>(i)]);
    // detached: no more calls
    session->set_observer(nullptr);
    const int32_t one[1] = {5};
    session->prefill(one);
    QCOMPARE(rec.logits_rows, int64_t{40});
  }

  void planted_interval_slash() {
    const PlantedHead h = make_planted(512, 1536, 8, 600, {333, 1000, 1250});
    HeadBudget b;
    b.pattern = Pattern::IntervalSlash;
    b.mass_target = 0.95;
    b.max_density = 0.4;
    const HeadPlan plan = estimate_head(b, 64, h.q.data(), h.hd, h.n, h.pos0, h.k.data(), h.hd, h.hd);
    check_well_formed(plan.list);
    const double rec = recovered(h, plan.list);
    const double mass = exact_mass(h.q.data(), h.hd, h.n, h.pos0, h.k.data(), h.hd, h.hd, plan.list);
    std::vector<float> dense(static_cast<size_t>(h.n * h.hd)), sparse(dense.size());
    dense_attention(h.q.data(), h.hd, h.n, h.pos0, h.k.data(), h.v.data(), h.hd, h.hd, dense.data(), h.hd);
    tile_attention(h.q.data(), h.hd, h.n, h.pos0, h.k.data(), h.v.data(), h.hd, h.hd, plan.list, sparse.data(), h.hd);
    const double err = rel_l2(sparse, dense);
    qInfo("interval-slash: recovered %.3f of %zu planted tiles, mass %.4f (estimated %.4f), density %.3f, "
          "rel. error %.2e, verticals %zu, bands %zu",
          rec, h.planted_tiles.size(), mass, plan.est_mass, plan.list.density(), err, plan.vertical_tiles.size(),
          plan.slash_bands.size());
    QVERIFY(rec >= 0.95);
    QVERIFY(mass >= 0.95);
    QVERIFY(plan.mass_reached);
    QVERIFY(err < 2e-2);
    QVERIFY(plan.list.density() < 0.4);
  }

  void planted_block_cluster() {
    // query tile i attends key tiles c(i) and c(i) + 7 (clustered blocks), plus sinks
    const int64_t n = 512, pos0 = 1536, kv_len = pos0 + n;
    const int hd = 32;
    std::vector<float> k = normal(static_cast<size_t>(kv_len * hd), 11, 0.3f), q = normal(static_cast<size_t>(n * hd), 12, 0.3f);
    auto v = normal(static_cast<size_t>(kv_len * hd), 13, 1.0f);
    const int clusters = 8;
    auto cluster_of_key_tile = [](int64_t t) { return static_cast<int>(t % 8); };
    // every key of a cluster equally strong in its cluster's dimension (no noise there), so each of a
    // query tile's cluster tiles holds an equal share of its attention
    for (int64_t j = 0; j < kv_len; ++j)
      for (int c = 0; c < clusters; ++c) k[static_cast<size_t>(j * hd + c)] = c == cluster_of_key_tile(j / kKeyTile) ? 1.0f : 0.0f;
    const float s = 9.0f * std::sqrt(static_cast<float>(hd));
    for (int64_t r = 0; r < n; ++r) q[static_cast<size_t>(r * hd + (r / kQueryTile) % clusters)] += s;
    HeadBudget b;
    b.pattern = Pattern::BlockCluster;
    b.mass_target = 0.95;
    b.max_density = 0.35;
    const HeadPlan plan = estimate_head(b, 64, q.data(), hd, n, pos0, k.data(), hd, hd);
    check_well_formed(plan.list);
    int planted = 0, hit = 0;
    for (int i = 0; i < plan.list.n_qtiles(); ++i)
      for (int t = 0; t <= last_key_tile(n, pos0, i); ++t)
        if (cluster_of_key_tile(t) == i % clusters) {
          ++planted;
          hit += listed(plan.list, i, t) ? 1 : 0;
        }
    const double mass = exact_mass(q.data(), hd, n, pos0, k.data(), hd, hd, plan.list);
    std::vector<float> dense(static_cast<size_t>(n * hd)), sparse(dense.size());
    dense_attention(q.data(), hd, n, pos0, k.data(), v.data(), hd, hd, dense.data(), hd);
    tile_attention(q.data(), hd, n, pos0, k.data(), v.data(), hd, hd, plan.list, sparse.data(), hd);
    const double err = rel_l2(sparse, dense);
    qInfo("block-cluster: recovered %d of %d planted tiles, mass %.4f (estimated %.4f), density %.3f, rel. error %.2e",
          hit, planted, mass, plan.est_mass, plan.list.density(), err);
    QVERIFY(hit >= 0.95 * planted);
    QVERIFY(mass >= 0.95);
    QVERIFY(err < 2e-2);
  }

  void pooled_guard_keeps_a_single_key_needle() {
    // flat filler keys and one needle key at position 777 (key tile 12); the queries look for the
    // needle's direction. Averaging the needle's tile would divide its score by 64; the per-tile
    // log-sum-exp keeps it, so every query tile that can see the needle lists its tile.
    const int64_t n = 640, pos0 = 1408, kv_len = pos0 + n, needle = 777;
    const int hd = 64;
    std::vector<float> k = normal(static_cast<size_t>(kv_len * hd), 31, 0.05f), q = normal(static_cast<size_t>(n * hd), 32, 0.05f);
    for (int64_t j = 0; j < kv_len; ++j) k[static_cast<size_t>(j * hd)] += 1.0f;  // the filler's shared direction
    k[static_cast<size_t>(needle * hd + 5)] += 1.0f;
    for (int64_t r = 0; r < n; ++r) q[static_cast<size_t>(r * hd + 5)] += 12.0f * std::sqrt(static_cast<float>(hd));
    HeadBudget b;
    b.pattern = Pattern::BlockCluster;
    b.mass_target = 0.9;
    b.max_density = 0.2;
    const PooledScores ps = pooled_scores(q.data(), hd, n, pos0, k.data(), hd, hd);
    const HeadPlan plan = select_block_cluster(b, ps.p.data(), ps.n_ktiles, n, pos0);
    check_well_formed(plan.list);
    const int64_t needle_tile = needle / kKeyTile;
    for (int i = 0; i < plan.list.n_qtiles(); ++i) {
      const float p = ps.p[static_cast<size_t>(i * ps.n_ktiles + needle_tile)];
      QVERIFY2(p > 0.9f, qPrintable(QString("query tile %1: the needle's tile holds %2 of the pooled mass").arg(i).arg(p)));
      QVERIFY2(listed(plan.list, i, static_cast<int>(needle_tile)), qPrintable(QString("query tile %1 misses the needle").arg(i)));
    }
    // the same tile's mean key scores like the filler's: pooling by the mean would have hidden it
    double mean_score = 0.0, filler_score = 0.0;
    for (int d = 0; d < hd; ++d) {
      double kbar = 0.0, kf = 0.0;
      for (int64_t j = needle_tile * kKeyTile; j < (needle_tile + 1) * kKeyTile; ++j) kbar += k[static_cast<size_t>(j * hd + d)];
      for (int64_t j = 0; j < kKeyTile; ++j) kf += k[static_cast<size_t>(j * hd + d)];
      mean_score += kbar / kKeyTile * q[static_cast<size_t>((n - 1) * hd + d)];
      filler_score += kf / kKeyTile * q[static_cast<size_t>((n - 1) * hd + d)];
    }
    qInfo("needle tile: pooled mass %.3f; its mean key scores %.2f against a filler tile's %.2f; density %.3f",
          ps.p[static_cast<size_t>((plan.list.n_qtiles() - 1) * ps.n_ktiles + needle_tile)], mean_score, filler_score,
          plan.list.density());
    QVERIFY(mean_score - filler_score < 0.05 * 12.0 * std::sqrt(static_cast<double>(hd)));
  }

  void block_cluster_rule_ties_and_limits() {
    // equal masses are taken lower tile first; the row cap and the minimum hold
    const int64_t n = 128, pos0 = 1024 - 128;  // one query tile, key tiles 0..15, diagonal tiles 14, 15
    const int64_t nk = 16;
    std::vector<float> p(static_cast<size_t>(nk), 0.05f);
    p[0] = 0.1f;
    HeadBudget b;
    b.pattern = Pattern::BlockCluster;
    b.mass_target = 0.5;
    b.max_density = 1.0;
    b.max_keys = 0;
    HeadPlan plan = select_block_cluster(b, p.data(), nk, n, pos0);
    // mandatory 0, 14, 15 hold 0.2; six more of 0.05 reach 0.5: tiles 1..6
    QCOMPARE(plan.list.tiles, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 14, 15}));
    QVERIFY(plan.mass_reached);
    b.max_density = 0.3;  // floor(0.3 * 16) = 4 tiles in the row
    plan = select_block_cluster(b, p.data(), nk, n, pos0);
    QCOMPARE(plan.list.tiles, (std::vector<int32_t>{0, 1, 14, 15}));
    QVERIFY(!plan.mass_reached);
    b.max_density = 1.0;
    b.min_density = 0.75;  // 12 tiles at least
    plan = select_block_cluster(b, p.data(), nk, n, pos0);
    QCOMPARE(plan.list.computed(), int64_t{12});
  }

  void planted_triangular() {
    // sinks and a local band only
    const PlantedHead h = make_planted(512, 1536, 40, 40, {});
    HeadBudget b;
    b.pattern = Pattern::Triangular;
    b.window_tiles = 1;
    b.max_density = 0.5;
    const HeadPlan plan = estimate_head(b, 64, h.q.data(), h.hd, h.n, h.pos0, h.k.data(), h.hd, h.hd);
    check_well_formed(plan.list);
    const double mass = exact_mass(h.q.data(), h.hd, h.n, h.pos0, h.k.data(), h.hd, h.hd, plan.list);
    qInfo("triangular: recovered %.3f, mass %.4f, density %.3f", recovered(h, plan.list), mass, plan.list.density());
    QVERIFY(recovered(h, plan.list) >= 0.95);
    QVERIFY(mass >= 0.95);
    QVERIFY(plan.mass_reached);
  }

  void unstructured_head_hits_the_budget() {
    const int64_t n = 512, pos0 = 1536, kv_len = pos0 + n;
    const int hd = 64;
    auto q = normal(static_cast<size_t>(n * hd), 21, 1.0f), k = normal(static_cast<size_t>(kv_len * hd), 22, 1.0f);
    for (Pattern p : {Pattern::IntervalSlash, Pattern::BlockCluster}) {
      HeadBudget b;
      b.pattern = p;
      b.mass_target = 0.95;
      b.max_density = 0.3;
      const HeadPlan plan = estimate_head(b, 64, q.data(), hd, n, pos0, k.data(), hd, hd);
      check_well_formed(plan.list);
      qInfo("%s on random q/k: density %.3f (max 0.3), estimated mass %.3f, reached %d", pattern_name(p),
            plan.list.density(), plan.est_mass, plan.mass_reached);
      QVERIFY(!plan.mass_reached);
      QVERIFY(plan.list.density() >= 0.27);
      QVERIFY(plan.list.density() <= 0.3 + 1e-9);
    }
  }

  void tile_lists_equal_brute_force() {
    std::mt19937 rng(99);
    for (int trial = 0; trial < 25; ++trial) {
      const int64_t n = 1 + rng() % 700, pos0 = rng() % 3000;
      const int64_t kv_len = pos0 + n, n_kt = (kv_len + kKeyTile - 1) / kKeyTile;
      std::vector<int32_t> verticals, bands;
      for (int x = 0; x < 4; ++x) verticals.push_back(static_cast<int32_t>(rng() % n_kt));
      for (int x = 0; x < 3; ++x) bands.push_back(static_cast<int32_t>(rng() % n_kt));
      const TileList l = interval_slash_tiles(n, pos0, verticals, bands);
      check_well_formed(l);
      // brute force over every (query, key) pair
      std::set<std::pair<int, int>> want;
      for (int64_t r = 0; r < n; ++r) {
        const int64_t p = pos0 + r;
        const int i = static_cast<int>(r / kQueryTile);
        for (int64_t j = 0; j <= p; ++j) {
          const int32_t t = static_cast<int32_t>(j / kKeyTile), b = static_cast<int32_t>((p - j) / kKeyTile);
          const bool diag = t >= (pos0 + static_cast<int64_t>(i) * kQueryTile) / kKeyTile;
          if (t == 0 || diag || std::count(verticals.begin(), verticals.end(), t) ||
              std::count(bands.begin(), bands.end(), b))
            want.insert({i, t});
        }
      }
      std::set<std::pair<int, int>> got;
      for (int i = 0; i < l.n_qtiles(); ++i)
        for (int32_t x = l.offsets[static_cast<size_t>(i)]; x < l.offsets[static_cast<size_t>(i) + 1]; ++x)
          QVERIFY(got.insert({i, l.tiles[static_cast<size_t>(x)]}).second);  // no duplicates
      QCOMPARE(got, want);
      QCOMPARE(static_cast<size_t>(l.computed()), want.size());  // verticals and slashes never double-counted
    }
  }

  // The selection rule on random sums (the GPU's selection is checked against this one):
  // an Interval-Slash list is exactly the union of its chosen units, budgets hold, and the
  // Triangular list is sinks + a window + a dense last query tile.
  void selection_from_sums() {
    std::mt19937 rng(7);
    for (int trial = 0; trial < 30; ++trial) {
      const int64_t n = 1 + rng() % 900, pos0 = rng() % 5000, kv_len = pos0 + n;
      const int64_t rows = std::min<int64_t>(64, n);
      std::vector<float> col(static_cast<size_t>(kv_len)), diag(static_cast<size_t>(kv_len));
      std::exponential_distribution<float> ex(1.0f);
      for (int64_t j = 0; j < kv_len; ++j) {
        col[static_cast<size_t>(j)] = ex(rng) * static_cast<float>(rows) / static_cast<float>(2 * kv_len);
        diag[static_cast<size_t>(j)] = ex(rng) * static_cast<float>(rows) / static_cast<float>(2 * kv_len);
      }
      for (int x = 0; x < 5; ++x) col[static_cast<size_t>(rng() % kv_len)] += 0.05f * static_cast<float>(rows);
      for (Pattern p : {Pattern::IntervalSlash, Pattern::Triangular}) {
        HeadBudget b;
        b.pattern = p;
        b.mass_target = 0.5 + 0.1 * (trial % 5);
        b.min_density = (trial % 3) * 0.05;
        b.max_density = 0.2 + 0.1 * (trial % 4);
        b.window_tiles = trial % 6;
        const HeadPlan plan = select_from_sums(b, col.data(), diag.data(), rows, n, pos0);
        check_well_formed(plan.list);
        const int64_t causal = causal_tiles(n, pos0);
        const TileList forced_only = p == Pattern::IntervalSlash ? interval_slash_tiles(n, pos0, {0}, {0}) : TileList{};
        if (p == Pattern::IntervalSlash) {
          const TileList u = interval_slash_tiles(n, pos0, plan.vertical_tiles, plan.slash_bands);
          QCOMPARE(plan.list.offsets, u.offsets);
          QCOMPARE(plan.list.tiles, u.tiles);
          QVERIFY(plan.list.computed() <= std::max<int64_t>(static_cast<int64_t>(b.max_density * causal) + 1,
                                                            forced_only.computed()));
        } else {
          const int last = plan.list.n_qtiles() - 1;
          QCOMPARE(plan.list.offsets[static_cast<size_t>(last) + 1] - plan.list.offsets[static_cast<size_t>(last)],
                   last_key_tile(n, pos0, last) + 1);
          for (size_t x = 1; x < plan.slash_bands.size(); ++x) QCOMPARE(plan.slash_bands[x], plan.slash_bands[x - 1] + 1);
        }
        // the target is reached unless the maximum stopped the prefix
        if (!plan.mass_reached) QVERIFY(plan.list.density() > b.max_density - 0.2 || plan.list.density() >= 0.99);
        QVERIFY(plan.est_mass >= 0.0 && plan.est_mass <= 1.0);
      }
    }
  }

  // max_keys caps the budget in keys per query whatever the density allows: at long contexts the
  // sparse cost per token stays flat.
  void max_keys_caps_the_budget() {
    const int64_t n = 1024, pos0 = 15360, kv_len = pos0 + n, rows = 64;
    const auto [col, diag] = flat_sums(kv_len, rows, 3);
    for (int64_t max_keys : {int64_t{512}, int64_t{2048}, int64_t{0}}) {
      HeadBudget b;
      b.mass_target = 1.0;  // never reached: the budget runs to its maximum
      b.max_density = 0.5;
      b.max_keys = max_keys;
      const HeadPlan plan = select_from_sums(b, col.data(), diag.data(), rows, n, pos0);
      const int64_t nq = plan.list.n_qtiles();
      const int64_t cap = max_keys > 0 ? std::min<int64_t>(nq * (max_keys / kKeyTile),
                                                           static_cast<int64_t>(0.5 * causal_tiles(n, pos0)))
                                       : static_cast<int64_t>(0.5 * causal_tiles(n, pos0));
      qInfo("max_keys %lld: %lld tiles (cap %lld), density %.3f", static_cast<long long>(max_keys),
            static_cast<long long>(plan.list.computed()), static_cast<long long>(cap), plan.list.density());
      QVERIFY(!plan.mass_reached);
      QVERIFY(plan.list.computed() <= cap);
      QVERIFY(plan.list.computed() >= cap * 9 / 10);  // and it uses what it may
    }
  }

  // grow_from: past that many keys the cap grows with their square root (density still falls with
  // length), on both selections, Interval-Slash's per chunk and Block-Cluster's per row.
  void the_cap_grows_with_the_square_root_of_the_keys() {
    QCOMPARE(cap_tiles_per_query(8192, 0, 131072), int64_t{128});      // flat
    QCOMPARE(cap_tiles_per_query(8192, 32768, 32768), int64_t{128});   // at grow_from
    QCOMPARE(cap_tiles_per_query(8192, 32768, 65536), int64_t{181});   // 128 sqrt 2 = 181.02
    QCOMPARE(cap_tiles_per_query(8192, 32768, 131072), int64_t{256});  // 4x the keys, 2x the cap
    QCOMPARE(cap_tiles_per_query(8192, 32768, 1000), int64_t{128});
    QCOMPARE(cap_tiles_per_query(0, 32768, 131072), int64_t{0});       // no cap
    QCOMPARE(cap_tiles_per_query(10, 0, 100), int64_t{1});             // at least a tile
    const int64_t n = 1024, pos0 = 15360, kv_len = pos0 + n, rows = 64;
    const auto [col, diag] = flat_sums(kv_len, rows, 5);
    HeadBudget b;
    b.mass_target = 1.0;
    b.max_density = 0.5;
    b.max_keys = 512;  // 8 tiles a query flat
    const HeadPlan flat = select_from_sums(b, col.data(), diag.data(), rows, n, pos0);
    b.grow_from = 4096;  // 16K keys = 4x: 16 tiles a query
    const HeadPlan grown = select_from_sums(b, col.data(), diag.data(), rows, n, pos0);
    const int64_t nq = grown.list.n_qtiles();
    qInfo("flat cap: %lld tiles, grown cap: %lld tiles", static_cast<long long>(flat.list.computed()),
          static_cast<long long>(grown.list.computed()));
    QVERIFY(flat.list.computed() <= nq * 8);
    QVERIFY(grown.list.computed() <= nq * 16);
    QVERIFY(grown.list.computed() >= nq * 16 * 8 / 10);  // units span several tiles: not every slot fills
    QVERIFY(grown.list.computed() > flat.list.computed() * 3 / 2);
    QCOMPARE(block_row_limits(b, 256, kv_len).max_tiles, int64_t{16});
    b.grow_from = 0;
    QCOMPARE(block_row_limits(b, 256, kv_len).max_tiles, int64_t{8});
  }

  void all_tiles_equal_dense_exactly() {
    ThreadPool pool(2);
    for (auto [n, pos0, hd] : std::vector<std::tuple<int64_t, int64_t, int>>{{1, 0, 64}, {300, 129, 64}, {130, 1000, 96}}) {
      const int64_t kv_len = pos0 + n;
      auto q = normal(static_cast<size_t>(n * hd), 31, 1.0f), k = normal(static_cast<size_t>(kv_len * hd), 32, 1.0f),
           v = normal(static_cast<size_t>(kv_len * hd), 33, 1.0f);
      const TileList all = all_causal_tiles(n, pos0);
      QCOMPARE(all.computed(), causal_tiles(n, pos0));
      std::vector<float> dense(static_cast<size_t>(n * hd)), sparse(dense.size()), engine(dense.size());
      dense_attention(q.data(), hd, n, pos0, k.data(), v.data(), hd, hd, dense.data(), hd);
      tile_attention(q.data(), hd, n, pos0, k.data(), v.data(), hd, hd, all, sparse.data(), hd);
      QVERIFY(std::memcmp(dense.data(), sparse.data(), dense.size() * sizeof(float)) == 0);
      // and the reference agrees with the engine's own attention (one head)
      cpu::attention(pool, q.data(), n, pos0, k.data(), v.data(), kv_len, 1, 1, hd, engine.data());
      QVERIFY(rel_l2(dense, engine) < 1e-5);
      QVERIFY(std::abs(exact_mass(q.data(), hd, n, pos0, k.data(), hd, hd, all) - 1.0) < 1e-6);
    }
  }

  // The engine end to end on our long-context model: sparse prefill forced on a 2K-token excerpt
  // of the demo keeps the planted answer, and the metrics say what ran.
  void sparse_prefill_keeps_the_answer() {
    const std::string dir = folio::test::source_dir() + "/resources/models/folio-needle";
    if (!folio::test::exists(dir + "/config.json")) QSKIP("resources/models/folio-needle is not there");
    EngineOptions eo;
    eo.model_path = dir;
    eo.threads = 2;
    auto engine = Engine::load(eo);
    std::string text = read_text_file(folio::test::source_dir() + "/resources/demo/planted-facts.md");
    text = text.substr(0, text.rfind("\n\n", 8000));
    QVERIFY(text.find("blue door is 48213") != std::string::npos);
    const auto kind = detect_chat_format(*engine);
    const auto prompt = encode_chat(
        *engine, kind,
        {{"user", "<document name=\"planted-facts.md\">\n" + text + "\n</document>\n\nWhat is the secret code of the blue door?"}});
    auto answer = [&](AttentionMode mode, Metrics* m) {
      SessionOptions so;
      so.context_tokens = 4096;
      so.prefill_chunk = 512;
      so.attention = mode;
      auto session = engine->create_session(so);
      RequestOptions req;
      req.generate.max_tokens = 24;
      req.generate.stop_tokens = chat_stop_tokens(*engine, kind);
      RequestResult r = session->run(prompt, req);
      *m = r.metrics;
      return r.text;
    };
    Metrics dense_m, sparse_m, auto_m;
    const std::string dense = answer(AttentionMode::Dense, &dense_m);
    const std::string sparse = answer(AttentionMode::Sparse, &sparse_m);
    const std::string automatic = answer(AttentionMode::Auto, &auto_m);
    qInfo("%zu prompt tokens; dense: %s | sparse: %s (density %.3f, estimated mass %.3f, %lld of %lld head plans short)",
          prompt.size(), dense.c_str(), sparse.c_str(), sparse_m.attention_density, sparse_m.est_mass_mean,
          static_cast<long long>(sparse_m.heads_short_of_mass), static_cast<long long>(sparse_m.sparse_chunks * 36));
    QVERIFY(dense.find("48213") != std::string::npos);
    QCOMPARE(sparse, dense);
    QVERIFY(sparse_m.sparse_chunks > 0);
    QCOMPARE(sparse_m.dense_chunks, int64_t{0});
    QVERIFY(sparse_m.attention_density < 0.9);
    QCOMPARE(static_cast<int>(sparse_m.head_density.size()), engine->config().n_layers);
    QCOMPARE(dense_m.sparse_chunks, int64_t{0});
    // auto below the crossover (16K): dense
    QCOMPARE(auto_m.sparse_chunks, int64_t{0});
    QCOMPARE(automatic, dense);
  }

  void config_json_round_trip_and_errors() {
    SparseConfig c;
    c.model = "folio-needle";
    c.crossover_tokens = 8192;
    HeadBudget tri;
    tri.pattern = Pattern::Triangular;
    tri.window_tiles = 4;
    HeadBudget grows;
    grows.grow_from = 32768;
    HeadBudget uncapped;
    uncapped.max_keys = 0;
    c.layers = {{tri, c.default_head}, {grows, uncapped}};
    const SparseConfig back = SparseConfig::from_json(c.to_json(), "test");
    QCOMPARE(back.crossover_tokens, int64_t{8192});
    QCOMPARE(back.layers.size(), size_t{2});
    QVERIFY(back.head(0, 0).pattern == Pattern::Triangular);
    QCOMPARE(back.head(0, 0).window_tiles, 4);
    QCOMPARE(back.head(1, 0).grow_from, int64_t{32768});
    QCOMPARE(back.head(1, 1).max_keys, int64_t{0});
    QCOMPARE(back.head(0, 1).grow_from, int64_t{0});
    QVERIFY(back.head(5, 9).pattern == c.default_head.pattern);  // heads without an entry get the default
    for (const char* bad : {"[1,2]", "{\"default\": {\"pattern\": \"diagonal\"}}", "{\"default\": {\"mass\": 1.5}}",
                            "{\"layers\": [[{\"max_density\": 0}]]}", "{\"crossover_tokens\": -1}", "not json",
                            "{\"default\": {\"grow_from\": -1}}", "{\"default\": {\"max_keys\": 2000000000}}"}) {
      try {
        SparseConfig::from_json(bad, "bad.json");
        QFAIL(bad);
      } catch (const Error& e) {
        QCOMPARE(e.code(), ErrorCode::BadConfig);
        QVERIFY(std::string(e.what()).find("bad.json") != std::string::npos);
      }
    }
    QVERIFY(attention_mode_from_name("auto") == AttentionMode::Auto);
    QVERIFY_THROWS_EXCEPTION(Error, attention_mode_from_name("fast"));
  }
};

QTEST_APPLESS_MAIN(SparseTest)
#include "tst_sparse.moc"
