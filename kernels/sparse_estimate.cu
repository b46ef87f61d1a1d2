#include "kernels/sparse_estimate.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>

#include "core/common/error.h"
#include "kernels/cuda_util.h"
#include "kernels/gemm.h"
#include "kernels/hopper.cuh"
#include "kernels/mma.cuh"

namespace folio::cuda {

namespace {

static_assert(sizeof(DeviceBudget) == 48 && sizeof(HeadResult) == 24, "memory_plan.cpp counts these sizes");

// Score rows of one KV-head group, padded so that every group's slice starts 256-byte aligned.
int64_t group_stride(int64_t rows_per_group, int64_t kv_len) { return (rows_per_group * kv_len + 63) / 64 * 64; }

int64_t n_ktiles_of(int64_t keys) { return (keys + kKeyTile - 1) / kKeyTile; }

// ---- step 1: sample sums -------------------------------------------------------------------

// qs[h][s][d] = q[n - rows + s][h][d]
__global__ void gather_sample_kernel(const bf16* q, int n, int n_heads, int hd, int rows, bf16* qs) {
  const int64_t total = static_cast<int64_t>(n_heads) * rows * hd / 8;  // 16-byte pieces
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = i * 8;
    const int d = static_cast<int>(e % hd);
    const int64_t hs = e / hd;
    const int s = static_cast<int>(hs % rows), h = static_cast<int>(hs / rows);
    const int64_t src = (static_cast<int64_t>(n - rows + s) * n_heads + h) * hd + d;
    *reinterpret_cast<uint4*>(qs + e) = *reinterpret_cast<const uint4*>(q + src);
  }
}

// One block per score row: lse = log(sum_j exp(score_j * scale)) over the row's causal keys.
__device__ __forceinline__ const float* score_row(const float* scores, int r, int rows_per_group, int64_t stride,
                                                  int64_t kv_len) {
  return scores + static_cast<int64_t>(r / rows_per_group) * stride + static_cast<int64_t>(r % rows_per_group) * kv_len;
}

constexpr int kLseThreads = 512;
constexpr int kUnroll = 8;  // loads in flight per thread (the row and column kernels are latency bound otherwise)

__global__ void __launch_bounds__(kLseThreads) row_lse_kernel(const float* scores, int64_t kv_len, int rows,
                                                              int rows_per_group, int64_t stride, int64_t last_row_pos,
                                                              int head0, float scale, float* lse) {
  const int r = blockIdx.x;  // row within the pass: head (head0 + r / rows), sample s = r % rows
  const int s = r % rows, h = head0 + r / rows;
  const int64_t p = last_row_pos - (rows - 1) + s;  // the row's position: keys 0..p
  const float* row = score_row(scores, r, rows_per_group, stride, kv_len);
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = threadIdx.x; j0 <= p; j0 += static_cast<int64_t>(kUnroll) * kLseThreads) {
    float x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t j = j0 + static_cast<int64_t>(u) * kLseThreads;
      x[u] = j <= p ? row[j] * scale : -INFINITY;
    }
    float mx = m;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) mx = fmaxf(mx, x[u]);
    float add = 0.0f;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) add += x[u] == -INFINITY ? 0.0f : __expf(x[u] - mx);
    l = (m == -INFINITY ? 0.0f : l * __expf(m - mx)) + add;
    m = mx;
  }
  __shared__ float sm[32], sl[32];
  for (int o = 16; o > 0; o /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), l2 = __shfl_xor_sync(0xffffffffu, l, o);
    const float mn = fmaxf(m, m2);
    l = (m == -INFINITY ? 0.0f : l * __expf(m - mn)) + (m2 == -INFINITY ? 0.0f : l2 * __expf(m2 - mn));
    m = mn;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  if (lane == 0) {
    sm[warp] = m;
    sl[warp] = l;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float M = -INFINITY, Lsum = 0.0f;
    for (int w = 0; w < warps; ++w) M = fmaxf(M, sm[w]);
    for (int w = 0; w < warps; ++w)
      if (sm[w] != -INFINITY) Lsum += sl[w] * expf(sm[w] - M);
    lse[h * rows + s] = M + logf(Lsum);
  }
}

constexpr int kColKeys = 256;  // keys per block of the column kernel

// grid (key blocks, heads of the pass): probabilities of the sample rows, summed per key (col: a
// thread per key) and per distance (diag: a thread per distance of the block, over the same
// scores, which the first pass left in L1), then one global atomic per distance and block.
__global__ void __launch_bounds__(kColKeys) col_diag_kernel(const float* scores, int64_t kv_len, int rows,
                                                            int rows_per_group, int64_t stride, int64_t last_row_pos,
                                                            int head0, float scale, const float* lse, float* col,
                                                            float* diag, int64_t capacity) {
  __shared__ float slse[kMaxSampleRows];
  const int hh = blockIdx.y, h = head0 + hh;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kColKeys;
  const int64_t j_end = min(j0 + kColKeys, kv_len);
  for (int i = threadIdx.x; i < rows; i += blockDim.x) slse[i] = lse[h * rows + i];
  __syncthreads();
  const int64_t p_first = last_row_pos - (rows - 1);
  const float* base = score_row(scores, hh * rows, rows_per_group, stride, kv_len);
  const int64_t j = j0 + threadIdx.x;
  if (j < j_end) {
    // rows s with p_first + s >= j see key j
    float c = 0.0f;
    const int s_begin = static_cast<int>(max(int64_t{0}, j - p_first));
    for (int s0 = s_begin; s0 < rows; s0 += kUnroll) {
      float x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) x[u] = s0 + u < rows ? base[static_cast<int64_t>(s0 + u) * kv_len + j] : 0.0f;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (s0 + u < rows) c += __expf(x[u] * scale - slse[s0 + u]);
    }
    col[static_cast<int64_t>(h) * capacity + j] = c;
  }
  // distances d = p_first + s - j of this block's keys: d0 + idx for idx in [0, kColKeys + rows - 1)
  const int64_t d0 = p_first - (j0 + kColKeys - 1);
  for (int idx = threadIdx.x; idx < kColKeys + rows - 1; idx += blockDim.x) {
    const int64_t d = d0 + idx;
    if (d < 0 || d >= kv_len) continue;
    // rows s whose key p_first + s - d lies in [j0, j_end)
    const int s_lo = static_cast<int>(max(int64_t{0}, j0 - p_first + d));
    const int s_hi = static_cast<int>(min(static_cast<int64_t>(rows) - 1, j_end - 1 - p_first + d));
    float sum = 0.0f;
    for (int s = s_lo; s <= s_hi; ++s)
      sum += __expf(base[static_cast<int64_t>(s) * kv_len + (p_first + s - d)] * scale - slse[s]);
    if (sum != 0.0f) atomicAdd(&diag[static_cast<int64_t>(h) * capacity + d], sum);
  }
}

// ---- step 1, fused: scores on the tensor cores, never written ---------------------------------
// For up to 64 sample rows per head (4 warps x 16 rows). Grid (key splits, heads / HP): each CTA
// takes HP query heads of one KV group (2 where the group size is even) and walks kFusedSplit keys
// in 64-key tiles (K double-buffered with cp.async); each key fragment loaded from shared memory
// feeds the products of all HP heads. Pass 1 keeps the online max and sum of each row and writes
// them per split; a merge (one warp per row) gives each row's log-sum-exp. Pass 2 recomputes the
// scores and turns them into probabilities: column sums (col: each key belongs to one CTA) from
// the registers through warp shuffles and a shared row of partial sums per warp; the 127 diagonals
// of each head's shared probability tile (every thread 32 rows) into a per-CTA distance
// accumulator per half of the rows, added to diag with one global atomic per distance.
constexpr int kFusedRows = 64;
constexpr int kFusedSplit = 1024;  // keys per CTA
constexpr int kFusedThreads = 128;

template <int HD>
struct FusedSmem {
  static constexpr int kStride = HD + 8;  // padded bf16 rows (conflict-free ldmatrix)
  static constexpr size_t kK = sizeof(__nv_bfloat16) * kKeyTile * kStride;
};

template <int HD, int THREADS = kFusedThreads>
__device__ __forceinline__ void load_k_tile(__nv_bfloat16* dst, const bf16* head, int64_t row0, int64_t limit) {
  constexpr int C = HD / 8;
  for (int i = threadIdx.x; i < kKeyTile * C; i += THREADS) {
    const int r = i / C, c = i % C;
    __nv_bfloat16* sp = dst + r * FusedSmem<HD>::kStride + c * 8;
    if (row0 + r < limit) cp_async16(sp, head + (row0 + r) * HD + c * 8);
    else *reinterpret_cast<uint4*>(sp) = make_uint4(0, 0, 0, 0);
  }
}

// The warp's query fragments (mma A layout) for its 16 rows of sQ, loaded once per kernel.
template <int HD>
__device__ __forceinline__ void load_q_frags(const __nv_bfloat16* sQ, int warp, int lane, uint32_t (&qa)[HD / 16][4]) {
  constexpr int S = FusedSmem<HD>::kStride;
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) ldmatrix_x4(qa[kk], sQ + (warp * 16 + (lane % 16)) * S + kk * 16 + (lane / 16) * 8);
}

struct FusedArgs {
  const bf16* q;        // [n][n_heads][hd]
  const bf16* k_cache;  // [n_kv_heads][capacity][hd]
  int64_t capacity;
  int n;
  int64_t pos0;
  int n_heads, n_kv_heads, rows, splits;
  float* partial;  // [n_heads][64][splits][2]: max, sum (log2 domain)
  const float* lse2;  // [n_heads][64] (log2 domain); rows >= rows are not written (stale): masked by every reader
  float* col;
  float* diag;
  const DeviceBudget* budgets;  // [n_heads]: Block-Cluster heads need no sums
};

