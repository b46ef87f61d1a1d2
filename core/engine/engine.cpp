#include "core/engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/common/mapped_file.h"
#include "core/cpu/cpu_backend.h"
#include "core/engine/tensor_parallel.h"
#include "core/model/model_loader.h"

namespace folio {

namespace {

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// Length of the longest suffix of `text` that is a proper prefix of some stop string: those bytes
// are held back until it is clear they do not start a stop string.
size_t held_suffix(const std::string& text, const std::vector<std::string>& stops) {
  size_t held = 0;
  for (const auto& s : stops) {
    if (s.empty()) continue;
    for (size_t len = std::min(text.size(), s.size() - 1); len > held; --len) {
      if (text.compare(text.size() - len, len, s, 0, len) == 0) {
        held = len;
        break;
      }
    }
  }
  return held;
}

}  // namespace

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::None: return "none";
    case StopReason::Eos: return "eos";
    case StopReason::StopString: return "stop-string";
    case StopReason::MaxTokens: return "max-tokens";
    case StopReason::ContextFull: return "context-full";
    case StopReason::Cancelled: return "cancelled";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Engine

Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::load(const EngineOptions& options, const LoadProgressFn& progress) {
  const double t0 = now_ms();
  if (options.model_path.empty()) throw Error(ErrorCode::BadArgument, "no model given; pass a model path");
  std::shared_ptr<LoadedModel> model = load_model(options.model_path, progress);
  // A GGUF file carries its own vocabulary.
  if (model->format == ModelFormat::Gguf && model->tokenizer_path.empty()) model->tokenizer_path = options.model_path;
  const std::string tok_path = options.tokenizer_path.empty() ? model->tokenizer_path : options.tokenizer_path;
  std::unique_ptr<Tokenizer> tokenizer;
  if (!tok_path.empty()) {
    if (progress) progress(1.0f, "loading tokenizer");
    tokenizer = load_tokenizer(tok_path);
    if (tokenizer->vocab_size() > model->config.vocab_size)
      throw Error(ErrorCode::BadTokenizer, tok_path + " has " + std::to_string(tokenizer->vocab_size()) +
                                               " tokens but the model only " + std::to_string(model->config.vocab_size) +
                                               "; it is not this model's tokenizer");
  }
  auto engine = create(std::move(model), std::move(tokenizer), options);
  // a sparse-attention config from the offline search, beside the weights
  std::error_code ec;
  const std::string sparse_json = sparse_config_path(options.model_path);
  if (std::filesystem::is_regular_file(sparse_json, ec))
    engine->sparse_config_ = std::make_shared<const sparse::SparseConfig>(
        sparse::SparseConfig::from_json(read_text_file(sparse_json), sparse_json));
  engine->load_ms_ = now_ms() - t0;
  return engine;
}

std::string sparse_config_path(const std::string& model_path) {
  std::error_code ec;
  std::filesystem::path dir(model_path);
  if (!std::filesystem::is_directory(dir, ec)) dir = dir.parent_path();
  return (dir / "folio-sparse.json").string();
}

std::unique_ptr<Engine> Engine::create(std::shared_ptr<LoadedModel> model, std::unique_ptr<Tokenizer> tokenizer,
                                       const EngineOptions& options) {
  const double t0 = now_ms();
  std::unique_ptr<Engine> engine(new Engine());
  engine->model_ = std::move(model);
  engine->tokenizer_ = std::move(tokenizer);
  if (options.backend != BackendKind::Cpu) {
    BackendOptions bo;
    bo.threads = options.threads;
    bo.device = options.gpu_device;
    bo.devices = options.gpu_devices;
    bo.mem_limit_bytes = options.gpu_mem_limit_bytes;
    bo.context_tokens = options.context_tokens;
    bo.chunk = options.prefill_chunk;
    bo.quantized_weights = options.gpu_quantized_weights;
    bo.attention_query_mtiles = options.attention_query_mtiles;
    bo.attention_kernel = options.attention_kernel;
    bo.sparse_sums_gemm = options.sparse_sums_gemm;
    bo.decode_graphs = options.decode_graphs;
    bo.decode_kernel = options.decode_kernel;
    bo.kv_quant = options.kv_quant;
    if (BackendFactory factory = registered_backend(options.backend))
      engine->backend_ = factory(engine->model_, bo, engine->notice_);
    else
      engine->notice_ = "no usable GPU (this program was built without the CUDA backend); running on the CPU";
    // A layout over several GPUs was asked for by name: not quietly run on the CPU instead.
    if (!engine->backend_ && options.gpu_devices.size() > 1) {
      std::string list;
      for (int g : options.gpu_devices) {
        if (!list.empty()) list += ',';
        list += std::to_string(g);
      }
      std::string why = engine->notice_;
      if (const size_t cut = why.rfind("; running on the CPU"); cut != std::string::npos) why.resize(cut);
      throw Error(ErrorCode::BackendUnavailable, "the model cannot be laid across " +
                                                     std::to_string(options.gpu_devices.size()) + " GPUs (" + list +
                                                     "): " + why + ". Use one GPU (--gpu N) or the CPU (--backend cpu)");
    }
  }
  if (!engine->backend_ && options.cpu_ranks > 1)
    engine->backend_ =
        create_cpu_tensor_parallel_backend(engine->model_, options.cpu_ranks, options.threads, options.kv_quant);
  if (!engine->backend_) engine->backend_ = create_cpu_backend(engine->model_, options.threads, options.kv_quant);
  engine->sparse_config_ = std::make_shared<const sparse::SparseConfig>();
  engine->load_ms_ = now_ms() - t0;
  return engine;
}

const std::string& Engine::chat_template() const { return model_->chat_template; }

int64_t Engine::largest_context() const {
  int64_t ctx = config().max_context > 0 ? config().max_context : 8192;
  const int64_t fits = backend_->largest_context();
  if (fits > 0) ctx = std::min(ctx, fits);
  return ctx;
}

int64_t Engine::auto_sparse_tokens() const {
  AttentionPolicy p;
  p.mode = sparse::AttentionMode::Auto;
  p.config = sparse_config_;
  return auto_sparse_keys(p, *backend_);
}

std::string Engine::auto_attention_note() const {
  const std::string where = backend_kind_name(backend_->kind());
  if (!sparse_config_) return "auto attention stays dense: this model has no sparse-attention config";
  const sparse::MeasuredCrossover* m = sparse_config_->measured_crossover(backend_key(backend_->kind()));
  if (m && m->tokens > 0)
    return "auto attention turns sparse from " + std::to_string(m->tokens) + " tokens on " + where + " (measured on " +
           m->device + (m->date.empty() ? "" : ", " + m->date) + ")";
  if (m)
    return "auto attention stays dense on " + where + ": sparse measured no faster up to " + std::to_string(m->up_to) +
           " tokens (on " + m->device + (m->date.empty() ? "" : ", " + m->date) + ")";
  const int64_t k = auto_sparse_tokens();
  if (k == std::numeric_limits<int64_t>::max())
    return "auto attention stays dense on " + where +
           " (its sparse path is not known to pay; folio-sparse crossover measures it for this model)";
  return "auto attention turns sparse from " + std::to_string(k) + " tokens on " + where +
         " (not measured for this model here; folio-sparse crossover measures it)";
}

const Tokenizer& Engine::tokenizer() const {
  if (!tokenizer_)
    throw Error(ErrorCode::BadTokenizer,
                "the model has no tokenizer beside it; pass one with --tokenizer (tokenizer.model or tokenizer.bin)");
  return *tokenizer_;
}

std::unique_ptr<Session> Engine::create_session(const SessionOptions& options) {
  return std::unique_ptr<Session>(new Session(*this, options));
}

// ---------------------------------------------------------------------------------------------
// Session

Session::Session(Engine& engine, const SessionOptions& options) : engine_(engine) {
  const ModelConfig& c = engine.config();
  context_ = options.context_tokens > 0 ? options.context_tokens : std::min<int64_t>(c.max_context, 8192);
  if (context_ > c.max_context && c.rope.scaling == RopeScaling::None && c.arch_label == "llama2.c")
    throw Error(ErrorCode::BadArgument, "this model was trained for " + std::to_string(c.max_context) +
                                            " tokens; choose a context of at most that");
  default_chunk_ = options.prefill_chunk > 0 ? options.prefill_chunk : engine.backend_->preferred_chunk();
  rope_ = make_rope_table(c.rope, context_);
  kv_ = engine.backend_->create_kv_cache(context_);
  policy_.mode = options.attention;
  policy_.config = options.sparse_config ? options.sparse_config : engine.sparse_config();
  logits_.resize(static_cast<size_t>(c.vocab_size));
}

Session::~Session() = default;

std::span<const float> Session::logits() const {
  if (!logits_valid_) return {};
  return logits_;
}

void Session::set_attention(sparse::AttentionMode mode, std::shared_ptr<const sparse::SparseConfig> config) {
  policy_.mode = mode;
  policy_.config = config ? std::move(config) : engine_.sparse_config();
}

void Session::truncate(int64_t n_tokens) {
  n_tokens = std::clamp<int64_t>(n_tokens, 0, n_past());
  if (n_tokens == n_past()) return;
  tokens_.resize(static_cast<size_t>(n_tokens));
  logits_valid_ = false;
}

void Session::prefill(std::span<const int32_t> tokens, const PrefillOptions& options) {
  Metrics m;
  prefill_impl(tokens, options, &m, now_ms());
}

void Session::prefill_impl(std::span<const int32_t> tokens, const PrefillOptions& options, Metrics* metrics,
                           double t0_ms) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return;
  if (n_past() + n > context_)
    throw Error(ErrorCode::OutOfContext,
                "the prompt needs " + std::to_string(n_past() + n) + " tokens but the context holds " +
                    std::to_string(context_) + "; choose a larger context (--ctx) or send less text");
  const int64_t chunk = options.chunk_tokens > 0 ? options.chunk_tokens : default_chunk_;
  metrics->prefill_chunk = chunk;
  const double start = now_ms();
  stats_.reset();
  struct StatsToMetrics {  // also on cancellation
    const AttentionPolicy& policy;
    const AttentionStats& st;
    Metrics* m;
    ~StatsToMetrics() {
      m->attention_mode = sparse::attention_mode_name(policy.mode);
      m->sparse_chunks += st.sparse_chunks;
      m->dense_chunks += st.dense_chunks;
      m->attention_density = st.density();
      m->est_mass_mean = st.head_plans > 0 ? st.est_mass_sum / static_cast<double>(st.head_plans) : 1.0;
      m->heads_short_of_mass += st.heads_short_of_mass;
      m->estimate_ms += st.estimate_ms;
      m->sparse_attention_ms += st.sparse_attention_ms;
      m->attention_note = st.note;
      m->head_density.clear();
      for (size_t l = 0; l < st.head_computed.size(); ++l) {
        m->head_density.emplace_back();
        for (size_t h = 0; h < st.head_computed[l].size(); ++h)
          m->head_density.back().push_back(st.head_causal[l][h] > 0 ? double(st.head_computed[l][h]) /
                                                                         double(st.head_causal[l][h])
                                                                   : 1.0);
      }
    }
  } stats_to_metrics{policy_, stats_, metrics};
  int64_t done = 0;
  while (done < n) {
    if (options.cancel != nullptr && options.cancel->cancelled()) {
      metrics->prefill_tokens += done;
      metrics->prefill_ms += now_ms() - start;
      throw Error(ErrorCode::Cancelled, "prefill cancelled after " + std::to_string(done) + " of " +
                                            std::to_string(n) + " tokens");
    }
    const int64_t len = std::min(chunk, n - done);
    const bool last = done + len == n;
    logits_valid_ = false;
    forward(*engine_.backend_, *kv_, tokens.subspan(static_cast<size_t>(done), static_cast<size_t>(len)), n_past(),
            rope_, policy_, stats_, observer_, last ? logits_.data() : nullptr);
    tokens_.insert(tokens_.end(), tokens.begin() + done, tokens.begin() + done + len);
    logits_valid_ = last;
    done += len;
    if (options.on_progress) options.on_progress(PrefillProgress{done, n, now_ms() - t0_ms});
  }
  metrics->prefill_tokens += n;
  metrics->prefill_ms += now_ms() - start;
}

