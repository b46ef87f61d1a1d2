#include "core/common/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/common/error.h"

namespace folio {

namespace {
[[noreturn]] void throw_open_error(const std::string& path, int err) {
  if (err == ENOENT) throw Error(ErrorCode::FileNotFound, "file not found: " + path);
  throw Error(ErrorCode::FileUnreadable, "cannot read " + path + ": " + std::strerror(err));
}
}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_open_error(path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw_open_error(path, err);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::FileUnreadable, path + " is a folder, not a file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw_open_error(path, err);
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::string read_text_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw Error(ErrorCode::FileUnreadable, path + " is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (::stat(path.c_str(), &st) != 0) throw Error(ErrorCode::FileNotFound, "file not found: " + path);
    throw Error(ErrorCode::FileUnreadable, "cannot read " + path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(ErrorCode::FileUnreadable, "cannot read " + path);
  return ss.str();
}

}  // namespace folio
