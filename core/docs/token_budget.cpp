#include "core/docs/token_budget.h"

#include <QCryptographicHash>
#include <QLocale>

#include <algorithm>
#include <numeric>

#include "core/docs/docs_internal.h"

namespace folio::docs {

// ---------------------------------------------------------------------------------------------
// TokenCounter

int64_t TokenCounter::count_text(const QString& text) const {
  if (text.isEmpty()) return 0;
  const QByteArray utf8 = text.toUtf8();
  // In pieces (folio::count_tokens): a long document costs the memory of one piece, not of its tokens.
  return folio::count_tokens(tokenizer_, std::string_view(utf8.constData(), static_cast<size_t>(utf8.size())), -1)
      .tokens;
}

int64_t TokenCounter::count(const Document& doc, const LayoutOptions& options) {
  const QString text = layout_document(doc, options);
  const QByteArray utf8 = text.toUtf8();
  const QByteArray key = QCryptographicHash::hash(utf8, QCryptographicHash::Sha256);
  const std::string_view bytes(utf8.constData(), static_cast<size_t>(utf8.size()));
  std::string stored_key;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = cache_.constFind(key);
    if (it != cache_.cend()) return it.value();
    if (persistent_ != nullptr) {
      stored_key = folio::chat::TokenCountCache::key(tokenizer_id_, bytes);
      int64_t n = -1;
      try {
        n = persistent_->find(stored_key);
      } catch (const std::exception&) {
        // A cache that cannot be read: the document is counted.
      }
      if (n >= 0) {
        cache_.insert(key, n);
        return n;
      }
    }
  }
  // Encode outside the lock: counting a long document takes a while and other threads may count others.
  const int64_t n = folio::count_tokens(tokenizer_, bytes, -1).tokens;
  std::lock_guard<std::mutex> lock(mutex_);
  cache_.insert(key, n);
  if (persistent_ != nullptr && !stored_key.empty()) {
    try {
      persistent_->put(stored_key, n);
      persistent_->flush();
    } catch (const std::exception&) {
      // A count that cannot be kept only costs the next run a count.
    }
  }
  ++encodes_;
  return n;
}

void TokenCounter::set_persistent_cache(folio::chat::TokenCountCache* cache, std::string tokenizer_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  persistent_ = cache;
  tokenizer_id_ = std::move(tokenizer_id);
}

int64_t TokenCounter::separator_tokens() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (separator_ >= 0) return separator_;
  }
  const QString sep = QString::fromLatin1(kDocumentSeparator);
  const int64_t n = std::max<int64_t>(0, count_text("x" + sep + "x") - 2 * count_text("x"));
  std::lock_guard<std::mutex> lock(mutex_);
  separator_ = n;
  return n;
}

int64_t TokenCounter::cache_size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cache_.size();
}

int64_t TokenCounter::encodes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return encodes_;
}

// ---------------------------------------------------------------------------------------------
// Budget

namespace {
QString num(int64_t n) { return QLocale(QLocale::English).toString(static_cast<qlonglong>(n)); }
}  // namespace

