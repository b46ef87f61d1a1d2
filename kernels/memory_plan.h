// What a GPU backend will allocate for a model, computed before anything is allocated: weights as
// the device holds them (bf16 matrices, fp32 norms and biases), the KV cache for a context, and the
// scratch of one prefill chunk. The CUDA backend allocates exactly these sizes, so the plan, the
// backend's metrics and what the device reports agree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/model/model_config.h"
#include "core/model/model_weights.h"
#include "core/model/quant.h"

namespace folio {

struct MemoryPlan {
  size_t weights_bytes = 0;
  size_t kv_bytes = 0;       // for `context` tokens
  size_t scratch_bytes = 0;  // activations of one chunk, decode partials, GEMM workspace, logits
  size_t sparse_bytes = 0;   // sparse prefill's estimation and tile lists for `context` (with the KV cache)
  int64_t context = 0;
  int64_t chunk = 0;
  size_t kv_bytes_per_token = 0;
  size_t total() const { return weights_bytes + kv_bytes + scratch_bytes + sparse_bytes; }
};

// The KV cache's layout on the device, in one allocation. bf16 (KvQuant::None): per layer, K then V,
// each [n_kv_heads][context][head_dim]. q8 (KvQuant::Q8, the CPU's round_kv_row_q8): per layer K then
// V as int8 values in that layout, then per layer K then V's fp16 scales [n_kv_heads][context][blocks]
// (blocks of 32 values, a row's last one may be shorter), then one layer's K and V expanded to bf16:
// the stage that prefill attention and sparse estimation read (decode reads the 8-bit rows).
struct KvLayout {
  KvQuant quant = KvQuant::None;
  int blocks = 0;             // scale blocks per row (q8)
  size_t values = 0;          // bytes of one layer's K (or V) values, rounded to 256
  size_t scales = 0;          // bytes of one layer's K (or V) scales (q8), rounded to 256
  size_t stage = 0;           // bytes of the stage's K (or V) (q8), rounded to 256
  size_t bytes = 0;           // the allocation (granules)
  size_t bytes_per_token = 0; // what one more token of context adds
};
// The formats the GPU keeps: bf16 and q8 (fp8 throws, naming q8).
KvLayout plan_kv(const ModelConfig& c, int64_t context, KvQuant quant = KvQuant::None);

// Bytes of the GEMM workspace the backend gives cuBLASLt.
constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;
// Key splits of one decode step at most (split-K attention keeps partial results per split).
constexpr int kMaxDecodeSplits = 128;

// Sparse prefill on the GPU (kernels/sparse_estimate): sample rows at most, and the score
// buffer's budget (at least one KV-head group's scores).
constexpr int kSparseMaxSampleRows = 128;
constexpr size_t kSparseScoreBytes = size_t{256} << 20;

// The pieces of sparse prefill's GPU scratch for a context and chunk, in carving order, each
// rounded to 256 bytes; none when the GPU path does not cover the model's head dim.
struct SparseLayout {
  size_t q_sample = 0, scores = 0, lse = 0, col = 0, diag = 0, offsets = 0, index = 0, budgets = 0, results = 0;
  // per head and unit (key tile, distance band): the strongest sample sum and the fixed-point mass
  size_t unit_max = 0, unit_mass = 0;
  // Block-Cluster: mean queries, pooled scores per (query tile, key tile), chosen-tile flags, row results
  size_t pooled_q = 0, pooled = 0, flags = 0, row_stats = 0;
  int groups_per_pass = 0;     // KV-head groups whose scores are held at once
  int64_t index_stride = 0;    // tile indices per head
  size_t total() const {
    return q_sample + scores + lse + col + diag + offsets + index + budgets + results + unit_max + unit_mass +
           pooled_q + pooled + flags + row_stats;
  }
};
SparseLayout plan_sparse(const ModelConfig& c, int64_t context, int64_t chunk);

// Scratch of the forward pass for chunks of up to `chunk` tokens.
size_t plan_scratch_bytes(const ModelConfig& c, int64_t chunk);

// Weights as the GPU holds them. Without `native` every matrix is bf16. With it (the model's tensors,
// GPU option quantized_weights), a matrix whose tensors include a quantized one keeps their stored
// blocks (its float tensors as bf16 rows beside them), and the forward pass expands such a matrix
// into a bf16 scratch of dequant_bytes before a GEMM of many tokens.
struct WeightPlan {
  size_t bytes = 0;          // the weight arena (granules)
  size_t dequant_bytes = 0;  // the expansion scratch (granules; 0 when every matrix is bf16)
  int64_t output_piece_rows = 0;  // rows of a quantized output head expanded at once
};
// Whether a fused matrix made of `parts` keeps its blocks on the device.
bool keeps_blocks(std::initializer_list<const TensorView*> parts);
WeightPlan plan_weights(const ModelConfig& c, const ModelWeights* native);
size_t plan_weight_bytes(const ModelConfig& c);  // every matrix bf16
MemoryPlan plan_memory(const ModelConfig& c, int64_t context, int64_t chunk, const ModelWeights* native = nullptr,
                       KvQuant kv = KvQuant::None);

// The largest context whose plan fits in `available` bytes (0 if not even the weights and scratch
// fit), rounded down to a multiple of 256 tokens.
int64_t largest_context(const ModelConfig& c, int64_t chunk, size_t available, const ModelWeights* native = nullptr,
                        KvQuant kv = KvQuant::None);

// "weights 15.0 GiB + KV cache 16.0 GiB (131072 tokens) + scratch 1.2 GiB = 32.2 GiB"
std::string describe_plan(const MemoryPlan& p);
std::string format_gib(size_t bytes);

}  // namespace folio
