#include "core/chat/context_packing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "core/chat/prompt_layout.h"
#include "core/common/error.h"

namespace folio::chat {

const char* fit_mode_name(FitMode m) {
  switch (m) {
    case FitMode::Error: return "error";
    case FitMode::Relevant: return "relevant";
    case FitMode::Beginning: return "beginning";
  }
  return "?";
}

FitMode fit_mode_from_name(const std::string& name) {
  if (name == "error") return FitMode::Error;
  if (name == "relevant") return FitMode::Relevant;
  if (name == "beginning") return FitMode::Beginning;
  throw Error(ErrorCode::BadArgument, "unknown fit mode '" + name + "'; use relevant, beginning or error");
}

namespace {

bool word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80;
}

bool stop_word(const std::string& w) {
  // Sorted, for a binary search: every word of every section is looked up here.
  static constexpr std::string_view kWords[] = {"an",   "and",  "are",   "as",    "at",  "be",   "by",  "do",
                                                "does", "for",  "from",  "how",   "in",  "is",   "it",  "its",
                                                "of",   "on",   "or",    "that",  "the", "this", "to",  "was",
                                                "what", "when", "where", "which", "who", "why",  "with"};
  if (w.size() > 5) return false;  // the longest is "where", "which"
  return std::binary_search(std::begin(kWords), std::end(kWords), std::string_view(w));
}

// English plurals to their singular, so "rows" finds "row" and "vectors" "vector": "ies" -> "y",
// a final "s" dropped after a letter other than s, u or i ("class", "status", "analysis" stay).
std::string plural_stem(std::string w) {
  const size_t n = w.size();
  if (n < 4 || w[n - 1] != 's') return w;
  if (n > 4 && w.compare(n - 3, 3, "ies") == 0) return w.substr(0, n - 3) + "y";
  const char before = w[n - 2];
  if (before == 's' || before == 'u' || before == 'i' || !(before >= 'a' && before <= 'z')) return w;
  w.pop_back();
  return w;
}

}  // namespace

std::vector<std::string> index_terms(std::string_view text) {
  std::vector<std::string> out;
  auto add = [&](std::string w) {
    if (w.size() < 2) return;
    for (char& c : w)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!stop_word(w)) out.push_back(plural_stem(std::move(w)));
  };
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && !word_byte(static_cast<unsigned char>(text[i]))) ++i;
    size_t j = i;
    while (j < text.size() && word_byte(static_cast<unsigned char>(text[j]))) ++j;
    const std::string_view word = text.substr(i, j - i);
    add(std::string(word));
    // An identifier also counts as its parts (snake_case, camelCase), so "join_ranges" is found
    // by "ranges" and "parseCitations" by "citations".
    size_t part = 0;
    for (size_t k = 1; k <= word.size(); ++k) {
      const bool end = k == word.size();
      const bool underscore = !end && word[k] == '_';
      const bool camel = !end && word[k] >= 'A' && word[k] <= 'Z' && word[k - 1] >= 'a' && word[k - 1] <= 'z';
      if (!end && !underscore && !camel) continue;
      if (part > 0 || !end) {
        const std::string_view piece = word.substr(part, k - part);
        if (!piece.empty() && piece[0] != '_') add(std::string(piece));
      }
      part = underscore ? k + 1 : k;
    }
    i = j;
  }
  return out;
}

SectionIndex::SectionIndex(const std::vector<Document>& docs, const std::vector<char>* skip) {
  std::unordered_map<std::string, uint32_t> ids;
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> postings;
  uint32_t section = 0;
  uint64_t total = 0;
  for (const Document& d : docs)
    for (const Section& s : d.sections) {
      std::unordered_map<uint32_t, uint32_t> counts;
      const bool skipped = skip != nullptr && section < skip->size() && (*skip)[section];
      // a file's path names what it is about ("memory_plan", "sampler")
      const std::vector<std::string> words =
          skipped ? std::vector<std::string>{} : index_terms(s.file.empty() ? s.text : s.file + "\n" + s.text);
      for (const std::string& w : words) {
        auto [it, added] = ids.emplace(w, static_cast<uint32_t>(postings.size()));
        if (added) postings.emplace_back();
        ++counts[it->second];
      }
      for (const auto& [term, n] : counts) postings[term].emplace_back(section, n);
      lengths_.push_back(static_cast<uint32_t>(words.size()));
      total += words.size();
      ++section;
    }
  // terms sorted so a question's words are found by binary search
  std::vector<std::pair<std::string, uint32_t>> sorted(ids.begin(), ids.end());
  std::sort(sorted.begin(), sorted.end());
  terms_.reserve(sorted.size());
  postings_.reserve(sorted.size());
  for (auto& [term, id] : sorted) {
    terms_.push_back(term);
    postings_.push_back(std::move(postings[id]));
  }
  mean_length_ = lengths_.empty() ? 1.0 : std::max(1.0, static_cast<double>(total) / lengths_.size());
}

