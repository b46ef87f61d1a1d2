#include "core/tokenizer/spm_proto.h"

#include "core/tokenizer/protobuf_wire.h"

namespace folio::spm_proto {

namespace {
using protobuf_wire::Field;
using protobuf_wire::Reader;
}  // namespace

std::optional<Summary> summarize(std::string_view bytes, std::string* why) {
  auto fail = [&](const char* reason) -> std::optional<Summary> {
    if (why != nullptr) *why = reason;
    return std::nullopt;
  };
  Summary s;
  Reader model(bytes);
  Field f;
  while (model.next(f)) {
    if (f.number <= kModelNormalizerSpec && f.type != protobuf_wire::kLengthDelimited)
      return fail("a top-level field has the wrong wire type");
    if (f.number == kModelPieces) {
      Reader piece(f.bytes);
      Field pf;
      while (piece.next(pf)) {
      }
      if (piece.failed()) return fail("a piece is malformed");
      ++s.pieces;
    } else if (f.number == kModelTrainerSpec) {
      Reader trainer(f.bytes);
      Field tf;
      while (trainer.next(tf))
        if (tf.number == kTrainerModelType && tf.type == protobuf_wire::kVarint)
          s.model_type = static_cast<int32_t>(tf.value);
      if (trainer.failed()) return fail("the trainer spec is malformed");
    } else if (f.number == kModelNormalizerSpec) {
      Reader normalizer(f.bytes);
      Field nf;
      while (normalizer.next(nf)) {
        if (nf.type != protobuf_wire::kVarint) continue;
        if (nf.number == kNormalizerAddDummyPrefix) s.add_dummy_prefix = nf.value != 0;
        if (nf.number == kNormalizerRemoveExtraWhitespaces) s.remove_extra_whitespaces = nf.value != 0;
      }
      if (normalizer.failed()) return fail("the normalizer spec is malformed");
    }
  }
  if (model.failed()) return fail("the protobuf data is malformed or truncated");
  if (s.pieces == 0) return fail("it holds no pieces");
  if (s.model_type < 1 || s.model_type > 4) return fail("its model type is unknown");
  return s;
}

int byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(piece[3]);
  const int lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace folio::spm_proto
