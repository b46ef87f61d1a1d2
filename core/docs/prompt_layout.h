// Laying documents into prompt text with citation markers, the system-prompt sentence that tells
// the model how to cite, and parsing/resolving the citations of an answer into link targets.
// The layout itself is core/chat's (Qt-free, shared with folio-cli); these are its Qt faces.
//
// Layout of one document (parts separated by a blank line):
//   PDF:          [document: manual.pdf, 397 pages]  [p. 12] <page text>  ...  [end of document: manual.pdf]
//   text file:    [document: notes.md]  [file: notes.md, lines 1-200] <lines>  ...  [end of document: notes.md]
//   source tree:  [folder: folio, 42 files]  [file: src/engine.cpp, lines 1-200] <lines>  ...  [end of folder: folio]
// A document cut by truncate_document() has its notice "[... truncated by the user: ...]" before the end marker.
#pragma once

#include <QString>
#include <QStringList>
#include <QVector>

#include "core/chat/chat_document.h"
#include "core/docs/document.h"

namespace folio::docs {

// The document as core/chat lays it out (PDF sections carry the label they are cited by).
folio::chat::Document chat_document(const Document& doc);
// The same, letting go of each section's text as it is converted (a large document is not held
// whole in both forms at once).
folio::chat::Document chat_document(Document&& doc);
std::vector<folio::chat::Document> chat_documents(const QVector<Document>& docs);

struct LayoutOptions {
  bool number_lines = false;  // files: put each line's number before it ("40| ...") (more tokens)
};

// The parts of one document's layout, in order; layout_document() joins them with kPartSeparator.
QStringList layout_parts(const Document& doc, const LayoutOptions& options = {});
inline constexpr const char* kPartSeparator = "\n\n";
// The text of one section as laid out (its marker line, then its text).
QString layout_section(const Document& doc, const Section& section, const LayoutOptions& options = {});
QString layout_document(const Document& doc, const LayoutOptions& options = {});
// All documents, separated by kDocumentSeparator (the text to place before the question).
inline constexpr const char* kDocumentSeparator = "\n\n";
QString layout_documents(const QVector<Document>& docs, const LayoutOptions& options = {});

// The system-prompt sentences telling the model how to cite these documents (page labels for PDFs,
// path:first-last for files; the document's name when there are several PDFs).
QString citation_instruction(const QVector<Document>& docs);

enum class CitationKind { Pages, FileLines };

// A citation as written in an answer.
struct Citation {
  qsizetype start = 0;   // position in the answer (QString index)
  qsizetype length = 0;
  QString text;          // the matched text ("pp. 3-4", "src/x.cpp:40-58")
  CitationKind kind = CitationKind::Pages;
  QString first_label;   // Pages: as written ("12", "ix")
  QString last_label;    // Pages: end of a range, or = first_label
  QString file;          // FileLines: the path as written
  int first_line = 0;    // FileLines
  int last_line = 0;     // FileLines: = first_line for one line
};

// Finds "p. 12", "pp. 3-4", "page 7", "pages 7 to 9", "src/x.cpp:40-58", "src/x.cpp line 40",
// "src/x.cpp, lines 40-58", "lines 40-58 of src/x.cpp"; in order, without overlaps.
QVector<Citation> parse_citations(const QString& answer);

// Where a citation points.
struct CitationTarget {
  Citation citation;
  int document = -1;     // index into the documents
  int first_page = -1;   // Pages: 0-based page indices (inclusive)
  int last_page = -1;
  QString file;          // FileLines: the file's path as in the document (relative)
  int first_line = 0;    // FileLines: clamped to the file's lines
  int last_line = 0;
  int section = -1;      // index into documents[document].sections of the section holding the
                         // start, or -1 (e.g. a page without text, or cut by truncation)
};

// The citations of an answer that point into the documents; the others (unknown page labels,
// files, lines past the end) are left out, to be shown as plain text. A page citation goes to the
// PDF whose name is written just before it ("manual.pdf, p. 12"), else to the first PDF with that
// label. A file citation matches a path exactly, or as the unique path ending in what is written.
QVector<CitationTarget> resolve_citations(const QString& answer, const QVector<Document>& docs);

// Every citation written in an answer, checked against the documents: where it points, or, when it
// points nowhere, why ("manual.pdf has no page 12 (its pages are 1-2)"), so the answer can flag it
// instead of linking it.
struct CitationCheck {
  Citation citation;
  bool found = false;
  CitationTarget target;  // when found
  QString problem;        // when not found: one line for people
};
QVector<CitationCheck> check_citations(const QString& answer, const QVector<Document>& docs);

}  // namespace folio::docs
