// Small helpers shared by the CUDA files: errors become folio::Error with the call that failed,
// a scope that makes one device current and restores the previous one (nothing in the backend
// relies on an implicit current device), and an arena that carves 256-byte aligned buffers out of
// one allocation so that the bytes of each category are known exactly.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/common/error.h"

namespace folio::cuda {

[[noreturn]] void throw_cuda(cudaError_t err, const char* what, const char* file, int line);

#define FOLIO_CUDA_CHECK(call)                                                         \
  do {                                                                                 \
    cudaError_t folio_err_ = (call);                                                   \
    if (folio_err_ != cudaSuccess) ::folio::cuda::throw_cuda(folio_err_, #call, __FILE__, __LINE__); \
  } while (0)

// Makes `device` current for the scope.
// Raises `kernel`'s dynamic shared-memory limit to `bytes` on the current device, once per device:
// `done` (one static per kernel) remembers the devices already set.
void allow_shared_memory(const void* kernel, size_t bytes, std::atomic<uint64_t>& done);

class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
  int device_ = 0;
};

// One cudaMalloc on one device; take() hands out aligned pieces of it.
class Arena {
 public:
  Arena() = default;
  Arena(int device, size_t bytes, const char* what);
  ~Arena();
  Arena(Arena&& o) noexcept { *this = std::move(o); }
  Arena& operator=(Arena&& o) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  template <typename T>
  T* take(size_t count) {
    return static_cast<T*>(take_bytes(count * sizeof(T)));
  }
  void* take_bytes(size_t bytes);
  size_t bytes() const { return bytes_; }
  size_t used() const { return used_; }
  void* base() const { return base_; }

 private:
  int device_ = 0;
  void* base_ = nullptr;
  size_t bytes_ = 0, used_ = 0;
  std::string what_;
};

}  // namespace folio::cuda
