#include "core/chat/grounding.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace folio::chat {

namespace {

constexpr size_t kMaxUnitLines = 12;  // a paragraph of a text file or a block of code, at most
constexpr size_t kQuoteLines = 3;     // the quote: the best window of at most this many lines
constexpr size_t kQuoteBytes = 300;
constexpr size_t kCandidates = 8;      // passages looked at closely per statement
constexpr size_t kShortStatement = 4;  // fewer own words than this: the question's words help find it

bool blank(const std::string& line) {
  return line.find_first_not_of(" \t\r\f\v") == std::string::npos;
}

bool markdown_heading(const std::string& line) {
  const size_t i = line.find_first_not_of(' ');
  if (i == std::string::npos || i > 3 || line[i] != '#') return false;
  const size_t j = line.find_first_not_of('#', i);
  return j == std::string::npos || line[j] == ' ';
}

// Collapses white space and keeps at most kQuoteBytes, cut at a word (and never inside a UTF-8 character).
std::string one_line(const std::string& text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  if (out.size() <= kQuoteBytes) return out;
  size_t cut = out.rfind(' ', kQuoteBytes);
  if (cut == std::string::npos || cut < kQuoteBytes / 2) {
    cut = kQuoteBytes;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
  }
  return out.substr(0, cut) + "…";
}

// The text on one line, white space collapsed, not cut.
std::string one_line_whole(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    if (space && (out.empty() || out.back() == ' ')) continue;
    out += space ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Of a text's sentences, the one that weighs most and its neighbour when that weighs too (a PDF
// page's text often runs several sentences into one line).
template <class Weigh>
std::string best_sentences(const std::string& text, Weigh weigh) {
  std::vector<std::string> sentences;
  size_t start = 0;
  for (size_t i = 0; i + 2 < text.size(); ++i)
    if ((text[i] == '.' || text[i] == '!' || text[i] == '?') && text[i + 1] == ' ' && text[i + 2] >= 'A' &&
        text[i + 2] <= 'Z') {
      sentences.push_back(text.substr(start, i + 1 - start));
      start = i + 2;
    }
  sentences.push_back(text.substr(start));
  if (sentences.size() == 1) return text;
  std::vector<double> w;
  for (const std::string& x : sentences) w.push_back(weigh(x));
  const size_t best = static_cast<size_t>(std::max_element(w.begin(), w.end()) - w.begin());
  size_t first = best, last = best;
  const double before = best > 0 ? w[best - 1] : 0.0, after = best + 1 < w.size() ? w[best + 1] : 0.0;
  if (after > 0.0 && after >= before)
    last = best + 1;
  else if (before > 0.0)
    first = best - 1;
  std::string out;
  for (size_t k = first; k <= last; ++k) out += (k > first ? " " : "") + sentences[k];
  return out;
}

std::vector<std::string> unique_terms(std::string_view text) {
  std::vector<std::string> t = index_terms(text);
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  return t;
}

// A written citation in parentheses: "(p. 12)", "(pp. 3-4)", "(page 7)", "(src/a.cpp:4-9)",
// "(manual.pdf, p. 2)". Its numbers would otherwise count as the statement's words.
bool citation_group(std::string_view inner) {
  if (inner.size() > 80) return false;
  std::string low(inner);
  for (char& c : low) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  for (size_t i = 0; i < low.size(); ++i) {
    const bool word_start = i == 0 || !(std::isalnum(static_cast<unsigned char>(low[i - 1])) != 0);
    if (word_start &&
        (low.compare(i, 2, "p.") == 0 || low.compare(i, 3, "pp.") == 0 || low.compare(i, 5, "page ") == 0 ||
         low.compare(i, 6, "pages ") == 0 || low.compare(i, 5, "line ") == 0 || low.compare(i, 6, "lines ") == 0))
      return true;
    if (low[i] == ':' && i + 1 < low.size() && low[i + 1] >= '0' && low[i + 1] <= '9' && i > 0 && low[i - 1] != ' ')
      return true;
  }
  return false;
}

std::string without_citations(std::string_view text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '(') {
      const size_t close = text.find(')', i);
      if (close != std::string_view::npos && citation_group(text.substr(i + 1, close - i - 1))) {
        while (!out.empty() && out.back() == ' ') out.pop_back();
        i = close + 1;
        continue;
      }
    }
    out += text[i++];
  }
  return out;
}

}  // namespace

