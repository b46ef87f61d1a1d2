// Source-tree walking over a folder built from arbitrary bytes: entries of [kind][name][data] make
// files (any bytes, .gitignore included), folders, symbolic links (to anywhere, loops included)
// and returns to the parent, under a folder of this process; load_source_tree then reads it as
// the app does. Names may hold any byte but '/' and NUL (not UTF-8, control characters).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/docs/ingest.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

const std::string& root() {
  // Made once, never destroyed: the exit handler below still needs it.
  static const std::string* const dir = [] {
    std::string name = std::string(folio::fuzz::scratch_dir()) + "/folio-fuzz-tree-XXXXXX";
    const char* made = ::mkdtemp(name.data());
    if (made == nullptr) std::abort();
    auto* path = new std::string(made);
    std::atexit([] {  // the folder goes with the process
      std::error_code ec;
      std::filesystem::remove_all(root(), ec);
    });
    return path;
  }();
  return *dir;
}

struct Input {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;
  bool done() const { return pos >= size; }
  uint8_t byte() { return pos < size ? data[pos++] : 0; }
  std::string bytes(size_t n) {
    n = std::min(n, size - std::min(pos, size));
    std::string s(reinterpret_cast<const char*>(data + pos), n);
    pos += n;
    return s;
  }
};

std::string entry_name(std::string raw) {
  for (char& c : raw)
    if (c == '/' || c == '\0') c = '_';
  if (raw.empty() || raw == "." || raw == "..") raw = "f" + raw;
  return raw;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string top = root() + "/t";
  std::error_code ec;
  std::filesystem::remove_all(top, ec);
  ::mkdir(top.c_str(), 0700);
  Input in{data, size};
  std::string dir = top;
  int depth = 0;
  for (int entries = 0; entries < 64 && !in.done(); ++entries) {
    const uint8_t kind = in.byte() % 5;
    const std::string name = entry_name(in.bytes(in.byte() % 24));
    const size_t length = static_cast<size_t>(in.byte()) << 4 | in.byte() % 16;
    const std::string contents = in.bytes(length);
    const std::string path = dir + "/" + name;
    if (kind == 0 || kind == 4) {  // a file; kind 4: a .gitignore of this folder
      const std::string file = kind == 4 ? dir + "/.gitignore" : path;
      const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
      if (fd >= 0) {
        if (::write(fd, contents.data(), contents.size()) < 0) {
        }
        ::close(fd);
      }
    } else if (kind == 1 && depth < 8) {  // a folder, entered
      if (::mkdir(path.c_str(), 0700) == 0) {
        dir = path;
        ++depth;
      }
    } else if (kind == 2 && depth > 0) {  // back to the parent
      dir = dir.substr(0, dir.rfind('/'));
      --depth;
    } else if (kind == 3) {  // a symbolic link to the given target (relative, absolute, a loop)
      if (::symlink(contents.c_str(), path.c_str()) != 0) {
      }
    }
  }
  try {
    folio::docs::LoadOptions options;
    options.max_source_file_bytes = 4096;
    options.section_lines = 3;
    const folio::docs::Document doc = folio::docs::load_source_tree(QString::fromStdString(top), options);
    (void)doc.skipped.size();
  } catch (const folio::docs::DocumentError&) {
  }
  return 0;
}
