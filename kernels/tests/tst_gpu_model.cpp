// The whole model on the GPU against the CPU engine (the reference): stories260K, the HF fixtures
// (llama/llama3 scaling, mistral sharded f16, qwen2 bias+yarn, phi3 longrope, linear+tied), and
// random-weight models of SmolLM2's and a GQA-4 head-dim-128 shape. Same prompt in chunks that
// cross chunk boundaries, then teacher-forced decoding: at every step the logits must be close and
// the argmax the same (a differing argmax is allowed only at a near-tie of the CPU's logits).
// Also the memory plan against cudaMemGetInfo and the out-of-memory messages.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "core/engine/engine.h"
#include "core/engine/forward.h"
#include "core/engine/tensor_parallel.h"
#include "kernels/cuda_backend.h"
#include "core/model/model_loader.h"
#include "kernels/memory_plan.h"
#include "core/model/random_model.h"
#include "kernels/tests/gpu_check.h"
#include "tests/gguf_writer.h"

using namespace folio;
using namespace folio::gputest;

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != 0 ? std::string(v) : fallback;
}
std::string source_dir() { return env_or("FOLIO_SOURCE_DIR", "."); }

int argmax(std::span<const float> v) { return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()); }

// n tokens spread over the vocabulary (ids 3 .. vocab-1, multiplicative hashing in 32 bits).
std::vector<int32_t> spread_prompt(int n, int32_t vocab) {
  std::vector<int32_t> prompt(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    prompt[static_cast<size_t>(i)] = static_cast<int32_t>((i * 2654435761u) % static_cast<uint32_t>(vocab - 3) + 3);
  return prompt;
}

// Compares a CPU and a CUDA engine over the same model; returns the worst relative logits error.
double compare_engines(const std::string& label, std::shared_ptr<LoadedModel> model, int prompt_len, int steps,
                     int64_t chunk, double tol, bool gpu_blocks = true, KvQuant kv = KvQuant::None,
                     bool graphs = true) {
  EngineOptions cpu_o;
  cpu_o.backend = BackendKind::Cpu;
  cpu_o.kv_quant = kv;
  EngineOptions gpu_o;
  gpu_o.backend = BackendKind::Cuda;
  gpu_o.kv_quant = kv;
  gpu_o.decode_graphs = graphs;
  gpu_o.gpu_quantized_weights = gpu_blocks;
  gpu_o.context_tokens = prompt_len + steps + 8;
  auto cpu = Engine::create(model, nullptr, cpu_o);
  auto gpu = Engine::create(model, nullptr, gpu_o);
  GCHECK(gpu->backend_kind() == BackendKind::Cuda, "%s: not on the GPU (%s)", label.c_str(), gpu->notice().c_str());
  SessionOptions so;
  so.context_tokens = prompt_len + steps + 8;
  so.prefill_chunk = chunk;
  auto cs = cpu->create_session(so);
  auto gs = gpu->create_session(so);
  const std::vector<int32_t> prompt = spread_prompt(prompt_len, model->config.vocab_size);
  cs->prefill(prompt);
  gs->prefill(prompt);
  int agree = 0, near_ties = 0;
  double worst = 0.0;
  for (int s = 0; s < steps; ++s) {
    std::vector<float> lc(cs->logits().begin(), cs->logits().end()), lg(gs->logits().begin(), gs->logits().end());
    Compare c = compare(lg, lc);
    worst = std::max(worst, c.rel_norm);
    GCHECK(c.non_finite == 0 && c.rel_norm < tol, "%s step %d: logits rel %.3g (tol %.3g), non-finite %zu",
           label.c_str(), s, c.rel_norm, tol, c.non_finite);
    const int a = argmax(lc), b = argmax(lg);
    if (a == b) {
      ++agree;
    } else {
      const float margin = lc[static_cast<size_t>(a)] - lc[static_cast<size_t>(b)];
      const bool tie = margin < 0.05f * (1.0f + std::fabs(lc[static_cast<size_t>(a)]));
      near_ties += tie ? 1 : 0;
      GCHECK(tie, "%s step %d: argmax %d (cpu) vs %d (gpu), cpu margin %.4f", label.c_str(), s, a, b, margin);
    }
    const int32_t next = a;
    cs->prefill(std::span<const int32_t>(&next, 1));
    gs->prefill(std::span<const int32_t>(&next, 1));
  }
  std::printf("  %s: %d/%d argmax equal (%d near-ties), worst logits rel error %.3g\n", label.c_str(), agree, steps,
              near_ties, worst);
  return worst;
}

// How far the CPU's q8 KV cache takes the logits from its full-precision cache (the format's own
// error), over the steps compare_engines takes (prompt, then the full-precision engine's argmax).
double cpu_q8_format_gap(std::shared_ptr<LoadedModel> model, int prompt_len, int steps, int64_t chunk) {
  EngineOptions o;
  o.backend = BackendKind::Cpu;
  auto full = Engine::create(model, nullptr, o);
  o.kv_quant = KvQuant::Q8;
  auto q8 = Engine::create(model, nullptr, o);
  SessionOptions so;
  so.context_tokens = prompt_len + steps + 8;
  so.prefill_chunk = chunk;
  auto fs = full->create_session(so), qs = q8->create_session(so);
  const std::vector<int32_t> prompt = spread_prompt(prompt_len, model->config.vocab_size);
  fs->prefill(prompt);
  qs->prefill(prompt);
  double worst = 0.0;
  for (int s = 0; s < steps; ++s) {
    std::vector<float> a(fs->logits().begin(), fs->logits().end()), b(qs->logits().begin(), qs->logits().end());
    worst = std::max(worst, compare(b, a).rel_norm);
    const int32_t next = argmax(a);
    fs->prefill(std::span<const int32_t>(&next, 1));
    qs->prefill(std::span<const int32_t>(&next, 1));
  }
  return worst;
}

// Llama-3.1-8B's attention (GQA 4, head dim 128, llama3 RoPE) at a small width and depth.
ModelConfig small_gqa_shape(int layers) {
  ModelConfig c = named_model_shape("llama-3.1-8b");
  c.n_layers = layers;
  c.hidden = 1024;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.head_dim = 128;
  c.ffn_hidden = 2048;
  c.vocab_size = 4096;
  c.arch_label = "random gqa4 hd128";
  return c;
}

void test_stories260k() {
  const std::string path = source_dir() + "/resources/models/stories260K/stories260K.bin";
  std::shared_ptr<LoadedModel> model = load_model(path);
  compare_engines("stories260K", model, 200, 24, 64, 2e-2);
}

void test_hf_fixtures() {
  for (const char* name : {"llama3_scaled", "llama_linear_tied", "mistral_sharded", "phi3_longrope", "qwen2_yarn_tied"}) {
    const std::string path = source_dir() + "/tests/fixtures/hf/" + name;
    std::shared_ptr<LoadedModel> model = load_model(path);
    compare_engines(name, model, 300, 16, 128, 1e-1);  // tiny random models: small logits, bf16 noise up to ~7%
  }
}

void test_random_shapes() {
  std::shared_ptr<LoadedModel> smol = make_random_model(named_model_shape("smollm2-135m"), DType::BF16, 7);
  compare_engines("random smollm2-135m", smol, 700, 12, 256, 3e-2);
  std::shared_ptr<LoadedModel> gqa = make_random_model(small_gqa_shape(2), DType::BF16, 8);
  compare_engines("random gqa4 hd128 (llama3 rope)", gqa, 1500, 8, 512, 3e-2);
}

// Decode steps recorded as CUDA graphs and replayed against the same steps issued op by op: two
// sessions of one engine decoding in turn (each its own recordings), across the context buckets
// (64, 128, 256: a new recording at each), and a session that starts again after another was closed.
// The split of the keys differs between the two (a recording's launch is sized for its bucket), so
// the logits agree to fp32 summation order, not bit for bit, and the difference grows a little as
// it enters the bf16 KV of later tokens (H100: 0.4% after 200 steps of this random model; a wrong
// position or bucket gives differences of order 1).
void test_decode_graphs() {
  std::shared_ptr<LoadedModel> model = make_random_model(small_gqa_shape(2), DType::BF16, 12);
  auto engine_with = [&](bool graphs) {
    EngineOptions o;
    o.backend = BackendKind::Cuda;
    o.context_tokens = 512;
    o.decode_graphs = graphs;
    auto e = Engine::create(model, nullptr, o);
    GCHECK(e->backend_kind() == BackendKind::Cuda, "decode graphs: not on the GPU (%s)", e->notice().c_str());
    return e;
  };
  auto on = engine_with(true), off = engine_with(false);
  SessionOptions so;
  so.context_tokens = 400;
  const int32_t vocab = model->config.vocab_size;
  double worst = 0.0;
  int steps = 0;
  for (int round = 0; round < 2; ++round) {  // round 1: new sessions after the first ones closed
    std::vector<std::unique_ptr<Session>> a, b;  // a[i]: graphs, b[i]: op by op
    for (int i = 0; i < 2; ++i) {
      a.push_back(on->create_session(so));
      b.push_back(off->create_session(so));
      std::vector<int32_t> prompt(static_cast<size_t>(40 + 17 * i + round));
      for (size_t t = 0; t < prompt.size(); ++t) prompt[t] = static_cast<int32_t>((t * 40503u + 7u * i) % static_cast<uint32_t>(vocab - 3) + 3);
      a.back()->prefill(prompt);
      b.back()->prefill(prompt);
    }
    for (int s = 0; s < 220; ++s) {
      for (int i = 0; i < 2; ++i) {
        if (i == 1 && s % 3 == 0) continue;  // the sessions' positions drift apart
        std::vector<float> la(a[i]->logits().begin(), a[i]->logits().end());
        std::vector<float> lb(b[i]->logits().begin(), b[i]->logits().end());
        const Compare c = compare(la, lb);
        worst = std::max(worst, c.rel_norm);
        GCHECK(c.non_finite == 0 && c.rel_norm < 1e-2, "decode graphs round %d session %d step %d (position %lld): logits rel %.3g",
               round, i, s, static_cast<long long>(a[i]->n_past()), c.rel_norm);
        const int32_t next = static_cast<int32_t>((argmax(lb) + s) % vocab);
        a[i]->prefill(std::span<const int32_t>(&next, 1));
        b[i]->prefill(std::span<const int32_t>(&next, 1));
        ++steps;
      }
    }
  }
  std::printf("  %d decode steps, graphs vs op by op: worst logits rel %.3g\n", steps, worst);
}

// The KV kept on disk (Session::save_prefix / restore_prefix) on the GPU: the bf16 rows come out in
// the CPU backend's order (layer, K then V, kv head, position, head dim: compared with the CPU's fp32
// KV of the same prompt), go back in unchanged, and a session restored from the first part of them
// answers as the session that computed the whole prompt.
void test_kv_saved_and_restored() {
  const ModelConfig c = small_gqa_shape(3);
  std::shared_ptr<LoadedModel> model = make_random_model(c, DType::BF16, 11);
  const int n = 900, restored_n = 517, decode = 8;
  EngineOptions cpu_o;
  cpu_o.backend = BackendKind::Cpu;
  EngineOptions gpu_o;
  gpu_o.backend = BackendKind::Cuda;
  gpu_o.context_tokens = 1024;
  auto cpu = Engine::create(model, nullptr, cpu_o);
  auto gpu = Engine::create(model, nullptr, gpu_o);
  GCHECK(gpu->backend_kind() == BackendKind::Cuda, "not on the GPU (%s)", gpu->notice().c_str());
  SessionOptions so;
  so.context_tokens = 1024;
  so.prefill_chunk = 256;
  const std::vector<int32_t> prompt = spread_prompt(n, c.vocab_size);

  auto cs = cpu->create_session(so);
  auto whole = gpu->create_session(so);
  cs->prefill(prompt);
  whole->prefill(prompt);
  GCHECK(whole->kv_element_bytes() == 2, "the GPU's KV is bf16, got %d bytes an element", whole->kv_element_bytes());
  std::vector<uint8_t> saved, cpu_kv, again;
  GCHECK(whole->save_prefix(n, saved), "save_prefix on the GPU");
  GCHECK(cs->save_prefix(n, cpu_kv), "save_prefix on the CPU");
  const size_t elements = static_cast<size_t>(c.n_layers) * 2 * static_cast<size_t>(c.n_kv_heads) *
                          static_cast<size_t>(n) * static_cast<size_t>(c.head_dim);
  GCHECK(saved.size() == elements * 2 && cpu_kv.size() == elements * 4, "sizes %zu and %zu for %zu elements",
         saved.size(), cpu_kv.size(), elements);
  std::vector<uint16_t> gpu_bits(elements);
  std::vector<float> cpu_vals(elements);
  std::memcpy(gpu_bits.data(), saved.data(), saved.size());
  std::memcpy(cpu_vals.data(), cpu_kv.data(), cpu_kv.size());
  const Compare kc = compare(from_bf16(gpu_bits), cpu_vals);
  GCHECK(kc.non_finite == 0 && kc.rel_norm < 2e-2, "GPU KV against the CPU's: rel %.3g", kc.rel_norm);
  GCHECK(!whole->save_prefix(n + 1, again), "save_prefix past what the cache holds must fail");

  // All of it back: the very bytes; a buffer of the wrong size is refused.
  auto back = gpu->create_session(so);
  GCHECK(!back->restore_prefix(prompt, std::span<const uint8_t>(saved).first(saved.size() - 2)),
         "a KV of the wrong size must be refused");
  GCHECK(back->restore_prefix(prompt, saved) && back->n_past() == n, "restore_prefix of the whole prompt");
  GCHECK(back->save_prefix(n, again) && again == saved, "the KV read back differs from the KV written");

  // The first restored_n positions, then the rest prefilled: the same logits as the whole prompt's.
  auto part = gpu->create_session(so);
  GCHECK(part->restore_prefix(prompt, saved, restored_n) && part->n_past() == restored_n, "restore of the start");
  part->prefill(std::span<const int32_t>(prompt).subspan(static_cast<size_t>(restored_n)));
  double worst = 0.0;
  for (int s = 0; s < decode; ++s) {
    std::vector<float> lw(whole->logits().begin(), whole->logits().end()), lp(part->logits().begin(), part->logits().end());
    const Compare lc = compare(lp, lw);
    worst = std::max(worst, lc.rel_norm);
    GCHECK(lc.non_finite == 0 && lc.rel_norm < 2e-2, "step %d: restored session's logits rel %.3g", s, lc.rel_norm);
    GCHECK(argmax(lp) == argmax(lw), "step %d: argmax %d (restored) vs %d", s, argmax(lp), argmax(lw));
    const int32_t next = argmax(lw);
    whole->prefill(std::span<const int32_t>(&next, 1));
    part->prefill(std::span<const int32_t>(&next, 1));
  }
  std::printf("  %zu KV bytes for %d tokens; GPU vs CPU KV rel %.3g; restored %d of them: logits rel <= %.3g over %d steps\n",
              saved.size(), n, kc.rel_norm, restored_n, worst, decode);
}

// A GGUF of every quantized type the GPU keeps in blocks (head dim 64, GQA 2, rows of 256 values):
// the CPU engine against the GPU with the blocks kept (GEMV in decode, expanded before the GEMMs of
// the prompt chunks, quantized embedding and head) and with everything expanded to bf16 at load.
void test_quantized_gguf() {
  using namespace folio::testing;
  const int H = 256, heads = 4, kv_heads = 2, hd = 64, F = 512, V = 320, layers = 2;
  for (int variant = 0; variant < 2; ++variant) {
    GgufWriter w;
    const std::string a = "llama";
    w.add_string("general.architecture", a);
    w.add_string("general.name", "quantized test model");
    w.add_u32("general.alignment", 32);
    w.add_u32(a + ".context_length", 4096);
    w.add_u32(a + ".embedding_length", H);
    w.add_u32(a + ".feed_forward_length", F);
    w.add_u32(a + ".block_count", layers);
    w.add_u32(a + ".attention.head_count", heads);
    w.add_u32(a + ".attention.head_count_kv", kv_heads);
    w.add_f32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
    w.add_f32(a + ".rope.freq_base", 10000.0f);
    w.add_u32(a + ".rope.dimension_count", hd);
    w.add_string("tokenizer.ggml.model", "gpt2");
    std::vector<std::string> tokens;
    for (int i = 0; i < V; ++i) {
      std::string t = std::to_string(i);
      t.insert(t.begin(), 't');
      tokens.push_back(std::move(t));
    }
    w.add_strings("tokenizer.ggml.tokens", tokens);
    w.add_i32s("tokenizer.ggml.token_type", std::vector<int32_t>(V, 1));
    uint32_t seed = 900 + static_cast<uint32_t>(variant) * 100;
    auto type_id = [](DType t) {
      switch (t) {
        case DType::Q8_0: return kGgufQ8_0;
        case DType::Q4_0: return kGgufQ4_0;
        case DType::Q4_1: return kGgufQ4_1;
        case DType::Q4_K: return kGgufQ4_K;
        case DType::Q5_K: return kGgufQ5_K;
        case DType::Q6_K: return kGgufQ6_K;
        default: return kGgufF32;
      }
    };
    auto matrix = [&](const std::string& name, DType t, int rows, int cols) {
      if (t == DType::F32) {
        const auto v = random_normal(static_cast<size_t>(rows) * cols, seed++, 0.05f);
        std::vector<uint8_t> bytes(v.size() * 4);
        std::memcpy(bytes.data(), v.data(), bytes.size());
        w.add_tensor(name, {cols, rows}, kGgufF32, bytes);
      } else {
        w.add_tensor(name, {cols, rows}, type_id(t), random_blocks(t, rows, cols, seed++));
      }
    };
    auto norm = [&](const std::string& name) {
      std::vector<float> v(H);
      for (int i = 0; i < H; ++i) v[static_cast<size_t>(i)] = 1.0f + 0.01f * static_cast<float>(i % 7);
      std::vector<uint8_t> bytes(v.size() * 4);
      std::memcpy(bytes.data(), v.data(), bytes.size());
      w.add_tensor(name, {H}, kGgufF32, bytes);
    };
    // variant 0: a different type in every matrix (Q4_K_M-like mixes); variant 1: the 32-value types,
    // a float tensor inside the fused q|k|v and a tied Q8_0 embedding
    const bool v0 = variant == 0;
    matrix("token_embd.weight", v0 ? DType::Q4_K : DType::Q8_0, V, H);
    norm("output_norm.weight");
    if (v0) matrix("output.weight", DType::Q6_K, V, H);
    for (int l = 0; l < layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      norm(p + "attn_norm.weight");
      norm(p + "ffn_norm.weight");
      matrix(p + "attn_q.weight", v0 ? DType::Q4_K : DType::Q4_0, heads * hd, H);
      matrix(p + "attn_k.weight", v0 ? DType::Q5_K : DType::Q4_1, kv_heads * hd, H);
      matrix(p + "attn_v.weight", v0 ? DType::Q6_K : DType::F32, kv_heads * hd, H);
      matrix(p + "attn_output.weight", v0 ? DType::Q8_0 : DType::Q4_1, H, heads * hd);
      matrix(p + "ffn_gate.weight", v0 ? DType::Q4_0 : DType::Q8_0, F, H);
      matrix(p + "ffn_up.weight", v0 ? DType::Q4_1 : DType::Q4_0, F, H);
      matrix(p + "ffn_down.weight", v0 ? DType::Q6_K : DType::Q8_0, H, F);
    }
    const auto path = std::filesystem::temp_directory_path() /
                      ("folio-gpu-quant-" + std::to_string(variant) + "-" + std::to_string(::getpid()) + ".gguf");
    {
      const auto bytes = w.bytes();
      FILE* f = std::fopen(path.c_str(), "wb");
      GCHECK(f != nullptr, "cannot write %s", path.c_str());
      if (f == nullptr) return;
      std::fwrite(bytes.data(), 1, bytes.size(), f);
      std::fclose(f);
    }
    std::shared_ptr<LoadedModel> model = load_model(path.string());
    const std::string label = v0 ? "gguf Q4_K/Q5_K/Q6_K/Q8_0/Q4_0/Q4_1" : "gguf Q4_0/Q4_1/Q8_0 + f32 in q|k|v, tied";
    compare_engines(label + " (blocks on the GPU)", model, 300, 12, 128, 5e-2, true);
    compare_engines(label + " (bf16 on the GPU)", model, 300, 12, 128, 5e-2, false);
    // the plan counts the blocks: far below the bf16 plan
    const size_t blocks = plan_weights(model->config, &model->weights).bytes, bf16 = plan_weight_bytes(model->config);
    GCHECK(blocks < bf16, "%s: weights in blocks %zu bytes, bf16 %zu", label.c_str(), blocks, bf16);
    std::filesystem::remove(path);
  }
}

// The plan says what the device loses: weights + KV + scratch against cudaMemGetInfo, within 5%.
void test_memory_plan_matches_device() {
  size_t free0 = 0, total = 0;
  cudaFree(nullptr);
  EngineOptions o;
  o.backend = BackendKind::Cuda;
  o.context_tokens = 32768;
  for (DType dt : {DType::BF16, DType::Q4_K}) {
  std::shared_ptr<LoadedModel> model = make_random_model(named_model_shape("llama-3.1-8b"), dt, 1, true);
  FOLIO_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
  {
    auto engine = Engine::create(model, nullptr, o);
    SessionOptions so;
    so.context_tokens = 32768;
    auto session = engine->create_session(so);
    std::vector<int32_t> prompt(1000, 5);
    session->prefill(prompt);
    size_t free1 = 0;
    FOLIO_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
    const DeviceMemory m = engine->memory().front();
    const size_t ours = m.weights_bytes + m.kv_bytes + m.scratch_bytes;
    const size_t seen = free0 - free1;
    const MemoryPlan plan = plan_memory(engine->config(), 32768, engine->default_prefill_chunk(), &model->weights);
    const double diff = std::fabs(static_cast<double>(seen) - static_cast<double>(ours)) / static_cast<double>(seen);
    std::printf("  8B shape (%s), 32K context: plan %s; metrics %.3f GiB; cudaMemGetInfo %.3f GiB (%.2f%%)\n",
                dtype_name(dt), describe_plan(plan).c_str(), ours / 1073741824.0, seen / 1073741824.0, 100 * diff);
    GCHECK(ours == plan.total(), "metrics %zu differ from the plan %zu", ours, plan.total());
    GCHECK(diff < 0.05, "metrics and cudaMemGetInfo differ by %.2f%%", 100 * diff);
    // what the Settings show: the largest context the plan fits in the memory free at load
    // (capped by the model's trained context), and the KV type
    const int64_t fits = largest_context(engine->config(), engine->default_prefill_chunk(), free0, &model->weights);
    std::printf("  largest context here: %lld tokens (plan: %lld), KV %s\n", static_cast<long long>(engine->largest_context()),
                static_cast<long long>(fits), engine->kv_type().c_str());
    GCHECK(engine->kv_type() == "bf16", "KV type %s", engine->kv_type().c_str());
    GCHECK(engine->largest_context() >= 32768 && engine->largest_context() <= std::max<int64_t>(fits, 32768) &&
               engine->largest_context() <= engine->config().max_context,
           "largest context %lld (plan at load %lld)", static_cast<long long>(engine->largest_context()),
           static_cast<long long>(fits));
  }
  }
}

// The 8-bit (q8) KV cache on the GPU against the CPU's q8 cache, the reference (its fp32 rows rounded
// by the same rule, core/model/quant.h): stories260K (head dim 8: the rows are expanded to bf16 for
// the generic kernels, in decode too), a random SmolLM2 shape (hd 64) and the GQA hd-128 shape
// (decode reads the 8-bit rows; recorded as graphs, and op by op); q8 against bf16 on the GPU under
// sparse prefill at 8K (estimation and the tile lists read the expanded rows); the memory plan
// against the device, and the caps: the 8B shape with Q4_K weights at 128K within 24 GB and
// 32K within 12 GB.
void test_kv_q8() {
  {
    // The GPU and the CPU round slightly different K and V (bf16 activations against fp32) to 8 bits,
    // and a value near a rounding edge goes to the neighbouring step: q8 magnifies the engines' small
    // differences into steps of the format's size. So the GPU's q8 must stay as close to the CPU's q8
    // as the bf16 comparison's tolerance or the format's own error (CPU q8 against CPU fp32), whichever
    // is larger; on stories260K (head dim 8: one scale per 8 values) the format's error is large.
    std::shared_ptr<LoadedModel> stories = load_model(source_dir() + "/resources/models/stories260K/stories260K.bin");
    const double format_gap = cpu_q8_format_gap(stories, 200, 24, 64);
    std::printf("  stories260K: the q8 format's own error on the CPU (q8 against fp32 KV): worst logits rel %.3g\n",
                format_gap);
    compare_engines("stories260K, q8 KV", stories, 200, 24, 64, std::max(2e-2, format_gap), true, KvQuant::Q8);
  }
  std::shared_ptr<LoadedModel> smol = make_random_model(named_model_shape("smollm2-135m"), DType::BF16, 7);
  compare_engines("random smollm2-135m, q8 KV", smol, 700, 12, 256, 3e-2, true, KvQuant::Q8);
  std::shared_ptr<LoadedModel> gqa = make_random_model(small_gqa_shape(2), DType::BF16, 8);
  compare_engines("random gqa4 hd128, q8 KV, graphs", gqa, 1500, 40, 512, 3e-2, true, KvQuant::Q8, true);
  compare_engines("random gqa4 hd128, q8 KV, op by op", gqa, 1500, 40, 512, 3e-2, true, KvQuant::Q8, false);

  // sparse prefill from the 8-bit cache against the bf16 cache, both on the GPU, beside the same
  // comparison under dense attention (the format's own error at 8K) and sparse against dense. On
  // random weights the sparse plans alone move the logits far from dense (0.58 on the H200), so q8's
  // slightly different keys, moving a few tiles across the budget's edge, move them by a part of
  // that (0.093 at step 0, then < 0.05); estimation or tile lists reading wrong rows would move
  // them by the whole of it.
  {
    auto engine_with = [&](KvQuant kv) {
      EngineOptions o;
      o.backend = BackendKind::Cuda;
      o.context_tokens = 8192 + 64;
      o.kv_quant = kv;
      return Engine::create(gqa, nullptr, o);
    };
    auto e16 = engine_with(KvQuant::None), e8 = engine_with(KvQuant::Q8);
    GCHECK(e8->kv_type() == "q8" && e16->kv_type() == "bf16", "KV types %s / %s", e8->kv_type().c_str(),
           e16->kv_type().c_str());
    auto session = [&](Engine& e, sparse::AttentionMode mode) {
      SessionOptions so;
      so.context_tokens = 8192 + 64;
      so.attention = mode;
      return e.create_session(so);
    };
    auto s16 = session(*e16, sparse::AttentionMode::Sparse), s8 = session(*e8, sparse::AttentionMode::Sparse);
    auto d16 = session(*e16, sparse::AttentionMode::Dense), d8 = session(*e8, sparse::AttentionMode::Dense);
    const int32_t vocab = gqa->config.vocab_size;
    std::vector<int32_t> prompt(8192);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 2654435761u) % static_cast<uint32_t>(vocab - 3) + 3);
    for (auto* s : {&s16, &s8, &d16, &d8}) (*s)->prefill(prompt);
    double worst_sparse = 0.0, worst_dense = 0.0, sparse_vs_dense = 0.0;
    int agree = 0;
    for (int step = 0; step < 8; ++step) {
      auto logits = [](Session& s) { return std::vector<float>(s.logits().begin(), s.logits().end()); };
      const std::vector<float> a = logits(*s16), b = logits(*s8), da = logits(*d16), db = logits(*d8);
      const Compare cs = compare(b, a), cd = compare(db, da), csd = compare(a, da);
      GCHECK(cs.non_finite == 0, "sparse 8K step %d: non-finite logits from the q8 cache", step);
      worst_sparse = std::max(worst_sparse, cs.rel_norm);
      worst_dense = std::max(worst_dense, cd.rel_norm);
      sparse_vs_dense = std::max(sparse_vs_dense, csd.rel_norm);
      agree += argmax(a) == argmax(b) ? 1 : 0;
      const int32_t next = argmax(a);
      for (auto* s : {&s16, &s8, &d16, &d8}) (*s)->prefill(std::span<const int32_t>(&next, 1));
    }
    std::printf("  8K, q8 against bf16 KV on the GPU: sparse worst logits rel %.3g (argmax equal %d/8), dense %.3g; "
                "sparse against dense (bf16) %.3g\n",
                worst_sparse, agree, worst_dense, sparse_vs_dense);
    GCHECK(worst_dense < 3e-2, "dense 8K: q8 vs bf16 %.3g", worst_dense);
    GCHECK(worst_sparse < std::max(5e-2, 0.25 * sparse_vs_dense),
           "sparse 8K: q8 vs bf16 %.3g against sparse vs dense's %.3g (dense q8 vs bf16 %.3g)", worst_sparse,
           sparse_vs_dense, worst_dense);
    GCHECK(agree >= 7, "sparse 8K: argmax equal at %d of 8 steps", agree);
  }

  // memory: the plan against the device, and the 8B shape with Q4_K weights under the caps
  std::shared_ptr<LoadedModel> big = make_random_model(named_model_shape("llama-3.1-8b"), DType::Q4_K, 1, true);
  for (const auto& [context, cap_gib] : {std::pair<int64_t, int>{131072, 24}, {32768, 12}}) {
    size_t free0 = 0, free1 = 0, total = 0;
    cudaFree(nullptr);
    FOLIO_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
    EngineOptions o;
    o.backend = BackendKind::Cuda;
    o.context_tokens = context;
    o.kv_quant = KvQuant::Q8;
    o.gpu_mem_limit_bytes = static_cast<size_t>(cap_gib) << 30;
    auto engine = Engine::create(big, nullptr, o);
    SessionOptions so;
    so.context_tokens = context;
    auto session = engine->create_session(so);
    std::vector<int32_t> prompt(1000, 5);
    session->prefill(prompt);
    FOLIO_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
    const DeviceMemory m = engine->memory().front();
    const size_t ours = m.weights_bytes + m.kv_bytes + m.scratch_bytes;
    const MemoryPlan plan = plan_memory(engine->config(), context, engine->default_prefill_chunk(), &big->weights, KvQuant::Q8);
    const MemoryPlan plan16 = plan_memory(engine->config(), context, engine->default_prefill_chunk(), &big->weights);
    const double diff = std::fabs(static_cast<double>(free0 - free1) - static_cast<double>(ours)) / static_cast<double>(free0 - free1);
    std::printf("  8B shape, Q4_K weights, q8 KV, %lld tokens under %d GiB: %s (bf16 KV: %s); device %.3f GiB (%.2f%%)\n",
                static_cast<long long>(context), cap_gib, describe_plan(plan).c_str(), describe_plan(plan16).c_str(),
                (free0 - free1) / 1073741824.0, 100 * diff);
    GCHECK(engine->kv_type() == "q8", "KV type %s", engine->kv_type().c_str());
    GCHECK(ours == plan.total(), "metrics %zu differ from the plan %zu", ours, plan.total());
    GCHECK(diff < 0.05, "metrics and cudaMemGetInfo differ by %.2f%%", 100 * diff);
    GCHECK(plan.total() <= o.gpu_mem_limit_bytes, "the plan %zu is over the cap", plan.total());
    GCHECK(plan.kv_bytes * 100 < plan16.kv_bytes * 58, "q8 KV %zu bytes against bf16 %zu", plan.kv_bytes, plan16.kv_bytes);
  }
  // a format the GPU does not keep is refused with the one it does
  EngineOptions fp8;
  fp8.backend = BackendKind::Cuda;
  fp8.kv_quant = KvQuant::Fp8;
  bool refused = false;
  try {
    Engine::create(gqa, nullptr, fp8);
  } catch (const Error& e) {
    refused = std::string(e.what()).find("q8") != std::string::npos;
    std::printf("  fp8: %s\n", e.what());
  }
  GCHECK(refused, "an fp8 KV cache on the GPU must be refused, naming q8");
}

