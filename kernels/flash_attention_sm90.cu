// Flash attention prefill for Hopper (sm_90a): TMA loads, wgmma, a producer warp.
//
// What it computes is exactly what flash_attention.cu's prefill kernel computes (the CPU reference
// is core/cpu/cpu_ops.h attention / core/attention's block-sparse reference): for each query row i
// of a chunk (position pos0 + i) and head h, out[i][h] = softmax(q[i][h] . K[g]^T / sqrt(hd)) V[g]
// over keys 0..pos0+i, g = h / (n_heads / n_kv_heads), reading K and V from the bf16 KV cache
// ([n_kv_heads][capacity][hd]) without copies, and walking either every causal key tile (dense) or
// a per-(head, query tile) list of key tiles (sparse prefill), in the same format.
//
// Structure (one CTA per query tile of 128 rows and head; 288 threads):
//   - warp 8 is the producer: one lane issues TMA loads of the Q tile and, kStages ahead, of the
//     K and V tiles of the list into a ring of shared-memory stages ("full" mbarriers count the
//     bytes in, "empty" mbarriers count the consumers out);
//   - warps 0-7 are two consumer warpgroups of 64 query rows each: S = Q K^T with wgmma from shared
//     memory (m64n64k16), online softmax in registers (causal masking only on tiles that cross
//     the diagonal or the end of the keys), O += P V with P from registers and V from shared memory
//     (m64n{hd}k16, V read MN-major, no transpose copy).
// The layout of every operand in shared memory is the 128-byte swizzle of kernels/hopper.cuh; the
// TMA writes it, descriptors read it.
//
// Traits: head dims 64, 96, 128 (96 pads its second 64-wide column block with zeros through the
// TMA's out-of-bounds fill). Launch: attention_prefill_sm90 (one head-dim switch). Elsewhere (no
// sm_90a code in this build, or another GPU) flash_attention.cu's mma.sync kernel runs.
//
// History (H200, Llama-3.1-8B attention shape: 32 heads, 8 KV heads, hd 128, causal, bf16):
//   v1 (2026-12-04): this file. Producer warp + two consumer warpgroups, 64-key tiles, no
//       ping-pong between the groups yet. Numbers: docs/benchmarks.md.
//   v2 (2026-12-07, H100): hd 64 runs two CTAs per SM (4 stages each, 94 registers): 16K 409 and
//       128K 425 TFLOP/s against the mma.sync kernel's 260 / 281 in the same call (one CTA, 6
//       stages: 326 at 128K on the H200).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>

#include <atomic>
#include <string>

#include "kernels/cuda_util.h"
#include "kernels/flash_attention_sm90.h"
#include "kernels/hopper.cuh"

