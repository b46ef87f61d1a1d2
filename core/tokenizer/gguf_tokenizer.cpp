#include "core/tokenizer/gguf_tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "core/common/error.h"
#include "core/model/gguf.h"
#include "core/tokenizer/bpe_tokenizer.h"
#include "core/tokenizer/sentencepiece_tokenizer.h"
#include "core/tokenizer/spm_proto.h"

namespace folio {

namespace {

[[noreturn]] void bad(const GgufFile& file, const std::string& what) {
  throw Error(ErrorCode::BadTokenizer, file.path() + ": " + what +
                                           "; the tokenizer data in this GGUF file is damaged or of a kind the app "
                                           "does not read");
}

bool is_integer_type(GgufType t) {
  switch (t) {
    case GgufType::UInt8: case GgufType::Int8: case GgufType::UInt16: case GgufType::Int16:
    case GgufType::UInt32: case GgufType::Int32: case GgufType::UInt64: case GgufType::Int64: case GgufType::Bool:
      return true;
    default:
      return false;
  }
}

bool is_number_type(GgufType t) { return is_integer_type(t) || t == GgufType::Float32 || t == GgufType::Float64; }

const std::vector<std::string>* string_array(const GgufFile& file, const std::string& key, bool required) {
  const GgufValue* v = file.find(key);
  if (v == nullptr) {
    if (required) bad(file, "the key " + key + " is missing");
    return nullptr;
  }
  if (v->type != GgufType::Array || v->element_type != GgufType::String) bad(file, key + " is not an array of strings");
  return &v->strings;
}

// A numeric array of at least n items, or nullptr when the key is absent.
const std::vector<double>* number_array(const GgufFile& file, const std::string& key, size_t n, bool integers) {
  const GgufValue* v = file.find(key);
  if (v == nullptr) return nullptr;
  if (v->type != GgufType::Array || !(integers ? is_integer_type(v->element_type) : is_number_type(v->element_type)))
    bad(file, key + std::string(" is not an array of ") + (integers ? "integers" : "numbers"));
  if (v->items.size() < n)
    bad(file, key + " has " + std::to_string(v->items.size()) + " entries for " + std::to_string(n) + " tokens");
  return &v->items;
}

std::optional<bool> get_bool(const GgufFile& file, const std::string& key) {
  const GgufValue* v = file.find(key);
  if (v == nullptr || !is_integer_type(v->type)) return std::nullopt;
  return v->integer != 0;
}

// A token id from the metadata; an id outside the vocabulary counts as absent (llama.cpp warns
// and keeps its default).
std::optional<int32_t> get_id(const GgufFile& file, const std::string& key, size_t n_tokens) {
  const GgufValue* v = file.find(key);
  if (v == nullptr || !is_integer_type(v->type)) return std::nullopt;
  if (v->integer < 0 || static_cast<uint64_t>(v->integer) >= n_tokens) return std::nullopt;
  return static_cast<int32_t>(v->integer);
}

std::vector<TokenKind> token_kinds(const GgufFile& file, size_t n) {
  std::vector<TokenKind> kinds(n, TokenKind::Normal);
  if (const std::vector<double>* types = number_array(file, "tokenizer.ggml.token_type", n, true))
    for (size_t i = 0; i < n; ++i) {
      const double t = (*types)[i];
      kinds[i] = t >= 1 && t <= 6 ? static_cast<TokenKind>(static_cast<int>(t)) : TokenKind::Normal;
    }
  return kinds;
}

std::vector<std::string> token_texts(const GgufFile& file) {
  std::vector<std::string> texts = *string_array(file, "tokenizer.ggml.tokens", true);
  if (texts.empty()) bad(file, "tokenizer.ggml.tokens is empty");
  if (texts.size() > static_cast<size_t>(INT32_MAX)) bad(file, "tokenizer.ggml.tokens has too many tokens");
  for (size_t i = 0; i < texts.size(); ++i)
    if (texts[i].empty()) texts[i] = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp
  return texts;
}

// Tokens that end a turn or mark fill-in-the-middle: llama.cpp makes them control tokens even
// where the converter wrote them as user-defined (so they match with parse_special only).
bool is_marker_text(std::string_view text) {
  static const std::set<std::string_view> markers = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
      "<|eom_id|>", "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "<|fim_suffix|>", "<fim-suffix>",
      "<fim_suffix>", "<SUF>", "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "<|fim_pad|>",
      "<fim-pad>", "<fim_pad>", "<PAD>", "<|fim_repo|>", "<fim-repo>", "<fim_repo>", "<|repo_name|>",
      "<|file_sep|>", "<fim-sep>", "<fim_sep>"};
  return markers.contains(text);
}

// llama.cpp gives Phi-3's special tokens rstrip (whitespace after them is dropped), except these.
bool is_phi3(const GgufFile& file) {
  std::string name = file.get_string("general.name").value_or("");
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos;
}

bool phi3_rstrip(std::string_view text, TokenKind kind) {
  if (text == "<unk>" || text == "<s>" || text == "<|endoftext|>") return false;
  return kind == TokenKind::Control || kind == TokenKind::UserDefined || kind == TokenKind::Unknown || text == "</s>";
}

bool matched_in_text(TokenKind kind) {
  return kind == TokenKind::Control || kind == TokenKind::UserDefined || kind == TokenKind::Unknown;
}

// ---------------------------------------------------------------------------------------------
// "gpt2": byte-level BPE

std::unique_ptr<Tokenizer> load_bpe(const GgufFile& file) {
  const std::vector<std::string> texts = token_texts(file);
  const size_t n = texts.size();
  std::vector<TokenKind> kinds = token_kinds(file, n);

  const std::string pre = file.get_string("tokenizer.ggml.pre").value_or("");  // absent: llama.cpp's "default"
  const std::optional<BpePreset> preset = llama_cpp_bpe_preset(pre);
  if (!preset)
    throw Error(ErrorCode::BadTokenizer, file.path() + ": the pre-tokenizer \"" + printable_for_message(pre) +
                                             "\" (tokenizer.ggml.pre) is not supported; Folio knows " +
                                             known_bpe_preset_names());

  BpeVocabulary vocab;
  vocab.tokens.resize(n);
  const bool phi3 = is_phi3(file);
  for (size_t i = 0; i < n; ++i) {
    BpeVocabulary::Token& t = vocab.tokens[i];
    t.text = texts[i];
    t.kind = kinds[i] == TokenKind::UserDefined && is_marker_text(t.text) ? TokenKind::Control : kinds[i];
    t.rstrip = phi3 && phi3_rstrip(t.text, kinds[i]);
  }

  const std::vector<std::string>* merges = string_array(file, "tokenizer.ggml.merges", false);
  if (merges == nullptr) bad(file, "the key tokenizer.ggml.merges is missing (a BPE vocabulary needs its merges)");
  vocab.merges.reserve(merges->size());
  for (const std::string& m : *merges) {
    const size_t space = m.find(' ', 1);
    if (space == std::string::npos) continue;  // not "left right": cannot apply
    vocab.merges.emplace_back(m.substr(0, space), m.substr(space + 1));
  }

  for (const std::string& regex : preset->regexes) vocab.pre_tokenizer.push_back({PreTokenizerStep::Kind::Split, regex});
  vocab.ignore_merges = preset->ignore_merges;
  vocab.add_bos = get_bool(file, "tokenizer.ggml.add_bos_token").value_or(preset->add_bos);
  vocab.bos_id = get_id(file, "tokenizer.ggml.bos_token_id", n).value_or(-1);
  vocab.eos_id = get_id(file, "tokenizer.ggml.eos_token_id", n).value_or(-1);
  vocab.unk_id = get_id(file, "tokenizer.ggml.unknown_token_id", n).value_or(-1);
  return std::make_unique<BpeTokenizer>(std::move(vocab), file.path());
}

// ---------------------------------------------------------------------------------------------
// "llama": SentencePiece, wrapped to split special tokens as llama.cpp does

class GgufSpmTokenizer final : public Tokenizer {
 public:
  GgufSpmTokenizer(std::unique_ptr<SentencePieceTokenizer> inner, std::vector<TokenKind> kinds,
                   SpecialTokenMatcher matcher, int32_t bos_id, int32_t eos_id, bool add_bos)
      : inner_(std::move(inner)), kinds_(std::move(kinds)), matcher_(std::move(matcher)), bos_id_(bos_id),
        eos_id_(eos_id), add_bos_(add_bos && bos_id >= 0) {}