// The sample kernel's shared memory for HP query heads of one KV group per CTA. Region 0 holds the
// heads' sample queries until every warp has its fragments, then (pass 2) their probability tiles;
// then two K tiles; then per head two distance accumulators (rows 0-31 and 32-63) and the warps'
// column sums.
template <int HD, int HP>
struct SampleSmem {
  static constexpr int kStride = FusedSmem<HD>::kStride;
  static constexpr int kP = kKeyTile + 8;  // padded fp32 probability rows: conflict-free float2 stores
  static constexpr int kSpan = kFusedSplit + kFusedRows;  // distances one CTA can touch
  static constexpr size_t kQ = sizeof(__nv_bfloat16) * HP * kFusedRows * kStride;
  static constexpr size_t kPBytes = sizeof(float) * HP * kFusedRows * kP;
  static constexpr size_t kRegion0 = kQ > kPBytes ? kQ : kPBytes;
  // a K tile: padded rows (ldmatrix) or, on sm_90a, the 128-byte swizzle of kernels/hopper.cuh that
  // wgmma reads (column blocks of 64 rows x 128 bytes); room for either, 1,024-byte aligned
  static constexpr size_t kKSwizzled = static_cast<size_t>((HD + 63) / 64) * kKeyTile * 128;
  static constexpr size_t kK = ((FusedSmem<HD>::kK > kKSwizzled ? FusedSmem<HD>::kK : kKSwizzled) + 1023) / 1024 * 1024;
  static_assert(kRegion0 % 1024 == 0, "the K tiles start 1,024-byte aligned");
  static constexpr size_t kStatsBytes = kRegion0 + 2 * kK;
  static constexpr size_t kSumsBytes = kStatsBytes + sizeof(float) * HP * (2 * kSpan + (kFusedThreads / 32) * kKeyTile);
};

// Scores of the warp's 16 query rows of each of HP heads against the 64 keys in sK: every key
// fragment read from shared memory feeds HP products.
template <int HD, int HP>
__device__ __forceinline__ void tile_scores_heads(const uint32_t (&qa)[HP][HD / 16][4], const __nv_bfloat16* sK,
                                                  int lane, float (&sc)[HP][kKeyTile / 8][4]) {
  constexpr int S = FusedSmem<HD>::kStride;
#pragma unroll
  for (int hp = 0; hp < HP; ++hp)
#pragma unroll
    for (int nb = 0; nb < kKeyTile / 8; ++nb) sc[hp][nb][0] = sc[hp][nb][1] = sc[hp][nb][2] = sc[hp][nb][3] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
    for (int nb = 0; nb < kKeyTile / 16; ++nb) {
      uint32_t b[4];
      const int key = nb * 16 + (lane % 8) + (lane / 16) * 8;
      const int c = kk * 16 + ((lane / 8) % 2) * 8;
      ldmatrix_x4(b, sK + key * S + c);
#pragma unroll
      for (int hp = 0; hp < HP; ++hp) {
        mma_bf16(sc[hp][2 * nb], qa[hp][kk], b[0], b[1]);
        mma_bf16(sc[hp][2 * nb + 1], qa[hp][kk], b[2], b[3]);
      }
    }
  }
}

// One head's scores (the pooled kernel): sc[nb][e] is row warp * 16 + lane / 4 + 8 * (e / 2), key
// nb * 8 + (lane % 4) * 2 + (e & 1).
template <int HD>
__device__ __forceinline__ void tile_scores_q(const uint32_t (&qa)[HD / 16][4], const __nv_bfloat16* sK, int lane,
                                              float (&sc)[kKeyTile / 8][4]) {
  tile_scores_heads<HD, 1>(reinterpret_cast<const uint32_t(&)[1][HD / 16][4]>(qa), sK, lane,
                           reinterpret_cast<float(&)[1][kKeyTile / 8][4]>(sc));
}

// The sample kernel's K tiles and scores. On sm_90a one warpgroup (the CTA's 4 warps, 64 sample
// rows) multiplies with wgmma: the query fragments stay in registers (the A operand of m64n64k16 is
// the mma.sync fragment of each warp's 16 rows) and each K tile is read from shared memory once per
// warpgroup, not once per warp; the accumulator has the layout of tile_scores_heads' sc. Elsewhere
// the mma.sync path above.
template <int HD>
__device__ __forceinline__ void sample_load_k(__nv_bfloat16* dst, const bf16* head, int64_t row0, int64_t limit) {
#ifdef FOLIO_SM90A
  constexpr int C = HD / 8;  // 16-byte chunks per row; chunk c of row r at block c / 8, slot (c % 8) ^ (r % 8)
  for (int i = threadIdx.x; i < kKeyTile * C; i += kFusedThreads) {
    const int r = i / C, c = i % C;
    auto* sp = reinterpret_cast<unsigned char*>(dst) + (c / 8) * (kKeyTile * 128) + r * 128 + ((c % 8) ^ (r % 8)) * 16;
    if (row0 + r < limit) cp_async16(sp, head + (row0 + r) * HD + c * 8);
    else *reinterpret_cast<uint4*>(sp) = make_uint4(0, 0, 0, 0);
  }
#else
  load_k_tile<HD>(dst, head, row0, limit);
#endif
}

// Between a K tile's arrival (cp.async and zero stores: the generic proxy) and the barrier before
// wgmma reads it (the async proxy).
__device__ __forceinline__ void sample_k_fence() {
#ifdef FOLIO_SM90A
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

template <int HD, int HP>
__device__ __forceinline__ void sample_scores(const uint32_t (&qa)[HP][HD / 16][4], const __nv_bfloat16* sK, int lane,
                                              float (&sc)[HP][kKeyTile / 8][4]) {
#ifdef FOLIO_SM90A
  using Acc = float(&)[kKeyTile / 2];
#pragma unroll
  for (int hp = 0; hp < HP; ++hp) {
#pragma unroll
    for (int nb = 0; nb < kKeyTile / 8; ++nb) sc[hp][nb][0] = sc[hp][nb][1] = sc[hp][nb][2] = sc[hp][nb][3] = 0.0f;
    sm90::fence_regs(reinterpret_cast<Acc>(sc[hp]));
  }
  sm90::wgmma_fence();
  const uint32_t k_addr = smem_addr(sK);
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    const uint64_t desc = sm90::smem_desc(k_addr + (kk / 4) * (kKeyTile * 128) + (kk % 4) * 32, 16, 1024);
#pragma unroll
    for (int hp = 0; hp < HP; ++hp) sm90::wgmma_rs_m64n64k16<0>(reinterpret_cast<Acc>(sc[hp]), qa[hp][kk], desc);
  }
  sm90::wgmma_commit();
  sm90::wgmma_wait<0>();
#pragma unroll
  for (int hp = 0; hp < HP; ++hp) sm90::fence_regs(reinterpret_cast<Acc>(sc[hp]));
#else
  tile_scores_heads<HD, HP>(qa, sK, lane, sc);
#endif
}

// Sample sums, both passes, for HP query heads of one KV group per CTA (grid: key splits x
// n_heads / HP). kStack (HP 1, at most 32 sample rows a head): two heads of the group share the 64
// rows of one product, head h0 in rows 0-31 (warps 0-1) and h0 + 1 in rows 32-63 (warps 2-3), so
// each K tile feeds one m64 product for both; row r is head h0 + r / 32's sample r % 32. Column
// sums are then per pair of warps, distance sums per half of the rows (the halves of the
// unstacked kernel), and every sum is the one the unstacked kernel gives for that head. Pass 1 (kSums false): each row's running max and sum per split into `partial`.
// Pass 2: probabilities from the merged log-sum-exp; column sums through registers and warp
// shuffles (written per key), distance sums through the shared probability tile (one global
// atomic per distance and CTA).
template <int HD, bool kSums, int HP, bool kStack>
__global__ void __launch_bounds__(kFusedThreads) fused_sample_kernel(FusedArgs a) {
  static_assert(!kStack || HP == 1, "a stacked CTA holds two heads in one product");
  constexpr int RH = kStack ? kFusedRows / 2 : kFusedRows;  // row slots a head
  constexpr int NH = kStack ? 2 : HP;                        // heads a CTA
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  using SM = SampleSmem<HD, HP>;
  constexpr int S = SM::kStride;
  auto* sQ = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [HP][64][S]
  auto sK = [&](int b) { return reinterpret_cast<__nv_bfloat16*>(smem_raw + SM::kRegion0 + b * SM::kK); };
  float* sP = reinterpret_cast<float*>(smem_raw);  // [HP][64][kP], over sQ once the fragments are loaded
  float* sD = reinterpret_cast<float*>(smem_raw + SM::kStatsBytes);  // [HP][2][kSpan]
  float* sCol = sD + HP * 2 * SM::kSpan;  // [HP][warps][64]
  const int split = blockIdx.x, h0 = blockIdx.y * NH;
  bool any = false;
#pragma unroll
  for (int hp = 0; hp < NH; ++hp) any |= a.budgets[h0 + hp].pattern != 2;
  if (!any) return;  // Block-Cluster heads need no sums
  const int g = h0 / (a.n_heads / a.n_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kv_len = a.pos0 + a.n;
  const int64_t p_first = kv_len - a.rows;  // position of sample row 0
  const int64_t kb = static_cast<int64_t>(split) * kFusedSplit;
  const int64_t ke = min(kb + kFusedSplit, kv_len);
  const int n_tiles = static_cast<int>((ke - kb + kKeyTile - 1) / kKeyTile);
  const bf16* k_head = a.k_cache + static_cast<int64_t>(g) * a.capacity * HD;
  const float scale_log2 = rsqrtf(static_cast<float>(HD)) * kLog2e;

  // Q: sample rows of each head (slots >= a.rows are zeros and masked)
  for (int i = threadIdx.x; i < HP * kFusedRows * (HD / 8); i += kFusedThreads) {
    const int hp = i / (kFusedRows * (HD / 8)), r = (i / (HD / 8)) % kFusedRows, c = i % (HD / 8);
    const int head = h0 + hp + r / RH, slot = r % RH;
    __nv_bfloat16* sp = sQ + (hp * kFusedRows + r) * S + c * 8;
    if (slot < a.rows)
      cp_async16(sp, a.q + (static_cast<int64_t>(a.n - a.rows + slot) * a.n_heads + head) * HD + c * 8);
    else
      *reinterpret_cast<uint4*>(sp) = make_uint4(0, 0, 0, 0);
  }
  if (kSums) {
    // each accumulator covers d in [p_first - (ke - 1), p_first + 63 - kb]: at most kFusedSplit + 63 entries
    for (int i = threadIdx.x; i < HP * 2 * SM::kSpan; i += kFusedThreads) sD[i] = 0.0f;
  }
  if (n_tiles > 0) sample_load_k<HD>(sK(0), k_head, kb, ke);
  cp_async_commit();
  const int r_lo = warp * 16 + lane / 4;  // this thread's rows: r_lo and r_lo + 8
  const int hw = r_lo / RH;               // stacked: the warp's head in the pair (else 0)
  const int s_lo = r_lo % RH;             // the rows' sample slots: s_lo and s_lo + 8
  float m_run[HP][2], l_run[HP][2], lse_row[HP][2];
#pragma unroll
  for (int hp = 0; hp < HP; ++hp)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      m_run[hp][e] = -INFINITY;
      l_run[hp][e] = 0.0f;
      lse_row[hp][e] = kSums ? a.lse2[(h0 + hp + hw) * kFusedRows + s_lo + 8 * e] : 0.0f;
    }

  uint32_t qa[HP][HD / 16][4];
  for (int t = 0; t < n_tiles; ++t) {
    const int buf = t & 1;
    const int64_t key0 = kb + static_cast<int64_t>(t) * kKeyTile;
    if (t + 1 < n_tiles) sample_load_k<HD>(sK(buf ^ 1), k_head, key0 + kKeyTile, ke);
    cp_async_commit();
    cp_async_wait<1>();
    sample_k_fence();
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int hp = 0; hp < HP; ++hp) load_q_frags<HD>(sQ + hp * kFusedRows * S, warp, lane, qa[hp]);
      if (kSums) __syncthreads();  // sP overwrites sQ
    }
    float sc[HP][kKeyTile / 8][4];
    sample_scores<HD, HP>(qa, sK(buf), lane, sc);
    // causal and range masks: row r sees keys <= p_first + r; rows >= a.rows see nothing (a tile
    // every sample row sees whole needs none)
    const bool whole = a.rows == RH && key0 + kKeyTile <= ke && key0 + kKeyTile - 1 <= p_first;
