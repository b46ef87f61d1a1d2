// Sparse prefill on the GPU: estimation and tile lists (the CPU reference is core/attention).
//
// Per layer and prefill chunk, for every query head:
//   1. sample sums: the chunk's last `rows` queries against every key before them, turned into
//      probabilities and summed per key (col) and per distance (diag). Up to 64 rows: a fused
//      tensor-core kernel that never writes scores (pass 1: each row's max and sum per key split,
//      a merge to the log-sum-exp, pass 2: probabilities, column sums through warp shuffles,
//      distance sums through a shared tile), two query heads of a KV group per CTA where the group
//      allows (each key fragment read from shared memory feeds both). More rows, or force_gemm:
//      cuBLASLt scores per KV-head group, a row kernel for the log-sum-exp, a column kernel.
//   2. selection and tile lists: a unit kernel (one warp per key tile and distance band: the
//      strongest sum and the fixed-point mass), then one CTA per head: units sorted on the chip
//      (bitonic), ranks, a histogram of each tile's smallest covering rank (so the tiles of every
//      prefix are known at once), fixed-point mass prefix sums, the prefix chosen by the budget
//      rule, and the list written per query tile in key order. Given the same sums this is the
//      CPU's select_from_sums bit for bit.
// The lists feed attention_prefill (tile_offset / tile_index).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "core/attention/sparse.h"
#include "kernels/memory_plan.h"
#include "kernels/cuda_ops.h"

namespace folio::cuda {

class Gemm;

// Sample rows the GPU path takes at most (a config asking for more uses this many).
constexpr int kMaxSampleRows = kSparseMaxSampleRows;
// Key tiles a chunk may span for the GPU selection (its shared memory): 4096 = 256K tokens.
constexpr int64_t kMaxSelectKeyTiles = 4096;

struct DeviceBudget {
  int32_t pattern = 1;  // 0 triangular, 1 interval-slash, 2 block-cluster
  int32_t sink_tiles = 1, window_tiles = 8;
  int32_t grow_from = 0;  // sparse::HeadBudget::grow_from (<= kMaxBudgetKeys)
  double mass_target = 0.95, min_density = 0.0, max_density = 0.35;
  int64_t max_keys = 0;
};
DeviceBudget device_budget(const sparse::HeadBudget& b);

// What the selection chose for one head.
struct HeadResult {
  int64_t computed = 0;  // tiles listed
  int64_t mass = 0;      // sample mass of the chosen units, fixed point (sparse::kFixedOne per row)
  int32_t reached = 0;   // mass >= target
  int32_t rows = 0;      // what mass is a sum over: sample rows, or query tiles (Block-Cluster)
};

// Block-Cluster's result per query tile.
struct RowStat {
  int64_t mass = 0;  // fixed point
  int32_t count = 0;
  int32_t reached = 0;
};

// Scratch for one context (capacity) and chunk size, carved from plan_sparse()'s layout.
struct SparseScratch {
  bf16* q_sample = nullptr;   // [n_heads][rows][hd]
  float* scores = nullptr;    // [groups_per_pass * group * rows][kv_len]
  float* lse = nullptr;       // [n_heads * rows]
  float* col = nullptr;       // [n_heads][capacity]
  float* diag = nullptr;      // [n_heads][capacity]
  int32_t* tile_offset = nullptr;  // [n_heads][n_qtiles + 1]
  int32_t* tile_index = nullptr;   // [n_heads][index_stride]
  DeviceBudget* budgets = nullptr;  // [n_layers][n_heads]
  HeadResult* results = nullptr;    // [n_layers][n_heads]
  float* unit_max = nullptr;        // [n_heads][2 * pooled_stride]: key tiles, then distance bands
  int64_t* unit_mass = nullptr;     // [n_heads][2 * pooled_stride], fixed point
  bf16* pooled_q = nullptr;         // [n_heads][chunk tiles][hd]: each query tile's mean query
  // The next three are laid out per chunk: [n_heads][this chunk's query tiles]...
  float* pooled = nullptr;          // [..][pooled_stride]: log2-sum-exp2, then probabilities
  uint8_t* flags = nullptr;         // [..][flags_stride]: tile chosen
  RowStat* row_stats = nullptr;     // [..]
  int64_t capacity = 0, chunk = 0, index_stride = 0;
  int64_t pooled_stride = 0;        // key tiles of the capacity
  int64_t flags_stride = 0;         // pooled_stride rounded up to 16
  int chunk_qtiles = 0;
  int groups_per_pass = 1;

  // `base` holds layout.total() bytes of device memory.
  static SparseScratch carve(void* base, const SparseLayout& layout, int64_t capacity, int64_t chunk);
};

struct EstimateArgs {
  const bf16* q = nullptr;        // [n][n_heads][hd], after RoPE
  const bf16* k_cache = nullptr;  // [n_kv_heads][capacity][hd]
  int64_t capacity = 0;
  int n = 0;
  int64_t pos0 = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int rows = 64;                        // sample rows, <= min(n, kMaxSampleRows)
  const DeviceBudget* budgets = nullptr;  // [n_heads], device
  HeadResult* results = nullptr;          // [n_heads], device
  bool force_gemm = false;                // sample sums through cuBLASLt even where the fused kernel fits
  // Which estimations this layer needs (from its heads' patterns): sample sums for Interval-Slash
  // and Triangular heads, pooled scores for Block-Cluster heads.
  bool any_sums = true, any_pooled = false;
};

// True when the GPU path can estimate this chunk (head dim on the tensor-core kernels, keys within
// kMaxSelectKeyTiles).
bool sparse_supported(int head_dim, int64_t kv_len);

// Step 1 into s.col / s.diag (scale 1/sqrt(hd)).
void sample_sums(const EstimateArgs& a, const SparseScratch& s, Gemm& gemm, cudaStream_t stream);
// Step 2 from s.col / s.diag into s.tile_offset / s.tile_index and a.results (Interval-Slash and
// Triangular heads; Block-Cluster heads are left to block_cluster()).
void select_tiles(const EstimateArgs& a, const SparseScratch& s, cudaStream_t stream);
// Block-Cluster heads, both steps: mean queries per query tile, their scores against every key
// pooled per key tile (tensor cores, one pass, never written per key), the probabilities into
// s.pooled, the selection per query tile (sparse::select_block_cluster bit for bit given those
// probabilities), and the lists and results.
void block_cluster(const EstimateArgs& a, const SparseScratch& s, cudaStream_t stream);
// Both steps for every head of the layer, as its patterns need.
void estimate(const EstimateArgs& a, const SparseScratch& s, Gemm& gemm, cudaStream_t stream);

}  // namespace folio::cuda
