// The engine API: the only header app/ and ui/ use. Load a model, open sessions, prefill in
// chunks with progress and cancellation, generate with streaming and stop conditions, and read
// the metrics of every request. Errors are folio::Error (core/common/error.h) with a one-line
// message that says what was wrong and what to do.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/common/error.h"
#include "core/engine/sampler.h"
#include "core/engine/backend.h"
#include "core/engine/forward.h"
#include "core/model/model_config.h"
#include "core/model/model_weights.h"
#include "core/tokenizer/tokenizer.h"

namespace folio {

struct EngineOptions {
  std::string model_path;      // folder with config.json + safetensors, or a llama2.c .bin
  std::string tokenizer_path;  // "" = the one beside the model
  BackendKind backend = BackendKind::Cpu;
  int threads = 0;             // CPU threads; 0 = all
  // CPU: the model split tensor-parallel over this many ranks in one process (threads with a host
  // all-reduce; core/engine/tensor_parallel.h): the layout a multi-GPU run uses, to try and test it
  // without GPUs. Slower than one rank. 1 = no split.
  int cpu_ranks = 1;
  // An 8-bit KV cache (--kv-dtype fp8 or q8; core/model/quant.h). The CPU rounds its fp32 cache to
  // those values (the reference); the GPU's 8-bit cache is not built yet and is refused.
  KvQuant kv_quant = KvQuant::None;
  // CUDA: the device, a cap on the bytes Folio may use there (0 = its free memory), and the
  // context and prefill chunk the sessions will use, so the memory plan is checked before loading.
  int gpu_device = 0;
  // CUDA: two or more GPUs to lay the model across, tensor parallel through NCCL (each takes 1/N of
  // the heads, the KV cache and the MLP; gpu_mem_limit_bytes caps each); empty: gpu_device alone.
  std::vector<int> gpu_devices;
  size_t gpu_mem_limit_bytes = 0;
  int64_t context_tokens = 0;
  int64_t prefill_chunk = 0;
  // CUDA: quantized GGUF weights stay in their blocks on the GPU (false: expanded to bf16 at load).
  bool gpu_quantized_weights = true;
  // CUDA kernel variants, for benchmarks that compare them (BackendOptions says what they are).
  int attention_query_mtiles = 2;
  int attention_kernel = 0;
  bool sparse_sums_gemm = false;
  bool decode_graphs = true;
  int decode_kernel = 0;
};

// Shared by app/ and ui/: a flag that long work polls between chunks.
class CancelToken {
 public:
  void cancel() { flag_.store(true); }
  void reset() { flag_.store(false); }
  bool cancelled() const { return flag_.load(); }

