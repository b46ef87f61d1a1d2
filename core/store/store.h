// Folio's persistence: one SQLite database file (through Qt Sql) with the conversations, their
// messages (and the metrics of the run that produced each answer), the documents attached to
// them, and the measured runs that feed the performance charts.
//
// A Database owns its own named connection and is used from the thread that opened it (open one
// per thread; several on the same file work, in this process or another). Every write is one
// transaction; failures throw folio::Error with a one-line message that carries SQLite's text.
#pragma once

#include <QDateTime>
#include <QSqlDatabase>
#include <QString>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/common/error.h"
#include "core/docs/document.h"
#include "core/engine/engine.h"

class QSqlQuery;
class QThread;

namespace folio::store {

struct Conversation {
  int64_t id = 0;
  QString title;
  QString model;  // the model the conversation was held with ("" = not chosen)
  QDateTime created;
  QDateTime updated;  // creation, rename, or the last message
  QString settings;   // the settings it was held with, as the app wrote them ("" = unknown)
};

enum class Role { System, User, Assistant };
const char* role_name(Role role);  // "system", "user", "assistant"

// What the run that produced an assistant message measured (a subset of folio::Metrics).
struct MessageMetrics {
  double ttft_ms = 0.0;
  int64_t prefill_tokens = 0;
  double prefill_tok_s = 0.0;
  int64_t decode_tokens = 0;
  double decode_tok_s = 0.0;
  StopReason stop = StopReason::None;

  static MessageMetrics from(const Metrics& metrics);
};

struct Message {
  int64_t id = 0;
  int64_t conversation_id = 0;
  Role role = Role::User;
  QString text;
  QDateTime created;
  std::optional<MessageMetrics> metrics;  // set for messages appended with metrics
};

// What the document panel knows of a document after ingestion (core/docs); kind is its name
// there ("pdf", "text", "source-tree").
struct DocumentInfo {
  QString path;
  QString title;         // "" = the file name of path
  QString content_hash;  // identifies the document: SHA-256 of the source bytes (hex)
  QString kind;
  int64_t token_count = 0;
  int64_t page_count = 0;  // PDF pages, or files of a tree
};

struct DocumentRecord {
  int64_t id = 0;
  QString path;
  QString title;
  QString content_hash;
  QString kind;
  int64_t token_count = 0;
  int64_t page_count = 0;
  QDateTime added;  // when the hash was first seen
};

// One measured request.
struct RunRecord {
  int64_t id = 0;
  QString model;
  QString backend;
  QString attention_mode;     // "dense", or the sparse prefill's pattern ("triangular", ...)
  double density = 1.0;       // fraction of causal attention tiles computed in prefill
  int64_t prompt_tokens = 0;  // context length of the request
  int64_t reused_tokens = 0;  // of those, taken from the KV cache
  double ttft_ms = 0.0;
  double prefill_tok_s = 0.0;
  double decode_tok_s = 0.0;
  int64_t peak_memory_bytes = 0;  // weights + KV + scratch over all devices at the request's end
  QDateTime created;
};

struct TtftPoint {
  int64_t context_tokens = 0;
  double ttft_ms = 0.0;
};

// One line of the TTFT chart: a model with one attention mode, full prefills or runs that reused
// a cached prefix (their TTFT is that of the new tokens only), points sorted by length.
struct TtftSeries {
  QString model;
  QString attention_mode;
  std::vector<TtftPoint> points;
  bool reused = false;
};

// What the connection runs with (for diagnostics and tests).
struct ConnectionSettings {
  QString journal_mode;  // "wal"
  int synchronous = -1;  // 1 = NORMAL
  bool foreign_keys = false;
  int user_version = 0;
};

class Database {
 public:
  // Opens (creating if needed, with its folder) the database at path and brings its schema to
  // kSchemaVersion. Throws Error: unreadable or not a database, a schema newer than this build
  // (the file is left untouched), or a failed migration (rolled back; the file keeps its version).
  explicit Database(const QString& path);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // <AppDataLocation>/folio.sqlite (set the application name first). Throws Error if the
  // system has no writable data folder.
  static QString default_path();
  static int schema_version();  // the version this build writes

  const QString& path() const { return path_; }
  const QString& connection_name() const { return connection_name_; }
  ConnectionSettings settings() const;
  // PRAGMA integrity_check's answer: "ok" for a sound file.
  QString integrity_check() const;