RequestResult Session::generate(const GenerateOptions& options) {
  RequestResult result;
  generate_impl(options, &result, now_ms());
  return result;
}

void Session::generate_impl(const GenerateOptions& options, RequestResult* result, double t0_ms) {
  if (!logits_valid_)
    throw Error(ErrorCode::BadArgument, "nothing to generate from: prefill a prompt first");
  const Tokenizer* tok = engine_.has_tokenizer() ? &engine_.tokenizer() : nullptr;
  std::vector<int32_t> stops = options.stop_tokens;
  if (options.stop_at_eos) {
    stops.insert(stops.end(), engine_.config().eos_ids.begin(), engine_.config().eos_ids.end());
    if (tok != nullptr && tok->eos_id() >= 0) stops.push_back(tok->eos_id());
  }
  Sampler sampler(options.sampler);
  std::unique_ptr<StreamDecoder> decoder = tok != nullptr ? std::make_unique<StreamDecoder>(*tok) : nullptr;
  Metrics& m = result->metrics;
  std::string held;  // decoded text not yet shown (could start a stop string)
  double first_ms = 0.0;
  auto emit = [&](int32_t id, const std::string& text) {
    result->text += text;
    if (options.on_token) options.on_token(id, text);
  };
  StopReason stop = StopReason::None;
  while (stop == StopReason::None) {
    if (options.cancel != nullptr && options.cancel->cancelled()) {
      stop = StopReason::Cancelled;
      break;
    }
    const int32_t id = sampler.sample(logits_, tokens_);
    if (m.decode_tokens == 0) {
      first_ms = now_ms();
      m.ttft_ms = first_ms - t0_ms;
    }
    if (std::find(stops.begin(), stops.end(), id) != stops.end()) {
      stop = StopReason::Eos;
      break;
    }
    ++m.decode_tokens;
    result->tokens.push_back(id);
    if (decoder) held += decoder->push(id);
    size_t cut = std::string::npos;
    for (const auto& s : options.stop_strings) {
      if (s.empty()) continue;
      size_t at = held.find(s);
      if (at != std::string::npos) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
      emit(id, held.substr(0, cut));
      held.clear();
      stop = StopReason::StopString;
      break;
    }
    const size_t keep = held_suffix(held, options.stop_strings);
    emit(id, held.substr(0, held.size() - keep));
    held.erase(0, held.size() - keep);
    if (options.max_tokens > 0 && m.decode_tokens >= options.max_tokens) {
      stop = StopReason::MaxTokens;
      break;
    }
    if (n_past() >= context_) {
      stop = StopReason::ContextFull;
      break;
    }
    logits_valid_ = false;
    const int32_t one[1] = {id};
    forward(*engine_.backend_, *kv_, one, n_past(), rope_, policy_, stats_, observer_, logits_.data());
    tokens_.push_back(id);
    logits_valid_ = true;
  }
  if (stop != StopReason::StopString) {
    if (decoder) held += decoder->flush();
    if (!held.empty()) emit(result->tokens.empty() ? -1 : result->tokens.back(), held);
  }
  m.stop = stop;
  if (m.decode_tokens > 0) {
    m.decode_ms = now_ms() - first_ms;
    if (m.decode_tokens > 1 && m.decode_ms > 0) m.decode_tok_s = (m.decode_tokens - 1) * 1000.0 / m.decode_ms;
  }
}

