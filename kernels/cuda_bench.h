// Times kernels alone on the GPU (folio-bench --attention-only). Without CUDA: throws.
#pragma once

#include <cstdint>
#include <string>

namespace folio {

struct AttentionTiming {
  double ms = 0.0;       // median over reps
  double tflops = 0.0;   // causal: 2 * 2 * n^2 / 2 * head_dim * heads FLOP per call
  double tile_tflops = 0.0;  // on the tiles computed: 2 * 2 * 128 * 64 * head_dim FLOP per tile
  double density = 1.0;      // tiles computed / causal tiles
  std::string device;
};

// query_mtiles: the mma.sync prefill kernel's m16 query tiles per warp (1 = the earlier layout);
// kernel: 0 the best this GPU runs, 1 mma.sync, 2 Hopper (cuda::AttentionKernel).
// Causal prefill attention over n tokens (one chunk: queries = keys = n), bf16, random inputs.
// sparse_stride > 0 times the tile-list path with a fixed block-sparse pattern (the one
// tools/bench_gpu_peers.py gives FlexAttention): key tile t is computed for head h and query tile
// i when t = 0, t is within kSparseBenchWindow tiles of i's last key tile, or (t + h) % stride == 0.
constexpr int kSparseBenchWindow = 16;
AttentionTiming time_attention_prefill(int64_t n, int heads, int kv_heads, int head_dim, int reps, int device,
                                       int sparse_stride = 0, int query_mtiles = 2, int kernel = 0);

}  // namespace folio