Budget plan_budget(const QVector<Document>& docs, TokenCounter& counter, int64_t context_tokens,
                   int64_t reserve_tokens, const LayoutOptions& options) {
  Budget b;
  b.context_tokens = context_tokens;
  b.reserve_tokens = reserve_tokens;
  b.available_tokens = std::max<int64_t>(0, context_tokens - reserve_tokens);
  const int n = static_cast<int>(docs.size());
  for (const Document& d : docs) b.document_tokens.push_back(counter.count(d, options));
  const int64_t sep = counter.separator_tokens();
  b.separator_tokens = n > 1 ? sep * (n - 1) : 0;
  b.total_tokens = std::accumulate(b.document_tokens.begin(), b.document_tokens.end(), int64_t{0}) + b.separator_tokens;
  b.fits = b.total_tokens <= b.available_tokens;
  const QString room = QString("%1 tokens available (a context of %2 minus %3 kept for the question and the answer)")
                           .arg(num(b.available_tokens), num(context_tokens), num(reserve_tokens));
  if (b.fits) {
    b.summary = QString("The documents take %1 of the %2.").arg(num(b.total_tokens), room);
    return b;
  }
  b.over_by = b.total_tokens - b.available_tokens;
  // Removing document i saves its tokens and one separator.
  auto saved = [&](int i) { return b.document_tokens[i] + (n > 1 ? sep : 0); };
  for (int i = 0; i < n; ++i)
    if (saved(i) >= b.over_by) b.drop_any_one.push_back(i);
  QVector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return b.document_tokens[a] > b.document_tokens[c]; });
  int64_t removed = 0;
  for (int i : order) {
    if (removed >= b.over_by) break;
    b.drop_largest.push_back(i);
    removed += saved(i);
  }
  for (int i = 0; i < n; ++i) {
    const int64_t keep = b.available_tokens - (b.total_tokens - b.document_tokens[i]);
    if (keep < 100 || keep >= b.document_tokens[i]) continue;  // too little to be of use
    TruncationOption t;
    t.document = i;
    t.keep_tokens = keep;
    t.document_tokens = b.document_tokens[i];
    t.description = QString("keep the first %1 of %2 tokens of %3 (%4%)")
                        .arg(num(keep), num(b.document_tokens[i]), docs[i].title)
                        .arg(keep * 100 / std::max<int64_t>(1, b.document_tokens[i]));
    b.truncations.push_back(t);
  }
  b.summary = QString("The documents take %1 tokens, %2 more than the %3: remove a document, or keep only the first "
                      "part of one.")
                  .arg(num(b.total_tokens), num(b.over_by), room);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Truncation

namespace {

const char* kTruncatedNoticeMark = "was truncated by the user";

QString page_span(const Document& doc, int first, int last) {
  auto label = [&](int i) { return citation_label(doc, i); };
  return first == last ? QString("page %1").arg(label(first)) : QString("pages %1-%2").arg(label(first), label(last));
}

// What is left out when sections [0, k) are kept whole and, if kept_lines_or_chars > 0, the start
// of section k too (files: its first kept_lines lines).
QString rest_description(const Document& doc, int k, bool partial, int kept_lines) {
  const QVector<Section>& s = doc.sections;
  if (doc.kind == DocumentKind::Pdf) {
    const int last = std::max(doc.page_count, static_cast<int>(doc.page_labels.size())) - 1;
    if (partial) {
      const int p = s[k].page_index;
      const QString label = citation_label(doc, p);
      if (p >= last) return QString("the end of page %1").arg(label);
      return QString("the end of page %1 and %2").arg(label, page_span(doc, p + 1, last));
    }
    const int first = k > 0 ? s[k - 1].page_index + 1 : (k < s.size() ? s[k].page_index : 0);
    return page_span(doc, std::min(first, last), last);
  }
  // Files: the first file and line not included, and the files after it.
  const QString file = s[k].file;
  const int from_line = partial ? s[k].first_line + kept_lines : s[k].first_line;
  int line_count = s[k].last_line;
  qsizetype file_index = -1;
  for (qsizetype i = 0; i < doc.files.size(); ++i)
    if (doc.files[i].path == file) {
      file_index = i;
      line_count = doc.files[i].line_count;
    }
  QString first_part = from_line <= 1 ? file
                       : from_line == line_count
                           ? QString("%1 line %2").arg(file).arg(from_line)
                           : QString("%1 lines %2-%3").arg(file).arg(from_line).arg(line_count);
  const qsizetype after = file_index < 0 ? 0 : doc.files.size() - file_index - 1;
  if (after == 0) return first_part;
  if (after == 1) return QString("%1 and the file after it, %2").arg(first_part, doc.files.back().path);
  return QString("%1 and the %2 files after it, %3 to %4")
      .arg(first_part)
      .arg(after)
      .arg(doc.files[file_index + 1].path, doc.files.back().path);
}

QString notice_text(const Document& doc, const QString& rest) {
  return QString("[... truncated by the user: the rest of %1 (%2) is not included ...]").arg(doc.title, rest);
}

// Candidate cut positions in a section's text (exclusive ends of prefixes), ascending.
QVector<qsizetype> cut_points(const Section& s, bool pdf) {
  QVector<qsizetype> points;
  const QString& t = s.text;
  for (qsizetype i = 0; i < t.size(); ++i)
    if (t[i] == '\n' || (pdf && t[i] == ' ')) points.push_back(i);
  return points;
}

Document build(const Document& base, int k, qsizetype cut, int64_t limit) {
  Document out = base;
  out.sections.resize(k);
  bool partial = false;
  int kept_lines = 0;
  if (cut > 0 && k < base.sections.size()) {
    Section s = base.sections[k];
    s.text = s.text.left(cut);
    while (!s.text.isEmpty() && s.text.back().isSpace()) s.text.chop(1);
    if (!s.text.isEmpty()) {
      if (s.first_line > 0) {
        kept_lines = static_cast<int>(s.text.count('\n')) + 1;
        s.last_line = s.first_line + kept_lines - 1;
      }
      out.sections.push_back(s);
      partial = true;
    }
  }
  const QString rest = rest_description(base, k, partial, kept_lines);
  out.truncation_notice = notice_text(base, rest);
  out.truncated_to_tokens = limit;
  out.notices << QString("%1 %2 to its first %3 tokens: %4 is not included in the prompt")
                     .arg(base.title, kTruncatedNoticeMark, num(limit), rest);
  return out;
}

}  // namespace

