// Byte-level BPE tokenizers (GPT-2 style: Llama 3, Qwen2, SmolLM ...). Text is split by a
// pre-tokenizer (a sequence of PCRE2 regexes, run with UTF and Unicode properties), each piece is
// mapped byte by byte to GPT-2's printable characters, and merges are applied by rank. Special and
// added tokens are matched in the text before that (longest match first).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tokenizer/tokenizer.h"

namespace folio {

// GPT-2's map from a byte to a printable Unicode character (as UTF-8): bytes 0x21-0x7E, 0xA1-0xAC
// and 0xAE-0xFF stand for themselves, the others for U+0100 onwards in order ("Ġ" is the space).
const std::array<std::string, 256>& gpt2_byte_to_unicode();
// The bytes a byte-level text stands for. Characters outside the map are kept as they are.
std::string gpt2_unicode_to_bytes(std::string_view text);

// `text` for an error message: control characters as \xNN, cut after max_length bytes.
std::string printable_for_message(std::string_view text, size_t max_length = 80);

// The kind of a token; the numbering of GGUF's tokenizer.ggml.token_type.
enum class TokenKind : uint8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

// Special and added tokens found in text before it is tokenized: at each position the longest
// token text that matches wins. Tokens that need parse_special (control tokens) are skipped
// without it; the others (user-defined/added tokens) always match. lstrip/rstrip drop ASCII
// whitespace before/after the token, as llama.cpp and HF tokenizers do for such tokens.
class SpecialTokenMatcher {
 public:
  struct Entry {
    std::string text;
    int32_t id = -1;
    bool needs_parse_special = true;
    bool lstrip = false;
    bool rstrip = false;
  };

  void add(Entry entry);  // empty texts are ignored
  bool empty() const { return count_ == 0; }

  // Calls on_text(std::string_view) for each non-empty stretch of text and on_token(int32_t) for
  // each token found, in order.
  template <typename OnText, typename OnToken>
  void split(std::string_view text, bool parse_special, OnText&& on_text, OnToken&& on_token) const {
    size_t start = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      const Entry* match = count_ == 0 ? nullptr : match_at(text, pos, parse_special);
      if (match == nullptr) {
        ++pos;
        continue;
      }
      size_t end = pos;
      if (match->lstrip)
        while (end > start && is_space(text[end - 1])) --end;
      if (end > start) on_text(text.substr(start, end - start));
      on_token(match->id);
      pos += match->text.size();
      if (match->rstrip)
        while (pos < text.size() && is_space(text[pos])) ++pos;
      start = pos;
    }
    if (start < text.size()) on_text(text.substr(start));
  }

 private:
  static bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
  const Entry* match_at(std::string_view text, size_t pos, bool parse_special) const;

  std::array<std::vector<Entry>, 256> by_first_byte_;  // longest text first
  size_t count_ = 0;
};

// One step of a pre-tokenizer. Split: the text is cut at the matches of `pattern` (a PCRE2 regex,
// or literal text); matches and the stretches between them become pieces (HF's "Isolated"), or
// matches are dropped (HF's "Removed"). PrefixSpace: a space is put before each piece that does
// not start with one (HF ByteLevel's add_prefix_space).
struct PreTokenizerStep {
  enum class Kind { Split, PrefixSpace };
  Kind kind = Kind::Split;
  std::string pattern;
  bool literal = false;
  bool remove_matches = false;
};

// The pre-tokenizer regexes of llama.cpp for a tokenizer.ggml.pre name, with the flags llama.cpp
// sets for it. nullopt for a name Folio does not know (llama.cpp refuses those too).
struct BpePreset {
  std::vector<std::string> regexes;
  bool ignore_merges = false;  // a piece that is a whole token is taken as it is (Llama 3)
  bool add_bos = false;        // default of tokenizer.ggml.add_bos_token
};
std::optional<BpePreset> llama_cpp_bpe_preset(std::string_view pre_name);
// The names llama_cpp_bpe_preset() knows, comma separated (for error messages).
std::string known_bpe_preset_names();
// The regex of GPT-2 (HF ByteLevel with use_regex).
std::string_view gpt2_pre_tokenizer_regex();

