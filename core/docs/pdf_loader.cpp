// PDFs through Qt PDF (PDFium): the text of every page with its printed label.
#include <QFile>
#include <QFileInfo>
#include <QHash>
#include <QImage>
#include <QPdfDocument>
#include <QPdfSelection>

#include "core/docs/docs_internal.h"

namespace folio::docs {

namespace {

// PDFium gives "\r\n" between lines, sometimes U+FFFE/U+0002 for soft hyphens and NULs; keep
// printable text, tabs and newlines, and drop trailing spaces of lines.
QString clean_page_text(const QString& raw) {
  QString out;
  out.reserve(raw.size());
  const qsizetype n = raw.size();
  for (qsizetype i = 0; i < n; ++i) {
    const QChar c = raw[i];
    const char16_t u = c.unicode();
    if (u == '\r') {
      if (i + 1 < n && raw[i + 1] == '\n') continue;
      out += '\n';
      continue;
    }
    if (u == 0xFFFE || u == 0xFFFF || u == 0xFEFF) continue;
    if (u == 0x02) {  // PDFium's mark for a hyphen at the end of a line
      out += '-';
      continue;
    }
    if (u < 0x20 && u != '\n' && u != '\t') continue;
    if (u == '\n') {
      while (out.endsWith(' ')) out.chop(1);
    }
    out += c;
  }
  while (!out.isEmpty() && out.back().isSpace()) out.chop(1);
  return out;
}

// "3-5, ix, 12": runs of consecutive pages by their labels.
QString page_runs(const QVector<int>& pages, const Document& doc) {
  auto label = [&](int i) { return citation_label(doc, i); };
  QStringList parts;
  for (qsizetype i = 0; i < pages.size();) {
    qsizetype j = i;
    while (j + 1 < pages.size() && pages[j + 1] == pages[j] + 1) ++j;
    parts << (j == i ? label(pages[i]) : QString("%1-%2").arg(label(pages[i]), label(pages[j])));
    i = j + 1;
  }
  return parts.join(", ");
}

bool ends_with_eof_marker(const QByteArray& bytes) {
  const qsizetype tail = std::min<qsizetype>(bytes.size(), 4096);
  return bytes.right(tail).contains("%%EOF");
}

// Whether a page without text shows anything: rendered small, a scanned page or a picture leaves
// non-white pixels; a blank page, or one whose content PDFium could not read, leaves none.
bool page_shows_something(QPdfDocument& pdf, int page) {
  const QImage image = pdf.render(page, QSize(48, 64)).convertToFormat(QImage::Format_ARGB32);
  for (int y = 0; y < image.height(); ++y) {
    const auto* row = reinterpret_cast<const QRgb*>(image.constScanLine(y));
    for (int x = 0; x < image.width(); ++x)
      if (qAlpha(row[x]) > 0 && (qRed(row[x]) < 240 || qGreen(row[x]) < 240 || qBlue(row[x]) < 240)) return true;
  }
  return false;
}

}  // namespace

}  // namespace folio::docs

