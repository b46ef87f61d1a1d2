#include "core/common/resource_dir.h"

#include <algorithm>
#include <cstdlib>
#include <system_error>
#include <vector>

namespace folio {

namespace fs = std::filesystem;

namespace {

bool holds_models(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir / "models", ec);
}

}  // namespace

fs::path executable_path() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : p;
}

std::optional<fs::path> resource_dir() {
  if (const char* env = std::getenv("FOLIO_RESOURCE_DIR"); env != nullptr && *env != '\0') {
    if (holds_models(env)) return fs::path(env).lexically_normal();
  }
  const fs::path exe = executable_path();
  if (!exe.empty()) {
    const fs::path share = (exe.parent_path() / ".." / "share" / "folio").lexically_normal();
    if (holds_models(share)) return share;
  }
  return std::nullopt;
}

std::optional<fs::path> bundled_model_path(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") return std::nullopt;
  const std::optional<fs::path> root = resource_dir();
  if (!root) return std::nullopt;
  const fs::path dir = *root / "models" / name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  if (fs::is_regular_file(dir / "config.json", ec)) return dir;
  if (fs::is_regular_file(dir / (name + ".bin"), ec)) return dir / (name + ".bin");
  std::vector<fs::path> ggufs;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
  if (ggufs.size() == 1) return ggufs.front();
  return std::nullopt;
}

std::string bundled_model_names() {
  const std::optional<fs::path> root = resource_dir();
  if (!root) return {};
  std::vector<std::string> names;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(*root / "models", ec))
    if (e.is_directory(ec)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace folio
