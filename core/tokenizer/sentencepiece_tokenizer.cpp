#include "core/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <unordered_map>

#include "core/common/error.h"
#include "core/common/mapped_file.h"
#include "core/tokenizer/protobuf_wire.h"
#include "core/tokenizer/spm_proto.h"

namespace folio {

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";           // U+2581, SentencePiece's space
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";      // " ⁇ ", SentencePiece's <unk> text

const char* piece_type_name(SpmModelBuilder::PieceType type) {
  switch (type) {
    case SpmModelBuilder::PieceType::Normal: return "normal";
    case SpmModelBuilder::PieceType::Unknown: return "unknown";
    case SpmModelBuilder::PieceType::Control: return "control";
    case SpmModelBuilder::PieceType::UserDefined: return "user-defined";
    case SpmModelBuilder::PieceType::Unused: return "unused";
    case SpmModelBuilder::PieceType::Byte: return "byte";
  }
  return "invalid";
}

[[noreturn]] void bad_vocab(const std::string& source, const std::string& what) {
  throw Error(ErrorCode::BadTokenizer,
              source + " cannot be used as a SentencePiece vocabulary: " + what +
                  "; the tokenizer data of this model is damaged or of a kind the app does not read");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SpmModelBuilder

std::string SpmModelBuilder::serialize(const std::string& source) const {
  using protobuf_wire::Writer;
  const auto n = static_cast<int64_t>(pieces.size());
  if (n == 0) bad_vocab(source, "it has no pieces");
  if (n > INT32_MAX) bad_vocab(source, "it has more pieces than int32 ids can number");

  std::unordered_map<std::string_view, int64_t> first_id;
  first_id.reserve(pieces.size());
  int64_t unknown_count = 0;
  int byte_count = 0;
  for (int64_t id = 0; id < n; ++id) {
    const Piece& p = pieces[static_cast<size_t>(id)];
    if (p.text.empty()) bad_vocab(source, "piece " + std::to_string(id) + " is empty");
    const auto type = static_cast<int32_t>(p.type);
    if (type < 1 || type > 6) bad_vocab(source, "piece " + std::to_string(id) + " has type " + std::to_string(type));
    auto [it, inserted] = first_id.emplace(p.text, id);
    if (!inserted)
      bad_vocab(source, "piece \"" + p.text + "\" appears twice (ids " + std::to_string(it->second) + " and " +
                            std::to_string(id) + ")");
    if (p.type == PieceType::Unknown) ++unknown_count;
    if (p.type == PieceType::Byte) {
      if (spm_proto::byte_piece_value(p.text) < 0)
        bad_vocab(source, "byte piece " + std::to_string(id) + " is \"" + p.text + "\", not <0xNN>");
      ++byte_count;
    }
  }
  auto check_special = [&](const char* name, int32_t id, PieceType type, bool required) {
    if (id < 0 && !required) return;
    if (id < 0 || id >= n)
      bad_vocab(source, std::string(name) + " id " + std::to_string(id) + " is outside the " + std::to_string(n) +
                            " pieces");
    const Piece& p = pieces[static_cast<size_t>(id)];
    if (p.type != type)
      bad_vocab(source, std::string(name) + " id " + std::to_string(id) + " is the " + piece_type_name(p.type) +
                            " piece \"" + p.text + "\", expected a " + piece_type_name(type) + " piece");
  };
  check_special("unk", unk_id, PieceType::Unknown, true);
  if (unknown_count != 1) bad_vocab(source, "it has " + std::to_string(unknown_count) + " unknown pieces, needs one");
  check_special("bos", bos_id, PieceType::Control, false);
  check_special("eos", eos_id, PieceType::Control, false);
  if (pad_id >= 0 && pad_id >= n) bad_vocab(source, "pad id " + std::to_string(pad_id) + " is outside the pieces");
  if (byte_fallback && byte_count != 256)
    bad_vocab(source, "byte fallback needs the 256 pieces <0x00>..<0xFF>, it has " + std::to_string(byte_count));
  if (!byte_fallback && byte_count != 0) bad_vocab(source, "it has byte pieces but byte fallback is off");

  Writer model;
  for (const Piece& p : pieces) {
    Writer w;
    w.bytes_field(spm_proto::kPiecePiece, p.text);
    w.float_field(spm_proto::kPieceScore, p.score);
    w.int32_field(spm_proto::kPieceType, static_cast<int32_t>(p.type));
    model.bytes_field(spm_proto::kModelPieces, w.bytes());
  }

  Writer trainer;
  trainer.int32_field(spm_proto::kTrainerModelType, static_cast<int32_t>(model_type));
  trainer.int32_field(spm_proto::kTrainerVocabSize, static_cast<int32_t>(n));
  trainer.bool_field(spm_proto::kTrainerByteFallback, byte_fallback);
  trainer.int32_field(spm_proto::kTrainerUnkId, unk_id);
  trainer.int32_field(spm_proto::kTrainerBosId, bos_id);
  trainer.int32_field(spm_proto::kTrainerEosId, eos_id);
  trainer.int32_field(spm_proto::kTrainerPadId, pad_id);
  // libsentencepiece finds the special ids by these piece names, not by the ids above.
  auto piece_text = [&](int32_t id) -> std::string_view {
    return id >= 0 && id < n ? std::string_view(pieces[static_cast<size_t>(id)].text) : std::string_view();
  };
  trainer.bytes_field(spm_proto::kTrainerUnkPiece, piece_text(unk_id));
  if (bos_id >= 0) trainer.bytes_field(spm_proto::kTrainerBosPiece, piece_text(bos_id));
  if (eos_id >= 0) trainer.bytes_field(spm_proto::kTrainerEosPiece, piece_text(eos_id));
  if (pad_id >= 0) trainer.bytes_field(spm_proto::kTrainerPadPiece, piece_text(pad_id));
  model.bytes_field(spm_proto::kModelTrainerSpec, trainer.bytes());

  Writer normalizer;
  normalizer.bytes_field(spm_proto::kNormalizerName, "identity");
  normalizer.bool_field(spm_proto::kNormalizerAddDummyPrefix, add_dummy_prefix);
  normalizer.bool_field(spm_proto::kNormalizerRemoveExtraWhitespaces, remove_extra_whitespaces);
  normalizer.bool_field(spm_proto::kNormalizerEscapeWhitespaces, true);
  model.bytes_field(spm_proto::kModelNormalizerSpec, normalizer.bytes());
  return model.take();
}

// ---------------------------------------------------------------------------------------------
// SentencePieceTokenizer

SentencePieceTokenizer::SentencePieceTokenizer(std::string serialized_model_proto, std::string source)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()), source_(std::move(source)) {
  // Checked here first: libsentencepiece logs to stderr (and returns nullptr) for an unknown
  // model type instead of only returning an error.
  std::string why;
  const std::optional<spm_proto::Summary> summary = spm_proto::summarize(serialized_model_proto, &why);
  if (!summary)
    throw Error(ErrorCode::BadTokenizer, source_ + " is not a SentencePiece model (" + why +
                                             "); use the tokenizer.model or tokenizer.bin that came with the model");
  const auto status = sp_->LoadFromSerializedProto(serialized_model_proto);
  if (!status.ok())
    throw Error(ErrorCode::BadTokenizer, source_ + " is not a usable SentencePiece model (libsentencepiece: " +
                                             status.ToString() +
                                             "); use the tokenizer.model or tokenizer.bin that came with the model");
  model_size_ = sp_->GetPieceSize();
  vocab_size_ = model_size_;
  bos_id_ = sp_->bos_id();
  eos_id_ = sp_->eos_id();
  unk_id_ = sp_->unk_id();
  strip_leading_space_ = summary->add_dummy_prefix || summary->remove_extra_whitespaces;
  for (int32_t id = 0; id < model_size_; ++id)
    if (sp_->IsControl(id) && !sp_->IdToPiece(id).empty()) model_control_ids_.push_back(id);
  rebuild_matcher();
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

void SentencePieceTokenizer::add_token(int32_t id, std::string text, bool special) {
  if (id < 0) throw Error(ErrorCode::BadArgument, "added token \"" + text + "\" has negative id " + std::to_string(id));
  if (text.empty()) throw Error(ErrorCode::BadArgument, "added token " + std::to_string(id) + " has empty text");
  if (auto it = added_by_text_.find(text); it != added_by_text_.end() && it->second != id)
    throw Error(ErrorCode::BadArgument, "added token text \"" + text + "\" is already token " +
                                            std::to_string(it->second) + ", cannot also be token " +
                                            std::to_string(id));
  if (auto it = added_.find(id); it != added_.end()) added_by_text_.erase(it->second.text);
  added_by_text_[text] = id;
  added_[id] = AddedToken{std::move(text), special};
  vocab_size_ = std::max(vocab_size_, id + 1);
  rebuild_matcher();
}

void SentencePieceTokenizer::rebuild_matcher() {
  for (auto& bucket : matcher_) bucket.clear();
  auto add = [&](const std::string& text, int32_t id, bool special) {
    matcher_[static_cast<uint8_t>(text[0])].push_back(MatchEntry{text, id, special});
  };
  for (int32_t id : model_control_ids_) {
    const std::string& text = sp_->IdToPiece(id);
    if (!added_.contains(id) && !added_by_text_.contains(text)) add(text, id, true);
  }
  for (const auto& [id, token] : added_) add(token.text, id, token.special);
  for (auto& bucket : matcher_)
    std::sort(bucket.begin(), bucket.end(), [](const MatchEntry& a, const MatchEntry& b) {
      return a.text.size() != b.text.size() ? a.text.size() > b.text.size() : a.id < b.id;
    });
}

const SentencePieceTokenizer::MatchEntry* SentencePieceTokenizer::match_at(std::string_view text, size_t pos,
                                                                           bool parse_special) const {
  for (const MatchEntry& entry : matcher_[static_cast<uint8_t>(text[pos])]) {
    if (entry.special && !parse_special) continue;
    if (text.substr(pos, entry.text.size()) == entry.text) return &entry;
  }
  return nullptr;
}

void SentencePieceTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok())
    throw Error(ErrorCode::Internal, "SentencePiece could not encode the text with " + source_ + ": " +
                                         status.ToString());
  out.insert(out.end(), ids.begin(), ids.end());
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
  size_t start = 0;
  for (size_t pos = 0; pos < text.size();) {
    const MatchEntry* match = match_at(text, pos, parse_special);
    if (match == nullptr) {
      ++pos;
      continue;
    }
    encode_plain(text.substr(start, pos - start), out);
    out.push_back(match->id);
    pos += match->text.size();
    start = pos;
  }
  encode_plain(text.substr(start), out);
  return out;
}

void SentencePieceTokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size_ || (id >= model_size_ && !added_.contains(id)))
    throw Error(ErrorCode::BadArgument, "token id " + std::to_string(id) + " is not in the vocabulary of " + source_ +
                                            " (" + std::to_string(vocab_size_) +
                                            " ids); the model and its tokenizer do not match");
}

std::string SentencePieceTokenizer::token_bytes(int32_t id, int32_t previous_id) const {
  check_id(id);
  if (auto it = added_.find(id); it != added_.end()) return it->second.text;
  if (sp_->IsControl(id)) return {};
  if (sp_->IsUnknown(id)) return std::string(kUnknownSurface);
  const std::string& p = sp_->IdToPiece(id);
  if (sp_->IsByte(id)) {
    const int value = spm_proto::byte_piece_value(p);
    return value < 0 ? std::string() : std::string(1, static_cast<char>(value));
  }
  std::string_view rest = p;
  // As SentencePiece's DecodeIds: the space that add_dummy_prefix put before the first word goes,
  // at the start and after BOS (or another control token that shows no text).
  if (strip_leading_space_ && rest.starts_with(kSpaceSymbol) && (previous_id == -1 || shows_no_text(previous_id)))
    rest.remove_prefix(kSpaceSymbol.size());
  std::string out;
  out.reserve(rest.size());
  for (size_t pos = 0; pos < rest.size();) {
    if (rest.substr(pos, kSpaceSymbol.size()) == kSpaceSymbol) {
      out.push_back(' ');
      pos += kSpaceSymbol.size();
    } else {
      out.push_back(rest[pos++]);
    }
  }
  return out;
}

