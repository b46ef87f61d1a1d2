#include "core/docs/prompt_layout.h"

#include "core/chat/prompt_layout.h"

#include <QObject>
#include <QRegularExpression>

#include <algorithm>

namespace folio::docs {

namespace {

QString qs(const std::string& s) { return QString::fromStdString(s); }

folio::chat::LayoutOptions chat_options(const LayoutOptions& o) {
  folio::chat::LayoutOptions c;
  c.number_lines = o.number_lines;
  return c;
}

folio::chat::Section chat_section(const Document& doc, const Section& s) {
  folio::chat::Section c;
  c.text = s.text.toStdString();
  c.page_index = s.page_index;
  if (s.page_index >= 0) c.page_label = citation_label(doc, s.page_index).toStdString();
  c.file = s.file.toStdString();
  c.first_line = s.first_line;
  c.last_line = s.last_line;
  return c;
}

// The document without its sections (for laying out one section alone).
folio::chat::Document chat_heading(const Document& doc) {
  folio::chat::Document c;
  c.path = doc.path.toStdString();
  c.title = doc.title.toStdString();
  c.kind = doc.kind == DocumentKind::Pdf          ? folio::chat::DocumentKind::Pdf
           : doc.kind == DocumentKind::SourceTree ? folio::chat::DocumentKind::SourceTree
                                                  : folio::chat::DocumentKind::Text;
  c.content_hash = doc.content_hash.toStdString();
  c.page_count = doc.page_count;
  c.cite_by_page_number = doc.cite_by_page_number;
  for (const FileEntry& f : doc.files) c.files.push_back(f.path.toStdString());
  c.truncation_notice = doc.truncation_notice.toStdString();
  return c;
}

bool plausible_path(const QString& p) {
  static const QStringList names = {"Makefile", "GNUmakefile", "Dockerfile", "Jenkinsfile", "Rakefile", "Gemfile"};
  return p.contains('.') || p.contains('/') || names.contains(p);
}

const QString kLabel = R"((\d+|[ivxlcdm]+))";
const QString kPath = R"(([\w](?:[\w./+\-]*[\w])?))";
const QString kDash = R"((?:-|–|—|to))";

}  // namespace

folio::chat::Document chat_document(const Document& doc) {
  folio::chat::Document c = chat_heading(doc);
  c.sections.reserve(static_cast<size_t>(doc.sections.size()));
  for (const Section& s : doc.sections) c.sections.push_back(chat_section(doc, s));
  return c;
}

folio::chat::Document chat_document(Document&& doc) {
  folio::chat::Document c = chat_heading(doc);
  c.sections.reserve(static_cast<size_t>(doc.sections.size()));
  for (Section& s : doc.sections) {
    c.sections.push_back(chat_section(doc, s));
    s.text = QString();
  }
  doc.sections.clear();
  return c;
}

std::vector<folio::chat::Document> chat_documents(const QVector<Document>& docs) {
  std::vector<folio::chat::Document> out;
  out.reserve(static_cast<size_t>(docs.size()));
  for (const Document& d : docs) out.push_back(chat_document(d));
  return out;
}

QString layout_section(const Document& doc, const Section& s, const LayoutOptions& options) {
  return qs(folio::chat::layout_section(chat_heading(doc), chat_section(doc, s), chat_options(options)));
}

QStringList layout_parts(const Document& doc, const LayoutOptions& options) {
  QStringList parts;
  for (const std::string& p : folio::chat::layout_parts(chat_document(doc), chat_options(options))) parts << qs(p);
  return parts;
}

QString layout_document(const Document& doc, const LayoutOptions& options) {
  return qs(folio::chat::layout_document(chat_document(doc), chat_options(options)));
}

QString layout_documents(const QVector<Document>& docs, const LayoutOptions& options) {
  return qs(folio::chat::layout_documents(chat_documents(docs), chat_options(options)));
}

QString citation_instruction(const QVector<Document>& docs) {
  std::vector<folio::chat::Document> headings;
  for (const Document& d : docs) headings.push_back(chat_heading(d));
  return qs(folio::chat::citation_instruction(headings));
}

QVector<Citation> parse_citations(const QString& answer) {
  static const QRegularExpression pages_re(
      QString(R"((?<![\w.])(?:pp?\.\s*|pages?\s+)%1(?:\s*%3\s*%2)?\b)").arg(kLabel, kLabel, kDash),
      QRegularExpression::CaseInsensitiveOption);
  static const QRegularExpression colon_re(QString(R"((?<![\w./\-])%1:(\d+)(?:\s*(?:-|–)\s*(\d+))?(?!\d))").arg(kPath));
  static const QRegularExpression github_re(QString(R"((?<![\w./\-])%1#L(\d+)(?:-L(\d+))?(?!\d))").arg(kPath));
  static const QRegularExpression path_lines_re(
      QString(R"((?<![\w./\-])%1,?\s+(?:at\s+|on\s+)?(?:lines?|l\.)\s*(\d+)(?:\s*%2\s*(\d+))?(?!\d))").arg(kPath, kDash),
      QRegularExpression::CaseInsensitiveOption);
  static const QRegularExpression lines_of_re(
      QString(R"(\blines?\s+(\d+)(?:\s*%1\s*(\d+))?\s+(?:of|in)\s+%2)").arg(kDash, kPath),
      QRegularExpression::CaseInsensitiveOption);

  QVector<Citation> found;
  auto add_file = [&](const QRegularExpressionMatch& m, int path_group, int first_group, int last_group) {
    Citation c;
    c.kind = CitationKind::FileLines;
    c.start = m.capturedStart(0);
    c.length = m.capturedLength(0);
    c.text = m.captured(0);
    c.file = m.captured(path_group);
    if (!plausible_path(c.file)) return;
    bool ok = false;
    c.first_line = m.captured(first_group).toInt(&ok);
    if (!ok) return;
    c.last_line = m.captured(last_group).isEmpty() ? c.first_line : m.captured(last_group).toInt(&ok);
    if (!ok) return;
    found.push_back(c);
  };
  for (auto it = pages_re.globalMatch(answer); it.hasNext();) {
    const auto m = it.next();
    Citation c;
    c.kind = CitationKind::Pages;
    c.start = m.capturedStart(0);
    c.length = m.capturedLength(0);
    c.text = m.captured(0);
    c.first_label = m.captured(1);
    c.last_label = m.captured(2).isEmpty() ? c.first_label : m.captured(2);
    found.push_back(c);
  }
  for (auto it = colon_re.globalMatch(answer); it.hasNext();) add_file(it.next(), 1, 2, 3);
  for (auto it = github_re.globalMatch(answer); it.hasNext();) add_file(it.next(), 1, 2, 3);
  for (auto it = path_lines_re.globalMatch(answer); it.hasNext();) add_file(it.next(), 1, 2, 3);
  for (auto it = lines_of_re.globalMatch(answer); it.hasNext();) add_file(it.next(), 3, 1, 2);

  // In order; of overlapping matches the longer one (then the earlier) wins.
  std::stable_sort(found.begin(), found.end(), [](const Citation& a, const Citation& b) {
    return a.length != b.length ? a.length > b.length : a.start < b.start;
  });
  QVector<Citation> kept;
  for (const Citation& c : std::as_const(found)) {
    const bool overlaps = std::any_of(kept.begin(), kept.end(), [&](const Citation& k) {
      return c.start < k.start + k.length && k.start < c.start + c.length;
    });
    if (!overlaps) kept.push_back(c);
  }
  std::sort(kept.begin(), kept.end(), [](const Citation& a, const Citation& b) { return a.start < b.start; });
  return kept;
}

namespace {

int find_label(const Document& doc, const QString& label) {
  const int pages = std::max(doc.page_count, static_cast<int>(doc.page_labels.size()));
  for (int i = 0; i < pages; ++i)
    if (citation_label(doc, i).compare(label, Qt::CaseInsensitive) == 0) return i;
  for (const Section& s : doc.sections)  // a document made by hand, without page_count
    if (s.page_index >= pages && citation_label(doc, s.page_index).compare(label, Qt::CaseInsensitive) == 0)
      return s.page_index;
  return -1;
}

// The PDF named closest before `pos` (within 120 characters), or -1.
int pdf_named_before(const QString& answer, qsizetype pos, const QVector<Document>& docs) {
  const qsizetype from = std::max<qsizetype>(0, pos - 120);
  const QString before = answer.mid(from, pos - from);
  int best = -1;
  qsizetype best_at = -1;
  for (int d = 0; d < docs.size(); ++d) {
    if (docs[d].kind != DocumentKind::Pdf || docs[d].title.isEmpty()) continue;
    const qsizetype at = before.lastIndexOf(docs[d].title, -1, Qt::CaseInsensitive);
    if (at > best_at) {
      best_at = at;
      best = d;
    }
  }
  return best;
}

}  // namespace

QVector<CitationTarget> resolve_citations(const QString& answer, const QVector<Document>& docs) {
  QVector<CitationTarget> out;
  for (const Citation& c : parse_citations(answer)) {
    CitationTarget t;
    t.citation = c;
    if (c.kind == CitationKind::Pages) {
      const int named = pdf_named_before(answer, c.start, docs);
      for (int d = 0; d < docs.size() && t.document < 0; ++d) {
        if (docs[d].kind != DocumentKind::Pdf || (named >= 0 && d != named)) continue;
        const int first = find_label(docs[d], c.first_label);
        if (first < 0) continue;
        int last = find_label(docs[d], c.last_label);
        if (last < first) last = first;
        t.document = d;
        t.first_page = first;
        t.last_page = last;
        for (int s = 0; s < docs[d].sections.size(); ++s)
          if (docs[d].sections[s].page_index == first) {
            t.section = s;
            break;
          }
      }
    } else {
      QString p = c.file;
      p.replace('\\', '/');
      while (p.startsWith("./")) p = p.mid(2);
      int exact_doc = -1, suffix_doc = -1, suffix_count = 0;
      const FileEntry* exact = nullptr;
      const FileEntry* suffix = nullptr;
      for (int d = 0; d < docs.size() && exact == nullptr; ++d) {
        for (const FileEntry& f : docs[d].files) {
          if (f.path == p || docs[d].title + '/' + f.path == p) {
            exact = &f;
            exact_doc = d;
            break;
          }
          if (f.path.endsWith('/' + p)) {
            ++suffix_count;
            suffix = &f;
            suffix_doc = d;
          }
        }
      }
      const FileEntry* file = exact != nullptr ? exact : (suffix_count == 1 ? suffix : nullptr);
      const int d = exact != nullptr ? exact_doc : suffix_doc;
      if (file == nullptr || c.first_line < 1 || c.first_line > file->line_count) continue;
      t.document = d;
      t.file = file->path;
      t.first_line = c.first_line;
      t.last_line = std::clamp(c.last_line, c.first_line, file->line_count);
      for (int s = 0; s < docs[d].sections.size(); ++s) {
        const Section& sec = docs[d].sections[s];
        if (sec.file == file->path && sec.first_line <= t.first_line && t.first_line <= sec.last_line) {
          t.section = s;
          break;
        }
      }
    }
    if (t.document >= 0) out.push_back(t);
  }
  return out;
}

namespace {

// "1-2", "i-iv, 1-397": the first and last label of each run of pages.
QString page_span(const Document& doc) {
  const int pages = std::max(doc.page_count, static_cast<int>(doc.page_labels.size()));
  if (pages <= 0) return {};
  if (doc.cite_by_page_number || doc.page_labels.isEmpty()) return QString("1-%1").arg(pages);
  return QString("%1-%2").arg(citation_label(doc, 0), citation_label(doc, pages - 1));
}

QString why_not_found(const Citation& c, const QVector<Document>& docs) {
  if (c.kind == CitationKind::Pages) {
    QStringList pdfs;
    for (const Document& d : docs)
      if (d.kind == DocumentKind::Pdf) pdfs << QObject::tr("%1 (pages %2)").arg(d.title, page_span(d));
    if (pdfs.isEmpty())
      return QObject::tr("there is no PDF among the documents, so there is no page %1").arg(c.first_label);
    if (pdfs.size() == 1)
      return QObject::tr("no page %1 in %2")
          .arg(c.first_label == c.last_label ? c.first_label : c.first_label + "-" + c.last_label, pdfs.front());
    return QObject::tr("no page %1 in the documents: %2").arg(c.first_label, pdfs.join(", "));
  }
  QString p = c.file;
  p.replace('\\', '/');
  for (const Document& d : docs)
    for (const FileEntry& f : d.files)
      if (f.path == p || f.path.endsWith('/' + p) || d.title + '/' + f.path == p) {
        if (c.first_line > f.line_count)
          return QObject::tr("%1 has %2 lines, so there is no line %3").arg(f.path).arg(f.line_count).arg(c.first_line);
        return QObject::tr("%1 names more than one file of the documents").arg(c.file);
      }
  return QObject::tr("no file %1 in the documents").arg(c.file);
}

}  // namespace

QVector<CitationCheck> check_citations(const QString& answer, const QVector<Document>& docs) {
  const QVector<CitationTarget> found = resolve_citations(answer, docs);
  QVector<CitationCheck> out;
  for (const Citation& c : parse_citations(answer)) {
    CitationCheck k;
    k.citation = c;
    for (const CitationTarget& t : found)
      if (t.citation.start == c.start) {
        k.found = true;
        k.target = t;
      }
    if (!k.found) k.problem = why_not_found(c, docs);
    out.push_back(k);
  }
  return out;
}

}  // namespace folio::docs
