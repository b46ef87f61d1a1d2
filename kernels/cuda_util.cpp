#include "kernels/cuda_util.h"

#include <utility>

namespace folio::cuda {

void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a sticky-free error so later calls can proceed
  const ErrorCode code = err == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::Internal;
  throw Error(code, std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") in " +
                        what + " at " + file + ":" + std::to_string(line));
}

DeviceScope::DeviceScope(int device) : device_(device) {
  cudaGetDevice(&previous_);
  if (previous_ != device) FOLIO_CUDA_CHECK(cudaSetDevice(device));
}

DeviceScope::~DeviceScope() {
  if (previous_ >= 0 && previous_ != device_) cudaSetDevice(previous_);
}

Arena::Arena(int device, size_t bytes, const char* what) : device_(device), bytes_(bytes), what_(what) {
  if (bytes == 0) return;
  DeviceScope scope(device);
  const cudaError_t err = cudaMalloc(&base_, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    base_ = nullptr;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error(ErrorCode::OutOfMemory,
                "cuda:" + std::to_string(device) + " could not allocate " + std::to_string(bytes >> 20) + " MiB for " +
                    what_ + " (" + std::to_string(free_b >> 20) + " MiB free of " + std::to_string(total_b >> 20) +
                    " MiB); choose a smaller context or close other GPU programs");
  }
}

Arena::~Arena() {
  if (base_ != nullptr) {
    DeviceScope scope(device_);
    cudaFree(base_);
  }
}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    if (base_ != nullptr) {
      int prev = -1;
      cudaGetDevice(&prev);
      cudaSetDevice(device_);
      cudaFree(base_);
      if (prev >= 0) cudaSetDevice(prev);
    }
    device_ = o.device_;
    base_ = std::exchange(o.base_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
    used_ = std::exchange(o.used_, 0);
    what_ = std::move(o.what_);
  }
  return *this;
}

void* Arena::take_bytes(size_t bytes) {
  const size_t aligned = (bytes + 255) / 256 * 256;
  if (used_ + aligned > bytes_)
    throw Error(ErrorCode::Internal, "arena for " + what_ + " is too small (" + std::to_string(used_ + aligned) + " > " +
                                         std::to_string(bytes_) + " bytes): the memory plan is out of date");
  void* p = static_cast<uint8_t*>(base_) + used_;
  used_ += aligned;
  return p;
}

void allow_shared_memory(const void* kernel, size_t bytes, std::atomic<uint64_t>& done) {
  int device = 0;
  FOLIO_CUDA_CHECK(cudaGetDevice(&device));
  const uint64_t bit = uint64_t{1} << (device & 63);
  if ((done.load() & bit) != 0) return;
  FOLIO_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  done.fetch_or(bit);
}

}  // namespace folio::cuda
