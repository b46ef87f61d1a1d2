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

bool has_bom(const QByteArray& b) {
  return starts_with(b, {0xEF, 0xBB, 0xBF}) || starts_with(b, {0xFF, 0xFE}) || starts_with(b, {0xFE, 0xFF}) ||
         starts_with(b, {0x00, 0x00, 0xFE, 0xFF});
}

// decode_text() for bytes without a BOM, without the text: whether they are text and in which
// encoding (UTF-8 when valid, else Latin-1). UTF-8 is checked in pieces that end before a
// character, so only one piece is ever held decoded.
DecodedText check_text(const QByteArray& bytes) {
  DecodedText d;
  if (const std::string why =
          folio::chat::binary_reason(std::string_view(bytes.constData(), static_cast<size_t>(bytes.size())));
      !why.empty()) {
    d.reason = QString::fromStdString(why);
    return d;
  }
  d.ok = true;
  d.encoding = "UTF-8";
  constexpr qsizetype kPiece = qsizetype{1} << 20;
  for (qsizetype at = 0; at < bytes.size();) {
    qsizetype end = std::min(bytes.size(), at + kPiece);
    for (int back = 0; back < 3 && end < bytes.size() && (static_cast<unsigned char>(bytes[end]) & 0xC0) == 0x80;
         ++back)
      --end;
    QStringDecoder utf8(QStringConverter::Utf8, QStringConverter::Flag::Stateless);
    const QString piece = utf8.decode(QByteArrayView(bytes).sliced(at, end - at));
    if (utf8.hasError()) {
      d.encoding = "Latin-1";
      break;
    }
    at = end;
  }
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
  const QString hash = detail::sha256_hex(bytes);
  const int64_t byte_count = bytes.size();
  // Without a BOM (nearly every file) the encoding is found from the bytes and the sections are
  // decoded from them a section at a time: a large document is held as bytes and sections (3
  // bytes of memory a byte of ASCII), never also as its whole decoded text (5). With a BOM, the
  // text is decoded whole, then sectioned.
  DecodedText decoded = has_bom(bytes) ? decode_text(bytes) : check_text(bytes);
  if (!decoded.ok)
    throw DocumentError(DocumentProblem::Binary, path,
                        QString("%1: not a text file (%2); add a PDF, a text or source file, or a folder of "
                                "sources instead")
                            .arg(shown(path), decoded.reason));
  if (has_bom(bytes)) bytes = QByteArray();
  const QString name = info.fileName(), language = language_for_file(name);
  QVector<Section> sections;
  const int line_count =
      bytes.isEmpty() ? detail::append_text_sections(decoded.text, name, language, options.section_lines, &sections)
                      : detail::append_byte_sections(bytes, decoded.encoding == "UTF-8", name, language,
                                                     options.section_lines, &sections);
  bytes = QByteArray();
  decoded.text = QString();
  if (std::all_of(sections.cbegin(), sections.cend(), [](const Section& s) {
        return std::all_of(s.text.cbegin(), s.text.cend(), [](QChar c) { return c.isSpace(); });
      }))
    throw DocumentError(DocumentProblem::Empty, path,
                        QString("%1: the file holds only white space; there is nothing to read").arg(shown(path)));

  Document doc;
  doc.path = path;
  doc.title = info.fileName();
  doc.kind = DocumentKind::Text;
  doc.content_hash = hash;
  doc.page_count = 1;
  doc.encoding = decoded.encoding;
  doc.sections = std::move(sections);
  FileEntry entry;
  entry.path = name;
  entry.language = language;
  entry.bytes = byte_count;
  entry.encoding = decoded.encoding;
  entry.line_count = line_count;
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
