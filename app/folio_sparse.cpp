// folio-sparse: sparse prefill's offline tools (real models, real text; --backend cuda where one is linked).
//   folio-sparse search --model PATH --file DOC [--tokens N] [--density D] [--chunk N] [--out FILE]
//       Runs DOC's first N tokens through the model with dense attention; for every layer, head and
//       prefill chunk it estimates each pattern kind (triangular, interval-slash, block-cluster)
//       at the same tile budget (D of the causal tiles) and scores it by the exact attention mass
//       it keeps. Writes the best kind per head as a sparse config (folio-sparse.json; put it
//       beside the model's weights and the engine uses it). Heads whose best kind keeps little at
//       that budget (diffuse or retrieval heads) get no cap; the others keep the default cap,
//       growing with the square root of the keys from --grow-from N keys on (default: flat).
//       With --goal G instead: each head's kind AND mass target from the exact mass its plans keep:
//       every kind at mass targets 0.90-0.995 (max density 0.35) and 0.995 uncapped is run through
//       the real selection rule on each chunk and scored by the exact attention mass of its list;
//       a head gets the cheapest (kind, target) whose mean exact mass reaches G, or the one keeping
//       the most if none does. The rule's own estimate (last queries, pooled means) overstates what
//       earlier rows keep; this calibrates the target per head against what they really keep.
//   folio-sparse ppl --model PATH --file DOC [--tokens N] [--attention dense|sparse] [--chunk N]
//       Perplexity of DOC's first N tokens (teacher forcing), to compare dense and sparse prefill.
//   folio-sparse crossover --model PATH --file DOC [--tokens N] [--from N] [--out FILE] [--backend cpu|cuda]
//       Where auto attention should turn sparse on this backend: DOC's first L tokens prefilled
//       dense and sparse for L = --from, 2x, 4x, ... up to N (default 2048 .. 32768), after a warm-up,
//       the best of --repeat R runs each (default 2);
//       the crossover is the shortest L from which sparse was faster at L and every longer length
//       (none if it was not faster at N). Written with the times into the model's config (its
//       folio-sparse.json, or FILE), where the engine's auto mode on this backend follows it and the
//       app's Settings show it.
#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "app/cli_args.h"
#include "core/common/mapped_file.h"
#include "core/common/thread_pool.h"
#include "core/engine/engine.h"
#include "kernels/cuda_backend.h"

namespace {

using folio::cli::UsageError;

// Best-pattern mass below this at the search budget: the head may use every tile.
constexpr double kDiffuseMass = 0.85;

const char* kUsage =
    "usage: folio-sparse search --model PATH --file DOC [--tokens N] [--density D] [--chunk N] [--out FILE]\n"
    "                    [--grow-from N] [--goal G] [--backend cpu|cuda]\n"
    "       folio-sparse ppl --model PATH --file DOC [--tokens N] [--attention dense|sparse] [--chunk N]\n"
    "                    [--kv-dtype native|fp8|q8]\n"
    "       folio-sparse crossover --model PATH --file DOC [--tokens N] [--from N] [--repeat R] [--out FILE]\n"
    "                    [--backend cpu|cuda]\n";

struct Options {
  folio::EngineOptions engine;
  std::string file, out;
  int64_t tokens = 8192, chunk = 512, grow_from = 0, from = 2048, repeat = 2;
  bool tokens_given = false, chunk_given = false;
  double density = 0.2;
  double goal = 0.0;  // > 0: the calibrated search
  folio::sparse::AttentionMode attention = folio::sparse::AttentionMode::Dense;
};

Options parse(folio::cli::Args& args) {
  Options o;
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "--model") o.engine.model_path = args.value(a);
    else if (a == "--file") o.file = args.value(a);
    else if (a == "--out") o.out = args.value(a);
    else if (a == "--tokens") {
      o.tokens = args.integer(a, 256, int64_t{1} << 22);
      o.tokens_given = true;
    } else if (a == "--chunk") {
      o.chunk = args.integer(a, 2, 1 << 20);
      o.chunk_given = true;
    }
    else if (a == "--from") o.from = args.integer(a, 256, int64_t{1} << 22);
    else if (a == "--repeat") o.repeat = args.integer(a, 1, 100);
    else if (a == "--density") o.density = args.number(a, 0.01, 1.0);
    else if (a == "--goal") o.goal = args.number(a, 0.5, 1.0);
    else if (a == "--grow-from") o.grow_from = args.integer(a, 0, folio::sparse::kMaxBudgetKeys);
    else if (a == "--threads") o.engine.threads = static_cast<int>(args.integer(a, 0, 4096));
    else if (a == "--kv-dtype") o.engine.kv_quant = args.kv_dtype(a);
    else if (a == "--attention") o.attention = folio::sparse::attention_mode_from_name(args.value(a));
    else if (a == "--backend") {
      const std::string b = args.value(a);
      if (b != "cpu" && b != "cuda") throw UsageError("--backend takes cpu or cuda, not " + b);
      o.engine.backend = b == "cuda" ? folio::BackendKind::Cuda : folio::BackendKind::Cpu;
    }
    else throw UsageError("unknown argument " + a);
  }
  if (o.engine.model_path.empty() || o.file.empty()) throw UsageError("--model and --file are required");
  return o;
}

