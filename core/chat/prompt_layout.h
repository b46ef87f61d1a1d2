// Laying documents into prompt text with citation markers, and the system text that carries them
// (with the sentence that tells the model how to cite). The one implementation: core/docs wraps
// it for its Qt documents, the Conversation service puts it into every prompt.
//
// Layout of one document (parts separated by a blank line):
//   PDF:          [document: manual.pdf, 397 pages]  [p. 12] <page text>  ...  [end of document: manual.pdf]
//   text file:    [document: notes.md]  [file: notes.md, lines 1-200] <lines>  ...  [end of document: notes.md]
//   source tree:  [folder: folio, 42 files]  [file: src/engine.cpp, lines 1-200] <lines>  ...  [end of folder: folio]
// A document cut on the user's choice has its notice "[... truncated by the user: ...]" before the end marker.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/chat/chat_document.h"

namespace folio::chat {

struct LayoutOptions {
  bool number_lines = false;  // files: put each line's number before it ("40| ...") (more tokens)
};

inline constexpr const char* kPartSeparator = "\n\n";
inline constexpr const char* kDocumentSeparator = "\n\n";

// A name read from a file (a document's title, a file's path, a PDF's page label) as the prompt
// shows it: control characters and bytes that are not UTF-8 escaped as \xNN (folio::printable_name),
// so a crafted name puts no escape codes, NULs or fake line breaks into the model's input.
std::string prompt_name(std::string_view name);

// The text of one section as laid out (its marker line, then its text).
std::string layout_section(const Document& doc, const Section& section, const LayoutOptions& options = {});
// The parts of one document's layout, in order; layout_document() joins them with kPartSeparator.
std::vector<std::string> layout_parts(const Document& doc, const LayoutOptions& options = {});
std::string layout_document(const Document& doc, const LayoutOptions& options = {});
// All documents, separated by kDocumentSeparator.
std::string layout_documents(const std::vector<Document>& docs, const LayoutOptions& options = {});

// The system-prompt sentences telling the model how to cite these documents (page labels for PDFs,
// path:first-last for files; the document's name when there are several PDFs).
std::string citation_instruction(std::span<const Document> docs);

// The system turn that holds the documents. Chat models are told to answer from them and how to
// cite; base models (plain format) get the documents alone, as they cannot follow an instruction.
//
// So that adding a document keeps everything before it byte-identical (and its KV cached, in memory
// and on disk), the instruction that opens the text is made from the FIRST document only; what
// later documents add (another kind of marker, several PDFs to tell apart) is said in a note after
// the last document (later_documents_note). With one document the text is the instruction, a blank
// line and the document.
std::string documents_system_text(const std::vector<Document>& docs, bool with_instruction);
// The note after the documents: what docs[1..] add to the instruction made from docs[0]; "" when
// they add nothing (one document, or more of the same kind that need no telling apart).
std::string later_documents_note(const std::vector<Document>& docs);

}  // namespace folio::chat