  // Each stretch of text between special tokens is encoded on its own, so it gets the dummy-prefix
  // space as a text start does (llama.cpp: "prefix with space if previous is special").
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && add_bos_) out.push_back(bos_id_);
    matcher_.split(
        text, parse_special,
        [&](std::string_view part) {
          const std::vector<int32_t> ids = inner_->encode(part, false, false);
          out.insert(out.end(), ids.begin(), ids.end());
        },
        [&](int32_t id) { out.push_back(id); });
    return out;
  }

  std::string token_bytes(int32_t id, int32_t previous_id) const override {
    check_id(id);
    switch (kinds_[static_cast<size_t>(id)]) {
      case TokenKind::Control:
      case TokenKind::Unknown:
      case TokenKind::Unused: return {};
      case TokenKind::UserDefined: return inner_->piece(id);
      case TokenKind::Byte: {
        const int value = spm_proto::byte_piece_value(inner_->piece(id));
        if (value >= 0) return std::string(1, static_cast<char>(value));
        break;
      }
      case TokenKind::Normal: break;
    }
    return inner_->token_bytes(id, previous_id);
  }

  std::string piece(int32_t id) const override { return inner_->piece(id); }
  std::optional<int32_t> piece_to_id(std::string_view piece) const override { return inner_->piece_to_id(piece); }
  int32_t vocab_size() const override { return inner_->vocab_size(); }
  int32_t bos_id() const override { return add_bos_ ? bos_id_ : -1; }
  int32_t eos_id() const override { return eos_id_; }
  bool is_control(int32_t id) const override {
    return id >= 0 && static_cast<size_t>(id) < kinds_.size() && kinds_[static_cast<size_t>(id)] == TokenKind::Control;
  }

 private:
  void check_id(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= kinds_.size())
      throw Error(ErrorCode::BadArgument, "token id " + std::to_string(id) + " is not in the vocabulary of " +
                                              inner_->source() + " (" + std::to_string(kinds_.size()) +
                                              " ids); the model and its tokenizer do not match");
  }

  std::unique_ptr<SentencePieceTokenizer> inner_;
  std::vector<TokenKind> kinds_;
  SpecialTokenMatcher matcher_;
  int32_t bos_id_;
  int32_t eos_id_;
  bool add_bos_;
};