 private:
  std::atomic<bool> flag_{false};
};

enum class StopReason { None, Eos, StopString, MaxTokens, ContextFull, Cancelled };
const char* stop_reason_name(StopReason r);

// What one request cost. Times in milliseconds from the request's start.
struct Metrics {
  int64_t prompt_tokens = 0;    // tokens of the request's prompt
  int64_t reused_tokens = 0;    // of those, found in the KV cache (not prefilled again)
  int64_t prefill_tokens = 0;   // tokens run through prefill
  double prefill_ms = 0.0;
  double prefill_tok_s = 0.0;
  double ttft_ms = 0.0;         // request start to first generated token (0 if none)
  int64_t decode_tokens = 0;    // generated tokens
  double decode_ms = 0.0;       // after the first token, to the last
  double decode_tok_s = 0.0;
  double total_ms = 0.0;
  int64_t prefill_chunk = 0;
  StopReason stop = StopReason::None;
  std::string backend;
  // Attention during the prefill: the session's mode, what ran, and sparse prefill's numbers.
  std::string attention_mode;           // "auto", "dense" or "sparse" (what was asked)
  int64_t sparse_chunks = 0, dense_chunks = 0;
  double attention_density = 1.0;       // tiles computed / causal tiles over the sparse chunks
  double est_mass_mean = 1.0;           // estimated share of attention mass kept, mean over head plans
  int64_t heads_short_of_mass = 0;      // head plans that missed their mass target (budget at its maximum)
  double estimate_ms = 0.0;             // estimation and tile lists
  double sparse_attention_ms = 0.0;
  std::vector<std::vector<double>> head_density;  // [layer][head], sparse chunks only
  std::string attention_note;
  std::vector<DeviceMemory> memory;  // at the end of the request
};

struct PrefillProgress {
  int64_t done_tokens = 0;
  int64_t total_tokens = 0;
  double elapsed_ms = 0.0;
};
using PrefillProgressFn = std::function<void(const PrefillProgress&)>;
// A generated token and the text it completes (whole UTF-8 characters; may be empty).
using TokenFn = std::function<void(int32_t id, std::string_view text)>;

struct PrefillOptions {
  int64_t chunk_tokens = 0;  // 0 = the session's default
  PrefillProgressFn on_progress;
  const CancelToken* cancel = nullptr;
};

struct GenerateOptions {
  SamplerParams sampler;
  int max_tokens = 256;
  std::vector<std::string> stop_strings;  // generation ends before any of these is shown
  bool stop_at_eos = true;
  std::vector<int32_t> stop_tokens;  // more end-of-turn ids (chat markers) besides the model's EOS
  TokenFn on_token;
  const CancelToken* cancel = nullptr;
};

struct RequestOptions {
  PrefillOptions prefill;
  GenerateOptions generate;
  bool keep_prefix = true;  // reuse the KV of the longest common prefix with the last request
};

struct RequestResult {
  std::string text;
  std::vector<int32_t> tokens;
  Metrics metrics;
};

struct SessionOptions {
  int64_t context_tokens = 0;  // 0 = min(model's max context, 8192)
  int64_t prefill_chunk = 0;   // 0 = the backend's preferred chunk
  // Prefill attention: auto (sparse from the config's crossover length, per chunk), dense or
  // sparse; config null = the engine's (the model's folio-sparse.json, else defaults).
  sparse::AttentionMode attention = sparse::AttentionMode::Auto;
  std::shared_ptr<const sparse::SparseConfig> sparse_config;
};

// The sparse-attention config of a model (folio-sparse.json beside its weights, or in its folder):
// the engine reads it at load when it exists; folio-sparse search and crossover write it.
std::string sparse_config_path(const std::string& model_path);

class Engine;

// One conversation's KV cache and position. Not thread-safe: use a session from one thread.
class Session {
 public:
  ~Session();
  int64_t context_size() const { return context_; }
  int64_t n_past() const { return static_cast<int64_t>(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }

  // Appends tokens to the cache in chunks. On cancellation throws Error(Cancelled); the tokens of
  // the chunks already done stay in the cache and the session stays usable.
  void prefill(std::span<const int32_t> tokens, const PrefillOptions& options = {});
  // The logits after the last token in the cache; empty when none are current (e.g. after a
  // cancelled prefill or a truncation).
  std::span<const float> logits() const;
  // Generates after what is in the cache (needs current logits).
  RequestResult generate(const GenerateOptions& options);
  // Keeps the first n tokens of the cache.
  void truncate(int64_t n_tokens);
  void clear() { truncate(0); }
  // Changes the prefill attention for the next requests (config null = the engine's).
  void set_attention(sparse::AttentionMode mode, std::shared_ptr<const sparse::SparseConfig> config = nullptr);
  const AttentionPolicy& attention_policy() const { return policy_; }
  // What prefill attention did since the last request started (Metrics carries the same).
  const AttentionStats& attention_stats() const { return stats_; }
  // Looks inside every forward step from now on (null detaches); the observer must outlive its use.
  void set_observer(ForwardObserver* observer) { observer_ = observer; }

  // ---- KV kept on disk. The KV of a prefix as a stream of bytes in the backend's own element type
  // (kv_element_bytes(); 0: this backend keeps none), in the order layer, K then V, kv head,
  // position, head dim; kv_prefix_bytes(n) long for n tokens. Moved one layer's K or V at a time
  // through host buffers the backend lends (page-locked on the GPU), so copies overlap the file.
  int kv_element_bytes() const;
  uint64_t kv_prefix_bytes(int64_t n_tokens) const;
  // The stream of the first n tokens, handed to `write` one tensor at a time (write returns false:
  // stop). false when the backend cannot, n is more than the cache holds, or write stopped.
  bool save_prefix(int64_t n_tokens, const std::function<bool(std::span<const uint8_t>)>& write) const;
  // Makes `tokens` the cache's content from a saved stream of saved_tokens >= tokens.size()
  // positions (of the same model and KV layout; only the first tokens.size() positions of it are
  // kept, exactly the KV of those tokens): `read` fills each piece it is given with the stream's next
  // bytes (false: stop), `verify` is asked after the last (e.g. the file's checksum). The next run()
  // reuses the tokens like a prefix it computed. false (cache cleared): the backend cannot, the
  // sizes do not fit, read stopped or verify refused.
  bool restore_prefix(std::span<const int32_t> tokens, int64_t saved_tokens,
                      const std::function<bool(std::span<uint8_t>)>& read, const std::function<bool()>& verify);
  // The same through memory: the whole stream in one vector, and back from it (all of it, or the
  // first n_tokens of the saved tokens).
  bool save_prefix(int64_t n_tokens, std::vector<uint8_t>& kv) const;
  bool restore_prefix(std::span<const int32_t> tokens, std::span<const uint8_t> kv);
  bool restore_prefix(std::span<const int32_t> tokens, std::span<const uint8_t> kv, int64_t n_tokens);

  // A whole request: reuse the cached prefix (keep_prefix), prefill the rest, generate.
  // A cancelled prefill returns with stop == Cancelled and no text.
  RequestResult run(std::span<const int32_t> prompt, const RequestOptions& options);

 private:
  friend class Engine;
  Session(Engine& engine, const SessionOptions& options);
  void prefill_impl(std::span<const int32_t> tokens, const PrefillOptions& options, Metrics* metrics, double t0_ms);
  void generate_impl(const GenerateOptions& options, RequestResult* result, double t0_ms);

  Engine& engine_;
  int64_t context_ = 0;
  int64_t default_chunk_ = 512;
  RopeTable rope_;
  std::unique_ptr<KvCache> kv_;
  AttentionPolicy policy_;
  AttentionStats stats_;
  ForwardObserver* observer_ = nullptr;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  bool logits_valid_ = false;
};

class Engine {
 public:
  // Loads weights and tokenizer and prepares the backend. Throws Error.
  static std::unique_ptr<Engine> load(const EngineOptions& options, const LoadProgressFn& progress = {});
  // An engine over weights already in memory (random-weight benchmarks, tests); tokenizer may be null.
  static std::unique_ptr<Engine> create(std::shared_ptr<LoadedModel> model, std::unique_ptr<Tokenizer> tokenizer,
                                        const EngineOptions& options);
  ~Engine();

