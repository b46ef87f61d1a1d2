// GGUF reader and GGUF model loading on arbitrary bytes: folio::Error is the only way out.
#include "core/common/error.h"
#include "core/model/gguf.h"
#include "core/model/model_weights.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  folio::fuzz::MemFile file(data, size);
  if (!file.ok()) return 0;
  try {
    folio::GgufFile gguf(file.path());
    for (const auto& t : gguf.tensors()) (void)t.bytes;
  } catch (const folio::Error&) {
  }
  return 0;
}
