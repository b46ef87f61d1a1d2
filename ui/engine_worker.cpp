#include "ui/engine_worker.h"

#include <QDateTime>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
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

#include "core/chat/prompt_layout.h"
#include "core/docs/prompt_layout.h"
#include "ui/app_settings.h"
#include "core/engine/chat_prompt.h"

#if FOLIO_UI_REMOTE
#include "core/remote/remote_engine.h"
#include "ui/remote_connection.h"
#endif

namespace folio::ui {

namespace {

QString hash_key(const folio::docs::Document& doc, int64_t keep) {
  return (doc.content_hash.isEmpty() ? doc.path : doc.content_hash) + "#" + QString::number(keep);
}

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

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

void EngineWorker::attach_token_counts() {
  if (!recorder_ || !conversation_ || !counter_) return;
  if (!token_counts_) token_counts_ = std::make_unique<folio::store::StoredTokenCounts>(recorder_->database());
  // The tokenizer by the model file's path, size and time.
  const QFileInfo model(info_.path);
  const std::string id = QString("%1|%2|%3")
                             .arg(model.absoluteFilePath())
                             .arg(model.size())
                             .arg(model.lastModified().toSecsSinceEpoch())
                             .toStdString();
  conversation_->set_token_count_cache(token_counts_.get(), id);
  counter_->set_persistent_cache(token_counts_.get(), id);
}

void EngineWorker::unload() {
#if FOLIO_UI_REMOTE
  remote_.reset();
#endif
  conversation_.reset();
  counter_.reset();
  token_counts_.reset();
  recorder_.reset();  // its connection belongs to this thread
  engine_.reset();
}

void EngineWorker::open_store(const QString& database_path) {
  try {
    if (conversation_) conversation_->set_token_count_cache(nullptr, {});
    if (counter_) counter_->set_persistent_cache(nullptr, {});
    token_counts_.reset();
    recorder_ = std::make_unique<folio::store::ChatRecorder>(database_path);
    store_error_.clear();
    if (conversation_) {
      recorder_->set_model(info_.name);
      conversation_->set_recorder(recorder_.get());
      attach_token_counts();
    }
  } catch (const std::exception& e) {
    recorder_.reset();
    store_error_ = describe(e);
  }
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
  // The chat goes on with the next model: its turns carry over, its KV cache does not.
  std::vector<folio::chat::Turn> history = std::move(pending_history_);
  pending_history_.clear();
  if (conversation_) history = conversation_->history();
#if FOLIO_UI_REMOTE
  if (remote_) history = std::move(remote_history_);
  remote_.reset();
  remote_history_.clear();
#endif
  conversation_.reset();
  counter_.reset();
  engine_.reset();
  truncated_.clear();
  if (config.backend == "remote") {
#if FOLIO_UI_REMOTE
    load_remote(config, std::move(history));
#else
    emit phase_changed(Phase::Idle);
    emit load_failed(tr("this build of Folio has no remote engine (it was built without cpp-httplib); choose the "
                        "CPU or CUDA backend in Settings"));
#endif
    return;
  }
  EngineOptions opt;
  opt.model_path = config.model_path.toStdString();
  opt.backend = config.backend == "cuda" ? BackendKind::Cuda : BackendKind::Cpu;
  opt.threads = config.threads;
  if (config.gpus.size() == 1) opt.gpu_device = config.gpus.front();
  if (config.gpus.size() > 1) opt.gpu_devices = config.gpus;
  if (config.kv_dtype == "q8") opt.kv_quant = KvQuant::Q8;
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
    conversation_ = std::make_unique<folio::chat::Conversation>(*engine_);
    conversation_->set_history(std::move(history));
    counter_ = std::make_unique<folio::docs::TokenCounter>(engine_->tokenizer());
    ModelInfo info;
    info.path = config.model_path;
    info.name = QFileInfo(config.model_path).fileName();
    info.architecture = QString::fromStdString(engine_->config().arch_label);
    info.chat_format = QString::fromLatin1(chat_format_name(conversation_->format()));
    info.backend = QString::fromStdString(engine_->backend_name());
    info.notice = QString::fromStdString(engine_->notice());
    info.max_context = engine_->config().max_context;
    info.largest_context = engine_->largest_context();
    info.kv_type = QString::fromStdString(engine_->kv_type());
    info.auto_attention = QString::fromStdString(engine_->auto_attention_note());
    info.vocab_size = engine_->config().vocab_size;
    info.load_ms = engine_->load_ms();
    info.memory = engine_->memory();
    info_ = info;
    if (recorder_) {
      recorder_->set_model(info.name);
      conversation_->set_recorder(recorder_.get());
      attach_token_counts();
    }
    emit phase_changed(Phase::Idle);
    emit model_loaded(info);
  } catch (const std::exception& e) {
    conversation_.reset();
    engine_.reset();
    emit phase_changed(Phase::Idle);
    emit load_failed(describe(e));
  }
}

int64_t EngineWorker::document_tokens(const folio::docs::Document& doc) {
  return counter_->count(doc);
}

void EngineWorker::count_document(quint64 key, const folio::docs::Document& doc) {
#if FOLIO_UI_REMOTE
  if (remote_) {
    // The served model's tokenizer is not here: an estimate of the laid-out document (about four
    // bytes a token for English text and code); the server counts the prompt it is sent.
    const std::string laid_out = folio::chat::documents_system_text({folio::docs::chat_document(doc)}, false);
    emit document_counted(key, static_cast<qint64>((laid_out.size() + 3) / 4));
    return;
  }
#endif
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

std::vector<folio::chat::Document> EngineWorker::prepared(const QVector<PromptDocument>& docs) {
  std::vector<folio::chat::Document> out;
  for (const PromptDocument& d : docs) {
    folio::docs::Document doc = d.selection.empty() ? d.doc : folio::docs::select_parts(d.doc, d.selection);
    if (d.keep_tokens > 0) {
      const QString key =
          hash_key(d.doc, d.keep_tokens) +
          QString("|%1-%2|%3").arg(d.selection.first_page).arg(d.selection.last_page).arg(d.selection.files.join('\n'));
      auto it = truncated_.find(key);
      // Cut on the user's choice only; the layout then carries the visible truncation notice.
      if (it == truncated_.end())
        it = truncated_.insert(key, folio::docs::truncate_document(d.doc, d.keep_tokens, *counter_));
      doc = *it;
    }
    out.push_back(folio::docs::chat_document(doc));
    out.back().tokens = document_tokens(doc);  // cached by the counter: the service need not count again
  }
  return out;
}

void EngineWorker::reset_conversation() {
#if FOLIO_UI_REMOTE
  remote_history_.clear();
#endif
  if (conversation_) conversation_->reset();
  else if (recorder_) recorder_->new_conversation();
}

void EngineWorker::continue_conversation(qint64 conversation_id, const std::vector<folio::chat::Turn>& turns) {
#if FOLIO_UI_REMOTE
  if (remote_) {
    remote_history_ = turns;
  } else
#endif
  if (conversation_) {
    conversation_->reset();  // forgets the KV cache (and tells the recorder: a new conversation)
    conversation_->set_history(turns);
  } else {
    pending_history_ = turns;
  }
  if (recorder_) recorder_->continue_conversation(conversation_id);
}

int64_t EngineWorker::prefill_chunk() const {
  // Stop and the progress bar act between chunks. On the CPU a 512-token chunk of SmolLM2-135M
  // takes ~4 s on 2 cores; 128 tokens answer Stop within ~1 s for ~3% less prefill speed
  // (131 vs 127 tok/s, folio-cli on the demo document). GPUs keep the engine's default.
  return engine_->backend_kind() == BackendKind::Cpu ? 128 : 0;
}

void EngineWorker::ask(const AskRequest& request) {
#if FOLIO_UI_REMOTE
  if (remote_) {
    ask_remote(request);
    return;
  }
#endif
  if (!engine_) {
    emit ask_failed(request.id, tr("No model is loaded. Open Settings and choose a model file."));
    return;
  }
  try {
    conversation_->set_documents(prepared(request.documents));
    conversation_->set_system_prompt(request.system_prompt.toStdString());
    if (request.keep_kv_on_disk) {
      if (!kv_store_)
        kv_store_ = std::make_unique<folio::chat::KvStore>(kv_cache_folder().toStdString(), AppSettings::kKvCacheBytes);
      // The model by its path, size and time (a changed file does not load an old KV).
      const QFileInfo model(info_.path);
      conversation_->set_kv_store(kv_store_.get(), QString("%1|%2|%3|%4")
                                                       .arg(model.absoluteFilePath())
                                                       .arg(model.size())
                                                       .arg(model.lastModified().toSecsSinceEpoch())
                                                       .arg(info_.chat_format)
                                                       .toStdString());
    } else {
      conversation_->set_kv_store(nullptr, {});
    }
    const uint64_t id = request.id;
    folio::chat::AskOptions o;
    o.context_tokens = effective_context(request.context_tokens, engine_->config().max_context);
    o.attention = sparse::attention_mode_from_name(request.attention_mode.toStdString());
    o.fit = request.fit;
    o.sparse_config = sparse_config_with_threshold(request.sparse_threshold_tokens);
    o.on_start = [this] { emit phase_changed(Phase::Prefill); };
    o.prefill.chunk_tokens = prefill_chunk();
    o.prefill.cancel = request.cancel.get();
    o.prefill.on_progress = [this, id](const PrefillProgress& p) {
      emit prefill_progress(id, p.done_tokens, p.total_tokens, p.elapsed_ms);
    };
    o.generate.sampler = request.sampler;
    o.generate.max_tokens = request.max_tokens;
    o.generate.cancel = request.cancel.get();
    // Text reaches the GUI coalesced to about 60 emissions per second.
    std::string pending;
    int64_t n_tokens = 0;
    double first_ms = 0.0, last_emit_ms = 0.0;
    auto flush = [&]() {
      if (pending.empty()) return;
      emit tokens_arrived(id, QString::fromStdString(pending), n_tokens, now_ms() - first_ms);
      pending.clear();
      last_emit_ms = now_ms();
    };
    o.generate.on_token = [&](int32_t, std::string_view text) {
      const double t = now_ms();
      if (n_tokens == 0) {
        first_ms = t;
        emit phase_changed(Phase::Generating);
      }
      ++n_tokens;
      pending.append(text);
      if (t - last_emit_ms >= 16.0) flush();
    };
    const folio::chat::Answer a = request.regenerate ? conversation_->regenerate(o)
                                                     : conversation_->ask(request.question.toStdString(), o);
    if (!a.fit.fits) {
      // Never cut silently: the user decides what to leave out.
      FitProblem p;
      p.request_id = id;
      p.prompt_tokens = a.fit.prompt_tokens;
      p.context_tokens = a.fit.context_tokens;
      p.reserve_tokens = a.fit.reserve_tokens;
      p.fixed_tokens = a.fit.fixed_tokens;
      for (const PromptDocument& d : request.documents) p.document_tokens.push_back(document_tokens(d.doc));
      emit prompt_does_not_fit(p);
      return;
    }
    flush();
    AskOutcome out;
    out.id = id;
    out.question = QString::fromStdString(a.question);
    out.text = QString::fromStdString(a.result.text);
    out.metrics = a.result.metrics;
    out.cancelled = a.cancelled;
    out.context_tokens = o.context_tokens;
    out.history_turns = static_cast<int>(a.history_turns);
    out.conversation_id = recorder_ ? recorder_->conversation_id() : 0;
    out.record_error = a.record_error.empty() ? store_error_ : QString::fromStdString(a.record_error);
    if (!out.text.trimmed().isEmpty()) out.sources = ground(request, out.question, out.text);
    out.packing = QString::fromStdString(a.packing);
    for (const std::string& u : a.used) out.used << QString::fromStdString(u);
    out.repacked = a.repacked;
    out.kv_loaded_tokens = a.kv_loaded_tokens;
    out.kv_load_ms = a.kv_load_ms;
    out.kv_saved_bytes = a.kv_saved_bytes;
    out.kv_note = QString::fromStdString(a.kv_note);
    emit phase_changed(Phase::Idle);
    emit ask_finished(out);
  } catch (const std::exception& e) {
    emit phase_changed(Phase::Idle);
    emit ask_failed(request.id, describe(e));
  }
}

#if FOLIO_UI_REMOTE
void EngineWorker::load_remote(const EngineConfig& config, std::vector<folio::chat::Turn> history) {
  const QString url = config.remote_url.trimmed();
  emit load_progress(0.0, tr("Connecting to %1").arg(url));
  const auto t0 = std::chrono::steady_clock::now();
  try {
    folio::remote::RemoteOptions ro;
    ro.url = url.toStdString();
    ro.api_key = config.remote_api_key.trimmed().toStdString();
    ro.model = config.remote_model.trimmed().toStdString();
    ro.connect_timeout_s = 10;
    auto remote = std::make_unique<folio::remote::RemoteEngine>(ro);
    const folio::remote::RemoteModel m = remote->connect();
    remote_ = std::move(remote);
    remote_history_ = std::move(history);
    remote_url_ = url;
    ModelInfo info;
    info.path = url;
    info.name = QString::fromStdString(m.id);
    info.architecture = tr("served remotely");
    info.chat_format = tr("the server's");
    info.backend = tr("remote %1").arg(url);
    info.remote = true;
    info.max_context = m.context_tokens;
    if (m.context_tokens <= 0)
      info.notice = tr("The server does not say its context size; Folio assumes 8,192 tokens (Settings ▸ Context "
                       "size sets it).");
    info.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    info_ = info;
    if (recorder_) recorder_->set_model(info.name);
    emit phase_changed(Phase::Idle);
    emit model_loaded(info);
  } catch (const std::exception& e) {
    remote_.reset();
    pending_history_ = std::move(history);
    emit phase_changed(Phase::Idle);
    emit load_failed(remote_error_text(e, url));
  }
}

void EngineWorker::ask_remote(const AskRequest& request) {
  const uint64_t id = request.id;
  try {
    std::vector<folio::chat::Document> docs;
    for (const PromptDocument& d : request.documents) {
      docs.push_back(folio::docs::chat_document(d.doc));
      docs.back().tokens = 0;  // not counted here: the server counts the prompt
    }
    std::vector<folio::chat::Turn> history = remote_history_;
    std::string question = request.question.toStdString();
    if (request.regenerate) {
      // The last question again, in place of its answer.
      if (history.size() < 2 || history.back().role != "assistant") {
        emit phase_changed(Phase::Idle);
        emit ask_failed(id, tr("There is no answer to regenerate."));
        return;
      }
      history.pop_back();
      question = history.back().text;
      history.pop_back();
    }
    // The layout the local engine's chat models get (system prompt, documents with the citation
    // instruction, history, question) as chat messages; the server applies its own chat template.
    const std::vector<folio::ChatMessage> messages = folio::chat::prompt_messages(
        folio::ChatFormatKind::ChatML, docs, history, question, request.system_prompt.toStdString());
    emit phase_changed(Phase::Prefill);
    GenerateOptions gen;
    gen.sampler = request.sampler;
    gen.max_tokens = request.max_tokens;
    gen.cancel = request.cancel.get();
    std::string pending;
    int64_t n_pieces = 0;
    double first_ms = 0.0, last_emit_ms = 0.0;
    auto flush = [&]() {
      if (pending.empty()) return;
      emit tokens_arrived(id, QString::fromStdString(pending), n_pieces, now_ms() - first_ms);
      pending.clear();
      last_emit_ms = now_ms();
    };
    gen.on_token = [&](int32_t, std::string_view text) {
      const double t = now_ms();
      if (n_pieces == 0) {
        first_ms = t;
        emit phase_changed(Phase::Generating);
      }
      ++n_pieces;
      pending.append(text);
      if (t - last_emit_ms >= 16.0) flush();
    };
    folio::remote::RemoteResult rr = remote_->chat(messages, gen);
    flush();
    Metrics& m = rr.result.metrics;
    m.backend = info_.backend.toStdString();
    // TTFT and the decode rate stay as measured here (what the user waited); the prefill and its
    // attention are the server's own figures when it sends them (folio-server's `folio` field).
    if (!rr.server_metrics_json.empty()) {
      const QJsonObject f = QJsonDocument::fromJson(QByteArray::fromStdString(rr.server_metrics_json)).object();
      const QJsonObject att = f.value("attention").toObject();
      m.prefill_tokens = f.value("prefill_tokens").toInteger(m.prefill_tokens);
      m.prefill_ms = f.value("prefill_ms").toDouble(m.prefill_ms);
      m.prefill_tok_s = f.value("prefill_tok_s").toDouble(m.prefill_tok_s);
      m.reused_tokens = f.value("reused_tokens").toInteger(m.reused_tokens);
      m.attention_mode = att.value("mode").toString().toStdString();
      m.sparse_chunks = att.value("sparse_chunks").toInteger(0);
      m.dense_chunks = att.value("dense_chunks").toInteger(0);
      m.attention_density = att.value("density").toDouble(0.0);
      m.est_mass_mean = att.value("est_mass_mean").toDouble(1.0);
    }
    const bool cancelled = m.stop == StopReason::Cancelled;
    AskOutcome out;
    out.id = id;
    out.question = QString::fromStdString(question);
    out.text = QString::fromStdString(rr.result.text);
    if (rr.cut) {
      // What came is kept, and marked.
      out.cut_reason = QString::fromStdString(rr.cut_reason);
      out.text += "\n\n" + tr("[The answer was cut off here: %1]").arg(out.cut_reason);
    }
    out.metrics = m;
    out.cancelled = cancelled;
    out.context_tokens = effective_context(request.context_tokens, info_.max_context);
    if (!cancelled || !rr.result.text.empty()) {
      remote_history_ = history;
      remote_history_.push_back({"user", question});
      remote_history_.push_back({"assistant", out.text.toStdString()});
    }
    out.history_turns = static_cast<int>(remote_history_.size());
    if (recorder_) {
      try {
        folio::chat::TurnRecord t;
        t.question = question;
        t.answer = out.text.toStdString();
        t.metrics = m;
        t.cancelled = cancelled;
        t.documents = &docs;
        t.document_tokens.assign(docs.size(), 0);
        recorder_->record_turn(t);
      } catch (const std::exception& e) {
        out.record_error = describe(e);
      }
      out.conversation_id = recorder_->conversation_id();
    } else {
      out.record_error = store_error_;
    }
    if (!out.text.trimmed().isEmpty()) out.sources = ground(request, out.question, out.text);
    emit phase_changed(Phase::Idle);
    emit ask_finished(out);
  } catch (const std::exception& e) {
    emit phase_changed(Phase::Idle);
    emit ask_failed(id, remote_error_text(e, remote_url_));
  }
}
#endif

std::vector<folio::chat::SourcePassage> EngineWorker::ground(const AskRequest& request, const QString& question,
                                                             const QString& answer) {
  // Against the whole documents, also where the prompt held only part of one: a source links
  // into the document as it is.
  if (request.documents.isEmpty()) return {};
  QString key;
  for (const PromptDocument& d : request.documents)
    key += (d.doc.content_hash.isEmpty() ? d.doc.path : d.doc.content_hash) + '|';
  if (!grounding_ || key != grounding_key_) {
    std::vector<folio::chat::Document> docs;
    for (const PromptDocument& d : request.documents) docs.push_back(folio::docs::chat_document(d.doc));
    grounding_ = std::make_unique<folio::chat::GroundingIndex>(std::move(docs));
    grounding_key_ = key;
  }
  return grounding_->ground(answer.toStdString(), question.toStdString());
}

std::shared_ptr<const sparse::SparseConfig> EngineWorker::sparse_config_with_threshold(int64_t threshold) const {
  // 0: as the model's config says (its crossover measured on this backend, if any); else the
  // user's length, in place of any measurement
  if (threshold <= 0) return engine_->sparse_config();
  auto c = std::make_shared<sparse::SparseConfig>(*engine_->sparse_config());
  c->crossover_tokens = threshold;
  c->measured.clear();
  return c;
}

void EngineWorker::compare(const CompareRequest& request) {
#if FOLIO_UI_REMOTE
  if (remote_) {
    emit compare_finished(request.id, false,
                          tr("The dense/sparse comparison measures Folio's own engine; with a remote server "
                             "choose the CPU or CUDA backend in Settings to run it."));
    return;
  }
#endif
  if (!engine_) {
    emit compare_finished(request.id, false, tr("No model is loaded. Open Settings and choose a model file."));
    return;
  }
  emit phase_changed(Phase::Measuring);
  try {
    // The prompt a first question over these documents would send, up to the model's context: a
    // longer one is encoded only as far as it is measured (counted in pieces first, then the
    // prefix that holds max_ctx tokens encoded), so documents far past the context cost no more.
    const int64_t max_ctx = engine_->config().max_context > 0 ? engine_->config().max_context : 8192;
    const folio::ChatFormatKind format = conversation_->format();
    const std::vector<folio::ChatMessage> messages = folio::chat::prompt_messages(
        format, prepared(request.documents), {}, request.question.toStdString(), request.system_prompt.toStdString());
    const std::string text = folio::render_chat(format, messages, /*add_generation_prompt=*/true);
    const folio::TokenCount counted =
        folio::count_tokens(engine_->tokenizer(), text, max_ctx, format != folio::ChatFormatKind::Plain);
    std::vector<int32_t> prompt =
        counted.exceeded
            ? engine_->tokenizer().encode(std::string_view(text).substr(0, counted.bytes_counted),
                                          folio::chat_format_adds_bos(format), format != folio::ChatFormatKind::Plain)
            : folio::encode_chat(*engine_, format, messages);
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
        if (!r.tokens.empty()) m.first_token = r.tokens.front();
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