#pragma unroll
    for (int nb = 0; nb < kKeyTile / 8 && !whole; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = s_lo + 8 * (e / 2);
        const int64_t key = key0 + nb * 8 + (lane % 4) * 2 + (e & 1);
        if (r >= a.rows || key > p_first + r || key >= ke) {
#pragma unroll
          for (int hp = 0; hp < HP; ++hp) sc[hp][nb][e] = -INFINITY;
        }
      }
    if (!kSums) {
#pragma unroll
      for (int hp = 0; hp < HP; ++hp)
#pragma unroll
        for (int e2 = 0; e2 < 2; ++e2) {
          float mx = -INFINITY;
#pragma unroll
          for (int nb = 0; nb < kKeyTile / 8; ++nb) mx = fmaxf(mx, fmaxf(sc[hp][nb][2 * e2], sc[hp][nb][2 * e2 + 1]));
          mx *= scale_log2;
          const float m_new = fmaxf(m_run[hp][e2], mx);
          if (m_new == -INFINITY) continue;
          float sum = 0.0f;
#pragma unroll
          for (int nb = 0; nb < kKeyTile / 8; ++nb)
            sum += fast_exp2(fmaf(sc[hp][nb][2 * e2], scale_log2, -m_new)) +
                   fast_exp2(fmaf(sc[hp][nb][2 * e2 + 1], scale_log2, -m_new));
          l_run[hp][e2] = (m_run[hp][e2] == -INFINITY ? 0.0f : l_run[hp][e2] * fast_exp2(m_run[hp][e2] - m_new)) + sum;
          m_run[hp][e2] = m_new;
        }
    } else {
      // probabilities: into the shared tile (for the distances) and, summed over the thread's two
      // rows and then over the warp's eight row groups (lanes with the same lane % 4), the warp's
      // column sums
#pragma unroll
      for (int hp = 0; hp < HP; ++hp) {
        float* sPh = sP + hp * kFusedRows * SM::kP;
        float cs[kKeyTile / 8][2];
#pragma unroll
        for (int nb = 0; nb < kKeyTile / 8; ++nb) {
#pragma unroll
          for (int e = 0; e < 4; ++e)
            sc[hp][nb][e] = sc[hp][nb][e] == -INFINITY ? 0.0f
                                                       : fast_exp2(fmaf(sc[hp][nb][e], scale_log2, -lse_row[hp][e / 2]));
          // rows r_lo and r_lo + 8, keys c and c + 1: one 8-byte store each
          const int c = nb * 8 + (lane % 4) * 2;
          *reinterpret_cast<float2*>(sPh + r_lo * SM::kP + c) = make_float2(sc[hp][nb][0], sc[hp][nb][1]);
          *reinterpret_cast<float2*>(sPh + (r_lo + 8) * SM::kP + c) = make_float2(sc[hp][nb][2], sc[hp][nb][3]);
          cs[nb][0] = sc[hp][nb][0] + sc[hp][nb][2];
          cs[nb][1] = sc[hp][nb][1] + sc[hp][nb][3];
        }
#pragma unroll
        for (int o = 4; o < 32; o *= 2)
#pragma unroll
          for (int nb = 0; nb < kKeyTile / 8; ++nb) {
            cs[nb][0] += __shfl_xor_sync(0xffffffffu, cs[nb][0], o);
            cs[nb][1] += __shfl_xor_sync(0xffffffffu, cs[nb][1], o);
          }
        if (lane < 4) {
          float* sc_out = sCol + (hp * (kFusedThreads / 32) + warp) * kKeyTile;
#pragma unroll
          for (int nb = 0; nb < kKeyTile / 8; ++nb) {
            sc_out[nb * 8 + lane * 2] = cs[nb][0];
            sc_out[nb * 8 + lane * 2 + 1] = cs[nb][1];
          }
        }
      }
      __syncthreads();
      if constexpr (kStack) {
        // thread t: head h0 + t / 64 (warps 2 (t / 64) and 2 (t / 64) + 1), key t % 64
        const int hs = threadIdx.x / kKeyTile, kt = threadIdx.x % kKeyTile;
        const int64_t key = key0 + kt;
        const float c = sCol[(2 * hs) * kKeyTile + kt] + sCol[(2 * hs + 1) * kKeyTile + kt];
        if (key < ke) a.col[static_cast<int64_t>(h0 + hs) * a.capacity + key] = c;
      } else if (threadIdx.x < kKeyTile) {
        const int64_t key = key0 + threadIdx.x;
#pragma unroll
        for (int hp = 0; hp < HP; ++hp) {
          float c = 0.0f;
#pragma unroll
          for (int w = 0; w < kFusedThreads / 32; ++w) c += sCol[(hp * (kFusedThreads / 32) + w) * kKeyTile + threadIdx.x];
          if (key < ke) a.col[static_cast<int64_t>(h0 + hp) * a.capacity + key] = c;
        }
      }
      // diagonals: q = s - c + 63 in [0, 126] for sample slot s (stacked: r - r0; else r); distance
      // d = p_first - key0 + q - 63. Thread (half, tt) sums its half's rows for q = tt and
      // q = tt + 64 (32 rows in all) into its half's accumulator, at index d - (p_first - (ke - 1)).
      {
        const int half = threadIdx.x / 64, tt = threadIdx.x % 64;
        const int r0 = half * (kFusedRows / 2), r1 = r0 + kFusedRows / 2;
        const int64_t idx0 = (ke - 1 - key0) - (kKeyTile - 1);
#pragma unroll
        for (int hp = 0; hp < HP; ++hp) {
          const float* sPh = sP + hp * kFusedRows * SM::kP;
          float* acc = sD + (hp * 2 + half) * SM::kSpan;
          // 32 rows each, unrolled with four accumulators (a lane whose diagonal misses a row skips
          // its load; the warp issues the same loads as a loop over its longest diagonal)
          {
            const int q = tt;  // rows r0..min(r1 - 1, q)
            float s4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int j = 0; j < kFusedRows / 2; ++j) {
              const int r = r0 + j, sl = kStack ? j : r;
              if (sl <= q) s4[j % 4] += sPh[r * SM::kP + sl - q + kKeyTile - 1];
            }
            const float sum = (s4[0] + s4[1]) + (s4[2] + s4[3]);
            if (idx0 + q >= 0 && sum != 0.0f) acc[idx0 + q] += sum;
          }
          if (tt < kKeyTile - 1) {
            const int q = tt + kKeyTile;  // rows max(r0, q - 63)..r1 - 1, walked down so the warp reads one row at a time
            float s4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int j = 0; j < kFusedRows / 2; ++j) {
              const int r = r1 - 1 - j, sl = kStack ? r - r0 : r;
              if (sl >= q - (kKeyTile - 1)) s4[j % 4] += sPh[r * SM::kP + sl - q + kKeyTile - 1];
            }
            const float sum = (s4[0] + s4[1]) + (s4[2] + s4[3]);
            if (idx0 + q >= 0 && sum != 0.0f) acc[idx0 + q] += sum;
          }
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();
  if (!kSums) {
    // the quad's four threads hold parts of the same two rows
#pragma unroll
    for (int hp = 0; hp < HP; ++hp)
#pragma unroll
      for (int e2 = 0; e2 < 2; ++e2) {
        float m = m_run[hp][e2], l = l_run[hp][e2];
        for (int o = 1; o <= 2; o *= 2) {
          const float m2 = __shfl_xor_sync(0xffffffffu, m, o), l2 = __shfl_xor_sync(0xffffffffu, l, o);
          const float mn = fmaxf(m, m2);
          l = (m == -INFINITY ? 0.0f : l * fast_exp2(m - mn)) + (m2 == -INFINITY ? 0.0f : l2 * fast_exp2(m2 - mn));
          m = mn;
        }
        if (lane % 4 == 0) {
          float* pp = a.partial + ((static_cast<int64_t>(h0 + hp + hw) * kFusedRows + s_lo + 8 * e2) * a.splits + split) * 2;
          pp[0] = m;
          pp[1] = l;
        }
      }
  } else {
    const int64_t d_lo = p_first - (ke - 1);
    const int span = static_cast<int>(ke - kb) + kFusedRows - 1;
    if constexpr (kStack) {
      // half h of the rows is head h0 + h
      for (int hs = 0; hs < 2; ++hs)
        for (int i = threadIdx.x; i < span; i += kFusedThreads) {
          const int64_t d = d_lo + i;
          const float v = sD[hs * SM::kSpan + i];
          if (d >= 0 && d < kv_len && v != 0.0f) atomicAdd(&a.diag[static_cast<int64_t>(h0 + hs) * a.capacity + d], v);
        }
    } else {
#pragma unroll
      for (int hp = 0; hp < HP; ++hp)
        for (int i = threadIdx.x; i < span; i += kFusedThreads) {
          const int64_t d = d_lo + i;
          const float v = sD[hp * 2 * SM::kSpan + i] + sD[(hp * 2 + 1) * SM::kSpan + i];
          if (d >= 0 && d < kv_len && v != 0.0f) atomicAdd(&a.diag[static_cast<int64_t>(h0 + hp) * a.capacity + d], v);
        }
    }
  }
}

