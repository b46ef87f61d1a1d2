#include "ui/engine_worker.h"

#include <QFileInfo>
#include <QThread>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <new>

#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "core/docs/prompt_layout.h"
#include "core/engine/chat_prompt.h"

namespace folio::ui {

namespace {

std::string utf8(const QString& s) {
  return s.toStdString();
}

QString hash_key(const folio::docs::Document& doc, int64_t keep) {
  return (doc.content_hash.isEmpty() ? doc.path : doc.content_hash) + "#" + QString::number(keep);
}

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int64_t effective_context(int64_t requested_tokens, int64_t model_max_context) {
  const int64_t max_ctx = model_max_context > 0 ? model_max_context : 8192;
  const int64_t ctx = requested_tokens > 0 ? requested_tokens : std::min<int64_t>(max_ctx, 8192);
  return std::clamp<int64_t>(ctx, 16, max_ctx);
}

int64_t answer_reserve(int64_t context_tokens, int max_tokens) {
  return std::min<int64_t>(std::max(max_tokens, 1), std::max<int64_t>(16, context_tokens / 8));
}

QString phase_label(Phase phase) {
  switch (phase) {
    case Phase::Idle:
      return QObject::tr("Idle");
    case Phase::Loading:
      return QObject::tr("Loading model");
    case Phase::Prefill:
      return QObject::tr("Prefill");
    case Phase::Generating:
      return QObject::tr("Generating");
    case Phase::Measuring:
      return QObject::tr("Measuring");
  }
  return {};
}

EngineWorker::EngineWorker() {
  qRegisterMetaType<folio::ui::Phase>();
  qRegisterMetaType<folio::ui::ModelInfo>();
  qRegisterMetaType<folio::ui::FitProblem>();
  qRegisterMetaType<folio::ui::AskOutcome>();
  qRegisterMetaType<folio::ui::MeasuredRun>();
}

EngineWorker::~EngineWorker() = default;

QString EngineWorker::describe(const std::exception& e) const {
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr)
    return tr("Out of memory. Choose a smaller context size or a smaller model in Settings, or remove documents.");
  return QString::fromStdString(e.what());
}

void EngineWorker::unload() {
  session_.reset();
  counter_.reset();
  engine_.reset();
}

void EngineWorker::load_model(const EngineConfig& config) {
#if defined(__linux__)
  // A little below normal priority for this thread and the engine's pool threads (created here by
  // Engine::load, they inherit it): when the engine takes every core, the GUI thread still gets
  // the CPU at once. An otherwise idle machine runs the engine at full speed either way.
  static thread_local bool niced = [] {
    const int nice =
        qEnvironmentVariableIsSet("FOLIO_ENGINE_NICE") ? qEnvironmentVariableIntValue("FOLIO_ENGINE_NICE") : 5;
    return setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) == 0;
  }();
  (void)niced;
#endif
  emit phase_changed(Phase::Loading);
  session_.reset();
  counter_.reset();
  engine_.reset();
  truncated_.clear();
  EngineOptions opt;
  opt.model_path = utf8(config.model_path);
  opt.backend = config.backend == "cuda" ? BackendKind::Cuda : BackendKind::Cpu;
  opt.threads = config.threads;
  float last_fraction = -1.0f;
  std::string last_stage;
  auto progress = [&](float fraction, std::string_view stage) {
    // Loaders may report per tensor: pass on whole percents and stage changes only.
    if (std::abs(fraction - last_fraction) < 0.01f && stage == last_stage) return;
    last_fraction = fraction;
    last_stage = std::string(stage);
    emit load_progress(fraction, QString::fromUtf8(stage.data(), static_cast<qsizetype>(stage.size())));
  };
  try {
    if (config.model_path.isEmpty())
      throw Error(ErrorCode::FileNotFound,
                  "no model file found; choose one in Settings (a .gguf file, a llama2.c "
                  ".bin or a folder with config.json and safetensors)");
    engine_ = Engine::load(opt, progress);
    if (!engine_->has_tokenizer())
      throw Error(ErrorCode::BadTokenizer,
                  "the model has no tokenizer beside it (tokenizer.model, tokenizer.json or "
                  "tokenizer.bin); choose a model folder that has one");
    format_ = detect_chat_format(*engine_);
    counter_ = std::make_unique<folio::docs::TokenCounter>(engine_->tokenizer());
    ModelInfo info;
    info.path = config.model_path;
    info.name = QFileInfo(config.model_path).fileName();
    info.architecture = QString::fromStdString(engine_->config().arch_label);
    info.chat_format = QString::fromLatin1(chat_format_name(format_));
    info.backend = QString::fromStdString(engine_->backend_name());
    info.notice = QString::fromStdString(engine_->notice());
    info.max_context = engine_->config().max_context;
    info.vocab_size = engine_->config().vocab_size;
    info.load_ms = engine_->load_ms();
    info.memory = engine_->memory();
    info_ = info;
    emit phase_changed(Phase::Idle);
    emit model_loaded(info);
  } catch (const std::exception& e) {
    engine_.reset();
    emit phase_changed(Phase::Idle);
    emit load_failed(describe(e));
  }
}