  const ModelConfig& config() const { return model_->config; }
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  // Throws Error(BadTokenizer) when the model came without one.
  const Tokenizer& tokenizer() const;
  BackendKind backend_kind() const { return backend_->kind(); }
  // The prefill chunk sessions use when none is asked for (the backend's best).
  int64_t default_prefill_chunk() const { return backend_->preferred_chunk(); }
  // Where auto attention turns sparse for this model on this backend (sessions with the engine's config).
  int64_t auto_sparse_tokens() const;
  // Where auto attention turns sparse on this backend and where that comes from (a crossover
  // measured by folio-sparse crossover, the model's config, or the backend's own rule), in words.
  std::string auto_attention_note() const;
  std::string backend_name() const { return backend_->name(); }
  std::vector<DeviceMemory> memory() const { return backend_->memory(); }
  // The largest context a session can ask for: the model's trained context (8,192 when it says
  // none), and at most what the backend's memory holds (Backend::largest_context).
  int64_t largest_context() const;
  std::string kv_type() const { return backend_->kv_type(); }
  double load_ms() const { return load_ms_; }
  // Something the user should know about the load (e.g. a backend fallback); "" if nothing.
  const std::string& notice() const { return notice_; }
  // The model's Jinja chat template, where it ships one ("" if none).
  const std::string& chat_template() const;
  // Sparse prefill's per-head patterns for this model: folio-sparse.json beside the weights when
  // there is one, else the defaults for every head.
  const std::shared_ptr<const sparse::SparseConfig>& sparse_config() const { return sparse_config_; }
  void set_sparse_config(std::shared_ptr<const sparse::SparseConfig> c) { sparse_config_ = std::move(c); }

  std::unique_ptr<Session> create_session(const SessionOptions& options = {});

 private:
  friend class Session;
  Engine() = default;
  std::shared_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Backend> backend_;
  double load_ms_ = 0.0;
  std::string notice_;
  std::shared_ptr<const sparse::SparseConfig> sparse_config_;
};

}  // namespace folio
