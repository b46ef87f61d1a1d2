// Field numbers of SentencePiece's ModelProto (sentencepiece_model.proto) that the tokenizer
// writes or reads, and a light structural check of a serialized ModelProto. Internal.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace folio::spm_proto {

// ModelProto
inline constexpr uint32_t kModelPieces = 1;         // repeated SentencePiece
inline constexpr uint32_t kModelTrainerSpec = 2;
inline constexpr uint32_t kModelNormalizerSpec = 3;
// ModelProto.SentencePiece
inline constexpr uint32_t kPiecePiece = 1;          // bytes, U+2581 for space
inline constexpr uint32_t kPieceScore = 2;          // fixed32 float
inline constexpr uint32_t kPieceType = 3;           // NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6
// TrainerSpec
inline constexpr uint32_t kTrainerModelType = 3;    // UNIGRAM=1 BPE=2 WORD=3 CHAR=4
inline constexpr uint32_t kTrainerVocabSize = 4;
inline constexpr uint32_t kTrainerByteFallback = 35;
inline constexpr uint32_t kTrainerUnkId = 40;
inline constexpr uint32_t kTrainerBosId = 41;
inline constexpr uint32_t kTrainerEosId = 42;
inline constexpr uint32_t kTrainerPadId = 43;
inline constexpr uint32_t kTrainerUnkPiece = 45;
inline constexpr uint32_t kTrainerBosPiece = 46;
inline constexpr uint32_t kTrainerEosPiece = 47;
inline constexpr uint32_t kTrainerPadPiece = 48;
// NormalizerSpec
inline constexpr uint32_t kNormalizerName = 1;
inline constexpr uint32_t kNormalizerAddDummyPrefix = 3;
inline constexpr uint32_t kNormalizerRemoveExtraWhitespaces = 4;
inline constexpr uint32_t kNormalizerEscapeWhitespaces = 5;

struct Summary {
  int64_t pieces = 0;
  int32_t model_type = 1;                // proto default UNIGRAM
  bool add_dummy_prefix = true;          // proto defaults
  bool remove_extra_whitespaces = true;
};

// The facts above, or nullopt with *why set when `bytes` is not a well-formed ModelProto with at
// least one piece and a model type libsentencepiece knows.
std::optional<Summary> summarize(std::string_view bytes, std::string* why);

// 0..255 for a byte piece "<0xNN>" (two upper-case hex digits, as SentencePiece writes them), else -1.
int byte_piece_value(std::string_view piece);

}  // namespace folio::spm_proto