int64_t EngineWorker::document_tokens(const folio::docs::Document& doc) {
  return counter_->count(doc);
}

void EngineWorker::count_document(quint64 key, const folio::docs::Document& doc) {
  if (!engine_) {
    emit document_count_failed(key, tr("no model is loaded"));
    return;
  }
  try {
    emit document_counted(key, document_tokens(doc));
  } catch (const std::exception& e) {
    emit document_count_failed(key, describe(e));
  }
}

folio::docs::Document EngineWorker::prepared(const PromptDocument& d) {
  if (d.keep_tokens <= 0) return d.doc;
  const QString key = hash_key(d.doc, d.keep_tokens);
  auto it = truncated_.find(key);
  if (it != truncated_.end()) return *it;
  // Cut on the user's choice only; the layout then carries the visible truncation notice.
  folio::docs::Document cut = folio::docs::truncate_document(d.doc, d.keep_tokens, *counter_);
  truncated_.insert(key, cut);
  return cut;
}

QString EngineWorker::documents_system_text(const QVector<folio::docs::Document>& docs, bool with_instruction) {
  if (!with_instruction) return folio::docs::layout_documents(docs);
  return QStringLiteral("Answer the question using the documents below. ") + folio::docs::citation_instruction(docs) +
         QStringLiteral("\n\n") + folio::docs::layout_documents(docs);
}

std::vector<int32_t> EngineWorker::encode_prompt(const QVector<folio::docs::Document>& docs,
                                                 const QVector<ChatTurn>& history, const QString& question) const {
  // Documents first (the system turn), then the conversation: every follow-up question shares
  // this prefix, so the session's KV cache covers the documents after the first question.
  std::vector<ChatMessage> messages;
  if (!docs.isEmpty())
    messages.push_back({"system", utf8(documents_system_text(docs, format_ != ChatFormatKind::Plain))});
  for (const ChatTurn& t : history) messages.push_back({utf8(t.role), utf8(t.text)});
  messages.push_back({"user", utf8(question)});
  return encode_chat(*engine_, format_, messages);
}

int64_t EngineWorker::session_context(int64_t requested) const {
  return effective_context(requested, engine_->config().max_context);
}

void EngineWorker::reset_conversation() {
  session_.reset();
}

int64_t EngineWorker::prefill_chunk() const {
  // Stop and the progress bar act between chunks. On the CPU a 512-token chunk of SmolLM2-135M
  // takes ~4 s on 2 cores; 128 tokens answer Stop within ~1 s for ~3% less prefill speed
  // (131 vs 127 tok/s, folio-cli on the demo document). GPUs keep the engine's default.
  return engine_->backend_kind() == BackendKind::Cpu ? 128 : 0;
}

