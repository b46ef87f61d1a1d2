// Sparse prefill's GPU kernels against the CPU reference (core/attention/sparse.h), on varied
// shapes: head dims 64/96/128, GQA ratios 1 to 8, chunks that start and end off tile boundaries,
// fewer queries than sample rows, budgets that bind and budgets that do not.
//   sample sums (col, diag)   within 2e-3 relative (fp32 scores of bf16 values, fast exp)
//   selection + tile lists    given the GPU's own sums, equal to select_from_sums bit for bit
//                             (offsets, tiles, mass, target reached)
//   sparse attention          over those lists, within bf16 rounding of the CPU's tile_attention
// And the whole model: folio-needle with sparse prefill forced, GPU against the CPU engine.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "core/attention/sparse.h"
#include "core/common/mapped_file.h"
#include "core/engine/chat_prompt.h"
#include "core/engine/engine.h"
#include "kernels/cuda_backend.h"
#include "kernels/memory_plan.h"
#include "kernels/cuda_ops.h"
#include "kernels/gemm.h"
#include "kernels/sparse_estimate.h"
#include "kernels/tests/gpu_check.h"

using namespace folio;
using namespace folio::gputest;

namespace {

struct Shape {
  int hd, n_heads, n_kv, n;
  int64_t pos0;
  int rows;
};

// Random queries and keys with structure to find: a few "vertical" keys every query likes, and
// a shared direction so some heads are peaked and some diffuse.
void make_inputs(const Shape& s, int64_t capacity, std::vector<float>& q, std::vector<float>& k, std::vector<float>& v,
                 uint32_t seed) {
  const int64_t kv_len = s.pos0 + s.n;
  q = random_normal(static_cast<size_t>(s.n) * s.n_heads * s.hd, seed, 1.0f);
  k = random_normal(static_cast<size_t>(s.n_kv) * capacity * s.hd, seed + 1, 1.0f);
  v = random_normal(static_cast<size_t>(s.n_kv) * capacity * s.hd, seed + 2, 1.0f);
  std::mt19937 rng(seed + 3);
  for (int g = 0; g < s.n_kv; ++g)
    for (int x = 0; x < 6; ++x) {
      const int64_t j = static_cast<int64_t>(rng() % static_cast<uint32_t>(kv_len));
      for (int d = 0; d < 8; ++d) k[(static_cast<size_t>(g) * capacity + j) * s.hd + d] = 3.0f;
    }
  for (int64_t r = 0; r < s.n; ++r)
    for (int h = 0; h < s.n_heads; h += 2)  // even heads look for the planted keys
      for (int d = 0; d < 8; ++d) q[(static_cast<size_t>(r) * s.n_heads + h) * s.hd + d] += 1.5f;
  q = bf16_round(q);
  k = bf16_round(k);
  v = bf16_round(v);
}

sparse::HeadBudget budget_for(int h, int trial) {
  sparse::HeadBudget b;
  const int kind = (h + trial) % 3;
  b.pattern = kind == 2 ? sparse::Pattern::Triangular : kind == 1 ? sparse::Pattern::BlockCluster : sparse::Pattern::IntervalSlash;
  b.mass_target = (h % 4 == 0) ? 0.8 : 0.95;
  b.max_density = (h % 3 == 0) ? 0.15 : 0.5;
  b.min_density = (h % 5 == 1) ? 0.1 : 0.0;
  b.window_tiles = 1 + h % 4;
  b.max_keys = (h % 2 == 0) ? 1024 : 8192;
  // a cap that grows with sqrt(keys) past 512 (sparse::cap_tiles_per_query, shared by both sides)
  b.grow_from = (h % 6 == 2) ? 512 : 0;
  return b;
}

void check_shape(const Shape& s, int trial) {
  const int64_t kv_len = s.pos0 + s.n;
  const int64_t capacity = kv_len + 77;
  const int64_t chunk = s.n + 5;
  std::vector<float> q, k, v;
  make_inputs(s, capacity, q, k, v, static_cast<uint32_t>(100 + trial));
  auto kb = to_bf16(k), vb = to_bf16(v);
  for (int g = 0; g < s.n_kv; ++g)  // keys past kv_len are poison: nothing may read them
    for (int64_t p = kv_len; p < capacity; ++p)
      for (int d = 0; d < s.hd; ++d) kb[(static_cast<size_t>(g) * capacity + p) * s.hd + d] = 0x7fc0;
  Dev<uint16_t> dq(to_bf16(q)), dk(kb), dv(vb), out(q.size());

  ModelConfig c;
  c.n_layers = 1;
  c.n_heads = s.n_heads;
  c.n_kv_heads = s.n_kv;
  c.head_dim = s.hd;
  const SparseLayout layout = plan_sparse(c, capacity, chunk);
  Dev<uint8_t> scratch(layout.total());
  cuda::SparseScratch ss = cuda::SparseScratch::carve(scratch.get(), layout, capacity, chunk);
  std::vector<cuda::DeviceBudget> budgets;
  std::vector<sparse::HeadBudget> host_budgets;
  for (int h = 0; h < s.n_heads; ++h) {
    host_budgets.push_back(budget_for(h, trial));
    budgets.push_back(cuda::device_budget(host_budgets.back()));
  }
  FOLIO_CUDA_CHECK(cudaMemcpy(ss.budgets, budgets.data(), budgets.size() * sizeof(cuda::DeviceBudget),
                              cudaMemcpyHostToDevice));
  Dev<uint8_t> workspace(kGemmWorkspaceBytes);
  cuda::Gemm gemm(workspace.get(), kGemmWorkspaceBytes);

  cuda::EstimateArgs ea;
  ea.q = dq.get();
  ea.k_cache = dk.get();
  ea.capacity = capacity;
  ea.n = s.n;
  ea.pos0 = s.pos0;
  ea.n_heads = s.n_heads;
  ea.n_kv_heads = s.n_kv;
  ea.head_dim = s.hd;
  ea.rows = s.rows;
  ea.budgets = ss.budgets;
  ea.results = ss.results;
  ea.any_sums = ea.any_pooled = false;
  for (const auto& b : host_budgets) (b.pattern == sparse::Pattern::BlockCluster ? ea.any_pooled : ea.any_sums) = true;
  cuda::estimate(ea, ss, gemm, nullptr);
  FOLIO_CUDA_CHECK(cudaDeviceSynchronize());

  const int nq = (s.n + cuda::kQueryTile - 1) / cuda::kQueryTile;
  std::vector<float> col(static_cast<size_t>(s.n_heads) * capacity), diag(col.size());
  std::vector<int32_t> offsets(static_cast<size_t>(s.n_heads) * (nq + 1)),
      index(static_cast<size_t>(s.n_heads) * ss.index_stride);
  std::vector<cuda::HeadResult> results(static_cast<size_t>(s.n_heads));
  std::vector<float> pooled(static_cast<size_t>(s.n_heads) * ss.chunk_qtiles * ss.pooled_stride);
  FOLIO_CUDA_CHECK(cudaMemcpy(pooled.data(), ss.pooled, pooled.size() * 4, cudaMemcpyDeviceToHost));
  FOLIO_CUDA_CHECK(cudaMemcpy(col.data(), ss.col, col.size() * 4, cudaMemcpyDeviceToHost));
  FOLIO_CUDA_CHECK(cudaMemcpy(diag.data(), ss.diag, diag.size() * 4, cudaMemcpyDeviceToHost));
  FOLIO_CUDA_CHECK(cudaMemcpy(offsets.data(), ss.tile_offset, offsets.size() * 4, cudaMemcpyDeviceToHost));
  FOLIO_CUDA_CHECK(cudaMemcpy(index.data(), ss.tile_index, index.size() * 4, cudaMemcpyDeviceToHost));
  FOLIO_CUDA_CHECK(cudaMemcpy(results.data(), ss.results, results.size() * sizeof(cuda::HeadResult),
                              cudaMemcpyDeviceToHost));

  // sparse attention over the GPU's lists
  cuda::AttentionArgs a;
  a.q = dq.get();
  a.k_cache = dk.get();
  a.v_cache = dv.get();
  a.out = out.get();
  a.n = s.n;
  a.pos0 = s.pos0;
  a.capacity = capacity;
  a.n_heads = s.n_heads;
  a.n_kv_heads = s.n_kv;
  a.head_dim = s.hd;
  a.tile_offset = ss.tile_offset;
  a.tile_index = ss.tile_index;
  cuda::attention_prefill(a, nullptr);
  const std::vector<float> got = from_bf16(out.download());

  const int group = s.n_heads / s.n_kv;
  const int64_t QS = static_cast<int64_t>(s.n_heads) * s.hd;
  double worst_sum = 0.0, worst_att = 0.0, worst_pooled = 0.0, density = 0.0;
  int exact = 0;
  for (int h = 0; h < s.n_heads; ++h) {
    const int g = h / group;
    const float* qh = q.data() + static_cast<size_t>(h) * s.hd;
    const float* kh = k.data() + static_cast<size_t>(g) * capacity * s.hd;
    const float* vh = v.data() + static_cast<size_t>(g) * capacity * s.hd;
    const sparse::HeadBudget& hb = host_budgets[static_cast<size_t>(h)];
    sparse::HeadPlan plan;
    int result_rows = s.rows;
    if (hb.pattern == sparse::Pattern::BlockCluster) {
      // pooled probabilities against the CPU's, then the rule on the GPU's own values
      const sparse::PooledScores ref = sparse::pooled_scores(qh, QS, s.n, s.pos0, kh, s.hd, s.hd);
      const float* gp = pooled.data() + static_cast<size_t>(h) * nq * ss.pooled_stride;  // [h][chunk's nq][stride]
      std::vector<float> got_p, want_p;
      for (int i = 0; i < nq; ++i)
        for (int t = 0; t <= sparse::last_key_tile(s.n, s.pos0, i); ++t) {
          got_p.push_back(gp[static_cast<size_t>(i) * ss.pooled_stride + t]);
          want_p.push_back(ref.p[static_cast<size_t>(i) * ref.n_ktiles + t]);
        }
      const Compare cp = compare(got_p, want_p);
      worst_pooled = std::max(worst_pooled, cp.rel_norm);
      GCHECK(cp.non_finite == 0 && cp.rel_norm < 2e-2, "head %d pooled probabilities rel %.3g max %.3g", h, cp.rel_norm,
             cp.max_rel);
      plan = sparse::select_block_cluster(hb, gp, ss.pooled_stride, s.n, s.pos0);
      result_rows = nq;
    } else {
      const sparse::SampleSums ref = sparse::sample_sums(s.rows, qh, QS, s.n, s.pos0, kh, s.hd, s.hd);
      GCHECK(ref.rows == s.rows, "rows %lld vs %d", static_cast<long long>(ref.rows), s.rows);
      std::vector<float> gcol(col.begin() + static_cast<int64_t>(h) * capacity,
                              col.begin() + static_cast<int64_t>(h) * capacity + kv_len);
      std::vector<float> gdiag(diag.begin() + static_cast<int64_t>(h) * capacity,
                               diag.begin() + static_cast<int64_t>(h) * capacity + kv_len);
      const Compare cc = compare(gcol, ref.col), cd = compare(gdiag, ref.diag);
      worst_sum = std::max({worst_sum, cc.rel_norm, cd.rel_norm});
      GCHECK(cc.non_finite == 0 && cd.non_finite == 0 && cc.rel_norm < 2e-3 && cd.rel_norm < 2e-3 &&
                 cc.max_rel < 1e-2 && cd.max_rel < 1e-2,
             "head %d sums: col rel %.3g max %.3g, diag rel %.3g max %.3g", h, cc.rel_norm, cc.max_rel, cd.rel_norm,
             cd.max_rel);
      plan = sparse::select_from_sums(hb, gcol.data(), gdiag.data(), s.rows, s.n, s.pos0);
    }
    // the selection, given the GPU's sums
    std::vector<int32_t> got_off, got_tiles;
    const int32_t* off = offsets.data() + static_cast<size_t>(h) * (nq + 1);
    for (int i = 0; i <= nq; ++i) got_off.push_back(off[i] - off[0]);
    for (int32_t x = off[0]; x < off[nq]; ++x) got_tiles.push_back(index[static_cast<size_t>(x)]);
    const bool same = got_off == plan.list.offsets && got_tiles == plan.list.tiles;
    exact += same ? 1 : 0;
    GCHECK(same, "head %d (%s): GPU list (%zu tiles) differs from the CPU's (%lld tiles)", h,
           sparse::pattern_name(plan.pattern), got_tiles.size(), static_cast<long long>(plan.list.computed()));
    const cuda::HeadResult& r = results[static_cast<size_t>(h)];
    const double mass = std::min(1.0, static_cast<double>(r.mass) / (sparse::kFixedOne * result_rows));
    GCHECK(r.computed == plan.list.computed() && mass == plan.est_mass && (r.reached != 0) == plan.mass_reached,
           "head %d: computed %lld/%lld mass %.6f/%.6f reached %d/%d", h, static_cast<long long>(r.computed),
           static_cast<long long>(plan.list.computed()), mass, plan.est_mass, r.reached, plan.mass_reached);
    density += plan.list.density() / s.n_heads;
    // attention over the list
    std::vector<float> want(static_cast<size_t>(s.n) * s.hd), have(want.size());
    sparse::tile_attention(qh, QS, s.n, s.pos0, kh, vh, s.hd, s.hd, plan.list, want.data(), s.hd);
    for (int64_t row = 0; row < s.n; ++row)
      for (int d = 0; d < s.hd; ++d)
        have[static_cast<size_t>(row) * s.hd + d] = got[(static_cast<size_t>(row) * s.n_heads + h) * s.hd + d];
    const Compare ca = compare(have, want);
    worst_att = std::max(worst_att, ca.rel_norm);
    GCHECK(ca.non_finite == 0 && ca.rel_norm < 1.5e-2 && ca.max_rel < 5e-2, "head %d attention rel %.3g max %.3g", h,
           ca.rel_norm, ca.max_rel);
  }
  std::printf("  hd %d heads %d/%d n %d pos0 %lld rows %d: sums rel <= %.2g, pooled rel <= %.2g, %d/%d lists exact, "
              "density %.3f, attention rel <= %.2g\n",
              s.hd, s.n_heads, s.n_kv, s.n, static_cast<long long>(s.pos0), s.rows, worst_sum, worst_pooled, exact,
              s.n_heads, density, worst_att);
}

void test_kernels_against_cpu() {
  const std::vector<Shape> shapes = {
      {128, 8, 2, 1024, 7168, 64}, {64, 6, 2, 700, 1000, 64}, {96, 4, 4, 130, 64, 64},  {64, 4, 1, 40, 0, 40},
      {128, 8, 8, 1000, 3, 64},    {128, 16, 2, 4096, 12288, 64}, {96, 8, 1, 257, 5000, 32}, {64, 2, 2, 3000, 29000, 128},
      // at most 32 sample rows and an even group: two heads share one product (the stacked sample
      // kernel); 6 / 2 (group 3) keeps one head a product
      {128, 8, 2, 1024, 7168, 32}, {64, 4, 2, 500, 3000, 20},   {128, 6, 2, 800, 900, 32},  {64, 4, 2, 24, 4000, 24},
  };
  int trial = 0;
  for (const Shape& s : shapes) check_shape(s, trial++);
}

// folio-needle (6 heads / 2 KV heads of 64) with sparse prefill forced, in chunks of 1024 so that
// most chunks are sparse: the GPU and the CPU engine give the same greedy answer.
void test_needle_sparse_gpu_vs_cpu() {
  const char* src = std::getenv("FOLIO_SOURCE_DIR");
  const std::filesystem::path root = src != nullptr ? src : ".";
  const std::filesystem::path model = root / "resources/models/folio-needle";
  if (!std::filesystem::exists(model / "config.json")) {
    std::printf("  folio-needle not found under %s: skipped\n", root.string().c_str());
    return;
  }
  std::string answers[2];
  double density[2] = {0, 0};
  for (int gpu = 0; gpu < 2; ++gpu) {
    EngineOptions o;
    o.model_path = model.string();
    o.backend = gpu ? BackendKind::Cuda : BackendKind::Cpu;
    o.context_tokens = 16384;
    auto engine = Engine::load(o);
    SessionOptions so;
    so.context_tokens = 16384;
    so.prefill_chunk = 1024;
    so.attention = sparse::AttentionMode::Sparse;
    auto session = engine->create_session(so);
    const std::string text = read_text_file((root / "resources/demo/planted-facts.md").string());
    const std::string doc = text.substr(0, text.rfind("\n\n", 30000));
    const auto kind = detect_chat_format(*engine);
    const std::vector<ChatMessage> messages{{"user", "<document name=\"planted-facts.md\">\n" + doc +
                                                         "\n</document>\n\nWhat is the secret code of the blue door?"}};
    const auto prompt = encode_chat(*engine, kind, messages);
    RequestOptions req;
    req.generate.max_tokens = 24;
    req.generate.stop_tokens = chat_stop_tokens(*engine, kind);
    const RequestResult res = session->run(prompt, req);
    const Metrics& m = res.metrics;
    answers[gpu] = res.text;
    density[gpu] = m.attention_density;
    std::printf("  %s: \"%s\" (density %.3f, %lld sparse chunks, estimation %.1f ms)\n", gpu ? "cuda" : "cpu",
                answers[gpu].c_str(), m.attention_density, static_cast<long long>(m.sparse_chunks), m.estimate_ms);
  }
  GCHECK(answers[0] == answers[1], "cpu \"%s\" vs cuda \"%s\"", answers[0].c_str(), answers[1].c_str());
  GCHECK(std::fabs(density[0] - density[1]) < 0.03, "density cpu %.3f vs cuda %.3f", density[0], density[1]);
}

}  // namespace

int main() {
  folio::register_cuda_backend();
  return run_cases("tst_gpu_sparse", {
                                         {"kernels_against_cpu", test_kernels_against_cpu},
                                         {"needle_sparse_gpu_vs_cpu", test_needle_sparse_gpu_vs_cpu},
                                     });
}