void test_out_of_memory_messages() {
  std::shared_ptr<LoadedModel> model = make_random_model(named_model_shape("llama-3.1-8b"), DType::BF16, 1, true);
  // a cap below the weights
  {
    EngineOptions o;
    o.backend = BackendKind::Cuda;
    o.gpu_mem_limit_bytes = size_t{8} << 30;
    bool threw = false;
    try {
      Engine::create(model, nullptr, o);
    } catch (const Error& e) {
      threw = e.code() == ErrorCode::OutOfMemory && std::string(e.what()).find("Not even the weights") != std::string::npos;
      std::printf("  8 GiB cap: %s\n", e.what());
    }
    GCHECK(threw, "a cap below the weights must fail with a clear message");
  }
  // a context that does not fit under a cap: the message names the largest one that does
  {
    EngineOptions o;
    o.backend = BackendKind::Cuda;
    o.gpu_mem_limit_bytes = size_t{24} << 30;
    o.context_tokens = 131072;
    bool threw = false;
    try {
      Engine::create(model, nullptr, o);
    } catch (const Error& e) {
      const std::string msg = e.what();
      threw = e.code() == ErrorCode::OutOfMemory && msg.find("largest context that fits is") != std::string::npos;
      std::printf("  24 GiB cap, 128K: %s\n", e.what());
      // the context it names really fits
      const size_t at = msg.find("largest context that fits is ");
      if (at != std::string::npos) {
        const int64_t fits = std::stoll(msg.substr(at + 29));
        o.context_tokens = fits;
        auto engine = Engine::create(model, nullptr, o);
        SessionOptions so;
        so.context_tokens = fits;
        auto session = engine->create_session(so);
        GCHECK(session->context_size() == fits, "the named context %lld does not fit", static_cast<long long>(fits));
        SessionOptions too_big;
        too_big.context_tokens = fits + 300000;
        bool kv_threw = false;
        try {
          engine->create_session(too_big);
        } catch (const Error& e2) {
          kv_threw = e2.code() == ErrorCode::OutOfMemory;
          std::printf("  a second, larger session: %s\n", e2.what());
        }
        GCHECK(kv_threw, "a session past the cap must fail");
      }
    }
    GCHECK(threw, "a context past the cap must fail and name the largest that fits");
  }
}

}  // namespace

