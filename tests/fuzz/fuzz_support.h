// libFuzzer targets read files through the same loaders a user's file goes through: the input
// bytes are put in an anonymous memory file (memfd) and its /proc path handed to the loader.
// Targets that need a real folder (a model folder, a source tree) make it under scratch_dir():
// /dev/shm (tmpfs, memory) where it exists, so no input costs a write to disk.
#pragma once

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace folio::fuzz {

class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("folio-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) return;
    size_t done = 0;
    while (done < size) {
      ssize_t n = write(fd_, data + done, size - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
  }
  ~MemFile() {
    if (fd_ >= 0) close(fd_);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  bool ok() const { return fd_ >= 0; }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_ = -1;
};

// A folder for mkdtemp templates: tmpfs when there is one (writing a folder per input to a disk
// file system made the folder targets several times slower), /tmp otherwise.
inline const char* scratch_dir() {
  struct stat st {};
  if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK | X_OK) == 0)
    return "/dev/shm";
  return "/tmp";
}

}  // namespace folio::fuzz