struct BpeVocabulary {
  struct Token {
    std::string text;  // byte-level form ("Ġthe"); added/special tokens as written ("<|im_start|>")
    TokenKind kind = TokenKind::Normal;
    bool lstrip = false;  // only for Control/UserDefined/Unknown tokens
    bool rstrip = false;
  };
  std::vector<Token> tokens;                                // index = id
  std::vector<std::pair<std::string, std::string>> merges;  // rank order, byte-level texts
  std::vector<PreTokenizerStep> pre_tokenizer;              // empty: the whole text is one piece
  bool ignore_merges = false;
  bool add_bos = false;  // encode(add_bos = true) prepends bos_id only when this is set
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;  // used for characters that have no token (byte-level vocabularies have all)
};

class BpeTokenizer final : public Tokenizer {
 public:
  // Compiles the pre-tokenizer and indexes the vocabulary. `source` names where it came from, for
  // error messages. Throws Error(BadTokenizer) for a regex PCRE2 refuses, duplicate token texts,
  // special ids out of range.
  BpeTokenizer(BpeVocabulary vocabulary, std::string source);
  ~BpeTokenizer() override;
  BpeTokenizer(const BpeTokenizer&) = delete;
  BpeTokenizer& operator=(const BpeTokenizer&) = delete;

  // add_bos prepends BOS only where the vocabulary asks for it (add_bos_token; Llama 3 yes, Qwen2
  // no). Control tokens match with parse_special only; user-defined tokens always.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const override;
  // Control, unknown and unused tokens give "" (as llama.cpp); user-defined tokens their text.
  std::string token_bytes(int32_t id, int32_t previous_id) const override;
  std::string piece(int32_t id) const override;
  std::optional<int32_t> piece_to_id(std::string_view piece) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos_id() const override { return add_bos_ ? bos_id_ : -1; }  // -1 where BOS is not used
  int32_t eos_id() const override { return eos_id_; }
  bool is_control(int32_t id) const override;

  // The raw BOS id even where the vocabulary does not prepend it (-1 when none).
  int32_t vocabulary_bos_id() const { return bos_id_; }
  int32_t unk_id() const { return unk_id_; }
  TokenKind kind(int32_t id) const;
  const std::string& source() const { return source_; }

  // The pieces the pre-tokenizer cuts `text` into (raw bytes, before the byte-level map).
  std::vector<std::string> pre_tokenize(std::string_view text) const;

 private:
  struct PreTokenizer;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  template <typename V>
  using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;
  // Merges by the ids of their two parts: an open-addressing table (the hot lookup of encoding).
  class MergeTable {
   public:
    struct Entry {
      uint64_t key = kEmpty;
      int32_t rank = 0;
      int32_t result = 0;
    };
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    void reserve(size_t n);
    void insert(int32_t left, int32_t right, int32_t rank, int32_t result);  // keeps the first of a pair
    const Entry* find(int32_t left, int32_t right) const;

   private:
    static uint64_t key(int32_t left, int32_t right) {
      return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
    }
    size_t slot(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> shift_); }
    std::vector<Entry> entries_;
    int shift_ = 63;
  };

  void check_id(int32_t id) const;
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void merge_piece(std::string_view piece, std::vector<int32_t>& out) const;

  std::string source_;
  std::vector<BpeVocabulary::Token> tokens_;
  std::vector<std::string> decoded_;  // token_bytes() of each id
  StringMap<int32_t> ids_;
  MergeTable merges_;
  std::array<int32_t, 256> byte_ids_{};         // the token of each single byte, -1 when none
  std::unique_ptr<PreTokenizer> pre_;
  SpecialTokenMatcher matcher_;
  bool ignore_merges_ = false;
  bool add_bos_ = false;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t unk_id_ = -1;

  mutable std::mutex cache_mutex_;
  mutable StringMap<std::vector<int32_t>> cache_;  // piece -> ids
};

// Loads a HF tokenizer.json of a byte-level BPE model (model.type "BPE", a ByteLevel
// pre-tokenizer; Split/Digits/ByteLevel steps). BOS comes from a TemplateProcessing
// post-processor, or from a tokenizer_config.json beside the file (bos_token, eos_token,
// add_bos_token). Throws Error(FileNotFound / FileUnreadable / BadTokenizer) naming the file.
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path);
// The same from the file's text; `source` names it in errors, `config_text` is the text of a
// tokenizer_config.json or "".
std::unique_ptr<BpeTokenizer> parse_hf_tokenizer_json(std::string_view json_text, const std::string& source,
                                                      std::string_view config_text = {});

}  // namespace folio
