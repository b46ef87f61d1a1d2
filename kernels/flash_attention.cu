// Flash attention for Folio's prefill and decode.
//
// What it computes: for each query row i of a chunk (position pos0 + i) and head h,
//   out[i][h] = softmax(q[i][h] . K[g]^T / sqrt(hd), keys 0..pos0+i) V[g],  g = h / (n_heads / n_kv_heads)
// reading K and V straight from the bf16 KV cache ([n_kv_heads][capacity][hd]) so that grouped
// query heads share their key/value head without copies. Softmax is online (running max and sum
// in fp32), scores and P.V run on the tensor cores (mma.sync m16n8k16 bf16, fp32 accumulate).
//
// Prefill kernel: one CTA of 4 warps per (query tile of 128 rows, head); each warp owns 32 rows
// (two m16 tiles, so every K/V fragment read from shared memory feeds two MMAs).
// The CTA walks a LIST of key tiles (64 keys each): dense attention is the list "every causal
// tile", sparse prefill passes its own per-(head, query tile) lists. Key/value tiles are double
// buffered in shared memory with cp.async; rows are padded by 16 bytes so ldmatrix is free of
// bank conflicts. Tiles that cross the causal diagonal or the end of the keys are masked.
//
// Decode kernels (one query row): split-K. CTAs own (kv head, key range); partial results (max,
// sum, unnormalised output) go to a scratch buffer and a second kernel merges them. The
// tensor-core kernel (head dims 64/96/128, bf16 or 8-bit KV) puts the group's query heads in the
// rows of one m16 tile; the SIMT kernel (a lane per hd/32 dims, the dot products reduced with
// shuffles) serves the rest and is kept for comparison (AttentionArgs::decode_kernel).
//
// History (H200, Llama-3.1-8B layer shape: 32 heads, 8 KV heads, hd 128, causal, bf16):
//   v1 (2026-11-28): mma.sync FA2-style, Br 128 / Bc 64, 8 warps of 16 rows, Q in registers,
//       cp.async double buffer: 252 TFLOP/s at 16K, 259 at 32K (hd 96: 230 / 235). Shared-memory
//       bound: each warp re-reads the whole K/V tile for only 16 rows.
// Decode v1 (2026-11-28): one key per warp step, ~2 CTAs per SM: 76.6 tok/s whole-model decode at
//       32K (8B shape), far from the bandwidth bound. v2: 4 keys per warp step (loads in flight
//       together), ~8 CTAs per SM, up to 128 splits. Tried and reverted (2026-12-05, H100): the
//       dot products of a step (heads x keys) reduced together by a transposed reduction (2N
//       shuffles instead of 5N): 8B-shape decode at 32K fell from 104.7 to 87.8 tok/s (bf16) and
//       167.1 to 130.9 (Q4_K); docs/quantized-gpu.md.
//       Also rejected the same day: 8 keys per warp step instead of 4 (more loads in flight, more
//       registers): 32K 163.2 -> 152.5 tok/s (Q4_K), 102.3 -> 99.4 (bf16); 128K 85.2 -> 76.6 and
//       65.5 -> 60.3. The kernel's occupancy is bound by registers (5 CTAs of 4 warps per SM).
// Decode v3 (2026-12-07, H100): the tensor-core kernel (mma.sync, 64-key tiles in a 3-stage
//       cp.async ring, 2 CTAs per SM). 8B-shape decode, bf16, same call: 4K 141.0 -> 146.7 tok/s,
//       32K 105.3 -> 122.2, 128K 67.2 -> 78.7. docs/benchmarks.md. Rejected the same day: 2 stages
//       and 3 CTAs per SM (same DRAM throughput at 32K, 76%; 128K 77.7/78.2 -> 73.7/73.3 tok/s).
//   v2 (2026-11-28): 4 warps of 32 rows (K/V fragments feed two MMAs), Q read from shared memory
//       per k-step, 2 CTAs per SM, ex2.approx for the softmax. Numbers: docs/benchmarks.md.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "kernels/memory_plan.h"
#include "kernels/cuda_ops.h"
#include "kernels/cuda_util.h"
#include "kernels/flash_attention_sm90.h"
#include "kernels/mma.cuh"