std::vector<int32_t> document_tokens(const folio::Engine& engine, const Options& o) {
  std::vector<int32_t> ids = engine.tokenizer().encode(folio::read_text_file(o.file), true);
  if (static_cast<int64_t>(ids.size()) < o.tokens)
    throw folio::Error(folio::ErrorCode::BadArgument, o.file + " has " + std::to_string(ids.size()) +
                                                          " tokens, fewer than --tokens " + std::to_string(o.tokens));
  ids.resize(static_cast<size_t>(o.tokens));
  return ids;
}

// Prefills ids in one session (o.chunk tokens a step) with `observer` looking in; returns what
// attention did.
folio::AttentionStats prefill_observed(folio::Engine& engine, const Options& o, const std::vector<int32_t>& ids,
                                       folio::sparse::AttentionMode mode, folio::ForwardObserver& observer,
                                       const char* label) {
  folio::SessionOptions so;
  so.context_tokens = o.tokens;
  so.attention = mode;
  auto session = engine.create_session(so);
  session->set_observer(&observer);
  folio::PrefillOptions po;
  po.chunk_tokens = o.chunk;
  po.on_progress = [&](const folio::PrefillProgress& p) {
    std::fprintf(stderr, "\r%s: %lld/%lld tokens", label, static_cast<long long>(p.done_tokens),
                 static_cast<long long>(p.total_tokens));
  };
  session->prefill(ids, po);
  std::fprintf(stderr, "\n");
  return session->attention_stats();
}

// The offline search, looking inside a dense run: for every layer, head and step, each pattern kind
// at the same tile budget, scored by the exact attention mass it keeps (every kRowStep-th row).
class PatternSearch final : public folio::ForwardObserver {
 public:
  static constexpr int64_t kRowStep = 8;
  PatternSearch(const folio::ModelConfig& c, std::shared_ptr<const folio::sparse::SparseConfig> config, double density,
                int threads)
      : c_(c), config_(std::move(config)), density_(density), pool_(threads) {
    mass.assign(static_cast<size_t>(c.n_layers), std::vector<std::array<double, 3>>(static_cast<size_t>(c.n_heads)));
  }
  bool wants_attention_inputs() const override { return true; }
  void on_attention_inputs(int layer, const folio::AttentionInputs& in) override {
    if (layer == 0) ++steps;
    const int hd = c_.head_dim;
    const int group = c_.n_heads / c_.n_kv_heads;
    const int64_t keys = in.pos + in.n;
    const folio::sparse::Pattern kinds[3] = {folio::sparse::Pattern::Triangular,
                                             folio::sparse::Pattern::IntervalSlash,
                                             folio::sparse::Pattern::BlockCluster};
    pool_.parallel_for(c_.n_heads * 3, [&](int64_t b, int64_t e, int) {
      for (int64_t idx = b; idx < e; ++idx) {
        const int64_t h = idx / 3, which = idx % 3;
        folio::sparse::HeadBudget budget = config_->head(layer, static_cast<int>(h));
        budget.pattern = kinds[which];
        budget.mass_target = 1.0;  // fill the budget: compare at equal cost
        budget.min_density = density_;
        budget.max_density = density_;
        budget.window_tiles = 0;
        const float* qh = in.q.data() + h * hd;
        const float* kh = in.k.data() + (h / group) * keys * hd;
        const folio::sparse::HeadPlan plan =
            folio::sparse::estimate_head(budget, config_->last_queries, qh, c_.q_dim(), in.n, in.pos, kh, hd, hd);
        mass[static_cast<size_t>(layer)][static_cast<size_t>(h)][static_cast<size_t>(which)] +=
            folio::sparse::exact_mass(qh, c_.q_dim(), in.n, in.pos, kh, hd, hd, plan.list, kRowStep);
      }
    });
  }
  // [layer][head][pattern] summed exact mass kept, over `steps` steps
  std::vector<std::vector<std::array<double, 3>>> mass;
  int64_t steps = 0;