int Session::kv_element_bytes() const { return engine_.backend_->kv_element_bytes(); }

uint64_t Session::kv_prefix_bytes(int64_t n_tokens) const {
  const ModelConfig& c = engine_.config();
  return static_cast<uint64_t>(c.n_layers) * 2 * static_cast<uint64_t>(c.n_kv_heads) * static_cast<uint64_t>(n_tokens) *
         static_cast<uint64_t>(c.head_dim) * static_cast<uint64_t>(std::max(kv_element_bytes(), 0));
}

bool Session::save_prefix(int64_t n_tokens, const std::function<bool(std::span<const uint8_t>)>& write) const {
  Backend& b = *engine_.backend_;
  if (n_tokens <= 0 || n_tokens > n_past() || b.kv_element_bytes() <= 0) return false;
  const int pieces = 2 * engine_.config().n_layers;
  const auto piece = static_cast<size_t>(kv_prefix_bytes(n_tokens) / static_cast<uint64_t>(pieces));
  std::unique_ptr<HostBuffer> buf[2] = {b.host_buffer(piece), b.host_buffer(piece)};
  // Piece i is copied into buffer i % 2 while piece i - 1 is written out.
  auto copy = [&](int i) { b.copy_kv(*kv_, i / 2, i % 2, n_tokens, n_tokens, buf[i % 2]->bytes().data(), false, i % 2); };
  copy(0);
  for (int i = 0; i < pieces; ++i) {
    if (i + 1 < pieces) copy(i + 1);
    b.wait_kv(i % 2);
    if (!write(buf[i % 2]->bytes().first(piece))) {
      b.wait_kv((i + 1) % 2);
      return false;
    }
  }
  return true;
}