namespace folio::cuda {

namespace {

template <int HD>
struct Sm90Traits {
  static constexpr int kBlockM = kQueryTile;  // 128 rows: two consumer warpgroups of 64
  static constexpr int kBlockN = kKeyTile;    // 64 keys per tile (the sparse lists' unit)
  static_assert(kBlockN == 64, "the softmax and P.V steps assume 64-key tiles");
  static constexpr int kColBlocks = (HD + 63) / 64;
  static constexpr int kAtom = 64 * 128;  // one column block of 64 rows: 8 KiB
  static constexpr int kQBytes = 2 * kColBlocks * kAtom;
  static constexpr int kTileBytes = kColBlocks * kAtom;  // K or V of one key tile
  // hd 64: two CTAs per SM (at most 112 registers a thread), so one CTA's softmax and barrier waits
  // overlap the other's wgmma; its tiles are small enough for four stages each. Others: one CTA.
  static constexpr int kMinBlocks = HD == 64 ? 2 : 1;
  static constexpr int kStages = HD == 96 ? 6 : 4;
  static constexpr int kConsumers = 256;
  static constexpr int kThreads = kConsumers + 32;
  // + 1024 to align the base, + the barriers
  static constexpr size_t kSmemBytes = 1024 + kQBytes + 2 * kStages * kTileBytes + 8 * (2 * kStages + 1);
};

struct Sm90Maps {
  CUtensorMap q, k, v;
};

#ifdef FOLIO_SM90A
template <int HD>
__device__ __forceinline__ void wgmma_pv(float (&o)[HD / 2], const uint32_t (&p)[4], uint64_t desc) {
  if constexpr (HD == 64) sm90::wgmma_rs_m64n64k16(o, p, desc);
  else if constexpr (HD == 96) sm90::wgmma_rs_m64n96k16(o, p, desc);
  else sm90::wgmma_rs_m64n128k16(o, p, desc);
}
#endif

template <int HD>
__global__ void __launch_bounds__(Sm90Traits<HD>::kThreads, Sm90Traits<HD>::kMinBlocks)
    flash_prefill_sm90_kernel(const __grid_constant__ Sm90Maps maps, AttentionArgs a, int n_qtiles) {
#ifdef FOLIO_SM90A
  using T = Sm90Traits<HD>;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
  unsigned char* sQ = smem;
  auto sK = [&](int s) { return smem + T::kQBytes + 2 * s * T::kTileBytes; };
  auto sV = [&](int s) { return smem + T::kQBytes + (2 * s + 1) * T::kTileBytes; };
  auto* bars = reinterpret_cast<uint64_t*>(smem + T::kQBytes + 2 * T::kStages * T::kTileBytes);
  uint64_t* full = bars;
  uint64_t* empty = bars + T::kStages;
  uint64_t* q_full = bars + 2 * T::kStages;

  const int qt = n_qtiles - 1 - static_cast<int>(blockIdx.x);  // longest tiles first
  const int h = blockIdx.y;
  const int g = h / (a.n_heads / a.n_kv_heads);
  const int i0 = qt * T::kBlockM;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kv_len = a.pos0 + a.n;

  const KeyTiles tiles = key_tiles(a, h, qt, n_qtiles);
  const int n_tiles = tiles.count;
  auto tile_at = [&](int j) { return tiles.at(j); };

  if (threadIdx.x == 0) {
    for (int s = 0; s < T::kStages; ++s) {
      sm90::mbar_init(&full[s], 1);
      sm90::mbar_init(&empty[s], 8);  // one arrival per consumer warp
    }
    sm90::mbar_init(q_full, 1);
    sm90::mbar_init_fence();
  }
  __syncthreads();

  if (warp == 8) {
    // producer
    if (lane == 0) {
      sm90::mbar_expect_tx(q_full, T::kQBytes);
      for (int wg = 0; wg < 2; ++wg)
        for (int cb = 0; cb < T::kColBlocks; ++cb)
          sm90::tma_load_3d(sQ + (wg * T::kColBlocks + cb) * T::kAtom, &maps.q, cb * 64, h, i0 + wg * 64, q_full);
      for (int j = 0; j < n_tiles; ++j) {
        const int s = j % T::kStages;
        const uint32_t use = static_cast<uint32_t>(j / T::kStages);
        if (use > 0) sm90::mbar_wait(&empty[s], (use - 1) & 1);
        sm90::mbar_expect_tx(&full[s], 2 * T::kTileBytes);
        const int key0 = tile_at(j) * T::kBlockN;
        for (int cb = 0; cb < T::kColBlocks; ++cb) {
          sm90::tma_load_3d(sK(s) + cb * T::kAtom, &maps.k, cb * 64, key0, g, &full[s]);
          sm90::tma_load_3d(sV(s) + cb * T::kAtom, &maps.v, cb * 64, key0, g, &full[s]);
        }
      }
    }
    return;
  }

  // consumers: warpgroup wg owns rows wg * 64 .. wg * 64 + 63; warp w of it 16 rows
  const int wg = warp / 4;
  const int warp_row0 = wg * 64 + (warp % 4) * 16;
  const uint32_t q_addr = smem_addr(sQ) + wg * T::kColBlocks * T::kAtom;
  float o[HD / 2];
#pragma unroll
  for (int i = 0; i < HD / 2; ++i) o[i] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  const float scale_log2 = rsqrtf(static_cast<float>(HD)) * kLog2e;
  const int64_t min_qpos = a.pos0 + i0 + wg * 64;

  sm90::mbar_wait(q_full, 0);
  for (int j = 0; j < n_tiles; ++j) {
    const int s = j % T::kStages;
    sm90::mbar_wait(&full[s], static_cast<uint32_t>(j / T::kStages) & 1);
    const int64_t key0 = static_cast<int64_t>(tile_at(j)) * T::kBlockN;
    const uint32_t k_addr = smem_addr(sK(s)), v_addr = smem_addr(sV(s));

    // S = Q K^T (64 rows x 64 keys per warpgroup)
    float sc[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) sc[i] = 0.0f;
    sm90::fence_regs(sc);
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const uint32_t off = (kk / 4) * T::kAtom + (kk % 4) * 32;
      sm90::wgmma_ss_m64n64k16(sc, sm90::smem_desc(q_addr + off, 16, 1024), sm90::smem_desc(k_addr + off, 16, 1024),
                               kk > 0 ? 1 : 0);
    }
    sm90::wgmma_commit();
    sm90::wgmma_wait<0>();
    sm90::fence_regs(sc);

    // mask tiles that cross the diagonal or the end of the keys
    if (key0 + T::kBlockN - 1 > min_qpos || key0 + T::kBlockN > kv_len) {
      const int64_t qpos0 = a.pos0 + i0 + warp_row0 + lane / 4;
#pragma unroll
      for (int nb = 0; nb < 8; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t key = key0 + nb * 8 + (lane % 4) * 2 + (e & 1);
          if (key > qpos0 + 8 * (e / 2) || key >= kv_len) sc[4 * nb + e] = -INFINITY;
        }
    }
    // online softmax: two rows per thread (lane / 4: e = 0, 1; lane / 4 + 8: e = 2, 3); the wgmma
    // accumulators hold the same per-thread layout as eight (scores) or hd / 8 (output) m16n8 tiles
#pragma unroll
    for (int r = 0; r < 2; ++r)
      online_softmax_row(reinterpret_cast<float(&)[8][4]>(sc), reinterpret_cast<float(&)[HD / 8][4]>(o), r, m_run[r],
                         l_run[r], scale_log2);
    // O += P V: P as register A fragments, 16 keys per step
    uint32_t p[4][4];
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      p[t][0] = pack_bf16(sc[8 * t + 0], sc[8 * t + 1]);
      p[t][1] = pack_bf16(sc[8 * t + 2], sc[8 * t + 3]);
      p[t][2] = pack_bf16(sc[8 * t + 4], sc[8 * t + 5]);
      p[t][3] = pack_bf16(sc[8 * t + 6], sc[8 * t + 7]);
    }
    sm90::fence_regs(o);
    sm90::wgmma_fence();
#pragma unroll
    for (int t = 0; t < 4; ++t)
      wgmma_pv<HD>(o, p[t], sm90::smem_desc(v_addr + t * 16 * 128, T::kAtom, 1024));
    sm90::wgmma_commit();
    sm90::wgmma_wait<0>();
    sm90::fence_regs(o);
    __syncwarp();
    if (lane == 0) sm90::mbar_arrive(&empty[s]);
  }