  // Conversations. Titles must not be blank.
  Conversation create_conversation(const QString& title, const QString& model = {});
  std::optional<Conversation> conversation(int64_t id) const;
  std::vector<Conversation> list_conversations() const;        // most recently updated first
  // Those whose title or messages contain text (case-insensitive for ASCII), or one of whose
  // documents' kept text holds its words (as a phrase, the last word also as a prefix), most recent first.
  std::vector<Conversation> search_conversations(const QString& text) const;
  void rename_conversation(int64_t id, const QString& title);  // throws BadArgument if absent
  void set_conversation_settings(int64_t id, const QString& settings);  // throws BadArgument if absent
  // Deletes the conversation with its messages and document attachments; false if it was absent.
  bool delete_conversation(int64_t id);

  // Messages, in the order appended. Appending updates the conversation's updated time.
  Message append_message(int64_t conversation_id, Role role, const QString& text,
                         const std::optional<Metrics>& metrics = std::nullopt);
  std::vector<Message> list_messages(int64_t conversation_id) const;
  int64_t count_messages(int64_t conversation_id) const;

  // Documents: one row per content hash; attaching twice is a no-op.
  DocumentRecord upsert_document(const DocumentInfo& info);
  std::optional<DocumentRecord> document(int64_t id) const;
  std::optional<DocumentRecord> document_by_hash(const QString& content_hash) const;
  std::vector<DocumentRecord> list_documents() const;
  bool delete_document(int64_t id);  // detaches it everywhere; false if it was absent
  void attach_document(int64_t conversation_id, int64_t document_id);
  bool detach_document(int64_t conversation_id, int64_t document_id);                 // false if not attached
  std::vector<DocumentRecord> conversation_documents(int64_t conversation_id) const;  // in attach order

  // Measured runs: from the engine's metrics of one request, the model's name, and the prefill
  // attention it ran with (density in (0, 1]).
  RunRecord record_run(const Metrics& metrics, const QString& model, const QString& attention_mode = "dense",
                       double density = 1.0);
  // Token counts of texts (folio::chat::TokenCountCache keys): -1 when unknown. Saving keeps the
  // newest max_rows rows (a row is about 60 bytes; the R manual's pages are 2,415 rows).
  int64_t token_count(const std::string& key) const;
  void save_token_counts(const std::vector<std::pair<std::string, int64_t>>& counts, int64_t max_rows = 2000000);
  int64_t token_count_rows() const;

  // Documents' text as read (schema version 5): kept so that a PDF opened again is not parsed
  // again (StoredDocuments serves it to core/docs), and searched by search_conversations (FTS5).
  // Saving stores the document's row when new (no counts) and replaces the text kept for its content
  // hash, then deletes the least recently used texts beyond max_text_bytes in all (never the one
  // just saved); a text larger than the limit alone is not kept. Returns whether it was kept.
  bool save_document_text(const folio::docs::Document& doc, int read_version, int64_t max_text_bytes);
  // The document with this content hash as read_version's loader read it (its path and title as last
  // kept); nullopt when none is kept. Marks it used.
  std::optional<folio::docs::Document> document_text(const QString& content_hash, int read_version);
  int64_t document_text_bytes() const;  // UTF-8 bytes of every kept text
  int64_t document_text_count() const;  // documents whose text is kept
  // Sections of kept texts that the search text matches (as search_conversations matches them).
  int64_t count_text_matches(const QString& text) const;

  std::vector<RunRecord> list_runs(const QString& model = {}) const;  // oldest first; "" = all models
  // (context length, TTFT) per model, attention mode and reuse (full prefills first), each sorted
  // by length; "" = all models. Runs that produced no token are left out.
  std::vector<TtftSeries> ttft_series(const QString& model = {}) const;

 private:
  class Transaction;
  void open();
  void migrate(int from_version);
  void close() noexcept;
  void check_thread() const;
  QSqlQuery prepare(const char* sql) const;
  void exec(QSqlQuery& query, const char* what) const;
  void exec_plain(const char* sql, const char* what) const;
  QVariant scalar(const char* sql, const char* what) const;
  void require_conversation(int64_t id) const;
  void require_document(int64_t id) const;
  [[noreturn]] void fail(ErrorCode code, const QString& what, const QString& detail, const QString& advice) const;

  QString path_;
  QString connection_name_;
  QSqlDatabase db_;
  QThread* owner_ = nullptr;
};

}  // namespace folio::store