namespace folio::docs::detail {

Document load_pdf_in_process(const QString& path, const LoadOptions& options) {
  using detail::shown;
  const QFileInfo info(path);
  detail::require_file(info, path, "a PDF");
  detail::check_cancel(options, path);
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly))
    throw DocumentError(DocumentProblem::Unreadable, path,
                        QString("%1: cannot be read (%2); check its permissions").arg(shown(path), f.errorString()));
  const QByteArray bytes = f.readAll();
  f.close();
  if (bytes.isEmpty())
    throw DocumentError(DocumentProblem::Empty, path,
                        QString("%1: the file is empty (0 bytes); get a complete copy of the PDF").arg(shown(path)));
  if (!bytes.left(1024).contains("%PDF-"))
    throw DocumentError(DocumentProblem::Broken, path,
                        QString("%1: not a PDF (no %PDF header at its start); add the real PDF, or add the file as "
                                "text if it is one")
                            .arg(shown(path)));

  // PDFium repairs many damaged files; a file cut off before its end may still open with pages
  // missing. That would silently lose text, so it is refused (before PDFium sees it: Qt 6.4's
  // QPdfDocument leaks its loader state on files it fails to open).
  if (!ends_with_eof_marker(bytes))
    throw DocumentError(DocumentProblem::Broken, path,
                        QString("%1: the PDF is incomplete (cut off before its end marker %%EOF, e.g. by an "
                                "unfinished download or copy), so pages would be missing; get a complete copy")
                            .arg(shown(path)));

  QPdfDocument pdf;
  if (!options.pdf_password.isEmpty()) pdf.setPassword(options.pdf_password);
  const QPdfDocument::Error err = pdf.load(path);
  switch (err) {
    case QPdfDocument::Error::None:
      break;
    case QPdfDocument::Error::IncorrectPassword:
      if (options.pdf_password.isEmpty())
        throw DocumentError(DocumentProblem::Encrypted, path,
                            QString("%1: the PDF is password-protected; enter its password, or save an unprotected "
                                    "copy and add that")
                                .arg(shown(path)));
      throw DocumentError(DocumentProblem::Encrypted, path,
                          QString("%1: the password given for this PDF is wrong; enter the right password")
                              .arg(shown(path)));
    case QPdfDocument::Error::UnsupportedSecurityScheme:
      throw DocumentError(DocumentProblem::Encrypted, path,
                          QString("%1: the PDF is encrypted with a security scheme Qt PDF cannot open; save an "
                                  "unprotected copy and add that")
                              .arg(shown(path)));
    case QPdfDocument::Error::FileNotFound:
      throw DocumentError(DocumentProblem::Unreadable, path,
                          QString("%1: Qt PDF could not open the file; check that it exists and is readable")
                              .arg(shown(path)));
    default:
      throw DocumentError(DocumentProblem::Broken, path,
                          QString("%1: the PDF is damaged and cannot be read; open it in a PDF viewer to check it, "
                                  "or get a fresh copy")
                              .arg(shown(path)));
  }
  const int n = pdf.pageCount();
  if (n <= 0)
    throw DocumentError(DocumentProblem::Empty, path,
                        QString("%1: the PDF has no pages; there is nothing to read").arg(shown(path)));

  Document doc;
  doc.path = path;
  doc.title = info.fileName();
  doc.kind = DocumentKind::Pdf;
  doc.content_hash = detail::sha256_hex(bytes);
  doc.page_count = n;
  QStringList labels;
  QVector<int> without_text;  // scanned images or pictures only
  QVector<int> blank;         // nothing to see: blank, or content that could not be read
  detail::report(options, 0, n);
  for (int page = 0; page < n; ++page) {
    detail::check_cancel(options, path);
    QString label = pdf.pageLabel(page).trimmed();
    if (label.isEmpty()) label = QString::number(page + 1);
    labels << label;
    // (Qt 6.4's getAllText() leaks a little PDFium state on pages without text: harmless, and
    // there is no other way to read a page's text through Qt PDF.)
    QString text = clean_page_text(pdf.getAllText(page).text());
    if (text.trimmed().isEmpty()) {
      if (page_shows_something(pdf, page))
        without_text << page;
      else
        blank << page;
    } else {
      Section s;
      s.text = std::move(text);
      s.page_index = page;
      s.page_label = label;
      doc.sections.push_back(std::move(s));
    }
    detail::report(options, page + 1, n);
  }
  doc.page_labels = labels;
  // Printed labels that repeat cannot name a page: cite by the page's number in the file then.
  QHash<QString, int> uses;
  QString repeated;
  for (const QString& l : std::as_const(labels))
    if (++uses[l] == 2 && repeated.isEmpty()) repeated = l;
  if (!repeated.isEmpty()) {
    doc.cite_by_page_number = true;
    doc.notices << QString("%1: its printed page numbers repeat (\"%2\" is on %3 pages), so its pages are marked and "
                           "cited by their number in the file, 1-%4")
                       .arg(info.fileName(), repeated)
                       .arg(labels.count(repeated))
                       .arg(n);
  }
  if (doc.sections.isEmpty() && without_text.isEmpty())
    throw DocumentError(DocumentProblem::Broken, path,
                        QString("%1: none of its %2 page%3 shows anything readable (page%4 %5: blank, or content "
                                "that could not be read); open it in a PDF viewer to check it, or get a fresh copy")
                            .arg(shown(path))
                            .arg(n)
                            .arg(n == 1 ? "" : "s", blank.size() == 1 ? "" : "s", page_runs(blank, doc)));
  if (doc.sections.isEmpty())
    throw DocumentError(DocumentProblem::NoTextLayer, path,
                        QString("%1: no text layer on any of its %2 page%3 (it is probably scanned images); run OCR "
                                "on it first (e.g. ocrmypdf in.pdf out.pdf) and add the result")
                            .arg(shown(path))
                            .arg(n)
                            .arg(n == 1 ? "" : "s"));
  if (!without_text.isEmpty())
    doc.notices << QString("%1: page%2 %3 (%4 of %5) %6 no text layer (scanned images or pictures only); what they "
                           "show is not included; run OCR on the PDF to include it")
                       .arg(info.fileName(), without_text.size() == 1 ? "" : "s", page_runs(without_text, doc))
                       .arg(without_text.size())
                       .arg(n)
                       .arg(without_text.size() == 1 ? "has" : "have");
  if (!blank.isEmpty())
    doc.notices << QString(
                       "%1: page%2 %3 (%4 of %5) %6 nothing readable: blank, or content that could not be read "
                       "(damaged); the rest of the PDF is included")
                       .arg(info.fileName(), blank.size() == 1 ? "" : "s", page_runs(blank, doc))
                       .arg(blank.size())
                       .arg(n)
                       .arg(blank.size() == 1 ? "shows" : "show");
  return doc;
}

}  // namespace folio::docs::detail
