// The tokenizer interface of the engine. Implementations: SentencePiece (libsentencepiece) now,
// byte-level BPE later. Ids are int32; text is UTF-8.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace folio {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes text. add_bos prepends the BOS id where the model has one. parse_special: text equal
  // to a special or added token (e.g. "<|im_start|>", "</s>") becomes that token's id instead of
  // being split into ordinary pieces.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const = 0;

  // The bytes one token contributes to decoded text, given the token before it (-1 at the start).
  // Byte-fallback pieces give raw single bytes (maybe half of a UTF-8 character); control tokens
  // such as BOS/EOS give "" unless they are added tokens with text.
  virtual std::string token_bytes(int32_t id, int32_t previous_id) const = 0;

  // The piece as stored in the vocabulary (e.g. "▁the", "<0x0A>", "<s>").
  virtual std::string piece(int32_t id) const = 0;
  virtual std::optional<int32_t> piece_to_id(std::string_view piece) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 when none
  virtual int32_t eos_id() const = 0;  // -1 when none
  virtual bool is_control(int32_t id) const = 0;  // BOS, EOS, chat markers ...

  // Whole decode of a sequence (no streaming); the same bytes StreamDecoder gives in total.
  std::string decode(std::span<const int32_t> ids) const;
};

// Turns a stream of token ids into text without ever emitting part of a UTF-8 character: bytes of
// an incomplete sequence are held until it completes. Invalid bytes become U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // Returns the complete characters that this token makes available (maybe empty).
  std::string push(int32_t id);
  // Returns what is still held (an incomplete trailing sequence becomes U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  int32_t previous_ = -1;
  std::string pending_;
};

// Counting the tokens of a long text without holding them all: the text is encoded in pieces of at
// most kCountPieceBytes (cut after a newline, else before a space, else between UTF-8 characters),
// so memory stays that of one piece whatever the text's size, and counting stops as soon as the
// count passes limit_tokens, so time is bounded by the limit, not by the text. A text of at most
// one piece is counted exactly; a longer one may count a token or two more per piece than encoding
// it whole (BPE merges and SentencePiece's leading space do not cross a cut).
inline constexpr size_t kCountPieceBytes = size_t{32} << 10;

struct TokenCount {
  int64_t tokens = 0;        // tokens counted; when exceeded, more than limit_tokens and a lower bound
  bool exceeded = false;     // counting stopped early: the text has more than limit_tokens tokens
  size_t bytes_counted = 0;  // bytes of the text counted (all of it unless exceeded)
};
// limit_tokens < 0: no limit (memory stays bounded, time grows with the text).
TokenCount count_tokens(const Tokenizer& tokenizer, std::string_view text, int64_t limit_tokens,
                        bool parse_special = false);
// Where count_tokens() cuts: the length of the first piece of text (all of it when it is at most
// max_bytes long).
size_t count_piece_length(std::string_view text, size_t max_bytes = kCountPieceBytes);

// Loads a tokenizer from a file: a SentencePiece .model, a llama2.c tokenizer.bin (rebuilt in
// memory as a SentencePiece BPE model), a GGUF file's vocabulary (SentencePiece or byte-level BPE)
// or a HF tokenizer.json (byte-level BPE). Throws Error(FileNotFound / BadTokenizer).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace folio