// lse2[h][r] = log2-sum-exp2 of row r over the splits' (max, sum): one warp per row.
__device__ __forceinline__ void combine_max_sum(float& m, float& l, float m2, float l2) {
  if (m2 == -INFINITY) return;
  const float mn = fmaxf(m, m2);
  l = (m == -INFINITY ? 0.0f : l * exp2f(m - mn)) + l2 * exp2f(m2 - mn);
  m = mn;
}

constexpr int kMergeThreads = 256;

__global__ void __launch_bounds__(kMergeThreads) fused_merge_kernel(const float* partial, int splits, int n_heads,
                                                                   int rows, float* lse2) {
  const int i = (blockIdx.x * kMergeThreads + threadIdx.x) / 32, lane = threadIdx.x % 32;  // i = h * 64 + r
  if (i >= n_heads * kFusedRows || i % kFusedRows >= rows) return;  // rows past a.rows: never read
  const float* p = partial + static_cast<int64_t>(i) * splits * 2;
  float m = -INFINITY, l = 0.0f;
  for (int s = lane; s < splits; s += 32) combine_max_sum(m, l, p[2 * s], p[2 * s + 1]);
  for (int o = 16; o > 0; o /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), l2 = __shfl_xor_sync(0xffffffffu, l, o);
    combine_max_sum(m, l, m2, l2);
  }
  if (lane == 0) lse2[i] = m == -INFINITY ? 0.0f : m + log2f(l);
}

// Query heads of one KV group per sample-kernel CTA. Pass 1 takes two where the group has an even
// count (each key fragment then feeds two heads' products: 297 vs 368 us per layer at the last
// chunk of 128K, 8B shape, H100); pass 2 one (its probability tiles and registers would leave two
// CTAs per SM: 686 vs 623 us).
// Two heads of a group in one product (kStack) where each has at most 32 sample rows and the group
// an even count; FOLIO_SAMPLE_STACK=0 turns it off (for measurements).
bool sample_stack(int group, int rows) {
  static const bool off = [] {
    const char* e = std::getenv("FOLIO_SAMPLE_STACK");
    return e != nullptr && std::string(e) == "0";
  }();
  return !off && rows <= kFusedRows / 2 && group % 2 == 0;
}

int sample_heads_per_cta(int group, bool sums) {
  static const int forced = [] {
    const char* e = std::getenv("FOLIO_SAMPLE_HEADS");
    return e ? std::atoi(e) : 0;
  }();
  if (forced == 1 || forced == 2) return group % forced == 0 ? forced : 1;
  return !sums && group % 2 == 0 ? 2 : 1;
}

