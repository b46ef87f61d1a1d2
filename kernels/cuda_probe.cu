// Device discovery for the CUDA backend. Every call names its device explicitly (cudaSetDevice is
// restored), so nothing here depends on an implicit current device.
#include <cuda_runtime.h>

#include "kernels/cuda_probe.h"

namespace folio {

CudaProbe probe_cuda() {
  CudaProbe p;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    p.summary = std::string("CUDA runtime: ") + cudaGetErrorString(err);
    cudaGetLastError();
    return p;
  }
  int previous = 0;
  cudaGetDevice(&previous);
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    CudaDeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.compute_major = prop.major;
    d.compute_minor = prop.minor;
    if (cudaSetDevice(i) == cudaSuccess) cudaMemGetInfo(&d.free_bytes, &d.total_bytes);
    p.devices.push_back(d);
  }
  cudaSetDevice(previous);
  p.device_count = static_cast<int>(p.devices.size());
  if (p.device_count == 0) {
    p.summary = "no CUDA device found";
  } else {
    for (const auto& d : p.devices) {
      if (!p.summary.empty()) p.summary += ", ";
      p.summary += "cuda:" + std::to_string(d.index) + " " + d.name + " (" +
                   std::to_string(d.total_bytes >> 30) + " GiB)";
    }
  }
  return p;
}

}  // namespace folio
