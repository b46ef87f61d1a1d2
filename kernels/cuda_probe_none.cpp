#include "kernels/cuda_probe.h"

namespace folio {

CudaProbe probe_cuda() {
  CudaProbe p;
  p.summary = "this build has no CUDA support";
  return p;
}

}  // namespace folio