template <int HD, bool kSums, int HP, bool kStack = false>
void launch_sample_pass(const FusedArgs& a, cudaStream_t stream) {
  constexpr size_t smem = kSums ? SampleSmem<HD, HP>::kSumsBytes : SampleSmem<HD, HP>::kStatsBytes;
  static std::atomic<uint64_t> configured{0};
  allow_shared_memory(reinterpret_cast<const void*>(fused_sample_kernel<HD, kSums, HP, kStack>), smem, configured);
  dim3 grid(static_cast<unsigned>(a.splits), static_cast<unsigned>(a.n_heads / (kStack ? 2 : HP)));
  fused_sample_kernel<HD, kSums, HP, kStack><<<grid, kFusedThreads, smem, stream>>>(a);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

template <int HD>
void launch_fused(const EstimateArgs& ea, const SparseScratch& s, cudaStream_t stream) {
  const int64_t kv_len = ea.pos0 + ea.n;
  FusedArgs a;
  a.q = ea.q;
  a.k_cache = ea.k_cache;
  a.capacity = ea.capacity;
  a.n = ea.n;
  a.pos0 = ea.pos0;
  a.n_heads = ea.n_heads;
  a.n_kv_heads = ea.n_kv_heads;
  a.rows = ea.rows;
  a.splits = static_cast<int>((kv_len + kFusedSplit - 1) / kFusedSplit);
  // the score buffer is free in the fused path: partial results and lse live there
  a.partial = s.scores;
  a.lse2 = s.scores + static_cast<int64_t>(ea.n_heads) * kFusedRows * a.splits * 2;
  a.col = s.col;
  a.diag = s.diag;
  a.budgets = ea.budgets;
  const int group = ea.n_heads / ea.n_kv_heads;
  const bool stack = sample_stack(group, a.rows);
  if (stack) launch_sample_pass<HD, false, 1, true>(a, stream);
  else if (sample_heads_per_cta(group, false) == 2) launch_sample_pass<HD, false, 2>(a, stream);
  else launch_sample_pass<HD, false, 1>(a, stream);
  const int rows_total = ea.n_heads * kFusedRows;
  fused_merge_kernel<<<(rows_total * 32 + kMergeThreads - 1) / kMergeThreads, kMergeThreads, 0, stream>>>(
      a.partial, a.splits, ea.n_heads, a.rows, const_cast<float*>(a.lse2));
  FOLIO_CUDA_CHECK(cudaGetLastError());
  if (stack) launch_sample_pass<HD, true, 1, true>(a, stream);
  else if (sample_heads_per_cta(group, true) == 2) launch_sample_pass<HD, true, 2>(a, stream);
  else launch_sample_pass<HD, true, 1>(a, stream);
}

// ---- step 2: selection and tile lists ---------------------------------------------------------

constexpr int kSelectThreads = 1024;
constexpr int32_t kNoRank = sparse::kNoRank;

__device__ __forceinline__ int64_t to_fixed_dev(float v) {
  return __double2ll_rn(__dmul_rn(static_cast<double>(v), sparse::kFixedOne));
}

// Same as sparse::cell_rank.
// Positions fit in 31 bits (select_tiles checks nk <= kMaxSelectKeyTiles), so 32-bit arithmetic,
// and floor division by the 64-key tile is a shift.
__device__ __forceinline__ int32_t cell_rank_dev(const int32_t* vrank, const int32_t* brank, int nk, int n, int pos0,
                                                 int i, int t, bool last_tile_dense, int nq) {
  static_assert(kKeyTile == 64, "the shifts below divide by 64");
  const int p0 = pos0 + i * kQueryTile;
  const int p1 = pos0 + min(n, (i + 1) * kQueryTile) - 1;
  if (t == 0 || (t >= (p0 >> 6) && t <= (p1 >> 6)) || (last_tile_dense && i == nq - 1)) return -1;
  int32_t r = vrank[t];
  const int b_hi = min((p1 - kKeyTile * t) >> 6, nk - 1);
  const int b_lo = max(((p0 - kKeyTile * t - (2 * kKeyTile - 1)) >> 6) + 1, 0);
  for (int b = b_lo; b <= b_hi; ++b) r = min(r, brank[b]);
  return r;
}

template <typename T>
__device__ __forceinline__ T warp_inclusive_scan(T x, int lane) {
  for (int o = 1; o < 32; o *= 2) {
    const T y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  return x;
}

// Exclusive scan in place over len values (blockDim.x == kSelectThreads); returns the total.
template <typename T>
__device__ T block_exclusive_scan(T* a, int len, T* warp_sums) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int per = (len + kSelectThreads - 1) / kSelectThreads;
  const int b = min(tid * per, len), e = min(b + per, len);
  T local = 0;
  for (int i = b; i < e; ++i) local += a[i];
  // inclusive warp scan of the per-thread sums
  const T x = warp_inclusive_scan(local, lane);
  if (lane == 31) warp_sums[warp] = x;
  __syncthreads();
  if (warp == 0) warp_sums[lane] = warp_inclusive_scan(warp_sums[lane], lane);  // inclusive
  __syncthreads();
  T run = x - local + (warp > 0 ? warp_sums[warp - 1] : T{0});
  const T total = warp_sums[31];
  for (int i = b; i < e; ++i) {
    const T v = a[i];
    a[i] = run;
    run += v;
  }
  __syncthreads();
  return total;
}

struct SelectParams {
  const float* col;
  const float* diag;
  float* unit_max;      // [n_heads][unit_stride] (unit_stats_kernel writes, select_kernel reads)
  int64_t* unit_mass;   // [n_heads][unit_stride]
  int64_t unit_stride;
  int64_t capacity;
  int n;
  int64_t pos0;
  int rows;
  const DeviceBudget* budgets;
  HeadResult* results;
  int32_t* tile_offset;
  int32_t* tile_index;
  int64_t index_stride;
};

size_t select_smem_bytes(int64_t nk) {
  const size_t U = static_cast<size_t>(2 * nk);
  size_t P = 1;
  while (P < U) P *= 2;
  return P * 4 /*key*/ + P * 4 /*id*/ + U * 4 /*rank*/ + (U + 3) * 4 /*hist*/ + (U + 3) * 8 /*cum*/ + 64 * 8 /*misc*/;
}

// Per head and unit (key tile x < nk of col, distance band x - nk of diag): the strongest sum and
// the fixed-point mass, one warp per unit (the selection's single CTA per head only gathers them).
constexpr int kUnitWarps = 8;

__global__ void __launch_bounds__(kUnitWarps * 32) unit_stats_kernel(SelectParams a) {
  const int h = blockIdx.y, lane = threadIdx.x % 32;
  if (a.budgets[h].pattern == 2) return;
  const int64_t L = a.pos0 + a.n, nk = (L + kKeyTile - 1) / kKeyTile;
  const int64_t x = static_cast<int64_t>(blockIdx.x) * kUnitWarps + threadIdx.x / 32;
  if (x >= 2 * nk) return;
  const float* src = (x < nk ? a.col : a.diag) + static_cast<int64_t>(h) * a.capacity;
  const int64_t j0 = (x < nk ? x : x - nk) * kKeyTile;
  float m = 0.0f;
  int64_t f = 0;
  for (int64_t j = j0 + lane; j < min(j0 + kKeyTile, L); j += 32) {
    const float v = src[j];
    m = fmaxf(m, v);
    f += to_fixed_dev(v);
  }
  for (int o = 16; o > 0; o /= 2) {
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    f += __shfl_xor_sync(0xffffffffu, f, o);
  }
  if (lane == 0) {
    a.unit_max[h * a.unit_stride + x] = m;
    a.unit_mass[h * a.unit_stride + x] = f;
  }
}

__global__ void __launch_bounds__(kSelectThreads) select_kernel(SelectParams a) {
  extern __shared__ __align__(16) unsigned char sm_raw[];
  const int h = blockIdx.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const DeviceBudget bud = a.budgets[h];
  if (bud.pattern == 2) return;  // block_cluster() lists these
  const bool triangular = bud.pattern == 0;
  const int64_t n = a.n, pos0 = a.pos0, L = pos0 + n;
  const int64_t nk = (L + kKeyTile - 1) / kKeyTile;
  const int nq = static_cast<int>((n + kQueryTile - 1) / kQueryTile);
  const int nk32 = static_cast<int>(nk), n32 = static_cast<int>(n), pos32 = static_cast<int>(pos0);  // < 2^31 (nk <= kMaxSelectKeyTiles)
  const int U = static_cast<int>(2 * nk);
  int P = 1;
  while (P < U) P *= 2;
  float* key = reinterpret_cast<float*>(sm_raw);
  int32_t* id = reinterpret_cast<int32_t*>(key + P);
  int32_t* rank = id + P;                 // [U]: vertical u at u, band b at nk + b
  int32_t* hist = rank + U;               // [U + 1]
  int64_t* cum = reinterpret_cast<int64_t*>(sm_raw + ((static_cast<size_t>(2 * P + 2 * U + 1) * 4 + 7) / 8) * 8);  // [U + 1]
  __shared__ int64_t warp64[32];
  __shared__ int32_t warp32[32];
  __shared__ int64_t sh_mand, sh_mand_mass;
  __shared__ unsigned sh_kmass, sh_kmin, sh_kcut;

  // units: scores (strongest key / distance), from unit_stats_kernel
  const float* umax = a.unit_max + static_cast<int64_t>(h) * a.unit_stride;
  const int64_t* umass = a.unit_mass + static_cast<int64_t>(h) * a.unit_stride;
  for (int x = tid; x < U; x += kSelectThreads) {
    const float m = umax[x];
    const bool forced = !triangular && (x == 0 || x == nk);
    key[x] = (forced || m <= 0.0f) ? -1.0f : m;
    id[x] = x;
  }
  for (int x = U + tid; x < P; x += kSelectThreads) {
    key[x] = -1.0f;
    id[x] = 0x7fffffff;
  }
  __syncthreads();
  // the order: Interval-Slash sorts the candidates (strongest first, ties by unit id)
  int K, F;
  const int sinks = static_cast<int>(min(static_cast<int64_t>(bud.sink_tiles), nk));
  const int window = static_cast<int>(min(static_cast<int64_t>(max(bud.window_tiles, 1)), nk));
  if (triangular) {
    F = sinks + window;
    K = sinks + static_cast<int>(nk);
  } else {
    for (int k = 2; k <= P; k *= 2)
      for (int j = k / 2; j > 0; j /= 2) {
        for (int i = tid; i < P; i += kSelectThreads) {
          const int l = i ^ j;
          if (l > i) {
            const float ki = key[i], kl = key[l];
            const int32_t ii = id[i], il = id[l];
            // "i before l" when key larger, or equal key and smaller id
            const bool i_first = ki > kl || (ki == kl && ii < il);
            const bool up = (i & k) == 0;
            if (up != i_first) {
              key[i] = kl;
              key[l] = ki;
              id[i] = il;
              id[l] = ii;
            }
          }
        }
        __syncthreads();
      }
    int valid = 0;
    for (int i = tid; i < U; i += kSelectThreads) valid += key[i] > 0.0f ? 1 : 0;
    for (int o = 16; o > 0; o /= 2) valid += __shfl_xor_sync(0xffffffffu, valid, o);
    if (lane == 0) warp32[warp] = valid;
    __syncthreads();
    valid = 0;
    for (int w = 0; w < kSelectThreads / 32; ++w) valid += warp32[w];
    __syncthreads();
    F = 2;
    K = 2 + valid;
  }
  auto order_at = [&](int r) -> int {
    if (triangular) return r < sinks ? r : static_cast<int>(nk) + (r - sinks);
    return r == 0 ? 0 : r == 1 ? static_cast<int>(nk) : id[r - 2];
  };
  for (int x = tid; x < U; x += kSelectThreads) rank[x] = kNoRank;
  __syncthreads();
  for (int r = tid; r < K; r += kSelectThreads) rank[order_at(r)] = r;
  for (int r = tid; r <= K; r += kSelectThreads) hist[r] = 0;
  if (tid == 0) sh_mand = 0;
  for (int r = tid; r <= K; r += kSelectThreads) cum[r] = 0;
  if (tid == 0) sh_mand_mass = 0;
  __syncthreads();
  // the sample's mass by rank (fixed point, exact in any order): Triangular, each unit's own mass;
  // Interval-Slash, each key tile of the last query tile at the smallest rank that lists it
  const int64_t last_tile_last = (pos0 + n - 1) / kKeyTile;
  const int mass_units = triangular ? K : static_cast<int>(last_tile_last + 1);
  for (int x = tid; x < mass_units; x += kSelectThreads) {
    const int unit = triangular ? order_at(x) : x;
    const int64_t m = umass[unit];
    const int32_t r = triangular ? x : cell_rank_dev(rank, rank + nk, nk32, n32, pos32, nq - 1, x, false, nq);
    if (r < 0) atomicAdd(reinterpret_cast<unsigned long long*>(&sh_mand_mass), static_cast<unsigned long long>(m));
    else if (r < K) atomicAdd(reinterpret_cast<unsigned long long*>(&cum[r]), static_cast<unsigned long long>(m));
  }
  // histogram of each causal tile's smallest covering rank
  auto last_key_tile = [&](int i) { return (pos32 + min(n32, (i + 1) * kQueryTile) - 1) / kKeyTile; };
  int64_t mand = 0, causal = 0;
  for (int i = 0; i < nq; ++i) {
    const int last = last_key_tile(i);
    causal += last + 1;
    for (int t = tid; t <= last; t += kSelectThreads) {
      const int32_t r = cell_rank_dev(rank, rank + nk, nk32, n32, pos32, i, t, triangular, nq);
      if (r < 0) ++mand;
      else if (r < K) atomicAdd(&hist[r], 1);
    }
  }
  for (int o = 16; o > 0; o /= 2) mand += __shfl_xor_sync(0xffffffffu, mand, o);
  if (lane == 0) atomicAdd(reinterpret_cast<unsigned long long*>(&sh_mand), static_cast<unsigned long long>(mand));
  __syncthreads();
  // count[k] = mandatory + tiles of ranks < k; cum[k] = mass of ranks < k
  block_exclusive_scan<int32_t>(hist, K + 1, warp32);
  block_exclusive_scan<int64_t>(cum, K + 1, warp64);
  const int64_t mandatory = sh_mand;
  for (int r = tid; r <= K; r += kSelectThreads) cum[r] += sh_mand_mass;
  __syncthreads();
  // limits, as sparse::limits
  const int64_t threshold = __double2ll_rn(__dmul_rn(__dmul_rn(bud.mass_target, static_cast<double>(a.rows)), sparse::kFixedOne));
  int64_t min_tiles = static_cast<int64_t>(ceil(__dmul_rn(bud.min_density, static_cast<double>(causal))));
  int64_t max_tiles = max(int64_t{1}, static_cast<int64_t>(floor(__dmul_rn(bud.max_density, static_cast<double>(causal)))));
  if (bud.max_keys > 0)
    max_tiles = min(max_tiles, static_cast<int64_t>(nq) * sparse::cap_tiles_per_query(bud.max_keys, bud.grow_from, pos0 + n));
  min_tiles = min(min_tiles, max_tiles);
  // the prefix: one atomic per warp (thousands of threads on one shared address serialise)
  if (tid == 0) {
    sh_kmass = K;
    sh_kmin = K;
    sh_kcut = F;
  }
  __syncthreads();
  {
    unsigned my_mass = static_cast<unsigned>(K), my_min = static_cast<unsigned>(K);
    for (int k = F + tid; k <= K; k += kSelectThreads) {
      if (cum[k] >= threshold) my_mass = min(my_mass, static_cast<unsigned>(k));
      if (mandatory + hist[k] >= min_tiles) my_min = min(my_min, static_cast<unsigned>(k));
    }
    my_mass = __reduce_min_sync(0xffffffffu, my_mass);
    my_min = __reduce_min_sync(0xffffffffu, my_min);
    if (lane == 0) {
      atomicMin(&sh_kmass, my_mass);
      atomicMin(&sh_kmin, my_min);
    }
  }
  __syncthreads();
  int64_t kstar = max(sh_kmass, sh_kmin);
  const int64_t max_t = max(max_tiles, mandatory + hist[F]);
  if (mandatory + hist[kstar] > max_t) {
    unsigned my_cut = static_cast<unsigned>(F);
    for (int k = F + tid; k <= kstar; k += kSelectThreads)
      if (mandatory + hist[k] <= max_t) my_cut = max(my_cut, static_cast<unsigned>(k));
    my_cut = __reduce_max_sync(0xffffffffu, my_cut);
    if (lane == 0) atomicMax(&sh_kcut, my_cut);
    __syncthreads();
    kstar = sh_kcut;
  }
  // the list, per query tile in key order: each warp takes query tiles warp, warp + 32, ...; it
  // counts their cells first, a scan over the query tiles gives each its offset, then it writes
  // them (no block-wide barrier per tile). The counts go where the sort's keys were.
  int32_t* offsets = a.tile_offset + static_cast<int64_t>(h) * (nq + 1);
  int32_t* index = a.tile_index + static_cast<int64_t>(h) * a.index_stride;
  const int32_t base = static_cast<int32_t>(static_cast<int64_t>(h) * a.index_stride);
  int32_t* tile_count = reinterpret_cast<int32_t*>(key);  // [nq]: nq <= nk <= P / 2
  const unsigned lanes_below = (1u << lane) - 1u;
  for (int i = warp; i < nq; i += kSelectThreads / 32) {
    const int last = last_key_tile(i);
    int32_t c = 0;
    for (int t = lane; t - lane <= last; t += 32)
      c += __popc(__ballot_sync(0xffffffffu, t <= last && cell_rank_dev(rank, rank + nk, nk32, n32, pos32, i, t, triangular, nq) < kstar));
    if (lane == 0) tile_count[i] = c;
  }
  __syncthreads();
  const int32_t written = block_exclusive_scan<int32_t>(tile_count, nq, warp32);
  for (int i = warp; i < nq; i += kSelectThreads / 32) {
    const int last = last_key_tile(i);
    int32_t at = tile_count[i];
    if (lane == 0) offsets[i] = base + at;
    for (int t = lane; t - lane <= last; t += 32) {
      const bool on = t <= last && cell_rank_dev(rank, rank + nk, nk32, n32, pos32, i, t, triangular, nq) < kstar;
      const unsigned ballot = __ballot_sync(0xffffffffu, on);
      if (on) index[at + __popc(ballot & lanes_below)] = static_cast<int32_t>(t);
      at += __popc(ballot);
    }
  }
  if (tid == 0) {
    offsets[nq] = base + written;
    HeadResult res;
    res.computed = written;
    res.mass = cum[kstar];
    res.reached = cum[kstar] >= threshold ? 1 : 0;
    a.results[h] = res;
  }
}

// ---- Block-Cluster: pooled scores and selection per query tile -------------------------------

// qbar[h][i] = bf16(mean of query tile i's rows of head h). Block (i, h): hd / 8 column pieces of
// 16-byte loads x kPoolRowGroups row groups, summed through shared memory.
constexpr int kPoolRowGroups = 16;

__global__ void pool_queries_kernel(const bf16* q, int n, int n_heads, int hd, int nq, bf16* qbar) {
  __shared__ float part[kPoolRowGroups][128];
  const int i = blockIdx.x, h = blockIdx.y;
  const int pieces = hd / 8, c = threadIdx.x % pieces, rg = threadIdx.x / pieces;
  const int r0 = i * kQueryTile, r1 = min(n, r0 + kQueryTile);
  float acc[8] = {};
  for (int r = r0 + rg; r < r1; r += kPoolRowGroups) {
    const uint4 w = *reinterpret_cast<const uint4*>(q + (static_cast<int64_t>(r) * n_heads + h) * hd + c * 8);
    const auto* v = reinterpret_cast<const __nv_bfloat162*>(&w);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 f = __bfloat1622float2(v[e]);
      acc[2 * e] += f.x;
      acc[2 * e + 1] += f.y;
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) part[rg][c * 8 + e] = acc[e];
  __syncthreads();
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float sum = 0.0f;
    for (int g = 0; g < kPoolRowGroups; ++g) sum += part[g][d];
    reinterpret_cast<__nv_bfloat16*>(qbar)[(static_cast<int64_t>(h) * nq + i) * hd + d] =
        __float2bfloat16(sum / static_cast<float>(r1 - r0));
  }
}

