// The SQLite schema of Folio's database, one named constant per statement, and its version.
// The schema version lives in PRAGMA user_version. Migrations step from each version to the
// next (kMigrationToV1 creates the tables of version 1 on an empty file, kMigrationToV2 upgrades
// a version 1 database, ...); each step runs in one transaction and ends by writing its version.
// A step that shipped is never edited: a change to the schema is a new step.
// Times are milliseconds since the Unix epoch (UTC) in INTEGER columns named *_ms.
#pragma once

#include <span>

namespace folio::store::sql {

inline constexpr int kSchemaVersion = 5;

// Connection setup. WAL with synchronous=NORMAL keeps every committed transaction when the
// app is killed (only a power loss may drop the last commits); foreign keys are per connection.
inline constexpr const char* kPragmaWal = "PRAGMA journal_mode=WAL";
inline constexpr const char* kPragmaSynchronous = "PRAGMA synchronous=NORMAL";
inline constexpr const char* kPragmaForeignKeys = "PRAGMA foreign_keys=ON";
inline constexpr const char* kGetUserVersion = "PRAGMA user_version";
inline constexpr const char* kGetJournalMode = "PRAGMA journal_mode";
inline constexpr const char* kGetSynchronous = "PRAGMA synchronous";
inline constexpr const char* kGetForeignKeys = "PRAGMA foreign_keys";
inline constexpr const char* kIntegrityCheck = "PRAGMA integrity_check";
inline constexpr const char* kCountTables = "SELECT count(*) FROM sqlite_master WHERE type = 'table'";

// BEGIN IMMEDIATE takes the write lock up front, so two connections never deadlock upgrading a
// read transaction to a write (the busy timeout then waits for the other writer).
inline constexpr const char* kBeginImmediate = "BEGIN IMMEDIATE";
inline constexpr const char* kCommit = "COMMIT";
inline constexpr const char* kRollback = "ROLLBACK";

// ---------------------------------------------------------------------------------------------
// Version 1

inline constexpr const char* kV1CreateConversations =
    "CREATE TABLE conversations ("
    " id INTEGER PRIMARY KEY,"
    " title TEXT NOT NULL,"
    " model TEXT NOT NULL DEFAULT '',"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL)";
// The metrics columns are NULL for messages that no run produced (user and system messages).
inline constexpr const char* kV1CreateMessages =
    "CREATE TABLE messages ("
    " id INTEGER PRIMARY KEY,"
    " conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
    " role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),"
    " text TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " ttft_ms REAL,"
    " prefill_tokens INTEGER,"
    " prefill_tok_s REAL,"
    " decode_tokens INTEGER,"
    " decode_tok_s REAL,"
    " stop_reason TEXT)";
inline constexpr const char* kV1CreateMessagesIndex =
    "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)";
inline constexpr const char* kV1CreateDocuments =
    "CREATE TABLE documents ("
    " id INTEGER PRIMARY KEY,"
    " path TEXT NOT NULL,"
    " content_hash TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL,"
    " token_count INTEGER NOT NULL DEFAULT 0,"
    " page_count INTEGER NOT NULL DEFAULT 0,"
    " added_ms INTEGER NOT NULL)";
inline constexpr const char* kV1CreateConversationDocuments =
    "CREATE TABLE conversation_documents ("
    " conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
    " document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
    " attached_ms INTEGER NOT NULL,"
    " PRIMARY KEY (conversation_id, document_id)) WITHOUT ROWID";
inline constexpr const char* kV1CreateConversationDocumentsIndex =
    "CREATE INDEX conversation_documents_by_document ON conversation_documents(document_id)";
// One measured request: prompt_tokens is the context length the chart puts on its x axis.
inline constexpr const char* kV1CreateRuns =
    "CREATE TABLE runs ("
    " id INTEGER PRIMARY KEY,"
    " model TEXT NOT NULL,"
    " backend TEXT NOT NULL,"
    " prompt_tokens INTEGER NOT NULL,"
    " ttft_ms REAL NOT NULL,"
    " prefill_tok_s REAL NOT NULL,"
    " decode_tok_s REAL NOT NULL,"
    " peak_memory_bytes INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL)";