 private:
  const folio::ModelConfig& c_;
  std::shared_ptr<const folio::sparse::SparseConfig> config_;
  double density_;
  folio::ThreadPool pool_;
};

// The calibrated search: each kind at each candidate budget through the real selection rule,
// scored by the exact mass of its list and by the tiles it computes.
class TargetSearch final : public folio::ForwardObserver {
 public:
  struct Candidate {
    double mass, max_density;
    bool uncapped;
  };
  static constexpr int kKinds = 3, kCandidates = 5;
  static constexpr Candidate kCandidateBudgets[kCandidates] = {
      {0.90, 0.35, false}, {0.95, 0.35, false}, {0.98, 0.35, false}, {0.995, 0.35, false}, {0.995, 1.0, true}};
  static constexpr folio::sparse::Pattern kKindOrder[kKinds] = {
      folio::sparse::Pattern::Triangular, folio::sparse::Pattern::IntervalSlash, folio::sparse::Pattern::BlockCluster};
  struct Score {
    double mass = 0.0, tiles = 0.0;
  };
  TargetSearch(const folio::ModelConfig& c, std::shared_ptr<const folio::sparse::SparseConfig> config, int threads)
      : c_(c), config_(std::move(config)), pool_(threads) {
    score.assign(static_cast<size_t>(c.n_layers) * static_cast<size_t>(c.n_heads) * kKinds * kCandidates, Score{});
    causal.assign(static_cast<size_t>(c.n_layers), 0.0);
  }
  Score& at(int layer, int64_t head, int kind, int cand) {
    return score[((static_cast<size_t>(layer) * static_cast<size_t>(c_.n_heads) + static_cast<size_t>(head)) * kKinds +
                  static_cast<size_t>(kind)) * kCandidates + static_cast<size_t>(cand)];
  }
  bool wants_attention_inputs() const override { return true; }
  void on_attention_inputs(int layer, const folio::AttentionInputs& in) override {
    if (layer == 0) ++steps;
    const int hd = c_.head_dim;
    const int group = c_.n_heads / c_.n_kv_heads;
    const int64_t keys = in.pos + in.n;
    causal[static_cast<size_t>(layer)] += static_cast<double>(folio::sparse::causal_tiles(in.n, in.pos));
    pool_.parallel_for(c_.n_heads * kKinds, [&](int64_t b, int64_t e, int) {
      for (int64_t idx = b; idx < e; ++idx) {
        const int64_t h = idx / kKinds;
        const int kind = static_cast<int>(idx % kKinds);
        const float* qh = in.q.data() + h * hd;
        const float* kh = in.k.data() + (h / group) * keys * hd;
        // the estimate once per kind; the selection for each candidate budget
        folio::sparse::SampleSums sums;
        folio::sparse::PooledScores pooled;
        if (kKindOrder[kind] == folio::sparse::Pattern::BlockCluster)
          pooled = folio::sparse::pooled_scores(qh, c_.q_dim(), in.n, in.pos, kh, hd, hd);
        else
          sums = folio::sparse::sample_sums(config_->last_queries, qh, c_.q_dim(), in.n, in.pos, kh, hd, hd);
        for (int cand = 0; cand < kCandidates; ++cand) {
          folio::sparse::HeadBudget budget = config_->head(layer, static_cast<int>(h));
          budget.pattern = kKindOrder[kind];
          budget.mass_target = kCandidateBudgets[cand].mass;
          budget.max_density = kCandidateBudgets[cand].max_density;
          if (kCandidateBudgets[cand].uncapped) budget.max_keys = 0;
          const folio::sparse::HeadPlan plan =
              kKindOrder[kind] == folio::sparse::Pattern::BlockCluster
                  ? folio::sparse::select_block_cluster(budget, pooled.p.data(), pooled.n_ktiles, in.n, in.pos)
                  : folio::sparse::select_from_sums(budget, sums.col.data(), sums.diag.data(), sums.rows, in.n, in.pos);
          Score& s = at(layer, h, kind, cand);
          s.mass += folio::sparse::exact_mass(qh, c_.q_dim(), in.n, in.pos, kh, hd, hd, plan.list, PatternSearch::kRowStep);
          s.tiles += static_cast<double>(plan.list.computed());
        }
      }
    });
  }
  std::vector<Score> score;    // [layer][head][kind][candidate], summed over steps
  std::vector<double> causal;  // [layer]: causal tiles summed over steps
  int64_t steps = 0;

