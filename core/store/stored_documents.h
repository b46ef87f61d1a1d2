// The store as core/docs' document cache: the text of PDFs as read, kept in the database's
// document_sections table (schema version 5) by content hash, so a PDF opened again (in another
// conversation, reopened from the history, after a restart) is looked up instead of parsed, and its
// text is searchable from the history. Used on the thread of the Database it is given (the app
// reads documents on pool threads: each read opens its own Database on the same file).
#pragma once

#include <QString>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/docs/ingest.h"
#include "core/store/store.h"

namespace folio::store {

class StoredDocuments : public folio::docs::DocumentCache {
 public:
  // The texts kept are at most max_text_bytes in all (the least recently used go first).
  static constexpr int64_t kDefaultMaxTextBytes = int64_t{512} << 20;
  explicit StoredDocuments(Database& db, int64_t max_text_bytes = kDefaultMaxTextBytes)
      : db_(db), max_text_bytes_(max_text_bytes) {}

  std::optional<folio::docs::Document> find(const QString& content_hash, int read_version) override;
  // A database that cannot be written loses the copy, not the document: the error is kept in problem().
  // With defer_writes set, put() only holds the document (its sections are shared, not copied) for
  // the caller to save later, off the path to the user (save_deferred, e.g. on another thread).
  void put(const folio::docs::Document& doc, int read_version) override;
  void set_defer_writes(bool defer) { defer_ = defer; }
  struct Deferred {
    folio::docs::Document doc;
    int read_version = 0;
  };
  std::vector<Deferred> take_deferred() { return std::exchange(deferred_, {}); }
  // Saves what put() held into the database at path (its own connection, on the calling thread);
  // returns "" or why it could not.
  static QString save_deferred(const QString& database_path, const std::vector<Deferred>& deferred,
                               int64_t max_text_bytes = kDefaultMaxTextBytes);

  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }
  const QString& problem() const { return problem_; }

 private:
  Database& db_;
  int64_t max_text_bytes_;
  int64_t hits_ = 0, misses_ = 0;
  QString problem_;
  bool defer_ = false;
  std::vector<Deferred> deferred_;
};

}  // namespace folio::store
