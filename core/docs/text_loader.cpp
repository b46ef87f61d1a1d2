// Text files: encoding detection (BOM, UTF-8, Latin-1 fallback), binary refusal, line sections.
#include <QFile>
#include <QFileInfo>
#include <QStringDecoder>

#include <algorithm>
#include <utility>

#include "core/docs/docs_internal.h"

namespace folio::docs {

namespace {

bool starts_with(const QByteArray& b, std::initializer_list<unsigned char> prefix) {
  if (b.size() < static_cast<qsizetype>(prefix.size())) return false;
  qsizetype i = 0;
  for (unsigned char c : prefix)
    if (static_cast<unsigned char>(b[i++]) != c) return false;
  return true;
}

DecodedText decode_with(QStringConverter::Encoding encoding, const QByteArray& body, const QString& name) {
  DecodedText d;
  QStringDecoder decoder(encoding, QStringConverter::Flag::Stateless);
  d.text = decoder.decode(body);
  d.encoding = name;
  if (decoder.hasError()) {
    d.reason = QString("some bytes are not valid %1 and were replaced by U+FFFD").arg(name.section(' ', 0, 0));
  }
  qsizetype controls = 0;
  for (QChar c : std::as_const(d.text))
    if (c.unicode() < 0x80 && folio::chat::is_control_byte(static_cast<unsigned char>(c.unicode()))) ++controls;
  if (d.text.contains(QChar(0)) || controls * 10 > d.text.size()) {
    d.ok = false;
    d.reason = QString("its %1 text is mostly control characters").arg(name);
    return d;
  }
  d.ok = true;
  return d;
}

}  // namespace

DecodedText decode_text(const QByteArray& bytes) {
  // A BOM decides.
  if (starts_with(bytes, {0xEF, 0xBB, 0xBF})) return decode_with(QStringConverter::Utf8, bytes.mid(3), "UTF-8 (BOM)");
  if (starts_with(bytes, {0xFF, 0xFE, 0x00, 0x00}))
    return decode_with(QStringConverter::Utf32LE, bytes.mid(4), "UTF-32LE (BOM)");
  if (starts_with(bytes, {0x00, 0x00, 0xFE, 0xFF}))
    return decode_with(QStringConverter::Utf32BE, bytes.mid(4), "UTF-32BE (BOM)");
  if (starts_with(bytes, {0xFF, 0xFE})) return decode_with(QStringConverter::Utf16LE, bytes.mid(2), "UTF-16LE (BOM)");
  if (starts_with(bytes, {0xFE, 0xFF})) return decode_with(QStringConverter::Utf16BE, bytes.mid(2), "UTF-16BE (BOM)");

  DecodedText d;
  if (const std::string why = folio::chat::binary_reason(std::string_view(bytes.constData(), static_cast<size_t>(bytes.size())));
      !why.empty()) {
    d.reason = QString::fromStdString(why);
    return d;
  }
  QStringDecoder utf8(QStringConverter::Utf8, QStringConverter::Flag::Stateless);
  QString text = utf8.decode(bytes);
  if (!utf8.hasError()) {
    d.ok = true;
    d.text = std::move(text);
    d.encoding = "UTF-8";
    return d;
  }
  d.ok = true;
  d.text = QString::fromLatin1(bytes);
  d.encoding = "Latin-1";
  return d;
}

QStringList split_lines(const QString& text) {
  QStringList lines;
  for (const std::string& l : folio::chat::split_lines(text.toStdString())) lines << QString::fromStdString(l);
  return lines;
}

Document load_text_file(const QString& path, const LoadOptions& options) {
  using detail::shown;
  const QFileInfo info(path);
  detail::require_file(info, path, "a file");
  if (info.size() > options.max_text_file_bytes)
    throw DocumentError(DocumentProblem::TooLarge, path,
                        QString("%1: the file is %2 MiB, more than the %3 MiB a text document may have; split it "
                                "into smaller files")
                            .arg(shown(path))
                            .arg(info.size() >> 20)
                            .arg(options.max_text_file_bytes >> 20));
  detail::check_cancel(options, path);
  detail::report(options, 0, 1);
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly))
    throw DocumentError(DocumentProblem::Unreadable, path,
                        QString("%1: cannot be read (%2); check its permissions").arg(shown(path), f.errorString()));
  QByteArray bytes = f.readAll();
  if (f.error() != QFileDevice::NoError)
    throw DocumentError(DocumentProblem::Unreadable, path,
                        QString("%1: reading failed (%2); check the disk and try again").arg(shown(path), f.errorString()));
  if (bytes.isEmpty())
    throw DocumentError(DocumentProblem::Empty, path,
                        QString("%1: the file is empty; there is nothing to read").arg(shown(path)));
  // The bytes are hashed and measured, then let go before the text is sectioned: a large document
  // is held as text and as sections, never as bytes, lines and sections at once.
  const QString hash = detail::sha256_hex(bytes);
  const int64_t byte_count = bytes.size();
  DecodedText decoded = decode_text(bytes);
  bytes = QByteArray();
  if (!decoded.ok)
    throw DocumentError(DocumentProblem::Binary, path,
                        QString("%1: not a text file (%2); add a PDF, a text or source file, or a folder of "
                                "sources instead")
                            .arg(shown(path), decoded.reason));
  if (std::all_of(decoded.text.cbegin(), decoded.text.cend(), [](QChar c) { return c.isSpace(); }))
    throw DocumentError(DocumentProblem::Empty, path,
                        QString("%1: the file holds only white space; there is nothing to read").arg(shown(path)));

  Document doc;
  doc.path = path;
  doc.title = info.fileName();
  doc.kind = DocumentKind::Text;
  doc.content_hash = hash;
  doc.page_count = 1;
  doc.encoding = decoded.encoding;
  FileEntry entry;
  entry.path = info.fileName();
  entry.language = language_for_file(info.fileName());
  entry.bytes = byte_count;
  entry.encoding = decoded.encoding;
  entry.line_count =
      detail::append_text_sections(decoded.text, entry.path, entry.language, options.section_lines, &doc.sections);
  decoded.text = QString();
  doc.files.push_back(entry);
  if (decoded.encoding == "Latin-1")
    doc.notices << QString("%1 is not valid UTF-8 and was read as Latin-1 (ISO 8859-1); if characters look wrong, "
                           "save it as UTF-8 and add it again")
                       .arg(info.fileName());
  else if (!decoded.reason.isEmpty())
    doc.notices << QString("%1: %2; save it again in one encoding (UTF-8) if the text looks wrong")
                       .arg(info.fileName(), decoded.reason);
  detail::report(options, 1, 1);
  return doc;
}

}  // namespace folio::docs
