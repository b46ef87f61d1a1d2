// Documents larger than the context: choose the sections that matter for a question and lay them
// out in document order, with a visible marker for every gap ("[pages 312-318 omitted]"), so the
// model and the user see exactly what is in and what is out. Qt-free: the app and folio-cli pack
// through the same function (Conversation does it when a prompt does not fit and packing is asked).
//
// Ranking is lexical (Okapi BM25 over the sections' words; no embedding model): a section scores by
// the question's words it holds, weighted by how rare they are in the documents; a section next to
// a strong hit gets half its neighbour's score (answers spill over page breaks). A small fixed share
// of the budget keeps each document's first sections (title pages, outline, headers of a file).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/chat/chat_document.h"

namespace folio::chat {

enum class FitMode {
  Error,      // report that it does not fit and run nothing (the app asks the user)
  Relevant,   // the sections most relevant to the question, in document order
  Beginning,  // each document's first sections, in order
};
const char* fit_mode_name(FitMode m);
FitMode fit_mode_from_name(const std::string& name);  // throws Error(BadArgument)

// Words BM25 counts: lower-cased runs of letters, digits and '_' (bytes >= 0x80 count as letters,
// so UTF-8 words stay whole), two bytes or longer, without the commonest English words.
std::vector<std::string> index_terms(std::string_view text);

// BM25 over sections (k1 = 1.2, b = 0.75). Built once per set of documents.
class SectionIndex {
 public:
  SectionIndex() = default;
  // skip (when given, one flag per section in order): sections left out of the index (they score 0).
  explicit SectionIndex(const std::vector<Document>& docs, const std::vector<char>* skip = nullptr);
  // Score of every section, in document order (docs[0]'s sections first).
  std::vector<double> scores(std::string_view question) const;
  size_t size() const { return lengths_.size(); }
  // How rare a word (as index_terms() gives it) is among the sections: BM25's idf; a word no section
  // holds gets the idf of a word found once.
  double idf(const std::string& term) const;

 private:
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> postings_;  // term -> (section, count)
  std::vector<std::string> terms_;                                    // sorted, ids are positions
  std::vector<uint32_t> lengths_;                                     // words per section
  double mean_length_ = 1.0;
};

struct PackResult {
  std::vector<Document> docs;  // the chosen sections in order, gaps as marker sections
  int64_t kept_sections = 0, total_sections = 0;
  int64_t estimated_tokens = 0;  // the packed documents' layout, as counted section by section
  std::string summary;           // one line: what is in, what is out
  std::vector<size_t> kept_units;  // indices into PackingIndex::units() (all documents', in order)
  // Per document, what of it went in: "" = all of it, else "pages 1-3, 312-318" (PDFs), "lines 1-40,
  // 200-260" (a text file), "3 of 42 files: a.cpp, b.cpp, c.cpp" (a folder).
  std::vector<std::string> used;
};

// The units a question needs most: those scoring at least half the best BM25 score, at most
// `limit`, strongest first (empty when no unit holds a word of the question).
std::vector<size_t> strongest_units(const class PackingIndex& index, std::string_view question, size_t limit = 5);

// What packing needs that does not depend on the question, built once per set of documents: the
// documents cut into units (PDF pages, windows of lines of files), each unit's laid-out tokens, the
// fixed cost of each document's header and footer, and the BM25 index over the units.
class PackingIndex {
 public:
  // count_tokens counts a laid-out piece (the sum of the pieces is the estimate; the caller checks
  // the real prompt). A unit counted above max_unit_tokens (which count_tokens may stop counting
  // at) can never be packed and is left out of the word index: a one-line document of many
  // megabytes costs neither its full token count nor an index of all its words.
  // Documents far larger than the budget (units of more than exact_bytes in all) are not counted
  // unit by unit: a sample of the first exact_sample_bytes gives tokens per byte, every other unit
  // is estimated from its size, and pack_documents() counts exactly only the units it is about to
  // keep. So packing a 100 MB document costs time in proportion to the budget, not to the file.
  PackingIndex(const std::vector<Document>& docs, const std::function<int64_t(const std::string&)>& count_tokens,
               int64_t max_unit_tokens = INT64_MAX, size_t exact_bytes = size_t{8} << 20,
               size_t exact_sample_bytes = size_t{256} << 10);
  // The documents as given; one of more than kKeepWholeBytes of text is kept without its sections
  // (when packing keeps all of it, its units are laid out instead).
  const std::vector<Document>& documents() const { return original_; }
  static constexpr size_t kKeepWholeBytes = size_t{32} << 20;
  const std::vector<Document>& units() const { return units_; }
  size_t unit_count() const { return unit_tokens_.size(); }
  // Tokens of every document's units laid out whole, headers included.
  int64_t total_tokens() const;
  const SectionIndex& bm25() const { return bm25_; }

 private:
  friend PackResult pack_documents(const PackingIndex& index, std::string_view question, int64_t budget_tokens,
                                   FitMode mode);
  std::vector<Document> original_;
  std::vector<Document> units_;
  std::vector<int64_t> unit_tokens_;  // per unit in document order: its layout + a separator
  // Set when units are estimated: which still are (pack_documents counts a unit before keeping it).
  std::vector<char> estimated_;
  std::function<int64_t(const std::string&)> count_;
  int64_t separator_tokens_ = 0;
  int64_t fixed_tokens_ = 0;          // every document's header, footer and separators
  int64_t marker_tokens_ = 0;         // a gap marker and its separator
  SectionIndex bm25_;
};

// The documents' budget for a packing: the context less the answer's reserve and the rest of the
// prompt (template, history, question: fixed_tokens), and a tenth of the context (at most 2,048
// tokens) left for the conversation to grow, so that follow-ups can keep the packing (and its KV).
// The headroom is not taken when it would leave the documents less than twice its size. The app,
// folio-cli (both through Conversation) and folio-retrieval's measurements pack to this budget.
int64_t packing_budget(int64_t context_tokens, int64_t reserve_tokens, int64_t fixed_tokens);

// Packs the indexed documents into about budget_tokens tokens of layout. A document that keeps
// every section comes back unchanged.
PackResult pack_documents(const PackingIndex& index, std::string_view question, int64_t budget_tokens, FitMode mode);
// The same, indexing `docs` first.
PackResult pack_documents(const std::vector<Document>& docs, std::string_view question, int64_t budget_tokens,
                          FitMode mode, const std::function<int64_t(const std::string&)>& count_tokens);

}  // namespace folio::chat
