// A shared library loaded at run time (dlopen) and its functions bound by name (dlsym): how the CUDA
// backend reaches cuBLASLt and NCCL, so the programs start where those are not installed and say so
// when they are needed. The library stays loaded for the life of the process.
#pragma once

#include <dlfcn.h>

#include <initializer_list>
#include <string>

namespace folio::cuda {

class SharedLibrary {
 public:
  // Tries each path in turn (a soname first, then a full path); error() says why none loaded.
  SharedLibrary(const char* what, std::initializer_list<const char*> paths) : what_(what) {
    for (const char* path : paths) {
      if (path == nullptr || *path == 0) continue;
      handle_ = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      if (handle_ != nullptr) return;
      const char* why = dlerror();
      error_ = std::string(what_) + " could not be loaded: " + (why != nullptr ? why : path);
    }
    if (error_.empty()) error_ = std::string(what_) + " could not be loaded: no path to it is known";
  }

  bool loaded() const { return handle_ != nullptr; }
  // The first failure: why the library did not load, or the first function it lacks; "" when all is well.
  const std::string& error() const { return error_; }

  // Binds fn to the function `name`; false (and error() says which) when the library lacks it.
  template <typename F>
  bool bind(const char* name, F& fn) {
    fn = handle_ != nullptr ? reinterpret_cast<F>(dlsym(handle_, name)) : nullptr;
    if (fn == nullptr && error_.empty()) error_ = std::string(what_) + " has no " + name;
    return fn != nullptr;
  }

 private:
  const char* what_;
  void* handle_ = nullptr;
  std::string error_;
};

}  // namespace folio::cuda
