#include "core/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/common/error.h"
#include "core/common/mapped_file.h"
#include "core/tokenizer/bpe_tokenizer.h"
#include "core/tokenizer/gguf_tokenizer.h"
#include "core/tokenizer/llama2c_format.h"
#include "core/tokenizer/sentencepiece_tokenizer.h"
#include "core/tokenizer/spm_proto.h"

namespace folio {

namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Appends the characters of `bytes` to `out` and returns how many bytes it used. Each byte that
// cannot start or continue a valid sequence becomes U+FFFD (as SentencePiece does). Unless `final`,
// a trailing sequence that is valid so far but incomplete is left unused for the next call.
size_t append_utf8_characters(std::string_view bytes, bool final, std::string& out) {
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const auto lead = static_cast<uint8_t>(bytes[i]);
    if (lead < 0x80) {
      out.push_back(static_cast<char>(lead));
      ++i;
      continue;
    }
    size_t length = 0;
    uint8_t second_min = 0x80;  // the second byte's range excludes overlong forms, surrogates and
    uint8_t second_max = 0xBF;  // code points past U+10FFFF
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) second_min = 0xA0;
      if (lead == 0xED) second_max = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) second_min = 0x90;
      if (lead == 0xF4) second_max = 0x8F;
    }
    size_t k = 1;
    bool valid = length != 0;
    for (; valid && k < length && i + k < n; ++k) {
      const auto c = static_cast<uint8_t>(bytes[i + k]);
      const uint8_t lo = k == 1 ? second_min : 0x80;
      const uint8_t hi = k == 1 ? second_max : 0xBF;
      if (c < lo || c > hi) valid = false;
    }
    if (valid && k < length && !final) return i;  // incomplete: wait for more bytes
    if (!valid || k < length) {
      out.append(kReplacementCharacter);
      ++i;
      continue;
    }
    out.append(bytes.substr(i, length));
    i += length;
  }
  return n;
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string bytes;
  int32_t previous = -1;
  for (int32_t id : ids) {
    bytes += token_bytes(id, previous);
    previous = id;
  }
  std::string out;
  out.reserve(bytes.size());
  append_utf8_characters(bytes, /*final=*/true, out);
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tokenizer_.token_bytes(id, previous_);
  previous_ = id;
  std::string out;
  const size_t used = append_utf8_characters(pending_, /*final=*/false, out);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  append_utf8_characters(pending_, /*final=*/true, out);
  pending_.clear();
  return out;
}

size_t count_piece_length(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes || max_bytes < 8) return text.size();
  // A cut in the second half of the window keeps pieces large; after a newline first (where BPE
  // pre-tokenizers and SentencePiece lose least), else before a space (a word keeps its space).
  const size_t half = max_bytes / 2;
  if (const size_t nl = text.rfind('\n', max_bytes - 1); nl != std::string_view::npos && nl >= half) return nl + 1;
  if (const size_t sp = text.substr(0, max_bytes).find_last_of(" \t"); sp != std::string_view::npos && sp >= half)
    return sp;
  size_t cut = max_bytes;  // between UTF-8 characters: never before a continuation byte
  while (cut > half && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return cut;
}

TokenCount count_tokens(const Tokenizer& tokenizer, std::string_view text, int64_t limit_tokens, bool parse_special) {
  TokenCount c;
  while (!text.empty()) {
    const size_t n = count_piece_length(text);
    c.tokens += static_cast<int64_t>(tokenizer.encode(text.substr(0, n), false, parse_special).size());
    c.bytes_counted += n;
    text.remove_prefix(n);
    if (limit_tokens >= 0 && c.tokens > limit_tokens && !text.empty()) {
      c.exceeded = true;
      break;
    }
  }
  if (limit_tokens >= 0 && c.tokens > limit_tokens) c.exceeded = true;
  return c;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw Error(ErrorCode::FileNotFound, "tokenizer file not found: " + path +
                                             "; check the path (a model needs its tokenizer.model or tokenizer.bin)");
  if (std::filesystem::is_directory(path, ec))
    throw Error(ErrorCode::FileUnreadable,
                path + " is a folder, not a tokenizer file; pick the tokenizer.model or tokenizer.bin inside it");
  // GGUF files (vocabulary-only or whole models, maybe gigabytes) are mapped, not read; they and
  // tokenizer.json are known by their first bytes or their name.
  std::string head(4, '\0');
  {
    std::ifstream in(path, std::ios::binary);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(in ? head.size() : static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  }
  std::string name = std::filesystem::path(path).filename().string();
  for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (head == "GGUF" || name.ends_with(".gguf")) return load_gguf_tokenizer(path);
  const size_t first = head.find_first_not_of(" \t\r\n");
  const bool looks_like_json = first != std::string::npos && head[first] == '{' && head.find('\0') == std::string::npos;
  if (name.ends_with(".json") || looks_like_json) return load_hf_tokenizer_json(path);

  const std::string bytes = read_text_file(path);
  if (bytes.empty())
    throw Error(ErrorCode::BadTokenizer,
                path + " is empty; use the tokenizer.model or tokenizer.bin that came with the model");

  // A llama2.c tokenizer.bin starts with a small positive int32 (its max token length). A
  // SentencePiece ModelProto starts with 0x0A (field 1, length-delimited) and its third byte is
  // never 0, so it never looks like the former; a tokenizer.bin whose max length is 10 starts with
  // 0x0A too, so when that reading fails the protobuf one is still tried.
  const auto b = [&](size_t i) { return static_cast<uint8_t>(bytes[i]); };
  const bool maybe_llama2c = bytes.size() >= 4 && b(2) == 0 && b(3) == 0 && (b(0) != 0 || b(1) != 0);
  const bool maybe_proto = b(0) == 0x0A;
  std::string llama2c_why;
  if (maybe_llama2c) {
    if (std::optional<SpmModelBuilder> builder = parse_llama2c_tokenizer(bytes, &llama2c_why))
      return make_sentencepiece_tokenizer_from_proto(builder->serialize(path), path);
    if (!maybe_proto) (void)llama2c_tokenizer_to_spm(bytes, path);  // throws with the reason
  }
  if (maybe_proto) {
    std::string proto_why;
    if (llama2c_why.empty() || spm_proto::summarize(bytes, &proto_why))
      return make_sentencepiece_tokenizer_from_proto(bytes, path);
    throw Error(ErrorCode::BadTokenizer, path + " is neither a SentencePiece model (" + proto_why +
                                             ") nor a llama2.c tokenizer.bin (" + llama2c_why +
                                             "); use the tokenizer.model or tokenizer.bin that came with the model");
  }
  throw Error(ErrorCode::BadTokenizer,
              path + " is not a tokenizer the app can read (neither a SentencePiece .model nor a llama2.c "
                     "tokenizer.bin); use the tokenizer.model or tokenizer.bin that came with the model");
}

}  // namespace folio
