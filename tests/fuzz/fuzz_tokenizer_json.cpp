// A Hugging Face tokenizer.json (byte-level BPE) parsed from arbitrary bytes; what loads must
// encode, decode and count without crashing.
#include <string_view>

#include "core/common/error.h"
#include "core/tokenizer/bpe_tokenizer.h"
#include "core/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok = folio::parse_hf_tokenizer_json(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz", {});
    const std::string text = "Hello world, \xc3\xa4 <s>!  abc\n\n";
    auto ids = tok->encode(text, true, true);
    folio::StreamDecoder dec(*tok);
    for (int32_t id : ids) dec.push(id);
    dec.flush();
    (void)folio::count_tokens(*tok, text, 3);
  } catch (const folio::Error&) {
  }
  return 0;
}