struct PooledArgs {
  const bf16* qbar;     // [n_heads][nq][hd]
  const bf16* k_cache;  // [n_kv_heads][capacity][hd]
  int64_t capacity;
  int n;
  int64_t pos0;
  int n_heads, n_kv_heads, nq;
  const DeviceBudget* budgets;
  float* pooled;  // [n_heads][nq][stride]
  int64_t stride;
};

// Rows of one pooled CTA: a KV-head group's query tiles of a 4096-token chunk at GQA 4 (so each key
// is read once per chunk: the kernel is bound by reading K), in 8 warps of 16 rows.
constexpr int kPooledRows = 128;
constexpr int kPooledThreads = 256;

constexpr int kPooledStages = 4;  // K tiles in flight

template <int HD>
struct PooledSmem {
  static constexpr size_t kK = FusedSmem<HD>::kK;
  static constexpr size_t kBytes = kPooledStages * kK;
};

// One CTA: kPooledRows rows of one KV-head group (row R = head-in-group * nq + query tile), the
// keys of one split of kFusedSplit. Per key tile and row: log2-sum-exp2 of the scaled scores of the
// keys the query tile's last query may see, written to pooled (tiles past the row's last are not
// written). Tiles every row sees whole skip the masks.
template <int HD>
__global__ void __launch_bounds__(kPooledThreads, 3) pooled_kernel(PooledArgs a) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  using SM = PooledSmem<HD>;
  auto sK = [&](int b) { return reinterpret_cast<__nv_bfloat16*>(smem_raw + b * SM::kK); };
  const int split = blockIdx.x, g = blockIdx.y, rb = blockIdx.z;
  const int group = a.n_heads / a.n_kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kv_len = a.pos0 + a.n;
  const int64_t kb = static_cast<int64_t>(split) * kFusedSplit;
  const int64_t ke = min(kb + kFusedSplit, kv_len);
  const int n_tiles = static_cast<int>((ke - kb + kKeyTile - 1) / kKeyTile);
  const bf16* k_head = a.k_cache + static_cast<int64_t>(g) * a.capacity * HD;
  const float scale_log2 = rsqrtf(static_cast<float>(HD)) * kLog2e;
  auto row_head = [&](int r, int& h, int& i) {
    const int R = rb * kPooledRows + r;
    if (R >= group * a.nq) return false;
    h = g * group + R / a.nq;
    i = R % a.nq;
    return a.budgets[h].pattern == 2;
  };
#pragma unroll
  for (int st = 0; st < kPooledStages - 1; ++st) {
    if (st < n_tiles) load_k_tile<HD, kPooledThreads>(sK(st), k_head, kb + static_cast<int64_t>(st) * kKeyTile, ke);
    cp_async_commit();
  }
  // this thread's two rows, and their query fragments (mma A layout) straight from global memory
  const int r_lo = warp * 16 + lane / 4;
  bool valid[2];
  int64_t p1[2];
  float* out[2];
  const uint32_t* qrow[2];
  for (int e2 = 0; e2 < 2; ++e2) {
    int h = 0, i = 0;
    valid[e2] = row_head(r_lo + 8 * e2, h, i);
    p1[e2] = a.pos0 + min(static_cast<int64_t>(a.n), static_cast<int64_t>(i + 1) * kQueryTile) - 1;
    out[e2] = a.pooled + (static_cast<int64_t>(h) * a.nq + i) * a.stride;
    qrow[e2] = reinterpret_cast<const uint32_t*>(a.qbar + (static_cast<int64_t>(h) * a.nq + i) * HD);
  }
  uint32_t qa[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    const int c = (kk * 16 + (lane % 4) * 2) / 2;  // in 32-bit words
    qa[kk][0] = valid[0] ? qrow[0][c] : 0u;
    qa[kk][1] = valid[1] ? qrow[1][c] : 0u;
    qa[kk][2] = valid[0] ? qrow[0][c + 4] : 0u;
    qa[kk][3] = valid[1] ? qrow[1][c + 4] : 0u;
  }
  // one barrier per tile: after it, tile t has landed for everyone and everyone is done with tile
  // t - 1, whose buffer then takes tile t + stages - 1
  for (int t = 0; t < n_tiles; ++t) {
    const int buf = t % kPooledStages;
    const int64_t key0 = kb + static_cast<int64_t>(t) * kKeyTile;
    cp_async_wait<kPooledStages - 2>();
    __syncthreads();
    const int ahead = t + kPooledStages - 1;
    if (ahead < n_tiles)
      load_k_tile<HD, kPooledThreads>(sK(ahead % kPooledStages), k_head, kb + static_cast<int64_t>(ahead) * kKeyTile, ke);
    cp_async_commit();
    float sc[kKeyTile / 8][4];
    tile_scores_q<HD>(qa, sK(buf), lane, sc);
    // keys < pos0 + 1 are seen by every row (each row's last query is at pos0 or later)
    const bool whole = key0 + kKeyTile <= min(ke, a.pos0 + 1);
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
      float mx = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < kKeyTile / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& v = sc[nb][2 * e2 + e];
          if (whole) {
            v *= scale_log2;
          } else {
            const int64_t key = key0 + nb * 8 + (lane % 4) * 2 + e;
            v = (key > p1[e2] || key >= ke) ? -INFINITY : v * scale_log2;
          }
          mx = fmaxf(mx, v);
        }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      float sum = 0.0f;
      if (mx != -INFINITY) {
#pragma unroll
        for (int nb = 0; nb < kKeyTile / 8; ++nb) sum += fast_exp2(sc[nb][2 * e2] - mx) + fast_exp2(sc[nb][2 * e2 + 1] - mx);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      if (lane % 4 == 0 && valid[e2] && key0 <= p1[e2]) out[e2][key0 / kKeyTile] = mx + log2f(sum);
    }
  }
  cp_async_wait<0>();
}

constexpr int kBcSelectThreads = 256;   // bc_select_kernel

struct BcArgs {
  int n;
  int64_t pos0;
  int nq;
  const DeviceBudget* budgets;
  float* pooled;  // [n_heads][nq][stride]
  uint8_t* flags;  // [n_heads][nq][flag_stride]
  int64_t stride;
  int64_t flag_stride;  // a multiple of 16
  RowStat* rows;  // [n_heads][nq]
  int32_t* tile_offset;
  int32_t* tile_index;
  int64_t index_stride;
  HeadResult* results;
};

// Block-wide reduction over kBcSelectThreads threads (scratch: 8 entries).
template <typename T, typename Op>
__device__ T block_reduce_256(T v, Op op, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int o = 16; o > 0; o /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
#pragma unroll
  for (int w = 1; w < kBcSelectThreads / 32; ++w) r = op(r, scratch[w]);
  __syncthreads();
  return r;
}