inline constexpr const char* kV1SetVersion = "PRAGMA user_version = 1";

inline constexpr const char* kMigrationToV1[] = {
    kV1CreateConversations,
    kV1CreateMessages,
    kV1CreateMessagesIndex,
    kV1CreateDocuments,
    kV1CreateConversationDocuments,
    kV1CreateConversationDocumentsIndex,
    kV1CreateRuns,
    kV1SetVersion,
};

// ---------------------------------------------------------------------------------------------
// Version 2: runs know their prefill attention (mode, and density = the fraction of causal
// attention tiles computed; runs of version 1 were all dense) and how many prompt tokens came
// from the KV cache; documents get a display title (backfilled with the file name of the path).

inline constexpr const char* kV2RunsAddAttentionMode =
    "ALTER TABLE runs ADD COLUMN attention_mode TEXT NOT NULL DEFAULT 'dense'";
inline constexpr const char* kV2RunsAddDensity = "ALTER TABLE runs ADD COLUMN density REAL NOT NULL DEFAULT 1.0";
inline constexpr const char* kV2RunsAddReusedTokens =
    "ALTER TABLE runs ADD COLUMN reused_tokens INTEGER NOT NULL DEFAULT 0";
inline constexpr const char* kV2CreateRunsSeriesIndex =
    "CREATE INDEX runs_by_series ON runs(model, attention_mode, prompt_tokens)";
inline constexpr const char* kV2DocumentsAddTitle = "ALTER TABLE documents ADD COLUMN title TEXT NOT NULL DEFAULT ''";
// rtrim(path, <every character of path but '/'>) leaves the path up to its last '/'.
inline constexpr const char* kV2BackfillDocumentTitles =
    "UPDATE documents SET title = substr(path, length(rtrim(path, replace(path, '/', ''))) + 1)";
inline constexpr const char* kV2BackfillEmptyDocumentTitles = "UPDATE documents SET title = path WHERE title = ''";
inline constexpr const char* kV2SetVersion = "PRAGMA user_version = 2";

inline constexpr const char* kMigrationToV2[] = {
    kV2RunsAddAttentionMode, kV2RunsAddDensity,         kV2RunsAddReusedTokens,         kV2CreateRunsSeriesIndex,
    kV2DocumentsAddTitle,    kV2BackfillDocumentTitles, kV2BackfillEmptyDocumentTitles, kV2SetVersion,
};

// ---------------------------------------------------------------------------------------------
// Version 3: a conversation keeps the settings it was held with (the app's JSON; '' = unknown),
// so reopening it from the history restores them.

inline constexpr const char* kV3ConversationsAddSettings =
    "ALTER TABLE conversations ADD COLUMN settings TEXT NOT NULL DEFAULT ''";
inline constexpr const char* kV3SetVersion = "PRAGMA user_version = 3";

inline constexpr const char* kMigrationToV3[] = {kV3ConversationsAddSettings, kV3SetVersion};

// ---------------------------------------------------------------------------------------------
// Version 4: token counts of texts (the units of documents indexed for packing), keyed by
// TokenCountCache::key (the tokenizer and the text), so a document opened again is not counted
// again. used_ms orders them for pruning (the least recently used go first).

inline constexpr const char* kV4CreateTokenCounts =
    "CREATE TABLE token_counts ("
    " key TEXT PRIMARY KEY,"
    " tokens INTEGER NOT NULL,"
    " used_ms INTEGER NOT NULL) WITHOUT ROWID";
inline constexpr const char* kV4CreateTokenCountsIndex = "CREATE INDEX token_counts_by_use ON token_counts(used_ms)";
inline constexpr const char* kV4SetVersion = "PRAGMA user_version = 4";

