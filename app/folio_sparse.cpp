// folio-sparse: sparse prefill's offline tools (real models, real text; --backend cuda where one is linked).
//   folio-sparse search --model PATH --file DOC [--tokens N] [--density D] [--chunk N] [--out FILE]
//       Runs DOC's first N tokens through the model with dense attention; for every layer, head and
//       prefill chunk it estimates each pattern kind (triangular, interval-slash, block-cluster)
//       at the same tile budget (D of the causal tiles) and scores it by the exact attention mass
//       it keeps. Writes the best kind per head as a sparse config (folio-sparse.json; put it
//       beside the model's weights and the engine uses it).
//   folio-sparse ppl --model PATH --file DOC [--tokens N] [--attention dense|sparse] [--chunk N]
//       Perplexity of DOC's first N tokens (teacher forcing), to compare dense and sparse prefill.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
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
    "                    [--backend cpu|cuda]\n"
    "       folio-sparse ppl --model PATH --file DOC [--tokens N] [--attention dense|sparse] [--chunk N]\n"
    "                    [--kv-dtype native|fp8|q8]\n";

struct Options {
  folio::EngineOptions engine;
  std::string file, out;
  int64_t tokens = 8192, chunk = 512;
  double density = 0.2;
  folio::sparse::AttentionMode attention = folio::sparse::AttentionMode::Dense;
};

Options parse(folio::cli::Args& args) {
  Options o;
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "--model") o.engine.model_path = args.value(a);
    else if (a == "--file") o.file = args.value(a);
    else if (a == "--out") o.out = args.value(a);
    else if (a == "--tokens") o.tokens = args.integer(a, 256, int64_t{1} << 22);
    else if (a == "--chunk") o.chunk = args.integer(a, 2, 1 << 20);
    else if (a == "--density") o.density = args.number(a, 0.01, 1.0);
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

int run_search(const Options& o) {
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
      // anywhere): let its budget rise to every tile rather than cut its mass.
      const double best_mass = mass[l][h][static_cast<size_t>(best)] / steps;
      if (best_mass < kDiffuseMass) b.max_density = 1.0;
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
  if (!o.out.empty()) {
    std::ofstream f(o.out);
    if (!f) throw folio::Error(folio::ErrorCode::FileUnreadable, "cannot write " + o.out);
    f << cfg.to_json() << "\n";
    std::fprintf(stderr, "wrote %s\n", o.out.c_str());
  }
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
    if (cmd != "search" && cmd != "ppl") throw UsageError("give a command: search or ppl");
    const Options o = parse(args);
    return cmd == "search" ? run_search(o) : run_ppl(o);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "folio-sparse: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const folio::Error& e) {
    std::fprintf(stderr, "folio-sparse: error: %s\n", e.what());
    return 1;
  }
}
