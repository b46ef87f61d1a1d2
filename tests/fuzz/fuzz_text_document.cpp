// A text document from arbitrary bytes through what a question over it does without a model:
// reading (BOM, binary and UTF-8 checks, lines, sections), the prompt layout and system text,
// the chat rendering, token counting in bounded pieces, and context packing (word index, ranking,
// gap markers) at budgets below the document's size. The tokenizer is stories260K's (tok512.bin).
#include <string>
#include <string_view>
#include <vector>

#include "core/chat/chat_document.h"
#include "core/chat/context_packing.h"
#include "core/chat/prompt_layout.h"
#include "core/common/error.h"
#include "core/tokenizer/chat_format.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

const folio::Tokenizer& tokenizer() {
  static const std::unique_ptr<folio::Tokenizer> tok =
      folio::load_tokenizer(std::string(FOLIO_SOURCE_DIR) + "/resources/models/stories260K/tok512.bin");
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const folio::Tokenizer& tok = tokenizer();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // Counting in pieces never reads more than it must, whatever the bytes.
  const folio::TokenCount c = folio::count_tokens(tok, bytes, 64);
  if (c.bytes_counted > bytes.size()) __builtin_trap();
  (void)folio::count_piece_length(bytes, 64);

  folio::fuzz::MemFile file(data, size);
  if (!file.ok()) return 0;
  try {
    folio::chat::Document doc = folio::chat::read_text_document(file.path(), 3);
    const std::vector<folio::chat::Document> docs = {doc};
    const std::string system = folio::chat::documents_system_text(docs, true);
    folio::chat::LayoutOptions numbered;
    numbered.number_lines = true;
    (void)folio::chat::layout_documents(docs, numbered);
    const std::string prompt =
        folio::render_chat(folio::ChatFormatKind::ChatML, {{"system", system}, {"user", "What is logged?"}}, true);
    (void)folio::count_tokens(tok, prompt, 256, true);
    auto count = [&](const std::string& text) { return folio::count_tokens(tok, text, 200).tokens; };
    // Counted unit by unit, and (tiny thresholds) estimated from a sample and counted before keeping.
    const folio::chat::PackingIndex exact(docs, count, 200);
    const folio::chat::PackingIndex estimated(docs, count, 200, /*exact_bytes=*/512, /*exact_sample_bytes=*/128);
    for (const folio::chat::PackingIndex* index : {&exact, &estimated})
      for (int64_t budget : {int64_t{0}, int64_t{40}, int64_t{200}})
        for (folio::chat::FitMode mode : {folio::chat::FitMode::Relevant, folio::chat::FitMode::Beginning}) {
          const folio::chat::PackResult r = folio::chat::pack_documents(*index, "pump pressure log?", budget, mode);
          (void)folio::chat::layout_documents(r.docs);
        }
  } catch (const folio::Error&) {
  }
  return 0;
}