Document truncate_document(const Document& doc, int64_t keep_tokens, TokenCounter& counter,
                           const LayoutOptions& options) {
  if (counter.count(doc, options) <= keep_tokens) return doc;
  // Start from the whole of what this document holds (an earlier truncation is replaced).
  Document base = doc;
  base.truncation_notice.clear();
  base.truncated_to_tokens = 0;
  base.notices.erase(std::remove_if(base.notices.begin(), base.notices.end(),
                                    [](const QString& s) { return s.contains(kTruncatedNoticeMark); }),
                     base.notices.end());
  const int n = static_cast<int>(base.sections.size());
  auto tokens_of = [&](const Document& d) { return counter.count_text(layout_document(d, options)); };

  // The smallest result: the heading and the notice of a cut before the first section.
  const Document smallest = build(base, 0, 0, keep_tokens);
  const int64_t fixed = tokens_of(smallest);
  if (fixed > keep_tokens || n == 0)
    throw DocumentError(DocumentProblem::TooLarge, base.path,
                        QString("%1: cannot keep only %2 tokens of it: its heading and the truncation notice alone "
                                "take %3; keep more tokens, or remove the document instead")
                            .arg(detail::shown(base.path), num(keep_tokens), num(fixed)));

  const int64_t sep = counter.count_text("x" + QString::fromLatin1(kPartSeparator) + "x") - 2 * counter.count_text("x");
  QVector<int64_t> section_tokens(n);
  for (int i = 0; i < n; ++i)
    section_tokens[i] = counter.count_text(layout_section(base, base.sections[i], options)) + std::max<int64_t>(0, sep);

  // 1. Whole sections: estimated from the sections counted apart, then corrected by counting the
  //    candidate exactly (joined parts cost a little less or more than counted apart).
  const int64_t budget = keep_tokens - fixed;
  int k = 0;
  int64_t used = 0;
  // The whole document does not fit, so something of the last section at least is left out.
  while (k < n - 1 && used + section_tokens[k] <= budget) used += section_tokens[k++];
  auto exact = [&](int sections) { return tokens_of(build(base, sections, 0, keep_tokens)); };
  int64_t at_k = exact(k);
  while (k > 0 && at_k > keep_tokens) at_k = exact(--k);
  while (k < n - 1) {
    const int64_t next = exact(k + 1);
    if (next > keep_tokens) break;
    ++k;
    at_k = next;
  }
  Document best = build(base, k, 0, keep_tokens);  // fits (k = 0 is `smallest`)

  // 2. The first lines (PDF: words) of section k in what is left; the notice of a cut mid-section
  //    is a little longer than that of a cut at a boundary.
  const int64_t longer_notice =
      std::max<int64_t>(0, counter.count_text(notice_text(base, rest_description(base, k, true, 1))) -
                               counter.count_text(notice_text(base, rest_description(base, k, false, 0))));
  int64_t remaining = keep_tokens - at_k - longer_notice - std::max<int64_t>(0, sep);
  const Section& s = base.sections[k];
  const QVector<qsizetype> points = cut_points(s, base.kind == DocumentKind::Pdf);
  for (int attempt = 0; attempt < 8 && remaining > 4; ++attempt) {
    qsizetype lo = 0, hi = points.size();  // the number of cut points usable
    while (lo < hi) {
      const qsizetype mid = (lo + hi + 1) / 2;
      Section trial = s;
      trial.text = s.text.left(points[mid - 1]);
      if (trial.first_line > 0) trial.last_line = trial.first_line + static_cast<int>(trial.text.count('\n'));
      if (counter.count_text(layout_section(base, trial, options)) <= remaining)
        lo = mid;
      else
        hi = mid - 1;
    }
    if (lo == 0) break;
    Document partial = build(base, k, points[lo - 1], keep_tokens);
    const int64_t got = tokens_of(partial);
    if (got <= keep_tokens) {
      best = std::move(partial);
      break;
    }
    remaining -= (got - keep_tokens) + 1;  // joined it costs more than counted apart: try smaller
  }
  counter.count(best, options);  // cache the final count
  return best;
}