 private:
  const folio::ModelConfig& c_;
  std::shared_ptr<const folio::sparse::SparseConfig> config_;
  folio::ThreadPool pool_;
};

void write_config(const folio::sparse::SparseConfig& cfg, const std::string& out) {
  if (out.empty()) return;
  std::ofstream f(out);
  if (!f) throw folio::Error(folio::ErrorCode::FileUnreadable, "cannot write " + out);
  f << cfg.to_json() << "\n";
  f.close();
  if (!f) throw folio::Error(folio::ErrorCode::FileUnreadable, "cannot write " + out);
  std::fprintf(stderr, "wrote %s\n", out.c_str());
}

int run_target_search(const Options& o) {
  auto engine = folio::Engine::load(o.engine);
  const std::vector<int32_t> ids = document_tokens(*engine, o);
  const folio::ModelConfig& c = engine->config();
  TargetSearch search(c, engine->sparse_config(), o.engine.threads);
  prefill_observed(*engine, o, ids, folio::sparse::AttentionMode::Dense, search, "search");
  const double steps = static_cast<double>(std::max<int64_t>(search.steps, 1));
  folio::sparse::SparseConfig cfg = *engine->sparse_config();
  cfg.model = o.engine.model_path;
  cfg.layers.clear();
  const char* names[3] = {"triangular", "interval-slash", "block-cluster"};
  std::printf("per head: the cheapest kind and mass target whose exact mass kept reaches %.3f (mean over %lld chunks)\n",
              o.goal, static_cast<long long>(search.steps));
  std::printf("layer head  kind            target  max_density  exact_mass  density\n");
  int wins[3] = {0, 0, 0}, short_of_goal = 0, uncapped = 0;
  double density_sum = 0.0;
  for (int l = 0; l < c.n_layers; ++l) {
    std::vector<folio::sparse::HeadBudget> heads;
    const double causal = std::max(search.causal[static_cast<size_t>(l)], 1.0);
    for (int64_t h = 0; h < c.n_heads; ++h) {
      int bk = -1, bc = -1;
      double bmass = -1.0, bdens = 2.0;
      bool reached = false;
      for (int k = 0; k < TargetSearch::kKinds; ++k)
        for (int ci = 0; ci < TargetSearch::kCandidates; ++ci) {
          const auto& s = search.at(l, h, k, ci);
          const double mass = s.mass / steps, dens = s.tiles / causal;
          const bool ok = mass >= o.goal;
          const bool better = ok ? (!reached || dens < bdens) : (!reached && (mass > bmass || (mass == bmass && dens < bdens)));
          if (better) {
            bk = k, bc = ci, bmass = mass, bdens = dens;
            reached = reached || ok;
          }
        }
      folio::sparse::HeadBudget b = cfg.default_head;
      const TargetSearch::Candidate& cand = TargetSearch::kCandidateBudgets[bc];
      b.pattern = TargetSearch::kKindOrder[bk];
      b.mass_target = cand.mass;
      b.max_density = cand.max_density;
      if (cand.uncapped) {
        b.max_keys = 0;
        ++uncapped;
      } else {
        b.grow_from = o.grow_from;
      }
      heads.push_back(b);
      ++wins[bk];
      if (!reached) ++short_of_goal;
      density_sum += bdens;
      std::printf("%5d %4lld  %-15s %6.3f  %11.2f  %10.4f  %7.3f%s\n", l, static_cast<long long>(h), names[bk], cand.mass,
                  cand.max_density, bmass, bdens, reached ? "" : "  (short of the goal)");
    }
    cfg.layers.push_back(heads);
  }
  std::printf("kinds: triangular %d, interval-slash %d, block-cluster %d; %d uncapped; %d short of the goal; "
              "mean density %.3f\n",
              wins[0], wins[1], wins[2], uncapped, short_of_goal, density_sum / (c.n_layers * c.n_heads));
  write_config(cfg, o.out);
  return 0;
}

