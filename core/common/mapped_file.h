// A read-only memory map of a whole file. Weights are used in place from the map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace folio {

class MappedFile {
 public:
  // Throws Error(FileNotFound / FileUnreadable) with the path in the message.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Throws Error unless path names a regular file (after symbolic links): missing, a folder, a
// symbolic link loop, a FIFO, a device or a socket are each named as such. Checked by type before
// anything opens the file: opening a FIFO would wait for a writer forever, a device may never end.
void require_regular_file(const std::string& path);

// Files a whole-file read takes at most by default: far above any config, vocabulary or text
// document we read whole (tokenizer.json files are tens of MiB), far below what would exhaust memory.
constexpr size_t kMaxWholeFileBytes = size_t{1} << 30;

// Reads a whole file into a string; throws Error(FileNotFound / FileUnreadable, or BadArgument
// when it is larger than max_bytes, before reading any of it).
std::string read_text_file(const std::string& path, size_t max_bytes = kMaxWholeFileBytes);

}  // namespace folio
