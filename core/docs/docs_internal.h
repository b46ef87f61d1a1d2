// Helpers shared by the loaders of core/docs (not part of the public API).
#pragma once

#include <QByteArray>
#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QString>
#include <QStringList>
#include <cerrno>

#include <sys/stat.h>

#include "core/chat/chat_document.h"
#include "core/docs/ingest.h"

namespace folio::docs::detail {

inline QString shown(const QString& path) { return QDir::toNativeSeparators(path); }

inline QString sha256_hex(const QByteArray& bytes) {
  return QString::fromLatin1(QCryptographicHash::hash(bytes, QCryptographicHash::Sha256).toHex());
}

// Throws NotFound / Unreadable for a missing path or a folder; `kind` names what was expected
// ("a PDF", "a file").
inline void require_file(const QFileInfo& info, const QString& path, const char* kind) {
  // By type before anything opens it: a FIFO would block the reader forever, a device never ends.
  struct stat st {};
  if (::stat(QFile::encodeName(path).constData(), &st) != 0 && errno == ELOOP)
    throw DocumentError(DocumentProblem::Unreadable, path,
                        QString("%1: is a symbolic link loop (its links point back at each other); add the file it "
                                "should name")
                            .arg(shown(path)));
  if (info.exists() && !info.isDir() && !S_ISREG(st.st_mode)) {
    const char* what = S_ISFIFO(st.st_mode)   ? "a FIFO (named pipe)"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a regular file";
    throw DocumentError(DocumentProblem::Unreadable, path,
                        QString("%1: is %2, not a regular file; Folio reads documents only from regular files (save "
                                "the data to a file first)")
                            .arg(shown(path), what));
  }
  if (!info.exists())
    throw DocumentError(DocumentProblem::NotFound, path,
                        QString("%1: file not found; check the path and add it again").arg(shown(path)));
  if (info.isDir())
    throw DocumentError(DocumentProblem::Unreadable, path,
                        QString("%1: is a folder, not %2; add it as a source folder").arg(shown(path), kind));
}

// load_pdf() without the worker process: Qt PDF in this process.
Document load_pdf_in_process(const QString& path, const LoadOptions& options);

inline void check_cancel(const LoadOptions& options, const QString& path) {
  if (options.cancel != nullptr && options.cancel->cancelled())
    throw DocumentError(DocumentProblem::Cancelled, path,
                        QString("%1: loading was cancelled; add the document again to read it").arg(shown(path)));
}

inline void report(const LoadOptions& options, int done, int total) {
  if (options.on_progress) options.on_progress(done, total);
}

// Appends sections of `section_lines` lines of one file to `out` (core/chat's sectioning, which
// folio-cli uses for the same file).
inline void append_line_sections(const QStringList& lines, const QString& file, const QString& language,
                                 int section_lines, QVector<Section>* out) {
  std::vector<std::string> utf8;
  utf8.reserve(static_cast<size_t>(lines.size()));
  for (const QString& l : lines) utf8.push_back(l.toStdString());
  for (folio::chat::Section& c : folio::chat::line_sections(utf8, file.toStdString(), section_lines)) {
    Section s;
    s.file = file;
    s.language = language;
    s.first_line = c.first_line;
    s.last_line = c.last_line;
    s.text = QString::fromStdString(c.text);
    out->push_back(std::move(s));
  }
}

// The same sections as append_line_sections(split_lines(text), ...), made in one pass over the
// text without holding its lines apart (a text document of hundreds of MiB is held once as text
// and once as sections, not five times). Returns the number of lines.
inline int append_text_sections(const QString& text, const QString& file, const QString& language, int section_lines,
                                QVector<Section>* out) {
  const int step = section_lines > 0 ? section_lines : 200;
  const qsizetype n = text.size();
  int line = 0;  // lines completed so far
  Section s;
  auto flush = [&](int last_line) {
    s.file = file;
    s.language = language;
    s.last_line = last_line;
    out->push_back(std::move(s));
    s = Section();
  };
  qsizetype start = 0;  // where the current line starts
  for (qsizetype i = 0; i <= n; ++i) {
    const bool end = i == n;
    const QChar c = end ? QChar() : text[i];
    if (!end && c != '\n' && c != '\r') continue;
    if (end && start == n) break;  // a trailing newline does not start another line
    if (s.text.isEmpty() && s.first_line == 0)
      s.first_line = line + 1;
    else
      s.text += '\n';
    s.text += QStringView(text).mid(start, i - start);
    ++line;
    if (line % step == 0) flush(line);
    if (!end && c == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (s.first_line != 0) flush(line);
  return line;
}

// The same sections as append_text_sections() of the decoded text, made from the file's bytes
// (UTF-8 when utf8, else Latin-1; no BOM) without decoding the whole file first: the text of a
// large document is held once, as its sections, next to its bytes. Line breaks are ASCII bytes in
// both encodings, so lines are found in the bytes and decoded a section at a time.
inline int append_byte_sections(QByteArrayView bytes, bool utf8, const QString& file, const QString& language,
                                int section_lines, QVector<Section>* out) {
  const int step = section_lines > 0 ? section_lines : 200;
  const qsizetype n = bytes.size();
  int line = 0;  // lines completed so far
  int first_line = 0;
  QByteArray raw;  // the current section's lines, joined by '\n'
  auto flush = [&](int last_line) {
    Section s;
    s.file = file;
    s.language = language;
    s.first_line = first_line;
    s.last_line = last_line;
    s.text = utf8 ? QString::fromUtf8(raw) : QString::fromLatin1(raw);
    out->push_back(std::move(s));
    raw.clear();
    first_line = 0;
  };
  qsizetype start = 0;  // where the current line starts
  for (qsizetype i = 0; i <= n; ++i) {
    const bool end = i == n;
    const char c = end ? '\0' : bytes[i];
    if (!end && c != '\n' && c != '\r') continue;
    if (end && start == n) break;  // a trailing newline does not start another line
    if (first_line == 0)
      first_line = line + 1;
    else
      raw += '\n';
    raw.append(bytes.sliced(start, i - start));
    ++line;
    if (line % step == 0) flush(line);
    if (!end && c == '\r' && i + 1 < n && bytes[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (first_line != 0) flush(line);
  return line;
}

}  // namespace folio::docs::detail
