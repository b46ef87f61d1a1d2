// The Hopper (sm_90a) prefill attention kernel (kernels/flash_attention_sm90.cu), used by
// attention_prefill where it can run.
#pragma once

#include "kernels/cuda_ops.h"

namespace folio::cuda {

// True when the current device is sm_90 and this build holds sm_90a code for it (checked once per
// device by running a probe kernel).
bool sm90_prefill_available();
// Head dims 64, 96, 128 and 16-byte aligned tensors.
bool sm90_prefill_supports(const AttentionArgs& a);
void attention_prefill_sm90(const AttentionArgs& a, cudaStream_t stream);

}  // namespace folio::cuda
