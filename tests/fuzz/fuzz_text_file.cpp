// A text file from arbitrary bytes through the app's loader (core/docs, Qt): BOMs of every kind,
// the binary and UTF-8 checks made on the bytes, sections decoded from the bytes a section at a
// time, then the document as core/chat lays it out and packs it (one-line documents cut into
// windows). The checks: the sections cover every line once, in order, and no packing unit of a
// file is longer than a window.
#include <QString>

#include <cstdint>
#include <string>
#include <vector>

#include "core/chat/context_packing.h"
#include "core/chat/prompt_layout.h"
#include "core/docs/ingest.h"
#include "core/docs/prompt_layout.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  folio::fuzz::MemFile file(data, size);
  if (!file.ok()) return 0;
  folio::docs::LoadOptions options;
  options.section_lines = 1 + (size > 0 ? data[0] % 7 : 0);  // many sections from a small input
  try {
    folio::docs::Document doc = folio::docs::load_text_file(QString::fromStdString(file.path()), options);
    int next_line = 1;
    for (const folio::docs::Section& s : doc.sections) {
      if (s.first_line != next_line || s.last_line < s.first_line) __builtin_trap();
      next_line = s.last_line + 1;
    }
    if (doc.files.size() != 1 || doc.files.front().line_count != next_line - 1) __builtin_trap();
    const std::vector<folio::chat::Document> docs = {folio::docs::chat_document(std::move(doc))};
    (void)folio::chat::documents_system_text(docs, true);
    auto count = [](const std::string& text) { return static_cast<int64_t>(text.size() / 4 + 1); };
    const folio::chat::PackingIndex index(docs, count, 400);
    for (const folio::chat::Document& d : index.units())
      for (const folio::chat::Section& u : d.sections)
        if (u.text.size() > 1536 && u.page_index < 0) __builtin_trap();  // windows, long lines cut
    for (int64_t budget : {64, 300}) {
      const folio::chat::PackResult r =
          folio::chat::pack_documents(index, "what is logged?", budget, folio::chat::FitMode::Relevant);
      (void)folio::chat::layout_documents(r.docs);
    }
  } catch (const folio::docs::DocumentError&) {
  }
  return 0;
}
