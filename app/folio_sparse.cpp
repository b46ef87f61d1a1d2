// folio-sparse: sparse prefill's offline tools (CPU backend, real models, real text).
//   folio-sparse search --model PATH --file DOC [--tokens N] [--density D] [--chunk N] [--out FILE]
//       Runs DOC's first N tokens through the model with dense attention; for every layer, head and
//       prefill chunk it estimates each pattern kind (triangular, interval-slash, block-cluster)
//       at the same tile budget (D of the causal tiles) and scores it by the exact attention mass
//       it keeps. Writes the best kind per head as a sparse config (folio-sparse.json; put it
//       beside the model's weights and the engine uses it).
//   folio-sparse ppl --model PATH --file DOC [--tokens N] [--attention dense|sparse] [--chunk N]
//       Perplexity of DOC's first N tokens (teacher forcing), to compare dense and sparse prefill.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "app/cli_args.h"
#include "core/common/mapped_file.h"
#include "core/engine/engine.h"

namespace {

using folio::cli::UsageError;

// Best-pattern mass below this at the search budget: the head may use every tile.
constexpr double kDiffuseMass = 0.85;

const char* kUsage =
    "usage: folio-sparse search --model PATH --file DOC [--tokens N] [--density D] [--chunk N] [--out FILE]\n"
    "       folio-sparse ppl --model PATH --file DOC [--tokens N] [--attention dense|sparse] [--chunk N]\n";

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
    else if (a == "--attention") o.attention = folio::sparse::attention_mode_from_name(args.value(a));
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

int run_search(const Options& o) {
  auto engine = folio::Engine::load(o.engine);
  const std::vector<int32_t> ids = document_tokens(*engine, o);
  const folio::ModelConfig& c = engine->config();
  auto kv = engine->backend().create_kv_cache(o.tokens);
  kv->policy.mode = folio::sparse::AttentionMode::Dense;
  kv->policy.config = engine->sparse_config();
  kv->policy.search = true;
  kv->policy.search_density = o.density;
  const folio::RopeTable rope = folio::make_rope_table(c.rope, o.tokens);
  for (int64_t done = 0; done < o.tokens; done += o.chunk) {
    const int64_t len = std::min(o.chunk, o.tokens - done);
    engine->backend().forward(*kv, std::span<const int32_t>(ids.data() + done, static_cast<size_t>(len)), done, rope,
                              nullptr);
    std::fprintf(stderr, "\rsearch: %lld/%lld tokens", static_cast<long long>(done + len), static_cast<long long>(o.tokens));
  }
  std::fprintf(stderr, "\n");
  const folio::AttentionStats& st = kv->stats;
  if (st.search_mass.empty())
    throw folio::Error(folio::ErrorCode::BackendUnavailable, "the pattern search runs on the CPU backend");
  folio::sparse::SparseConfig cfg = *engine->sparse_config();
  cfg.model = o.engine.model_path;
  cfg.layers.clear();
  const char* names[3] = {"triangular", "interval-slash", "block-cluster"};
  const folio::sparse::Pattern kinds[3] = {folio::sparse::Pattern::Triangular, folio::sparse::Pattern::IntervalSlash,
                                           folio::sparse::Pattern::BlockCluster};
  std::printf("mass kept at %.0f%% of the causal tiles, mean over %lld chunks (best marked *)\n", 100 * o.density,
              static_cast<long long>(st.search_chunks));
  std::printf("layer head  %-16s %-16s %-16s\n", names[0], names[1], names[2]);
  int wins[3] = {0, 0, 0};
  for (size_t l = 0; l < st.search_mass.size(); ++l) {
    std::vector<folio::sparse::HeadBudget> heads;
    for (size_t h = 0; h < st.search_mass[l].size(); ++h) {
      int best = 0;
      for (int k = 1; k < 3; ++k)
        if (st.search_mass[l][h][static_cast<size_t>(k)] > st.search_mass[l][h][static_cast<size_t>(best)]) best = k;
      ++wins[best];
      folio::sparse::HeadBudget b = cfg.default_head;
      b.pattern = kinds[best];
      // A head whose best pattern keeps little at this budget is diffuse (or retrieves from
      // anywhere): let its budget rise to every tile rather than cut its mass.
      const double best_mass = st.search_mass[l][h][static_cast<size_t>(best)] / static_cast<double>(st.search_chunks);
      if (best_mass < kDiffuseMass) b.max_density = 1.0;
      heads.push_back(b);
      std::printf("%5zu %4zu", l, h);
      for (int k = 0; k < 3; ++k)
        std::printf("  %6.4f%s        ", st.search_mass[l][h][static_cast<size_t>(k)] / static_cast<double>(st.search_chunks),
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

int run_ppl(const Options& o) {
  auto engine = folio::Engine::load(o.engine);
  const std::vector<int32_t> ids = document_tokens(*engine, o);
  const folio::ModelConfig& c = engine->config();
  auto kv = engine->backend().create_kv_cache(o.tokens);
  kv->policy.mode = o.attention;
  kv->policy.config = engine->sparse_config();
  const folio::RopeTable rope = folio::make_rope_table(c.rope, o.tokens);
  const int64_t V = c.vocab_size;
  std::vector<float> logits(static_cast<size_t>(o.chunk * V));
  double nll = 0.0;
  int64_t counted = 0;
  for (int64_t done = 0; done < o.tokens; done += o.chunk) {
    const int64_t len = std::min(o.chunk, o.tokens - done);
    engine->backend().forward_all_logits(*kv, std::span<const int32_t>(ids.data() + done, static_cast<size_t>(len)),
                                         done, rope, logits.data());
    for (int64_t i = 0; i < len; ++i) {
      const int64_t next = done + i + 1;
      if (next >= o.tokens) break;
      const float* row = logits.data() + i * V;
      float mx = row[0];
      for (int64_t v = 1; v < V; ++v) mx = std::max(mx, row[v]);
      double sum = 0.0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
      nll += std::log(sum) + mx - row[ids[static_cast<size_t>(next)]];
      ++counted;
    }
    std::fprintf(stderr, "\rppl: %lld/%lld tokens", static_cast<long long>(done + len), static_cast<long long>(o.tokens));
  }
  std::fprintf(stderr, "\n");
  const folio::AttentionStats& st = kv->stats;
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
