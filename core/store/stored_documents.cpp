#include "core/store/stored_documents.h"

namespace folio::store {

std::optional<folio::docs::Document> StoredDocuments::find(const QString& content_hash, int read_version) {
  try {
    std::optional<folio::docs::Document> doc = db_.document_text(content_hash, read_version);
    ++(doc ? hits_ : misses_);
    return doc;
  } catch (const Error& e) {
    problem_ = QString::fromStdString(e.what());
    ++misses_;
    return std::nullopt;
  }
}

void StoredDocuments::put(const folio::docs::Document& doc, int read_version) {
  if (defer_) {
    deferred_.push_back({doc, read_version});
    return;
  }
  try {
    db_.save_document_text(doc, read_version, max_text_bytes_);
  } catch (const Error& e) {
    problem_ = QString::fromStdString(e.what());
  }
}

QString StoredDocuments::save_deferred(const QString& database_path, const std::vector<Deferred>& deferred,
                                      int64_t max_text_bytes) {
  try {
    Database db(database_path);
    for (const Deferred& d : deferred) db.save_document_text(d.doc, d.read_version, max_text_bytes);
    return {};
  } catch (const std::exception& e) {
    return QString::fromStdString(e.what());
  }
}

}  // namespace folio::store