// Tensor parallel through NCCL (issue 21): one rank on one GPU against the plain backend (the part
// written then added instead of accumulated in the GEMM: fp32 rounding only; both issue every decode
// op, no graphs), then, where the machine has two GPUs, two ranks against one GPU on a 4K prompt
// (the target: relative error within 1e-2, argmax equal at >= 99% of positions), the memory
// each GPU holds, and the per-GPU plan's refusal that names the GPU and the largest context. Both
// runs are fed the same tokens (the plain run's greedy choices), so one near-tie cannot fork them.
struct TpRun {
  std::vector<std::vector<float>> logits;  // the prompt's last, then each decode step's
  std::vector<int32_t> argmax;             // every position's
  std::vector<int32_t> fed;                // the decode tokens given
};

struct Argmaxes final : ForwardObserver {
  size_t vocab = 0;
  std::vector<int32_t>* out = nullptr;
  bool wants_all_logits() const override { return true; }
  void on_logits(int64_t, int64_t rows, const float* logits) override {
    for (int64_t r = 0; r < rows; ++r) {
      const float* l = logits + static_cast<size_t>(r) * vocab;
      out->push_back(static_cast<int32_t>(std::max_element(l, l + vocab) - l));
    }
  }
};

TpRun run_backend(Backend& b, const std::vector<int32_t>& prompt, int steps, int64_t chunk,
                  const std::vector<int32_t>* feed = nullptr) {
  const ModelConfig& c = b.config();
  auto kv = b.create_kv_cache(static_cast<int64_t>(prompt.size()) + steps + 8);
  const RopeTable rope = make_rope_table(c.rope, kv->capacity());
  AttentionPolicy dense;
  AttentionStats stats;
  TpRun r;
  Argmaxes obs;
  obs.vocab = static_cast<size_t>(c.vocab_size);
  obs.out = &r.argmax;
  std::vector<float> last(static_cast<size_t>(c.vocab_size));
  for (size_t done = 0; done < prompt.size(); done += static_cast<size_t>(chunk)) {
    const size_t n = std::min(prompt.size() - done, static_cast<size_t>(chunk));
    forward(b, *kv, std::span<const int32_t>(prompt).subspan(done, n), static_cast<int64_t>(done), rope, dense, stats,
            &obs, last.data());
  }
  int64_t pos = static_cast<int64_t>(prompt.size());
  for (int s = 0; s <= steps; ++s, ++pos) {
    r.logits.push_back(last);
    if (s == steps) break;
    const int32_t next[1] = {feed != nullptr ? (*feed)[static_cast<size_t>(s)] : argmax(last)};
    r.fed.push_back(next[0]);
    forward(b, *kv, next, pos, rope, dense, stats, &obs, last.data());
  }
  return r;
}

