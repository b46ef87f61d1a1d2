// Reading documents: PDFs through Qt PDF (text per page with printed labels), text files with
// encoding detection, and source trees (honouring .gitignore). Every loader is synchronous (the UI
// calls it on a worker thread), reports progress and can be cancelled between pages / files.
// Failures throw DocumentError (document.h): one line naming the file, the reason and what to do.
// Nothing is ever cut silently: a loader keeps the whole text or fails; only truncate_document()
// (token_budget.h), called on the user's choice, cuts.
#pragma once

#include <QByteArray>
#include <QString>
#include <functional>
#include <optional>

#include "core/docs/document.h"
#include "core/engine/engine.h"  // CancelToken

namespace folio::docs {

// done of total units (PDF pages, files of a tree; 0/1 then 1/1 for a text file).
using LoadProgressFn = std::function<void(int done, int total)>;

// Where load_pdf() finds the text of a PDF it read before, by the SHA-256 of the file's bytes, so a
// PDF opened again (after a restart too; the app's store keeps them: store::StoredDocuments) is not
// parsed again: the R reference manual's 2,415 pages take seconds to read and milliseconds to look
// up. Only PDFs read without a password are kept (the text of an encrypted PDF stays encrypted).
class DocumentCache {
 public:
  virtual ~DocumentCache() = default;
  // The document with these bytes as read_version's loader read it; nullopt when unknown.
  virtual std::optional<Document> find(const QString& content_hash, int read_version) = 0;
  // Keeps a document just read (its content_hash set). Failures to keep it are the cache's own
  // business: the document was read.
  virtual void put(const Document& doc, int read_version) = 0;
};
// The version of the PDF loader's output: a cached document read by another version is read again.
inline constexpr int kPdfReadVersion = 1;

struct LoadOptions {
  LoadProgressFn on_progress;
  const CancelToken* cancel = nullptr;  // polled between pages / files; throws DocumentError(Cancelled)
  QString pdf_password;                 // for password-protected PDFs
  int section_lines = 200;              // text and source files: lines per section
  int64_t max_source_file_bytes = 1 << 20;  // source trees: larger files are skipped ("larger than 1 MiB")
  int max_line_length = 1000;           // source trees: a longer line marks a generated/minified file
  int64_t max_text_file_bytes = int64_t{256} << 20;  // a single text document larger than this is refused
  // PDFs are read in a separate process when pdf_worker is set: that program (the app's or
  // folio-cli's own binary) run as "PROGRAM --parse-pdf PATH" answers through run_pdf_worker(). A
  // PDF built to make its reader hang or swell (a page tree nested thousands of levels deep, a
  // content stream that inflates to gigabytes) then costs that process only: it is stopped past
  // the time or memory limit, or on cancel, and the load fails saying which. "" = read in this
  // process (the loader's own tests).
  QString pdf_worker;
  int64_t pdf_time_limit_ms = 0;                      // 0: 8 s + 4 s per MiB of the file, at most 300 s
  int64_t pdf_memory_limit_bytes = int64_t{1} << 30;  // resident memory of the worker
  DocumentCache* document_cache = nullptr;            // PDFs read before; nullptr = always parse
};

// A file, a folder or a PDF by what it is: folder -> load_source_tree, %PDF header or .pdf ->
// load_pdf, anything else -> load_text_file.
Document load_document(const QString& path, const LoadOptions& options = {});

// A PDF: one section per page with text (page_index, page_label); pages without text are listed
// in a notice; a PDF with no text at all fails with NoTextLayer. With options.document_cache and no
// password, a PDF whose bytes were read before comes from the cache (path and title as given now).
Document load_pdf(const QString& path, const LoadOptions& options = {});

// The --parse-pdf mode of the app and folio-cli: reads the PDF at path in this process (the
// password, if any, is the first line of stdin), writes the Document or the DocumentError to
// stdout for load_pdf() in the parent, and progress to stderr. Returns the exit code (0 when an
// answer was written, also for a DocumentError). Needs a QCoreApplication.
int run_pdf_worker(const QString& path);

// A text file (Markdown, source, plain text) in sections of options.section_lines lines.
// Binary files (NUL bytes, mostly control bytes) fail with Binary.
Document load_text_file(const QString& path, const LoadOptions& options = {});

// A folder of source files: every text file not ignored, sorted by relative path, each in
// sections of options.section_lines lines; what was left out is in Document::skipped.
Document load_source_tree(const QString& root, const LoadOptions& options = {});

// Decoding bytes of a text file.
struct DecodedText {
  bool ok = false;        // false: binary (reason says why)
  QString text;           // without the BOM
  QString encoding;       // "UTF-8", "UTF-8 (BOM)", "UTF-16LE (BOM)", "UTF-16BE (BOM)", "UTF-32LE (BOM)", "UTF-32BE (BOM)", "Latin-1"
  QString reason;         // !ok: why it is not text ("it contains NUL bytes", "37% of its bytes are control
                          // bytes"); ok: a note for the user, or "" (e.g. bad bytes after a BOM replaced by U+FFFD)
};
// BOM first (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE); without one: binary if there is a NUL byte or
// more than 10% control bytes, else UTF-8 when the bytes are valid UTF-8, else Latin-1.
DecodedText decode_text(const QByteArray& bytes);

// Splits text into lines (\n, \r\n, \r); a trailing newline does not start another line.
QStringList split_lines(const QString& text);

}  // namespace folio::docs
