#include "core/chat/prompt_layout.h"

#include "core/common/input_limits.h"

namespace folio::chat {

// Paths run to PATH_MAX (4,096 bytes); a title or label longer than that is cut.
std::string prompt_name(std::string_view name) {
  return printable_name(name, 4096);
}

namespace {

std::string line_range(int first, int last) {
  return first == last ? "line " + std::to_string(first)
                       : "lines " + std::to_string(first) + "-" + std::to_string(last);
}

std::string numbered(const std::string& text, int first_line) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  int line = first_line;
  out += std::to_string(line) + "| ";
  for (char c : text) {
    out += c;
    if (c == '\n') out += std::to_string(++line) + "| ";
  }
  return out;
}

std::string counted(int n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::string header(const Document& doc) {
  switch (doc.kind) {
    case DocumentKind::Pdf:
      return "[document: " + prompt_name(doc.title) + ", " + counted(doc.page_count, "page") + "]";
    case DocumentKind::SourceTree:
      return "[folder: " + prompt_name(doc.title) + ", " + counted(doc.page_count, "file") + "]";
    case DocumentKind::Text:
      break;
  }
  return "[document: " + prompt_name(doc.title) + "]";
}

std::string footer(const Document& doc) {
  return (doc.kind == DocumentKind::SourceTree ? "[end of folder: " : "[end of document: ") + prompt_name(doc.title) +
         "]";
}

// One document's layout appended to out, part by part (a long document is not held twice).
void append_document(const Document& doc, const LayoutOptions& options, std::string& out) {
  out += header(doc);
  for (const Section& s : doc.sections) {
    out += kPartSeparator;
    out += layout_section(doc, s, options);
  }
  if (doc.truncated()) {
    out += kPartSeparator;
    out += doc.truncation_notice;
  }
  out += kPartSeparator;
  out += footer(doc);
}

void append_documents(const std::vector<Document>& docs, const LayoutOptions& options, std::string& out) {
  for (size_t i = 0; i < docs.size(); ++i) {
    if (i > 0) out += kDocumentSeparator;
    append_document(docs[i], options, out);
  }
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += separator;
    out += parts[i];
  }
  return out;
}

}  // namespace

std::string layout_section(const Document& doc, const Section& s, const LayoutOptions& options) {
  if (!s.note.empty()) return s.note;
  if (doc.kind == DocumentKind::Pdf || s.page_index >= 0)
    return "[p. " + prompt_name(citation_label(doc, s)) + "]\n" + s.text;
  return "[file: " + prompt_name(s.file) + ", " + line_range(s.first_line, s.last_line) + "]\n" +
         (options.number_lines ? numbered(s.text, s.first_line) : s.text);
}

std::vector<std::string> layout_parts(const Document& doc, const LayoutOptions& options) {
  std::vector<std::string> parts;
  parts.reserve(doc.sections.size() + 3);
  parts.push_back(header(doc));
  for (const Section& s : doc.sections) parts.push_back(layout_section(doc, s, options));
  if (doc.truncated()) parts.push_back(doc.truncation_notice);
  parts.push_back(footer(doc));
  return parts;
}

std::string layout_document(const Document& doc, const LayoutOptions& options) {
  std::string out;
  append_document(doc, options, out);
  return out;
}

std::string layout_documents(const std::vector<Document>& docs, const LayoutOptions& options) {
  std::string out;
  append_documents(docs, options, out);
  return out;
}

namespace {

// What a set of documents needs said about citing: PDF page markers, file markers (with one of
// their paths as the example), and PDFs to tell apart by name.
struct CitationNeeds {
  int pdfs = 0;
  std::string example_pdf;
  std::string example_file;
};

CitationNeeds citation_needs(std::span<const Document> docs) {
  CitationNeeds n;
  for (const Document& d : docs) {
    if (d.kind == DocumentKind::Pdf) {
      if (n.pdfs++ == 0) n.example_pdf = prompt_name(d.title);
    } else if (n.example_file.empty() && !d.files.empty()) {
      n.example_file = prompt_name(d.files.front());
    }
  }
  return n;
}

const char* const kPdfMarkers = "each PDF page starts with a marker such as [p. 12] that names the page.";
const char* const kCiteOnly =
    "Cite only pages and lines that appear in the documents; if they do not hold the answer, say so.";

std::string file_markers(const std::string& example_file) {
  return "Each excerpt of a file starts with a marker such as [file: " + example_file +
         ", lines 1-200]; its lines are numbered from the first line of that range.";
}

std::string several_pdfs(const std::string& example_pdf) {
  return "There are several PDFs: name the document too, as (" + example_pdf + ", p. 12).";
}

}  // namespace

std::string citation_instruction(std::span<const Document> docs) {
  const CitationNeeds n = citation_needs(docs);
  const bool files = !n.example_file.empty();
  std::vector<std::string> out;
  if (n.pdfs > 0) out.push_back(std::string("In the documents, ") + kPdfMarkers);
  if (files) out.push_back(file_markers(n.example_file));
  std::vector<std::string> forms;
  if (n.pdfs > 0) forms.push_back("(p. 12) or (pp. 12-13) for PDF pages, named as in their markers");
  if (files) forms.push_back("(" + n.example_file + ":40-58) for lines of a file");
  if (!forms.empty()) {
    out.push_back("When your answer uses the documents, cite the source right after each statement: " +
                  join(forms, ", and ") + ".");
    if (n.pdfs > 1) out.push_back(several_pdfs(n.example_pdf));
    out.push_back(kCiteOnly);
  }
  return join(out, " ");
}

std::string later_documents_note(const std::vector<Document>& docs) {
  if (docs.size() < 2) return {};
  const CitationNeeds first = citation_needs(std::span<const Document>(docs.data(), 1));
  const CitationNeeds later = citation_needs(std::span<const Document>(docs.data() + 1, docs.size() - 1));
  std::vector<std::string> out;
  if (first.pdfs == 0 && later.pdfs > 0)
    out.push_back(std::string("In the documents that follow the first, ") + kPdfMarkers +
                  " Cite PDF pages as (p. 12) or (pp. 12-13), named as in their markers.");
  if (first.example_file.empty() && !later.example_file.empty())
    out.push_back(file_markers(later.example_file) + " Cite lines of a file as (" + later.example_file + ":40-58).");
  if (first.pdfs + later.pdfs > 1) out.push_back(several_pdfs(first.pdfs > 0 ? first.example_pdf : later.example_pdf));
  // The first document said nothing about citing (it has no pages or files): now there is something to cite.
  if (!out.empty() && first.pdfs == 0 && first.example_file.empty()) out.push_back(kCiteOnly);
  return join(out, " ");
}

std::string documents_system_text(const std::vector<Document>& docs, bool with_instruction) {
  if (!with_instruction) return layout_documents(docs);
  std::string out = "Answer the question using the documents below. ";
  if (!docs.empty()) out += citation_instruction(std::span<const Document>(docs.data(), 1));
  out += "\n\n";
  append_documents(docs, {}, out);
  if (const std::string note = later_documents_note(docs); !note.empty()) {
    out += "\n\n";
    out += note;
  }
  return out;
}

}  // namespace folio::chat
