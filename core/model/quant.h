// GGUF block-quantized formats (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K): dequantization of rows to
// fp32, the reference that every faster path (quantized dot products, CUDA dequant) must match.
// Block layouts are those of ggml; `cols` is a multiple of the type's block size.
#pragma once

#include <cstdint>

#include "core/model/tensor.h"

namespace folio {

void dequantize_row(DType type, const uint8_t* src, float* out, int64_t cols);

}  // namespace folio
