// A GGUF model loaded end to end from arbitrary bytes, as folio-cli --model loads it: header,
// config from the metadata, every weight mapped and checked against the config, the vocabulary
// loaded as a tokenizer that then encodes, decodes and counts. Weights are views into the map
// (only norms are copied, bounded by the file), so nothing large is allocated.
#include "core/common/error.h"
#include "core/model/gguf_model.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  folio::fuzz::MemFile file(data, size);
  if (!file.ok()) return 0;
  try {
    auto model = folio::load_gguf_model(file.path());
    (void)model->weight_bytes();
  } catch (const folio::Error&) {
  }
  try {
    auto tok = folio::load_tokenizer(file.path());
    const std::string text = "Hello world, \xc3\xa4 <s>! abc";
    auto ids = tok->encode(text, true, true);
    folio::StreamDecoder dec(*tok);
    for (int32_t id : ids) dec.push(id);
    dec.flush();
    (void)folio::count_tokens(*tok, text, 4);
  } catch (const folio::Error&) {
  }
  return 0;
}
