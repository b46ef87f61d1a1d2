// GGUF block-quantized formats (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K): dequantization of rows to
// fp32, the reference that every faster path (quantized dot products, CUDA dequant) must match.
// Block layouts are those of ggml; `cols` is a multiple of the type's block size.
#pragma once

#include <cstdint>

#include "core/model/tensor.h"

namespace folio {

void dequantize_row(DType type, const uint8_t* src, float* out, int64_t cols);

// The inverse, for making quantized weights in tests and benchmarks (random models): each block
// from its own min/max (round to nearest), not llama.cpp's error-minimising search, so a file
// quantized here is a little less accurate than one from llama.cpp. `out` holds
// row_bytes(type, cols) bytes; cols must be a multiple of block_elements(type).
void quantize_row(DType type, const float* x, uint8_t* out, int64_t cols);

// The 8-bit KV cache (--kv-dtype fp8): each head's K or V row of one token (head_dim values) as FP8
// E4M3 codes with one fp32 scale, amax / 448 (a row of zeros: scale 0, codes 0). A row is written
// once and never rescaled, so decode appends without touching earlier tokens. Returns the scale.
float quantize_kv_row_fp8(const float* x, int64_t n, uint8_t* codes);
void dequantize_kv_row_fp8(const uint8_t* codes, int64_t n, float scale, float* out);
// Both in place: what a reader of the 8-bit cache sees (the CPU backend keeps these values in fp32).
void round_kv_row_fp8(float* x, int64_t n);

// The two 8-bit KV formats (--kv-dtype): FP8 E4M3 rows as above, or Q8 blocks: int8 values in blocks
// of 32 (a row's last block may be shorter) with one fp16 scale each, amax / 127 (GGUF Q8_0's rule).
// Q8 keeps more of the model: SmolLM2 at 8K tokens, perplexity +0.17% against +1.00% for FP8
// (docs/quantized-gpu.md).
enum class KvQuant : uint8_t { None, Fp8, Q8 };
const char* kv_quant_name(KvQuant q);  // "native", "fp8", "q8"
void round_kv_row_q8(float* x, int64_t n);
void round_kv_row(KvQuant q, float* x, int64_t n);

}  // namespace folio