namespace folio::cuda {

namespace {

// The prefill kernel's shape: kMTiles m16 tiles (16 rows each) per warp, so 128 / (16 kMTiles)
// warps. kMTiles = 2 is the default; 1 is kept for comparison (AttentionArgs::query_mtiles = 1).
template <int kMTiles>
struct Warps {
  static constexpr int kRowsPerWarp = 16 * kMTiles;
  static constexpr int kWarps = kQueryTile / kRowsPerWarp;
  static constexpr int kThreads = kWarps * 32;
};
// Loads rows [row0, row0 + kKeyTile) of one head's cache into smem; rows >= limit become zeros.
template <int HD, int kThreads>
__device__ __forceinline__ void load_kv_tile(__nv_bfloat16* dst, const bf16* head_base, int64_t row0, int64_t limit) {
  constexpr int C = Tile<HD>::kChunks;
  for (int i = threadIdx.x; i < kKeyTile * C; i += kThreads) {
    const int r = i / C, c = i % C;
    __nv_bfloat16* s = dst + r * Tile<HD>::kStride + c * 8;
    const int64_t row = row0 + r;
    if (row < limit) {
      cp_async16(s, head_base + row * HD + c * 8);
    } else {
      *reinterpret_cast<uint4*>(s) = make_uint4(0, 0, 0, 0);
    }
  }
}

template <int HD, int kMTiles>
__global__ void __launch_bounds__(Warps<kMTiles>::kThreads, 2) flash_prefill_kernel(AttentionArgs a, int n_qtiles) {
  constexpr int kThreads = Warps<kMTiles>::kThreads;
  constexpr int kRowsPerWarp = Warps<kMTiles>::kRowsPerWarp;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int S = Tile<HD>::kStride;
  auto* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  // buffers b = 0, 1: K at sQ + (kQueryTile + 2b kKeyTile) S, V right after it
  auto sK = [&](int b) { return sQ + (kQueryTile + 2 * b * kKeyTile) * S; };
  auto sV = [&](int b) { return sQ + (kQueryTile + (2 * b + 1) * kKeyTile) * S; };

  const int qt = n_qtiles - 1 - static_cast<int>(blockIdx.x);  // longest tiles first
  const int h = blockIdx.y;
  const int g = h / (a.n_heads / a.n_kv_heads);
  const int i0 = qt * kQueryTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kv_len = a.pos0 + a.n;
  const bf16* k_head = a.k_cache + static_cast<int64_t>(g) * a.capacity * HD;
  const bf16* v_head = a.v_cache + static_cast<int64_t>(g) * a.capacity * HD;

  // The key tiles of this query tile.
  const KeyTiles tiles = key_tiles(a, h, qt, n_qtiles);
  const int n_tiles = tiles.count;
  auto tile_at = [&](int j) { return tiles.at(j); };

  // Q tile -> smem (rows past n are zeros)
  {
    constexpr int C = Tile<HD>::kChunks;
    for (int i = threadIdx.x; i < kQueryTile * C; i += kThreads) {
      const int r = i / C, c = i % C;
      __nv_bfloat16* sp = sQ + r * S + c * 8;
      if (i0 + r < a.n)
        cp_async16(sp, a.q + (static_cast<int64_t>(i0 + r) * a.n_heads + h) * HD + c * 8);
      else
        *reinterpret_cast<uint4*>(sp) = make_uint4(0, 0, 0, 0);
    }
  }
  if (n_tiles > 0) {
    load_kv_tile<HD, kThreads>(sK(0), k_head, static_cast<int64_t>(tile_at(0)) * kKeyTile, kv_len);
    load_kv_tile<HD, kThreads>(sV(0), v_head, static_cast<int64_t>(tile_at(0)) * kKeyTile, kv_len);
  }
  cp_async_commit();

  // Each warp owns kRowsPerWarp rows as kMTiles m16 tiles; every K/V fragment read from shared
  // memory feeds kMTiles MMAs.
  float o[kMTiles][HD / 8][4];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int d = 0; d < HD / 8; ++d) o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.0f;
  float m_run[kMTiles][2], l_run[kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    m_run[mt][0] = m_run[mt][1] = -INFINITY;
    l_run[mt][0] = l_run[mt][1] = 0.0f;
  }
  const float scale_log2 = rsqrtf(static_cast<float>(HD)) * kLog2e;
  const int warp_row0 = warp * kRowsPerWarp;
  const int64_t min_qpos = a.pos0 + i0;

  for (int j = 0; j < n_tiles; ++j) {
    const int buf = j & 1;
    if (j + 1 < n_tiles) {
      const int64_t next = static_cast<int64_t>(tile_at(j + 1)) * kKeyTile;
      load_kv_tile<HD, kThreads>(sK(buf ^ 1), k_head, next, kv_len);
      load_kv_tile<HD, kThreads>(sV(buf ^ 1), v_head, next, kv_len);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int64_t key0 = static_cast<int64_t>(tile_at(j)) * kKeyTile;

    // S = Q K^T: kRowsPerWarp rows x 64 keys per warp
    float s[kMTiles][kKeyTile / 8][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nb = 0; nb < kKeyTile / 8; ++nb) s[mt][nb][0] = s[mt][nb][1] = s[mt][nb][2] = s[mt][nb][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t qa[kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
        ldmatrix_x4(qa[mt], sQ + (warp_row0 + mt * 16 + (lane % 16)) * S + kk * 16 + (lane / 16) * 8);
#pragma unroll
      for (int nb = 0; nb < kKeyTile / 16; ++nb) {
        uint32_t b[4];
        const int key = nb * 16 + (lane % 8) + (lane / 16) * 8;
        const int col = kk * 16 + ((lane / 8) % 2) * 8;
        ldmatrix_x4(b, sK(buf) + key * S + col);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          mma_bf16(s[mt][2 * nb], qa[mt], b[0], b[1]);
          mma_bf16(s[mt][2 * nb + 1], qa[mt], b[2], b[3]);
        }
      }
    }
    // mask tiles that cross the diagonal or the end of the keys
    const bool needs_mask = key0 + kKeyTile - 1 > min_qpos || key0 + kKeyTile > kv_len;
    if (needs_mask) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        const int64_t qpos0 = a.pos0 + i0 + warp_row0 + mt * 16 + lane / 4;
#pragma unroll
        for (int nb = 0; nb < kKeyTile / 8; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int64_t key = key0 + nb * 8 + (lane % 4) * 2 + (e & 1);
            if (key > qpos0 + 8 * (e / 2) || key >= kv_len) s[mt][nb][e] = -INFINITY;
          }
      }
    }
    // online softmax, two rows per thread and m tile (lane / 4: e = 0, 1; lane / 4 + 8: e = 2, 3)
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int r = 0; r < 2; ++r) online_softmax_row(s[mt], o[mt], r, m_run[mt][r], l_run[mt][r], scale_log2);
    // O += P V
#pragma unroll
    for (int t = 0; t < kKeyTile / 16; ++t) {
      uint32_t p[kMTiles][4];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        p[mt][0] = pack_bf16(s[mt][2 * t][0], s[mt][2 * t][1]);
        p[mt][1] = pack_bf16(s[mt][2 * t][2], s[mt][2 * t][3]);
        p[mt][2] = pack_bf16(s[mt][2 * t + 1][0], s[mt][2 * t + 1][1]);
        p[mt][3] = pack_bf16(s[mt][2 * t + 1][2], s[mt][2 * t + 1][3]);
      }
#pragma unroll
      for (int d = 0; d < HD / 16; ++d) {
        uint32_t b[4];
        const int m = lane / 8;
        const int key = t * 16 + (lane % 8) + (m % 2) * 8;
        const int col = d * 16 + (m / 2) * 8;
        ldmatrix_x4_trans(b, sV(buf) + key * S + col);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          mma_bf16(o[mt][2 * d], p[mt], b[0], b[1]);
          mma_bf16(o[mt][2 * d + 1], p[mt], b[2], b[3]);
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();

  // normalise and write
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = l_run[mt][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      const int row = i0 + warp_row0 + mt * 16 + lane / 4 + 8 * r;
      if (row < a.n) {
        __nv_bfloat16* dst =
            reinterpret_cast<__nv_bfloat16*>(a.out) + (static_cast<int64_t>(row) * a.n_heads + h) * HD;
#pragma unroll
        for (int d = 0; d < HD / 8; ++d) {
          const int col = d * 8 + (lane % 4) * 2;
          *reinterpret_cast<__nv_bfloat162*>(dst + col) =
              __floats2bfloat162_rn(o[mt][d][2 * r] * inv, o[mt][d][2 * r + 1] * inv);
        }
      }
    }
}

// ---------------------------------------------------------------------------------------------
// Decode: split-K over the cache.

constexpr int kDecodeWarps = 4;
constexpr int kMaxGroupAll = 16;
constexpr int kUnroll = 4;

// One lane's PER consecutive bf16 values of a cache row, as floats (one vector load where it fits).
template <int PER>
__device__ __forceinline__ void load_row(const __nv_bfloat16* p, float (&out)[PER]) {
  if constexpr (PER == 4) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const __nv_bfloat162 a = *reinterpret_cast<const __nv_bfloat162*>(&raw.x);
    const __nv_bfloat162 b = *reinterpret_cast<const __nv_bfloat162*>(&raw.y);
    out[0] = __low2float(a);
    out[1] = __high2float(a);
    out[2] = __low2float(b);
    out[3] = __high2float(b);
  } else if constexpr (PER == 2) {
    const __nv_bfloat162 a = *reinterpret_cast<const __nv_bfloat162*>(p);
    out[0] = __low2float(a);
    out[1] = __high2float(a);
  } else {
#pragma unroll
    for (int i = 0; i < PER; ++i) out[i] = __bfloat162float(p[i]);
  }
}

