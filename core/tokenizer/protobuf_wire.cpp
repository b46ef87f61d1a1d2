#include "core/tokenizer/protobuf_wire.h"

#include <cstring>

namespace folio::protobuf_wire {

void Writer::varint(uint64_t value) {
  while (value >= 0x80) {
    out_.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out_.push_back(static_cast<char>(value));
}

void Writer::varint_field(uint32_t field, uint64_t value) {
  tag(field, kVarint);
  varint(value);
}

void Writer::int32_field(uint32_t field, int32_t value) {
  varint_field(field, static_cast<uint64_t>(static_cast<int64_t>(value)));
}

void Writer::float_field(uint32_t field, float value) {
  tag(field, kFixed32);
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof bits);
  for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

void Writer::bytes_field(uint32_t field, std::string_view value) {
  tag(field, kLengthDelimited);
  varint(value.size());
  out_.append(value);
}

bool Reader::read_varint(uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= data_.size()) return false;
    const auto byte = static_cast<uint8_t>(data_[pos_++]);
    value |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;  // more than ten bytes
}

bool Reader::next(Field& field) {
  if (failed_ || pos_ >= data_.size()) return false;
  uint64_t tag = 0;
  if (!read_varint(tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) {
    failed_ = true;
    return false;
  }
  field.number = static_cast<uint32_t>(tag >> 3);
  field.value = 0;
  field.bytes = {};
  const auto type = static_cast<uint32_t>(tag & 7);
  switch (type) {
    case kVarint:
      field.type = kVarint;
      if (!read_varint(field.value)) failed_ = true;
      break;
    case kFixed64:
    case kFixed32: {
      const size_t n = type == kFixed64 ? 8 : 4;
      field.type = static_cast<WireType>(type);
      if (data_.size() - pos_ < n) {
        failed_ = true;
        break;
      }
      for (size_t i = 0; i < n; ++i) field.value |= uint64_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
      pos_ += n;
      break;
    }
    case kLengthDelimited: {
      field.type = kLengthDelimited;
      uint64_t length = 0;
      if (!read_varint(length) || length > data_.size() - pos_) {
        failed_ = true;
        break;
      }
      field.bytes = data_.substr(pos_, static_cast<size_t>(length));
      pos_ += static_cast<size_t>(length);
      break;
    }
    default:
      failed_ = true;
  }
  return !failed_;
}

}  // namespace folio::protobuf_wire
