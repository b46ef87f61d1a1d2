#include "kernels/cuda_bench.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda_ops.h"
#include "kernels/cuda_util.h"

namespace folio {

AttentionTiming time_attention_prefill(int64_t n, int heads, int kv_heads, int head_dim, int reps, int device) {
  cuda::DeviceScope scope(device);
  cudaDeviceProp prop{};
  FOLIO_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  const size_t qn = static_cast<size_t>(n) * heads * head_dim, kvn = static_cast<size_t>(n) * kv_heads * head_dim;
  cuda::Arena arena(device, (qn * 2 + kvn * 2 + 4096) * sizeof(uint16_t), "attention benchmark");
  auto* q = arena.take<uint16_t>(qn);
  auto* out = arena.take<uint16_t>(qn);
  auto* k = arena.take<uint16_t>(kvn);
  auto* v = arena.take<uint16_t>(kvn);
  cuda::fill_normal_bf16(q, static_cast<int64_t>(qn), 1, 1.0f, nullptr);
  cuda::fill_normal_bf16(k, static_cast<int64_t>(kvn), 2, 1.0f, nullptr);
  cuda::fill_normal_bf16(v, static_cast<int64_t>(kvn), 3, 1.0f, nullptr);
  cuda::AttentionArgs a;
  a.q = q;
  a.k_cache = k;
  a.v_cache = v;
  a.out = out;
  a.n = static_cast<int>(n);
  a.pos0 = 0;
  a.capacity = n;
  a.n_heads = heads;
  a.n_kv_heads = kv_heads;
  a.head_dim = head_dim;
  cudaEvent_t e0, e1;
  FOLIO_CUDA_CHECK(cudaEventCreate(&e0));
  FOLIO_CUDA_CHECK(cudaEventCreate(&e1));
  cuda::attention_prefill(a, nullptr);  // warm-up
  std::vector<double> times;
  for (int r = 0; r < std::max(reps, 1); ++r) {
    FOLIO_CUDA_CHECK(cudaEventRecord(e0, nullptr));
    cuda::attention_prefill(a, nullptr);
    FOLIO_CUDA_CHECK(cudaEventRecord(e1, nullptr));
    FOLIO_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0.0f;
    FOLIO_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    times.push_back(ms);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(times.begin(), times.end());
  AttentionTiming t;
  t.ms = times[times.size() / 2];
  const double flop = 2.0 * 2.0 * static_cast<double>(n) * static_cast<double>(n) / 2.0 * head_dim * heads;
  t.tflops = flop / (t.ms * 1e-3) / 1e12;
  t.device = prop.name;
  return t;
}

}  // namespace folio