std::vector<std::string> answer_statements(std::string_view answer) {
  std::vector<std::string> out;
  auto push = [&](std::string s) {
    s = without_citations(s);
    // Markdown marks at the start of a line: list bullets, numbers, quotes, headings, emphasis.
    size_t b = s.find_first_not_of(" \t");
    while (b != std::string::npos && b < s.size()) {
      const char c = s[b];
      if (c == '-' || c == '*' || c == '+' || c == '>' || c == '#') {
        ++b;
      } else if (c >= '0' && c <= '9') {
        size_t e = b;
        while (e < s.size() && s[e] >= '0' && s[e] <= '9') ++e;
        if (e < s.size() && (s[e] == '.' || s[e] == ')') && e + 1 < s.size() && s[e + 1] == ' ')
          b = e + 1;
        else
          break;
      } else {
        break;
      }
      b = s.find_first_not_of(" \t", b);
    }
    if (b == std::string::npos) return;
    s = s.substr(b);
    s.erase(std::remove(s.begin(), s.end(), '*'), s.end());
    s.erase(std::remove(s.begin(), s.end(), '`'), s.end());
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
    if (!s.empty()) out.push_back(std::move(s));
  };
  std::string current;
  for (size_t i = 0; i < answer.size(); ++i) {
    const char c = answer[i];
    if (c == '\n' || c == '\r') {
      push(std::move(current));
      current.clear();
      continue;
    }
    current += c;
    // A sentence ends at . ! ? before white space and a capital letter (or the end): "p. 12",
    // "e.g. the" and "2.3.1" do not end one.
    // (A list's number "1." opens its item, it does not end a sentence.)
    const bool list_number =
        c == '.' && current.size() >= 2 && current.find_first_not_of(" \t0123456789") == current.size() - 1;
    if ((c == '.' || c == '!' || c == '?') && !list_number && i + 1 < answer.size() &&
        (answer[i + 1] == ' ' || answer[i + 1] == '\t')) {
      size_t j = i + 1;
      while (j < answer.size() && (answer[j] == ' ' || answer[j] == '\t')) ++j;
      if (j >= answer.size() || (answer[j] >= 'A' && answer[j] <= 'Z') || answer[j] == '\n') {
        push(std::move(current));
        current.clear();
      }
    }
  }
  push(std::move(current));
  return out;
}

std::string source_location(const Document& doc, const SourcePassage& p) {
  if (p.page_index >= 0) {
    std::string where = doc.title;
    where += ", p. ";
    where += p.page_label.empty() ? std::to_string(p.page_index + 1) : p.page_label;
    return where;
  }
  std::string where = p.file.empty() ? doc.title : p.file;
  if (p.first_line > 0) {
    where += ':';
    where += std::to_string(p.first_line);
    if (p.last_line > p.first_line) {
      where += '-';
      where += std::to_string(p.last_line);
    }
  }
  return where;
}

