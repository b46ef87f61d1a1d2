#include "core/tokenizer/bpe_tokenizer.h"

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <algorithm>
#include <deque>
#include <queue>

#include "core/common/error.h"

namespace folio {

namespace {

constexpr size_t kMaxCachedPiece = 64;      // longer pieces are merged every time
constexpr size_t kMaxCacheEntries = 1 << 16;  // the cache starts again when it grows past this

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// The length of the valid UTF-8 character at the start of `s`, or 0 when it is not one.
size_t utf8_char_length(std::string_view s) {
  const auto lead = static_cast<uint8_t>(s[0]);
  if (lead < 0x80) return 1;
  size_t length = 0;
  uint8_t lo = 0x80;
  uint8_t hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  for (size_t k = 1; k < length; ++k) {
    const auto c = static_cast<uint8_t>(s[k]);
    if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return 0;
  }
  return length;
}

uint32_t decode_utf8(std::string_view s, size_t length) {
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i])); };
  switch (length) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

// Code point -> byte for the 256 characters of GPT-2's map; -1 elsewhere.
const std::array<int16_t, 324>& gpt2_unicode_to_byte_table() {
  static const std::array<int16_t, 324> table = [] {
    std::array<int16_t, 324> t{};
    t.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[static_cast<size_t>(printable ? b : 256 + next++)] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return table;
}

int byte_piece_value(std::string_view text) {  // "<0x0A>" -> 10, else -1
  if (text.size() != 6 || !text.starts_with("<0x") || text[5] != '>') return -1;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = text[i];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

// llama.cpp's regexes (llama-vocab.cpp), the contractions written without (?i) as there.
constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
constexpr const char* kGpt2HfRegex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* kLlama3Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct PresetNames {
  std::vector<std::string_view> names;
  BpePreset preset;
};

const std::vector<PresetNames>& presets() {
  static const std::vector<PresetNames> table = {
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
       {{kLlama3Regex}, true, true}},
      {{"dbrx", "smaug-bpe"}, {{kLlama3Regex}, false, false}},
      {{"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"}, {{kQwen2Regex}, false, false}},
      {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"},
       {{"\\p{N}", kGpt2Regex}, false, false}},
      {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "mpt",
        "olmo", "jais", "trillion", "exaone4"},
       {{kGpt2Regex}, false, false}},
      {{"falcon"}, {{"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2Regex, "[0-9][0-9][0-9]"}, false, false}},
      {{"default", ""}, {{"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2Regex, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false}},
  };
  return table;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<const char*>(buffer));
}

}  // namespace

std::string printable_for_message(std::string_view text, size_t max_length) {
  std::string out;
  for (size_t i = 0; i < text.size() && out.size() < max_length; ++i) {
    const auto c = static_cast<uint8_t>(text[i]);
    if (c < 0x20 || c == 0x7F) {
      static const char* hex = "0123456789ABCDEF";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (out.size() >= max_length) out += "...";
  return out;
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte map

const std::array<std::string, 256>& gpt2_byte_to_unicode() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    const auto& reverse = gpt2_unicode_to_byte_table();
    for (size_t cp = 0; cp < reverse.size(); ++cp)
      if (reverse[cp] >= 0) append_utf8(static_cast<uint32_t>(cp), t[static_cast<size_t>(reverse[cp])]);
    return t;
  }();
  return table;
}

std::string gpt2_unicode_to_bytes(std::string_view text) {
  const auto& reverse = gpt2_unicode_to_byte_table();
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t length = utf8_char_length(text.substr(i));
    if (length == 0) {
      out.push_back(text[i++]);
      continue;
    }
    const uint32_t cp = decode_utf8(text.substr(i), length);
    if (cp < reverse.size() && reverse[cp] >= 0) out.push_back(static_cast<char>(reverse[cp]));
    else out.append(text.substr(i, length));
    i += length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Presets

std::optional<BpePreset> llama_cpp_bpe_preset(std::string_view pre_name) {
  for (const PresetNames& p : presets())
    if (std::find(p.names.begin(), p.names.end(), pre_name) != p.names.end()) return p.preset;
  return std::nullopt;
}

std::string known_bpe_preset_names() {
  std::string out;
  for (const PresetNames& p : presets())
    for (std::string_view name : p.names) {
      if (name.empty()) continue;
      if (!out.empty()) out += ", ";
      out += name;
    }
  return out;
}

std::string_view gpt2_pre_tokenizer_regex() { return kGpt2HfRegex; }

// ---------------------------------------------------------------------------------------------
// SpecialTokenMatcher

void SpecialTokenMatcher::add(Entry entry) {
  if (entry.text.empty()) return;
  auto& bucket = by_first_byte_[static_cast<uint8_t>(entry.text[0])];
  const auto before = [](const Entry& a, const Entry& b) {
    return a.text.size() != b.text.size() ? a.text.size() > b.text.size() : a.id < b.id;
  };
  bucket.insert(std::upper_bound(bucket.begin(), bucket.end(), entry, before), std::move(entry));
  ++count_;
}

const SpecialTokenMatcher::Entry* SpecialTokenMatcher::match_at(std::string_view text, size_t pos,
                                                                bool parse_special) const {
  for (const Entry& entry : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
    if (entry.needs_parse_special && !parse_special) continue;
    if (text.size() - pos >= entry.text.size() && text.compare(pos, entry.text.size(), entry.text) == 0) return &entry;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer on PCRE2

struct BpeTokenizer::PreTokenizer {
  struct Step {
    PreTokenizerStep::Kind kind = PreTokenizerStep::Kind::Split;
    pcre2_code* code = nullptr;
    bool jit = false;
    bool remove_matches = false;
  };
  std::vector<Step> steps;

  PreTokenizer() = default;
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;
  ~PreTokenizer() {
    for (Step& s : steps) pcre2_code_free(s.code);
  }

  void add(const PreTokenizerStep& spec, const std::string& source) {
    Step step;
    step.kind = spec.kind;
    step.remove_matches = spec.remove_matches;
    if (spec.kind == PreTokenizerStep::Kind::Split) {
      if (spec.pattern.empty())
        throw Error(ErrorCode::BadTokenizer, source + " has a pre-tokenizer with an empty split pattern; the tokenizer "
                                                      "data is damaged or of a kind the app does not read");
      int code = 0;
      PCRE2_SIZE offset = 0;
      const uint32_t options = PCRE2_UTF | PCRE2_UCP | (spec.literal ? PCRE2_LITERAL : 0u);
      step.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(spec.pattern.data()), spec.pattern.size(), options, &code,
                                &offset, nullptr);
      if (step.code == nullptr)
        throw Error(ErrorCode::BadTokenizer, source + " has a pre-tokenizer regex that PCRE2 cannot compile (" +
                                                 pcre2_message(code) + " at offset " + std::to_string(offset) +
                                                 "); the tokenizer is of a kind the app does not read");
      step.jit = pcre2_jit_compile(step.code, PCRE2_JIT_COMPLETE) == 0;
    }
    steps.push_back(step);
  }

  // Cuts one piece at the matches of a Split step.
  static void split(const Step& step, pcre2_match_data* md, std::string_view text, std::vector<std::string_view>& out) {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t last = 0;    // end of the last piece given out
    size_t offset = 0;  // where the next search starts
    while (offset < text.size()) {
      int rc = pcre2_match(step.code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && step.jit)  // e.g. JIT stack exhausted: the interpreter
        rc = pcre2_match(step.code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
      if (rc < 0) break;  // no (more) match, or a match limit: the rest stays one piece
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t start = ov[0];
      const size_t end = ov[1];
      if (end <= start) {  // an empty match: look again one character further
        if (start >= text.size()) break;
        offset = start + std::max<size_t>(utf8_char_length(text.substr(start)), 1);
        continue;
      }
      if (start > last) out.push_back(text.substr(last, start - last));
      if (!step.remove_matches) out.push_back(text.substr(start, end - start));
      last = end;
      offset = end;
    }
    if (last < text.size()) out.push_back(text.substr(last));
  }

  // Calls emit(std::string_view) for each piece of a valid UTF-8 text.
  template <typename Emit>
  void run_valid(std::string_view text, std::deque<std::string>& arena, Emit&& emit) const {
    std::vector<std::string_view> current{text};
    std::vector<std::string_view> next;
    for (const Step& step : steps) {
      next.clear();
      if (step.kind == PreTokenizerStep::Kind::PrefixSpace) {
        for (std::string_view piece : current) {
          if (piece.starts_with(' ')) {
            next.push_back(piece);
          } else {
            std::string& spaced = arena.emplace_back();
            spaced.reserve(piece.size() + 1);
            spaced.push_back(' ');
            spaced.append(piece);
            next.push_back(spaced);
          }
        }
      } else {
        std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
            pcre2_match_data_create_from_pattern(step.code, nullptr), &pcre2_match_data_free);
        if (!md) throw Error(ErrorCode::OutOfMemory, "out of memory while splitting text into tokens");
        for (std::string_view piece : current) split(step, md.get(), piece, next);
      }
      current.swap(next);
    }
    for (std::string_view piece : current) emit(piece);
  }

  // Calls emit(std::string_view) for each piece of `text`. Stretches of valid UTF-8 go through
  // the steps; each byte that is not part of a valid character is a piece of its own.
  template <typename Emit>
  void run(std::string_view text, Emit&& emit) const {
    std::deque<std::string> arena;
    size_t start = 0;
    for (size_t i = 0; i < text.size();) {
      const size_t length = utf8_char_length(text.substr(i));
      if (length != 0) {
        i += length;
        continue;
      }
      if (i > start) run_valid(text.substr(start, i - start), arena, emit);
      emit(text.substr(i, 1));
      start = ++i;
    }
    if (start < text.size()) run_valid(text.substr(start), arena, emit);
  }
};

// ---------------------------------------------------------------------------------------------
// BpeTokenizer

void BpeTokenizer::MergeTable::reserve(size_t n) {
  size_t size = 16;
  shift_ = 60;
  while (size < 2 * n) {
    size *= 2;
    --shift_;
  }
  entries_.assign(size, Entry{});
}

void BpeTokenizer::MergeTable::insert(int32_t left, int32_t right, int32_t rank, int32_t result) {
  const uint64_t k = key(left, right);
  const size_t mask = entries_.size() - 1;
  for (size_t i = slot(k);; i = (i + 1) & mask) {
    Entry& e = entries_[i];
    if (e.key == k) return;
    if (e.key == kEmpty) {
      e = {k, rank, result};
      return;
    }
  }
}

const BpeTokenizer::MergeTable::Entry* BpeTokenizer::MergeTable::find(int32_t left, int32_t right) const {
  if (entries_.empty()) return nullptr;
  const uint64_t k = key(left, right);
  const size_t mask = entries_.size() - 1;
  for (size_t i = slot(k);; i = (i + 1) & mask) {
    const Entry& e = entries_[i];
    if (e.key == k) return &e;
    if (e.key == kEmpty) return nullptr;
  }
}

BpeTokenizer::BpeTokenizer(BpeVocabulary vocabulary, std::string source)
    : source_(std::move(source)), tokens_(std::move(vocabulary.tokens)), pre_(std::make_unique<PreTokenizer>()) {
  const auto bad = [&](const std::string& what) {
    throw Error(ErrorCode::BadTokenizer, source_ + " cannot be used as a BPE vocabulary: " + what +
                                             "; the tokenizer data of this model is damaged or of a kind the app "
                                             "does not read");
  };
  if (tokens_.empty()) bad("it has no tokens");
  if (tokens_.size() > static_cast<size_t>(INT32_MAX)) bad("it has more tokens than int32 ids can number");
  const auto n = static_cast<int32_t>(tokens_.size());

  ids_.reserve(tokens_.size());
  decoded_.resize(tokens_.size());
  for (int32_t id = 0; id < n; ++id) {
    const BpeVocabulary::Token& t = tokens_[static_cast<size_t>(id)];
    const auto kind = static_cast<int>(t.kind);
    if (kind < 1 || kind > 6) bad("token " + std::to_string(id) + " has type " + std::to_string(kind));
    if (!t.text.empty()) {
      auto [it, inserted] = ids_.emplace(t.text, id);
      if (!inserted)
        bad("token \"" + printable_for_message(t.text) + "\" appears twice (ids " + std::to_string(it->second) + " and " +
            std::to_string(id) + ")");
    }
    switch (t.kind) {
      case TokenKind::Normal: decoded_[static_cast<size_t>(id)] = gpt2_unicode_to_bytes(t.text); break;
      case TokenKind::UserDefined: decoded_[static_cast<size_t>(id)] = t.text; break;
      case TokenKind::Byte: {
        const int value = byte_piece_value(t.text);
        decoded_[static_cast<size_t>(id)] =
            value >= 0 ? std::string(1, static_cast<char>(value)) : gpt2_unicode_to_bytes(t.text);
        break;
      }
      case TokenKind::Unknown:
      case TokenKind::Control:
      case TokenKind::Unused: break;  // not shown (llama.cpp's token_to_piece without `special`)
    }
    if ((t.kind == TokenKind::Control || t.kind == TokenKind::UserDefined || t.kind == TokenKind::Unknown) &&
        !t.text.empty())
      matcher_.add({t.text, id, t.kind != TokenKind::UserDefined, t.lstrip, t.rstrip});
  }

  const auto& byte_map = gpt2_byte_to_unicode();
  for (size_t b = 0; b < 256; ++b) {
    auto it = ids_.find(byte_map[b]);
    byte_ids_[b] = it == ids_.end() ? -1 : it->second;
  }

  // Merges by id: a merge whose parts or result are not tokens can never apply.
  merges_.reserve(vocabulary.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < vocabulary.merges.size(); ++rank) {
    const auto& [left, right] = vocabulary.merges[rank];
    auto l = ids_.find(left);
    auto r = ids_.find(right);
    joined = left;
    joined += right;
    auto result = ids_.find(joined);
    if (l == ids_.end() || r == ids_.end() || result == ids_.end()) continue;
    merges_.insert(l->second, r->second, static_cast<int32_t>(std::min<size_t>(rank, INT32_MAX)), result->second);
  }

  for (const PreTokenizerStep& step : vocabulary.pre_tokenizer) pre_->add(step, source_);
  ignore_merges_ = vocabulary.ignore_merges;
  add_bos_ = vocabulary.add_bos;
  auto check_special = [&](const char* name, int32_t id) {
    if (id < -1 || id >= n) bad(std::string(name) + " id " + std::to_string(id) + " is outside the " + std::to_string(n) + " tokens");
    return id;
  };
  bos_id_ = check_special("bos", vocabulary.bos_id);
  eos_id_ = check_special("eos", vocabulary.eos_id);
  unk_id_ = check_special("unk", vocabulary.unk_id);
  if (add_bos_ && bos_id_ < 0) add_bos_ = false;
}

BpeTokenizer::~BpeTokenizer() = default;

void BpeTokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw Error(ErrorCode::BadArgument, "token id " + std::to_string(id) + " is not in the vocabulary of " + source_ +
                                            " (" + std::to_string(vocab_size()) +
                                            " ids); the model and its tokenizer do not match");
}

TokenKind BpeTokenizer::kind(int32_t id) const {
  check_id(id);
  return tokens_[static_cast<size_t>(id)].kind;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && add_bos_) out.push_back(bos_id_);
  matcher_.split(
      text, parse_special, [&](std::string_view part) { encode_text(part, out); },
      [&](int32_t id) { out.push_back(id); });
  return out;
}

void BpeTokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  pre_->run(text, [&](std::string_view piece) { encode_piece(piece, out); });
}

std::vector<std::string> BpeTokenizer::pre_tokenize(std::string_view text) const {
  std::vector<std::string> pieces;
  pre_->run(text, [&](std::string_view piece) { pieces.emplace_back(piece); });
  return pieces;
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (piece.size() == 1 && byte_ids_[static_cast<uint8_t>(piece[0])] >= 0) {
    out.push_back(byte_ids_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (piece.size() > kMaxCachedPiece) {
    merge_piece(piece, out);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (auto it = cache_.find(piece); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_piece(piece, out);
  std::vector<int32_t> ids(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::string(piece), std::move(ids));
}

void BpeTokenizer::merge_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const auto& byte_map = gpt2_byte_to_unicode();
  if (ignore_merges_) {
    std::string mapped;
    mapped.reserve(piece.size() * 2);
    for (char c : piece) mapped += byte_map[static_cast<uint8_t>(c)];
    if (auto it = ids_.find(mapped); it != ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }

  // One symbol per byte, linked in a list; the pair of adjacent symbols with the lowest merge rank
  // (the leftmost among equals) merges first. A queue entry is stale when either side has changed
  // since: a symbol's (position, id) names one span of bytes, so comparing them is enough.
  struct Symbol {
    int32_t id;    // -1: a byte with no token; -2: merged into the symbol on its left
    int32_t prev;
    int32_t next;
  };
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t left_id;
    int32_t right;
    int32_t right_id;
    int32_t result;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  const auto n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i)
    symbols[static_cast<size_t>(i)] = {byte_ids_[static_cast<uint8_t>(piece[static_cast<size_t>(i)])], i - 1,
                                       i + 1 < n ? i + 1 : -1};
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t a = symbols[static_cast<size_t>(left)].id;
    const int32_t b = symbols[static_cast<size_t>(right)].id;
    if (a < 0 || b < 0) return;
    if (const MergeTable::Entry* m = merges_.find(a, b)) queue.push({m->rank, left, a, right, b, m->result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<size_t>(c.left)];
    Symbol& right = symbols[static_cast<size_t>(c.right)];
    if (left.id != c.left_id || right.id != c.right_id || left.next != c.right) continue;
    left.id = c.result;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = c.left;
    right.id = -2;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }
  for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    const int32_t id = symbols[static_cast<size_t>(i)].id;
    if (id >= 0) out.push_back(id);
    else if (unk_id_ >= 0) out.push_back(unk_id_);  // a byte without a token (never in byte-level vocabularies)
  }
}

std::string BpeTokenizer::token_bytes(int32_t id, int32_t /*previous_id*/) const {
  check_id(id);
  return decoded_[static_cast<size_t>(id)];
}

std::string BpeTokenizer::piece(int32_t id) const {
  check_id(id);
  return tokens_[static_cast<size_t>(id)].text;
}

std::optional<int32_t> BpeTokenizer::piece_to_id(std::string_view text) const {
  if (auto it = ids_.find(text); it != ids_.end()) return it->second;
  return std::nullopt;
}

bool BpeTokenizer::is_control(int32_t id) const {
  return id >= 0 && id < vocab_size() && tokens_[static_cast<size_t>(id)].kind == TokenKind::Control;
}

}  // namespace folio
