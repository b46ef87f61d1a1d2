// The CUDA ops of the forward pass, callable from host code (the backend and the GPU tests).
// bf16 values travel as uint16_t in these signatures. Activations are row-major [tokens][features];
// every launch is asynchronous on `stream`, on the stream's device. The CPU reference of each op is
// in core/cpu/cpu_ops.h and tests/gpu compares them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace folio::cuda {

using bf16 = uint16_t;

// x[t] = table[tokens[t]] as fp32 (the residual stream).
void embedding(const bf16* table, const int32_t* tokens, int n, int hidden, float* x, cudaStream_t stream);

// out = bf16(x / sqrt(mean(x^2) + eps) * weight) per row; x fp32, weight fp32.
void rmsnorm(const float* x, const float* weight, int rows, int dim, float eps, bf16* out, cudaStream_t stream);

struct RopeArgs {
  const bf16* qkv = nullptr;     // [n][q_dim + 2 kv_dim], the fused projection
  const float* bias = nullptr;   // [q_dim + 2 kv_dim] or null
  const float* inv_freq = nullptr;  // [rotary_dim / 2]
  int n = 0;
  int64_t pos0 = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0, rotary_half = 0;
  bool adjacent_pairs = false;   // RopeLayout::AdjacentPairs, else rotate-half
  float attention_scale = 1.0f;
  bf16* q = nullptr;             // [n][n_heads][head_dim]
  bf16* k_cache = nullptr;       // [n_kv_heads][capacity][head_dim]; rows pos0.. are written
  bf16* v_cache = nullptr;
  int64_t capacity = 0;
  // Where a recorded step (CUDA graph) keeps its position: read on the device instead of pos0.
  const int64_t* pos_dev = nullptr;
};
// Adds the bias, rotates q and k, writes q and the chunk's keys and values into the cache.
void rope_qkv(const RopeArgs& a, cudaStream_t stream);

// The 8-bit KV cache (q8; the CPU reference is round_kv_row_q8 in core/model/quant.h): each head's
// row of K or V as int8 values in blocks of 32 (the last block of a row may be shorter) with one
// fp16 scale, amax / 127, per block. Tensor t is K (0) or V (1); each [n_kv_heads][capacity][...].
struct KvQ8Args {
  bf16* stage[2] = {nullptr, nullptr};        // bf16 rows [n_kv_heads][capacity][head_dim]
  int8_t* values[2] = {nullptr, nullptr};     // [n_kv_heads][capacity][head_dim]
  uint16_t* scales[2] = {nullptr, nullptr};   // fp16 bits, [n_kv_heads][capacity][blocks]
  int n_kv_heads = 0, head_dim = 0, blocks = 0;
  int64_t capacity = 0;
  int64_t pos0 = 0;  // the rows written: pos0 .. pos0 + n - 1 (pos0 = *pos_dev where given)
  int n = 0;
  const int64_t* pos_dev = nullptr;
};
// The stage's rows pos0 .. pos0 + n - 1 into 8-bit rows.
void kv_quantize_q8(const KvQ8Args& a, cudaStream_t stream);
// The 8-bit rows 0 .. rows - 1 expanded into the stage as bf16 (with pos_dev: 0 .. *pos_dev + n - 1,
// rows sizing the launch).
void kv_expand_q8(const KvQ8Args& a, int64_t rows, cudaStream_t stream);

// out[t][i] = bf16(silu(gu[t][i]) * gu[t][F + i]) for a fused gate|up of width 2F.
void swiglu(const bf16* gate_up, int n, int ffn, bf16* out, cudaStream_t stream);