// One CTA per (query tile, head), P (a power of two >= the row's key tiles, >= 256) sort slots in
// registers, E per thread (slot x = thread * E + e): probabilities from the pooled log2 scores
// (written back, so the CPU rule can run on exactly these values), the mandatory tiles, the others
// sorted by fixed-point mass (larger first, ties: lower tile) in a bitonic network whose steps run
// inside a thread, across a warp with shuffles, or through shared memory only for distances of 32 E
// and more; then the shortest prefix the rule takes (its stopping test is monotone in the prefix
// length, so the prefix is a count of the lengths that do not stop).
template <int P>
__global__ void __launch_bounds__(kBcSelectThreads) bc_select_kernel(BcArgs a) {
  constexpr int E = P / kBcSelectThreads;
  static_assert(E >= 1 && (E & (E - 1)) == 0, "P: a power of two of at least 256");
  __shared__ uint32_t xs[P > 32 * E ? P : 1];
  __shared__ float p_of[P];  // probability by tile
  __shared__ float red_f[8];
  __shared__ int64_t red_i[8];
  const int i = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const DeviceBudget bud = a.budgets[h];
  if (bud.pattern != 2) return;
  const int64_t p0 = a.pos0 + static_cast<int64_t>(i) * kQueryTile;
  const int64_t p1 = a.pos0 + min(static_cast<int64_t>(a.n), static_cast<int64_t>(i + 1) * kQueryTile) - 1;
  const int cnt = static_cast<int>(p1 / kKeyTile) + 1, d0 = static_cast<int>(p0 / kKeyTile);
  float* row = a.pooled + (static_cast<int64_t>(h) * a.nq + i) * a.stride;
  uint8_t* flag = a.flags + (static_cast<int64_t>(h) * a.nq + i) * a.flag_stride;
  const int x0 = tid * E;
  float lv[E];
  float m = -INFINITY;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    lv[e] = x0 + e < cnt ? row[x0 + e] : -INFINITY;
    m = fmaxf(m, lv[e]);
  }
  m = block_reduce_256(m, [](float x, float y) { return fmaxf(x, y); }, red_f);
  float sum = 0.0f;
#pragma unroll
  for (int e = 0; e < E; ++e) sum += x0 + e < cnt ? exp2f(lv[e] - m) : 0.0f;
  sum = block_reduce_256(sum, [](float x, float y) { return x + y; }, red_f);
  // sort keys: (mass >> kBlockRankShift) + 1 above the tile's complement (12 bits); 0 = not a candidate
  uint32_t v[E];
  int64_t mand_mass = 0, mand = 0;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int t = x0 + e;
    v[e] = 0;
    if (t < cnt) {
      const float p = exp2f(lv[e] - m) / sum;
      row[t] = p;
      const int64_t fx = to_fixed_dev(p);
      p_of[t] = p;
      if (t == 0 || t >= d0) {
        mand_mass += fx;
        ++mand;
        flag[t] = 1;
      } else {
        v[e] = (static_cast<uint32_t>((fx >> sparse::kBlockRankShift) + 1) << 12) | static_cast<uint32_t>(4095 - t);
        flag[t] = 0;
      }
    }
  }
  mand_mass = block_reduce_256(mand_mass, [](int64_t x, int64_t y) { return x + y; }, red_i);  // (syncs p_of)
  mand = block_reduce_256(mand, [](int64_t x, int64_t y) { return x + y; }, red_i);
  // bitonic, descending: in block k the slot x keeps the larger of (x, x ^ j) when it is the lower
  // slot of a descending block or the upper slot of an ascending one
#pragma unroll
  for (int k = 2; k <= P; k *= 2) {
#pragma unroll
    for (int j = k / 2; j > 0; j /= 2) {
      if (j < E) {
#pragma unroll
        for (int e = 0; e < E; ++e) {
          if ((e & j) != 0) continue;
          const int x = x0 + e;
          const bool desc = (x & k) == 0;
          const uint32_t lo = v[e], hi = v[e | j];
          const uint32_t mx = max(lo, hi), mn = min(lo, hi);
          v[e] = desc ? mx : mn;
          v[e | j] = desc ? mn : mx;
        }
      } else if (j < 32 * E) {
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const int x = x0 + e;
          const uint32_t other = __shfl_xor_sync(0xffffffffu, v[e], j / E);
          const bool keep_max = ((x & j) == 0) == ((x & k) == 0);
          v[e] = keep_max ? max(v[e], other) : min(v[e], other);
        }
      } else {
#pragma unroll
        for (int e = 0; e < E; ++e) xs[x0 + e] = v[e];
        __syncthreads();
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const int x = x0 + e;
          const uint32_t other = xs[x ^ j];
          const bool keep_max = ((x & j) == 0) == ((x & k) == 0);
          v[e] = keep_max ? max(v[e], other) : min(v[e], other);
        }
        __syncthreads();
      }
    }
  }
  // candidates first (keys > 0); exclusive prefix sums of their full masses in sorted order
  auto mass_of = [&](uint32_t key) -> int64_t {
    return key != 0 ? to_fixed_dev(p_of[4095 - static_cast<int>(key & 4095u)]) : 0;
  };
  const int m_cands = cnt - static_cast<int>(mand);
  int64_t local = 0;
#pragma unroll
  for (int e = 0; e < E; ++e) local += mass_of(v[e]);
  const int64_t incl = warp_inclusive_scan(local, lane);
  if (lane == 31) red_i[warp] = incl;
  __syncthreads();
  int64_t before = incl - local;
  for (int w = 0; w < warp; ++w) before += red_i[w];
  __syncthreads();
  // as sparse::block_row_limits
  const int64_t threshold = __double2ll_rn(__dmul_rn(bud.mass_target, sparse::kFixedOne));
  int64_t max_tiles = static_cast<int64_t>(floor(__dmul_rn(bud.max_density, static_cast<double>(cnt))));
  if (bud.max_keys > 0) max_tiles = min(max_tiles, sparse::cap_tiles_per_query(bud.max_keys, bud.grow_from, a.pos0 + a.n));
  const int64_t min_tiles = static_cast<int64_t>(ceil(__dmul_rn(bud.min_density, static_cast<double>(cnt))));
  const int64_t cap = max(mand, max_tiles);
  auto stops = [&](int64_t k, int64_t cum) { return (mand_mass + cum >= threshold && mand + k >= min_tiles) || mand + k >= cap; };
  // prefix lengths k = x (taking slots 0 .. x - 1) for x <= m_cands (< cnt <= P: tile 0 is never a candidate)
  int64_t not_done = 0, cum = before;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int x = x0 + e;
    if (x <= m_cands && !stops(x, cum)) ++not_done;
    cum += mass_of(v[e]);
  }
  not_done = block_reduce_256(not_done, [](int64_t x, int64_t y) { return x + y; }, red_i);
  const int kstar = static_cast<int>(min(not_done, static_cast<int64_t>(m_cands)));
  int64_t kept = 0;
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int x = x0 + e;
    if (x < kstar) {
      flag[4095 - static_cast<int>(v[e] & 4095u)] = 1;
      kept += mass_of(v[e]);
    }
  }
  kept = block_reduce_256(kept, [](int64_t x, int64_t y) { return x + y; }, red_i);
  if (tid == 0) {
    RowStat st;
    st.mass = mand_mass + kept;
    st.count = static_cast<int32_t>(mand) + kstar;
    st.reached = st.mass >= threshold ? 1 : 0;
    a.rows[static_cast<int64_t>(h) * a.nq + i] = st;
  }
}

// One warp per (query tile, head): its list in key order from the flags (ballots), at the offset
// the earlier rows' counts give; the last query tile's warp also writes the end offset and the
// head's result.
__global__ void __launch_bounds__(32) bc_write_kernel(BcArgs a) {
  const int i = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
  if (a.budgets[h].pattern != 2) return;
  const RowStat* rs = a.rows + static_cast<int64_t>(h) * a.nq;
  int32_t* offsets = a.tile_offset + static_cast<int64_t>(h) * (a.nq + 1);
  int32_t* index = a.tile_index + static_cast<int64_t>(h) * a.index_stride;
  const int32_t base = static_cast<int32_t>(static_cast<int64_t>(h) * a.index_stride);
  int32_t before = 0;
  for (int x = lane; x < i; x += 32) before += rs[x].count;
  for (int o = 16; o > 0; o /= 2) before += __shfl_xor_sync(0xffffffffu, before, o);
  if (lane == 0) offsets[i] = base + before;
  const int64_t p1 = a.pos0 + min(static_cast<int64_t>(a.n), static_cast<int64_t>(i + 1) * kQueryTile) - 1;
  const int cnt = static_cast<int>(p1 / kKeyTile) + 1;
  const uint8_t* flag = a.flags + (static_cast<int64_t>(h) * a.nq + i) * a.flag_stride;
  // each lane a 64-flag segment (four 16-byte loads), a warp scan of the counts, then the writes
  int32_t written = before;
  for (int c0 = 0; c0 < cnt; c0 += 32 * 64) {
    const int t0 = c0 + lane * 64;
    uint4 w[4] = {};
    if (t0 < cnt) {
#pragma unroll
      for (int q = 0; q < 4; ++q) w[q] = reinterpret_cast<const uint4*>(flag + t0)[q];
    }
    const auto* bytes = reinterpret_cast<const uint8_t*>(w);
    int mine = 0;
#pragma unroll
    for (int b = 0; b < 64; ++b) mine += (t0 + b < cnt && bytes[b] != 0) ? 1 : 0;
    const int incl = warp_inclusive_scan(mine, lane);
    int at = written + incl - mine;
#pragma unroll
    for (int b = 0; b < 64; ++b)
      if (t0 + b < cnt && bytes[b] != 0) index[at++] = t0 + b;
    written += __shfl_sync(0xffffffffu, incl, 31);
  }
  if (i == a.nq - 1 && lane == 0) {
    HeadResult res;
    int64_t mass = 0;
    int32_t reached = 1;
    for (int x = 0; x < a.nq; ++x) {
      mass += rs[x].mass;
      reached &= rs[x].reached;
    }
    offsets[a.nq] = base + written;
    res.computed = written;
    res.mass = mass;
    res.reached = reached;
    res.rows = a.nq;
    a.results[h] = res;
  }
}

}  // namespace

DeviceBudget device_budget(const sparse::HeadBudget& b) {
  DeviceBudget d;
  d.pattern = b.pattern == sparse::Pattern::Triangular ? 0 : b.pattern == sparse::Pattern::IntervalSlash ? 1 : 2;
  d.sink_tiles = b.sink_tiles;
  d.window_tiles = b.window_tiles;
  d.mass_target = b.mass_target;
  d.min_density = b.min_density;
  d.max_density = b.max_density;
  d.max_keys = b.max_keys;
  d.grow_from = static_cast<int32_t>(b.grow_from);
  return d;
}