// The same from the 8-bit (q8) cache: values d0 .. d0 + PER - 1 of a row, times their blocks' scales.
template <int PER>
__device__ __forceinline__ void load_row_q8(const int8_t* p, const uint16_t* row_scales, int d0, float (&out)[PER]) {
  if constexpr (PER == 4) {  // one block of 32 holds all four (d0 is a multiple of 4)
    const char4 c = *reinterpret_cast<const char4*>(p);
    const float s = __half2float(__ushort_as_half(row_scales[d0 / 32]));
    out[0] = c.x * s;
    out[1] = c.y * s;
    out[2] = c.z * s;
    out[3] = c.w * s;
  } else if constexpr (PER == 2) {
    const char2 c = *reinterpret_cast<const char2*>(p);
    const float s = __half2float(__ushort_as_half(row_scales[d0 / 32]));
    out[0] = c.x * s;
    out[1] = c.y * s;
  } else {
#pragma unroll
    for (int i = 0; i < PER; ++i) out[i] = p[i] * __half2float(__ushort_as_half(row_scales[(d0 + i) / 32]));
  }
}

// kMaxGroup below is the template's bound on query heads per KV head (1, 2, 4, 8 or 16); Q8 reads
// the 8-bit cache (AttentionArgs::k_q8 ...).
template <int HD, int kMaxGroup, bool Q8>
__global__ void __launch_bounds__(kDecodeWarps * 32) flash_decode_kernel(AttentionArgs a, float* partial, int splits,
                                                                         int64_t keys_per_split) {
  constexpr int PER = HD / 32;  // dims per lane
  const int g = blockIdx.x, split = blockIdx.y;
  const int group = a.n_heads / a.n_kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kv_len = (a.pos_dev != nullptr ? *a.pos_dev : a.pos0) + 1;
  // a recorded step's launch is sized for its largest position: the real keys spread over the splits
  if (a.pos_dev != nullptr) keys_per_split = (kv_len + splits - 1) / splits;
  const int64_t k_begin = split * keys_per_split;
  const int64_t k_end = min(kv_len, k_begin + keys_per_split);
  const float scale_log2 = rsqrtf(static_cast<float>(HD)) * kLog2e;

  float q[kMaxGroup][PER];
  float o[kMaxGroup][PER];
  float m[kMaxGroup], l[kMaxGroup];
#pragma unroll
  for (int j = 0; j < kMaxGroup; ++j) {
    m[j] = -INFINITY;
    l[j] = 0.0f;
#pragma unroll
    for (int p = 0; p < PER; ++p) {
      o[j][p] = 0.0f;
      q[j][p] = 0.0f;
      if (j < group)
        q[j][p] = __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(a.q)[(g * group + j) * HD + lane * PER + p]) *
                  scale_log2;
    }
  }
  const auto* kc = reinterpret_cast<const __nv_bfloat16*>(a.k_cache) + static_cast<int64_t>(g) * a.capacity * HD;
  const auto* vc = reinterpret_cast<const __nv_bfloat16*>(a.v_cache) + static_cast<int64_t>(g) * a.capacity * HD;
  const int8_t* kq = a.k_q8 + static_cast<int64_t>(g) * a.capacity * HD;
  const int8_t* vq = a.v_q8 + static_cast<int64_t>(g) * a.capacity * HD;
  const uint16_t* ks = a.k_scale + static_cast<int64_t>(g) * a.capacity * a.kv_blocks;
  const uint16_t* vs = a.v_scale + static_cast<int64_t>(g) * a.capacity * a.kv_blocks;
  // kUnroll keys per step: their loads are all in flight before the first is used.
  for (int64_t base = k_begin + static_cast<int64_t>(warp) * kUnroll; base < k_end;
       base += static_cast<int64_t>(kDecodeWarps) * kUnroll) {
    float kv[kUnroll][PER], vv[kUnroll][PER];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t key = base + u < k_end ? base + u : base;  // repeats a valid key; masked below
      if constexpr (Q8) {
        load_row_q8<PER>(kq + key * HD + lane * PER, ks + key * a.kv_blocks, lane * PER, kv[u]);
        load_row_q8<PER>(vq + key * HD + lane * PER, vs + key * a.kv_blocks, lane * PER, vv[u]);
      } else {
        load_row<PER>(kc + key * HD + lane * PER, kv[u]);
        load_row<PER>(vc + key * HD + lane * PER, vv[u]);
      }
    }
