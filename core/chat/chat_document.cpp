#include "core/chat/chat_document.h"

#include <sys/stat.h>

#include <algorithm>

#include "core/common/error.h"
#include "core/common/input_limits.h"
#include "core/common/mapped_file.h"

namespace folio::chat {

const char* document_kind_name(DocumentKind kind) {
  switch (kind) {
    case DocumentKind::Pdf:
      return "pdf";
    case DocumentKind::SourceTree:
      return "source-tree";
    case DocumentKind::Text:
      break;
  }
  return "text";
}

Document without_sections(const Document& d) {
  Document out;
  out.path = d.path;
  out.title = d.title;
  out.kind = d.kind;
  out.content_hash = d.content_hash;
  out.page_count = d.page_count;
  out.cite_by_page_number = d.cite_by_page_number;
  out.files = d.files;
  out.truncation_notice = d.truncation_notice;
  out.tokens = d.tokens;
  return out;
}

std::string citation_label(const Document& doc, const Section& section) {
  if (doc.cite_by_page_number || section.page_label.empty()) return std::to_string(section.page_index + 1);
  return section.page_label;
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (c == '\n' || c == '\r') {
      lines.emplace_back(text.substr(start, i - start));
      if (c == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < n) lines.emplace_back(text.substr(start));
  return lines;
}

std::vector<Section> line_sections(const std::vector<std::string>& lines, const std::string& file, int section_lines) {
  std::vector<Section> out;
  const int n = static_cast<int>(lines.size());
  const int step = section_lines > 0 ? section_lines : 200;
  for (int first = 0; first < n; first += step) {
    const int last = std::min(n, first + step);  // exclusive
    Section s;
    s.file = file;
    s.first_line = first + 1;
    s.last_line = last;
    for (int i = first; i < last; ++i) {
      if (i > first) s.text += '\n';
      s.text += lines[static_cast<size_t>(i)];
    }
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string file_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return s;
}

}  // namespace

bool is_control_byte(unsigned char c) {
  if (c == 0x7F) return true;
  if (c >= 0x20) return false;
  return !(c == '\t' || c == '\n' || c == 0x0B || c == 0x0C || c == '\r' || c == 0x1B);
}

std::string binary_reason(std::string_view bytes) {
  size_t controls = 0;
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == 0) return "it contains NUL bytes";
    if (is_control_byte(c)) ++controls;
  }
  if (controls * 10 > bytes.size())
    return std::to_string(controls * 100 / std::max<size_t>(1, bytes.size())) + "% of its bytes are control bytes";
  return {};
}

Document read_text_document(const std::string& path, int section_lines) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw Error(ErrorCode::FileUnreadable,
                path +
                    ": is a folder; a folio-cli built without Qt reads plain text files only, "
                    "so pass its files one by one (or use a build with the Qt parts, or the "
                    "Folio app)");
  std::string bytes = read_text_file(path);
  const std::string name = file_name(path);
  const std::string ext = lower(name.substr(std::min(name.size(), name.find_last_of('.') + 1)));
  if (starts_with(bytes, "%PDF-") || (name.find('.') != std::string::npos && ext == "pdf"))
    throw Error(ErrorCode::BadArgument, path +
                                            ": is a PDF; a folio-cli built without Qt reads plain text files only "
                                            "(a build with the Qt parts and the Folio app read PDFs with Qt PDF), so "
                                            "convert it to text first");
  if (bytes.empty()) throw Error(ErrorCode::FileUnreadable, path + ": the file is empty; there is nothing to read");
  std::string_view text = bytes;
  if (starts_with(text, "\xEF\xBB\xBF"))
    text.remove_prefix(3);
  else if (starts_with(text, "\xFF\xFE") || starts_with(text, "\xFE\xFF") ||
           starts_with(text, std::string_view("\0\0\xFE\xFF", 4)))
    throw Error(ErrorCode::FileUnreadable, path +
                                               ": is UTF-16 or UTF-32 text; a folio-cli built without Qt reads UTF-8 "
                                               "only, so save it as UTF-8 (or open it in the Folio app)");
  if (const std::string why = binary_reason(text); !why.empty())
    throw Error(ErrorCode::FileUnreadable,
                path + ": not a text file, it looks binary (" + why + "); pass a plain text document");
  if (!valid_utf8(text))
    throw Error(ErrorCode::FileUnreadable, path +
                                               ": is not valid UTF-8; save it as UTF-8 (or open it in the Folio "
                                               "app, which reads other encodings)");
  if (text.find_first_not_of(" \t\n\r\v\f") == std::string_view::npos)
    throw Error(ErrorCode::FileUnreadable, path + ": the file holds only white space; there is nothing to read");

  Document doc;
  doc.path = path;
  doc.title = name;
  doc.kind = DocumentKind::Text;
  doc.page_count = 1;
  doc.files.push_back(name);
  doc.sections = line_sections(split_lines(text), name, section_lines);
  return doc;
}

}  // namespace folio::chat