std::vector<Document> GroundingIndex::build_units() {
  std::vector<Document> units(1);  // one document of passages for the BM25 index
  for (size_t d = 0; d < docs_.size(); ++d) {
    section_base_.push_back(section_lines_.size());
    const Document& doc = docs_[d];
    for (size_t s = 0; s < doc.sections.size(); ++s) {
      const Section& sec = doc.sections[s];
      section_lines_.push_back(split_lines(sec.text));
      const std::vector<std::string>& lines = section_lines_.back();
      if (!sec.note.empty() || lines.empty()) continue;
      auto add = [&](size_t first, size_t last) {
        Section u;
        u.file = sec.file;
        for (size_t k = first; k < last; ++k) {
          if (k > first) u.text += '\n';
          u.text += lines[k];
        }
        units[0].sections.push_back(std::move(u));
        units_.push_back({d, s, first, last});
      };
      if (sec.page_index >= 0) {  // a PDF page is one passage
        add(0, lines.size());
        continue;
      }
      // Paragraphs: a blank line or a heading starts the next one (the heading goes with the text
      // under it), and none is longer than kMaxUnitLines.
      size_t first = 0;
      while (first < lines.size() && blank(lines[first])) ++first;
      size_t k = first;
      while (first < lines.size()) {
        ++k;
        const bool end = k >= lines.size() || (blank(lines[k]) && !markdown_heading(lines[k - 1])) ||
                         (markdown_heading(lines[k]) && k > first) || k - first >= kMaxUnitLines;
        if (!end) continue;
        size_t last = k;
        while (last > first && blank(lines[last - 1])) --last;
        if (last > first) add(first, last);
        first = k;
        while (first < lines.size() && blank(lines[first])) ++first;
        k = first;
      }
    }
  }
  return units;
}

GroundingIndex::GroundingIndex(std::vector<Document> docs) : docs_(std::move(docs)), bm25_(build_units()) {}

