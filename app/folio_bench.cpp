// folio-bench: measures TTFT, prefill and decode rates and memory of a backend; prints JSON.
//   folio-bench (--model PATH | --shape NAME [--dtype f32|bf16|f16] [--random-weights])
//               [--lengths 512,2048] [--decode-tokens 32] [--reps 3] [--chunk N] [--threads N]
//               [--backend cpu|cuda] [--attention dense] [--gpu-mem-limit GIB] [--json FILE]
//   folio-bench --attention-only --heads 32 --kv-heads 8 --head-dim 128 --lengths 16384,32768
//   folio-bench --matmul-only --dtype q4_k --rows 4096 --cols 4096 --lengths 1,64 [--threads N]
// Each configuration runs --reps times on random prompt tokens; medians are reported. --json
// appends one JSON object per length (JSON lines). --attention-only times the prefill attention
// kernel alone (causal, one chunk) and reports TFLOP/s. --matmul-only times the CPU backend's
// matmul y[n, rows] = x[n, cols] W^T with W random (normal) and stored as --dtype, for n = each
// length, and reports the median time per call and per weight. --kv-disk FOLDER adds, per length,
// the KV kept on disk (what the app does with --kv-cache): a prompt of a documents' prefix (all but
// the last 64 tokens) and a question, its TTFT from a fresh prefill against its TTFT from the
// prefix's KV saved in FOLDER (KvStore, as the app saves it) and loaded again, once after the file was
// dropped from the page cache (a restart on a machine whose memory went to other things) and once
// from the page cache.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <cctype>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "app/cli_args.h"
#include "core/chat/kv_store.h"
#include "core/engine/engine.h"
#include "core/common/thread_pool.h"
#include "core/cpu/cpu_ops.h"
#include "core/engine/metrics_json.h"
#include "core/model/quant.h"
#include "core/model/random_model.h"
#include "kernels/cuda_backend.h"
#include "kernels/cuda_bench.h"

namespace {

const char* kUsage =
    "usage: folio-bench (--model PATH | --shape NAME [--dtype f32|bf16|f16|q8_0|q4_0|q4_1|q4_k|q5_k|q6_k] [--random-weights])\n"
    "                   [--gpu-weights blocks|bf16]   (quantized weights kept in their blocks on the GPU, or bf16)\n"
    "                   [--lengths N[,N...]] [--decode-tokens N] [--reps N] [--chunk N] [--threads N]\n"
    "                   [--backend cpu|cuda] [--attention auto|dense|sparse] [--gpu-mem-limit GIB] [--json FILE]\n"
    "                   [--gpus LIST]   (the model laid across these GPUs, tensor parallel; the cap applies to each)\n"
    "                   [--kv-dtype native|q8]   (the KV cache's values: bf16 on the GPU, or 8-bit blocks with a scale each)\n"
    "                   [--sparse-pattern triangular|interval-slash|block-cluster]   (every head, budgets kept)\n"
    "                   [--last-queries N]   (Interval-Slash estimation's sample rows a head; default the config's)\n"
    "                   [--kv-disk FOLDER]   (TTFT from the documents' KV saved on disk vs a fresh prefill)\n"
    "       folio-bench --attention-only [--heads 32] [--kv-heads 8] [--head-dim 128] [--lengths N[,N...]]\n"
    "                   [--sparse-stride S]   (tile-list kernel: sinks, a 16-tile window, every S-th key tile)\n"
    "kernel variants:   [--attn-kernel auto|mma|hopper] [--attn-mtiles 1|2] (mma: m16 query tiles per warp) [--sparse-sums fused|gemm]\n"
    "                   [--decode-graphs on|off] (CUDA: decode steps recorded as graphs and replayed; default on)\n"
    "                   [--decode-kernel auto|simt] (CUDA decode attention: tensor cores where they apply, or SIMT)\n"
    "                   [--reps N] [--json FILE]\n"
    "       folio-bench --matmul-only [--dtype f32|bf16|f16|q8_0|q4_0|q4_1|q4_k|q5_k|q6_k] [--rows M] [--cols K]\n"
    "                   [--lengths N[,N...]] [--reps N] [--threads N] [--json FILE]   (CPU backend)\n"
    "shapes: smollm2-135m, llama-3.1-8b (llama3.1-8b), phi-3.5-mini (phi3.5-mini), qwen2.5-7b\n";

std::string canonical_shape(const std::string& s) {
  if (s == "llama3.1-8b") return "llama-3.1-8b";
  if (s == "phi3.5-mini") return "phi-3.5-mini";
  if (s == "qwen2.5-7b") return "qwen2.5-7b";
  return s;
}

void append_json_line(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return;
  FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) throw folio::Error(folio::ErrorCode::FileUnreadable, "cannot write " + path);
  std::fprintf(f, "%s\n", j.dump().c_str());
  std::fclose(f);
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v <= 0) throw folio::cli::UsageError("bad token count \"" + item + "\"");
    out.push_back(v);
  }
  return out;
}