bool Session::restore_prefix(std::span<const int32_t> tokens, int64_t saved_tokens,
                             const std::function<bool(std::span<uint8_t>)>& read, const std::function<bool()>& verify) {
  truncate(0);
  Backend& b = *engine_.backend_;
  const auto n = static_cast<int64_t>(tokens.size());
  if (n <= 0 || n > context_ || n > saved_tokens || b.kv_element_bytes() <= 0) return false;
  const int pieces = 2 * engine_.config().n_layers;
  const auto piece = static_cast<size_t>(kv_prefix_bytes(saved_tokens) / static_cast<uint64_t>(pieces));
  std::unique_ptr<HostBuffer> buf[2] = {b.host_buffer(piece), b.host_buffer(piece)};
  // Piece i is read into buffer i % 2 while piece i - 1 is copied into the cache.
  bool ok = true;
  for (int i = 0; i < pieces && ok; ++i) {
    b.wait_kv(i % 2);
    const std::span<uint8_t> p = buf[i % 2]->bytes().first(piece);
    ok = read(p);
    if (ok) b.copy_kv(*kv_, i / 2, i % 2, n, saved_tokens, p.data(), true, i % 2);
  }
  b.wait_kv(0);
  b.wait_kv(1);
  if (!ok || !verify()) return false;
  tokens_.assign(tokens.begin(), tokens.end());
  logits_valid_ = false;  // run() computes the last prompt token again, so its logits are current
  return true;
}