// Conversions and fills (weights, tests).
void f32_to_bf16(const float* in, int64_t count, bf16* out, cudaStream_t stream);
void bf16_to_f32(const bf16* in, int64_t count, float* out, cudaStream_t stream);
// x[i] += y[i] (a tensor-parallel rank adds the summed projection to its residual stream).
void add_f32(float* x, const float* y, int64_t count, cudaStream_t stream);
// Deterministic normal(0, stddev) values from (seed, index): random-weight benchmarks fill on the GPU.
void fill_normal_bf16(bf16* out, int64_t count, uint64_t seed, float stddev, cudaStream_t stream);
void fill_bf16(bf16* out, int64_t count, float value, cudaStream_t stream);

// Which prefill kernel runs: Auto picks the Hopper kernel (TMA + wgmma, sm_90a) where the device
// and the build have it and the mma.sync kernel (sm_80 and later) elsewhere; Mma and Hopper force
// one (Hopper throws where it cannot run). Benchmarks and tests compare them.
enum class AttentionKernel { Auto = 0, Mma = 1, Hopper = 2 };
// The decode kernel (one query row): Auto runs the tensor-core kernel where it applies (head dims
// 64, 96 and 128; from the 8-bit cache when its scale rows are 4-byte aligned, i.e. capacity x
// blocks even) and the SIMT kernel elsewhere; Simt forces the SIMT kernel (benchmarks
// and tests compare them).
enum class DecodeKernel { Auto = 0, Simt = 1 };

// Attention over the KV cache. q: [n][n_heads][hd] at positions pos0..pos0+n-1; caches
// [n_kv_heads][capacity][hd] hold keys 0..pos0+n-1; out: [n][n_heads][hd]. Scale 1/sqrt(hd).
struct AttentionArgs {
  const bf16* q = nullptr;
  const bf16* k_cache = nullptr;
  const bf16* v_cache = nullptr;
  bf16* out = nullptr;
  int n = 0;
  int64_t pos0 = 0;
  int64_t capacity = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  // Optional tile list (sparse prefill): for head h and query tile i (kQueryTile rows), the key
  // tiles (kKeyTile keys) tile_index[tile_offset[h * (n_qtiles + 1) + i] .. tile_offset[... + 1])
  // are computed, in any order without repeats (each head has its own n_qtiles + 1 offsets, so
  // heads may sit anywhere in tile_index). Null = every causal tile (dense).
  const int32_t* tile_offset = nullptr;
  const int32_t* tile_index = nullptr;
  int query_mtiles = 2;  // mma.sync prefill kernel variant: m16 query tiles per warp (1 or 2)
  AttentionKernel kernel = AttentionKernel::Auto;
  DecodeKernel decode_kernel = DecodeKernel::Auto;
  // Decode in a recorded step (CUDA graph): the position is read here on the device, and pos0 is
  // the largest position the recording serves (it sizes the launch: key ranges beyond the real
  // position are empty).
  const int64_t* pos_dev = nullptr;
  // Decode from an 8-bit (q8) cache: int8 values in k_cache's layout and fp16 scales per row and
  // block of 32 values ([n_kv_heads][capacity][kv_blocks]); k_cache / v_cache are then unused.
  // Head dims 64, 96 and 128 (others expand the rows into bf16 first: kv_expand_q8).
  const int8_t* k_q8 = nullptr;
  const int8_t* v_q8 = nullptr;
  const uint16_t* k_scale = nullptr;
  const uint16_t* v_scale = nullptr;
  int kv_blocks = 0;
};
constexpr int kQueryTile = 128;
constexpr int kKeyTile = 64;

// Flash attention for a prefill chunk (any n >= 1); head dims 64, 96, 128.
void attention_prefill(const AttentionArgs& a, cudaStream_t stream);

// Split-K decode for n == 1: `partial` holds n_heads * kMaxDecodeSplits * (hd + 2) floats.
void attention_decode(const AttentionArgs& a, float* partial, int num_sms, cudaStream_t stream);

// Head dims the attention kernels accept (up to 256), and those with the fast tensor-core kernels
// (64, 96, 128; others use a simple kernel).
bool attention_head_dim_supported(int head_dim);
bool attention_head_dim_fast(int head_dim);

}  // namespace folio::cuda