void EngineWorker::ask(const AskRequest& request) {
  if (!engine_) {
    emit ask_failed(request.id, tr("No model is loaded. Open Settings and choose a model file."));
    return;
  }
  try {
    const int64_t ctx = session_context(request.context_tokens);
    QVector<folio::docs::Document> docs;
    for (const PromptDocument& d : request.documents) docs.push_back(prepared(d));
    const std::vector<int32_t> prompt = encode_prompt(docs, request.history, request.question);
    const int64_t prompt_tokens = static_cast<int64_t>(prompt.size());
    const int64_t reserve = answer_reserve(ctx, request.max_tokens);
    if (prompt_tokens + reserve > ctx) {
      // Never cut silently: the user decides what to leave out.
      FitProblem p;
      p.request_id = request.id;
      p.prompt_tokens = prompt_tokens;
      p.context_tokens = ctx;
      p.reserve_tokens = reserve;
      int64_t doc_sum = 0;
      for (const auto& d : docs) doc_sum += document_tokens(d);
      for (const PromptDocument& d : request.documents) p.document_tokens.push_back(document_tokens(d.doc));
      p.fixed_tokens = std::max<int64_t>(0, prompt_tokens - doc_sum);
      emit prompt_does_not_fit(p);
      return;
    }
    if (!session_ || session_->context_size() != ctx) {
      session_.reset();
      SessionOptions so;
      so.context_tokens = ctx;
      session_ = engine_->create_session(so);
    }

    session_->set_attention(sparse::attention_mode_from_name(request.attention_mode.toStdString()),
                            sparse_config_with_threshold(request.sparse_threshold_tokens));
    emit phase_changed(Phase::Prefill);
    RequestOptions ro;
    ro.keep_prefix = true;
    ro.prefill.chunk_tokens = prefill_chunk();
    ro.prefill.cancel = request.cancel.get();
    const uint64_t id = request.id;
    ro.prefill.on_progress = [this, id](const PrefillProgress& p) {
      emit prefill_progress(id, p.done_tokens, p.total_tokens, p.elapsed_ms);
    };
    ro.generate.sampler = request.sampler;
    ro.generate.max_tokens = request.max_tokens;
    ro.generate.stop_tokens = chat_stop_tokens(*engine_, format_);
    ro.generate.cancel = request.cancel.get();
    std::string pending;
    int64_t n_tokens = 0;
    double first_ms = 0.0, last_emit_ms = 0.0;
    auto flush = [&]() {
      if (pending.empty()) return;
      emit tokens_arrived(id, QString::fromStdString(pending), n_tokens, now_ms() - first_ms);
      pending.clear();
      last_emit_ms = now_ms();
    };
    ro.generate.on_token = [&](int32_t, std::string_view text) {
      const double t = now_ms();
      if (n_tokens == 0) {
        first_ms = t;
        emit phase_changed(Phase::Generating);
      }
      ++n_tokens;
      pending.append(text);
      if (t - last_emit_ms >= 16.0) flush();
    };
    RequestResult result = session_->run(prompt, ro);
    flush();
    AskOutcome out;
    out.id = id;
    out.text = QString::fromStdString(result.text);
    out.metrics = result.metrics;
    out.cancelled = result.metrics.stop == StopReason::Cancelled;
    out.context_tokens = ctx;
    emit phase_changed(Phase::Idle);
    emit ask_finished(out);
  } catch (const std::exception& e) {
    // A failed request may leave the cache half written: start the next one afresh.
    session_.reset();
    emit phase_changed(Phase::Idle);
    emit ask_failed(request.id, describe(e));
  }
}

std::shared_ptr<const sparse::SparseConfig> EngineWorker::sparse_config_with_threshold(int64_t threshold) const {
  auto c = std::make_shared<sparse::SparseConfig>(*engine_->sparse_config());
  c->crossover_tokens = threshold;
  return c;
}

void EngineWorker::compare(const CompareRequest& request) {
  if (!engine_) {
    emit compare_finished(request.id, false, tr("No model is loaded. Open Settings and choose a model file."));
    return;
  }
  emit phase_changed(Phase::Measuring);
  try {
    QVector<folio::docs::Document> docs;
    for (const PromptDocument& d : request.documents) docs.push_back(prepared(d));
    std::vector<int32_t> prompt = encode_prompt(docs, {}, request.question);
    const int64_t max_ctx = engine_->config().max_context > 0 ? engine_->config().max_context : 8192;
    if (static_cast<int64_t>(prompt.size()) > max_ctx - 1) prompt.resize(static_cast<size_t>(max_ctx - 1));
    const int64_t n = static_cast<int64_t>(prompt.size());
    bool cancelled = false;
    for (const QString& mode : request.modes) {
      for (double f : request.fractions) {
        if (request.cancel && request.cancel->cancelled()) {
          cancelled = true;
          break;
        }
        const int64_t len = std::clamp<int64_t>(static_cast<int64_t>(std::llround(f * static_cast<double>(n))), 8, n);
        // A session of its own, sized to the measurement: the conversation's cache stays intact.
        SessionOptions so;
        so.context_tokens = std::min<int64_t>(len + 1, max_ctx);
        so.attention = sparse::attention_mode_from_name(mode.toStdString());
        std::unique_ptr<Session> s = engine_->create_session(so);
        RequestOptions ro;
        ro.keep_prefix = false;
        ro.prefill.chunk_tokens = prefill_chunk();
        ro.prefill.cancel = request.cancel.get();
        const uint64_t id = request.id;
        ro.prefill.on_progress = [this, id](const PrefillProgress& p) {
          emit prefill_progress(id, p.done_tokens, p.total_tokens, p.elapsed_ms);
        };
        ro.generate.max_tokens = 1;
        ro.generate.cancel = request.cancel.get();
        RequestResult r = s->run(std::span<const int32_t>(prompt.data(), static_cast<size_t>(len)), ro);
        if (r.metrics.stop == StopReason::Cancelled) {
          cancelled = true;
          break;
        }
        MeasuredRun m;
        m.request_id = request.id;
        m.attention_mode = mode;
        m.metrics = r.metrics;
        emit run_measured(m);
      }
      if (cancelled) break;
    }
    emit phase_changed(Phase::Idle);
    emit compare_finished(request.id, cancelled, {});
  } catch (const std::exception& e) {
    emit phase_changed(Phase::Idle);
    emit compare_finished(request.id, false, describe(e));
  }
}

}  // namespace folio::ui
