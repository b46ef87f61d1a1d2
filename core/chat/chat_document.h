// A document as the prompt needs it, without Qt: its title and kind, and its text in sections
// that carry their source (a PDF page, or a file's line range), so the layout can mark them and
// answers can cite them. core/docs converts its documents (PDF, text, source trees) into this;
// folio-cli built without Qt reads plain UTF-8 text files into it directly (read_text_document).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace folio::chat {

enum class DocumentKind { Pdf, Text, SourceTree };
// "pdf", "text", "source-tree" (the names the store keeps).
const char* document_kind_name(DocumentKind kind);

struct Section {
  std::string text;
  int page_index = -1;     // PDF: 0-based page; -1 otherwise
  std::string page_label;  // PDF: the label the page is cited by ("ix", "12"); "" = its number
  std::string file;        // text / source tree: path relative to the document root
  int first_line = 0;      // 1-based, inclusive; 0 for PDF pages
  int last_line = 0;
  // Set only by context packing: this part stands for omitted sections and is laid out as the
  // note alone ("[pages 312-318 omitted]").
  std::string note;
};

struct Document {
  std::string path;   // what the user added
  std::string title;  // file or folder name
  DocumentKind kind = DocumentKind::Text;
  std::string content_hash;  // SHA-256 of the source bytes (hex); "" when not computed (folio-cli)
  int page_count = 0;        // PDF pages, or files of a tree (1 for a text file)
  std::vector<Section> sections;
  // PDF: pages are cited by their number in the file instead of their printed labels (the labels
  // repeat or are missing).
  bool cite_by_page_number = false;
  std::vector<std::string> files;  // text / source tree: the files read, in order (relative paths)
  // Set when the user chose to keep only the beginning: the visible notice the layout puts after
  // the kept text. "" = the whole document.
  std::string truncation_notice;
  // Tokens of this document as laid out, when the caller has counted them already (the app's
  // cached counter); 0 = not known, the Conversation counts it when it needs the number.
  int64_t tokens = 0;

  bool truncated() const { return !truncation_notice.empty(); }
};

// The document without its sections (title, kind, files ...), made without copying them (they may
// be hundreds of MiB).
Document without_sections(const Document& doc);

// The label the prompt marks a PDF section with and answers cite it by.
std::string citation_label(const Document& doc, const Section& section);

// Lines of a text (\n, \r\n, \r); a trailing newline does not start another line.
std::vector<std::string> split_lines(std::string_view text);
// Sections of `section_lines` lines (<= 0: 200) of one file, numbered from line 1.
std::vector<Section> line_sections(const std::vector<std::string>& lines, const std::string& file, int section_lines);

// Why bytes without a BOM are not text: "it contains NUL bytes", "37% of its bytes are control
// bytes"; "" when they may be text. Text uses \t \n \v \f \r and ESC; other C0 bytes and DEL do not.
std::string binary_reason(std::string_view bytes);
bool is_control_byte(unsigned char c);

// A plain UTF-8 text file (a UTF-8 BOM is skipped) in sections of section_lines lines, exactly as
// the app sections the same file. Throws folio::Error naming the file for a missing file, a
// folder, a PDF, an empty or binary file, or text that is not UTF-8, and says what to do.
Document read_text_document(const std::string& path, int section_lines = 200);

}  // namespace folio::chat
