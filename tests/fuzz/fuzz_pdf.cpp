// A PDF from arbitrary bytes through Qt PDF (PDFium) and Folio's page handling in this process:
// page text cleaning, page labels, blank and unreadable pages told apart, passwords, then the
// document as laid out. In the app the same code runs in the guarded worker process (time and
// memory limits); here a hang or a blow-up inside PDFium shows as libFuzzer's timeout or RSS
// limit, a fault in Folio's code as a sanitizer report.
#include <QCoreApplication>
#include <QString>

#include <cstdint>
#include <string>
#include <vector>

#include "core/chat/prompt_layout.h"
#include "core/docs/ingest.h"
#include "core/docs/prompt_layout.h"
#include "tests/fuzz/fuzz_support.h"

// Qt 6.4's QPdfDocument keeps a little PDFium state it never frees (as tst_hostile notes); leaks
// whose stacks pass through Qt PDF are not ours to report.
extern "C" __attribute__((used)) const char* __lsan_default_suppressions() {
  return "leak:libQt6Pdf.so\n";
}

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  static QCoreApplication app(*argc, *argv);  // Qt PDF wants an application object
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  folio::fuzz::MemFile file(data, size);
  if (!file.ok()) return 0;
  folio::docs::LoadOptions options;
  if (size & 1) options.pdf_password = "folio";  // half the inputs open with a password given
  try {
    const folio::docs::Document doc = folio::docs::load_pdf(QString::fromStdString(file.path()), options);
    for (const folio::docs::Section& s : doc.sections)
      if (s.page_index < 0 || s.page_index >= doc.page_count) __builtin_trap();
    const std::vector<folio::chat::Document> docs = {folio::docs::chat_document(doc)};
    (void)folio::chat::documents_system_text(docs, true);
    (void)folio::docs::citation_instruction({doc});
  } catch (const folio::docs::DocumentError&) {
  }
  return 0;
}
