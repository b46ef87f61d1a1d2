// config.json parsing on arbitrary text; a config that parses must give a usable RoPE table.
#include <string>

#include "core/common/error.h"
#include "core/model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto cfg = folio::parse_hf_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    auto table = folio::make_rope_table(cfg.rope, cfg.max_context);
    (void)table;
  } catch (const folio::Error&) {
  }
  return 0;
}