int run_search(const Options& o) {
  if (o.goal > 0.0) return run_target_search(o);
  auto engine = folio::Engine::load(o.engine);
  const std::vector<int32_t> ids = document_tokens(*engine, o);
  const folio::ModelConfig& c = engine->config();
  PatternSearch search(c, engine->sparse_config(), o.density, o.engine.threads);
  prefill_observed(*engine, o, ids, folio::sparse::AttentionMode::Dense, search, "search");
  const auto& mass = search.mass;
  const double steps = static_cast<double>(std::max<int64_t>(search.steps, 1));
  folio::sparse::SparseConfig cfg = *engine->sparse_config();
  cfg.model = o.engine.model_path;
  cfg.layers.clear();
  const char* names[3] = {"triangular", "interval-slash", "block-cluster"};
  const folio::sparse::Pattern kinds[3] = {folio::sparse::Pattern::Triangular, folio::sparse::Pattern::IntervalSlash,
                                           folio::sparse::Pattern::BlockCluster};
  std::printf("mass kept at %.0f%% of the causal tiles, mean over %lld chunks (best marked *)\n", 100 * o.density,
              static_cast<long long>(search.steps));
  std::printf("layer head  %-16s %-16s %-16s\n", names[0], names[1], names[2]);
  int wins[3] = {0, 0, 0};
  for (size_t l = 0; l < mass.size(); ++l) {
    std::vector<folio::sparse::HeadBudget> heads;
    for (size_t h = 0; h < mass[l].size(); ++h) {
      int best = 0;
      for (int k = 1; k < 3; ++k)
        if (mass[l][h][static_cast<size_t>(k)] > mass[l][h][static_cast<size_t>(best)]) best = k;
      ++wins[best];
      folio::sparse::HeadBudget b = cfg.default_head;
      b.pattern = kinds[best];
      // A head whose best pattern keeps little at this budget is diffuse (or retrieves from
      // anywhere): let its budget rise to every tile rather than cut its mass, with no key cap.
      const double best_mass = mass[l][h][static_cast<size_t>(best)] / steps;
      if (best_mass < kDiffuseMass) {
        b.max_density = 1.0;
        b.max_keys = 0;
      } else {
        b.grow_from = o.grow_from;
      }
      heads.push_back(b);
      std::printf("%5zu %4zu", l, h);
      for (int k = 0; k < 3; ++k)
        std::printf("  %6.4f%s        ", mass[l][h][static_cast<size_t>(k)] / steps,
                    k == best ? "*" : " ");
      std::printf("\n");
    }
    cfg.layers.push_back(heads);
  }
  std::printf("best kind: triangular %d, interval-slash %d, block-cluster %d heads\n", wins[0], wins[1], wins[2]);
  write_config(cfg, o.out);
  return 0;
}