std::string SentencePieceTokenizer::piece(int32_t id) const {
  check_id(id);
  if (auto it = added_.find(id); it != added_.end()) return it->second.text;
  return sp_->IdToPiece(id);
}

std::optional<int32_t> SentencePieceTokenizer::piece_to_id(std::string_view text) const {
  if (auto it = added_by_text_.find(std::string(text)); it != added_by_text_.end()) return it->second;
  const int id = sp_->PieceToId(text);
  if (id >= 0 && id < model_size_ && sp_->IdToPiece(id) == text) return id;
  return std::nullopt;
}

bool SentencePieceTokenizer::shows_no_text(int32_t id) const {
  return id >= 0 && id < model_size_ && !added_.contains(id) && sp_->IsControl(id);
}

bool SentencePieceTokenizer::is_control(int32_t id) const {
  if (auto it = added_.find(id); it != added_.end()) return it->second.special;
  return id >= 0 && id < model_size_ && sp_->IsControl(id);
}

// ---------------------------------------------------------------------------------------------
// Factories

std::unique_ptr<SentencePieceTokenizer> make_sentencepiece_tokenizer_from_proto(std::string serialized_model_proto,
                                                                                 const std::string& source) {
  return std::make_unique<SentencePieceTokenizer>(std::move(serialized_model_proto), source);
}

std::unique_ptr<SentencePieceTokenizer> load_sentencepiece_model(const std::string& path) {
  return make_sentencepiece_tokenizer_from_proto(read_text_file(path), path);
}

std::unique_ptr<SentencePieceTokenizer> load_llama2c_tokenizer(const std::string& path) {
  const std::string bytes = read_text_file(path);
  return make_sentencepiece_tokenizer_from_proto(llama2c_tokenizer_to_spm(bytes, path).serialize(path), path);
}

}  // namespace folio
