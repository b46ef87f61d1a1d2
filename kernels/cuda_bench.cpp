#include "kernels/cuda_bench.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda_ops.h"
#include "kernels/cuda_util.h"

namespace folio {

AttentionTiming time_attention_prefill(int64_t n, int heads, int kv_heads, int head_dim, int reps, int device,
                                       int sparse_stride, int query_mtiles, int kernel) {
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
  a.query_mtiles = query_mtiles;
  a.kernel = static_cast<cuda::AttentionKernel>(kernel);
  // the tile lists (every causal tile when dense, to count tiles the same way)
  const int nq = static_cast<int>((n + cuda::kQueryTile - 1) / cuda::kQueryTile);
  std::vector<int32_t> offsets, index;
  for (int h = 0; h < heads; ++h) {
    offsets.push_back(static_cast<int32_t>(index.size()));
    for (int i = 0; i < nq; ++i) {
      const int64_t last = (std::min<int64_t>(static_cast<int64_t>(i + 1) * cuda::kQueryTile, n) - 1) / cuda::kKeyTile;
      for (int64_t t = 0; t <= last; ++t)
        if (sparse_stride <= 0 || t == 0 || t >= last - kSparseBenchWindow || (t + h) % sparse_stride == 0)
          index.push_back(static_cast<int32_t>(t));
      offsets.push_back(static_cast<int32_t>(index.size()));
    }
  }
  const int64_t causal_tiles = [&] {
    int64_t c = 0;
    for (int i = 0; i < nq; ++i)
      c += (std::min<int64_t>(static_cast<int64_t>(i + 1) * cuda::kQueryTile, n) - 1) / cuda::kKeyTile + 1;
    return c * heads;
  }();
  cuda::Arena lists(device, (offsets.size() + index.size()) * sizeof(int32_t) + 512, "tile lists");
  auto* d_off = lists.take<int32_t>(offsets.size());
  auto* d_idx = lists.take<int32_t>(index.size());
  if (sparse_stride > 0) {
    FOLIO_CUDA_CHECK(cudaMemcpy(d_off, offsets.data(), offsets.size() * 4, cudaMemcpyHostToDevice));
    FOLIO_CUDA_CHECK(cudaMemcpy(d_idx, index.data(), index.size() * 4, cudaMemcpyHostToDevice));
    a.tile_offset = d_off;
    a.tile_index = d_idx;
  }
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
  const double tiles = static_cast<double>(index.size());
  t.tile_tflops = 2.0 * 2.0 * cuda::kQueryTile * cuda::kKeyTile * head_dim * tiles / (t.ms * 1e-3) / 1e12;
  t.density = tiles / static_cast<double>(causal_tiles);
  t.device = prop.name;
  return t;
}

}  // namespace folio
