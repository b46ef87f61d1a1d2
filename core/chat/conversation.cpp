#include "core/chat/conversation.h"

#include <algorithm>
#include <chrono>
#include <functional>

#include "core/chat/prompt_layout.h"
#include "core/engine/chat_prompt.h"

namespace folio::chat {

int64_t effective_context(int64_t requested_tokens, int64_t model_max_context) {
  const int64_t max_ctx = model_max_context > 0 ? model_max_context : 8192;
  const int64_t ctx = requested_tokens > 0 ? requested_tokens : std::min<int64_t>(max_ctx, 8192);
  return std::clamp<int64_t>(ctx, 16, max_ctx);
}

int64_t answer_reserve(int64_t context_tokens, int max_tokens) {
  return std::min<int64_t>(std::max(max_tokens, 1), std::max<int64_t>(16, context_tokens / 8));
}

std::string system_text(ChatFormatKind format, const std::vector<Document>& docs, const std::string& system_prompt) {
  std::string text = system_prompt;
  if (!docs.empty()) {
    std::string documents = documents_system_text(docs, format != ChatFormatKind::Plain);
    if (text.empty()) return documents;  // not copied again: it may be hundreds of MiB
    text += "\n\n";
    text += documents;
  }
  return text;
}

std::vector<ChatMessage> prompt_messages(ChatFormatKind format, const std::vector<Document>& docs,
                                         const std::vector<Turn>& history, const std::string& question,
                                         const std::string& system_prompt) {
  std::vector<ChatMessage> messages;
  if (std::string system = system_text(format, docs, system_prompt); !system.empty())
    messages.push_back({"system", std::move(system)});
  for (const Turn& t : history) messages.push_back({t.role, t.text});
  messages.push_back({"user", question});
  return messages;
}

Prompt build_prompt(const Engine& engine, ChatFormatKind format, const std::vector<Document>& docs,
                    const std::vector<Turn>& history, const std::string& question, const std::string& system_prompt) {
  const std::vector<ChatMessage> messages = prompt_messages(format, docs, history, question, system_prompt);
  Prompt p;
  p.text = render_chat(format, messages, /*add_generation_prompt=*/true);
  p.tokens = encode_chat(engine, format, messages);
  return p;
}

std::string FitCheck::message() const {
  if (counted_in_part) {
    int64_t counted = 0;
    bool over = false;
    for (size_t i = 0; i < document_tokens.size(); ++i) {
      counted += document_tokens[i];
      over = over || (i < documents_over.size() && documents_over[i]);
    }
    return "the prompt is more than " + std::to_string(prompt_tokens) + " tokens (" + (over ? "more than " : "") +
           std::to_string(counted) + " of them documents; counting stopped there) and " +
           std::to_string(reserve_tokens) + " more are kept for the answer, more than the context of " +
           std::to_string(context_tokens) +
           " tokens; choose a larger context, fewer answer tokens, or fewer or shorter documents";
  }
  return "the prompt is " + std::to_string(prompt_tokens) + " tokens (" + std::to_string(prompt_tokens - fixed_tokens) +
         " of them documents) and " + std::to_string(reserve_tokens) +
         " more are kept for the answer, more than the context of " + std::to_string(context_tokens) +
         " tokens; choose a larger context, fewer answer tokens, or fewer or shorter documents";
}

Conversation::Conversation(Engine& engine) : Conversation(engine, detect_chat_format(engine)) {}

Conversation::Conversation(Engine& engine, ChatFormatKind format) : engine_(engine), format_(format) {}

Conversation::~Conversation() = default;

void Conversation::set_documents(std::vector<Document> docs) {
  docs_ = std::move(docs);
}

void Conversation::reset() {
  history_.clear();
  session_.reset();
  if (recorder_ != nullptr) recorder_->new_conversation();
}

Prompt Conversation::prompt(const std::string& question) const {
  return build_prompt(engine_, format_, docs_, history_, question, system_prompt_);
}

int64_t Conversation::document_tokens(const Document& doc) {
  if (doc.tokens > 0) return doc.tokens;
  const std::string text = layout_document(doc);
  // Keyed by the laid-out text, so an unchanged document is encoded once per conversation.
  const size_t key = std::hash<std::string>{}(text) ^ (text.size() * 0x9E3779B97F4A7C15ull);
  if (auto it = token_cache_.find(key); it != token_cache_.end()) return it->second;
  const int64_t n = count_tokens(engine_.tokenizer(), text, -1).tokens;  // in pieces: memory of one piece
  token_cache_.emplace(key, n);
  return n;
}

int64_t Conversation::document_tokens(const Document& doc, int64_t limit_tokens, bool* over) {
  *over = false;
  if (doc.tokens > 0) return doc.tokens;
  const std::string text = layout_document(doc);
  const size_t key = std::hash<std::string>{}(text) ^ (text.size() * 0x9E3779B97F4A7C15ull);
  if (auto it = token_cache_.find(key); it != token_cache_.end()) return it->second;
  const TokenCount c = count_tokens(engine_.tokenizer(), text, limit_tokens);
  if (c.exceeded) {
    *over = true;
    return c.tokens;
  }
  token_cache_.emplace(key, c.tokens);
  return c.tokens;
}

FitCheck Conversation::check_fit(const Prompt& prompt, int64_t context_tokens, int max_tokens) {
  FitCheck f;
  f.prompt_tokens = static_cast<int64_t>(prompt.tokens.size());
  f.context_tokens = context_tokens;
  f.reserve_tokens = answer_reserve(context_tokens, max_tokens);
  f.fits = f.prompt_tokens + f.reserve_tokens <= context_tokens;
  if (f.fits) return f;
  int64_t doc_sum = 0;
  for (const Document& d : docs_) {
    f.document_tokens.push_back(document_tokens(d));
    doc_sum += f.document_tokens.back();
  }
  f.fixed_tokens = std::max<int64_t>(0, f.prompt_tokens - doc_sum);
  return f;
}

namespace {

// How far past the context a prompt is counted before it is called too large: far enough that the
// message names a useful size, and a bound on the time a huge document costs.
int64_t count_limit(int64_t context_tokens) {
  return std::max<int64_t>(4 * context_tokens, context_tokens + (int64_t{1} << 16));
}

// A saved prefix shorter than this in common with the prompt is not loaded: the chat template and
// the documents' instruction alone are about this long, and prefilling them costs next to nothing.
constexpr int64_t kMinDiskPrefixTokens = 32;

}  // namespace

Prompt Conversation::fitted_prompt(const std::string& question, const AskOptions& options, FitCheck& fit,
                                   std::string& packing) {
  return fitted(question, history_, options, fit, packing);
}

Prompt Conversation::fitted(const std::string& question, const std::vector<Turn>& history, const AskOptions& options,
                            FitCheck& fit, std::string& packing) {
  packing.clear();
  prompt_docs_ = &docs_;
  const Tokenizer& tok = engine_.tokenizer();
  // The prompt is counted in pieces first and encoded whole only when it may fit, so a document
  // many times the context costs memory and time in proportion to the context, not to the file.
  Prompt p;
  std::vector<ChatMessage> messages = prompt_messages(format_, docs_, history, question, system_prompt_);
  const int64_t reserve = answer_reserve(options.context_tokens, options.generate.max_tokens);
  const int64_t limit = count_limit(options.context_tokens);
  const bool special = format_ != ChatFormatKind::Plain;
  // The messages' own text first: when it alone is far past the context, the prompt is not even
  // rendered (another copy of the documents).
  TokenCount counted;
  for (const ChatMessage& m : messages) {
    const TokenCount c = count_tokens(tok, m.content, limit - counted.tokens, special);
    counted.tokens += c.tokens;
    counted.bytes_counted += c.bytes_counted;
    if (c.exceeded) {
      counted.exceeded = true;
      break;
    }
  }
  bool encode = false;
  if (!counted.exceeded) {
    p.text = render_chat(format_, messages, /*add_generation_prompt=*/true);
    // Counted in pieces, a prompt may come out a token or two per piece above its whole encoding.
    const int64_t slack = 2 * static_cast<int64_t>(p.text.size() / kCountPieceBytes) + 64;
    // Messages that may fit bound the prompt: it is encoded whole (its exact count comes with it)
    // without being counted again. Else the rendered prompt is counted for the message.
    encode = counted.tokens + reserve <= options.context_tokens + slack;
    if (!encode) {
      counted = count_tokens(tok, p.text, limit, special);
      encode = !counted.exceeded && counted.tokens + reserve <= options.context_tokens + slack;
    }
  }
  if (encode) {
    p.tokens = encode_chat(engine_, format_, messages);
    fit = check_fit(p, options.context_tokens, options.generate.max_tokens);
  } else {
    fit = FitCheck{};
    fit.fits = false;
    fit.context_tokens = options.context_tokens;
    fit.reserve_tokens = reserve;
    fit.prompt_tokens = counted.tokens;
    fit.counted_in_part = counted.exceeded;
    int64_t doc_sum = 0;
    for (const Document& d : docs_) {
      bool over = false;
      fit.document_tokens.push_back(document_tokens(d, limit, &over));
      fit.documents_over.push_back(over);
      doc_sum += fit.document_tokens.back();
    }
    fit.fixed_tokens = std::max<int64_t>(0, fit.prompt_tokens - doc_sum);
  }
  if (fit.fits || options.fit == FitMode::Error || docs_.empty()) return p;
  // Packing works on the documents' units: the laid-out messages (a copy of every document) go.
  std::vector<ChatMessage>().swap(messages);
  // Counted in part, the rest of the prompt is measured without the documents.
  if (fit.counted_in_part) {
    std::vector<Document> bare = docs_;
    for (Document& d : bare) d.sections.clear();
    const std::string rest =
        render_chat(format_, prompt_messages(format_, bare, history, question, system_prompt_), true);
    fit.fixed_tokens = count_tokens(tok, rest, -1, format_ != ChatFormatKind::Plain).tokens;
  }
  // The documents' units and their tokens, counted once while the documents stay the same. A unit
  // larger than all the room the documents could have can never be packed: its count stops there.
  const int64_t unit_limit = fit.context_tokens - fit.reserve_tokens;
  if (unit_limit <= 0) return p;
  // Kept by the index for later packings: nothing of this call is captured by reference.
  auto count = [this, &tok, unit_limit](const std::string& text) {
    std::string key;
    if (count_cache_ != nullptr) {
      key = TokenCountCache::key(tokenizer_id_, text);
      try {
        if (const int64_t n = count_cache_->find(key); n >= 0) return n;
      } catch (const std::exception&) {
        key.clear();  // a cache that cannot be read: counted, and not kept
      }
    }
    const TokenCount c = count_tokens(tok, text, unit_limit);
    if (!key.empty() && !c.exceeded) count_cache_->put(key, c.tokens);
    return c.tokens;
  };
  const std::string signature = documents_signature();
  const std::string index_key = signature + "|" + std::to_string(unit_limit);
  if (!packing_index_ || index_signature_ != index_key) {
    packing_index_ = std::make_unique<PackingIndex>(docs_, count, unit_limit);
    index_signature_ = index_key;
    if (count_cache_ != nullptr) {
      try {
        count_cache_->flush();
      } catch (const std::exception&) {
        // Counts that cannot be kept only cost the next run a count.
      }
    }
  }
  const PackingIndex& index = *packing_index_;
  const std::string pack_signature = signature + "|" + fit_mode_name(options.fit);
  auto accept = [&](const Prompt& q, const Packing& made) {
    fit.fits = true;
    fit.prompt_tokens = static_cast<int64_t>(q.tokens.size());
    packing = made.summary;
    packing_ = made;
    prompt_docs_ = &packing_->docs;
  };
  // A follow-up whose strongest units the last packing holds keeps it: the same prefix, its KV reused.
  if (packing_ && packing_->signature == pack_signature && options.fit == FitMode::Relevant) {
    const std::vector<size_t> needed = strongest_units(index, question);
    const bool held = std::all_of(needed.begin(), needed.end(), [&](size_t u) {
      return std::binary_search(packing_->kept_units.begin(), packing_->kept_units.end(), u);
    });
    if (held) {
      Prompt q = build_prompt(engine_, format_, packing_->docs, history, question, system_prompt_);
      if (static_cast<int64_t>(q.tokens.size()) + fit.reserve_tokens <= fit.context_tokens) {
        Packing kept = *packing_;
        kept.repacked = false;
        accept(q, kept);
        return q;
      }
    }
  }
  // Room for the documents (packing_budget: with headroom for follow-ups to keep this packing);
  // pieces counted apart can sum a little below the whole, so a miss shrinks the budget and retries.
  int64_t budget = packing_budget(fit.context_tokens, fit.reserve_tokens, fit.fixed_tokens);
  for (int attempt = 0; attempt < 4 && budget > 0; ++attempt) {
    PackResult packed = pack_documents(index, question, budget, options.fit);
    Prompt q = build_prompt(engine_, format_, packed.docs, history, question, system_prompt_);
    const int64_t over = static_cast<int64_t>(q.tokens.size()) + fit.reserve_tokens - fit.context_tokens;
    if (over <= 0) {
      accept(q, Packing{pack_signature, std::move(packed.docs), std::move(packed.kept_units), packed.summary,
                        std::move(packed.used), true});
      return q;
    }
    budget -= over + 16;
  }
  return p;
}

int64_t Conversation::shared_prefix(const Prompt& prompt) const {
  // The same documents with no history and a question no one asks: what it shares with the prompt
  // is what every question (and every history) over these documents shares.
  const std::vector<Document>& docs = prompt_docs_ != nullptr ? *prompt_docs_ : docs_;
  const Prompt other = build_prompt(engine_, format_, docs, {}, "\x01", system_prompt_);
  size_t n = 0;
  while (n < prompt.tokens.size() && n < other.tokens.size() && prompt.tokens[n] == other.tokens[n]) ++n;
  return static_cast<int64_t>(n);
}

std::string Conversation::documents_signature() const {
  // What the packing depends on: each document's identity, its sections and any cut made by the user.
  std::string s;
  for (const Document& d : docs_) {
    size_t bytes = 0;
    for (const Section& x : d.sections) bytes += x.text.size();
    s += d.path + '\x1f' + d.content_hash + '\x1f' + std::to_string(d.sections.size()) + '\x1f' +
         std::to_string(bytes) + '\x1f' + d.truncation_notice + '\x1e';
  }
  return s;
}

Answer Conversation::ask(const std::string& question, const AskOptions& options) {
  return run(question, history_, options);
}

Answer Conversation::regenerate(const AskOptions& options) {
  // The last exchange is a user turn and its answer; ask that question again without them.
  if (history_.size() < 2 || history_[history_.size() - 2].role != "user") return {};
  std::vector<Turn> before(history_.begin(), history_.end() - 2);
  const std::string question = history_[history_.size() - 2].text;  // a copy: run() replaces history_
  return run(question, std::move(before), options);
}

Answer Conversation::run(const std::string& question, std::vector<Turn> history, const AskOptions& options) {
  Answer a;
  a.question = question;
  const Prompt p = fitted(question, history, options, a.fit, a.packing);
  if (!a.fit.fits) {
    a.history_turns = history_.size();
    return a;
  }
  try {
    if (!session_ || session_->context_size() != options.context_tokens) {
      session_.reset();
      SessionOptions so;
      so.context_tokens = options.context_tokens;
      session_ = engine_.create_session(so);
    }
    session_->set_attention(options.attention, options.sparse_config);
    // A new session: start from the documents' KV saved on disk, when this prompt begins with it.
    // A running session whose documents' prefix changed (a document added after the others, whose
    // prefix the session reused): that prefix is saved too, so a restart finds it.
    int64_t prefix = 0;
    std::string key;
    const bool new_session = session_->n_past() == 0;
    std::string signature;
    if (kv_store_ != nullptr && !docs_.empty()) {
      signature = documents_signature() + '\x1d' + system_prompt_ + '\x1d' +
                  (prompt_docs_ != &docs_ && packing_ ? packing_->summary : std::string());
      for (size_t u : packing_&& prompt_docs_ != &docs_ ? packing_->kept_units : std::vector<size_t>{})
        signature += std::to_string(u) + ',';
    }
    if (kv_store_ != nullptr && !docs_.empty() && (new_session || signature != kv_prefix_signature_)) {
      prefix = shared_prefix(p);
      if (prefix > 1 && prefix < static_cast<int64_t>(p.tokens.size())) {
        const std::string layout =
            KvStore::layout(engine_.backend_kind() != BackendKind::Cpu, session_->kv_element_bytes());
        key = KvStore::key(model_id_, layout, std::span<const int32_t>(p.tokens.data(), static_cast<size_t>(prefix)));
        const auto t0 = std::chrono::steady_clock::now();
        if (!new_session) {
          if (kv_store_->contains(key)) key.clear();  // saved already
        } else {
          // The saved prefix of these documents, or of the first of them (others added after them
          // since): its shared start is restored, the rest prefilled, and the whole prefix saved.
          const KvRestore r = restore_saved_prefix(*kv_store_, *session_, model_id_, layout,
                                                   std::span<const int32_t>(p.tokens.data(), static_cast<size_t>(prefix)),
                                                   kMinDiskPrefixTokens);
          a.kv_note = r.note;
          if (r.tokens > 0) {
            a.kv_loaded_tokens = r.tokens;
            a.kv_load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            if (r.tokens == prefix) key.clear();  // this very prefix: saved already
          }
        }
      }
    }
    if (options.on_start) options.on_start();
    RequestOptions ro;
    ro.keep_prefix = true;
    ro.prefill = options.prefill;
    ro.generate = options.generate;
    const std::vector<int32_t> stops = chat_stop_tokens(engine_, format_);
    ro.generate.stop_tokens.insert(ro.generate.stop_tokens.end(), stops.begin(), stops.end());
    a.result = session_->run(p.tokens, ro);
    // Computed afresh: kept for the next time (a cancelled prefill may not have reached its end).
    const bool finished = a.result.metrics.stop != StopReason::Cancelled && session_->n_past() >= prefix;
    if (!key.empty() && finished && session_->kv_element_bytes() > 0) {
      try {
        // What computing the prefix cost, when this run computed all of it (its share of the prefill).
        const Metrics& m = a.result.metrics;
        const double compute_ms = m.reused_tokens == 0 && m.prefill_tokens > 0
                                      ? m.prefill_ms * static_cast<double>(prefix) / static_cast<double>(m.prefill_tokens)
                                      : 0.0;
        a.kv_saved_bytes = save_session_prefix(*kv_store_, *session_, key,
                                               std::span<const int32_t>(p.tokens.data(), static_cast<size_t>(prefix)),
                                               compute_ms);
      } catch (const std::exception& ex) {
        a.kv_note = ex.what();
      }
    }
    if (finished) kv_prefix_signature_ = signature;
  } catch (...) {
    // A failed request may leave the cache half written: the next one starts afresh.
    session_.reset();
    throw;
  }
  a.cancelled = a.result.metrics.stop == StopReason::Cancelled;
  if (!a.packing.empty() && packing_) {
    a.used = packing_->used;
    a.repacked = packing_->repacked;
  }
  // The turn it answered replaces what it was asked on top of (regenerate drops the old answer).
  history_ = std::move(history);
  if (!(a.cancelled && a.result.text.empty())) {
    history_.push_back({"user", question});
    history_.push_back({"assistant", a.result.text});
  }
  a.history_turns = history_.size();
  if (recorder_ != nullptr) {
    TurnRecord r;
    r.question = question;
    r.answer = a.result.text;
    r.metrics = a.result.metrics;
    r.cancelled = a.cancelled;
    r.documents = &docs_;
    for (const Document& d : docs_) r.document_tokens.push_back(document_tokens(d));
    try {
      recorder_->record_turn(r);
    } catch (const std::exception& e) {
      a.record_error = e.what();
    }
  }
  return a;
}

}  // namespace folio::chat