folio::DType dtype_from_name(const std::string& name) {
  using folio::DType;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q5_K,
                  DType::Q6_K}) {
    std::string lower = folio::dtype_name(t);
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (name == lower) return t;
  }
  throw folio::cli::UsageError("--dtype takes f32, bf16, f16, q8_0, q4_0, q4_1, q4_k, q5_k or q6_k");
}

std::string today() {
  char buf[16];
  std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::gmtime(&t));
  return buf;
}

}  // namespace

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// --kv-disk: a prompt of `len` tokens, the last 64 the question; TTFT from a fresh prefill, then
// from the documents' KV saved by KvStore and loaded again (cold: the file dropped from the page
// cache; warm: from it). Load and restore count in the TTFT, as they do in the app.
nlohmann::json measure_kv_disk(folio::Engine& engine, const folio::SessionOptions& so, int64_t len,
                               const std::string& folder, const std::string& model_id, std::mt19937& rng) {
  const int64_t question = std::min<int64_t>(64, len / 2);
  const int64_t prefix = len - question;
  std::uniform_int_distribution<int32_t> token(3, engine.config().vocab_size - 1);
  std::vector<int32_t> prompt(static_cast<size_t>(len));
  for (auto& t : prompt) t = token(rng);
  folio::RequestOptions req;
  req.keep_prefix = true;
  req.generate.max_tokens = 1;
  req.generate.stop_at_eos = false;
  req.generate.sampler.temperature = 0.0f;
  nlohmann::json row;
  row["kind"] = "kv_disk";
  row["n_prompt"] = len;
  row["prefix_tokens"] = prefix;
  folio::chat::KvStore store(folder, uint64_t{1} << 42);
  std::string key;
  int32_t fresh_token = -1;
  const std::span<const int32_t> docs(prompt.data(), static_cast<size_t>(prefix));
  std::string layout;
  {
    auto s = engine.create_session(so);
    const folio::RequestResult r = s->run(prompt, req);
    row["fresh_ttft_ms"] = r.metrics.ttft_ms;
    fresh_token = r.tokens.empty() ? -1 : r.tokens.front();
    if (s->kv_element_bytes() <= 0) {
      row["note"] = "this backend keeps no KV on disk";
      return row;
    }
    layout = folio::chat::KvStore::layout(engine.backend_kind() != folio::BackendKind::Cpu, s->kv_element_bytes());
    key = folio::chat::KvStore::key(model_id, layout, docs);
    const auto t0 = std::chrono::steady_clock::now();
    const double compute_ms = r.metrics.prefill_ms * static_cast<double>(prefix) / static_cast<double>(len);
    row["file_bytes"] = folio::chat::save_session_prefix(store, *s, key, docs, compute_ms);  // as the app saves it
    row["save_ms"] = ms_since(t0);
    row["layout"] = layout;
  }
  const std::string path = folder + "/" + key + ".kv";
  for (const char* pass : {"cold", "warm"}) {
    if (std::string(pass) == "cold") {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      const bool dropped = fd >= 0 && ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
      if (fd >= 0) ::close(fd);
      row["cold_dropped_from_page_cache"] = dropped;
    }
    auto s = engine.create_session(so);
    const auto t0 = std::chrono::steady_clock::now();
    const folio::chat::KvRestore k = folio::chat::restore_saved_prefix(store, *s, model_id, layout, docs, 32, true);
    const double load_ms = ms_since(t0);  // the file read and checked, the cache written
    if (k.tokens != prefix) throw folio::Error(folio::ErrorCode::FileUnreadable, "the saved KV did not load: " + k.note);
    const folio::RequestResult r = s->run(prompt, req);
    const std::string p(pass);
    row[p + "_load_ms"] = load_ms;
    row[p + "_run_ttft_ms"] = r.metrics.ttft_ms;
    row[p + "_ttft_ms"] = load_ms + r.metrics.ttft_ms;
    row[p + "_load_gib_s"] = row["file_bytes"].get<double>() / 1073741824.0 / (load_ms / 1000.0);
    row[p + "_reused_tokens"] = r.metrics.reused_tokens;
    row[p + "_same_first_token"] = !r.tokens.empty() && r.tokens.front() == fresh_token;
  }
  // what the app would do next time with this file (the store's read rate is now measured)
  {
    auto s = engine.create_session(so);
    const folio::chat::KvRestore k = folio::chat::restore_saved_prefix(store, *s, model_id, layout, docs, 32);
    row["app_loads_it"] = k.tokens > 0;
    if (!k.note.empty()) row["app_note"] = k.note;
  }
  std::error_code ec;
  std::filesystem::remove(path, ec);
  std::fprintf(stderr,
               "folio-bench: kv-disk %lld tokens: fresh ttft %.0f ms; from disk cold %.0f ms (load %.0f), warm %.0f ms "
               "(load %.0f); file %.1f MiB, save %.0f ms\n",
               static_cast<long long>(len), row["fresh_ttft_ms"].get<double>(), row["cold_ttft_ms"].get<double>(),
               row["cold_load_ms"].get<double>(), row["warm_ttft_ms"].get<double>(), row["warm_load_ms"].get<double>(),
               row["file_bytes"].get<double>() / 1048576.0, row["save_ms"].get<double>());
  return row;
}

