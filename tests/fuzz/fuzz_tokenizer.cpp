// Tokenizer loaders (SentencePiece .model, llama2.c tokenizer.bin) on arbitrary bytes; what loads
// must also encode and decode without crashing.
#include "core/common/error.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  folio::fuzz::MemFile file(data, size);
  if (!file.ok()) return 0;
  try {
    auto tok = folio::load_tokenizer(file.path());
    auto ids = tok->encode("Hello world, \xc3\xa4 <s>!", true, true);
    folio::StreamDecoder dec(*tok);
    for (int32_t id : ids) dec.push(id);
    dec.flush();
  } catch (const folio::Error&) {
  }
  return 0;
}
