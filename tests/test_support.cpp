#include "tests/test_support.h"

#include <cstdlib>
#include <filesystem>

namespace folio::test {

namespace {
std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != 0 ? std::string(v) : fallback;
}
}  // namespace

std::string source_dir() { return env_or("FOLIO_SOURCE_DIR", "."); }
std::string shared_models() { return env_or("FOLIO_SHARED_MODELS", source_dir() + "/../shared/models"); }
std::string bin_dir() { return env_or("FOLIO_BIN_DIR", "."); }
bool exists(const std::string& path) { return std::filesystem::exists(path); }

}  // namespace folio::test
