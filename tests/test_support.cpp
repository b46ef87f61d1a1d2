#include "tests/test_support.h"

#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QVector>
#include <cstdlib>
#include <filesystem>
#include <utility>

namespace folio::test {

namespace {
std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != 0 ? std::string(v) : fallback;
}

// RC4, for the PDF standard security handler.
QByteArray rc4(const QByteArray& key, const QByteArray& data) {
  unsigned char s[256];
  for (int i = 0; i < 256; ++i) s[i] = static_cast<unsigned char>(i);
  for (int i = 0, j = 0; i < 256; ++i) {
    j = (j + s[i] + static_cast<unsigned char>(key[i % key.size()])) & 255;
    std::swap(s[i], s[j]);
  }
  QByteArray out(data.size(), '\0');
  for (int n = 0, i = 0, j = 0; n < data.size(); ++n) {
    i = (i + 1) & 255;
    j = (j + s[i]) & 255;
    std::swap(s[i], s[j]);
    out[n] = static_cast<char>(data[n] ^ s[(s[i] + s[j]) & 255]);
  }
  return out;
}

QByteArray md5(const QByteArray& b) {
  return QCryptographicHash::hash(b, QCryptographicHash::Md5);
}

}  // namespace

std::string source_dir() { return env_or("FOLIO_SOURCE_DIR", "."); }
std::string shared_models() { return env_or("FOLIO_SHARED_MODELS", source_dir() + "/../shared/models"); }
std::string bin_dir() { return env_or("FOLIO_BIN_DIR", "."); }
bool exists(const std::string& path) { return std::filesystem::exists(path); }
std::string smollm2_path() {
  const char* home = std::getenv("HOME");
  const std::string cache = env_or("XDG_CACHE_HOME", std::string(home != nullptr ? home : "") + "/.cache");
  return env_or("FOLIO_SMOLLM2_GGUF", cache + "/folio/models/SmolLM2-135M-Instruct.Q4_1.gguf");
}