std::vector<SourcePassage> GroundingIndex::ground(std::string_view answer, std::string_view question,
                                                  const GroundingOptions& options) const {
  const std::vector<std::string> statements = answer_statements(answer);
  const std::vector<std::string> question_terms = unique_terms(question);
  std::unordered_map<std::string, double> idf_cache;
  auto idf = [&](const std::string& t) {
    auto it = idf_cache.find(t);
    if (it == idf_cache.end()) it = idf_cache.emplace(t, bm25_.idf(t)).first;
    return it->second;
  };

  // Best passage per statement, merged by where it is.
  std::map<std::tuple<size_t, size_t, int>, SourcePassage> found;
  for (size_t si = 0; si < statements.size(); ++si) {
    const std::vector<std::string> own = unique_terms(statements[si]);
    if (own.size() < 2) continue;  // "Yes.", "14." cannot be told apart from chance
    std::vector<std::string> query = own;
    if (own.size() < kShortStatement) {
      query.insert(query.end(), question_terms.begin(), question_terms.end());
      std::sort(query.begin(), query.end());
      query.erase(std::unique(query.begin(), query.end()), query.end());
    }
    std::string query_text;
    for (const std::string& t : query) query_text += t + ' ';
    const std::vector<double> scores = bm25_.scores(query_text);
    std::vector<size_t> order;
    for (size_t u = 0; u < scores.size(); ++u)
      if (scores[u] > 0.0) order.push_back(u);
    const size_t top = std::min(order.size(), kCandidates);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(top), order.end(),
                      [&](size_t a, size_t b) { return scores[a] > scores[b]; });
    order.resize(top);

    double own_weight = 0.0, query_weight = 0.0;
    for (const std::string& t : own) own_weight += idf(t);
    for (const std::string& t : query) query_weight += idf(t);
    struct Pick {
      size_t unit;
      double own_share, query_share, score;
      size_t own_found;
    };
    std::optional<Pick> best;
    for (size_t u : order) {
      const Unit& unit = units_[u];
      const std::vector<std::string>& lines = lines_of(unit.doc, unit.section);
      std::string text = docs_[unit.doc].sections[unit.section].file + "\n";
      for (size_t k = unit.first; k < unit.last; ++k) text += lines[k] + "\n";
      const std::vector<std::string> has = unique_terms(text);
      auto holds = [&](const std::string& t) { return std::binary_search(has.begin(), has.end(), t); };
      Pick p{u, 0.0, 0.0, scores[u], 0};
      for (const std::string& t : own)
        if (holds(t)) p.own_share += idf(t), ++p.own_found;
      for (const std::string& t : query)
        if (holds(t)) p.query_share += idf(t);
      p.own_share /= std::max(own_weight, 1e-9);
      p.query_share /= std::max(query_weight, 1e-9);
      if (p.own_share < options.min_support || p.own_found < 2) continue;
      // The passage that holds most of the statement; BM25 breaks near ties (it prefers the
      // passage where the words are dense over a long one that mentions them in passing).
      const auto rank = [](const Pick& x) { return 0.7 * x.own_share + 0.3 * x.query_share; };
      if (!best || rank(p) > rank(*best) + 0.02 || (std::abs(rank(p) - rank(*best)) <= 0.02 && p.score > best->score))
        best = p;
    }
    if (!best) continue;

    // The quote: the window of up to kQuoteLines lines of the passage that holds the most weight.
    const Unit& unit = units_[best->unit];
    const Document& doc = docs_[unit.doc];
    const Section& sec = doc.sections[unit.section];
    const std::vector<std::string>& lines = lines_of(unit.doc, unit.section);
    std::vector<std::vector<std::string>> line_terms;
    for (size_t k = unit.first; k < unit.last; ++k) line_terms.push_back(unique_terms(lines[k]));
    size_t q_first = unit.first, q_last = unit.first + 1;
    double q_best = -1.0;
    for (size_t a = 0; a < line_terms.size(); ++a) {
      // A window starts at a line that holds a word of the statement (or of the question).
      if (std::none_of(line_terms[a].begin(), line_terms[a].end(),
                       [&](const std::string& t) { return std::binary_search(query.begin(), query.end(), t); }))
        continue;
      std::unordered_set<std::string> seen;
      double w = 0.0;
      for (size_t b = a; b < std::min(line_terms.size(), a + kQuoteLines); ++b) {
        for (const std::string& t : line_terms[b])
          if (std::binary_search(query.begin(), query.end(), t) && seen.insert(t).second)
            w += idf(t) * (std::binary_search(own.begin(), own.end(), t) ? 2.0 : 1.0);
        if (w > q_best + 1e-9) {  // a longer window only when it holds more
          q_best = w;
          q_first = unit.first + a;
          q_last = unit.first + b + 1;
        }
      }
    }
    std::string quote;
    for (size_t k = q_first; k < q_last; ++k) quote += lines[k] + "\n";
    quote = best_sentences(one_line_whole(quote), [&](const std::string& sentence) {
      double w = 0.0;
      for (const std::string& t : unique_terms(sentence))
        if (std::binary_search(query.begin(), query.end(), t))
          w += idf(t) * (std::binary_search(own.begin(), own.end(), t) ? 2.0 : 1.0);
      return w;
    });

    SourcePassage p;
    p.document = unit.doc;
    p.section = unit.section;
    p.page_index = sec.page_index;
    if (sec.page_index >= 0) p.page_label = citation_label(doc, sec);
    p.file = sec.file;
    if (sec.page_index < 0 && sec.first_line > 0) {
      p.first_line = sec.first_line + static_cast<int>(q_first);
      p.last_line = sec.first_line + static_cast<int>(q_last) - 1;
    }
    p.quote = one_line(quote);
    p.support = best->own_share;
    p.statements.push_back(static_cast<int>(si));
    const auto key = std::make_tuple(p.document, p.section, p.first_line);
    auto it = found.find(key);
    if (it == found.end()) {
      found.emplace(key, std::move(p));
    } else {
      it->second.support = std::max(it->second.support, p.support);
      it->second.statements.push_back(static_cast<int>(si));
    }
  }
  std::vector<SourcePassage> out;
  for (auto& [key, p] : found) out.push_back(std::move(p));
  // The strongest first; of equals, the one that supports the earliest statement.
  std::stable_sort(out.begin(), out.end(), [](const SourcePassage& a, const SourcePassage& b) {
    if (std::abs(a.support - b.support) > 1e-9) return a.support > b.support;
    return a.statements.front() < b.statements.front();
  });
  if (out.size() > options.max_sources) out.resize(options.max_sources);
  return out;
}

}  // namespace folio::chat