// ---------------------------------------------------------------------------------------------
// A part chosen by the user

QString PartSelection::describe(const Document& doc) const {
  if (first_page >= 0) {
    const int pages = std::max(doc.page_count, static_cast<int>(doc.page_labels.size()));
    return QString("%1 of %2").arg(page_span(doc, first_page, std::max(first_page, last_page))).arg(pages);
  }
  if (!files.isEmpty())
    return files.size() == 1 ? QString("%1 of %2 files").arg(files.front()).arg(doc.files.size())
                             : QString("%1 of %2 files").arg(files.size()).arg(doc.files.size());
  return {};
}

Document select_parts(const Document& doc, const PartSelection& selection) {
  if (selection.empty()) return doc;
  Document out = doc;
  out.sections.clear();
  QString left_out;
  if (selection.first_page >= 0) {
    const int last_page = std::max(doc.page_count, static_cast<int>(doc.page_labels.size())) - 1;
    const int first = std::clamp(selection.first_page, 0, std::max(0, last_page));
    const int last =
        std::clamp(selection.last_page < 0 ? last_page : selection.last_page, first, std::max(0, last_page));
    for (const Section& s : doc.sections)
      if (s.page_index >= first && s.page_index <= last) out.sections.push_back(s);
    QStringList spans;
    if (first > 0) spans << page_span(doc, 0, first - 1);
    if (last < last_page) spans << page_span(doc, last + 1, last_page);
    left_out = spans.join(" and ");
  } else {
    QStringList dropped;
    for (const FileEntry& f : doc.files)
      if (!selection.files.contains(f.path)) dropped << f.path;
    for (const Section& s : doc.sections)
      if (selection.files.contains(s.file)) out.sections.push_back(s);
    left_out = dropped.size() <= 3
                   ? dropped.join(", ")
                   : QString("%1 files: %2 ... %3").arg(dropped.size()).arg(dropped.front(), dropped.back());
  }
  if (out.sections.isEmpty())
    throw DocumentError(DocumentProblem::Empty, doc.path,
                        QString("%1: the chosen part (%2) holds no text; choose other pages or files")
                            .arg(detail::shown(doc.path), selection.describe(doc)));
  if (left_out.isEmpty()) return out;
  out.truncation_notice = QString("[... left out by the user: %1 of %2 ...]").arg(left_out, doc.title);
  out.notices << QString("%1: only %2 is used, as the user chose; %3 is left out of the prompt")
                     .arg(doc.title, selection.describe(doc), left_out);
  return out;
}

}  // namespace folio::docs