  // normalise and write
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const int row = i0 + warp_row0 + lane / 4 + 8 * r;
    if (row < a.n) {
      __nv_bfloat16* dst = reinterpret_cast<__nv_bfloat16*>(a.out) + (static_cast<int64_t>(row) * a.n_heads + h) * HD;
#pragma unroll
      for (int d = 0; d < HD / 8; ++d) {
        const int col = d * 8 + (lane % 4) * 2;
        *reinterpret_cast<__nv_bfloat162*>(dst + col) =
            __floats2bfloat162_rn(o[4 * d + 2 * r] * inv, o[4 * d + 2 * r + 1] * inv);
      }
    }
  }
#else
  (void)maps;
  (void)a;
  (void)n_qtiles;
  __trap();  // the host never launches this without sm_90a code (sm90_prefill_available)
#endif
}

__global__ void sm90a_probe_kernel(int* out) {
#ifdef FOLIO_SM90A
  *out = 1;
#else
  *out = 0;
#endif
}

// cuTensorMapEncodeTiled through the runtime's driver entry point (no link to libcuda).
PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      p = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  }();
  return fn;
}

// A 3-d bf16 tensor (dim0 contiguous) read in boxes of box0 x box1 x 1 with the 128-byte swizzle.
CUtensorMap make_map(const void* base, uint64_t d0, uint64_t d1, uint64_t d2, uint64_t stride1_bytes,
                     uint64_t stride2_bytes, uint32_t box0, uint32_t box1, uint32_t box2) {
  CUtensorMap m{};
  const cuuint64_t dims[3] = {d0, d1, d2};
  const cuuint64_t strides[2] = {stride1_bytes, stride2_bytes};
  const cuuint32_t box[3] = {box0, box1, box2};
  const cuuint32_t elem[3] = {1, 1, 1};
  const CUresult r = encode_fn()(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dims, strides, box, elem,
                                 CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                 CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) throw Error(ErrorCode::Internal, "cuTensorMapEncodeTiled failed: " + std::to_string(static_cast<int>(r)));
  return m;
}