int main(int argc, char** argv) {
  folio::register_cuda_backend();
  folio::cli::Args args(argc, argv);
  try {
    folio::EngineOptions eo;
    std::string shape, dtype_name = "bf16", json_path, attention = "dense";
    std::vector<int64_t> lengths = {512, 2048};
    int64_t decode = 32, reps = 3, chunk = 0;
    bool random_weights = false, attention_only = false, matmul_only = false;
    int64_t mm_rows = 4096, mm_cols = 4096;
    int sparse_stride = 0;
    std::string sparse_pattern, kv_disk;
    int last_queries = 0;  // 0: the config's
    int heads = 32, kv_heads = 8, head_dim = 128;
    while (!args.done()) {
      std::string a = args.next();
      if (a == "--help" || a == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (a == "--model") eo.model_path = args.value(a);
      else if (a == "--shape") shape = args.value(a);
      else if (a == "--dtype") dtype_name = args.value(a);
      else if (a == "--gpu-weights") {
        const std::string v = args.value(a);
        if (v != "blocks" && v != "bf16") throw folio::cli::UsageError("--gpu-weights takes blocks or bf16");
        eo.gpu_quantized_weights = v == "blocks";
      }
      else if (a == "--prompt-tokens" || a == "--lengths") lengths = parse_list(args.value(a));
      else if (a == "--random-weights") random_weights = true;
      else if (a == "--attention-only") attention_only = true;
      else if (a == "--matmul-only") matmul_only = true;
      else if (a == "--rows") mm_rows = args.integer(a, 1, 1 << 20);
      else if (a == "--cols") mm_cols = args.integer(a, 1, 1 << 20);
      else if (a == "--sparse-pattern") {
        sparse_pattern = args.value(a);
        folio::sparse::pattern_from_name(sparse_pattern);  // checks the name
      }
      else if (a == "--last-queries") last_queries = static_cast<int>(args.integer(a, 1, 4096));
      else if (a == "--sparse-stride") sparse_stride = static_cast<int>(args.integer(a, 0, 1 << 20));
      else if (a == "--heads") heads = static_cast<int>(args.integer(a, 1, 1024));
      else if (a == "--kv-heads") kv_heads = static_cast<int>(args.integer(a, 1, 1024));
      else if (a == "--head-dim") head_dim = static_cast<int>(args.integer(a, 1, 256));
      else if (a == "--attn-mtiles") eo.attention_query_mtiles = static_cast<int>(args.integer(a, 1, 2));
      else if (a == "--attn-kernel") {
        const std::string v = args.value(a);
        if (v == "auto") eo.attention_kernel = 0;
        else if (v == "mma") eo.attention_kernel = 1;
        else if (v == "hopper") eo.attention_kernel = 2;
        else throw folio::cli::UsageError("--attn-kernel takes auto, mma or hopper");
      }
      else if (a == "--sparse-sums") {
        const std::string v = args.value(a);
        if (v != "fused" && v != "gemm") throw folio::cli::UsageError("--sparse-sums takes fused or gemm");
        eo.sparse_sums_gemm = v == "gemm";
      }
      else if (a == "--decode-graphs") {
        const std::string v = args.value(a);
        if (v != "on" && v != "off") throw folio::cli::UsageError("--decode-graphs takes on or off");
        eo.decode_graphs = v == "on";
      }
      else if (a == "--decode-kernel") {
        const std::string v = args.value(a);
        if (v != "auto" && v != "simt") throw folio::cli::UsageError("--decode-kernel takes auto or simt");
        eo.decode_kernel = v == "simt" ? 1 : 0;
      }
      else if (a == "--json") json_path = args.value(a);
      else if (a == "--kv-disk") kv_disk = args.value(a);
      else if (a == "--gpus") args.gpus(a, eo.gpu_device, eo.gpu_devices);
      else if (a == "--kv-dtype") eo.kv_quant = args.kv_dtype(a);
      else if (a == "--gpu-mem-limit") eo.gpu_mem_limit_bytes = static_cast<size_t>(args.number(a, 0.01, 1e6) * 1073741824.0);
      else if (a == "--attention") {
        attention = args.value(a);
        folio::sparse::attention_mode_from_name(attention);  // checks the name
      }
      else if (a == "--decode-tokens") decode = args.integer(a, 1, 1 << 20);
      else if (a == "--reps") reps = args.integer(a, 1, 1000);
      else if (a == "--chunk") chunk = args.integer(a, 1, 1 << 24);
      else if (a == "--threads") eo.threads = static_cast<int>(args.integer(a, 0, 4096));
      else if (a == "--backend") {
        std::string b = args.value(a);
        if (b == "cpu") eo.backend = folio::BackendKind::Cpu;
        else if (b == "cuda") eo.backend = folio::BackendKind::Cuda;
        else throw folio::cli::UsageError("--backend takes cpu or cuda");
      } else {
        throw folio::cli::UsageError("unknown argument " + a);
      }
    }
    if (attention_only) {
      nlohmann::json all = nlohmann::json::array();
      for (int64_t len : lengths) {
        const folio::AttentionTiming t = folio::time_attention_prefill(len, heads, kv_heads, head_dim,
                                                                       static_cast<int>(reps), eo.gpu_device, sparse_stride,
                                                                       eo.attention_query_mtiles, eo.attention_kernel);
        nlohmann::json row;
        row["date"] = today();
        row["kernel"] = sparse_stride > 0 ? "folio flash prefill (tile list, causal)" : "folio flash prefill (dense, causal)";
        row["sparse_stride"] = sparse_stride;
        row["attn_kernel"] = eo.attention_kernel == 1 ? "mma" : eo.attention_kernel == 2 ? "hopper" : "auto";
        row["density"] = t.density;
        row["tile_tflops"] = t.tile_tflops;
        row["device"] = t.device;
        row["n"] = len;
        row["heads"] = heads;
        row["kv_heads"] = kv_heads;
        row["head_dim"] = head_dim;
        row["ms"] = t.ms;
        row["tflops"] = t.tflops;
        std::fprintf(stderr, "folio-bench: attention %lld tokens: %.3f ms, %.1f TFLOP/s\n", static_cast<long long>(len),
                     t.ms, t.tflops);
        append_json_line(json_path, row);
        all.push_back(row);
      }
      std::printf("%s\n", all.dump(2).c_str());
      return 0;
    }
    if (matmul_only) {
      const folio::DType dt = dtype_from_name(dtype_name);
      if (mm_cols % folio::block_elements(dt) != 0)
        throw folio::cli::UsageError("--cols must be a multiple of " + std::to_string(folio::block_elements(dt)) +
                                     " for " + dtype_name);
      folio::ThreadPool pool(eo.threads);
      std::mt19937 rng(7);
      std::normal_distribution<float> normal(0.0f, 0.02f);
      std::vector<float> row(static_cast<size_t>(mm_cols));
      const size_t rb = folio::row_bytes(dt, mm_cols);
      std::vector<uint8_t> weights(rb * static_cast<size_t>(mm_rows));
      for (int64_t r = 0; r < mm_rows; ++r) {
        for (auto& v : row) v = normal(rng);
        folio::quantize_row(dt, row.data(), weights.data() + static_cast<size_t>(r) * rb, mm_cols);
      }
      const folio::TensorView w{dt, mm_rows, mm_cols, weights.data()};
      nlohmann::json all = nlohmann::json::array();
      for (int64_t n : lengths) {
        std::vector<float> x(static_cast<size_t>(n * mm_cols)), y(static_cast<size_t>(n * mm_rows));
        std::normal_distribution<float> act(0.0f, 1.0f);
        for (auto& v : x) v = act(rng);
        // about 0.2 s of work per repetition: many calls when one is short
        folio::cpu::matmul(pool, x.data(), n, w, nullptr, y.data());
        auto t0 = std::chrono::steady_clock::now();
        folio::cpu::matmul(pool, x.data(), n, w, nullptr, y.data());
        const double one_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const int calls = static_cast<int>(std::clamp(200.0 / std::max(one_ms, 1e-3), 1.0, 10000.0));
        std::vector<double> per_call_ms;
        for (int64_t r = 0; r < reps; ++r) {
          t0 = std::chrono::steady_clock::now();
          for (int c = 0; c < calls; ++c) folio::cpu::matmul(pool, x.data(), n, w, nullptr, y.data());
          const auto elapsed = std::chrono::steady_clock::now() - t0;
          per_call_ms.push_back(std::chrono::duration<double, std::milli>(elapsed).count() / calls);
        }
        const double ms = median(per_call_ms);
        nlohmann::json rowj;
        rowj["date"] = today();
        rowj["op"] = "cpu matmul";
        rowj["dtype"] = dtype_name;
        rowj["rows"] = mm_rows;
        rowj["cols"] = mm_cols;
        rowj["n"] = n;
        rowj["threads"] = pool.size();
        rowj["reps"] = reps;
        rowj["calls_per_rep"] = calls;
        rowj["ms"] = ms;
        rowj["ns_per_weight_token"] = ms * 1e6 / static_cast<double>(mm_rows * mm_cols * n);
        rowj["weight_bytes"] = weights.size();
        rowj["weight_gb_s"] = static_cast<double>(weights.size()) / (ms * 1e-3) / 1e9;
        rowj["gmac_s"] = static_cast<double>(mm_rows * mm_cols * n) / (ms * 1e-3) / 1e9;
        std::fprintf(stderr, "folio-bench: matmul %s %lldx%lld n=%lld: %.3f ms (%.3f ns per weight per token)\n",
                     dtype_name.c_str(), static_cast<long long>(mm_rows), static_cast<long long>(mm_cols),
                     static_cast<long long>(n), ms, rowj["ns_per_weight_token"].get<double>());
        append_json_line(json_path, rowj);
        all.push_back(rowj);
      }
      std::printf("%s\n", all.dump(2).c_str());
      return 0;
    }
    shape = canonical_shape(shape);
    if (eo.model_path.empty() == shape.empty()) throw folio::cli::UsageError("give one of --model and --shape");
    if (random_weights && shape.empty()) throw folio::cli::UsageError("--random-weights goes with --shape");
    int64_t longest = 0;
    for (int64_t len : lengths) longest = std::max(longest, len);
    eo.context_tokens = longest + decode + 1;
    eo.prefill_chunk = chunk;
    std::unique_ptr<folio::Engine> engine;
    std::string model_label;
    if (!shape.empty()) {
      std::optional<folio::DType> parsed;
      for (folio::DType t : {folio::DType::F32, folio::DType::F16, folio::DType::BF16, folio::DType::Q8_0,
                             folio::DType::Q4_0, folio::DType::Q4_1, folio::DType::Q4_K, folio::DType::Q5_K,
                             folio::DType::Q6_K}) {
        std::string n = folio::dtype_name(t);
        for (char& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (n == dtype_name) parsed = t;
      }
      if (!parsed) throw folio::cli::UsageError("--dtype takes f32, bf16, f16, q8_0, q4_0, q4_1, q4_k, q5_k or q6_k");
      const folio::DType dt = *parsed;
      // big shapes on the GPU: the weights are made there (seeded), not on the host; quantized types
      // become random blocks there
      const bool on_device = eo.backend == folio::BackendKind::Cuda;
      if (folio::is_quantized(dt) && !on_device)
        throw folio::cli::UsageError("random quantized weights (--dtype " + dtype_name + ") are made on the GPU only");
      std::shared_ptr<folio::LoadedModel> model = folio::make_random_model(
          folio::named_model_shape(shape), on_device && !folio::is_quantized(dt) ? folio::DType::BF16 : dt, 1234, on_device);
      engine = folio::Engine::create(std::move(model), nullptr, eo);
      model_label = "random " + shape + " (" + dtype_name + ")";
    } else {
      engine = folio::Engine::load(eo);
      model_label = eo.model_path;
    }
    if (!engine->notice().empty()) std::fprintf(stderr, "folio-bench: note: %s\n", engine->notice().c_str());
    const folio::ModelConfig& c = engine->config();

    nlohmann::json out;
    out["date"] = today();
    out["model"] = model_label;
    out["backend"] = engine->backend_name();
    out["layers"] = c.n_layers;
    out["hidden"] = c.hidden;
    out["heads"] = c.n_heads;
    out["kv_heads"] = c.n_kv_heads;
    out["ffn"] = c.ffn_hidden;
    out["vocab"] = c.vocab_size;
    out["decode_tokens"] = decode;
    out["reps"] = reps;
    out["results"] = nlohmann::json::array();
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> token(3, c.vocab_size - 1);
    {
      // warm-up: kernel loading, GEMM heuristics
      folio::SessionOptions so;
      so.context_tokens = std::min<int64_t>(2048, longest) + 9;
      so.prefill_chunk = chunk;
      auto session = engine->create_session(so);
      std::vector<int32_t> prompt(static_cast<size_t>(std::min<int64_t>(2048, longest)));
      for (auto& t : prompt) t = token(rng);
      folio::RequestOptions req;
      req.keep_prefix = false;
      req.generate.max_tokens = 8;
      req.generate.stop_at_eos = false;
      session->run(prompt, req);
    }
    for (int64_t len : lengths) {
      folio::SessionOptions so;
      so.context_tokens = len + decode + 1;
      so.prefill_chunk = chunk;
      so.attention = folio::sparse::attention_mode_from_name(attention);
      if (!sparse_pattern.empty() || last_queries > 0) {
        // every head of the model's config takes this pattern, budgets unchanged; or other sample rows
        auto cfg = std::make_shared<folio::sparse::SparseConfig>(*engine->sparse_config());
        if (!sparse_pattern.empty()) {
          const auto pattern = folio::sparse::pattern_from_name(sparse_pattern);
          cfg->default_head.pattern = pattern;
          for (auto& layer : cfg->layers)
            for (auto& h : layer) h.pattern = pattern;
        }
        if (last_queries > 0) cfg->last_queries = last_queries;
        so.sparse_config = cfg;
      }
      auto session = engine->create_session(so);
      std::vector<double> ttft, prefill, dec;
      folio::Metrics last;
      for (int64_t r = 0; r < reps; ++r) {
        std::vector<int32_t> prompt(static_cast<size_t>(len));
        for (auto& t : prompt) t = token(rng);
        folio::RequestOptions req;
        req.keep_prefix = false;
        req.generate.max_tokens = static_cast<int>(decode);
        req.generate.stop_at_eos = false;
        folio::RequestResult res = session->run(prompt, req);
        ttft.push_back(res.metrics.ttft_ms);
        prefill.push_back(res.metrics.prefill_tok_s);
        dec.push_back(res.metrics.decode_tok_s);
        last = res.metrics;
        std::fprintf(stderr, "folio-bench: %lld tokens rep %lld: ttft %.1f ms, prefill %.1f tok/s, decode %.1f tok/s\n",
                     static_cast<long long>(len), static_cast<long long>(r + 1), res.metrics.ttft_ms,
                     res.metrics.prefill_tok_s, res.metrics.decode_tok_s);
      }
      nlohmann::json row;
      row["prompt_tokens"] = len;
      row["prefill_chunk"] = last.prefill_chunk;
      row["ttft_ms"] = median(ttft);
      row["prefill_tok_s"] = median(prefill);
      row["decode_tok_s"] = median(dec);
      row["last_run"] = nlohmann::json::parse(folio::metrics_to_json(last));
      out["results"].push_back(row);
      // one flat object per run for tables and plots
      nlohmann::json flat;
      flat["date"] = today();
      flat["shape"] = shape.empty() ? eo.model_path : shape;
      flat["backend"] = eo.backend == folio::BackendKind::Cuda ? "cuda" : "cpu";
      flat["attention"] = attention;
      flat["dtype"] = dtype_name;
      flat["gpu_weights"] = eo.gpu_quantized_weights ? "blocks" : "bf16";
      flat["kv_dtype"] = engine->kv_type();
      flat["decode_graphs"] = eo.decode_graphs;
      flat["decode_kernel"] = eo.decode_kernel == 1 ? "simt" : "auto";
      flat["n_prompt"] = len;
      flat["chunk"] = last.prefill_chunk;
      flat["ttft_ms"] = median(ttft);
      flat["prefill_tok_s"] = median(prefill);
      flat["decode_tok_s"] = median(dec);
      const folio::DeviceMemory mem = engine->memory().front();
      flat["weights_bytes"] = mem.weights_bytes;
      flat["kv_bytes"] = mem.kv_bytes;
      flat["scratch_bytes"] = mem.scratch_bytes;
      flat["peak_bytes"] = mem.weights_bytes + mem.kv_bytes + mem.scratch_bytes;
      flat["device"] = mem.device;
      flat["device_total_bytes"] = mem.total_bytes;
      flat["device_free_bytes"] = mem.free_bytes;
      // every device the model lies on (tensor parallel: one per GPU), by category
      nlohmann::json per_device = nlohmann::json::array();
      for (const folio::DeviceMemory& d : engine->memory())
        per_device.push_back({{"device", d.device}, {"weights_bytes", d.weights_bytes}, {"kv_bytes", d.kv_bytes},
                              {"scratch_bytes", d.scratch_bytes}, {"free_bytes", d.free_bytes},
                              {"total_bytes", d.total_bytes}});
      flat["devices"] = per_device;
      flat["sparse_chunks"] = last.sparse_chunks;
      flat["density"] = last.attention_density;
      flat["est_mass_mean"] = last.est_mass_mean;
      flat["estimate_ms"] = last.estimate_ms;
      flat["sparse_pattern"] = sparse_pattern.empty() ? std::string("config") : sparse_pattern;
      flat["sparse_attention_ms"] = last.sparse_attention_ms;
      flat["heads_short_of_mass"] = last.heads_short_of_mass;
      if (!last.attention_note.empty()) flat["attention_note"] = last.attention_note;
      append_json_line(json_path, flat);
      if (!kv_disk.empty()) {
        nlohmann::json k = measure_kv_disk(*engine, so, len, kv_disk, model_label, rng);
        k["date"] = today();
        k["shape"] = flat["shape"];
        k["backend"] = flat["backend"];
        k["attention"] = attention;
        k["device"] = mem.device;
        append_json_line(json_path, k);
      }
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  } catch (const folio::cli::UsageError& e) {
    std::fprintf(stderr, "folio-bench: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const folio::Error& e) {
    std::fprintf(stderr, "folio-bench: error: %s\n", e.what());
    return 1;
  }
}