#pragma unroll
    for (int j = 0; j < kMaxGroup; ++j) {
      if (j >= group) continue;
      float dot[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        dot[u] = 0.0f;
#pragma unroll
        for (int p = 0; p < PER; ++p) dot[u] += q[j][p] * kv[u][p];
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1)
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) dot[u] += __shfl_xor_sync(0xffffffffu, dot[u], off);
      float mx = dot[0];
#pragma unroll
      for (int u = 1; u < kUnroll; ++u) {
        if (base + u >= k_end) dot[u] = -INFINITY;
        mx = fmaxf(mx, dot[u]);
      }
      const float m_new = fmaxf(m[j], mx);
      const float alpha = exp2f(m[j] - m_new);
      float pr[kUnroll], psum = 0.0f;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        pr[u] = exp2f(dot[u] - m_new);
        psum += pr[u];
      }
      l[j] = l[j] * alpha + psum;
      m[j] = m_new;
#pragma unroll
      for (int p = 0; p < PER; ++p) {
        float acc = o[j][p] * alpha;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) acc += pr[u] * vv[u][p];
        o[j][p] = acc;
      }
    }
  }
  // merge the warps of the CTA through shared memory
  __shared__ float sm[kDecodeWarps][kMaxGroup], sl[kDecodeWarps][kMaxGroup];
  __shared__ float so[kDecodeWarps][kMaxGroup][HD];
#pragma unroll
  for (int j = 0; j < kMaxGroup; ++j) {
    if (j < group) {
      if (lane == 0) {
        sm[warp][j] = m[j];
        sl[warp][j] = l[j];
      }
#pragma unroll
      for (int p = 0; p < PER; ++p) so[warp][j][lane * PER + p] = o[j][p];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < group * HD; idx += blockDim.x) {
    const int j = idx / HD, d = idx % HD;
    float M = -INFINITY;
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, sm[w][j]);
    float L = 0.0f, O = 0.0f;
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float f = sm[w][j] == -INFINITY ? 0.0f : exp2f(sm[w][j] - M);
      L += sl[w][j] * f;
      O += so[w][j][d] * f;
    }
    float* dst = partial + (static_cast<int64_t>(g * group + j) * splits + split) * (HD + 2);
    dst[d] = O;
    if (d == 0) {
      dst[HD] = M;
      dst[HD + 1] = L;
    }
  }
}

template <int HD>
__global__ void decode_merge_kernel(const float* partial, int splits, int n_heads, bf16* out) {
  const int h = blockIdx.x;
  const float* ph = partial + static_cast<int64_t>(h) * splits * (HD + 2);
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, ph[s * (HD + 2) + HD]);
  for (int d = threadIdx.x; d < HD; d += blockDim.x) {
    float L = 0.0f, O = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float ms = ph[s * (HD + 2) + HD];
      const float f = ms == -INFINITY ? 0.0f : exp2f(ms - M);
      L += ph[s * (HD + 2) + HD + 1] * f;
      O += ph[s * (HD + 2) + d] * f;
    }
    reinterpret_cast<__nv_bfloat16*>(out)[h * HD + d] = __float2bfloat16_rn(L > 0.0f ? O / L : 0.0f);
  }
}

// Decode on the tensor cores (head dims 64, 96, 128; bf16 or 8-bit KV). The query heads of one KV
// group are the rows of a single m16 tile (rows past the group are zeros), so S = Q K^T and
// O += P V are mma.sync instructions: each key is read once per group and no dot product is reduced
// across lanes (the SIMT kernel above spends five shuffles per key and head on that, and is
// issue-bound at about half the memory bandwidth). A CTA of kDecodeWarps warps owns (KV head, key
// range) as in the SIMT kernel; all its threads load tiles of kKeyTile keys with cp.async into a
// ring of kDecodeStages buffers, each warp computes 16 keys of every tile with its own running max,
// sum and output, and the warps are merged through shared memory into the same partial rows (so
// decode_merge_kernel serves both kernels). From the 8-bit cache the ring holds the int8 rows and
// their scales, and each tile is expanded to bf16 in one shared tile before the MMAs (values as
// the SIMT kernel's, int8 x fp16 scale, rounded once to bf16).
constexpr int kDecodeStages = 3;
constexpr int kDecodeKeysPerWarp = kKeyTile / kDecodeWarps;
static_assert(kDecodeKeysPerWarp == 16, "each warp computes one k16 step of P V per tile");

template <int HD, bool Q8>
struct DecodeSmem {
  static constexpr int kStride = Tile<HD>::kStride;
  static constexpr int kBlocks = HD / 32;  // q8 scales per row
  static constexpr size_t kQ = static_cast<size_t>(16) * kStride;          // bf16 elements
  static constexpr size_t kTile = static_cast<size_t>(2) * kKeyTile * kStride;  // K and V, bf16 elements
  // bf16: a ring of kDecodeStages tiles; q8: one bf16 tile, then a ring of 8-bit tiles with scales
  static constexpr size_t kBf16 = kQ + (Q8 ? 1 : kDecodeStages) * kTile;
  static constexpr size_t kQ8Values = static_cast<size_t>(kKeyTile) * HD;          // bytes, K or V
  static constexpr size_t kQ8Scales = static_cast<size_t>(kKeyTile) * kBlocks * 2;  // bytes, K or V
  static constexpr size_t kQ8Stage = 2 * (kQ8Values + kQ8Scales);
  static constexpr size_t kBytes = sizeof(__nv_bfloat16) * kBf16 + (Q8 ? kDecodeStages * kQ8Stage : 0);
  // after the loop the bf16 tiles hold the warps' outputs, maxima and sums for the merge
  static_assert(sizeof(float) * kDecodeWarps * 16 * (HD + 2) <= sizeof(__nv_bfloat16) * (kBf16 - kQ), "merge area");
  static_assert(kQ8Values % 16 == 0 && kQ8Scales % 16 == 0, "16-byte aligned stage parts");
};