std::unique_ptr<Tokenizer> load_spm(const GgufFile& file) {
  const std::vector<std::string> texts = token_texts(file);
  const size_t n = texts.size();
  std::vector<TokenKind> kinds = token_kinds(file, n);
  const std::vector<double>* scores = number_array(file, "tokenizer.ggml.scores", n, false);

  // llama.cpp's defaults for "llama" vocabularies: unk 0, bos 1, eos 2.
  const auto id_or = [&](const char* key, int32_t fallback) {
    if (std::optional<int32_t> id = get_id(file, key, n)) return *id;
    return static_cast<size_t>(fallback) < n ? fallback : -1;
  };
  const int32_t unk = id_or("tokenizer.ggml.unknown_token_id", 0);
  const int32_t bos = id_or("tokenizer.ggml.bos_token_id", 1);
  const int32_t eos = id_or("tokenizer.ggml.eos_token_id", 2);
  if (unk < 0) bad(file, "it has no unknown token (tokenizer.ggml.unknown_token_id)");
  if (unk == bos || unk == eos) bad(file, "the unknown token is also the bos or eos token");

  using PieceType = SpmModelBuilder::PieceType;
  for (size_t i = 0; i < n; ++i)
    if (kinds[i] == TokenKind::UserDefined && is_marker_text(texts[i])) kinds[i] = TokenKind::Control;
  for (int32_t id : {bos, eos})
    if (id >= 0 && kinds[static_cast<size_t>(id)] != TokenKind::Control) kinds[static_cast<size_t>(id)] = TokenKind::Control;

  // Byte fallback needs the 256 pieces <0x00>..<0xFF>; without them byte pieces are left unused.
  std::array<bool, 256> seen{};
  int byte_count = 0;
  for (size_t i = 0; i < n; ++i) {
    if (kinds[i] != TokenKind::Byte) continue;
    const int value = spm_proto::byte_piece_value(texts[i]);
    if (value >= 0 && !seen[static_cast<size_t>(value)]) {
      seen[static_cast<size_t>(value)] = true;
      ++byte_count;
    }
  }
  const bool byte_fallback = byte_count == 256;

  SpmModelBuilder builder;
  builder.model_type = SpmModelBuilder::ModelType::Bpe;
  builder.add_dummy_prefix = get_bool(file, "tokenizer.ggml.add_space_prefix").value_or(true);
  builder.remove_extra_whitespaces = get_bool(file, "tokenizer.ggml.remove_extra_whitespaces").value_or(false);
  builder.byte_fallback = byte_fallback;
  builder.unk_id = unk;
  builder.bos_id = bos;
  builder.eos_id = eos;
  builder.pad_id = -1;
  builder.pieces.resize(n);
  for (size_t i = 0; i < n; ++i) {
    SpmModelBuilder::Piece& p = builder.pieces[i];
    p.text = texts[i];
    p.score = scores != nullptr ? static_cast<float>((*scores)[i]) : 0.0f;
    switch (kinds[i]) {
      case TokenKind::Normal: p.type = PieceType::Normal; break;
      case TokenKind::Unknown: p.type = PieceType::Control; break;  // only one unknown piece; see below
      case TokenKind::Control: p.type = PieceType::Control; break;
      case TokenKind::UserDefined: p.type = PieceType::UserDefined; break;
      case TokenKind::Unused: p.type = PieceType::Unused; break;
      case TokenKind::Byte:
        p.type = byte_fallback && spm_proto::byte_piece_value(p.text) >= 0 ? PieceType::Byte : PieceType::Unused;
        break;
    }
  }
  builder.pieces[static_cast<size_t>(unk)].type = PieceType::Unknown;
  if (kinds[static_cast<size_t>(unk)] == TokenKind::Normal) kinds[static_cast<size_t>(unk)] = TokenKind::Unknown;

  auto inner = make_sentencepiece_tokenizer_from_proto(builder.serialize(file.path()), file.path());

  SpecialTokenMatcher matcher;
  const bool phi3 = is_phi3(file);
  for (size_t i = 0; i < n; ++i) {
    const TokenKind kind = kinds[i];
    if (!matched_in_text(kind)) continue;
    matcher.add({texts[i], static_cast<int32_t>(i), kind != TokenKind::UserDefined, false, phi3 && phi3_rstrip(texts[i], kind)});
  }
  const bool add_bos = get_bool(file, "tokenizer.ggml.add_bos_token").value_or(true);
  return std::make_unique<GgufSpmTokenizer>(std::move(inner), std::move(kinds), std::move(matcher), bos, eos, add_bos);
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file) {
  const std::optional<std::string> model = file.get_string("tokenizer.ggml.model");
  if (!model) bad(file, "it has no tokenizer (the key tokenizer.ggml.model is missing)");
  if (*model == "gpt2") return load_bpe(file);
  if (*model == "llama") return load_spm(file);
  throw Error(ErrorCode::BadTokenizer, file.path() + ": the tokenizer model \"" + printable_for_message(*model) +
                                           "\" (tokenizer.ggml.model) is not supported; Folio reads \"gpt2\" "
                                           "(byte-level BPE) and \"llama\" (SentencePiece) vocabularies");
}

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path) {
  std::unique_ptr<GgufFile> file;
  try {
    file = std::make_unique<GgufFile>(path);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::BadModelFile || e.code() == ErrorCode::UnsupportedModel)
      throw Error(ErrorCode::BadTokenizer, e.what());
    throw;
  }
  return load_gguf_tokenizer(*file);
}

}  // namespace folio