inline constexpr const char* kMigrationToV4[] = {kV4CreateTokenCounts, kV4CreateTokenCountsIndex, kV4SetVersion};

// ---------------------------------------------------------------------------------------------
// Version 5: the text of documents as read (PDFs: parsing the R reference manual's 2,415 pages
// takes seconds, looking it up milliseconds), one row per section, with a full-text index over it
// (FTS5, external content, kept in step by triggers) that the history search uses. document_index
// says which documents have their text here, which loader version read it (another version reads
// the file again), what the document's header holds besides its sections (JSON: page labels,
// notices, citing by page number) and when it was last used: the least recently used go first when
// the texts pass their size limit. Deleting a document deletes its text and its index entries.

inline constexpr const char* kV5CreateDocumentIndex =
    "CREATE TABLE document_index ("
    " document_id INTEGER PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,"
    " read_version INTEGER NOT NULL,"
    " detail TEXT NOT NULL,"
    " text_bytes INTEGER NOT NULL,"
    " indexed_ms INTEGER NOT NULL,"
    " used_ms INTEGER NOT NULL)";
inline constexpr const char* kV5CreateDocumentIndexByUse = "CREATE INDEX document_index_by_use ON document_index(used_ms)";
inline constexpr const char* kV5CreateDocumentSections =
    "CREATE TABLE document_sections ("
    " id INTEGER PRIMARY KEY,"
    " document_id INTEGER NOT NULL REFERENCES document_index(document_id) ON DELETE CASCADE,"
    " ord INTEGER NOT NULL,"
    " page_index INTEGER NOT NULL,"
    " page_label TEXT NOT NULL,"
    " file TEXT NOT NULL,"
    " first_line INTEGER NOT NULL,"
    " last_line INTEGER NOT NULL,"
    " text TEXT NOT NULL,"
    " UNIQUE (document_id, ord))";
inline constexpr const char* kV5CreateSectionsFts =
    "CREATE VIRTUAL TABLE document_sections_fts USING fts5(text, content = 'document_sections',"
    " content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2')";
inline constexpr const char* kV5CreateSectionsInsertTrigger =
    "CREATE TRIGGER document_sections_ai AFTER INSERT ON document_sections BEGIN"
    " INSERT INTO document_sections_fts (rowid, text) VALUES (new.id, new.text); END";
inline constexpr const char* kV5CreateSectionsDeleteTrigger =
    "CREATE TRIGGER document_sections_ad AFTER DELETE ON document_sections BEGIN"
    " INSERT INTO document_sections_fts (document_sections_fts, rowid, text) VALUES ('delete', old.id, old.text); END";
inline constexpr const char* kV5SetVersion = "PRAGMA user_version = 5";

inline constexpr const char* kMigrationToV5[] = {
    kV5CreateDocumentIndex,         kV5CreateDocumentIndexByUse,    kV5CreateDocumentSections, kV5CreateSectionsFts,
    kV5CreateSectionsInsertTrigger, kV5CreateSectionsDeleteTrigger, kV5SetVersion,
};

// The statements that take a database from version - 1 to version (1..kSchemaVersion).
std::span<const char* const> migration_to(int version);

// ---------------------------------------------------------------------------------------------
// Statements of the current schema. Values are always bound ('?'), never spliced into the text.

// Conversations
inline constexpr const char* kInsertConversation =
    "INSERT INTO conversations (title, model, created_ms, updated_ms) VALUES (?, ?, ?, ?)";
inline constexpr const char* kSelectConversation =
    "SELECT id, title, model, created_ms, updated_ms, settings FROM conversations WHERE id = ?";
inline constexpr const char* kSelectConversations =
    "SELECT id, title, model, created_ms, updated_ms, settings FROM conversations ORDER BY updated_ms DESC, id DESC";