// One 8-bit tile (rows row0 .. row0 + kKeyTile - 1 of head g, K then V) into a ring stage: values
// by 16-byte cp.async, scales by 4-byte cp.async where a pair lies below kv_len, one by one (zeros
// past it) in the pair that crosses it. Rows past kv_len get zero scales, so they expand to zeros.
template <int HD>
__device__ __forceinline__ void load_q8_tile(unsigned char* stage, const AttentionArgs& a, int g, int64_t row0,
                                             int64_t kv_len) {
  using L = DecodeSmem<HD, true>;
  constexpr int kThreads = kDecodeWarps * 32;
  constexpr int C = HD / 16;  // 16-byte pieces per 8-bit row
  for (int t = 0; t < 2; ++t) {
    const int8_t* src = (t == 0 ? a.k_q8 : a.v_q8) + static_cast<int64_t>(g) * a.capacity * HD;
    const uint16_t* scales = (t == 0 ? a.k_scale : a.v_scale) + static_cast<int64_t>(g) * a.capacity * L::kBlocks;
    unsigned char* values = stage + t * (L::kQ8Values + L::kQ8Scales);
    auto* sscale = reinterpret_cast<uint16_t*>(values + L::kQ8Values);
    for (int i = threadIdx.x; i < kKeyTile * C; i += kThreads) {
      const int r = i / C, c = i % C;
      if (row0 + r < kv_len) cp_async16(values + r * HD + c * 16, src + (row0 + r) * HD + c * 16);
      else *reinterpret_cast<uint4*>(values + r * HD + c * 16) = make_uint4(0, 0, 0, 0);
    }
    for (int i = threadIdx.x; i < static_cast<int>(L::kQ8Scales / 4); i += kThreads) {
      if (row0 + (i * 2 + 1) / L::kBlocks < kv_len) {
        cp_async4(sscale + i * 2, scales + row0 * L::kBlocks + i * 2);
      } else {
        for (int e = 0; e < 2; ++e)
          sscale[i * 2 + e] = row0 + (i * 2 + e) / L::kBlocks < kv_len ? scales[row0 * L::kBlocks + i * 2 + e] : 0;
      }
    }
  }
}