SparseScratch SparseScratch::carve(void* base, const SparseLayout& l, int64_t capacity, int64_t chunk) {
  SparseScratch s;
  auto* p = static_cast<uint8_t*>(base);
  auto take = [&](size_t bytes) {
    void* r = p;
    p += bytes;
    return r;
  };
  s.capacity = capacity;
  s.chunk = chunk;
  s.groups_per_pass = l.groups_per_pass;
  s.index_stride = l.index_stride;
  s.q_sample = static_cast<bf16*>(take(l.q_sample));
  s.scores = static_cast<float*>(take(l.scores));
  s.lse = static_cast<float*>(take(l.lse));
  s.col = static_cast<float*>(take(l.col));
  s.diag = static_cast<float*>(take(l.diag));
  s.tile_offset = static_cast<int32_t*>(take(l.offsets));
  s.tile_index = static_cast<int32_t*>(take(l.index));
  s.budgets = static_cast<DeviceBudget*>(take(l.budgets));
  s.results = static_cast<HeadResult*>(take(l.results));
  s.unit_max = static_cast<float*>(take(l.unit_max));
  s.unit_mass = static_cast<int64_t*>(take(l.unit_mass));
  s.pooled_q = static_cast<bf16*>(take(l.pooled_q));
  s.pooled = static_cast<float*>(take(l.pooled));
  s.flags = static_cast<uint8_t*>(take(l.flags));
  s.row_stats = static_cast<RowStat*>(take(l.row_stats));
  s.pooled_stride = n_ktiles_of(capacity);
  s.flags_stride = (s.pooled_stride + 15) / 16 * 16;
  s.chunk_qtiles = static_cast<int>((chunk + kQueryTile - 1) / kQueryTile);
  return s;
}

bool sparse_supported(int head_dim, int64_t kv_len) {
  return attention_head_dim_fast(head_dim) && n_ktiles_of(kv_len) <= kMaxSelectKeyTiles;
}

void sample_sums(const EstimateArgs& a, const SparseScratch& s, Gemm& gemm, cudaStream_t stream) {
  const int64_t kv_len = a.pos0 + a.n;
  if (a.rows < 1 || a.rows > std::min(a.n, kMaxSampleRows) || kv_len > s.capacity || a.n > s.chunk)
    throw Error(ErrorCode::Internal, "sparse estimation: sample rows or chunk outside the scratch");
  const int group = a.n_heads / a.n_kv_heads, hd = a.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t last_row_pos = kv_len - 1;
  if (a.rows <= kFusedRows && !a.force_gemm) {
    FOLIO_CUDA_CHECK(cudaMemset2DAsync(s.diag, static_cast<size_t>(s.capacity) * sizeof(float), 0,
                                       static_cast<size_t>(kv_len) * sizeof(float), static_cast<size_t>(a.n_heads),
                                       stream));
    switch (hd) {
      case 64: launch_fused<64>(a, s, stream); return;
      case 96: launch_fused<96>(a, s, stream); return;
      case 128: launch_fused<128>(a, s, stream); return;
      default: break;
    }
  }
  {
    const int64_t pieces = static_cast<int64_t>(a.n_heads) * a.rows * hd / 8;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((pieces + 255) / 256, 4096));
    gather_sample_kernel<<<blocks, 256, 0, stream>>>(a.q, a.n, a.n_heads, hd, a.rows, s.q_sample);
    FOLIO_CUDA_CHECK(cudaGetLastError());
  }
  FOLIO_CUDA_CHECK(cudaMemset2DAsync(s.diag, static_cast<size_t>(s.capacity) * sizeof(float), 0,
                                     static_cast<size_t>(kv_len) * sizeof(float), static_cast<size_t>(a.n_heads), stream));
  for (int g0 = 0; g0 < a.n_kv_heads; g0 += s.groups_per_pass) {
    const int groups = std::min(s.groups_per_pass, a.n_kv_heads - g0);
    const int rows_per_group = group * a.rows;
    const int64_t stride = group_stride(rows_per_group, kv_len);
    for (int g = g0; g < g0 + groups; ++g)
      gemm.run(stream, s.q_sample + static_cast<int64_t>(g) * rows_per_group * hd, rows_per_group,
               a.k_cache + static_cast<int64_t>(g) * a.capacity * hd, kv_len, hd, s.scores + (g - g0) * stride,
               Gemm::Out::F32);
    const int head0 = g0 * group, heads = groups * group;
    row_lse_kernel<<<static_cast<unsigned>(heads * a.rows), kLseThreads, 0, stream>>>(
        s.scores, kv_len, a.rows, rows_per_group, stride, last_row_pos, head0, scale, s.lse);
    FOLIO_CUDA_CHECK(cudaGetLastError());
    dim3 grid(static_cast<unsigned>((kv_len + kColKeys - 1) / kColKeys), static_cast<unsigned>(heads));
    col_diag_kernel<<<grid, kColKeys, 0, stream>>>(s.scores, kv_len, a.rows, rows_per_group, stride, last_row_pos,
                                                      head0, scale, s.lse, s.col, s.diag, s.capacity);
    FOLIO_CUDA_CHECK(cudaGetLastError());
  }
}

void select_tiles(const EstimateArgs& a, const SparseScratch& s, cudaStream_t stream) {
  const int64_t kv_len = a.pos0 + a.n;
  const int64_t nk = n_ktiles_of(kv_len);
  if (nk > kMaxSelectKeyTiles) throw Error(ErrorCode::Internal, "sparse selection: too many key tiles");
  const size_t smem = select_smem_bytes(nk);
  // the shared-memory opt-in, once per device, for the largest chunk
  static std::atomic<uint64_t> configured{0};
  allow_shared_memory(reinterpret_cast<const void*>(select_kernel), select_smem_bytes(kMaxSelectKeyTiles), configured);
  SelectParams p;
  p.col = s.col;
  p.diag = s.diag;
  p.capacity = s.capacity;
  p.n = a.n;
  p.pos0 = a.pos0;
  p.rows = a.rows;
  p.budgets = a.budgets;
  p.results = a.results;
  p.tile_offset = s.tile_offset;
  p.tile_index = s.tile_index;
  p.index_stride = s.index_stride;
  p.unit_max = s.unit_max;
  p.unit_mass = s.unit_mass;
  p.unit_stride = 2 * s.pooled_stride;
  unit_stats_kernel<<<dim3(static_cast<unsigned>((2 * nk + kUnitWarps - 1) / kUnitWarps), static_cast<unsigned>(a.n_heads)),
                      kUnitWarps * 32, 0, stream>>>(p);
  FOLIO_CUDA_CHECK(cudaGetLastError());
  select_kernel<<<static_cast<unsigned>(a.n_heads), kSelectThreads, smem, stream>>>(p);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace folio::cuda

namespace folio::cuda {

namespace {

template <int HD>
void launch_pooled(const PooledArgs& p, int64_t kv_len, int group, cudaStream_t stream) {
  constexpr size_t smem = PooledSmem<HD>::kBytes;
  static std::atomic<uint64_t> configured{0};
  allow_shared_memory(reinterpret_cast<const void*>(pooled_kernel<HD>), smem, configured);
  dim3 grid(static_cast<unsigned>((kv_len + kFusedSplit - 1) / kFusedSplit), static_cast<unsigned>(p.n_kv_heads),
            static_cast<unsigned>((group * p.nq + kPooledRows - 1) / kPooledRows));
  pooled_kernel<HD><<<grid, kPooledThreads, smem, stream>>>(p);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void block_cluster(const EstimateArgs& a, const SparseScratch& s, cudaStream_t stream) {
  const int64_t kv_len = a.pos0 + a.n;
  const int nq = (a.n + kQueryTile - 1) / kQueryTile;
  const int64_t nk = n_ktiles_of(kv_len);
  if (nq > s.chunk_qtiles || nk > s.pooled_stride || nk > kMaxSelectKeyTiles || a.n_heads % a.n_kv_heads != 0)
    throw Error(ErrorCode::Internal, "block-cluster estimation: chunk outside the scratch");
  const int hd = a.head_dim, group = a.n_heads / a.n_kv_heads;
  pool_queries_kernel<<<dim3(static_cast<unsigned>(nq), static_cast<unsigned>(a.n_heads)),
                        static_cast<unsigned>(hd / 8 * kPoolRowGroups), 0, stream>>>(a.q, a.n, a.n_heads, hd, nq,
                                                                                  s.pooled_q);
  FOLIO_CUDA_CHECK(cudaGetLastError());
  PooledArgs p;
  p.qbar = s.pooled_q;
  p.k_cache = a.k_cache;
  p.capacity = a.capacity;
  p.n = a.n;
  p.pos0 = a.pos0;
  p.n_heads = a.n_heads;
  p.n_kv_heads = a.n_kv_heads;
  p.nq = nq;
  p.budgets = a.budgets;
  p.pooled = s.pooled;
  p.stride = s.pooled_stride;
  switch (hd) {
    case 64: launch_pooled<64>(p, kv_len, group, stream); break;
    case 96: launch_pooled<96>(p, kv_len, group, stream); break;
    case 128: launch_pooled<128>(p, kv_len, group, stream); break;
    default: throw Error(ErrorCode::Internal, "block-cluster estimation: head dim " + std::to_string(hd));
  }
  BcArgs b;
  b.n = a.n;
  b.pos0 = a.pos0;
  b.nq = nq;
  b.budgets = a.budgets;
  b.pooled = s.pooled;
  b.flags = s.flags;
  b.stride = s.pooled_stride;
  b.flag_stride = s.flags_stride;
  b.rows = s.row_stats;
  b.tile_offset = s.tile_offset;
  b.tile_index = s.tile_index;
  b.index_stride = s.index_stride;
  b.results = a.results;
  const dim3 grid(static_cast<unsigned>(nq), static_cast<unsigned>(a.n_heads));
  // sort slots for the longest row (the last query tile's key tiles)
  if (nk <= 256) bc_select_kernel<256><<<grid, kBcSelectThreads, 0, stream>>>(b);
  else if (nk <= 512) bc_select_kernel<512><<<grid, kBcSelectThreads, 0, stream>>>(b);
  else if (nk <= 1024) bc_select_kernel<1024><<<grid, kBcSelectThreads, 0, stream>>>(b);
  else if (nk <= 2048) bc_select_kernel<2048><<<grid, kBcSelectThreads, 0, stream>>>(b);
  else bc_select_kernel<4096><<<grid, kBcSelectThreads, 0, stream>>>(b);
  FOLIO_CUDA_CHECK(cudaGetLastError());
  bc_write_kernel<<<grid, 32, 0, stream>>>(b);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void estimate(const EstimateArgs& a, const SparseScratch& s, Gemm& gemm, cudaStream_t stream) {
  if (a.any_sums) {
    sample_sums(a, s, gemm, stream);
    select_tiles(a, s, stream);
  }
  if (a.any_pooled) block_cluster(a, s, stream);
}

}  // namespace folio::cuda
