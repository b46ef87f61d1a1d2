// A safetensors model folder loaded end to end from arbitrary bytes: the input is a u32 length,
// that many bytes of config.json, then model.safetensors. Both are written into a folder of this
// process and loaded as folio-cli --model loads a folder (config checks, every weight mapped and
// checked against the config). Weights are views into the map, so nothing large is allocated.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/common/error.h"
#include "core/model/model_loader.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

const std::string& folder() {
  // Made once, never destroyed: the exit handler below still needs it.
  static const std::string* const dir = [] {
    std::string name = std::string(folio::fuzz::scratch_dir()) + "/folio-fuzz-st-XXXXXX";
    const char* made = ::mkdtemp(name.data());
    if (made == nullptr) std::abort();
    auto* path = new std::string(made);
    std::atexit([] {  // the folder goes with the process
      std::error_code ec;
      std::filesystem::remove_all(folder(), ec);
    });
    return path;
  }();
  return *dir;
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  uint32_t config_len = 0;
  std::memcpy(&config_len, data, 4);
  const size_t n = std::min<size_t>(config_len, size - 4);
  write_file(folder() + "/config.json", data + 4, n);
  write_file(folder() + "/model.safetensors", data + 4 + n, size - 4 - n);
  try {
    auto model = folio::load_model(folder());
    (void)model->weight_bytes();
  } catch (const folio::Error&) {
  }
  return 0;
}
