#include "core/common/input_limits.h"

namespace folio::limits {

void check_json_bounds(std::string_view text, const JsonLimits& limits, const std::string& source, ErrorCode code) {
  const std::string what = limits.what;
  if (text.size() > limits.max_bytes)
    throw Error(code, source + ": the " + what + " is " + std::to_string(text.size()) + " bytes, more than the " +
                          std::to_string(limits.max_bytes) + " a real model's " + what +
                          " needs; the file is damaged or not what its name says");
  int depth = 0;
  size_t values = text.empty() ? 0 : 1;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > limits.max_depth)
          throw Error(code, source + ": the " + what + " nests more than " + std::to_string(limits.max_depth) +
                                " levels deep (at byte " + std::to_string(i) +
                                "); a real one needs far fewer, so "
                                "the file is damaged or not what its name says");
        break;
      case ']':
      case '}':
        --depth;
        break;
      case ',':  // every value after the first of a list or object follows a comma
        if (++values > limits.max_values)
          throw Error(code, source + ": the " + what + " holds more than " + std::to_string(limits.max_values) +
                                " values; a real one holds far fewer, so the file is damaged or not what its "
                                "name says");
        break;
      default:
        break;
    }
  }
}

}  // namespace folio::limits

namespace folio {

namespace {

void append_hex(unsigned char c, std::string& out) {
  static const char* const kHex = "0123456789ABCDEF";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 15];
}

}  // namespace

size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t len = 0;
  uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1Fu;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0Fu;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3Fu);
  }
  static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

std::string printable_name(std::string_view name, size_t max_bytes) {
  std::string out;
  size_t i = 0;
  while (i < name.size()) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(name[i]);
    const size_t len = utf8_sequence_length(name, i);
    if (len == 0 || c < 0x20 || c == 0x7F) {
      append_hex(c, out);
      ++i;
    } else if (len == 2 && c == 0xC2 && static_cast<unsigned char>(name[i + 1]) < 0xA0) {  // C1: U+0080-U+009F
      append_hex(c, out);
      append_hex(static_cast<unsigned char>(name[i + 1]), out);
      i += 2;
    } else {
      out.append(name.substr(i, len));
      i += len;
    }
  }
  return out;
}

}  // namespace folio