// Conversations whose title or any message contains the text (LIKE, with \ escaping % and _), or
// one of whose documents' text matches it (an FTS5 query: the words as a phrase, the last one as a
// prefix).
inline constexpr const char* kSearchConversations =
    "SELECT id, title, model, created_ms, updated_ms, settings FROM conversations c"
    " WHERE c.title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
    " AND m.text LIKE ? ESCAPE '\\') OR EXISTS (SELECT 1 FROM conversation_documents cd"
    " JOIN document_sections s ON s.document_id = cd.document_id WHERE cd.conversation_id = c.id"
    " AND s.id IN (SELECT rowid FROM document_sections_fts WHERE document_sections_fts MATCH ?))"
    " ORDER BY updated_ms DESC, id DESC";
inline constexpr const char* kSetConversationSettings = "UPDATE conversations SET settings = ? WHERE id = ?";
inline constexpr const char* kRenameConversation = "UPDATE conversations SET title = ?, updated_ms = ? WHERE id = ?";
inline constexpr const char* kTouchConversation = "UPDATE conversations SET updated_ms = ? WHERE id = ?";
inline constexpr const char* kDeleteConversation = "DELETE FROM conversations WHERE id = ?";

// Messages
inline constexpr const char* kInsertMessage =
    "INSERT INTO messages (conversation_id, role, text, created_ms, ttft_ms, prefill_tokens, prefill_tok_s,"
    " decode_tokens, decode_tok_s, stop_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
inline constexpr const char* kSelectMessages =
    "SELECT id, conversation_id, role, text, created_ms, ttft_ms, prefill_tokens, prefill_tok_s, decode_tokens,"
    " decode_tok_s, stop_reason FROM messages WHERE conversation_id = ? ORDER BY id";
inline constexpr const char* kCountMessages = "SELECT count(*) FROM messages WHERE conversation_id = ?";

// Documents. An upsert keeps the row (and its id and added time) of a known content hash and
// refreshes what may have changed: where the file is, its title, kind and counts.
inline constexpr const char* kUpsertDocument =
    "INSERT INTO documents (path, title, content_hash, kind, token_count, page_count, added_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (content_hash) DO UPDATE SET path = excluded.path, title = excluded.title,"
    " kind = excluded.kind, token_count = excluded.token_count, page_count = excluded.page_count"
    " RETURNING id";
inline constexpr const char* kSelectDocument =
    "SELECT id, path, title, content_hash, kind, token_count, page_count, added_ms FROM documents WHERE id = ?";
inline constexpr const char* kSelectDocumentByHash =
    "SELECT id, path, title, content_hash, kind, token_count, page_count, added_ms FROM documents"
    " WHERE content_hash = ?";
inline constexpr const char* kSelectDocuments =
    "SELECT id, path, title, content_hash, kind, token_count, page_count, added_ms FROM documents ORDER BY id";
inline constexpr const char* kDeleteDocument = "DELETE FROM documents WHERE id = ?";
inline constexpr const char* kAttachDocument =
    "INSERT OR IGNORE INTO conversation_documents (conversation_id, document_id, attached_ms) VALUES (?, ?, ?)";
inline constexpr const char* kDetachDocument =
    "DELETE FROM conversation_documents WHERE conversation_id = ? AND document_id = ?";
inline constexpr const char* kSelectConversationDocuments =
    "SELECT d.id, d.path, d.title, d.content_hash, d.kind, d.token_count, d.page_count, d.added_ms"
    " FROM conversation_documents cd JOIN documents d ON d.id = cd.document_id"
    " WHERE cd.conversation_id = ? ORDER BY cd.attached_ms, d.id";

// Token counts
inline constexpr const char* kSelectTokenCount = "SELECT tokens FROM token_counts WHERE key = ?";
inline constexpr const char* kUpsertTokenCount =
    "INSERT INTO token_counts (key, tokens, used_ms) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, used_ms = excluded.used_ms";
inline constexpr const char* kCountTokenCounts = "SELECT count(*) FROM token_counts";
// Keeps the newest ? rows.
inline constexpr const char* kPruneTokenCounts =
    "DELETE FROM token_counts WHERE key IN (SELECT key FROM token_counts ORDER BY used_ms DESC, key LIMIT -1 OFFSET ?)";

