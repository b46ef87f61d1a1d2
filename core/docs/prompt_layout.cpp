#include "core/docs/prompt_layout.h"

#include <QRegularExpression>

#include <algorithm>

namespace folio::docs {

namespace {

QString line_range(int first, int last) {
  return first == last ? QString("line %1").arg(first) : QString("lines %1-%2").arg(first).arg(last);
}

QString numbered(const QString& text, int first_line) {
  const QStringList lines = text.split('\n');
  QString out;
  out.reserve(text.size() + lines.size() * 6);
  for (int i = 0; i < lines.size(); ++i) {
    if (i > 0) out += '\n';
    out += QString::number(first_line + i);
    out += "| ";
    out += lines[i];
  }
  return out;
}

QString header(const Document& doc) {
  switch (doc.kind) {
    case DocumentKind::Pdf:
      return QString("[document: %1, %2 page%3]").arg(doc.title).arg(doc.page_count).arg(doc.page_count == 1 ? "" : "s");
    case DocumentKind::SourceTree:
      return QString("[folder: %1, %2 file%3]").arg(doc.title).arg(doc.page_count).arg(doc.page_count == 1 ? "" : "s");
    case DocumentKind::Text:
      break;
  }
  return QString("[document: %1]").arg(doc.title);
}

QString footer(const Document& doc) {
  return doc.kind == DocumentKind::SourceTree ? QString("[end of folder: %1]").arg(doc.title)
                                              : QString("[end of document: %1]").arg(doc.title);
}

bool plausible_path(const QString& p) {
  static const QStringList names = {"Makefile", "GNUmakefile", "Dockerfile", "Jenkinsfile", "Rakefile", "Gemfile"};
  return p.contains('.') || p.contains('/') || names.contains(p);
}

const QString kLabel = R"((\d+|[ivxlcdm]+))";
const QString kPath = R"(([\w](?:[\w./+\-]*[\w])?))";
const QString kDash = R"((?:-|–|—|to))";

}  // namespace

QString layout_section(const Document& doc, const Section& s, const LayoutOptions& options) {
  if (doc.kind == DocumentKind::Pdf || s.page_index >= 0)
    return QString("[p. %1]\n%2").arg(citation_label(doc, s.page_index), s.text);
  return QString("[file: %1, %2]\n%3")
      .arg(s.file, line_range(s.first_line, s.last_line),
           options.number_lines ? numbered(s.text, s.first_line) : s.text);
}

QStringList layout_parts(const Document& doc, const LayoutOptions& options) {
  QStringList parts;
  parts.reserve(doc.sections.size() + 3);
  parts << header(doc);
  for (const Section& s : doc.sections) parts << layout_section(doc, s, options);
  if (doc.truncated()) parts << doc.truncation_notice;
  parts << footer(doc);
  return parts;
}

QString layout_document(const Document& doc, const LayoutOptions& options) {
  return layout_parts(doc, options).join(kPartSeparator);
}

QString layout_documents(const QVector<Document>& docs, const LayoutOptions& options) {
  QStringList all;
  for (const Document& d : docs) all << layout_document(d, options);
  return all.join(kDocumentSeparator);
}

QString citation_instruction(const QVector<Document>& docs) {
  int pdfs = 0;
  QString example_file;
  for (const Document& d : docs) {
    if (d.kind == DocumentKind::Pdf) ++pdfs;
    else if (example_file.isEmpty() && !d.files.isEmpty()) example_file = d.files.front().path;
  }
  const bool files = !example_file.isEmpty();
  QString example_pdf;
  for (const Document& d : docs)
    if (d.kind == DocumentKind::Pdf) {
      example_pdf = d.title;
      break;
    }
  QStringList out;
  if (pdfs > 0)
    out << "In the documents, each PDF page starts with a marker such as [p. 12] that names the page.";
  if (files)
    out << QString("Each excerpt of a file starts with a marker such as [file: %1, lines 1-200]; its lines are "
                   "numbered from the first line of that range.")
               .arg(example_file);
  QStringList forms;
  if (pdfs > 0) forms << "(p. 12) or (pp. 12-13) for PDF pages, named as in their markers";
  if (files) forms << QString("(%1:40-58) for lines of a file").arg(example_file);
  if (!forms.isEmpty()) {
    out << QString("When your answer uses the documents, cite the source right after each statement: %1.")
               .arg(forms.join(", and "));
    if (pdfs > 1) out << QString("There are several PDFs: name the document too, as (%1, p. 12).").arg(example_pdf);
    out << "Cite only pages and lines that appear in the documents; if they do not hold the answer, say so.";
  }
  return out.join(' ');
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

}  // namespace folio::docs
