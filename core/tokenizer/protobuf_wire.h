// The few pieces of the protobuf wire format that the tokenizer needs: writing a SentencePiece
// ModelProto by hand (no protoc, no libprotobuf headers) and reading its top-level fields back.
// Internal to core/tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace folio::protobuf_wire {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

class Writer {
 public:
  void varint_field(uint32_t field, uint64_t value);
  // int32 fields are varints of the sign-extended 64-bit value (-1 takes ten bytes).
  void int32_field(uint32_t field, int32_t value);
  void bool_field(uint32_t field, bool value) { varint_field(field, value ? 1 : 0); }
  void float_field(uint32_t field, float value);  // fixed32, little endian
  void bytes_field(uint32_t field, std::string_view value);

  const std::string& bytes() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void tag(uint32_t field, WireType type) { varint((uint64_t{field} << 3) | type); }
  void varint(uint64_t value);
  std::string out_;
};

struct Field {
  uint32_t number = 0;
  WireType type = kVarint;
  uint64_t value = 0;           // varint, fixed32 and fixed64 fields
  std::string_view bytes;       // length-delimited fields
};

// Walks the fields of one message. next() returns false at the end or at the first malformed
// field; failed() tells the two apart. Groups (wire types 3 and 4) count as malformed.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool next(Field& field);
  bool failed() const { return failed_; }

 private:
  bool read_varint(uint64_t& value);
  std::string_view data_;
  size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace folio::protobuf_wire
