// Token counts of documents with the engine's tokenizer, whether they fit a context, and the one
// way to make a document smaller: truncate_document(), called only on the user's choice, which
// keeps the first N tokens and says so visibly in the laid-out text and in Document::notices.
#pragma once

#include <QByteArray>
#include <QHash>
#include <QString>
#include <QVector>
#include <cstdint>
#include <mutex>

#include "core/chat/token_count_cache.h"
#include "core/docs/document.h"
#include "core/docs/prompt_layout.h"
#include "core/tokenizer/tokenizer.h"

namespace folio::docs {

// Counts tokens of laid-out documents (Tokenizer::encode without BOS, no special-token parsing).
// Each distinct laid-out text is encoded once: counts are cached by the SHA-256 of that text (so
// the same document loaded twice, or re-laid out unchanged, costs nothing). Thread-safe.
class TokenCounter {
 public:
  explicit TokenCounter(const folio::Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  const folio::Tokenizer& tokenizer() const { return tokenizer_; }

  int64_t count(const Document& doc, const LayoutOptions& options = {});
  // Uncached count of any text.
  int64_t count_text(const QString& text) const;
  // Tokens between two laid-out documents (kDocumentSeparator).
  int64_t separator_tokens();

  int64_t cache_size() const;
  int64_t encodes() const;  // how many texts were actually encoded through count()
  // Also keeps counts in `cache` (e.g. the app's store), under the tokenizer's name, so a document
  // counted in an earlier run is not encoded again. Null: off. The cache is called under this
  // counter's lock (the store's connection belongs to one thread: count on that thread).
  void set_persistent_cache(folio::chat::TokenCountCache* cache, std::string tokenizer_id);

 private:
  const folio::Tokenizer& tokenizer_;
  mutable std::mutex mutex_;
  QHash<QByteArray, int64_t> cache_;
  int64_t encodes_ = 0;
  int64_t separator_ = -1;
  folio::chat::TokenCountCache* persistent_ = nullptr;
  std::string tokenizer_id_;
};

// Keeping the first keep_tokens tokens of one document would make the set fit.
struct TruncationOption {
  int document = -1;
  int64_t keep_tokens = 0;  // pass to truncate_document()
  int64_t document_tokens = 0;
  QString description;  // "keep the first 41,000 of 250,000 tokens of manual.pdf (16%)"
};

struct Budget {
  int64_t context_tokens = 0;
  int64_t reserve_tokens = 0;     // the question, system prompt and answer
  int64_t available_tokens = 0;   // context - reserve
  QVector<int64_t> document_tokens;  // per document, as laid out
  int64_t separator_tokens = 0;   // between documents, all together
  int64_t total_tokens = 0;       // sum of documents + separators
  bool fits = false;
  int64_t over_by = 0;            // total - available when it does not fit
  // Options when it does not fit (empty when it fits):
  QVector<int> drop_any_one;      // removing any one of these alone makes the rest fit
  QVector<int> drop_largest;      // removing these (largest first) makes the rest fit
  QVector<TruncationOption> truncations;  // per document whose truncation alone makes the set fit
  QString summary;                // one line for the user
};

// Counts the documents (cached) and compares with context_tokens - reserve_tokens.
Budget plan_budget(const QVector<Document>& docs, TokenCounter& counter, int64_t context_tokens,
                   int64_t reserve_tokens, const LayoutOptions& options = {});

// Keeps the first keep_tokens tokens of a document's laid-out text (heading, the kept pages or
// lines and the notice included; at most keep_tokens as counted by counter): whole sections while
// they fit, then the first lines (PDF pages: the first words) of the next one. The laid-out text
// then ends with "[... truncated by the user: the rest of manual.pdf (pages 120-397) is not
// included ...]" and Document::notices says the same. A document that already fits comes back
// unchanged. Throws DocumentError(TooLarge) when keep_tokens cannot even hold the heading and
// the notice. Pass the document as loaded: a truncated one keeps only what it has left (to give
// the user more of it again, truncate the loaded original with the larger limit).
Document truncate_document(const Document& doc, int64_t keep_tokens, TokenCounter& counter,
                           const LayoutOptions& options = {});

// The part of one document the user chose to keep (the fit dialog): a range of a PDF's pages, or
// some files of a folder. Empty = the whole document.
struct PartSelection {
  int first_page = -1;  // PDF: 0-based page indices, inclusive; -1 = not chosen by pages
  int last_page = -1;
  QStringList files;  // text / source tree: the files to keep (paths as in Document::files)
  bool empty() const { return first_page < 0 && files.isEmpty(); }
  bool operator==(const PartSelection&) const = default;
  // "pages 3-40 of 397", "4 of 42 files"
  QString describe(const Document& doc) const;
};

// The document with only the chosen pages or files. Its laid-out text ends with a visible notice
// of what the user left out ("[... left out by the user: pages 1-2 and 41-397 of manual.pdf are not
// included ...]") and Document::notices says the same, like truncate_document(). An empty
// selection gives the document unchanged; one that keeps nothing throws DocumentError(Empty).
Document select_parts(const Document& doc, const PartSelection& selection);

}  // namespace folio::docs