double SectionIndex::idf(const std::string& term) const {
  const double n = static_cast<double>(lengths_.size());
  const auto it = std::lower_bound(terms_.begin(), terms_.end(), term);
  const double df = it == terms_.end() || *it != term
                        ? 1.0
                        : static_cast<double>(postings_[static_cast<size_t>(it - terms_.begin())].size());
  return std::log(1.0 + (n - df + 0.5) / (df + 0.5));
}

std::vector<double> SectionIndex::scores(std::string_view question) const {
  constexpr double k1 = 1.2, b = 0.75;
  std::vector<double> out(lengths_.size(), 0.0);
  std::vector<std::string> words = index_terms(question);
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  const double n = static_cast<double>(lengths_.size());
  // How much of the question a section covers: the idf of the question's words it holds over the
  // idf of all of them. BM25 alone lets one common word repeated many times outrank a section that
  // holds every word of the question once; the sum is scaled by the covered share.
  std::vector<double> covered(lengths_.size(), 0.0);
  double all_idf = 0.0;
  for (const std::string& w : words) {
    auto it = std::lower_bound(terms_.begin(), terms_.end(), w);
    if (it == terms_.end() || *it != w) continue;
    const auto& list = postings_[static_cast<size_t>(it - terms_.begin())];
    const double df = static_cast<double>(list.size());
    const double idf = std::log(1.0 + (n - df + 0.5) / (df + 0.5));
    all_idf += idf;
    for (const auto& [section, count] : list) {
      const double tf = count, len = lengths_[section];
      out[section] += idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * len / mean_length_));
      covered[section] += idf;
    }
  }
  if (all_idf > 0.0)
    for (size_t i = 0; i < out.size(); ++i) out[i] *= 0.5 + 0.5 * covered[i] / all_idf;
  return out;
}

namespace {

// "[pages 312-318 omitted]", "[src/a.cpp lines 201-400, src/b.cpp omitted]"
std::string gap_note(const Document& doc, const std::vector<const Section*>& gap) {
  if (gap.empty()) return {};
  if (doc.kind == DocumentKind::Pdf || gap.front()->page_index >= 0) {
    const std::string first = prompt_name(citation_label(doc, *gap.front()));
    const std::string last = prompt_name(citation_label(doc, *gap.back()));
    return gap.size() == 1 ? "[page " + first + " omitted]" : "[pages " + first + "-" + last + " omitted]";
  }
  // files: each file's omitted line range, the first three named
  std::vector<std::string> parts;
  size_t files = 0;
  for (size_t i = 0; i < gap.size();) {
    size_t j = i;
    while (j + 1 < gap.size() && gap[j + 1]->file == gap[i]->file) ++j;
    ++files;
    if (parts.size() < 3)
      parts.push_back(prompt_name(gap[i]->file) +
                      (gap[i]->first_line == gap[j]->last_line
                           ? " line " + std::to_string(gap[i]->first_line)
                           : " lines " + std::to_string(gap[i]->first_line) + "-" + std::to_string(gap[j]->last_line)));
    i = j + 1;
  }
  std::string note = "[omitted: ";
  for (size_t i = 0; i < parts.size(); ++i) note += (i ? ", " : "") + parts[i];
  if (files > parts.size()) note += " and " + std::to_string(files - parts.size()) + " more files";
  return note + "]";
}

}  // namespace

// Files are sectioned by 200 lines for the layout: too coarse to choose from, so packing looks at
// windows of whole lines of about kWindowBytes (a paragraph or a function). A longer line is cut
// into windows of its own, so a document on one line (minified, or text without newlines) packs
// like any other. PDF pages stay pages.
constexpr size_t kWindowBytes = 1536;

