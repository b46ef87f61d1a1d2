// SentencePiece tokenizers on libsentencepiece: from a .model file, from a llama2.c tokenizer.bin,
// or from a ModelProto built in memory (SpmModelBuilder; the GGUF loader builds llama-spm
// vocabularies this way). Added tokens (chat markers ...) can be registered on top of the model.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace folio {

// Builds the serialized bytes of a SentencePiece ModelProto, written by hand in the protobuf wire
// format. Piece texts are in SentencePiece form: U+2581 ("▁") where the text has a space.
struct SpmModelBuilder {
  enum class PieceType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };
  enum class ModelType : int32_t { Unigram = 1, Bpe = 2 };
  struct Piece {
    std::string text;
    float score = 0.0f;
    PieceType type = PieceType::Normal;
  };

  std::vector<Piece> pieces;  // index = token id
  ModelType model_type = ModelType::Bpe;
  bool add_dummy_prefix = true;          // encode "Hello" as "▁Hello"
  bool remove_extra_whitespaces = false;
  bool byte_fallback = true;             // unknown characters become <0xNN> pieces (all 256 needed)
  int32_t unk_id = 0;                    // required; must be the one Unknown piece
  int32_t bos_id = 1;                    // -1 when none; otherwise a Control piece
  int32_t eos_id = 2;                    // -1 when none; otherwise a Control piece
  int32_t pad_id = -1;                   // -1 when none

  // Throws Error(BadTokenizer) naming `source` when the vocabulary cannot make a SentencePiece
  // model (empty or duplicate pieces, special ids out of range or of the wrong type, missing
  // byte pieces with byte_fallback).
  std::string serialize(const std::string& source = "in-memory vocabulary") const;
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // `source` names where the model came from, for error messages. Throws Error(BadTokenizer)
  // when libsentencepiece refuses the proto.
  SentencePieceTokenizer(std::string serialized_model_proto, std::string source);
  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  // Registers a token on top of the model. `id` may be a piece of the model (its text then
  // replaces the piece) or lie past it (the vocabulary grows to id + 1). `text` is the exact text
  // that stands for it. Special tokens are matched in encode() only with parse_special, count as
  // control tokens, and decode to their text; non-special ones are always matched. Throws
  // Error(BadArgument) for a negative id, empty text, or text already registered under another id.
  // Not thread-safe against concurrent encode/decode.
  void add_token(int32_t id, std::string text, bool special);
  void add_special_token(int32_t id, std::string text) { add_token(id, std::move(text), true); }

  // Text pieces between special/added tokens are each encoded by SentencePiece on their own (as
  // llama.cpp does: the piece after "<|im_start|>" gets the dummy-prefix space like a text start).
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = false) const override;
  std::string token_bytes(int32_t id, int32_t previous_id) const override;
  std::string piece(int32_t id) const override;
  std::optional<int32_t> piece_to_id(std::string_view piece) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  int32_t unk_id() const { return unk_id_; }
  bool is_control(int32_t id) const override;

  const std::string& source() const { return source_; }

 private:
  struct AddedToken {
    std::string text;
    bool special = false;
  };
  struct MatchEntry {
    std::string text;
    int32_t id = -1;
    bool special = false;
  };

  void check_id(int32_t id) const;
  bool shows_no_text(int32_t id) const;  // a control piece of the model, not overridden by an added token
  void rebuild_matcher();
  // Longest special/added token whose text starts at `pos`, or nullptr.
  const MatchEntry* match_at(std::string_view text, size_t pos, bool parse_special) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;

  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string source_;
  int32_t model_size_ = 0;  // pieces in the model proto
  int32_t vocab_size_ = 0;  // model_size_ or more with added tokens past it
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  int32_t unk_id_ = -1;
  bool strip_leading_space_ = true;  // add_dummy_prefix or remove_extra_whitespaces in the model
  std::vector<int32_t> model_control_ids_;
  std::unordered_map<int32_t, AddedToken> added_;
  std::unordered_map<std::string, int32_t> added_by_text_;
  std::array<std::vector<MatchEntry>, 256> matcher_;  // by first byte, longest text first
};

// Makes a tokenizer from a serialized SentencePiece ModelProto (a .model file's bytes, or
// SpmModelBuilder::serialize()). Throws Error(BadTokenizer).
std::unique_ptr<SentencePieceTokenizer> make_sentencepiece_tokenizer_from_proto(
    std::string serialized_model_proto, const std::string& source = "in-memory SentencePiece model");

// The vocabulary of a llama2.c tokenizer.bin (int32 max_token_length, then per id: float score,
// int32 length, bytes; id 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>) as a SentencePiece BPE
// model: identity normalizer, add_dummy_prefix, byte_fallback. Throws Error(BadTokenizer) naming
// `source` for a truncated or malformed file.
SpmModelBuilder llama2c_tokenizer_to_spm(std::string_view file_bytes, const std::string& source);

// Loaders of one format each; load_tokenizer() picks between them by content. Throw
// Error(FileNotFound / FileUnreadable / BadTokenizer) with the path in the message.
std::unique_ptr<SentencePieceTokenizer> load_sentencepiece_model(const std::string& path);
std::unique_ptr<SentencePieceTokenizer> load_llama2c_tokenizer(const std::string& path);

}  // namespace folio
