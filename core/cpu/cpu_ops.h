// The CPU reference of every op of the forward pass, in fp32. The CUDA backend's ops are tested
// against these on the same inputs. Activations are row-major [tokens][features].
#pragma once

#include <cstdint>
#include <span>

#include "core/common/thread_pool.h"
#include "core/model/model_config.h"
#include "core/model/tensor.h"

namespace folio::cpu {

// out[t] = table[tokens[t]] (rows converted to fp32).
void embedding(const TensorView& table, std::span<const int32_t> tokens, float* out);

// out = x / sqrt(mean(x^2) + eps) * weight, per row of `dim` values.
void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out);

// y[n, m] = x[n, k] W[m, k]^T (+ bias[m]); W in any stored dtype: block-quantized W in integer
// dot products with x rounded to 8 bits per block of 32, float W dequantized per row panel.
void matmul(ThreadPool& pool, const float* x, int64_t n, const TensorView& w, const float* bias, float* y);

// Rotates heads in place: x is [n][n_heads * head_dim] (row stride `stride` floats); token t sits
// at position positions[t]. cos/sin of pos * inv_freq[i] are multiplied by table.attention_scale.
void rope(float* x, int64_t n, int64_t stride, int n_heads, int head_dim, std::span<const int32_t> positions,
          const RopeTable& table, RopeLayout layout);

// Causal attention with GQA for n new queries at positions [pos0, pos0 + n).
// q: [n][n_heads * head_dim]; k_cache, v_cache: [n_kv_heads][cache_stride][head_dim] holding keys
// and values for positions [0, pos0 + n); out: [n][n_heads * head_dim]. Scale 1/sqrt(head_dim).
void attention(ThreadPool& pool, const float* q, int64_t n, int64_t pos0, const float* k_cache, const float* v_cache,
               int64_t cache_stride, int n_heads, int n_kv_heads, int head_dim, float* out);

// out = silu(gate) * up, elementwise over count values.
void swiglu(const float* gate, const float* up, int64_t count, float* out);

// x += y, elementwise.
void add_inplace(float* x, const float* y, int64_t count);

}  // namespace folio::cpu
