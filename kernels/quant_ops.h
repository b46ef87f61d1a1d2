// Weights that stay in their GGUF blocks on the GPU (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K; bf16 rows
// too, so a fused matrix may mix types). Decode (one token) runs a fused dequantize-GEMV that reads
// every weight byte once; a step of many tokens expands the matrix into a bf16 scratch just ahead of
// a cuBLASLt GEMM (quant_to_bf16). Every value is dequantized with the same fp32 operations as the
// CPU reference (core/model/quant.cpp, no fused multiply-add), so the bf16 expansion equals the CPU's
// dequantized value rounded to bf16.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/model/tensor.h"
#include "kernels/cuda_ops.h"

namespace folio::cuda {

// Whether the GPU keeps `t` in its stored blocks (the quantized types above).
bool quant_on_device(DType t);

// How a GEMV writes its rows: bf16, fp32, or added to fp32 (the residual stream).
enum class GemvOut { Bf16, F32, F32Accumulate };

// y[r] (+)= sum_k W[r][k] x[k] for rows r in [0, rows); W in `t`'s blocks (or bf16), row-major with
// `cols` values per row (a whole number of blocks); x is bf16 [cols]; fp32 accumulation.
void quant_gemv(DType t, const void* w, int64_t rows, int64_t cols, const bf16* x, void* y, GemvOut out,
                cudaStream_t stream);

// Activations at 8 bits for the integer-dot GEMV of Q4_K, Q5_K and Q6_K weights, as the CPU backend
// quantizes them (core/cpu/cpu_ops.cpp): per block of 32 values x ~ d * q with d = amax / 127,
// q = round-to-nearest-even(x * 127 / amax), and s = d * sum(q) (the term a block's min meets).
struct QuantizedX {
  int8_t* q = nullptr;  // [cols]
  float* d = nullptr;   // [cols / 32]
  float* s = nullptr;   // [cols / 32]
  int64_t cols = 0;
};
// Device bytes for the activations of a row of `cols` values (a whole number of 32-value blocks).
size_t quantized_x_bytes(int64_t cols);
// The pieces of a QuantizedX laid out from `base` (quantized_x_bytes(cols) of device memory).
QuantizedX carve_quantized_x(void* base, int64_t cols);
void quantize_x(const bf16* x, int64_t cols, const QuantizedX& out, cudaStream_t stream);
// Whether quant_gemv_qx serves weights of type t (Q4_K, Q5_K, Q6_K: the integer-dot kernels).
bool gemv_takes_quantized_x(DType t);
// y[r] (+)= sum_k W[r][k] x[k] with x quantized (quantize_x): 8-bit integer dot products per
// half sub-block (dp4a), each scaled in fp32 by the weight's and the activation's scales. The
// result differs from quant_gemv's by the rounding of the activations (as the CPU backend's).
void quant_gemv_qx(DType t, const void* w, int64_t rows, int64_t cols, const QuantizedX& x, void* y, GemvOut out,
                   cudaStream_t stream);

// out[rows][cols] = W as bf16 (each value as the CPU dequantizes it, rounded to nearest even).
void quant_to_bf16(DType t, const void* w, int64_t rows, int64_t cols, bf16* out, cudaStream_t stream);

// x[i][:] = row tokens[i] of the table (in `t`'s blocks), as fp32.
void quant_embedding(DType t, const void* table, int64_t cols, const int32_t* tokens, int n, float* x,
                     cudaStream_t stream);

// Random blocks for benchmarks at real sizes: random quants, scales chosen so that values have a
// standard deviation near 0.02 (their output means nothing). Deterministic in `seed`.
void fill_random_blocks(DType t, void* w, int64_t rows, int64_t cols, uint64_t seed, cudaStream_t stream);

}  // namespace folio::cuda
