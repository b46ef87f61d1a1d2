// Persistence (core/store): schema creation and migrations, refusing files it must not touch,
// round trips of conversations, messages with metrics, documents and runs, the TTFT chart's
// series, WAL and two connections on one file, and no committed message lost when the writer
// is killed mid-write (this binary re-runs itself as `tst_store --writer DB`); and what the
// Conversation service records through ChatRecorder is what the app reads back.
#include <QCryptographicHash>
#include <QDeadlineTimer>
#include <QFile>
#include <QProcess>
#include <QSqlDatabase>
#include <QSqlError>
#include <QSqlQuery>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>
#include <cmath>
#include <cstdio>
#include <thread>

#include "core/chat/conversation.h"
#include "core/store/chat_recorder.h"
#include "core/store/store.h"
#include "core/docs/ingest.h"
#include "core/store/store_schema.h"
#include "core/store/stored_documents.h"
#include "core/store/token_counts.h"
#include "tests/test_support.h"

using folio::store::Database;
using folio::store::DocumentInfo;
using folio::store::Role;

namespace {

// A plain connection, to forge files as an older Folio (or another program) left them and to
// look at what Database wrote.
class RawDb {
 public:
  explicit RawDb(const QString& path) : name_(QStringLiteral("tst_store.raw.%1").arg(serial_++)) {
    db_ = QSqlDatabase::addDatabase(QStringLiteral("QSQLITE"), name_);
    db_.setDatabaseName(path);
    db_.setConnectOptions(QStringLiteral("QSQLITE_BUSY_TIMEOUT=5000"));
    ok_ = db_.open();
  }
  ~RawDb() {
    db_.close();
    db_ = QSqlDatabase();
    QSqlDatabase::removeDatabase(name_);
  }
  bool ok() const { return ok_; }
  bool exec(const QString& sql) {
    QSqlQuery q(db_);
    if (q.exec(sql)) return true;
    qWarning("raw SQL failed: %s: %s", qPrintable(sql), qPrintable(q.lastError().text()));
    return false;
  }
  QVariant scalar(const QString& sql) {
    QSqlQuery q(db_);
    if (!q.exec(sql) || !q.next()) return QVariant();
    return q.value(0);
  }
  QStringList columns(const QString& table) {
    QSqlQuery q(db_);
    QStringList out;
    if (!q.exec("PRAGMA table_info(" + table + ")")) return out;
    while (q.next()) out << q.value(1).toString();
    return out;
  }

 private:
  static inline int serial_ = 0;
  QString name_;
  QSqlDatabase db_;
  bool ok_ = false;
};

// The schema exactly as version 1 shipped it (kept here verbatim: a migration must upgrade the
// files that exist, whatever later edits to store_schema.h say).
const char* const kVersion1Schema[] = {
    "CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT NOT NULL, model TEXT NOT NULL DEFAULT '',"
    " created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)",
    "CREATE TABLE messages (id INTEGER PRIMARY KEY,"
    " conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
    " role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')), text TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL, ttft_ms REAL, prefill_tokens INTEGER, prefill_tok_s REAL,"
    " decode_tokens INTEGER, decode_tok_s REAL, stop_reason TEXT)",
    "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)",
    "CREATE TABLE documents (id INTEGER PRIMARY KEY, path TEXT NOT NULL, content_hash TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL, token_count INTEGER NOT NULL DEFAULT 0, page_count INTEGER NOT NULL DEFAULT 0,"
    " added_ms INTEGER NOT NULL)",
    "CREATE TABLE conversation_documents ("
    " conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
    " document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
    " attached_ms INTEGER NOT NULL, PRIMARY KEY (conversation_id, document_id)) WITHOUT ROWID",
    "CREATE INDEX conversation_documents_by_document ON conversation_documents(document_id)",
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, model TEXT NOT NULL, backend TEXT NOT NULL,"
    " prompt_tokens INTEGER NOT NULL, ttft_ms REAL NOT NULL, prefill_tok_s REAL NOT NULL,"
    " decode_tok_s REAL NOT NULL, peak_memory_bytes INTEGER NOT NULL, created_ms INTEGER NOT NULL)",
    "PRAGMA user_version = 1",
};

QByteArray file_sha256(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  return QCryptographicHash::hash(f.readAll(), QCryptographicHash::Sha256);
}

folio::Metrics make_metrics(double ttft_ms, int64_t prompt_tokens) {
  folio::Metrics m;
  m.prompt_tokens = prompt_tokens;
  m.prefill_tokens = prompt_tokens;
  m.prefill_tok_s = 1000.0 * static_cast<double>(prompt_tokens) / ttft_ms;
  m.ttft_ms = ttft_ms;
  m.decode_tokens = 32;
  m.decode_tok_s = 41.5;
  m.stop = folio::StopReason::Eos;
  m.backend = "cpu";
  m.memory.push_back({"cpu", 1000, 200, 30, 0, 0});
  return m;
}

// The message the writer child appends as its i-th: big enough that a kill usually lands
// while SQLite is writing.
QString writer_text(int i) {
  return QStringLiteral("message %1 ").arg(i) + QString(2048 + (i * 997) % 6144, QChar(u'a' + i % 26));
}

// `tst_store --writer DB`: appends messages until killed, printing "committed I" after each commit.
int run_writer(const QString& path) {
  try {
    Database db(path);
    const auto c = db.create_conversation(QStringLiteral("killed writer"));
    std::printf("conversation %lld\n", static_cast<long long>(c.id));
    std::fflush(stdout);
    for (int i = 0; i < 100000; ++i) {  // bounded, should the parent never kill it
      std::optional<folio::Metrics> metrics;
      if (i % 2 == 1) metrics = make_metrics(10.0 + i, 100 + i);
      db.append_message(c.id, i % 2 == 1 ? Role::Assistant : Role::User, writer_text(i), metrics);
      std::printf("committed %d\n", i);
      std::fflush(stdout);
    }
    return 0;
  } catch (const folio::Error& e) {
    std::fprintf(stderr, "tst_store --writer: %s\n", e.what());
    return 1;
  }
}

}  // namespace

