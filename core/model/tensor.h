// Views of weight tensors as they lie in memory (usually inside a memory-mapped file).
// A 2-D weight is row-major [rows][cols]; a projection W computes y = x W^T, so rows = outputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace folio {

// Float types, and the GGUF block-quantized types (a row is a whole number of blocks).
enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K };
const char* dtype_name(DType t);
bool is_quantized(DType t);
int64_t block_elements(DType t);  // values per block: 1 for float types, 32 or 256 otherwise
size_t block_bytes(DType t);      // bytes per block
size_t dtype_size(DType t);       // bytes per value of a float type (block_bytes for them)
inline size_t row_bytes(DType t, int64_t cols) {
  return static_cast<size_t>(cols / block_elements(t)) * block_bytes(t);
}

struct TensorView {
  DType dtype = DType::F32;
  int64_t rows = 0;  // 1 for a vector
  int64_t cols = 0;
  const void* data = nullptr;

  bool empty() const { return data == nullptr; }
  int64_t numel() const { return rows * cols; }
  size_t bytes() const { return static_cast<size_t>(rows) * row_bytes(dtype, cols); }
  // Rows [first, first + count) as a view (fused projections are split this way, without a copy).
  TensorView row_slice(int64_t first, int64_t count) const {
    TensorView v = *this;
    v.rows = count;
    v.data = static_cast<const uint8_t*>(data) + static_cast<size_t>(first) * row_bytes(dtype, cols);
    return v;
  }
};

// Converts one row (cols values) to fp32 (dequantizes block types).
void row_to_f32(const TensorView& t, int64_t row, float* out);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);  // round to nearest even
uint16_t f32_to_f16(float f);
// FP8 E4M3 (OCP "e4m3fn": bias 7, no infinities, 0x7F/0xFF NaN, largest finite 448): round to
// nearest even, values past 448 saturate to +-448 (CUDA's __nv_cvt_float_to_fp8 with satfinite).
uint8_t f32_to_e4m3(float f);
float e4m3_to_f32(uint8_t v);

}  // namespace folio
