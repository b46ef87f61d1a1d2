// Asks the CUDA runtime which GPUs are usable. Builds without CUDA answer "no CUDA in this build".
// Any runtime error (no driver, driver too old) counts as "no GPU": the engine then uses the CPU.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace folio {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  size_t total_bytes = 0;
  size_t free_bytes = 0;
};

struct CudaProbe {
  int device_count = 0;
  std::vector<CudaDeviceInfo> devices;
  std::string summary;  // one line: the devices, or why there are none
};

CudaProbe probe_cuda();

}  // namespace folio
