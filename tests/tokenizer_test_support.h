// Helpers shared by the tokenizer suites (tst_tokenizer, tst_bpe_tokenizer): llama.cpp's vocab
// test vectors, UTF-8 checks, streaming decode, error capture.
#pragma once

#include <QString>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/common/mapped_file.h"
#include "core/tokenizer/tokenizer.h"

namespace folio::test {

using folio::Error;

template <typename F>
std::optional<Error> error_from(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

inline bool is_valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
    if (len == 3 && ((c == 0xE0 && static_cast<uint8_t>(s[i + 1]) < 0xA0) || (c == 0xED && static_cast<uint8_t>(s[i + 1]) > 0x9F)))
      return false;
    if (len == 4 && ((c == 0xF0 && static_cast<uint8_t>(s[i + 1]) < 0x90) || (c == 0xF4 && static_cast<uint8_t>(s[i + 1]) > 0x8F)))
      return false;
    i += len;
  }
  return true;
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// llama.cpp's test vectors: inputs separated by "\n__ggml_vocab_test__\n" lines (the file starts
// with the first input and ends with a marker line); one line of space-separated ids per input.
struct Vector {
  std::string text;
  std::vector<int32_t> ids;
};
inline std::vector<Vector> read_vectors(const std::string& inp_path, const std::string& out_path) {
  const std::string marker = "\n__ggml_vocab_test__\n";
  const std::string inp = folio::read_text_file(inp_path);
  std::vector<Vector> vectors;
  for (size_t start = 0;;) {
    const size_t end = inp.find(marker, start);
    if (end == std::string::npos) break;
    vectors.push_back({inp.substr(start, end - start), {}});
    start = end + marker.size();
  }
  std::istringstream out(folio::read_text_file(out_path));
  std::string line;
  for (Vector& v : vectors) {
    if (!std::getline(out, line)) break;
    std::istringstream ids(line);
    for (int32_t id = 0; ids >> id;) v.ids.push_back(id);
  }
  return vectors;
}

inline QString show(const std::string& s) { return QString::fromUtf8(s.data(), static_cast<qsizetype>(s.size())); }

inline QString show(const std::vector<int32_t>& ids) {
  QStringList parts;
  for (int32_t id : ids) parts << QString::number(id);
  return parts.join(' ');
}

inline std::string stream_decode(const folio::Tokenizer& tok, const std::vector<int32_t>& ids, bool* all_valid) {
  folio::StreamDecoder decoder(tok);
  std::string text;
  *all_valid = true;
  for (int32_t id : ids) {
    const std::string part = decoder.push(id);
    *all_valid = *all_valid && is_valid_utf8(part);
    text += part;
  }
  const std::string rest = decoder.flush();
  *all_valid = *all_valid && is_valid_utf8(rest);
  return text + rest;
}

}  // namespace folio::test