bool Session::save_prefix(int64_t n_tokens, std::vector<uint8_t>& kv) const {
  kv.clear();
  if (n_tokens > 0 && n_tokens <= n_past()) kv.reserve(static_cast<size_t>(kv_prefix_bytes(n_tokens)));
  return save_prefix(n_tokens, [&](std::span<const uint8_t> p) {
    kv.insert(kv.end(), p.begin(), p.end());
    return true;
  });
}

bool Session::restore_prefix(std::span<const int32_t> tokens, std::span<const uint8_t> kv) {
  return restore_prefix(tokens, kv, static_cast<int64_t>(tokens.size()));
}

bool Session::restore_prefix(std::span<const int32_t> tokens, std::span<const uint8_t> kv, int64_t n_tokens) {
  const auto n_saved = static_cast<int64_t>(tokens.size());
  if (n_tokens <= 0 || n_tokens > n_saved || kv.size() != kv_prefix_bytes(n_saved)) {
    truncate(0);
    return false;
  }
  size_t at = 0;
  return restore_prefix(
      tokens.first(static_cast<size_t>(n_tokens)), n_saved,
      [&](std::span<uint8_t> p) {
        if (p.size() > kv.size() - at) return false;
        std::memcpy(p.data(), kv.data() + at, p.size());
        at += p.size();
        return true;
      },
      [&] { return at == kv.size(); });
}

RequestResult Session::run(std::span<const int32_t> prompt, const RequestOptions& options) {
  const double t0 = now_ms();
  RequestResult result;
  Metrics& m = result.metrics;
  m.prompt_tokens = static_cast<int64_t>(prompt.size());
  m.backend = engine_.backend_name();
  if (prompt.empty()) throw Error(ErrorCode::BadArgument, "the prompt is empty");
  if (static_cast<int64_t>(prompt.size()) > context_)
    throw Error(ErrorCode::OutOfContext,
                "the prompt is " + std::to_string(prompt.size()) + " tokens but the context holds " +
                    std::to_string(context_) + "; choose a larger context (--ctx) or send less text");
  int64_t common = 0;
  if (options.keep_prefix) {
    const int64_t limit = std::min<int64_t>(n_past(), static_cast<int64_t>(prompt.size()));
    while (common < limit && tokens_[static_cast<size_t>(common)] == prompt[static_cast<size_t>(common)]) ++common;
    // The last prompt token is always run again so that its logits are current.
    if (common == static_cast<int64_t>(prompt.size())) --common;
  }
  truncate(common);
  m.reused_tokens = common;
  try {
    prefill_impl(prompt.subspan(static_cast<size_t>(common)), options.prefill, &m, t0);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::Cancelled) throw;
    m.stop = StopReason::Cancelled;
    m.total_ms = now_ms() - t0;
    m.memory = engine_.memory();
    return result;
  }
  if (m.prefill_ms > 0) m.prefill_tok_s = static_cast<double>(m.prefill_tokens) * 1000.0 / m.prefill_ms;
  generate_impl(options.generate, &result, t0);
  m.total_ms = now_ms() - t0;
  m.memory = engine_.memory();
  return result;
}

}  // namespace folio