class StoreTest : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir dir_;
  int files_ = 0;
  QString fresh_path() { return dir_.filePath(QStringLiteral("db%1/folio.sqlite").arg(files_++)); }

  // Builds a version 1 file with one of each row; returns false on any SQL failure.
  static bool make_v1_database(const QString& path, const QStringList& extra_sql = {}) {
    RawDb raw(path);
    if (!raw.ok()) return false;
    for (const char* sql : kVersion1Schema) {
      if (!raw.exec(QString::fromLatin1(sql))) return false;
    }
    for (const QString& sql : extra_sql) {
      if (!raw.exec(sql)) return false;
    }
    return raw.exec("INSERT INTO conversations VALUES (1, 'Old talk', 'stories260K', 1000, 2000)") &&
           raw.exec("INSERT INTO messages (conversation_id, role, text, created_ms) VALUES (1, 'user', 'Hi?', 1500)") &&
           raw.exec(
               "INSERT INTO messages VALUES (2, 1, 'assistant', 'Hello.', 1600, 12.5, 7, 560.0, 3, 88.0, 'eos')") &&
           raw.exec(
               "INSERT INTO documents (id, path, content_hash, kind, token_count, page_count, added_ms)"
               " VALUES (1, '/home/ada/papers/attention.pdf', 'abc123', 'pdf', 9000, 15, 1200)") &&
           raw.exec(
               "INSERT INTO documents (id, path, content_hash, kind, token_count, page_count, added_ms)"
               " VALUES (2, 'notes/', 'def456', 'source-tree', 10, 2, 1300)") &&
           raw.exec("INSERT INTO conversation_documents VALUES (1, 1, 1250)") &&
           raw.exec("INSERT INTO runs VALUES (1, 'stories260K', 'cpu', 4096, 250.0, 16384.0, 90.0, 123456, 1700)");
  }

 private slots:
  void initTestCase() {
    QVERIFY(dir_.isValid());
    QVERIFY2(QSqlDatabase::isDriverAvailable("QSQLITE"), "QSQLITE driver missing: install libqt6sql6-sqlite");
  }

  void creates_schema_in_new_folder() {
    const QString path = fresh_path();
    QVERIFY(!QFile::exists(path));
    {
      Database db(path);
      const auto s = db.settings();
      QCOMPARE(s.user_version, folio::store::sql::kSchemaVersion);
      QCOMPARE(s.user_version, Database::schema_version());
      QCOMPARE(s.synchronous, 1);  // NORMAL
      QVERIFY(s.foreign_keys);
      QCOMPARE(db.integrity_check(), QStringLiteral("ok"));
      QVERIFY(db.list_conversations().empty());
      db.create_conversation("kept");
    }
    QVERIFY(QFile::exists(path));
    RawDb raw(path);
    QVERIFY(raw.ok());
    for (const char* table : {"conversations", "messages", "documents", "conversation_documents", "runs"}) {
      QVERIFY2(!raw.columns(table).isEmpty(), table);
    }
    QVERIFY(raw.columns("runs").contains("attention_mode"));
    QVERIFY(raw.columns("runs").contains("density"));
    QVERIFY(raw.columns("documents").contains("title"));
    // Opening again migrates nothing and keeps the data.
    Database again(path);
    QCOMPARE(again.list_conversations().size(), size_t{1});
    QCOMPARE(again.settings().user_version, folio::store::sql::kSchemaVersion);
  }

  void default_path_is_in_app_data() {
    QStandardPaths::setTestModeEnabled(true);
    const QString path = Database::default_path();
    QVERIFY2(path.endsWith("/folio.sqlite"), qPrintable(path));
    QVERIFY(path.startsWith(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)));
    QStandardPaths::setTestModeEnabled(false);
  }

  void migrates_version_1_database() {
    const QString path = fresh_path();
    QDir().mkpath(QFileInfo(path).absolutePath());
    QVERIFY(make_v1_database(path));

    Database db(path);
    QCOMPARE(db.settings().user_version, folio::store::sql::kSchemaVersion);
    QCOMPARE(db.integrity_check(), QStringLiteral("ok"));

    const auto conversations = db.list_conversations();
    QCOMPARE(conversations.size(), size_t{1});
    QCOMPARE(conversations[0].title, QStringLiteral("Old talk"));
    QCOMPARE(conversations[0].model, QStringLiteral("stories260K"));
    QCOMPARE(conversations[0].created.toMSecsSinceEpoch(), qint64(1000));
    const auto messages = db.list_messages(1);
    QCOMPARE(messages.size(), size_t{2});
    QVERIFY(!messages[0].metrics.has_value());
    QVERIFY(messages[1].metrics.has_value());
    QCOMPARE(messages[1].metrics->ttft_ms, 12.5);
    QCOMPARE(messages[1].metrics->stop, folio::StopReason::Eos);

    // New columns, with the values version 1 implied.
    const auto runs = db.list_runs();
    QCOMPARE(runs.size(), size_t{1});
    QCOMPARE(runs[0].attention_mode, QStringLiteral("dense"));
    QCOMPARE(runs[0].density, 1.0);
    QCOMPARE(runs[0].reused_tokens, int64_t{0});
    QCOMPARE(runs[0].prompt_tokens, int64_t{4096});
    QCOMPARE(runs[0].peak_memory_bytes, int64_t{123456});
    QCOMPARE(db.document(1)->title, QStringLiteral("attention.pdf"));  // backfilled from the path
    QCOMPARE(db.document(2)->title, QStringLiteral("notes/"));         // no file name: the path
    QCOMPARE(db.conversation_documents(1).size(), size_t{1});
    const auto series = db.ttft_series();
    QCOMPARE(series.size(), size_t{1});
    QCOMPARE(series[0].attention_mode, QStringLiteral("dense"));

    // And the upgraded file takes new rows in the new columns.
    db.record_run(make_metrics(40.0, 1024), "stories260K", "triangular", 0.25);
    QCOMPARE(db.ttft_series("stories260K").size(), size_t{2});
  }

  void failed_migration_rolls_back() {
    // A version 1 file that already has documents.title: the runs columns go in first, then
    // adding the title fails; nothing of the step may stay.
    const QString path = fresh_path();
    QDir().mkpath(QFileInfo(path).absolutePath());
    QVERIFY(make_v1_database(path, {"ALTER TABLE documents ADD COLUMN title TEXT"}));
    try {
      Database db(path);
      QFAIL("a failing migration must throw");
    } catch (const folio::Error& e) {
      const QString msg = QString::fromUtf8(e.what());
      QVERIFY2(msg.contains("from version 1 to 2") && msg.contains("duplicate column name: title") &&
                   msg.contains("still at version 1"),
               e.what());
      QVERIFY(!msg.contains('\n'));
    }
    RawDb raw(path);
    QCOMPARE(raw.scalar("PRAGMA user_version").toInt(), 1);
    QVERIFY(!raw.columns("runs").contains("attention_mode"));
    QCOMPARE(raw.scalar("SELECT count(*) FROM messages").toInt(), 2);
  }

  void refuses_newer_schema_untouched() {
    const QString path = fresh_path();
    QDir().mkpath(QFileInfo(path).absolutePath());
    {
      RawDb raw(path);
      QVERIFY(raw.exec("CREATE TABLE future (x)"));
      QVERIFY(raw.exec("INSERT INTO future VALUES (42)"));
      QVERIFY(raw.exec(QStringLiteral("PRAGMA user_version = %1").arg(folio::store::sql::kSchemaVersion + 1)));
    }
    const QByteArray before = file_sha256(path);
    QVERIFY(!before.isEmpty());
    try {
      Database db(path);
      QFAIL("a newer schema must be refused");
    } catch (const folio::Error& e) {
      const QString msg = QString::fromUtf8(e.what());
      QVERIFY2(msg.contains("newer") && msg.contains(QString::number(folio::store::sql::kSchemaVersion + 1)) &&
                   msg.contains("untouched"),
               e.what());
      QCOMPARE(e.code(), folio::ErrorCode::FileUnreadable);
    }
    QCOMPARE(file_sha256(path), before);
    QVERIFY(!QFile::exists(path + "-wal"));
  }

  void refuses_files_that_are_not_folio_databases() {
    // Not SQLite at all.
    const QString garbage = fresh_path();
    QDir().mkpath(QFileInfo(garbage).absolutePath());
    {
      QFile f(garbage);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QByteArray(8192, 'x'));
    }
    const QByteArray before = file_sha256(garbage);
    try {
      Database db(garbage);
      QFAIL("a file that is not a database must be refused");
    } catch (const folio::Error& e) {
      QVERIFY2(QString::fromUtf8(e.what()).contains("not a database"), e.what());
    }
    QCOMPARE(file_sha256(garbage), before);

    // SQLite, but someone else's.
    const QString foreign = fresh_path();
    QDir().mkpath(QFileInfo(foreign).absolutePath());
    {
      RawDb raw(foreign);
      QVERIFY(raw.exec("CREATE TABLE contacts (name TEXT)"));
    }
    try {
      Database db(foreign);
      QFAIL("a foreign SQLite file must be refused");
    } catch (const folio::Error& e) {
      QVERIFY2(QString::fromUtf8(e.what()).contains("not Folio's"), e.what());
    }

    // Paths that cannot be a database file.
    QVERIFY_THROWS_EXCEPTION(folio::Error, Database{QString()});
    QVERIFY_THROWS_EXCEPTION(folio::Error, Database{dir_.path()});
    QVERIFY_THROWS_EXCEPTION(folio::Error, Database{garbage + "/below/a/file.sqlite"});
  }

  void conversation_crud() {
    Database db(fresh_path());
    const auto a = db.create_conversation("First", "smollm2-135m");
    const auto b = db.create_conversation("Second");
    QVERIFY(a.id != b.id);
    QCOMPARE(a.created, a.updated);

    auto list = db.list_conversations();
    QCOMPARE(list.size(), size_t{2});
    QCOMPARE(list[0].id, b.id);  // most recently updated first
    QCOMPARE(list[1].model, QStringLiteral("smollm2-135m"));

    QTest::qWait(5);
    db.rename_conversation(a.id, "Renamed");
    const auto renamed = db.conversation(a.id);
    QVERIFY(renamed.has_value());
    QCOMPARE(renamed->title, QStringLiteral("Renamed"));
    QVERIFY(renamed->updated > a.updated);
    QCOMPARE(renamed->created, a.created);
    QCOMPARE(db.list_conversations()[0].id, a.id);

    QVERIFY_THROWS_EXCEPTION(folio::Error, db.rename_conversation(9999, "x"));
    QVERIFY_THROWS_EXCEPTION(folio::Error, db.rename_conversation(a.id, "  "));
    QVERIFY_THROWS_EXCEPTION(folio::Error, db.create_conversation(""));
    QVERIFY(!db.conversation(9999).has_value());

    QVERIFY(db.delete_conversation(b.id));
    QVERIFY(!db.delete_conversation(b.id));
    QCOMPARE(db.list_conversations().size(), size_t{1});
  }

  void messages_round_trip_with_metrics() {
    const QString path = fresh_path();
    int64_t id = 0;
    folio::Metrics m = make_metrics(123.25, 2048);
    m.prefill_tokens = 2000;        // 48 reused
    m.decode_tok_s = std::nan("");  // not finite: stored as 0, never a failed insert
    {
      Database db(path);
      const auto c = db.create_conversation("Chat");
      id = c.id;
      db.append_message(id, Role::System, "You answer from the document.");
      db.append_message(id, Role::User, QStringLiteral("Wie heißt das Kapitel? 第三章"));
      const auto answer = db.append_message(id, Role::Assistant, "Chapter 3.", m);
      QVERIFY(answer.id > 0);
      QVERIFY(answer.metrics.has_value());
      QVERIFY(db.conversation(id)->updated >= c.updated);
      QVERIFY_THROWS_EXCEPTION(folio::Error, db.append_message(9999, Role::User, "lost"));
    }
    Database db(path);  // read back through a new connection
    const auto messages = db.list_messages(id);
    QCOMPARE(messages.size(), size_t{3});
    QCOMPARE(db.count_messages(id), int64_t{3});
    QCOMPARE(messages[0].role, Role::System);
    QCOMPARE(messages[1].role, Role::User);
    QCOMPARE(messages[1].text, QStringLiteral("Wie heißt das Kapitel? 第三章"));
    QVERIFY(!messages[1].metrics.has_value());
    QCOMPARE(messages[2].role, Role::Assistant);
    QVERIFY(messages[2].metrics.has_value());
    const auto& mm = *messages[2].metrics;
    QCOMPARE(mm.ttft_ms, 123.25);
    QCOMPARE(mm.prefill_tokens, int64_t{2000});
    QCOMPARE(mm.prefill_tok_s, m.prefill_tok_s);
    QCOMPARE(mm.decode_tokens, int64_t{32});
    QCOMPARE(mm.decode_tok_s, 0.0);
    QCOMPARE(mm.stop, folio::StopReason::Eos);
    QVERIFY(messages[0].id < messages[1].id && messages[1].id < messages[2].id);
    QCOMPARE(db.count_messages(9999), int64_t{0});
  }

  void delete_cascades() {
    const QString path = fresh_path();
    Database db(path);
    const auto gone = db.create_conversation("Gone");
    const auto kept = db.create_conversation("Kept");
    for (int i = 0; i < 5; ++i) db.append_message(gone.id, Role::User, QString::number(i));
    db.append_message(kept.id, Role::User, "stay");
    const auto doc = db.upsert_document({"/tmp/a.pdf", "", "hash-a", "pdf", 100, 2});
    db.attach_document(gone.id, doc.id);
    db.attach_document(kept.id, doc.id);

    QVERIFY(db.delete_conversation(gone.id));
    RawDb raw(path);
    QCOMPARE(
        raw.scalar(QStringLiteral("SELECT count(*) FROM messages WHERE conversation_id = %1").arg(gone.id)).toInt(), 0);
    QCOMPARE(
        raw.scalar(
               QStringLiteral("SELECT count(*) FROM conversation_documents WHERE conversation_id = %1").arg(gone.id))
            .toInt(),
        0);
    QCOMPARE(db.list_messages(kept.id).size(), size_t{1});
    QCOMPARE(db.conversation_documents(kept.id).size(), size_t{1});
    QVERIFY(db.document(doc.id).has_value());  // documents outlive the conversations they were in
  }

  void document_upsert_by_hash_and_attachments() {
    Database db(fresh_path());
    const auto first = db.upsert_document({"/home/ada/paper.pdf", "", "sha-1", "pdf", 5000, 12});
    QCOMPARE(first.title, QStringLiteral("paper.pdf"));
    QCOMPARE(first.page_count, int64_t{12});
    QTest::qWait(5);
    // Same bytes found at a new place: same row, new path, added time kept.
    const auto moved = db.upsert_document({"/home/ada/archive/paper-v1.pdf", "Paper", "sha-1", "pdf", 5100, 12});
    QCOMPARE(moved.id, first.id);
    QCOMPARE(moved.path, QStringLiteral("/home/ada/archive/paper-v1.pdf"));
    QCOMPARE(moved.title, QStringLiteral("Paper"));
    QCOMPARE(moved.token_count, int64_t{5100});
    QCOMPARE(moved.added, first.added);
    const auto other = db.upsert_document({"/src/project", "", "sha-2", "source-tree", 90000, 340});
    QVERIFY(other.id != first.id);
    QCOMPARE(db.list_documents().size(), size_t{2});
    QCOMPARE(db.document_by_hash("sha-2")->kind, QStringLiteral("source-tree"));
    QVERIFY(!db.document_by_hash("sha-3").has_value());
    QVERIFY_THROWS_EXCEPTION(folio::Error, db.upsert_document({"/x", "", "", "text", 1, 1}));

    const auto c = db.create_conversation("Docs");
    db.attach_document(c.id, other.id);
    QTest::qWait(5);  // attach times are milliseconds
    db.attach_document(c.id, first.id);
    db.attach_document(c.id, first.id);  // again: no-op
    auto attached = db.conversation_documents(c.id);
    QCOMPARE(attached.size(), size_t{2});
    QCOMPARE(attached[0].id, other.id);  // attach order
    QVERIFY_THROWS_EXCEPTION(folio::Error, db.attach_document(c.id, 9999));
    QVERIFY_THROWS_EXCEPTION(folio::Error, db.attach_document(9999, first.id));

    QVERIFY(db.detach_document(c.id, other.id));
    QVERIFY(!db.detach_document(c.id, other.id));
    QCOMPARE(db.conversation_documents(c.id).size(), size_t{1});
    QVERIFY(db.delete_document(first.id));
    QVERIFY(db.conversation_documents(c.id).empty());
    QVERIFY(!db.delete_document(first.id));
  }

  void conversations_are_searched_by_title_and_messages() {
    Database db(fresh_path());
    const auto a = db.create_conversation("Battery life");
    db.append_message(a.id, Role::User, "How long do the cells last?");
    const auto b = db.create_conversation("Error codes");
    db.append_message(b.id, Role::User, "What is E-17?");
    db.append_message(b.id, Role::Assistant, "The rain gauge is blocked (100% sure).");
    const auto c = db.create_conversation("Warranty_terms");
    auto ids = [](const std::vector<folio::store::Conversation>& cs) {
      QList<int64_t> out;
      for (const auto& x : cs) out << x.id;
      return out;
    };
    QCOMPARE(ids(db.search_conversations("")), (QList<int64_t>{c.id, b.id, a.id}));  // all, newest first
    QCOMPARE(ids(db.search_conversations("battery")), QList<int64_t>{a.id});        // title, any case
    QCOMPARE(ids(db.search_conversations("CELLS")), QList<int64_t>{a.id});          // a question
    QCOMPARE(ids(db.search_conversations("rain gauge")), QList<int64_t>{b.id});     // an answer
    // % and _ are the text, not wildcards.
    QCOMPARE(ids(db.search_conversations("100%")), QList<int64_t>{b.id});
    QCOMPARE(ids(db.search_conversations("y_t")), QList<int64_t>{c.id});
    QVERIFY(db.search_conversations("_%").empty());
    QVERIFY(db.search_conversations("zebra").empty());
  }

  // Version 5: the text of documents as read, by content hash, searchable (FTS5), evicted by use.
  static folio::docs::Document pdf_document(const QString& name, const QString& hash, const QStringList& pages) {
    folio::docs::Document d;
    d.path = "/docs/" + name;
    d.title = name;
    d.kind = folio::docs::DocumentKind::Pdf;
    d.content_hash = hash;
    d.page_count = static_cast<int>(pages.size()) + 1;  // the last page has no text
    for (int i = 0; i < pages.size(); ++i) {
      folio::docs::Section sec;
      sec.text = pages[i];
      sec.page_index = i;
      sec.page_label = i == 0 ? "ii" : QString::number(i);
      d.sections.push_back(sec);
      d.page_labels << sec.page_label;
    }
    d.page_labels << QString::number(pages.size());
    d.notices << QString("page %1 has no text (blank?)").arg(pages.size() + 1);
    d.cite_by_page_number = true;
    return d;
  }

  void document_text_round_trips_and_is_searched() {
    Database db(fresh_path());
    const auto doc = pdf_document("sensor.pdf", "aaaa", {"Outdoor sensor: the batteries last about 14 months.",
                                                         "Error E-17 means the rain gauge is blocked.\nClean it."});
    QVERIFY(!db.document_text("aaaa", 1).has_value());
    QVERIFY(db.save_document_text(doc, 1, 1 << 20));
    QCOMPARE(db.document_text_count(), int64_t{1});
    QCOMPARE(db.document_text_bytes(), int64_t(doc.sections[0].text.toUtf8().size() + doc.sections[1].text.toUtf8().size()));
    const auto back = db.document_text("aaaa", 1);
    QVERIFY(back.has_value());
    QCOMPARE(back->path, doc.path);
    QCOMPARE(back->title, doc.title);
    QCOMPARE(back->content_hash, doc.content_hash);
    QVERIFY(back->kind == folio::docs::DocumentKind::Pdf);
    QCOMPARE(back->page_count, doc.page_count);
    QCOMPARE(back->page_labels, doc.page_labels);
    QCOMPARE(back->notices, doc.notices);
    QCOMPARE(back->cite_by_page_number, true);
    QCOMPARE(back->sections.size(), doc.sections.size());
    for (qsizetype i = 0; i < doc.sections.size(); ++i) {
      QCOMPARE(back->sections[i].text, doc.sections[i].text);
      QCOMPARE(back->sections[i].page_index, doc.sections[i].page_index);
      QCOMPARE(back->sections[i].page_label, doc.sections[i].page_label);
    }
    // Another loader version reads the file again.
    QVERIFY(!db.document_text("aaaa", 2).has_value());
    // The document's row is there without counts; a conversation's upsert keeps the text.
    const auto record = db.document_by_hash("aaaa");
    QVERIFY(record.has_value());
    QCOMPARE(record->kind, QStringLiteral("pdf"));
    QCOMPARE(record->page_count, int64_t{3});
    DocumentInfo info{doc.path, doc.title, "aaaa", "pdf", 120, 3};
    QCOMPARE(db.upsert_document(info).id, record->id);
    QVERIFY(db.document_text("aaaa", 1).has_value());

    // The history search finds a conversation by its documents' words (a phrase, the last word as
    // a prefix), and no conversation by words of a document it does not hold.
    const auto a = db.create_conversation("Questions");
    db.append_message(a.id, Role::User, "How long do they last?");
    db.attach_document(a.id, record->id);
    const auto b = db.create_conversation("Other");
    auto ids = [](const std::vector<folio::store::Conversation>& cs) {
      QList<int64_t> out;
      for (const auto& x : cs) out << x.id;
      return out;
    };
    QCOMPARE(ids(db.search_conversations("rain gauge")), QList<int64_t>{a.id});
    QCOMPARE(ids(db.search_conversations("RAIN GAU")), QList<int64_t>{a.id});   // still typing
    QCOMPARE(ids(db.search_conversations("batteries")), QList<int64_t>{a.id});
    QVERIFY(db.search_conversations("gauge rain").empty());                      // a phrase, in order
    QVERIFY(db.search_conversations("\"(*) AND OR NEAR").empty());                // never a syntax error
    QCOMPARE(ids(db.search_conversations("Other")), QList<int64_t>{b.id});
    QCOMPARE(db.count_text_matches("blocked"), int64_t{1});
    QCOMPARE(db.count_text_matches("months"), int64_t{1});

    // Deleting the document deletes its text and its index entries.
    QVERIFY(db.delete_document(record->id));
    QCOMPARE(db.document_text_count(), int64_t{0});
    QCOMPARE(db.count_text_matches("blocked"), int64_t{0});
    QVERIFY(db.search_conversations("rain gauge").empty());
    QCOMPARE(db.integrity_check(), QStringLiteral("ok"));
    RawDb raw(db.path());
    QCOMPARE(raw.scalar("SELECT count(*) FROM document_sections").toInt(), 0);
    QCOMPARE(raw.scalar("INSERT INTO document_sections_fts(document_sections_fts) VALUES ('integrity-check')").toString(),
             QString());
  }

  void document_texts_keep_the_recently_used_within_their_limit() {
    Database db(fresh_path());
    const QString page(400, 'x');
    auto doc = [&](const QString& hash) { return pdf_document(hash + ".pdf", hash, {page + " " + hash}); };
    const int64_t limit = 1000;  // two texts of ~403 bytes fit, three do not
    QVERIFY(db.save_document_text(doc("one"), 1, limit));
    QTest::qWait(5);
    QVERIFY(db.save_document_text(doc("two"), 1, limit));
    QTest::qWait(5);
    QVERIFY(db.document_text("one", 1).has_value());  // "one" used: "two" is now the oldest
    QTest::qWait(5);
    QVERIFY(db.save_document_text(doc("three"), 1, limit));
    QCOMPARE(db.document_text_count(), int64_t{2});
    QVERIFY(db.document_text("one", 1).has_value());
    QVERIFY(!db.document_text("two", 1).has_value());
    QVERIFY(db.document_text("three", 1).has_value());
    QVERIFY(db.document_text_bytes() <= limit);
    // A text larger than the limit alone is not kept, and costs the others nothing.
    QVERIFY(!db.save_document_text(pdf_document("big.pdf", "big", {QString(2000, 'y')}), 1, limit));
    QCOMPARE(db.document_text_count(), int64_t{2});
    // Saving the same document again replaces its text.
    auto changed = doc("one");
    changed.sections[0].text = "replaced";
    QVERIFY(db.save_document_text(changed, 1, limit));
    QCOMPARE(db.document_text("one", 1)->sections[0].text, QStringLiteral("replaced"));
    QCOMPARE(db.count_text_matches("replaced"), int64_t{1});
    QCOMPARE(db.document_text_count(), int64_t{2});
  }

  void a_pdf_read_before_comes_from_the_store() {
    const QString path = dir_.filePath("kept.pdf");
    auto write = [&](const QStringList& pages) {
      QFile f(path);
      QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
      f.write(folio::test::make_pdf(pages));
    };
    write({"The vault opens with the brass key.", "The alarm code is kept in the safe."});
    const QString db_path = fresh_path();
    auto load = [&](folio::store::StoredDocuments* kept, const QString& password = {}) {
      folio::docs::LoadOptions o;
      o.document_cache = kept;
      o.pdf_password = password;
      return folio::docs::load_pdf(path, o);
    };
    const folio::docs::Document parsed = load(nullptr);
    {
      Database db(db_path);
      folio::store::StoredDocuments kept(db);
      const folio::docs::Document first = load(&kept);
      QCOMPARE(kept.misses(), int64_t{1});
      QCOMPARE(kept.hits(), int64_t{0});
      QCOMPARE(db.document_text_count(), int64_t{1});
      QCOMPARE(first.sections.size(), parsed.sections.size());
    }
    {
      // Another connection (as after a restart): found, not parsed, the same document.
      Database db(db_path);
      folio::store::StoredDocuments kept(db);
      const folio::docs::Document again = load(&kept);
      QCOMPARE(kept.hits(), int64_t{1});
      QCOMPARE(again.path, parsed.path);
      QCOMPARE(again.title, parsed.title);
      QCOMPARE(again.content_hash, parsed.content_hash);
      QCOMPARE(again.page_count, parsed.page_count);
      QCOMPARE(again.page_labels, parsed.page_labels);
      QCOMPARE(again.notices, parsed.notices);
      QCOMPARE(again.sections.size(), parsed.sections.size());
      for (qsizetype i = 0; i < parsed.sections.size(); ++i) {
        QCOMPARE(again.sections[i].text, parsed.sections[i].text);
        QCOMPARE(again.sections[i].page_index, parsed.sections[i].page_index);
        QCOMPARE(again.sections[i].page_label, parsed.sections[i].page_label);
      }
      // A changed file is parsed again (and its new text kept beside the old one's).
      write({"The vault opens with the silver key."});
      const folio::docs::Document changed = load(&kept);
      QCOMPARE(kept.misses(), int64_t{1});
      QCOMPARE(changed.sections.size(), qsizetype{1});
      QVERIFY(changed.sections[0].text.contains("silver"));
      QCOMPARE(db.document_text_count(), int64_t{2});
    }
    {
      // A PDF opened with a password is never kept: its text stays encrypted.
      const QString locked = dir_.filePath("locked-kept.pdf");
      QFile f(locked);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(folio::test::make_pdf({"The secret is kept here."}, {}, "pw"));
      f.close();
      Database db(db_path);
      folio::store::StoredDocuments kept(db);
      folio::docs::LoadOptions o;
      o.document_cache = &kept;
      o.pdf_password = "pw";
      const folio::docs::Document opened = folio::docs::load_pdf(locked, o);
      QVERIFY(opened.sections[0].text.contains("secret"));
      QCOMPARE(kept.hits() + kept.misses(), int64_t{0});
      QCOMPARE(db.document_text_count(), int64_t{2});
      QCOMPARE(db.count_text_matches("secret"), int64_t{0});
    }
  }

  void conversations_keep_their_settings() {
    const QString path = fresh_path();
    int64_t id = 0;
    {
      Database db(path);
      const auto c = db.create_conversation("Settings");
      id = c.id;
      QVERIFY(c.settings.isEmpty());
      db.set_conversation_settings(id, R"({"temperature":0})");
      QVERIFY_THROWS_EXCEPTION(folio::Error, db.set_conversation_settings(id + 100, "{}"));
    }
    Database again(path);
    QCOMPARE(again.conversation(id)->settings, QString(R"({"temperature":0})"));
    QCOMPARE(again.list_conversations().front().settings, QString(R"({"temperature":0})"));
  }

  void runs_feed_ttft_series() {
    Database db(fresh_path());
    // Recorded out of order, two models, two modes.
    db.record_run(make_metrics(900.0, 16384), "llama-8b", "dense");
    db.record_run(make_metrics(60.0, 1024), "llama-8b", "dense");
    db.record_run(make_metrics(300.0, 16384), "llama-8b", "triangular", 0.2);
    db.record_run(make_metrics(220.0, 4096), "llama-8b", "dense");
    db.record_run(make_metrics(55.0, 1024), "llama-8b", "triangular", 0.6);
    db.record_run(make_metrics(5.0, 512), "smollm2", "dense");
    folio::Metrics reused = make_metrics(3.0, 8192);
    reused.reused_tokens = 8000;  // a cached prefix: says nothing about prefill at 8192
    db.record_run(reused, "llama-8b", "dense");
    folio::Metrics no_token = make_metrics(1.0, 2048);
    no_token.ttft_ms = 0.0;  // cancelled before the first token
    db.record_run(no_token, "llama-8b", "dense");

    const auto all = db.list_runs();
    QCOMPARE(all.size(), size_t{8});
    QCOMPARE(all[0].prompt_tokens, int64_t{16384});  // oldest first
    QCOMPARE(all[0].backend, QStringLiteral("cpu"));
    QCOMPARE(all[0].peak_memory_bytes, int64_t{1230});
    QCOMPARE(all[2].density, 0.2);
    QCOMPARE(all[6].reused_tokens, int64_t{8000});
    QCOMPARE(db.list_runs("smollm2").size(), size_t{1});

    const auto series = db.ttft_series();
    QCOMPARE(series.size(), size_t{4});
    QCOMPARE(series[0].model, QStringLiteral("llama-8b"));
    QCOMPARE(series[0].attention_mode, QStringLiteral("dense"));
    QVERIFY(!series[0].reused);
    QCOMPARE(series[0].points.size(), size_t{3});
    QCOMPARE(series[0].points[0].context_tokens, int64_t{1024});
    QCOMPARE(series[0].points[0].ttft_ms, 60.0);
    QCOMPARE(series[0].points[1].context_tokens, int64_t{4096});
    QCOMPARE(series[0].points[2].context_tokens, int64_t{16384});
    QCOMPARE(series[0].points[2].ttft_ms, 900.0);
    // The run that reused a cached prefix: a series of its own, not mixed into the full prefills.
    QCOMPARE(series[1].attention_mode, QStringLiteral("dense"));
    QVERIFY(series[1].reused);
    QCOMPARE(series[1].points.size(), size_t{1});
    QCOMPARE(series[1].points[0].context_tokens, int64_t{8192});
    QCOMPARE(series[1].points[0].ttft_ms, 3.0);
    QCOMPARE(series[2].attention_mode, QStringLiteral("triangular"));
    QVERIFY(!series[2].reused);
    QCOMPARE(series[2].points.size(), size_t{2});
    QCOMPARE(series[2].points[0].context_tokens, int64_t{1024});
    QCOMPARE(series[2].points[1].ttft_ms, 300.0);
    QCOMPARE(series[3].model, QStringLiteral("smollm2"));

    const auto llama = db.ttft_series("llama-8b");
    QCOMPARE(llama.size(), size_t{3});
    QVERIFY(db.ttft_series("unknown").empty());

    QVERIFY_THROWS_EXCEPTION(folio::Error, db.record_run(make_metrics(1.0, 1), "m", "dense", 0.0));
    QVERIFY_THROWS_EXCEPTION(folio::Error, db.record_run(make_metrics(1.0, 1), "m", "dense", 1.5));
    QVERIFY_THROWS_EXCEPTION(folio::Error, db.record_run(make_metrics(1.0, 1), "", "dense"));
    QVERIFY_THROWS_EXCEPTION(folio::Error, db.record_run(make_metrics(1.0, 1), "m", ""));
  }

  void failing_statement_reports_sqlite_error_and_rolls_back() {
    const QString path = fresh_path();
    Database db(path);
    const auto c = db.create_conversation("c");
    {
      RawDb raw(path);
      QVERIFY(raw.exec(
          "CREATE TRIGGER frozen BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'messages are frozen'); END"));
    }
    const QDateTime updated_before = db.conversation(c.id)->updated;
    QTest::qWait(5);
    try {
      db.append_message(c.id, Role::User, "x");
      QFAIL("the trigger must make the insert fail");
    } catch (const folio::Error& e) {
      const QString msg = QString::fromUtf8(e.what());
      QVERIFY2(msg.contains("appending a message") && msg.contains("messages are frozen"), e.what());
    }
    // The conversation's updated time was set in the same transaction: rolled back too.
    QCOMPARE(db.conversation(c.id)->updated, updated_before);
    {
      RawDb raw(path);
      QVERIFY(raw.exec("DROP TRIGGER frozen"));
    }
    db.append_message(c.id, Role::User, "after");  // the connection is still usable
    QCOMPARE(db.count_messages(c.id), int64_t{1});
  }

  void wal_is_on() {
    const QString path = fresh_path();
    Database db(path);
    QCOMPARE(db.settings().journal_mode, QStringLiteral("wal"));
    db.create_conversation("w");
    QVERIFY(QFile::exists(path + "-wal"));
    RawDb raw(path);
    QCOMPARE(raw.scalar("PRAGMA journal_mode").toString().toLower(), QStringLiteral("wal"));
  }

  void two_instances_on_one_file() {
    const QString path = fresh_path();
    Database a(path);
    Database b(path);
    QVERIFY(a.connection_name() != b.connection_name());
    const auto c = a.create_conversation("shared");
    QCOMPARE(b.list_conversations().size(), size_t{1});
    for (int i = 0; i < 20; ++i) {
      (i % 2 == 0 ? a : b).append_message(c.id, Role::User, QString::number(i));
    }
    const auto seen_by_a = a.list_messages(c.id);
    QCOMPARE(seen_by_a.size(), size_t{20});
    for (int i = 0; i < 20; ++i) QCOMPARE(seen_by_a[i].text, QString::number(i));
    b.rename_conversation(c.id, "renamed by b");
    QCOMPARE(a.conversation(c.id)->title, QStringLiteral("renamed by b"));
    {
      Database third(path);  // opening while two are open (migration check takes the write lock)
      QCOMPARE(third.count_messages(c.id), int64_t{20});
    }
    QCOMPARE(a.integrity_check(), QStringLiteral("ok"));
  }

  void refuses_other_threads() {
    Database db(fresh_path());
    QString message;
    std::thread t([&] {
      try {
        db.list_conversations();
      } catch (const folio::Error& e) {
        message = QString::fromUtf8(e.what());
      }
    });
    t.join();
    QVERIFY2(message.contains("one Database per thread"), qPrintable(message));
  }

  void recorded_chat_reads_back_as_the_app_reads_it() {
    const std::string model = folio::test::source_dir() + "/resources/models/stories260K/stories260K.bin";
    FOLIO_REQUIRE_FILE(model);
    folio::EngineOptions eo;
    eo.model_path = model;
    eo.threads = 2;
    auto engine = folio::Engine::load(eo);
    const QString path = dir_.filePath("recorded.sqlite");
    folio::store::ChatRecorder recorder(path);
    recorder.set_model("stories260K.bin");
    folio::chat::Conversation chat(*engine);
    chat.set_recorder(&recorder);
    folio::chat::Document doc;
    doc.path = "/docs/lily.txt";
    doc.title = "lily.txt";
    doc.content_hash = QCryptographicHash::hash("Lily has a red ball.", QCryptographicHash::Sha256).toHex().toStdString();
    doc.page_count = 1;
    doc.files = {"lily.txt"};
    doc.sections.push_back({"Lily has a red ball.", -1, "", "lily.txt", 1, 1});
    chat.set_documents({doc});
    folio::chat::AskOptions o;
    o.context_tokens = 256;
    o.generate.max_tokens = 8;
    o.generate.sampler.temperature = 0.0f;
    const folio::chat::Answer first = chat.ask("What does Lily have?", o);
    QVERIFY(first.record_error.empty());
    const folio::chat::Answer second = chat.ask("What colour is it?", o);
    QVERIFY(second.record_error.empty());
    const int64_t id = recorder.conversation_id();
    QVERIFY(id > 0);

    // The window's own connection (another Database on the file) sees the chat as recorded.
    Database app(path);
    const auto conversations = app.list_conversations();
    QCOMPARE(conversations.size(), size_t{1});
    QCOMPARE(conversations[0].id, id);
    QCOMPARE(conversations[0].title, QString("What does Lily have?"));
    QCOMPARE(conversations[0].model, QString("stories260K.bin"));
    const auto messages = app.list_messages(id);
    QCOMPARE(messages.size(), size_t{4});
    QCOMPARE(messages[0].role, Role::User);
    QCOMPARE(messages[0].text, QString("What does Lily have?"));
    QCOMPARE(messages[1].role, Role::Assistant);
    QCOMPARE(messages[1].text, QString::fromStdString(first.result.text));
    QVERIFY(messages[1].metrics.has_value());
    QCOMPARE(messages[1].metrics->decode_tokens, first.result.metrics.decode_tokens);
    QCOMPARE(messages[1].metrics->prefill_tokens, first.result.metrics.prefill_tokens);
    QCOMPARE(messages[2].text, QString("What colour is it?"));
    const auto docs = app.conversation_documents(id);
    QCOMPARE(docs.size(), size_t{1});
    QCOMPARE(docs[0].title, QString("lily.txt"));
    QCOMPARE(docs[0].kind, QString("text"));
    QVERIFY(docs[0].token_count > 0);
    const auto runs = app.list_runs("stories260K.bin");
    QCOMPARE(runs.size(), size_t{2});
    QCOMPARE(runs[0].attention_mode, QString("auto"));
    QCOMPARE(runs[0].prompt_tokens, first.result.metrics.prompt_tokens);
    QCOMPARE(runs[1].reused_tokens, second.result.metrics.reused_tokens);
    QVERIFY(runs[1].reused_tokens > 0);

    // A new conversation is a new row; the first keeps its messages.
    chat.reset();
    chat.ask("Who is Lily?", o);
    QVERIFY(recorder.conversation_id() != id);
    QCOMPARE(app.list_conversations().size(), size_t{2});
    QCOMPARE(app.count_messages(id), qint64(4));
  }

  void nothing_committed_is_lost_when_killed() {
    const QString path = fresh_path();
    struct Round {
      qint64 conversation = -1;
      int last_committed = -1;
    };
    std::vector<Round> rounds;
    // Three writers in turn on the same file, each killed mid-write; each later one opens a file
    // that the previous kill left with a hot WAL.
    for (int round = 0; round < 3; ++round) {
      QProcess child;
      child.setProgram(QCoreApplication::applicationFilePath());
      child.setArguments({QStringLiteral("--writer"), path});
      child.start();
      QVERIFY2(child.waitForStarted(10000), qPrintable(child.errorString()));
      Round r;
      QByteArray pending;
      const auto drain = [&] {
        pending += child.readAllStandardOutput();
        for (qsizetype nl; (nl = pending.indexOf('\n')) >= 0; pending.remove(0, nl + 1)) {
          const QList<QByteArray> words = pending.left(nl).trimmed().split(' ');
          if (words.size() != 2) continue;
          if (words[0] == "conversation") r.conversation = words[1].toLongLong();
          if (words[0] == "committed") r.last_committed = words[1].toInt();
        }
      };
      const int target = 30 + 45 * round;
      QDeadlineTimer deadline(60000);
      while (r.last_committed < target && !deadline.hasExpired() && child.state() == QProcess::Running) {
        child.waitForReadyRead(100);
        drain();
      }
      QVERIFY2(r.last_committed >= target,
               qPrintable("writer stopped early: " + QString::fromLocal8Bit(child.readAllStandardError())));
      child.kill();  // SIGKILL on Unix: no destructor, no checkpoint, no close
      QVERIFY(child.waitForFinished(10000));
      QCOMPARE(child.exitStatus(), QProcess::CrashExit);
      drain();  // what it printed before dying was committed before it was printed
      QVERIFY(QFile::exists(path + "-wal"));
      rounds.push_back(r);

      Database db(path);
      QCOMPARE(db.integrity_check(), QStringLiteral("ok"));
      for (const Round& done : rounds) {
        const auto messages = db.list_messages(done.conversation);
        // The kill may land after a commit and before its line: one more is allowed.
        QVERIFY2(
            messages.size() >= size_t(done.last_committed + 1) && messages.size() <= size_t(done.last_committed + 2),
            qPrintable(QStringLiteral("conversation %1: %2 messages, %3 reported committed")
                           .arg(done.conversation)
                           .arg(messages.size())
                           .arg(done.last_committed + 1)));
        for (int i = 0; i <= done.last_committed; ++i) {
          QCOMPARE(messages[i].text, writer_text(i));
          QCOMPARE(messages[i].metrics.has_value(), i % 2 == 1);
          if (i % 2 == 1) QCOMPARE(messages[i].metrics->ttft_ms, 10.0 + i);
        }
      }
    }
  }

  // The documents' index for packing kept in the store: the token count of every unit (a PDF
  // page, a window of lines) goes into the token_counts table the first time a document is
  // indexed; a new conversation over another connection to the same file (as after a restart)
  // finds every count there and tokenizes no unit again, and packs the same prompt. Another
  // tokenizer does not use them.
  void unit_token_counts_are_kept_for_documents_opened_again() {
    const std::string model = folio::test::source_dir() + "/resources/models/stories260K/stories260K.bin";
    FOLIO_REQUIRE_FILE(model);
    folio::EngineOptions eo;
    eo.model_path = model;
    eo.threads = 1;
    auto engine = folio::Engine::load(eo);
    std::string text;
    for (int i = 1; i <= 200; ++i)
      text += i == 137 ? "Lily found the red ball under the old oak tree.\n"
                       : "Line " + std::to_string(i) + ": the dog ran to the park and played in the sun.\n";
    folio::chat::Document doc;
    doc.path = doc.title = "story.md";
    doc.page_count = 1;
    doc.files = {doc.title};
    doc.sections = folio::chat::line_sections(folio::chat::split_lines(text), doc.title, 5);
    const QString path = dir_.filePath("token-counts.sqlite");
    struct Packed {
      std::string prompt, packing;
      int64_t hits = 0, misses = 0;
    };
    auto pack = [&](const std::string& tokenizer_id) {
      Database db(path);
      folio::store::StoredTokenCounts counts(db);
      folio::chat::Conversation c(*engine, folio::ChatFormatKind::Plain);
      c.set_token_count_cache(&counts, tokenizer_id);
      c.set_documents({doc});
      folio::chat::AskOptions o;
      o.context_tokens = 512;
      o.generate.max_tokens = 16;
      o.fit = folio::chat::FitMode::Relevant;
      folio::chat::FitCheck fit;
      Packed out;
      out.prompt = c.fitted_prompt("Where did Lily find the red ball?", o, fit, out.packing).text;
      out.hits = counts.hits();
      out.misses = counts.misses();
      return out;
    };
    const Packed first = pack("stories260K");
    qInfo("first: %lld units counted, %lld found; packing: %s", qlonglong(first.misses), qlonglong(first.hits),
          first.packing.c_str());
    QVERIFY(!first.packing.empty());
    QVERIFY(first.prompt.find("Lily found the red ball") != std::string::npos);
    QVERIFY(first.misses >= 40);  // every unit (40 windows of 5 lines) was counted
    QCOMPARE(first.hits, qint64(0));
    {
      Database db(path);
      QVERIFY(db.token_count_rows() >= first.misses);
    }
    const Packed again = pack("stories260K");
    qInfo("again: %lld units counted, %lld found", qlonglong(again.misses), qlonglong(again.hits));
    QCOMPARE(again.misses, qint64(0));
    QVERIFY(again.hits >= first.misses);
    QCOMPARE(again.prompt, first.prompt);
    const Packed other = pack("another tokenizer");
    QVERIFY(other.misses >= first.misses);

    // Pruning keeps the newest rows.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a later time than every row saved so far
    Database db(path);
    db.save_token_counts({{"newest", 7}}, 5);
    QCOMPARE(db.token_count_rows(), qint64(5));
    QCOMPARE(db.token_count("newest"), qint64(7));
    QCOMPARE(db.token_count("absent"), qint64(-1));
  }
};

int main(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  if (argc == 3 && qstrcmp(argv[1], "--writer") == 0) return run_writer(QString::fromLocal8Bit(argv[2]));
  StoreTest test;
  return QTest::qExec(&test, argc, argv);
}

#include "tst_store.moc"