// Documents' text (version 5)
// A document read before any conversation holds it: its row without counts (an upsert that keeps
// the counts a conversation recorded).
inline constexpr const char* kUpsertReadDocument =
    "INSERT INTO documents (path, title, content_hash, kind, page_count, added_ms) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (content_hash) DO UPDATE SET path = excluded.path, title = excluded.title,"
    " page_count = excluded.page_count RETURNING id";
inline constexpr const char* kDeleteDocumentIndex = "DELETE FROM document_index WHERE document_id = ?";
inline constexpr const char* kInsertDocumentIndex =
    "INSERT INTO document_index (document_id, read_version, detail, text_bytes, indexed_ms, used_ms)"
    " VALUES (?, ?, ?, ?, ?, ?)";
inline constexpr const char* kInsertDocumentSection =
    "INSERT INTO document_sections (document_id, ord, page_index, page_label, file, first_line, last_line, text)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
inline constexpr const char* kSelectDocumentIndex =
    "SELECT d.id, d.kind, d.page_count, i.detail FROM documents d JOIN document_index i ON i.document_id = d.id"
    " WHERE d.content_hash = ? AND i.read_version = ?";
inline constexpr const char* kSelectDocumentSections =
    "SELECT page_index, page_label, file, first_line, last_line, text FROM document_sections"
    " WHERE document_id = ? ORDER BY ord";
inline constexpr const char* kTouchDocumentIndex = "UPDATE document_index SET used_ms = ? WHERE document_id = ?";
inline constexpr const char* kSumDocumentText = "SELECT coalesce(sum(text_bytes), 0) FROM document_index";
inline constexpr const char* kCountDocumentIndex = "SELECT count(*) FROM document_index";
// Least recently used first (the one just saved last).
inline constexpr const char* kSelectDocumentIndexByUse =
    "SELECT document_id, text_bytes FROM document_index ORDER BY document_id = ?, used_ms, document_id";
// Sections whose text matches an FTS5 query.
inline constexpr const char* kCountSectionMatches =
    "SELECT count(*) FROM document_sections_fts WHERE document_sections_fts MATCH ?";

// Runs
inline constexpr const char* kInsertRun =
    "INSERT INTO runs (model, backend, attention_mode, density, prompt_tokens, reused_tokens, ttft_ms,"
    " prefill_tok_s, decode_tok_s, peak_memory_bytes, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
inline constexpr const char* kSelectRuns =
    "SELECT id, model, backend, attention_mode, density, prompt_tokens, reused_tokens, ttft_ms, prefill_tok_s,"
    " decode_tok_s, peak_memory_bytes, created_ms FROM runs ORDER BY created_ms, id";
inline constexpr const char* kSelectRunsOfModel =
    "SELECT id, model, backend, attention_mode, density, prompt_tokens, reused_tokens, ttft_ms, prefill_tok_s,"
    " decode_tok_s, peak_memory_bytes, created_ms FROM runs WHERE model = ? ORDER BY created_ms, id";
// The chart's points: runs that produced a first token, full prefills apart from runs that
// reused a cached prefix (their TTFT says little about the length, so they are a series of their own).
inline constexpr const char* kSelectTtftSeries =
    "SELECT model, attention_mode, prompt_tokens, ttft_ms, reused_tokens > 0 AS reused FROM runs"
    " WHERE ttft_ms > 0"
    " ORDER BY model, attention_mode, reused, prompt_tokens, created_ms, id";
inline constexpr const char* kSelectTtftSeriesOfModel =
    "SELECT model, attention_mode, prompt_tokens, ttft_ms, reused_tokens > 0 AS reused FROM runs"
    " WHERE model = ? AND ttft_ms > 0"
    " ORDER BY attention_mode, reused, prompt_tokens, created_ms, id";

}  // namespace folio::store::sql
