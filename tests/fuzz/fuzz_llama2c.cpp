// llama2.c checkpoint loading on arbitrary bytes.
#include "core/common/error.h"
#include "core/model/llama2c.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  folio::fuzz::MemFile file(data, size);
  if (!file.ok()) return 0;
  try {
    auto model = folio::load_llama2c_model(file.path(), {});
    (void)model->weight_bytes();
  } catch (const folio::Error&) {
  }
  return 0;
}
