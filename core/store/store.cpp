#include "core/store/store.h"

#include <QDir>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSqlError>
#include <QSqlQuery>
#include <QStandardPaths>
#include <QThread>
#include <QVariant>
#include <atomic>
#include <cmath>

#include "core/store/store_schema.h"

namespace folio::store {

namespace {

// SQLite primary result codes that deserve their own advice.
constexpr int kSqliteBusy = 5;
constexpr int kSqliteLocked = 6;
constexpr int kSqliteReadOnly = 8;
constexpr int kSqliteIoErr = 10;
constexpr int kSqliteCorrupt = 11;
constexpr int kSqliteFull = 13;
constexpr int kSqliteCantOpen = 14;
constexpr int kSqliteConstraint = 19;
constexpr int kSqliteNotADb = 26;

std::atomic<uint64_t> g_connection_serial{0};

int64_t now_ms() {
  return QDateTime::currentMSecsSinceEpoch();
}
QDateTime from_ms(int64_t ms) {
  return QDateTime::fromMSecsSinceEpoch(ms, Qt::UTC);
}
double finite_or_zero(double v) {
  return std::isfinite(v) ? v : 0.0;
}
QString one_line(QString s) {
  return s.replace('\n', ' ').trimmed();
}
// Qt binds a null QString as SQL NULL; text columns are NOT NULL, so "" it is.
QString text_value(const QString& s) {
  return s.isNull() ? QStringLiteral("") : s;
}

// The search text as an FTS5 query: its words as one phrase ("" quoted), the last word also as a
// prefix when the text ends in one (the user may still be typing it). FTS5 takes any quoted
// phrase, so no input is a syntax error.
QString fts_query(const QString& text) {
  QString t = text.trimmed();
  const bool prefix = !t.isEmpty() && t.back().isLetterOrNumber();
  t.replace('"', "\"\"");
  return "\"" + t + "\"" + (prefix ? " *" : "");
}

// A document's title as stored: the one given, else the file name of its path, else the path.
QString shown_title(const QString& title, const QString& path) {
  if (!title.isEmpty()) return title;
  const QString name = QFileInfo(path).fileName();
  return name.isEmpty() ? path : name;
}

// The store's name of a document kind (folio::chat::document_kind_name's).
QString kind_name(folio::docs::DocumentKind kind) {
  switch (kind) {
    case folio::docs::DocumentKind::Pdf:
      return QStringLiteral("pdf");
    case folio::docs::DocumentKind::SourceTree:
      return QStringLiteral("source-tree");
    case folio::docs::DocumentKind::Text:
      break;
  }
  return QStringLiteral("text");
}

StopReason parse_stop_reason(const QString& name) {
  for (StopReason r : {StopReason::None, StopReason::Eos, StopReason::StopString, StopReason::MaxTokens,
                       StopReason::ContextFull, StopReason::Cancelled}) {
    if (name == QLatin1String(stop_reason_name(r))) return r;
  }
  return StopReason::None;
}

Role parse_role(const QString& name) {
  if (name == QLatin1String("system")) return Role::System;
  if (name == QLatin1String("assistant")) return Role::Assistant;
  return Role::User;
}

Conversation conversation_from(const QSqlQuery& q) {
  Conversation c;
  c.id = q.value(0).toLongLong();
  c.title = q.value(1).toString();
  c.model = q.value(2).toString();
  c.created = from_ms(q.value(3).toLongLong());
  c.updated = from_ms(q.value(4).toLongLong());
  c.settings = q.value(5).toString();
  return c;
}

Message message_from(const QSqlQuery& q) {
  Message m;
  m.id = q.value(0).toLongLong();
  m.conversation_id = q.value(1).toLongLong();
  m.role = parse_role(q.value(2).toString());
  m.text = q.value(3).toString();
  m.created = from_ms(q.value(4).toLongLong());
  if (!q.value(10).isNull()) {
    MessageMetrics mm;
    mm.ttft_ms = q.value(5).toDouble();
    mm.prefill_tokens = q.value(6).toLongLong();
    mm.prefill_tok_s = q.value(7).toDouble();
    mm.decode_tokens = q.value(8).toLongLong();
    mm.decode_tok_s = q.value(9).toDouble();
    mm.stop = parse_stop_reason(q.value(10).toString());
    m.metrics = mm;
  }
  return m;
}

DocumentRecord document_from(const QSqlQuery& q) {
  DocumentRecord d;
  d.id = q.value(0).toLongLong();
  d.path = q.value(1).toString();
  d.title = q.value(2).toString();
  d.content_hash = q.value(3).toString();
  d.kind = q.value(4).toString();
  d.token_count = q.value(5).toLongLong();
  d.page_count = q.value(6).toLongLong();
  d.added = from_ms(q.value(7).toLongLong());
  return d;
}

RunRecord run_from(const QSqlQuery& q) {
  RunRecord r;
  r.id = q.value(0).toLongLong();
  r.model = q.value(1).toString();
  r.backend = q.value(2).toString();
  r.attention_mode = q.value(3).toString();
  r.density = q.value(4).toDouble();
  r.prompt_tokens = q.value(5).toLongLong();
  r.reused_tokens = q.value(6).toLongLong();
  r.ttft_ms = q.value(7).toDouble();
  r.prefill_tok_s = q.value(8).toDouble();
  r.decode_tok_s = q.value(9).toDouble();
  r.peak_memory_bytes = q.value(10).toLongLong();
  r.created = from_ms(q.value(11).toLongLong());
  return r;
}

}  // namespace

const char* role_name(Role role) {
  switch (role) {
    case Role::System:
      return "system";
    case Role::User:
      return "user";
    case Role::Assistant:
      return "assistant";
  }
  return "user";
}

MessageMetrics MessageMetrics::from(const Metrics& metrics) {
  MessageMetrics m;
  m.ttft_ms = finite_or_zero(metrics.ttft_ms);
  m.prefill_tokens = metrics.prefill_tokens;
  m.prefill_tok_s = finite_or_zero(metrics.prefill_tok_s);
  m.decode_tokens = metrics.decode_tokens;
  m.decode_tok_s = finite_or_zero(metrics.decode_tok_s);
  m.stop = metrics.stop;
  return m;
}

// ---------------------------------------------------------------------------------------------
// A write transaction: BEGIN IMMEDIATE now, COMMIT on commit(), ROLLBACK if left without one
// (an exception on the way).

class Database::Transaction {
 public:
  explicit Transaction(const Database& db) : db_(db) { db_.exec_plain(sql::kBeginImmediate, "starting a transaction"); }
  ~Transaction() {
    if (!done_) {
      QSqlQuery q(db_.db_);
      q.exec(QString::fromLatin1(sql::kRollback));  // fails harmlessly if SQLite already rolled back
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    db_.exec_plain(sql::kCommit, "committing");
    done_ = true;
  }

 private:
  const Database& db_;
  bool done_ = false;
};

// ---------------------------------------------------------------------------------------------
// Opening and migrations

Database::Database(const QString& path)
    : path_(path),
      connection_name_(QStringLiteral("folio.store.%1").arg(g_connection_serial.fetch_add(1))),
      owner_(QThread::currentThread()) {
  try {
    open();
  } catch (...) {
    close();
    throw;
  }
}

Database::~Database() {
  close();
}

QString Database::default_path() {
  const QString dir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
  if (dir.isEmpty()) {
    throw Error(ErrorCode::FileNotFound,
                "the system names no folder for application data (QStandardPaths::AppDataLocation): "
                "pass a database path explicitly");
  }
  return dir + QStringLiteral("/folio.sqlite");
}

int Database::schema_version() {
  return sql::kSchemaVersion;
}

void Database::open() {
  if (path_.trimmed().isEmpty()) {
    throw Error(ErrorCode::BadArgument, "no database path given: pass a file path such as Database::default_path()");
  }
  const QFileInfo info(path_);
  if (info.isDir()) {
    throw Error(ErrorCode::BadArgument,
                "database path " + path_.toStdString() + " is a folder: pass the path of a file (e.g. folio.sqlite)");
  }
  const QString folder = info.absolutePath();
  if (!QDir().mkpath(folder)) {
    throw Error(ErrorCode::FileUnreadable, "cannot create the folder " + folder.toStdString() +
                                               " for the database: check its permissions or choose another location");
  }
  if (!QSqlDatabase::isDriverAvailable(QStringLiteral("QSQLITE"))) {
    throw Error(
        ErrorCode::BackendUnavailable,
        "Qt's SQLite driver (QSQLITE) is not installed: install libqt6sql6-sqlite (Debian) or Qt's sqlite plugin");
  }
  db_ = QSqlDatabase::addDatabase(QStringLiteral("QSQLITE"), connection_name_);
  db_.setDatabaseName(path_);
  db_.setConnectOptions(QStringLiteral("QSQLITE_BUSY_TIMEOUT=5000"));
  if (!db_.open()) {
    const QSqlError e = db_.lastError();
    const QString text = e.databaseText().isEmpty() ? e.driverText() : e.databaseText();
    fail(ErrorCode::FileUnreadable, "opening", one_line(text) + " (SQLite error " + e.nativeErrorCode() + ")",
         "check that the file and its folder exist and are readable and writable");
  }

  // Look before touching: switching to WAL writes the file header, and a newer schema must stay
  // exactly as it is.
  const int version = scalar(sql::kGetUserVersion, "reading the schema version").toInt();
  if (version > sql::kSchemaVersion) {
    throw Error(ErrorCode::FileUnreadable,
                "database " + path_.toStdString() + " has schema version " + std::to_string(version) +
                    ", newer than this Folio knows (" + std::to_string(sql::kSchemaVersion) +
                    "): it was left untouched; use a newer Folio, or move the file away to start afresh");
  }
  if (version == 0 && scalar(sql::kCountTables, "reading the tables").toLongLong() > 0) {
    throw Error(ErrorCode::FileUnreadable, "file " + path_.toStdString() +
                                               " is a SQLite database but not Folio's (it has tables and no schema "
                                               "version): it was left untouched; choose another file");
  }

  const QString mode = scalar(sql::kPragmaWal, "switching to WAL journaling").toString().toLower();
  if (mode != QLatin1String("wal")) {
    fail(ErrorCode::FileUnreadable, "switching to WAL journaling", "SQLite kept journal mode '" + mode + "'",
         "keep the database on a local disk (WAL needs shared memory beside the file)");
  }
  exec_plain(sql::kPragmaSynchronous, "setting synchronous=NORMAL");
  exec_plain(sql::kPragmaForeignKeys, "enabling foreign keys");
  if (version < sql::kSchemaVersion) migrate(version);
}

void Database::migrate(int from_version) {
  for (int to = from_version + 1; to <= sql::kSchemaVersion; ++to) {
    const std::span<const char* const> steps = sql::migration_to(to);
    if (steps.empty()) {
      throw Error(ErrorCode::Internal, "no migration to schema version " + std::to_string(to) + " in this build");
    }
    Transaction tx(*this);
    // Another connection may have upgraded the file since we looked.
    const int now = scalar(sql::kGetUserVersion, "reading the schema version").toInt();
    if (now >= to) continue;
    for (const char* statement : steps) {
      QSqlQuery q(db_);
      if (!q.exec(QString::fromLatin1(statement))) {
        const QSqlError e = q.lastError();
        fail(ErrorCode::FileUnreadable,
             QStringLiteral("upgrading the schema from version %1 to %2").arg(to - 1).arg(to),
             one_line(e.databaseText()) + " (SQLite error " + e.nativeErrorCode() + ")",
             QStringLiteral("the change was rolled back and the file is still at version %1; "
                            "move the file away to start afresh")
                 .arg(to - 1));
      }
    }
    tx.commit();
  }
}

void Database::close() noexcept {
  if (db_.isValid()) {
    db_.close();
    db_ = QSqlDatabase();
    QSqlDatabase::removeDatabase(connection_name_);
  }
}

// ---------------------------------------------------------------------------------------------
// Statement helpers

void Database::check_thread() const {
  if (QThread::currentThread() != owner_) {
    throw Error(ErrorCode::Internal, "database " + path_.toStdString() +
                                         " was used from a thread other than the one that opened it: "
                                         "open one Database per thread");
  }
}

void Database::fail(ErrorCode code, const QString& what, const QString& detail, const QString& advice) const {
  throw Error(code, ("database " + path_ + ": " + what + " failed: " + detail + "; " + advice).toStdString());
}

namespace {

// What to do about a failed statement, from SQLite's result code.
std::pair<ErrorCode, QString> advice_for(const QSqlError& e) {
  bool ok = false;
  const int code = e.nativeErrorCode().toInt(&ok) & 0xff;
  if (!ok) return {ErrorCode::Internal, "check that the disk has space and the file is writable"};
  switch (code) {
    case kSqliteBusy:
    case kSqliteLocked:
      return {ErrorCode::Internal, "another program is writing the database; try again"};
    case kSqliteReadOnly:
      return {ErrorCode::FileUnreadable, "the file is read-only; make it and its folder writable"};
    case kSqliteFull:
      return {ErrorCode::Internal, "the disk is full; free some space and try again"};
    case kSqliteIoErr:
      return {ErrorCode::FileUnreadable, "the disk reported an error; check it and try again"};
    case kSqliteCorrupt:
      return {ErrorCode::FileUnreadable, "the file is damaged; restore a backup or move it away to start afresh"};
    case kSqliteNotADb:
      return {ErrorCode::FileUnreadable, "it is not a SQLite database; move it away or choose another file"};
    case kSqliteCantOpen:
      return {ErrorCode::FileUnreadable, "check that the file and its folder exist and are readable and writable"};
    case kSqliteConstraint:
      return {ErrorCode::BadArgument, "the data breaks a rule of the schema"};
    default:
      return {ErrorCode::Internal, "check that the disk has space and the file is writable"};
  }
}

}  // namespace

QSqlQuery Database::prepare(const char* sql) const {
  QSqlQuery q(db_);
  if (!q.prepare(QString::fromLatin1(sql))) {
    const QSqlError e = q.lastError();
    const auto [code, advice] = advice_for(e);
    fail(code, "preparing a statement", one_line(e.databaseText() + " " + e.driverText()), advice);
  }
  return q;
}

void Database::exec(QSqlQuery& query, const char* what) const {
  if (!query.exec()) {
    const QSqlError e = query.lastError();
    const auto [code, advice] = advice_for(e);
    fail(code, QString::fromLatin1(what), one_line(e.databaseText()) + " (SQLite error " + e.nativeErrorCode() + ")",
         advice);
  }
}

void Database::exec_plain(const char* sql, const char* what) const {
  QSqlQuery q = prepare(sql);
  exec(q, what);
}

QVariant Database::scalar(const char* sql, const char* what) const {
  QSqlQuery q = prepare(sql);
  exec(q, what);
  return q.next() ? q.value(0) : QVariant();
}

void Database::require_conversation(int64_t id) const {
  QSqlQuery q = prepare(sql::kSelectConversation);
  q.addBindValue(qint64(id));
  exec(q, "reading a conversation");
  if (!q.next()) {
    throw Error(ErrorCode::BadArgument,
                "no conversation with id " + std::to_string(id) + ": it may have been deleted; reload the list");
  }
}

void Database::require_document(int64_t id) const {
  QSqlQuery q = prepare(sql::kSelectDocument);
  q.addBindValue(qint64(id));
  exec(q, "reading a document");
  if (!q.next()) {
    throw Error(ErrorCode::BadArgument,
                "no document with id " + std::to_string(id) + ": it may have been deleted; add the file again");
  }
}

// ---------------------------------------------------------------------------------------------
// Diagnostics

ConnectionSettings Database::settings() const {
  check_thread();
  ConnectionSettings s;
  s.journal_mode = scalar(sql::kGetJournalMode, "reading the journal mode").toString().toLower();
  s.synchronous = scalar(sql::kGetSynchronous, "reading synchronous").toInt();
  s.foreign_keys = scalar(sql::kGetForeignKeys, "reading foreign_keys").toInt() != 0;
  s.user_version = scalar(sql::kGetUserVersion, "reading the schema version").toInt();
  return s;
}

QString Database::integrity_check() const {
  check_thread();
  QSqlQuery q = prepare(sql::kIntegrityCheck);
  exec(q, "checking integrity");
  QStringList lines;
  while (q.next()) lines << q.value(0).toString();
  return lines.join(QStringLiteral("; "));
}

// ---------------------------------------------------------------------------------------------
// Conversations

Conversation Database::create_conversation(const QString& title, const QString& model) {
  check_thread();
  if (title.trimmed().isEmpty()) throw Error(ErrorCode::BadArgument, "a conversation needs a title: give it one");
  const int64_t now = now_ms();
  Transaction tx(*this);
  QSqlQuery q = prepare(sql::kInsertConversation);
  q.addBindValue(text_value(title));
  q.addBindValue(text_value(model));
  q.addBindValue(qint64(now));
  q.addBindValue(qint64(now));
  exec(q, "creating a conversation");
  Conversation c;
  c.id = q.lastInsertId().toLongLong();
  c.title = title;
  c.model = text_value(model);
  c.created = c.updated = from_ms(now);
  tx.commit();
  return c;
}

std::optional<Conversation> Database::conversation(int64_t id) const {
  check_thread();
  QSqlQuery q = prepare(sql::kSelectConversation);
  q.addBindValue(qint64(id));
  exec(q, "reading a conversation");
  if (!q.next()) return std::nullopt;
  return conversation_from(q);
}

std::vector<Conversation> Database::list_conversations() const {
  check_thread();
  QSqlQuery q = prepare(sql::kSelectConversations);
  exec(q, "listing conversations");
  std::vector<Conversation> out;
  while (q.next()) out.push_back(conversation_from(q));
  return out;
}

std::vector<Conversation> Database::search_conversations(const QString& text) const {
  if (text.trimmed().isEmpty()) return list_conversations();
  check_thread();
  QString escaped = text.trimmed();
  escaped.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_");
  const QString pattern = "%" + escaped + "%";
  QSqlQuery q = prepare(sql::kSearchConversations);
  q.addBindValue(pattern);
  q.addBindValue(pattern);
  q.addBindValue(fts_query(text));
  exec(q, "searching conversations");
  std::vector<Conversation> out;
  while (q.next()) out.push_back(conversation_from(q));
  return out;
}

void Database::set_conversation_settings(int64_t id, const QString& settings) {
  check_thread();
  Transaction tx(*this);
  require_conversation(id);
  QSqlQuery q = prepare(sql::kSetConversationSettings);
  q.addBindValue(settings);
  q.addBindValue(qint64(id));
  exec(q, "saving the conversation's settings");
  tx.commit();
}

void Database::rename_conversation(int64_t id, const QString& title) {
  check_thread();
  if (title.trimmed().isEmpty()) throw Error(ErrorCode::BadArgument, "a conversation needs a title: give it one");
  Transaction tx(*this);
  QSqlQuery q = prepare(sql::kRenameConversation);
  q.addBindValue(text_value(title));
  q.addBindValue(qint64(now_ms()));
  q.addBindValue(qint64(id));
  exec(q, "renaming a conversation");
  if (q.numRowsAffected() == 0) {
    throw Error(ErrorCode::BadArgument,
                "no conversation with id " + std::to_string(id) + ": it may have been deleted; reload the list");
  }
  tx.commit();
}

bool Database::delete_conversation(int64_t id) {
  check_thread();
  Transaction tx(*this);
  QSqlQuery q = prepare(sql::kDeleteConversation);
  q.addBindValue(qint64(id));
  exec(q, "deleting a conversation");
  const bool removed = q.numRowsAffected() > 0;
  tx.commit();
  return removed;
}

// ---------------------------------------------------------------------------------------------
// Messages

Message Database::append_message(int64_t conversation_id, Role role, const QString& text,
                                 const std::optional<Metrics>& metrics) {
  check_thread();
  const int64_t now = now_ms();
  Message m;
  m.conversation_id = conversation_id;
  m.role = role;
  m.text = text_value(text);
  m.created = from_ms(now);
  if (metrics) m.metrics = MessageMetrics::from(*metrics);

  Transaction tx(*this);
  {
    QSqlQuery touch = prepare(sql::kTouchConversation);
    touch.addBindValue(qint64(now));
    touch.addBindValue(qint64(conversation_id));
    exec(touch, "updating a conversation");
    if (touch.numRowsAffected() == 0) {
      throw Error(ErrorCode::BadArgument, "no conversation with id " + std::to_string(conversation_id) +
                                              ": it may have been deleted; reload the list");
    }
  }
  QSqlQuery q = prepare(sql::kInsertMessage);
  q.addBindValue(qint64(conversation_id));
  q.addBindValue(QString::fromLatin1(role_name(role)));
  q.addBindValue(text_value(text));
  q.addBindValue(qint64(now));
  if (m.metrics) {
    q.addBindValue(m.metrics->ttft_ms);
    q.addBindValue(qint64(m.metrics->prefill_tokens));
    q.addBindValue(m.metrics->prefill_tok_s);
    q.addBindValue(qint64(m.metrics->decode_tokens));
    q.addBindValue(m.metrics->decode_tok_s);
    q.addBindValue(QString::fromLatin1(stop_reason_name(m.metrics->stop)));
  } else {
    for (int i = 0; i < 6; ++i) q.addBindValue(QVariant());
  }
  exec(q, "appending a message");
  m.id = q.lastInsertId().toLongLong();
  tx.commit();
  return m;
}

std::vector<Message> Database::list_messages(int64_t conversation_id) const {
  check_thread();
  QSqlQuery q = prepare(sql::kSelectMessages);
  q.addBindValue(qint64(conversation_id));
  exec(q, "listing messages");
  std::vector<Message> out;
  while (q.next()) out.push_back(message_from(q));
  return out;
}

int64_t Database::count_messages(int64_t conversation_id) const {
  check_thread();
  QSqlQuery q = prepare(sql::kCountMessages);
  q.addBindValue(qint64(conversation_id));
  exec(q, "counting messages");
  return q.next() ? q.value(0).toLongLong() : 0;
}

// ---------------------------------------------------------------------------------------------
// Documents

DocumentRecord Database::upsert_document(const DocumentInfo& info) {
  check_thread();
  if (info.content_hash.trimmed().isEmpty()) {
    throw Error(ErrorCode::BadArgument, "a document needs its content hash: ingest the file first (core/docs)");
  }
  if (info.path.trimmed().isEmpty()) throw Error(ErrorCode::BadArgument, "a document needs its path");
  const QString title = shown_title(info.title, info.path);

  Transaction tx(*this);
  int64_t id = 0;
  {
    QSqlQuery q = prepare(sql::kUpsertDocument);
    q.addBindValue(text_value(info.path));
    q.addBindValue(text_value(title));
    q.addBindValue(text_value(info.content_hash));
    q.addBindValue(text_value(info.kind));
    q.addBindValue(qint64(info.token_count));
    q.addBindValue(qint64(info.page_count));
    q.addBindValue(qint64(now_ms()));
    exec(q, "storing a document");
    if (!q.next()) {
      fail(ErrorCode::Internal, "storing a document", "the upsert returned no row", "report this as a bug");
    }
    id = q.value(0).toLongLong();
    q.finish();  // a RETURNING statement stays active until finished; COMMIT needs it done
  }
  QSqlQuery read = prepare(sql::kSelectDocument);
  read.addBindValue(qint64(id));
  exec(read, "reading a document");
  if (!read.next()) fail(ErrorCode::Internal, "storing a document", "the row vanished", "report this as a bug");
  DocumentRecord d = document_from(read);
  read.finish();
  tx.commit();
  return d;
}

std::optional<DocumentRecord> Database::document(int64_t id) const {
  check_thread();
  QSqlQuery q = prepare(sql::kSelectDocument);
  q.addBindValue(qint64(id));
  exec(q, "reading a document");
  if (!q.next()) return std::nullopt;
  return document_from(q);
}

std::optional<DocumentRecord> Database::document_by_hash(const QString& content_hash) const {
  check_thread();
  QSqlQuery q = prepare(sql::kSelectDocumentByHash);
  q.addBindValue(text_value(content_hash));
  exec(q, "reading a document");
  if (!q.next()) return std::nullopt;
  return document_from(q);
}

std::vector<DocumentRecord> Database::list_documents() const {
  check_thread();
  QSqlQuery q = prepare(sql::kSelectDocuments);
  exec(q, "listing documents");
  std::vector<DocumentRecord> out;
  while (q.next()) out.push_back(document_from(q));
  return out;
}

bool Database::delete_document(int64_t id) {
  check_thread();
  Transaction tx(*this);
  QSqlQuery q = prepare(sql::kDeleteDocument);
  q.addBindValue(qint64(id));
  exec(q, "deleting a document");
  const bool removed = q.numRowsAffected() > 0;
  tx.commit();
  return removed;
}

void Database::attach_document(int64_t conversation_id, int64_t document_id) {
  check_thread();
  Transaction tx(*this);
  require_conversation(conversation_id);
  require_document(document_id);
  QSqlQuery q = prepare(sql::kAttachDocument);
  q.addBindValue(qint64(conversation_id));
  q.addBindValue(qint64(document_id));
  q.addBindValue(qint64(now_ms()));
  exec(q, "attaching a document");
  tx.commit();
}

bool Database::detach_document(int64_t conversation_id, int64_t document_id) {
  check_thread();
  Transaction tx(*this);
  QSqlQuery q = prepare(sql::kDetachDocument);
  q.addBindValue(qint64(conversation_id));
  q.addBindValue(qint64(document_id));
  exec(q, "detaching a document");
  const bool removed = q.numRowsAffected() > 0;
  tx.commit();
  return removed;
}

std::vector<DocumentRecord> Database::conversation_documents(int64_t conversation_id) const {
  check_thread();
  QSqlQuery q = prepare(sql::kSelectConversationDocuments);
  q.addBindValue(qint64(conversation_id));
  exec(q, "listing a conversation's documents");
  std::vector<DocumentRecord> out;
  while (q.next()) out.push_back(document_from(q));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Runs

RunRecord Database::record_run(const Metrics& metrics, const QString& model, const QString& attention_mode,
                               double density) {
  check_thread();
  if (model.trimmed().isEmpty()) throw Error(ErrorCode::BadArgument, "a run needs the model's name");
  if (attention_mode.trimmed().isEmpty()) {
    throw Error(ErrorCode::BadArgument, "a run needs its attention mode (\"dense\" or the sparse pattern)");
  }
  if (!(density > 0.0 && density <= 1.0)) {
    throw Error(ErrorCode::BadArgument,
                "a run's attention density is the fraction of causal tiles computed: give a value in (0, 1]");
  }
  RunRecord r;
  r.model = model;
  r.backend = QString::fromStdString(metrics.backend);
  r.attention_mode = attention_mode;
  r.density = density;
  r.prompt_tokens = metrics.prompt_tokens;
  r.reused_tokens = metrics.reused_tokens;
  r.ttft_ms = finite_or_zero(metrics.ttft_ms);
  r.prefill_tok_s = finite_or_zero(metrics.prefill_tok_s);
  r.decode_tok_s = finite_or_zero(metrics.decode_tok_s);
  for (const DeviceMemory& m : metrics.memory) {
    r.peak_memory_bytes += static_cast<int64_t>(m.weights_bytes + m.kv_bytes + m.scratch_bytes);
  }
  const int64_t now = now_ms();
  r.created = from_ms(now);

  Transaction tx(*this);
  QSqlQuery q = prepare(sql::kInsertRun);
  q.addBindValue(text_value(r.model));
  q.addBindValue(text_value(r.backend));
  q.addBindValue(text_value(r.attention_mode));
  q.addBindValue(r.density);
  q.addBindValue(qint64(r.prompt_tokens));
  q.addBindValue(qint64(r.reused_tokens));
  q.addBindValue(r.ttft_ms);
  q.addBindValue(r.prefill_tok_s);
  q.addBindValue(r.decode_tok_s);
  q.addBindValue(qint64(r.peak_memory_bytes));
  q.addBindValue(qint64(now));
  exec(q, "recording a run");
  r.id = q.lastInsertId().toLongLong();
  tx.commit();
  return r;
}

int64_t Database::token_count(const std::string& key) const {
  check_thread();
  QSqlQuery q = prepare(sql::kSelectTokenCount);
  q.addBindValue(QString::fromStdString(key));
  exec(q, "reading a token count");
  return q.next() ? q.value(0).toLongLong() : -1;
}

void Database::save_token_counts(const std::vector<std::pair<std::string, int64_t>>& counts, int64_t max_rows) {
  check_thread();
  if (counts.empty()) return;
  const int64_t now = now_ms();
  Transaction tx(*this);
  QSqlQuery q = prepare(sql::kUpsertTokenCount);
  for (const auto& [key, tokens] : counts) {
    q.addBindValue(QString::fromStdString(key));
    q.addBindValue(qint64(tokens));
    q.addBindValue(qint64(now));
    exec(q, "saving token counts");
  }
  QSqlQuery prune = prepare(sql::kPruneTokenCounts);
  prune.addBindValue(qint64(std::max<int64_t>(0, max_rows)));
  exec(prune, "pruning token counts");
  tx.commit();
}

// ---------------------------------------------------------------------------------------------
// Documents' text

bool Database::save_document_text(const folio::docs::Document& doc, int read_version, int64_t max_text_bytes) {
  check_thread();
  if (doc.content_hash.trimmed().isEmpty())
    throw Error(ErrorCode::BadArgument, "a document needs its content hash: ingest the file first (core/docs)");
  if (doc.path.trimmed().isEmpty()) throw Error(ErrorCode::BadArgument, "a document needs its path");
  int64_t text_bytes = 0;
  for (const folio::docs::Section& sec : doc.sections) text_bytes += sec.text.toUtf8().size();
  if (text_bytes > max_text_bytes) return false;
  const QString title = shown_title(doc.title, doc.path);
  QJsonObject detail;
  detail["notices"] = QJsonArray::fromStringList(doc.notices);
  detail["page_labels"] = QJsonArray::fromStringList(doc.page_labels);
  detail["cite_by_page_number"] = doc.cite_by_page_number;
  const int64_t now = now_ms();

  Transaction tx(*this);
  int64_t id = 0;
  {
    QSqlQuery q = prepare(sql::kUpsertReadDocument);
    q.addBindValue(text_value(doc.path));
    q.addBindValue(text_value(title));
    q.addBindValue(text_value(doc.content_hash));
    q.addBindValue(kind_name(doc.kind));
    q.addBindValue(qint64(doc.page_count));
    q.addBindValue(qint64(now));
    exec(q, "storing a document");
    if (!q.next()) fail(ErrorCode::Internal, "storing a document", "the upsert returned no row", "report this as a bug");
    id = q.value(0).toLongLong();
    q.finish();
  }
  QSqlQuery del = prepare(sql::kDeleteDocumentIndex);
  del.addBindValue(qint64(id));
  exec(del, "replacing a document's text");
  QSqlQuery index = prepare(sql::kInsertDocumentIndex);
  index.addBindValue(qint64(id));
  index.addBindValue(read_version);
  index.addBindValue(QString::fromUtf8(QJsonDocument(detail).toJson(QJsonDocument::Compact)));
  index.addBindValue(qint64(text_bytes));
  index.addBindValue(qint64(now));
  index.addBindValue(qint64(now));
  exec(index, "storing a document's text");
  QSqlQuery sec = prepare(sql::kInsertDocumentSection);
  for (qsizetype i = 0; i < doc.sections.size(); ++i) {
    const folio::docs::Section& x = doc.sections[i];
    sec.addBindValue(qint64(id));
    sec.addBindValue(qint64(i));
    sec.addBindValue(x.page_index);
    sec.addBindValue(text_value(x.page_label));
    sec.addBindValue(text_value(x.file));
    sec.addBindValue(x.first_line);
    sec.addBindValue(x.last_line);
    sec.addBindValue(text_value(x.text));
    exec(sec, "storing a document's text");
  }
  // The least recently used texts go until the rest fits (the one just saved comes last: it fits).
  int64_t total = scalar(sql::kSumDocumentText, "measuring the documents' text").toLongLong();
  if (total > max_text_bytes) {
    QSqlQuery old = prepare(sql::kSelectDocumentIndexByUse);
    old.addBindValue(qint64(id));
    exec(old, "listing the documents' text");
    std::vector<std::pair<int64_t, int64_t>> victims;
    while (total > max_text_bytes && old.next()) {
      victims.emplace_back(old.value(0).toLongLong(), old.value(1).toLongLong());
      total -= victims.back().second;
    }
    old.finish();
    QSqlQuery drop = prepare(sql::kDeleteDocumentIndex);
    for (const auto& v : victims) {
      drop.addBindValue(qint64(v.first));
      exec(drop, "deleting a document's text");
    }
  }
  tx.commit();
  return true;
}

std::optional<folio::docs::Document> Database::document_text(const QString& content_hash, int read_version) {
  check_thread();
  QSqlQuery q = prepare(sql::kSelectDocumentIndex);
  q.addBindValue(text_value(content_hash));
  q.addBindValue(read_version);
  exec(q, "reading a document's text");
  if (!q.next()) return std::nullopt;
  const int64_t id = q.value(0).toLongLong();
  folio::docs::Document doc;
  const QString kind = q.value(1).toString();
  doc.kind = kind == "pdf" ? folio::docs::DocumentKind::Pdf
             : kind == "source-tree" ? folio::docs::DocumentKind::SourceTree
                                     : folio::docs::DocumentKind::Text;
  doc.page_count = q.value(2).toInt();
  const QJsonObject detail = QJsonDocument::fromJson(q.value(3).toString().toUtf8()).object();
  q.finish();
  for (const auto& v : detail["notices"].toArray()) doc.notices << v.toString();
  for (const auto& v : detail["page_labels"].toArray()) doc.page_labels << v.toString();
  doc.cite_by_page_number = detail["cite_by_page_number"].toBool();
  const std::optional<DocumentRecord> record = document(id);
  if (!record) return std::nullopt;
  doc.path = record->path;
  doc.title = record->title;
  doc.content_hash = record->content_hash;
  QSqlQuery s = prepare(sql::kSelectDocumentSections);
  s.addBindValue(qint64(id));
  exec(s, "reading a document's text");
  while (s.next()) {
    folio::docs::Section x;
    x.page_index = s.value(0).toInt();
    x.page_label = s.value(1).toString();
    x.file = s.value(2).toString();
    x.first_line = s.value(3).toInt();
    x.last_line = s.value(4).toInt();
    x.text = s.value(5).toString();
    doc.sections.push_back(std::move(x));
  }
  s.finish();
  QSqlQuery touch = prepare(sql::kTouchDocumentIndex);
  touch.addBindValue(qint64(now_ms()));
  touch.addBindValue(qint64(id));
  exec(touch, "marking a document's text used");
  return doc;
}

int64_t Database::document_text_bytes() const {
  check_thread();
  return scalar(sql::kSumDocumentText, "measuring the documents' text").toLongLong();
}

int64_t Database::document_text_count() const {
  check_thread();
  return scalar(sql::kCountDocumentIndex, "counting the documents' text").toLongLong();
}

int64_t Database::count_text_matches(const QString& text) const {
  check_thread();
  QSqlQuery q = prepare(sql::kCountSectionMatches);
  q.addBindValue(fts_query(text));
  exec(q, "searching the documents' text");
  return q.next() ? q.value(0).toLongLong() : 0;
}

int64_t Database::token_count_rows() const {
  check_thread();
  return scalar(sql::kCountTokenCounts, "counting token counts").toLongLong();
}

std::vector<RunRecord> Database::list_runs(const QString& model) const {
  check_thread();
  QSqlQuery q = prepare(model.isEmpty() ? sql::kSelectRuns : sql::kSelectRunsOfModel);
  if (!model.isEmpty()) q.addBindValue(model);
  exec(q, "listing runs");
  std::vector<RunRecord> out;
  while (q.next()) out.push_back(run_from(q));
  return out;
}

std::vector<TtftSeries> Database::ttft_series(const QString& model) const {
  check_thread();
  QSqlQuery q = prepare(model.isEmpty() ? sql::kSelectTtftSeries : sql::kSelectTtftSeriesOfModel);
  if (!model.isEmpty()) q.addBindValue(model);
  exec(q, "reading the TTFT series");
  std::vector<TtftSeries> out;
  while (q.next()) {
    const QString row_model = q.value(0).toString();
    const QString mode = q.value(1).toString();
    const bool reused = q.value(4).toBool();
    if (out.empty() || out.back().model != row_model || out.back().attention_mode != mode ||
        out.back().reused != reused) {
      out.push_back(TtftSeries{row_model, mode, {}, reused});
    }
    out.back().points.push_back(TtftPoint{q.value(2).toLongLong(), q.value(3).toDouble()});
  }
  return out;
}

}  // namespace folio::store
