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

void require_regular_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ELOOP)
      throw Error(ErrorCode::FileUnreadable,
                  path + " is a symbolic link loop (its links point back at each other); give the file it should name");
    throw_open_error(path, err);
  }
  if (S_ISREG(st.st_mode)) return;
  if (S_ISDIR(st.st_mode)) throw Error(ErrorCode::FileUnreadable, path + " is a folder, not a file");
  const char* kind = S_ISFIFO(st.st_mode)   ? "a FIFO (named pipe)"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  throw Error(ErrorCode::FileUnreadable, path + " is " + kind +
                                             ", not a regular file; Folio reads only regular files (save the data to "
                                             "a file first)");
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  require_regular_file(path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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

std::string read_text_file(const std::string& path, size_t max_bytes) {
  require_regular_file(path);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) > max_bytes)
    throw Error(ErrorCode::BadArgument, path + " is " + std::to_string(static_cast<uint64_t>(st.st_size) >> 20) +
                                            " MiB, more than the " + std::to_string(max_bytes >> 20) +
                                            " MiB read whole here; give a smaller file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::FileUnreadable, "cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(ErrorCode::FileUnreadable, "cannot read " + path);
  return ss.str();
}

}  // namespace folio
