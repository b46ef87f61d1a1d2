// Grounded answers: after an answer, the passages of the documents that support it, found whether
// or not the model wrote citations. Each statement of the answer (a sentence or a list item) is
// matched against the documents' paragraphs and pages with BM25 (context packing's ranking; no
// embedding model), and a passage counts as support only when it holds most of the statement's own
// words weighted by their rarity (a passage that matches only the question's words does not ground
// an answer). Qt-free: the app shows the passages under the answer, folio-cli --sources prints them.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/chat/chat_document.h"
#include "core/chat/context_packing.h"

namespace folio::chat {

struct SourcePassage {
  size_t document = 0;     // index into the documents grounded against
  size_t section = 0;      // index into that document's sections (the page, or the file's part)
  int page_index = -1;     // PDF: 0-based page; -1 otherwise
  std::string page_label;  // PDF: the label the page is cited by
  std::string file;        // text / source tree: path relative to the document root
  int first_line = 0;      // files: the matching lines (1-based, inclusive); 0 for PDF pages
  int last_line = 0;
  std::string quote;            // the matching lines on one line, at most about 300 bytes ("…" when cut)
  double support = 0.0;         // share (0..1) of the statement's weighted words the passage holds
  std::vector<int> statements;  // which answer_statements() it supports, in order
};

// Where a passage is, as a citation reads: "manual.pdf, p. 12", "src/engine.cpp:40-58", "notes.md:7".
std::string source_location(const Document& doc, const SourcePassage& passage);

struct GroundingOptions {
  size_t max_sources = 4;    // the strongest passages, at most this many
  double min_support = 0.5;  // the share of a statement's weighted words a passage must hold
};

// The statements of an answer: its sentences and list items, without Markdown marks and without the
// citations written in them ("(p. 12)", "(src/a.cpp:4-9)").
std::vector<std::string> answer_statements(std::string_view answer);

// The documents cut into passages (PDF pages; paragraphs of text files, headings kept with the text
// under them; blocks of at most 12 lines of source files) and indexed once per set of documents.
class GroundingIndex {
 public:
  explicit GroundingIndex(std::vector<Document> docs);
  const std::vector<Document>& documents() const { return docs_; }
  size_t passage_count() const { return units_.size(); }

  // The passages that support the answer's statements, the strongest first. The question only
  // completes a statement too short to find alone ("About 14 months."); a statement must find its
  // own words in a passage.
  std::vector<SourcePassage> ground(std::string_view answer, std::string_view question,
                                    const GroundingOptions& options = {}) const;

 private:
  struct Unit {
    size_t doc = 0, section = 0;
    size_t first = 0, last = 0;  // lines of the section's text, [first, last)
  };
  std::vector<Document> docs_;
  std::vector<std::vector<std::string>> section_lines_;  // per section of every document, in order
  std::vector<size_t> section_base_;                     // first entry of each document in section_lines_
  std::vector<Unit> units_;
  SectionIndex bm25_;

  std::vector<Document> build_units();
  const std::vector<std::string>& lines_of(size_t doc, size_t section) const {
    return section_lines_[section_base_[doc] + section];
  }
};

}  // namespace folio::chat