namespace {

// A line longer than a window cut into pieces of at most kWindowBytes: after the last blank of
// the piece's second half where there is one, else at a UTF-8 character boundary (a byte that is
// not a continuation byte; bytes alone where there is none).
std::vector<std::string_view> line_pieces(std::string_view line) {
  std::vector<std::string_view> out;
  while (line.size() > kWindowBytes) {
    size_t cut = kWindowBytes;
    const size_t blank = line.find_last_of(" \t", kWindowBytes - 1);
    if (blank != std::string_view::npos && blank >= kWindowBytes / 2) {
      cut = blank + 1;
    } else {
      while (cut > kWindowBytes - 4 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
      if ((static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) cut = kWindowBytes;
    }
    out.push_back(line.substr(0, cut));
    line.remove_prefix(cut);
  }
  if (!line.empty()) out.push_back(line);
  return out;
}

std::vector<Document> packing_units(const std::vector<Document>& docs) {
  std::vector<Document> out;
  out.reserve(docs.size());
  for (const Document& original : docs) {
    out.push_back(without_sections(original));
    Document& d = out.back();
    std::vector<Section> units;
    for (const Section& s : original.sections) {
      if (s.page_index >= 0 || s.text.size() <= kWindowBytes || s.first_line <= 0) {
        units.push_back(s);
        continue;
      }
      const std::vector<std::string> lines = split_lines(s.text);
      auto window = [&](size_t first) {
        Section w;  // s without its text (which may be long)
        w.page_index = s.page_index;
        w.page_label = s.page_label;
        w.file = s.file;
        w.first_line = w.last_line = s.first_line + static_cast<int>(first);
        return w;
      };
      size_t i = 0;
      while (i < lines.size()) {
        if (lines[i].size() > kWindowBytes) {
          for (std::string_view piece : line_pieces(lines[i])) {
            units.push_back(window(i));
            units.back().text = piece;
          }
          ++i;
          continue;
        }
        Section w = window(i);
        size_t j = i;
        while (j < lines.size() && lines[j].size() <= kWindowBytes &&
               (j == i || w.text.size() + lines[j].size() + 1 <= kWindowBytes)) {
          if (j > i) w.text += '\n';
          w.text += lines[j];
          ++j;
        }
        w.last_line = s.first_line + static_cast<int>(j) - 1;
        units.push_back(std::move(w));
        i = j;
      }
    }
    d.sections = std::move(units);
  }
  return out;
}

}  // namespace

PackingIndex::PackingIndex(const std::vector<Document>& docs,
                           const std::function<int64_t(const std::string&)>& count_tokens, int64_t max_unit_tokens,
                           size_t exact_bytes, size_t exact_sample_bytes)
    : units_(packing_units(docs)), count_(count_tokens) {
  for (const Document& d : docs) {
    size_t bytes = 0;
    for (const Section& s : d.sections) bytes += s.text.size();
    original_.push_back(bytes <= kKeepWholeBytes ? d : without_sections(d));
  }
  const int64_t sep = count_tokens(kPartSeparator);
  separator_tokens_ = sep;
  size_t unit_bytes = 0;
  for (const Document& d : units_)
    for (const Section& s : d.sections) unit_bytes += s.text.size();
  const bool estimate = unit_bytes > exact_bytes;
  std::vector<char> too_large;
  // Tokens per byte of the units counted so far (the sample), for estimating the rest.
  int64_t sample_tokens = 0;
  size_t sample_bytes = 0;
  for (const Document& d : units_) {
    fixed_tokens_ += count_tokens(layout_document(without_sections(d))) + sep;
    for (const Section& s : d.sections) {
      int64_t n = 0;
      if (!estimate || sample_bytes < exact_sample_bytes) {
        const std::string laid_out = layout_section(d, s);
        n = count_tokens(laid_out);
        sample_tokens += n;
        sample_bytes += laid_out.size();
        estimated_.push_back(0);
      } else {
        // 10% above the sample's rate: an estimate decides only what is not worth counting.
        const double per_byte =
            static_cast<double>(sample_tokens) / static_cast<double>(std::max<size_t>(1, sample_bytes));
        n = static_cast<int64_t>(1.1 * per_byte * static_cast<double>(s.text.size() + s.file.size() + 24)) + 1;
        estimated_.push_back(1);
      }
      too_large.push_back(n > max_unit_tokens ? 1 : 0);
      unit_tokens_.push_back(n + sep);
    }
  }
  if (!estimate) estimated_.clear();
  marker_tokens_ = count_tokens("[pages 1000-2000 omitted]") + sep;
  bm25_ = SectionIndex(units_, &too_large);
}

int64_t PackingIndex::total_tokens() const {
  return std::accumulate(unit_tokens_.begin(), unit_tokens_.end(), fixed_tokens_);
}

namespace {

std::string join_numbers(const std::vector<int>& sorted) {
  std::string out;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] <= sorted[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += std::to_string(sorted[i]);
    if (sorted[j] != sorted[i]) {
      out += '-';
      out += std::to_string(sorted[j]);
    }
    i = j + 1;
  }
  return out;
}

// What of `original` the packed document holds, for people ("" = all of it).
std::string used_parts(const Document& original, const Document& packed) {
  bool whole = true;
  for (const Section& s : packed.sections) whole = whole && s.note.empty();
  if (whole && packed.sections.size() >= original.sections.size()) return {};
  std::vector<int> pages, lines;
  std::vector<std::string> files;
  for (const Section& s : packed.sections) {
    if (!s.note.empty()) continue;
    if (s.page_index >= 0) {
      pages.push_back(s.page_index + 1);
    } else {
      if (files.empty() || files.back() != s.file) files.push_back(s.file);
      for (int l = s.first_line; l <= s.last_line && l > 0; ++l) lines.push_back(l);
    }
  }
  if (!pages.empty()) {
    // Pages are named by their number in the file: labels may repeat or be missing.
    std::sort(pages.begin(), pages.end());
    pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
    std::string out = pages.size() == 1 ? "page " : "pages ";
    out += join_numbers(pages);
    out += " of ";
    out += std::to_string(original.page_count);
    return out;
  }
  if (original.kind != DocumentKind::SourceTree) {
    if (lines.empty()) return "nothing";
    std::sort(lines.begin(), lines.end());
    lines.erase(std::unique(lines.begin(), lines.end()), lines.end());
    std::string out = "lines ";
    out += join_numbers(lines);
    return out;
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  std::string out = std::to_string(files.size());
  out += " of ";
  out += std::to_string(original.files.size());
  out += " files";
  for (size_t i = 0; i < files.size() && i < 5; ++i) {
    out += i == 0 ? ": " : ", ";
    out += files[i];
  }
  if (files.size() > 5) out += ", …";
  return out;
}

}  // namespace

std::vector<size_t> strongest_units(const PackingIndex& index, std::string_view question, size_t limit) {
  const std::vector<double> scores = index.bm25().scores(question);
  std::vector<size_t> order;
  for (size_t i = 0; i < scores.size(); ++i)
    if (scores[i] > 0.0) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  std::vector<size_t> out;
  for (size_t i : order) {
    if (out.size() >= limit || scores[i] < 0.5 * scores[order.front()]) break;
    out.push_back(i);
  }
  return out;
}

int64_t packing_budget(int64_t context_tokens, int64_t reserve_tokens, int64_t fixed_tokens) {
  int64_t budget = context_tokens - reserve_tokens - fixed_tokens;
  if (const int64_t growth = std::min<int64_t>(context_tokens / 10, 2048); budget > 2 * growth) budget -= growth;
  return budget;
}

PackResult pack_documents(const std::vector<Document>& docs, std::string_view question, int64_t budget_tokens,
                          FitMode mode, const std::function<int64_t(const std::string&)>& count_tokens) {
  return pack_documents(PackingIndex(docs, count_tokens), question, budget_tokens, mode);
}

PackResult pack_documents(const PackingIndex& index, std::string_view question, int64_t budget_tokens, FitMode mode) {
  PackResult r;
  const std::vector<Document>& original = index.original_;
  const std::vector<Document>& docs = index.units_;
  // Sections in document order, with where they live.
  struct Ref {
    size_t doc, index;
  };
  std::vector<Ref> refs;
  for (size_t d = 0; d < docs.size(); ++d)
    for (size_t i = 0; i < docs[d].sections.size(); ++i) refs.push_back({d, i});
  r.total_sections = static_cast<int64_t>(refs.size());
  int64_t used = index.fixed_tokens_;
  // A gap marker costs about this much; one per kept run of sections is held back.
  const int64_t marker = index.marker_tokens_;

  std::vector<double> score(refs.size(), 0.0);
  if (mode == FitMode::Relevant && !refs.empty()) {
    const std::vector<double> raw = index.bm25_.scores(question);
    for (size_t i = 0; i < refs.size(); ++i) {
      score[i] = raw[i];
      // neighbours within a document share half a strong hit's score
      if (i > 0 && refs[i - 1].doc == refs[i].doc) score[i] = std::max(score[i], 0.5 * raw[i - 1]);
      if (i + 1 < refs.size() && refs[i + 1].doc == refs[i].doc) score[i] = std::max(score[i], 0.5 * raw[i + 1]);
    }
  }
  // Order of choice: Relevant: each document's first sections up to a 5% share, then by score,
  // then the rest in document order; Beginning: document order.
  std::vector<size_t> order(refs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::vector<char> lead(refs.size(), 0);
  if (mode == FitMode::Relevant) {
    const int64_t lead_budget = std::max<int64_t>(1, budget_tokens / 20 / std::max<int64_t>(1, docs.size()));
    size_t first = 0;  // the document's first section among all
    for (const Document& d : docs) {
      int64_t spent = 0;
      for (size_t k = 0; k < d.sections.size(); ++k) {
        // ~4 bytes a token: this is a share of the budget, not a count
        const int64_t estimate = static_cast<int64_t>(d.sections[k].text.size() / 4) + 8;
        if (spent + estimate > lead_budget) break;
        lead[first + k] = 1;
        spent += estimate;
      }
      first += d.sections.size();
    }
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (lead[a] != lead[b]) return lead[a] > lead[b];
      return score[a] > score[b];
    });
  }
  std::vector<char> keep(refs.size(), 0);
  // Estimated units are counted before they are kept; one that looks too large by its estimate is
  // still counted while few counts have missed (estimates run 10% high), then no longer: the
  // number of units counted stays bounded by the budget, not by the document.
  int exact_misses = 0;
  constexpr int kMaxExactMisses = 64;
  for (size_t i : order) {
    int64_t cost = index.unit_tokens_[i];
    if (used + cost / 2 > budget_tokens) continue;  // not even half its size fits
    const bool estimated = i < index.estimated_.size() && index.estimated_[i] && index.count_;
    if (estimated) {
      if (used + cost > budget_tokens && exact_misses >= kMaxExactMisses) continue;
      cost = index.count_(layout_section(docs[refs[i].doc], docs[refs[i].doc].sections[refs[i].index])) +
             index.separator_tokens_;
    }
    // a section that starts a new run of kept sections brings a gap marker with it
    const bool joins = (i > 0 && keep[i - 1] && refs[i - 1].doc == refs[i].doc) ||
                       (i + 1 < refs.size() && keep[i + 1] && refs[i + 1].doc == refs[i].doc);
    const int64_t extra = joins ? 0 : marker;
    if (used + cost + extra > budget_tokens) {
      exact_misses += estimated ? 1 : 0;
      continue;
    }
    keep[i] = 1;
    used += cost + extra;
    ++r.kept_sections;
  }
  r.estimated_tokens = used;

  // Lay out: kept sections in order, each gap as one marker.
  std::vector<std::string> dropped_docs;
  for (size_t d = 0, i = 0; d < docs.size(); ++d) {
    Document out = without_sections(docs[d]);
    out.tokens = 0;
    std::vector<const Section*> gap;
    size_t kept_here = 0;
    for (size_t k = 0; k < docs[d].sections.size(); ++k, ++i) {
      if (keep[i]) {
        if (!gap.empty()) {
          Section marker_section;
          marker_section.note = gap_note(docs[d], gap);
          out.sections.push_back(std::move(marker_section));
          gap.clear();
        }
        out.sections.push_back(docs[d].sections[k]);
        ++kept_here;
      } else {
        gap.push_back(&docs[d].sections[k]);
      }
    }
    if (!gap.empty()) {
      Section marker_section;
      marker_section.note = gap_note(docs[d], gap);
      out.sections.push_back(std::move(marker_section));
    }
    // nothing left out: unchanged (a document too large to be kept whole: its units)
    if (kept_here == docs[d].sections.size() && !(original[d].sections.empty() && !docs[d].sections.empty()))
      out = original[d];
    if (kept_here < docs[d].sections.size()) dropped_docs.push_back(docs[d].title);
    r.docs.push_back(std::move(out));
  }
  for (size_t i = 0; i < keep.size(); ++i)
    if (keep[i]) r.kept_units.push_back(i);
  for (size_t d = 0; d < docs.size(); ++d) r.used.push_back(used_parts(original[d], r.docs[d]));
  r.summary = std::to_string(r.kept_sections) + " of " + std::to_string(r.total_sections) + " sections fit (" +
              (mode == FitMode::Relevant ? "the most relevant to the question" : "from the beginning") +
              ", about " + std::to_string(used) + " tokens)";
  if (!dropped_docs.empty()) {
    r.summary += "; left out in part: ";
    for (size_t i = 0; i < dropped_docs.size(); ++i) r.summary += (i ? ", " : "") + dropped_docs[i];
  }
  return r;
}

}  // namespace folio::chat