// One prefill of ids in a fresh session, timed from the call to the last chunk's logits.
double timed_prefill(folio::Engine& engine, const Options& o, std::span<const int32_t> ids,
                     folio::sparse::AttentionMode mode) {
  folio::SessionOptions so;
  so.context_tokens = static_cast<int64_t>(ids.size());
  so.attention = mode;
  if (o.chunk_given) so.prefill_chunk = o.chunk;
  auto session = engine.create_session(so);
  const auto t0 = std::chrono::steady_clock::now();
  session->prefill(ids);
  (void)session->logits();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string today() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

int run_crossover(Options o) {
  if (!o.tokens_given) o.tokens = 32768;
  if (o.from > o.tokens) throw UsageError("--from must not exceed --tokens");
  auto engine = folio::Engine::load(o.engine);
  const std::vector<int32_t> ids = document_tokens(*engine, o);
  folio::sparse::MeasuredCrossover m;
  m.backend = folio::backend_key(engine->backend_kind());
  m.device = engine->backend_name();
  m.date = today();
  // a warm-up (first-use allocations, kernel loading) that counts for neither side
  const std::span<const int32_t> all(ids);
  timed_prefill(*engine, o, all.first(static_cast<size_t>(std::min<int64_t>(o.from, 1024))),
                folio::sparse::AttentionMode::Sparse);
  std::printf("crossover on %s (%s): prefill of the first L tokens of %s\n", m.backend.c_str(), m.device.c_str(),
              o.file.c_str());
  std::printf("%8s %12s %12s %8s\n", "L", "dense ms", "sparse ms", "gain");
  for (int64_t len = o.from;; len *= 2) {
    len = std::min(len, o.tokens);
    const auto part = all.first(static_cast<size_t>(len));
    folio::sparse::CrossoverPoint p;
    p.tokens = len;
    p.dense_ms = p.sparse_ms = std::numeric_limits<double>::infinity();
    for (int64_t r = 0; r < o.repeat; ++r) {  // the best of --repeat runs each, alternating
      p.dense_ms = std::min(p.dense_ms, timed_prefill(*engine, o, part, folio::sparse::AttentionMode::Dense));
      p.sparse_ms = std::min(p.sparse_ms, timed_prefill(*engine, o, part, folio::sparse::AttentionMode::Sparse));
    }
    std::printf("%8lld %12.1f %12.1f %7.2fx\n", static_cast<long long>(len), p.dense_ms, p.sparse_ms,
                p.dense_ms / p.sparse_ms);
    std::fflush(stdout);
    m.points.push_back(p);
    if (len >= o.tokens) break;
  }
  m.tokens = folio::sparse::crossover_from_points(m.points);
  m.up_to = o.tokens;
  if (m.tokens > 0)
    std::printf("crossover: sparse is faster from %lld tokens on (measured up to %lld)\n",
                static_cast<long long>(m.tokens), static_cast<long long>(m.up_to));
  else
    std::printf("crossover: sparse was not faster at %lld tokens: auto attention stays dense on this backend\n",
                static_cast<long long>(m.up_to));
  folio::sparse::SparseConfig cfg = *engine->sparse_config();
  cfg.set_measured_crossover(m);
  write_config(cfg, o.out.empty() ? folio::sparse_config_path(o.engine.model_path) : o.out);
  return 0;
}

// Teacher-forced negative log-likelihood from the logits of every position.
class NllCounter final : public folio::ForwardObserver {
 public:
  NllCounter(const std::vector<int32_t>& ids, int64_t vocab) : ids_(ids), vocab_(vocab) {}
  bool wants_all_logits() const override { return true; }
  void on_logits(int64_t pos, int64_t rows, const float* logits) override {
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t next = pos + i + 1;
      if (next >= static_cast<int64_t>(ids_.size())) break;
      const float* row = logits + i * vocab_;
      float mx = row[0];
      for (int64_t v = 1; v < vocab_; ++v) mx = std::max(mx, row[v]);
      double sum = 0.0;
      for (int64_t v = 0; v < vocab_; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
      nll += std::log(sum) + mx - row[ids_[static_cast<size_t>(next)]];
      ++counted;
    }
  }
  double nll = 0.0;
  int64_t counted = 0;

 private:
  const std::vector<int32_t>& ids_;
  int64_t vocab_;
};

int run_ppl(const Options& o) {
  auto engine = folio::Engine::load(o.engine);
  const std::vector<int32_t> ids = document_tokens(*engine, o);
  NllCounter counter(ids, engine->config().vocab_size);
  const folio::AttentionStats st = prefill_observed(*engine, o, ids, o.attention, counter, "ppl");
  const double nll = counter.nll;
  const int64_t counted = counter.counted;
  nlohmann::json j;
  j["model"] = o.engine.model_path;
  j["file"] = o.file;
  j["tokens"] = o.tokens;
  j["chunk"] = o.chunk;
  j["attention"] = folio::sparse::attention_mode_name(o.attention);
  j["perplexity"] = std::exp(nll / static_cast<double>(counted));
  j["sparse_chunks"] = st.sparse_chunks;
  j["density"] = st.density();
  j["est_mass_mean"] = st.head_plans > 0 ? st.est_mass_sum / static_cast<double>(st.head_plans) : 1.0;
  j["heads_short_of_mass"] = st.heads_short_of_mass;
  j["head_plans"] = st.head_plans;
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  folio::register_cuda_backend();
  folio::cli::Args args(argc, argv);
  try {
    const std::string cmd = args.done() ? "" : args.next();
    if (cmd == "--help" || cmd == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (cmd != "search" && cmd != "ppl" && cmd != "crossover") throw UsageError("give a command: search, ppl or crossover");
    const Options o = parse(args);
    if (cmd == "crossover") return run_crossover(o);
    return cmd == "search" ? run_search(o) : run_ppl(o);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "folio-sparse: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const folio::Error& e) {
    std::fprintf(stderr, "folio-sparse: error: %s\n", e.what());
    return 1;
  }
}