template <int HD>
void launch_sm90(const AttentionArgs& a, cudaStream_t stream) {
  using T = Sm90Traits<HD>;
  const int n_qtiles = (a.n + T::kBlockM - 1) / T::kBlockM;
  const int64_t kv_len = a.pos0 + a.n;
  Sm90Maps maps;
  maps.q = make_map(a.q, HD, a.n_heads, a.n, HD * 2, static_cast<uint64_t>(a.n_heads) * HD * 2, 64, 1, 64);
  maps.k = make_map(a.k_cache, HD, kv_len, a.n_kv_heads, HD * 2, static_cast<uint64_t>(a.capacity) * HD * 2, 64, 64, 1);
  maps.v = make_map(a.v_cache, HD, kv_len, a.n_kv_heads, HD * 2, static_cast<uint64_t>(a.capacity) * HD * 2, 64, 64, 1);
  static std::atomic<uint64_t> configured{0};
  allow_shared_memory(reinterpret_cast<const void*>(flash_prefill_sm90_kernel<HD>), T::kSmemBytes, configured);
  dim3 grid(static_cast<unsigned>(n_qtiles), static_cast<unsigned>(a.n_heads));
  flash_prefill_sm90_kernel<HD><<<grid, T::kThreads, T::kSmemBytes, stream>>>(maps, a, n_qtiles);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

bool sm90_prefill_available() {
  static std::atomic<int> state[64];  // per device: 0 not yet probed, 1 no, 2 yes
  int dev = 0;
  FOLIO_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) return false;
  if (const int known = state[dev].load(); known != 0) return known == 2;
  cudaDeviceProp prop{};
  FOLIO_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  int ok = 0;
  if (prop.major == 9 && encode_fn() != nullptr) {
    int* d = nullptr;
    FOLIO_CUDA_CHECK(cudaMalloc(&d, sizeof(int)));
    sm90a_probe_kernel<<<1, 1>>>(d);
    if (cudaGetLastError() == cudaSuccess)  // else no image for this device
      FOLIO_CUDA_CHECK(cudaMemcpy(&ok, d, sizeof(int), cudaMemcpyDeviceToHost));
    FOLIO_CUDA_CHECK(cudaFree(d));
  }
  state[dev].store(ok == 1 ? 2 : 1);
  return ok == 1;
}

bool sm90_prefill_supports(const AttentionArgs& a) {
  const bool aligned = reinterpret_cast<uintptr_t>(a.q) % 16 == 0 && reinterpret_cast<uintptr_t>(a.k_cache) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(a.v_cache) % 16 == 0;
  return aligned && (a.head_dim == 64 || a.head_dim == 96 || a.head_dim == 128);
}

void attention_prefill_sm90(const AttentionArgs& a, cudaStream_t stream) {
  switch (a.head_dim) {
    case 64: launch_sm90<64>(a, stream); break;
    case 96: launch_sm90<96>(a, stream); break;
    default: launch_sm90<128>(a, stream); break;
  }
}

}  // namespace folio::cuda
