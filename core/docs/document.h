// A document as Folio holds it after ingestion: its text in sections that carry their source
// (a PDF page with its printed label, or a file's line range), so the prompt can mark them and
// answers can cite them.
#pragma once

#include <QString>
#include <QStringList>
#include <QVector>
#include <cstdint>

#include "core/common/error.h"

namespace folio::docs {

enum class DocumentKind { Pdf, Text, SourceTree };

struct Section {
  QString text;
  int page_index = -1;     // PDF: 0-based page; -1 otherwise
  QString page_label;      // PDF: the printed label ("ix", "12"); empty otherwise
  QString file;            // source tree / text: path relative to the document root
  int first_line = 0;      // 1-based, inclusive; 0 for PDF pages
  int last_line = 0;
  QString language;        // source files: "C++", "Python" ... from the extension
};

// Why a file of a source tree was left out (the reason text says it for people).
enum class SkipKind { Ignored, GitFolder, Binary, TooLarge, Generated, Empty, Symlink, Unreadable };

struct SkippedFile {
  QString path;    // relative to the root ("build/" for a whole folder)
  QString reason;  // "binary", "ignored by .gitignore", "minified", "larger than 1 MiB" ...
  SkipKind kind = SkipKind::Ignored;
};

// A source file of a tree or a text document: where its sections are and how many lines it has.
struct FileEntry {
  QString path;        // relative to the root, '/' separated
  QString language;
  int line_count = 0;
  int64_t bytes = 0;
  QString encoding;    // "UTF-8", "UTF-8 (BOM)", "UTF-16LE", "UTF-16BE", "Latin-1" ...
};

struct Document {
  QString path;           // what the user added
  QString title;          // file or folder name
  DocumentKind kind = DocumentKind::Text;
  QString content_hash;   // SHA-256 of the source bytes (hex)
  int page_count = 0;     // PDF pages, or files of a tree (1 for a text file)
  QVector<Section> sections;
  QVector<SkippedFile> skipped;
  QStringList notices;    // what the user should know (e.g. "pages 3-5 have no text layer")
  QStringList page_labels;   // PDF: the printed label of every page (pages without text too)
  // PDF: the printed labels repeat (e.g. a manual of several books, each from page 1), so pages
  // are marked and cited by their number in the file (1..page_count) instead; see citation_label().
  bool cite_by_page_number = false;
  QVector<FileEntry> files;  // text / source tree: every file read, in order (sorted paths)
  QString encoding;          // text documents: the encoding the bytes were decoded from

  // Set only by truncate_document() (token_budget.h): the visible notice the prompt layout puts
  // after the kept text, and the token limit it was cut to. Empty / 0 = the whole document.
  QString truncation_notice;
  int64_t truncated_to_tokens = 0;
  bool truncated() const { return !truncation_notice.isEmpty(); }
};

// How the prompt marks and answers cite a PDF page: its printed label, or its number in the file
// (1-based) when the labels repeat or are missing.
QString citation_label(const Document& doc, int page_index);

// "C++", "Python", "Markdown" ... for a file name; empty when unknown.
QString language_for_file(const QString& file_name);

// What went wrong reading a document, for the UI to react on (e.g. ask for a PDF's password).
enum class DocumentProblem {
  NotFound,        // no such file or folder
  Unreadable,      // no permission, I/O error
  Empty,           // a 0-byte file, a PDF without pages, a folder without readable files
  Encrypted,       // a password-protected PDF (no or wrong password given)
  Broken,          // not a PDF / damaged / truncated
  NoTextLayer,     // a PDF whose pages have no text (scanned images)
  Binary,          // not text (NUL bytes or mostly control bytes)
  TooLarge,        // over the size limit of the loader
  Cancelled,       // the user cancelled the load
};
const char* document_problem_name(DocumentProblem problem);

// The error every loader throws. what() is one line naming the file, what was wrong and what to
// do. It is a folio::Error (code FileNotFound, FileUnreadable, BadArgument or Cancelled), so code
// that catches folio::Error shows it as is.
class DocumentError : public folio::Error {
 public:
  DocumentError(DocumentProblem problem, const QString& path, const QString& message);
  DocumentProblem problem() const { return problem_; }
  const QString& path() const { return path_; }

 private:
  DocumentProblem problem_;
  QString path_;
};

// "3-5, 9, 12" from sorted values (labels or numbers), collapsing consecutive numeric runs.
QString join_ranges(const QVector<int>& sorted_numbers);

}  // namespace folio::docs