// An 8-bit ring stage expanded into the bf16 K/V tile (value x its block's fp16 scale).
template <int HD>
__device__ __forceinline__ void expand_q8_tile(__nv_bfloat16* tile, const unsigned char* stage) {
  using L = DecodeSmem<HD, true>;
  constexpr int kThreads = kDecodeWarps * 32;
  constexpr int C = HD / 16;
  for (int i = threadIdx.x; i < 2 * kKeyTile * C; i += kThreads) {
    const int t = i / (kKeyTile * C), r = (i / C) % kKeyTile, c = i % C;
    const unsigned char* values = stage + t * (L::kQ8Values + L::kQ8Scales);
    const auto* sscale = reinterpret_cast<const uint16_t*>(values + L::kQ8Values);
    const float sc = __half2float(__ushort_as_half(sscale[r * L::kBlocks + (c * 16) / 32]));
    const uint4 raw = *reinterpret_cast<const uint4*>(values + r * HD + c * 16);
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
    uint32_t packed[8];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float v0 = static_cast<float>(static_cast<int8_t>(w[k] & 0xff)) * sc;
      const float v1 = static_cast<float>(static_cast<int8_t>((w[k] >> 8) & 0xff)) * sc;
      const float v2 = static_cast<float>(static_cast<int8_t>((w[k] >> 16) & 0xff)) * sc;
      const float v3 = static_cast<float>(static_cast<int8_t>(w[k] >> 24)) * sc;
      packed[2 * k] = pack_bf16(v0, v1);
      packed[2 * k + 1] = pack_bf16(v2, v3);
    }
    __nv_bfloat16* dst = tile + (t * kKeyTile + r) * L::kStride + c * 16;
    reinterpret_cast<uint4*>(dst)[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    reinterpret_cast<uint4*>(dst)[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
  }
}

template <int HD, bool Q8>
__global__ void __launch_bounds__(kDecodeWarps * 32, 2)
    flash_decode_mma_kernel(AttentionArgs a, float* partial, int splits, int64_t keys_per_split) {
  using L = DecodeSmem<HD, Q8>;
  constexpr int kThreads = kDecodeWarps * 32;
  constexpr int S = L::kStride;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  auto* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* tiles = sQ + L::kQ;  // bf16 K/V tiles (a ring, or the one expanded q8 tile)
  unsigned char* q8_ring = smem_raw + sizeof(__nv_bfloat16) * L::kBf16;
  auto sK = [&](int b) { return tiles + (2 * b) * kKeyTile * S; };
  auto sV = [&](int b) { return tiles + (2 * b + 1) * kKeyTile * S; };
  auto q8_stage = [&](int b) { return q8_ring + b * L::kQ8Stage; };

  const int g = blockIdx.x, split = blockIdx.y;
  const int group = a.n_heads / a.n_kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kv_len = (a.pos_dev != nullptr ? *a.pos_dev : a.pos0) + 1;
  // a recorded step's launch is sized for its largest position: the real keys spread over the splits
  if (a.pos_dev != nullptr)
    keys_per_split = ((kv_len + splits - 1) / splits + kKeyTile - 1) / kKeyTile * kKeyTile;
  const int64_t k_begin = split * keys_per_split;
  const int64_t k_end = min(kv_len, k_begin + keys_per_split);
  const int n_tiles = k_end > k_begin ? static_cast<int>((k_end - k_begin + kKeyTile - 1) / kKeyTile) : 0;
  const bf16* k_head = a.k_cache + static_cast<int64_t>(g) * a.capacity * HD;
  const bf16* v_head = a.v_cache + static_cast<int64_t>(g) * a.capacity * HD;
  auto load_tile = [&](int j) {  // tile j into ring stage j % kDecodeStages
    const int64_t row0 = k_begin + static_cast<int64_t>(j) * kKeyTile;
    const int st = j % kDecodeStages;
    if constexpr (Q8) {
      load_q8_tile<HD>(q8_stage(st), a, g, row0, kv_len);
    } else {
      load_kv_tile<HD, kThreads>(sK(st), k_head, row0, kv_len);
      load_kv_tile<HD, kThreads>(sV(st), v_head, row0, kv_len);
    }
  };

  // the group's query rows (contiguous: one query row, heads g * group ...), zeros below them
  {
    constexpr int C = Tile<HD>::kChunks;
    for (int i = threadIdx.x; i < 16 * C; i += kThreads) {
      const int r = i / C, c = i % C;
      __nv_bfloat16* sp = sQ + r * S + c * 8;
      if (r < group) cp_async16(sp, a.q + static_cast<int64_t>(g * group + r) * HD + c * 8);
      else *reinterpret_cast<uint4*>(sp) = make_uint4(0, 0, 0, 0);
    }
    cp_async_commit();
  }
  // the first kDecodeStages - 1 tiles, a commit group each (empty groups past the last tile)
#pragma unroll
  for (int st = 0; st < kDecodeStages - 1; ++st) {
    if (st < n_tiles) load_tile(st);
    cp_async_commit();
  }
  cp_async_wait<kDecodeStages - 1>();  // the query rows
  __syncthreads();
  uint32_t qa[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) ldmatrix_x4(qa[kk], sQ + (lane % 16) * S + kk * 16 + (lane / 16) * 8);

  float o[HD / 8][4];
#pragma unroll
  for (int d = 0; d < HD / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  const float scale_log2 = rsqrtf(static_cast<float>(HD)) * kLog2e;
  const int wkey = warp * kDecodeKeysPerWarp;  // this warp's 16 keys within each tile

  for (int j = 0; j < n_tiles; ++j) {
    cp_async_wait<kDecodeStages - 2>();
    __syncthreads();  // tile j is in; every warp is done with tile j - 1, whose stage is refilled now
    if (j + kDecodeStages - 1 < n_tiles) load_tile(j + kDecodeStages - 1);
    cp_async_commit();
    int buf = j % kDecodeStages;
    if constexpr (Q8) {
      expand_q8_tile<HD>(tiles, q8_stage(buf));
      __syncthreads();
      buf = 0;
    }
    const int64_t key0 = k_begin + static_cast<int64_t>(j) * kKeyTile + wkey;

    // S = Q K^T: 16 rows (the group's heads) x this warp's 16 keys
    float s[2][4];
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t b[4];
      const int key = wkey + (lane % 8) + (lane / 16) * 8;
      const int col = kk * 16 + ((lane / 8) % 2) * 8;
      ldmatrix_x4(b, sK(buf) + key * S + col);
      mma_bf16(s[0], qa[kk], b[0], b[1]);
      mma_bf16(s[1], qa[kk], b[2], b[3]);
    }
    // keys past the split's range (another split's, or past the cache's rows: zeros) are masked
    if (key0 + kDecodeKeysPerWarp > k_end) {
#pragma unroll
      for (int nb = 0; nb < 2; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (key0 + nb * 8 + (lane % 4) * 2 + (e & 1) >= k_end) s[nb][e] = -INFINITY;
    }
    // online softmax: rows lane / 4 (e = 0, 1) and lane / 4 + 8 (e = 2, 3)
#pragma unroll
    for (int r = 0; r < 2; ++r) online_softmax_row(s, o, r, m_run[r], l_run[r], scale_log2);
    // O += P V over the warp's 16 keys
    uint32_t p[4];
    p[0] = pack_bf16(s[0][0], s[0][1]);
    p[1] = pack_bf16(s[0][2], s[0][3]);
    p[2] = pack_bf16(s[1][0], s[1][1]);
    p[3] = pack_bf16(s[1][2], s[1][3]);
#pragma unroll
    for (int d = 0; d < HD / 16; ++d) {
      uint32_t b[4];
      const int m = lane / 8;
      const int key = wkey + (lane % 8) + (m % 2) * 8;
      const int col = d * 16 + (m / 2) * 8;
      ldmatrix_x4_trans(b, sV(buf) + key * S + col);
      mma_bf16(o[2 * d], p, b[0], b[1]);
      mma_bf16(o[2 * d + 1], p, b[2], b[3]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the bf16 tiles are free: they hold the merge area now

  float* so = reinterpret_cast<float*>(tiles);  // [warp][row][HD]
  float* sm = so + kDecodeWarps * 16 * HD;      // [warp][row]
  float* sl = sm + kDecodeWarps * 16;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int row = lane / 4 + 8 * r;
    if (row < group) {
      float* dst = so + (warp * 16 + row) * HD;
#pragma unroll
      for (int d = 0; d < HD / 8; ++d) {
        const int col = d * 8 + (lane % 4) * 2;
        dst[col] = o[d][2 * r];
        dst[col + 1] = o[d][2 * r + 1];
      }
      if (lane % 4 == 0) {
        sm[warp * 16 + row] = m_run[r];
        sl[warp * 16 + row] = l;
      }
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < group * HD; idx += kThreads) {
    const int j = idx / HD, d = idx % HD;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, sm[w * 16 + j]);
    float L = 0.0f, O = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float f = sm[w * 16 + j] == -INFINITY ? 0.0f : exp2f(sm[w * 16 + j] - M);
      L += sl[w * 16 + j] * f;
      O += so[(w * 16 + j) * HD + d] * f;
    }
    float* dst = partial + (static_cast<int64_t>(g * group + j) * splits + split) * (HD + 2);
    dst[d] = O;
    if (d == 0) {
      dst[HD] = M;
      dst[HD + 1] = L;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Any head dim up to 256 (tiny test models, head dims 80 ...): one warp per (query row, head),
// keys walked one by one with an online softmax. Correct everywhere, fast nowhere.

constexpr int kGenericMaxPer = 8;

__global__ void attention_generic_kernel(AttentionArgs a) {
  const int warp_global = static_cast<int>((blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32);
  const int lane = threadIdx.x % 32;
  if (warp_global >= a.n * a.n_heads) return;
  const int i = warp_global / a.n_heads, h = warp_global % a.n_heads;
  const int g = h / (a.n_heads / a.n_kv_heads);
  const int hd = a.head_dim;
  const float scale_log2 = rsqrtf(static_cast<float>(hd)) * kLog2e;
  const auto* qp = reinterpret_cast<const __nv_bfloat16*>(a.q) + (static_cast<int64_t>(i) * a.n_heads + h) * hd;
  const auto* kc = reinterpret_cast<const __nv_bfloat16*>(a.k_cache) + static_cast<int64_t>(g) * a.capacity * hd;
  const auto* vc = reinterpret_cast<const __nv_bfloat16*>(a.v_cache) + static_cast<int64_t>(g) * a.capacity * hd;
  float q[kGenericMaxPer], o[kGenericMaxPer];
#pragma unroll
  for (int p = 0; p < kGenericMaxPer; ++p) {
    const int d = lane + 32 * p;
    q[p] = d < hd ? __bfloat162float(qp[d]) * scale_log2 : 0.0f;
    o[p] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int64_t last = (a.pos_dev != nullptr ? *a.pos_dev : a.pos0) + i;
  for (int64_t key = 0; key <= last; ++key) {
    float dot = 0.0f;
#pragma unroll
    for (int p = 0; p < kGenericMaxPer; ++p) {
      const int d = lane + 32 * p;
      if (d < hd) dot += q[p] * __bfloat162float(kc[key * hd + d]);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    const float m_new = fmaxf(m, dot);
    const float alpha = exp2f(m - m_new), pr = exp2f(dot - m_new);
    l = l * alpha + pr;
    m = m_new;
#pragma unroll
    for (int p = 0; p < kGenericMaxPer; ++p) {
      const int d = lane + 32 * p;
      if (d < hd) o[p] = o[p] * alpha + pr * __bfloat162float(vc[key * hd + d]);
    }
  }
  auto* op = reinterpret_cast<__nv_bfloat16*>(a.out) + (static_cast<int64_t>(i) * a.n_heads + h) * hd;
#pragma unroll
  for (int p = 0; p < kGenericMaxPer; ++p) {
    const int d = lane + 32 * p;
    if (d < hd) op[d] = __float2bfloat16_rn(o[p] / l);
  }
}

void launch_generic(const AttentionArgs& a, cudaStream_t stream) {
  const int64_t warps = static_cast<int64_t>(a.n) * a.n_heads;
  const unsigned blocks = static_cast<unsigned>((warps * 32 + 255) / 256);
  attention_generic_kernel<<<blocks, 256, 0, stream>>>(a);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

template <int HD, int MT>
void launch_prefill_mt(const AttentionArgs& a, cudaStream_t stream) {
  const int n_qtiles = (a.n + kQueryTile - 1) / kQueryTile;
  const size_t smem = Tile<HD>::kSmemBytes;
  // the shared-memory opt-in is per device and kernel: once each, not on every launch
  static std::atomic<uint64_t> configured{0};
  allow_shared_memory(reinterpret_cast<const void*>(flash_prefill_kernel<HD, MT>), smem, configured);
  dim3 grid(static_cast<unsigned>(n_qtiles), static_cast<unsigned>(a.n_heads));
  flash_prefill_kernel<HD, MT><<<grid, Warps<MT>::kThreads, smem, stream>>>(a, n_qtiles);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

template <int HD>
void launch_prefill(const AttentionArgs& a, cudaStream_t stream) {
  if (a.query_mtiles == 1) launch_prefill_mt<HD, 1>(a, stream);
  else launch_prefill_mt<HD, 2>(a, stream);
}

template <int HD, int G>
void launch_decode(const AttentionArgs& a, float* partial, int num_sms, cudaStream_t stream) {
  const int64_t kv_len = a.pos0 + 1;
  // about 8 CTAs (32 warps) per SM, each with kUnroll loads in flight per warp
  int splits = std::max(1, (8 * num_sms + a.n_kv_heads - 1) / a.n_kv_heads);
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, (kv_len + 63) / 64));
  splits = std::min(splits, kMaxDecodeSplits);
  const int64_t per = (kv_len + splits - 1) / splits;
  splits = static_cast<int>((kv_len + per - 1) / per);
  dim3 grid(static_cast<unsigned>(a.n_kv_heads), static_cast<unsigned>(splits));
  if (a.k_q8 != nullptr) flash_decode_kernel<HD, G, true><<<grid, kDecodeWarps * 32, 0, stream>>>(a, partial, splits, per);
  else flash_decode_kernel<HD, G, false><<<grid, kDecodeWarps * 32, 0, stream>>>(a, partial, splits, per);
  FOLIO_CUDA_CHECK(cudaGetLastError());
  decode_merge_kernel<HD><<<a.n_heads, HD, 0, stream>>>(partial, splits, a.n_heads, a.out);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

template <int HD, bool Q8>
void launch_decode_mma(const AttentionArgs& a, float* partial, int num_sms, cudaStream_t stream) {
  const int64_t kv_len = a.pos0 + 1;
  constexpr size_t smem = DecodeSmem<HD, Q8>::kBytes;
  static std::atomic<uint64_t> configured{0};
  allow_shared_memory(reinterpret_cast<const void*>(flash_decode_mma_kernel<HD, Q8>), smem, configured);
  // shared memory admits two CTAs per SM: one wave of them, at least two tiles each
  int splits = std::max(1, (2 * num_sms + a.n_kv_heads - 1) / a.n_kv_heads);
  splits = static_cast<int>(std::min<int64_t>(splits, std::max<int64_t>(1, (kv_len + 2 * kKeyTile - 1) / (2 * kKeyTile))));
  splits = std::min(splits, kMaxDecodeSplits);
  const int64_t per = ((kv_len + splits - 1) / splits + kKeyTile - 1) / kKeyTile * kKeyTile;
  splits = static_cast<int>((kv_len + per - 1) / per);
  dim3 grid(static_cast<unsigned>(a.n_kv_heads), static_cast<unsigned>(splits));
  flash_decode_mma_kernel<HD, Q8><<<grid, kDecodeWarps * 32, smem, stream>>>(a, partial, splits, per);
  FOLIO_CUDA_CHECK(cudaGetLastError());
  decode_merge_kernel<HD><<<a.n_heads, HD, 0, stream>>>(partial, splits, a.n_heads, a.out);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

template <bool Q8>
void launch_decode_mma_hd(const AttentionArgs& a, float* partial, int num_sms, cudaStream_t stream) {
  switch (a.head_dim) {
    case 64: launch_decode_mma<64, Q8>(a, partial, num_sms, stream); break;
    case 96: launch_decode_mma<96, Q8>(a, partial, num_sms, stream); break;
    default: launch_decode_mma<128, Q8>(a, partial, num_sms, stream); break;
  }
}

// The tensor-core kernel copies the 8-bit cache's scales 4 bytes at a time: each head's scale rows
// must start 4-byte aligned (capacity x blocks even: always at head dims 64 and 128), its values 16.
bool q8_rows_aligned(const AttentionArgs& a) {
  const auto aligned = [](const void* p, uintptr_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; };
  return (a.capacity * a.kv_blocks) % 2 == 0 && aligned(a.k_scale, 4) && aligned(a.v_scale, 4) && aligned(a.k_q8, 16) &&
         aligned(a.v_q8, 16);
}

template <int G>
void launch_decode_g(const AttentionArgs& a, float* partial, int num_sms, cudaStream_t stream) {
  switch (a.head_dim) {
    case 64: launch_decode<64, G>(a, partial, num_sms, stream); break;
    case 96: launch_decode<96, G>(a, partial, num_sms, stream); break;
    default: launch_decode<128, G>(a, partial, num_sms, stream); break;
  }
}

void check_args(const AttentionArgs& a) {
  if (a.head_dim <= 0 || a.head_dim > 32 * kGenericMaxPer)
    throw Error(ErrorCode::UnsupportedModel, "the CUDA attention kernels support head dims up to 256, not " +
                                                 std::to_string(a.head_dim) + "; use the CPU backend for this model");
  if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0)
    throw Error(ErrorCode::BadArgument, "attention: heads must be a multiple of KV heads");
  if (a.pos0 + a.n > a.capacity) throw Error(ErrorCode::OutOfContext, "attention: positions past the KV cache");
  if (a.k_q8 != nullptr && (a.n != 1 || !attention_head_dim_fast(a.head_dim) || a.kv_blocks != (a.head_dim + 31) / 32))
    throw Error(ErrorCode::Internal, "attention reads 8-bit KV rows only in decode at head dim 64, 96 or 128");
}

}  // namespace

bool attention_head_dim_supported(int head_dim) { return head_dim > 0 && head_dim <= 32 * kGenericMaxPer; }
bool attention_head_dim_fast(int head_dim) { return head_dim == 64 || head_dim == 96 || head_dim == 128; }

void attention_prefill(const AttentionArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  check_args(a);
  if (!attention_head_dim_fast(a.head_dim)) {
    if (a.tile_offset != nullptr)
      throw Error(ErrorCode::UnsupportedModel, "sparse attention needs head dim 64, 96 or 128");
    launch_generic(a, stream);
    return;
  }
  if (a.kernel != AttentionKernel::Mma && sm90_prefill_supports(a) && sm90_prefill_available()) {
    attention_prefill_sm90(a, stream);
    return;
  }
  if (a.kernel == AttentionKernel::Hopper)
    throw Error(ErrorCode::BadArgument, "the Hopper attention kernel needs an sm_90 GPU, a build with sm_90a code "
                                        "(CMAKE_CUDA_ARCHITECTURES with 90a) and head dim 64, 96 or 128");
  switch (a.head_dim) {
    case 64: launch_prefill<64>(a, stream); break;
    case 96: launch_prefill<96>(a, stream); break;
    default: launch_prefill<128>(a, stream); break;
  }
}

void attention_decode(const AttentionArgs& a, float* partial, int num_sms, cudaStream_t stream) {
  if (a.n != 1) throw Error(ErrorCode::Internal, "attention_decode takes one query row");
  check_args(a);
  if (a.n_heads / a.n_kv_heads > kMaxGroupAll)
    throw Error(ErrorCode::UnsupportedModel, "the CUDA decode kernel supports up to 16 query heads per KV head");
  if (!attention_head_dim_fast(a.head_dim)) {
    launch_generic(a, stream);
    return;
  }
  const int group = a.n_heads / a.n_kv_heads;
  if (a.decode_kernel == DecodeKernel::Auto) {
    if (a.k_q8 == nullptr) {
      launch_decode_mma_hd<false>(a, partial, num_sms, stream);
      return;
    }
    if (q8_rows_aligned(a)) {
      launch_decode_mma_hd<true>(a, partial, num_sms, stream);
      return;
    }
  }
  if (group <= 1) launch_decode_g<1>(a, partial, num_sms, stream);
  else if (group <= 2) launch_decode_g<2>(a, partial, num_sms, stream);
  else if (group <= 4) launch_decode_g<4>(a, partial, num_sms, stream);
  else if (group <= 8) launch_decode_g<8>(a, partial, num_sms, stream);
  else launch_decode_g<16>(a, partial, num_sms, stream);
}

}  // namespace folio::cuda