QByteArray assemble_pdf(const QVector<QByteArray>& objects, const QByteArray& header, const QByteArray& trailer_extra) {
  QByteArray pdf = header;
  QVector<qsizetype> offsets;
  for (int i = 0; i < objects.size(); ++i) {
    offsets << pdf.size();
    pdf += QByteArray::number(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const qsizetype xref = pdf.size();
  pdf += "xref\n0 " + QByteArray::number(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (qsizetype off : offsets) pdf += QByteArray::number(off).rightJustified(10, '0') + " 00000 n \n";
  pdf += "trailer\n<< /Size " + QByteArray::number(objects.size() + 1) + " /Root 1 0 R" + trailer_extra +
         " >>\nstartxref\n" + QByteArray::number(xref) + "\n%%EOF\n";
  return pdf;
}

// A PDF written by hand: one page per text (Helvetica), optional extra catalog entries (e.g.
// /PageLabels), and optionally encrypted with the standard security handler (revision 2, 40-bit
// RC4: PDF 1.7 section 7.6.3, algorithms 2, 3 and 4) under a user password.
QByteArray make_pdf(const QStringList& page_texts, const QByteArray& catalog_extra, const QByteArray& user_password) {
  static const QByteArray padding =
      QByteArray::fromHex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A");
  auto pad = [&](const QByteArray& pw) { return (pw + padding).left(32); };
  const int pages = static_cast<int>(page_texts.size());
  // Objects: 1 catalog, 2 pages, 3 font, then per page: page, contents; then the encryption dict.
  const int first_page_obj = 4;
  const int encrypt_obj = first_page_obj + 2 * pages;
  const QByteArray id0 = QByteArray::fromHex("0123456789ABCDEF0123456789ABCDEF");
  const qint32 permissions = -4;
  QByteArray file_key, o_entry, u_entry;
  const bool encrypt = !user_password.isEmpty();
  if (encrypt) {
    o_entry = rc4(md5(pad("owner-" + user_password)).left(5), pad(user_password));
    QByteArray p(4, '\0');
    for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((static_cast<quint32>(permissions) >> (8 * i)) & 0xFF);
    file_key = md5(pad(user_password) + o_entry + p + id0).left(5);
    u_entry = rc4(file_key, padding);
  }
  QVector<QByteArray> objects(encrypt ? encrypt_obj : encrypt_obj - 1);
  QByteArray kids;
  for (int i = 0; i < pages; ++i) kids += QByteArray::number(first_page_obj + 2 * i) + " 0 R ";
  objects[0] = "<< /Type /Catalog /Pages 2 0 R " + catalog_extra + " >>";
  objects[1] = "<< /Type /Pages /Kids [" + kids + "] /Count " + QByteArray::number(pages) + " >>";
  objects[2] = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>";
  for (int i = 0; i < pages; ++i) {
    const int page_obj = first_page_obj + 2 * i, content_obj = page_obj + 1;
    objects[page_obj - 1] = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents " +
                            QByteArray::number(content_obj) + " 0 R /Resources << /Font << /F1 3 0 R >> >> >>";
    QByteArray content = "BT /F1 18 Tf 72 700 Td 22 TL";
    for (const QString& line : page_texts[i].split('\n')) {
      QByteArray l = line.toLatin1();
      l.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)");
      content += " (" + l + ") Tj T*";
    }
    content += " ET";
    if (encrypt) {
      QByteArray k = file_key;
      k += static_cast<char>(content_obj & 0xFF);
      k += static_cast<char>((content_obj >> 8) & 0xFF);
      k += static_cast<char>((content_obj >> 16) & 0xFF);
      k += QByteArray(2, '\0');  // generation 0
      content = rc4(md5(k).left(10), content);
    }
    objects[content_obj - 1] =
        "<< /Length " + QByteArray::number(content.size()) + " >>\nstream\n" + content + "\nendstream";
  }
  if (encrypt)
    objects[encrypt_obj - 1] = "<< /Filter /Standard /V 1 /R 2 /O <" + o_entry.toHex() + "> /U <" + u_entry.toHex() +
                               "> /P " + QByteArray::number(permissions) + " >>";
  QByteArray trailer;
  if (encrypt) trailer += " /Encrypt " + QByteArray::number(encrypt_obj) + " 0 R";
  trailer += " /ID [<" + id0.toHex() + "> <" + id0.toHex() + ">]";
  return assemble_pdf(objects, "%PDF-1.4\n%\xE2\xE3\xCF\xD3\n", trailer);
}

QByteArray nested_page_tree_pdf(int depth) {
  QVector<QByteArray> objects = {"<< /Type /Catalog /Pages 5 0 R >>",
                                 "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
                                 "<< /Length 35 >>\nstream\nBT /F1 18 Tf 72 700 Td (deep) Tj ET\nendstream", ""};
  const int first = 5;
  for (int level = 0; level < depth; ++level) {
    const int num = first + level;
    const int kid = level + 1 < depth ? num + 1 : 4;
    const QByteArray parent = level == 0 ? QByteArray() : "/Parent " + QByteArray::number(num - 1) + " 0 R ";
    objects.push_back("<< /Type /Pages " + parent + "/Kids [" + QByteArray::number(kid) + " 0 R] /Count 1 >>");
  }
  objects[3] = "<< /Type /Page /Parent " + QByteArray::number(first + depth - 1) +
               " 0 R /MediaBox [0 0 612 792] /Contents 3 0 R /Resources << /Font << /F1 2 0 R >> >> >>";
  return assemble_pdf(objects);
}

QList<qint64> child_processes(qint64 parent_pid, const QByteArray& argument) {
  QList<qint64> out;
  const QByteArray parent = QByteArray::number(parent_pid);
  for (const QString& name : QDir("/proc").entryList(QDir::Dirs | QDir::NoDotAndDotDot)) {
    bool numeric = false;
    const qint64 pid = name.toLongLong(&numeric);
    if (!numeric) continue;
    QFile status("/proc/" + name + "/status"), cmdline("/proc/" + name + "/cmdline");
    if (!status.open(QIODevice::ReadOnly) || !cmdline.open(QIODevice::ReadOnly)) continue;
    bool child = false, zombie = false;
    for (const QByteArray& line : status.readAll().split('\n')) {
      if (line.startsWith("PPid:")) child = line.mid(5).trimmed() == parent;
      if (line.startsWith("State:")) zombie = line.contains('Z');
    }
    if (child && !zombie && cmdline.readAll().contains(argument)) out << pid;
  }
  return out;
}

bool process_running(qint64 pid) {
  QFile status(QString("/proc/%1/status").arg(pid));
  if (!status.open(QIODevice::ReadOnly)) return false;
  for (const QByteArray& line : status.readAll().split('\n'))
    if (line.startsWith("State:")) return !line.contains('Z');
  return false;
}

}  // namespace folio::test
