// llama2.c's tokenizer.bin, rebuilt as the SentencePiece BPE model it was exported from.
// Layout (little endian): int32 max_token_length, then for each id until the end of the file:
// float score, int32 length, `length` bytes. Pieces have real spaces where SentencePiece has
// U+2581; BOS and EOS were exported as "\n<s>\n" and "\n</s>\n".
#include <cstring>

#include "core/tokenizer/llama2c_format.h"

#include "core/common/error.h"
#include "core/tokenizer/spm_proto.h"

namespace folio {

namespace {

constexpr int32_t kMaxTokenLengthLimit = 1 << 16;  // far above any real vocabulary
constexpr int32_t kFirstBytePiece = 3;             // <0x00> .. <0xFF> are ids 3..258

template <typename T>
T read_le(std::string_view data, size_t offset) {
  T value;
  std::memcpy(&value, data.data() + offset, sizeof value);  // x86/ARM hosts are little endian
  return value;
}

// Thrown inside the parser only; carries the reason without the file name.
struct FormatError {
  std::string what;
};
[[noreturn]] void bad_file(const std::string& what) { throw FormatError{what}; }

std::string to_spm_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == ' ')
      out += "\xE2\x96\x81";
    else
      out.push_back(c);
  }
  return out;
}

std::string_view trim_newlines(std::string_view text) {
  while (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return text;
}

SpmModelBuilder parse_or_throw(std::string_view data) {
  if (data.size() < 4) bad_file("it is only " + std::to_string(data.size()) + " bytes long");
  const auto max_token_length = read_le<int32_t>(data, 0);
  if (max_token_length <= 0 || max_token_length > kMaxTokenLengthLimit)
    bad_file("its max_token_length " + std::to_string(max_token_length) + " is out of range");

  SpmModelBuilder builder;
  builder.model_type = SpmModelBuilder::ModelType::Bpe;
  builder.add_dummy_prefix = true;
  builder.remove_extra_whitespaces = false;
  builder.byte_fallback = true;
  builder.unk_id = 0;
  builder.bos_id = 1;
  builder.eos_id = 2;
  builder.pad_id = -1;

  size_t offset = 4;
  while (offset < data.size()) {
    const auto id = static_cast<int64_t>(builder.pieces.size());
    const std::string where = "token " + std::to_string(id) + " at byte " + std::to_string(offset);
    if (data.size() - offset < 8) bad_file("the file is truncated in the header of " + where);
    const auto score = read_le<float>(data, offset);
    const auto length = read_le<int32_t>(data, offset + 4);
    offset += 8;
    if (length < 0 || length > max_token_length)
      bad_file(where + " has length " + std::to_string(length) + " (max_token_length is " +
                           std::to_string(max_token_length) + ")");
    if (data.size() - offset < static_cast<size_t>(length))
      bad_file("the file is truncated in the text of " + where);
    const std::string_view text = data.substr(offset, static_cast<size_t>(length));
    offset += static_cast<size_t>(length);

    SpmModelBuilder::Piece piece;
    piece.score = score;
    if (id == builder.unk_id) {
      piece.type = SpmModelBuilder::PieceType::Unknown;
      piece.text = text.empty() ? "<unk>" : std::string(text);
    } else if (id == builder.bos_id || id == builder.eos_id) {
      piece.type = SpmModelBuilder::PieceType::Control;
      piece.text = std::string(trim_newlines(text));
    } else if (id >= kFirstBytePiece && id < kFirstBytePiece + 256) {
      const int expected = static_cast<int>(id - kFirstBytePiece);
      if (spm_proto::byte_piece_value(text) != expected)
        bad_file(where + " is \"" + std::string(text) + "\" where the byte piece for " +
                             std::to_string(expected) + " was expected");
      piece.type = SpmModelBuilder::PieceType::Byte;
      piece.text = std::string(text);
    } else {
      piece.type = SpmModelBuilder::PieceType::Normal;
      piece.text = to_spm_spaces(text);
    }
    builder.pieces.push_back(std::move(piece));
  }
  if (builder.pieces.size() < static_cast<size_t>(kFirstBytePiece + 256))
    bad_file("it holds " + std::to_string(builder.pieces.size()) +
                         " tokens, fewer than <unk>, <s>, </s> and the 256 byte pieces (the file is truncated)");
  return builder;
}

}  // namespace

std::optional<SpmModelBuilder> parse_llama2c_tokenizer(std::string_view data, std::string* why) {
  try {
    return parse_or_throw(data);
  } catch (const FormatError& e) {
    if (why != nullptr) *why = e.what;
    return std::nullopt;
  }
}

SpmModelBuilder llama2c_tokenizer_to_spm(std::string_view file_bytes, const std::string& source) {
  std::string why;
  std::optional<SpmModelBuilder> builder = parse_llama2c_tokenizer(file_bytes, &why);
  if (!builder)
    throw Error(ErrorCode::BadTokenizer, source + " is not a valid llama2.c tokenizer.bin: " + why +
                                             "; export or download the tokenizer again");
  return std::move(*builder);
}

}  // namespace folio