void compare_runs(const char* label, const TpRun& got, const TpRun& want, double tol, double min_agree) {
  double worst = 0.0;
  for (size_t s = 0; s < want.logits.size(); ++s) {
    const Compare c = compare(got.logits[s], want.logits[s]);
    worst = std::max(worst, c.max_rel);
    GCHECK(c.non_finite == 0, "%s step %zu: non-finite logits", label, s);
  }
  size_t agree = 0;
  GCHECK(got.argmax.size() == want.argmax.size(), "%s: %zu positions vs %zu", label, got.argmax.size(),
         want.argmax.size());
  for (size_t i = 0; i < want.argmax.size(); ++i) agree += got.argmax[i] == want.argmax[i] ? 1 : 0;
  const double share = double(agree) / double(std::max<size_t>(want.argmax.size(), 1));
  std::printf("  %s: max relative logit error %.3g over %zu steps, argmax equal at %zu/%zu positions\n", label, worst,
              want.logits.size(), agree, want.argmax.size());
  GCHECK(worst < tol, "%s: relative logit error %.3g (tolerance %.3g)", label, worst, tol);
  GCHECK(share >= min_agree, "%s: argmax equal at %.2f%% of positions", label, 100 * share);
}

void test_tensor_parallel() {
  if (const std::string why = nccl_unavailable(); !why.empty()) {
    std::printf("  NCCL cannot be used here (%s): skipped\n", why.c_str());
    return;
  }
  int gpus = 0;
  cudaGetDeviceCount(&gpus);
  std::shared_ptr<LoadedModel> model = make_random_model(small_gqa_shape(4), DType::BF16, 21);
  const int prompt_len = gpus >= 2 ? 4096 : 1500;
  const std::vector<int32_t> prompt = spread_prompt(prompt_len, model->config.vocab_size);  // vocab 4096
  BackendOptions o;
  o.context_tokens = prompt_len + 64;
  o.chunk = 1024;
  o.decode_graphs = false;  // the ranks issue every op too
  auto plain = create_cuda_backend(model, o);
  const TpRun want = run_backend(*plain, prompt, 16, 1024);
  {
    BackendOptions t = o;
    t.devices = {0};
    auto one = create_cuda_tensor_parallel_backend(model, t);
    GCHECK(one->name().find("NCCL") != std::string::npos, "name %s", one->name().c_str());
    compare_runs("NCCL, one rank on cuda:0", run_backend(*one, prompt, 16, 1024, &want.fed), want, 1e-3, 0.999);
  }
  if (gpus < 2) {
    std::printf("  one GPU here: two ranks not run\n");
    return;
  }
  BackendOptions t = o;
  t.devices = {0, 1};
  auto two = create_cuda_tensor_parallel_backend(model, t);
  compare_runs("NCCL, two ranks on cuda:0,1 (4K prompt)", run_backend(*two, prompt, 16, 1024, &want.fed), want, 1e-2,
               0.99);
  {  // one KV head for 8 query heads: each rank holds a copy of it
    ModelConfig c1 = small_gqa_shape(2);
    c1.n_kv_heads = 1;
    std::shared_ptr<LoadedModel> mqa = make_random_model(c1, DType::BF16, 22);
    std::vector<int32_t> short_prompt(prompt.begin(), prompt.begin() + 1500);
    BackendOptions p = o;
    auto plain1 = create_cuda_backend(mqa, p);
    const TpRun want1 = run_backend(*plain1, short_prompt, 8, 1024);
    p.devices = {0, 1};
    auto two1 = create_cuda_tensor_parallel_backend(mqa, p);
    compare_runs("NCCL, two ranks, the one KV head copied", run_backend(*two1, short_prompt, 8, 1024, &want1.fed),
                 want1, 1e-2, 0.99);
  }
  auto kv_two = two->create_kv_cache(8192);
  auto kv_one = plain->create_kv_cache(8192);
  const std::vector<DeviceMemory> mem = two->memory();
  GCHECK(mem.size() == 2 && mem[0].device.rfind("cuda:0", 0) == 0 && mem[1].device.rfind("cuda:1", 0) == 0,
         "memory per GPU: %zu entries", mem.size());
  GCHECK(mem[1].kv_bytes * 2 <= kv_one->bytes() + (size_t{4} << 20), "cuda:1 holds %zu bytes of KV, one GPU %zu",
         mem[1].kv_bytes, kv_one->bytes());
  std::printf("  per GPU: weights %zu / %zu MiB, KV %zu / %zu MiB\n", mem[0].weights_bytes >> 20,
              mem[1].weights_bytes >> 20, mem[0].kv_bytes >> 20, mem[1].kv_bytes >> 20);
  // a cap on each GPU below its share: refused before anything is allocated, naming the GPU
  t.mem_limit_bytes = size_t{8} << 20;
  bool threw = false;
  try {
    create_cuda_tensor_parallel_backend(model, t);
  } catch (const Error& e) {
    threw = std::string(e.what()).find("cuda:0") != std::string::npos && e.code() == ErrorCode::OutOfMemory;
    std::printf("  capped: %s\n", e.what());
  }
  GCHECK(threw, "a cap below each GPU's share must be refused with the GPU named");
}

int main() {
  folio::register_cuda_backend();
  return run_cases("tst_gpu_model", {
                                        {"stories260K", test_stories260k},
                                        {"hf_fixtures", test_hf_fixtures},
                                        {"random_shapes", test_random_shapes},
                                        {"quantized_gguf", test_quantized_gguf},
                                        {"kv_saved_and_restored", test_kv_saved_and_restored},
                                        {"decode_graphs", test_decode_graphs},
                                        {"memory_plan_matches_device", test_memory_plan_matches_device},
                                        {"out_of_memory_messages", test_out_of_memory_messages},
                                        {"tensor_parallel", test_tensor_parallel},
                                        {"kv_q8", test_kv_q8},
                                    });
}
