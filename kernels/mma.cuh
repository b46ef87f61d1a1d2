// Tensor-core and copy helpers shared by the attention and sparse-estimation kernels (sm_80+):
// cp.async, ldmatrix, mma.sync m16n8k16 bf16 with fp32 accumulate, ex2.approx.
//
// Fragment layout of an m16n8 accumulator d[4] for lane L: rows L / 4 (d[0], d[1]) and L / 4 + 8
// (d[2], d[3]), columns 2 (L % 4) + {0, 1}.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda_ops.h"

namespace folio::cuda {

inline constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem)), "l"(gmem));
}
// 4 bytes (cp.async.ca: the size-4 form; source and destination 4-byte aligned)
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(smem)), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// d += a (16x16, row) * b (16x8, col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x on the SFU, flushing denormals (the online softmax needs nothing finer).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// One online-softmax step for row r of the two rows a thread holds in mma accumulator tiles (row
// lane / 4 in elements 0 and 1, row lane / 4 + 8 in elements 2 and 3; a quad of lanes shares a
// row): the row's scores s (NB tiles of 8 keys, unscaled) become exp2(s x scale_log2 - max), the
// running max m (log2 units) and the thread's partial sum l move on, and the row's output o (D
// tiles of 8 columns) is rescaled. A row with no key yet (max -inf) keeps zeros.
template <int NB, int D>
__device__ __forceinline__ void online_softmax_row(float (&s)[NB][4], float (&o)[D][4], int r, float& m, float& l,
                                                   float scale_log2) {
  float mx = -INFINITY;
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) mx = fmaxf(mx, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  const float m_new = fmaxf(m, mx * scale_log2);
  const float m_use = m_new == -INFINITY ? 0.0f : m_new;
  const float alpha = fast_exp2(m - m_use);
  float sum = 0.0f;
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) {
    s[nb][2 * r] = fast_exp2(fmaf(s[nb][2 * r], scale_log2, -m_use));
    s[nb][2 * r + 1] = fast_exp2(fmaf(s[nb][2 * r + 1], scale_log2, -m_use));
    sum += s[nb][2 * r] + s[nb][2 * r + 1];
  }
  l = l * alpha + sum;  // per-thread partial; reduced across the quad at the end
  m = m_new;
#pragma unroll
  for (int d = 0; d < D; ++d) {
    o[d][2 * r] *= alpha;
    o[d][2 * r + 1] *= alpha;
  }
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// The key tiles one query tile (kQueryTile rows) of head h walks: its list (sparse prefill) or
// every tile up to its last row's position (dense).
struct KeyTiles {
  const int32_t* list = nullptr;
  int count = 0;
  __device__ __forceinline__ int at(int j) const { return list != nullptr ? list[j] : j; }
};
__device__ __forceinline__ KeyTiles key_tiles(const AttentionArgs& a, int h, int qt, int n_qtiles) {
  KeyTiles t;
  if (a.tile_offset != nullptr) {
    const int32_t begin = a.tile_offset[h * (n_qtiles + 1) + qt];
    t.count = a.tile_offset[h * (n_qtiles + 1) + qt + 1] - begin;
    t.list = a.tile_index + begin;
  } else {
    const int64_t last_q = a.pos0 + min((qt + 1) * kQueryTile, a.n) - 1;
    t.count = static_cast<int>(last_q / kKeyTile) + 1;
  }
  return t;
}

template <int HD>
struct Tile {
  static constexpr int kStride = HD + 8;  // padded smem row, in bf16
  static constexpr int kChunks = HD / 8;  // 16-byte pieces per row
  static constexpr size_t kSmemBytes =
      sizeof(__nv_bfloat16) * static_cast<size_t>(kStride) * (kQueryTile + 4 * kKeyTile);
};

}  // namespace folio::cuda
