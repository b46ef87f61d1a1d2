// GGUF blocks on the GPU: the fused dequantize-GEMV of decode, the bf16 expansion ahead of a GEMM,
// the embedding gather and random blocks for benchmarks (kernels/quant_ops.h).
//
// Each format is described once (Fmt<T> below) by "units": a unit is the piece of a block one thread
// dequantizes, kRuns runs of 4 consecutive values starting at start(u), start(u) + kStride, ...
// chosen so that a warp's 32 threads read neighbouring bytes of the block (coalesced) and every value
// is computed with the CPU reference's fp32 operations in the same order (__fmul_rn / __fsub_rn: no
// contraction into a fused multiply-add).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/common/error.h"
#include "kernels/cuda_util.h"
#include "kernels/quant_ops.h"

namespace folio::cuda {

namespace {

__device__ __forceinline__ uint32_t ld32(const uint8_t* p) {  // 4-byte aligned
  return __ldg(reinterpret_cast<const unsigned int*>(p));
}
__device__ __forceinline__ uint32_t ld32_a2(const uint8_t* p) {  // 2-byte aligned
  const auto* q = reinterpret_cast<const unsigned short*>(p);
  return static_cast<uint32_t>(__ldg(q)) | (static_cast<uint32_t>(__ldg(q + 1)) << 16);
}
__device__ __forceinline__ float ldf16(const uint8_t* p) {
  return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(p))));
}
__device__ __forceinline__ uint32_t byte_of(uint32_t w, int i) { return (w >> (8 * i)) & 0xffu; }
// Exact int -> float for 0 <= q < 2^23 at full rate (a bit operation and an add; the I2F conversion
// runs at a quarter of the FP32 rate and bounded the GEMV): q as the mantissa of 2^23, minus 2^23.
__device__ __forceinline__ float u2f(uint32_t q) { return __fsub_rn(__uint_as_float(0x4B000000u | q), 8388608.0f); }
// The same for a signed byte (its bits in the low 8 of b).
__device__ __forceinline__ float s8f(uint32_t b) { return __fsub_rn(u2f((b & 0xffu) ^ 0x80u), 128.0f); }

template <DType T>
struct Fmt;

// Q8_0: f16 d, 32 int8. Unit u < 4: values 8u .. 8u + 7.
template <>
struct Fmt<DType::Q8_0> {
  static constexpr int kValues = 32, kBytes = 34, kUnits = 4, kRuns = 2, kStride = 4;
  __device__ static int start(int u) { return 8 * u; }
  __device__ static void values(const uint8_t* b, int u, float* v) {
    const float d = ldf16(b);
    const uint32_t w0 = ld32_a2(b + 2 + 8 * u), w1 = ld32_a2(b + 6 + 8 * u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[i] = __fmul_rn(d, s8f(byte_of(w0, i)));
      v[4 + i] = __fmul_rn(d, s8f(byte_of(w1, i)));
    }
  }
};

// Q4_0: f16 d, 16 bytes; byte i = value i (low nibble) | value i + 16 (high), offset 8.
// Unit u < 4: bytes 4u .. 4u + 3, values 4u.. and 16 + 4u..
template <>
struct Fmt<DType::Q4_0> {
  static constexpr int kValues = 32, kBytes = 18, kUnits = 4, kRuns = 2, kStride = 16;
  __device__ static int start(int u) { return 4 * u; }
  __device__ static void values(const uint8_t* b, int u, float* v) {
    const float d = ldf16(b);
    const uint32_t w = ld32_a2(b + 2 + 4 * u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t q = byte_of(w, i);
      v[i] = __fmul_rn(d, __fsub_rn(u2f(q & 15), 8.0f));
      v[4 + i] = __fmul_rn(d, __fsub_rn(u2f(q >> 4), 8.0f));
    }
  }
};

// Q4_1: f16 d, f16 m, 16 bytes of nibbles as Q4_0; x = d * q + m.
template <>
struct Fmt<DType::Q4_1> {
  static constexpr int kValues = 32, kBytes = 20, kUnits = 4, kRuns = 2, kStride = 16;
  __device__ static int start(int u) { return 4 * u; }
  __device__ static void values(const uint8_t* b, int u, float* v) {
    const float d = ldf16(b), m = ldf16(b + 2);
    const uint32_t w = ld32(b + 4 + 4 * u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t q = byte_of(w, i);
      v[i] = __fadd_rn(__fmul_rn(d, u2f(q & 15)), m);
      v[4 + i] = __fadd_rn(__fmul_rn(d, u2f(q >> 4)), m);
    }
  }
};

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block, its 12 bytes as words s0, s1, s2:
// bytes 0-3 (s0) low 6 bits of scales 0-3, their top bits the high bits of scales 4-7; bytes 4-7 (s1)
// the same for the mins; bytes 8-11 (s2) low 4 bits of scale | min << 4 of sub-blocks 4-7.
__device__ __forceinline__ void k_scale_min(int j, uint32_t s0, uint32_t s1, uint32_t s2, uint32_t* scale,
                                            uint32_t* min) {
  // both forms, then a select: the lanes of a warp hold sub-blocks on both sides of 4 (no divergence)
  const int i = j & 3;
  const uint32_t a = byte_of(s0, i), b = byte_of(s1, i), lo = byte_of(s2, i);
  *scale = j < 4 ? (a & 63) : ((lo & 0x0f) | ((a >> 6) << 4));
  *min = j < 4 ? (b & 63) : ((lo >> 4) | ((b >> 6) << 4));
}

// Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles; group g < 4 uses bytes [32g, 32g + 32):
// low nibbles are sub-block 2g (values 64g + l), high nibbles sub-block 2g + 1 (values 64g + 32 + l).
// Unit u = 8g + t: bytes 32g + 4t .. + 3. x = (d * scale) * q - dmin * min. Q5_K adds 32 bytes of
// fifth bits (bit j of qh[l] for value l of sub-block j) before the nibbles.
template <int BITS>
struct FmtK {
  static constexpr int kValues = 256, kBytes = BITS == 4 ? 144 : 176, kUnits = 32, kRuns = 2, kStride = 32;
  __device__ static int start(int u) { return 64 * (u >> 3) + 4 * (u & 7); }
  __device__ static void values(const uint8_t* b, int u, float* v) {
    const int g = u >> 3, t = u & 7;
    const uint32_t dd = ld32(b);
    const float d = __half2float(__ushort_as_half(static_cast<unsigned short>(dd & 0xffffu)));
    const float dmin = __half2float(__ushort_as_half(static_cast<unsigned short>(dd >> 16)));
    const uint32_t s0 = ld32(b + 4), s1 = ld32(b + 8), s2 = ld32(b + 12);
    uint32_t sc0, m0, sc1, m1;
    k_scale_min(2 * g, s0, s1, s2, &sc0, &m0);
    k_scale_min(2 * g + 1, s0, s1, s2, &sc1, &m1);
    const float d0 = __fmul_rn(d, u2f(sc0)), o0 = __fmul_rn(dmin, u2f(m0));
    const float d1 = __fmul_rn(d, u2f(sc1)), o1 = __fmul_rn(dmin, u2f(m1));
    const uint32_t w = ld32(b + (BITS == 4 ? 16 : 48) + 32 * g + 4 * t);
    uint32_t h = 0;
    if constexpr (BITS == 5) h = ld32(b + 16 + 4 * t);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint32_t lo = byte_of(w, i) & 15, hi = byte_of(w, i) >> 4;
      if constexpr (BITS == 5) {
        lo |= ((byte_of(h, i) >> (2 * g)) & 1) << 4;
        hi |= ((byte_of(h, i) >> (2 * g + 1)) & 1) << 4;
      }
      v[i] = __fsub_rn(__fmul_rn(d0, u2f(lo)), o0);
      v[4 + i] = __fsub_rn(__fmul_rn(d1, u2f(hi)), o1);
    }
  }
};
template <>
struct Fmt<DType::Q4_K> : FmtK<4> {};
template <>
struct Fmt<DType::Q5_K> : FmtK<5> {};

// Q6_K: ql[128], qh[64], int8 scales[16], f16 d (210 bytes: blocks are 2-byte aligned). In half h,
// for l < 32: quarter c of the half (values 128h + 32c + l) has its low 4 bits in ql[64h + l + 32 (c
// odd)] (low nibble for c < 2), its top 2 bits at bits 2c of qh[32h + l], scale scales[8h + 2c +
// l / 16]; x = (d * scale) * (q - 32). Unit u = 8h + t: l = 4t .. 4t + 3, all four quarters.
template <>
struct Fmt<DType::Q6_K> {
  static constexpr int kValues = 256, kBytes = 210, kUnits = 16, kRuns = 4, kStride = 32;
  __device__ static int start(int u) { return 128 * (u >> 3) + 4 * (u & 7); }
  __device__ static void values(const uint8_t* b, int u, float* v) {
    const int h = u >> 3, t = u & 7;
    const float d = ldf16(b + 208);
    const uint32_t a = ld32_a2(b + 64 * h + 4 * t), a2 = ld32_a2(b + 64 * h + 32 + 4 * t);
    const uint32_t qh = ld32_a2(b + 128 + 32 * h + 4 * t);
    const uint8_t* sc = b + 192 + 8 * h + t / 4;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const float scale = __fmul_rn(d, s8f(__ldg(sc + 2 * c)));
      const uint32_t lowbytes = (c & 1) ? a2 : a;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t low = c < 2 ? (byte_of(lowbytes, i) & 15) : (byte_of(lowbytes, i) >> 4);
        const uint32_t q = low | (((byte_of(qh, i) >> (2 * c)) & 3) << 4);
        v[4 * c + i] = __fmul_rn(scale, __fsub_rn(u2f(q), 32.0f));
      }
    }
  }
};

// bf16 rows (a float tensor beside quantized ones in a fused matrix): blocks of 8 values.
template <>
struct Fmt<DType::BF16> {
  static constexpr int kValues = 8, kBytes = 16, kUnits = 1, kRuns = 2, kStride = 4;
  __device__ static int start(int) { return 0; }
  __device__ static void values(const uint8_t* b, int, float* v) {
    const uint4 w = __ldg(reinterpret_cast<const uint4*>(b));
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[2 * i] = __uint_as_float(words[i] << 16);
      v[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
  }
};

__device__ __forceinline__ void bf16x4_to_f32(uint2 w, float* f) {
  f[0] = __uint_as_float(w.x << 16);
  f[1] = __uint_as_float(w.x & 0xffff0000u);
  f[2] = __uint_as_float(w.y << 16);
  f[3] = __uint_as_float(w.y & 0xffff0000u);
}
__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(a))) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(b))) << 16);
}

constexpr int kGemvWarps = 8;
constexpr int kGemvUnroll = 4;

// A GEMV row's lanes summed; lane 0 writes (or adds) the row's value.
template <GemvOut OUT>
__device__ __forceinline__ void store_row(float acc, int lane, void* __restrict__ y, int64_t row) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) {
    if constexpr (OUT == GemvOut::Bf16) static_cast<bf16*>(y)[row] = __bfloat16_as_ushort(__float2bfloat16_rn(acc));
    else if constexpr (OUT == GemvOut::F32) static_cast<float*>(y)[row] = acc;
    else static_cast<float*>(y)[row] += acc;
  }
}

// Calls fn.template operator()<O>() for the GemvOut value out.
template <typename Fn>
void with_out(GemvOut out, Fn&& fn) {
  switch (out) {
    case GemvOut::Bf16: fn.template operator()<GemvOut::Bf16>(); return;
    case GemvOut::F32: fn.template operator()<GemvOut::F32>(); return;
    case GemvOut::F32Accumulate: fn.template operator()<GemvOut::F32Accumulate>(); return;
  }
}

// One warp per row; lane i takes units i, i + 32, ... of the row (neighbouring bytes per warp).
template <DType T, GemvOut OUT>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_kernel(const uint8_t* __restrict__ w, int64_t rows, int cols,
                                                               const bf16* __restrict__ x, void* __restrict__ y) {
  using F = Fmt<T>;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int blocks = cols / F::kValues;
  const uint8_t* r = w + row * static_cast<int64_t>(blocks) * F::kBytes;
  const int units = blocks * F::kUnits;
  // one unit's products into acc
  auto unit = [&](int u, float& acc) {
    const int blk = u / F::kUnits, k = u - blk * F::kUnits;
    float v[F::kRuns * 4], xf[F::kRuns * 4];
    F::values(r + static_cast<int64_t>(blk) * F::kBytes, k, v);
    const int base = blk * F::kValues + F::start(k);
#pragma unroll
    for (int run = 0; run < F::kRuns; ++run)
      bf16x4_to_f32(__ldg(reinterpret_cast<const uint2*>(x + base + run * F::kStride)), xf + 4 * run);
#pragma unroll
    for (int i = 0; i < F::kRuns * 4; ++i) acc = fmaf(v[i], xf[i], acc);
  };
  // kGemvUnroll units per lane in one straight block (no branch between them), so that their loads
  // are all issued before the first is used: more bytes in flight per warp
  float part[kGemvUnroll] = {};
  int u = lane;
  for (; u + 32 * (kGemvUnroll - 1) < units; u += 32 * kGemvUnroll) {
#pragma unroll
    for (int k = 0; k < kGemvUnroll; ++k) unit(u + 32 * k, part[k]);
  }
  for (; u < units; u += 32) unit(u, part[0]);
  float acc = 0.0f;
#pragma unroll
  for (int k = 0; k < kGemvUnroll; ++k) acc += part[k];
  store_row<OUT>(acc, lane, y, row);
}

// ---- the integer-dot GEMV (Q4_K, Q5_K, Q6_K against activations at 8 bits)

// One warp per block of 32 activations: its amax, scale, rounded values and their sum.
__global__ void quantize_x_kernel(const bf16* __restrict__ x, int blocks, int8_t* __restrict__ q, float* __restrict__ d,
                                  float* __restrict__ s) {
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (b >= blocks) return;
  const float v = __uint_as_float(static_cast<uint32_t>(__ldg(reinterpret_cast<const unsigned short*>(x) + 32 * b + lane)) << 16);
  float amax = fabsf(v);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float scale = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  const int qi = __float2int_rn(v * inv);
  int sum = qi;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  q[32 * b + lane] = static_cast<int8_t>(qi);
  if (lane == 0) {
    d[b] = scale;
    s[b] = scale * static_cast<float>(sum);
  }
}

__device__ __forceinline__ uint4 ld128(const void* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

// One warp per row, 8 lanes per 256-value block (4 blocks per warp step): lane (g, h) takes the
// 16 bytes of nibbles 32g + 16h .. + 15, i.e. values 16h .. 16h + 15 of sub-blocks 2g (low
// nibbles) and 2g + 1 (high), and meets them with the activations in two dp4a chains. Per half
// sub-block: d * scale_j * d_x * dot; the min term -dmin * min_j * s_x once per sub-block (h = 0).
template <int BITS, GemvOut OUT>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_k_dp4a_kernel(const uint8_t* __restrict__ w, int64_t rows,
                                                                      int cols, const int8_t* __restrict__ xq,
                                                                      const float* __restrict__ xd,
                                                                      const float* __restrict__ xs, void* __restrict__ y) {
  constexpr int kBytes = BITS == 4 ? 144 : 176, kQs = BITS == 4 ? 16 : 48;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int nb = cols / 256;
  const uint8_t* r = w + row * static_cast<int64_t>(nb) * kBytes;
  const int sub = lane & 7, g = sub >> 1, h = sub & 1;
  float acc = 0.0f;
#pragma unroll 4
  for (int b = lane >> 3; b < nb; b += 4) {
    const uint8_t* blk = r + static_cast<int64_t>(b) * kBytes;
    const uint4 hdr = ld128(blk);
    const uint4 qs = ld128(blk + kQs + 32 * g + 16 * h);
    uint4 qh = make_uint4(0, 0, 0, 0);
    if constexpr (BITS == 5) qh = ld128(blk + 16 + 16 * h);
    const int j0 = 8 * b + 2 * g;  // the activation blocks of sub-blocks 2g and 2g + 1
    const uint4 x0 = ld128(xq + 32 * j0 + 16 * h), x1 = ld128(xq + 32 * (j0 + 1) + 16 * h);
    const uint32_t wq[4] = {qs.x, qs.y, qs.z, qs.w}, hq[4] = {qh.x, qh.y, qh.z, qh.w};
    const int a0[4] = {static_cast<int>(x0.x), static_cast<int>(x0.y), static_cast<int>(x0.z), static_cast<int>(x0.w)};
    const int a1[4] = {static_cast<int>(x1.x), static_cast<int>(x1.y), static_cast<int>(x1.z), static_cast<int>(x1.w)};
    int dot0 = 0, dot1 = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      uint32_t lo = wq[k] & 0x0f0f0f0fu, hi = (wq[k] >> 4) & 0x0f0f0f0fu;
      if constexpr (BITS == 5) {
        lo |= ((hq[k] >> (2 * g)) & 0x01010101u) << 4;
        hi |= ((hq[k] >> (2 * g + 1)) & 0x01010101u) << 4;
      }
      dot0 = __dp4a(static_cast<int>(lo), a0[k], dot0);
      dot1 = __dp4a(static_cast<int>(hi), a1[k], dot1);
    }
    uint32_t sc0, m0, sc1, m1;
    k_scale_min(2 * g, hdr.y, hdr.z, hdr.w, &sc0, &m0);
    k_scale_min(2 * g + 1, hdr.y, hdr.z, hdr.w, &sc1, &m1);
    const float d = __half2float(__ushort_as_half(static_cast<unsigned short>(hdr.x & 0xffffu)));
    const float dmin = __half2float(__ushort_as_half(static_cast<unsigned short>(hdr.x >> 16)));
    const float dx0 = __ldg(xd + j0), dx1 = __ldg(xd + j0 + 1);
    acc += d * (dx0 * static_cast<float>(dot0 * static_cast<int>(sc0)) + dx1 * static_cast<float>(dot1 * static_cast<int>(sc1)));
    if (h == 0) acc -= dmin * (static_cast<float>(m0) * __ldg(xs + j0) + static_cast<float>(m1) * __ldg(xs + j0 + 1));
  }
  store_row<OUT>(acc, lane, y, row);
}

// Q6_K (210-byte blocks, 2-byte aligned: 4-byte loads as two halves): 16 lanes per block, lane
// (h, t) takes values l = 4t .. 4t + 3 of half h in all four quarters c (value 128h + 32c + l: low
// 4 bits in ql[64h + 32 (c odd) + l], low nibble for c < 2; top 2 bits at 2c of qh[32h + l]; scale
// scales[8h + 2c + t / 4]). q - 32 as signed bytes (__vsub4) meets the activations in dp4a.
template <GemvOut OUT>
__global__ void __launch_bounds__(kGemvWarps * 32) gemv_q6k_dp4a_kernel(const uint8_t* __restrict__ w, int64_t rows,
                                                                        int cols, const int8_t* __restrict__ xq,
                                                                        const float* __restrict__ xd, void* __restrict__ y) {
  constexpr int kBytes = 210;
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int nb = cols / 256;
  const uint8_t* r = w + row * static_cast<int64_t>(nb) * kBytes;
  const int h = (lane >> 3) & 1, t = lane & 7;
  float acc = 0.0f;
#pragma unroll 2
  for (int b = lane >> 4; b < nb; b += 2) {
    const uint8_t* blk = r + static_cast<int64_t>(b) * kBytes;
    const uint32_t a = ld32_a2(blk + 64 * h + 4 * t), a2 = ld32_a2(blk + 64 * h + 32 + 4 * t);
    const uint32_t qh = ld32_a2(blk + 128 + 32 * h + 4 * t);
    const float d = ldf16(blk + 208);
    const uint8_t* sc = blk + 192 + 8 * h + t / 4;
    const int j0 = 8 * b + 4 * h;  // the activation block of quarter 0
    float part = 0.0f;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const uint32_t lowbytes = (c & 1) ? a2 : a;
      const uint32_t low = c < 2 ? (lowbytes & 0x0f0f0f0fu) : ((lowbytes >> 4) & 0x0f0f0f0fu);
      const uint32_t q = low | (((qh >> (2 * c)) & 0x03030303u) << 4);
      const int xw = __ldg(reinterpret_cast<const int*>(xq + 32 * (j0 + c) + 4 * t));
      const int dot = __dp4a(static_cast<int>(__vsub4(q, 0x20202020u)), xw, 0);
      const int scale = static_cast<int8_t>(__ldg(sc + 2 * c));
      part += __ldg(xd + j0 + c) * static_cast<float>(dot * scale);
    }
    acc += d * part;
  }
  store_row<OUT>(acc, lane, y, row);
}

// One thread per unit of the whole matrix.
template <DType T>
__global__ void to_bf16_kernel(const uint8_t* __restrict__ w, int64_t rows, int cols, bf16* __restrict__ out) {
  using F = Fmt<T>;
  const int blocks = cols / F::kValues;
  const int64_t per_row = static_cast<int64_t>(blocks) * F::kUnits;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows * per_row;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / per_row;
    const int u = static_cast<int>(i - row * per_row);
    const int blk = u / F::kUnits, k = u - blk * F::kUnits;
    float v[F::kRuns * 4];
    F::values(w + (row * blocks + blk) * F::kBytes, k, v);
    bf16* dst = out + row * cols + blk * F::kValues + F::start(k);
#pragma unroll
    for (int run = 0; run < F::kRuns; ++run)
      *reinterpret_cast<uint2*>(dst + run * F::kStride) =
          make_uint2(pack_bf16(v[4 * run], v[4 * run + 1]), pack_bf16(v[4 * run + 2], v[4 * run + 3]));
  }
}

template <DType T>
__global__ void embedding_kernel(const uint8_t* __restrict__ table, int cols, const int32_t* __restrict__ tokens,
                                 float* __restrict__ x) {
  using F = Fmt<T>;
  const int blocks = cols / F::kValues;
  const int units = blocks * F::kUnits;
  const int u = blockIdx.x * blockDim.x + threadIdx.x;
  if (u >= units) return;
  const int64_t token = tokens[blockIdx.y];
  const int blk = u / F::kUnits, k = u - blk * F::kUnits;
  float v[F::kRuns * 4];
  F::values(table + (token * blocks + blk) * F::kBytes, k, v);
  float* dst = x + static_cast<int64_t>(blockIdx.y) * cols + blk * F::kValues + F::start(k);
#pragma unroll
  for (int run = 0; run < F::kRuns; ++run)
#pragma unroll
    for (int i = 0; i < 4; ++i) dst[run * F::kStride + i] = v[4 * run + i];
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__device__ __forceinline__ void put_f16(uint8_t* p, float v) {
  *reinterpret_cast<unsigned short*>(p) = __half_as_ushort(__float2half_rn(v));
}

// One thread per block: random bytes, then sane scales (values with a standard deviation near 0.02).
__global__ void random_blocks_kernel(DType t, uint8_t* __restrict__ w, int64_t count, int bytes, uint64_t seed) {
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < count;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint8_t* p = w + b * bytes;
    uint64_t r = 0;
    for (int i = 0; i < bytes / 2; ++i) {
      if (i % 4 == 0) r = mix64(seed ^ (static_cast<uint64_t>(b) * 64 + static_cast<uint64_t>(i / 4)));
      reinterpret_cast<unsigned short*>(p)[i] = static_cast<unsigned short>(r >> (16 * (i % 4)));
    }
    switch (t) {
      case DType::Q8_0: put_f16(p, 2.7e-4f); break;
      case DType::Q4_0: put_f16(p, 4.3e-3f); break;
      case DType::Q4_1: put_f16(p, 4.3e-3f); put_f16(p + 2, -7.5f * 4.3e-3f); break;
      case DType::Q4_K: put_f16(p, 1.4e-4f); put_f16(p + 2, 1.4e-4f * 7.5f); break;
      case DType::Q5_K: put_f16(p, 6.9e-5f); put_f16(p + 2, 6.9e-5f * 15.5f); break;
      case DType::Q6_K: put_f16(p + 208, 1.5e-5f); break;
      default: break;
    }
  }
}

unsigned grid_for(int64_t count, int threads) {
  const int64_t b = (count + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535 * 64 ? b : 65535 * 64);
}

template <DType T>
void gemv_t(const void* w, int64_t rows, int64_t cols, const bf16* x, void* y, GemvOut out, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>((rows + kGemvWarps - 1) / kGemvWarps)), block(kGemvWarps * 32);
  const auto* wb = static_cast<const uint8_t*>(w);
  const int c = static_cast<int>(cols);
  with_out(out, [&]<GemvOut O>() { gemv_kernel<T, O><<<grid, block, 0, s>>>(wb, rows, c, x, y); });
}

template <DType T>
int64_t units_of(int64_t rows, int64_t cols) {
  return rows * (cols / Fmt<T>::kValues) * Fmt<T>::kUnits;
}

// Calls fn.template operator()<T>() for the device type of t.
template <typename Fn>
void dispatch(DType t, Fn&& fn) {
  switch (t) {
    case DType::Q8_0: fn.template operator()<DType::Q8_0>(); return;
    case DType::Q4_0: fn.template operator()<DType::Q4_0>(); return;
    case DType::Q4_1: fn.template operator()<DType::Q4_1>(); return;
    case DType::Q4_K: fn.template operator()<DType::Q4_K>(); return;
    case DType::Q5_K: fn.template operator()<DType::Q5_K>(); return;
    case DType::Q6_K: fn.template operator()<DType::Q6_K>(); return;
    case DType::BF16: fn.template operator()<DType::BF16>(); return;
    default: break;
  }
  throw Error(ErrorCode::Internal, std::string("no GPU kernel for weights of type ") + dtype_name(t));
}

void check_cols(DType t, int64_t cols) {
  const int64_t per = t == DType::BF16 ? 8 : block_elements(t);
  if (cols <= 0 || cols % per != 0)
    throw Error(ErrorCode::BadModelFile, std::string("a ") + dtype_name(t) + " weight row of " + std::to_string(cols) +
                                             " values is not a whole number of " + std::to_string(per) +
                                             "-value blocks");
}

}  // namespace

bool quant_on_device(DType t) {
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return true;
    default: return false;
  }
}

void quant_gemv(DType t, const void* w, int64_t rows, int64_t cols, const bf16* x, void* y, GemvOut out,
                cudaStream_t stream) {
  if (rows <= 0) return;
  check_cols(t, cols);
  dispatch(t, [&]<DType T>() { gemv_t<T>(w, rows, cols, x, y, out, stream); });
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

size_t quantized_x_bytes(int64_t cols) {
  const auto a = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t c = static_cast<size_t>(cols);
  return a(c) + 2 * a(c / 32 * sizeof(float));
}

QuantizedX carve_quantized_x(void* base, int64_t cols) {
  const auto a = [](size_t b) { return (b + 255) / 256 * 256; };
  auto* p = static_cast<uint8_t*>(base);
  const size_t c = static_cast<size_t>(cols);
  QuantizedX x;
  x.cols = cols;
  x.q = reinterpret_cast<int8_t*>(p);
  x.d = reinterpret_cast<float*>(p + a(c));
  x.s = reinterpret_cast<float*>(p + a(c) + a(c / 32 * sizeof(float)));
  return x;
}

void quantize_x(const bf16* x, int64_t cols, const QuantizedX& out, cudaStream_t stream) {
  if (cols <= 0 || cols % 32 != 0 || cols > out.cols)
    throw Error(ErrorCode::Internal, "quantize_x: " + std::to_string(cols) + " values for a scratch of " +
                                         std::to_string(out.cols));
  const int blocks = static_cast<int>(cols / 32);
  quantize_x_kernel<<<(blocks + 7) / 8, 256, 0, stream>>>(x, blocks, out.q, out.d, out.s);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

bool gemv_takes_quantized_x(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

void quant_gemv_qx(DType t, const void* w, int64_t rows, int64_t cols, const QuantizedX& x, void* y, GemvOut out,
                   cudaStream_t stream) {
  if (rows <= 0) return;
  check_cols(t, cols);
  if (!gemv_takes_quantized_x(t))
    throw Error(ErrorCode::Internal, std::string("no integer-dot GEMV for weights of type ") + dtype_name(t));
  const dim3 grid(static_cast<unsigned>((rows + kGemvWarps - 1) / kGemvWarps)), block(kGemvWarps * 32);
  const auto* wb = static_cast<const uint8_t*>(w);
  const int c = static_cast<int>(cols);
  with_out(out, [&]<GemvOut O>() {
    if (t == DType::Q4_K) gemv_k_dp4a_kernel<4, O><<<grid, block, 0, stream>>>(wb, rows, c, x.q, x.d, x.s, y);
    else if (t == DType::Q5_K) gemv_k_dp4a_kernel<5, O><<<grid, block, 0, stream>>>(wb, rows, c, x.q, x.d, x.s, y);
    else gemv_q6k_dp4a_kernel<O><<<grid, block, 0, stream>>>(wb, rows, c, x.q, x.d, y);
  });
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void quant_to_bf16(DType t, const void* w, int64_t rows, int64_t cols, bf16* out, cudaStream_t stream) {
  if (rows <= 0) return;
  check_cols(t, cols);
  dispatch(t, [&]<DType T>() {
    to_bf16_kernel<T><<<grid_for(units_of<T>(rows, cols), 256), 256, 0, stream>>>(static_cast<const uint8_t*>(w), rows,
                                                                                  static_cast<int>(cols), out);
  });
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void quant_embedding(DType t, const void* table, int64_t cols, const int32_t* tokens, int n, float* x,
                     cudaStream_t stream) {
  if (n <= 0) return;
  check_cols(t, cols);
  dispatch(t, [&]<DType T>() {
    const dim3 grid(grid_for(units_of<T>(1, cols), 128), static_cast<unsigned>(n));
    embedding_kernel<T><<<grid, 128, 0, stream>>>(static_cast<const uint8_t*>(table), static_cast<int>(cols), tokens, x);
  });
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void fill_random_blocks(DType t, void* w, int64_t rows, int64_t cols, uint64_t seed, cudaStream_t stream) {
  if (!quant_on_device(t)) throw Error(ErrorCode::Internal, "random blocks of a type that is not quantized");
  check_cols(t, cols);
  const int64_t count = rows * (cols / block_elements(t));
  random_blocks_kernel<<<grid_for(count, 256), 256, 0, stream>>>(t, static_cast<uint8_t*>(w), count,
                                                                 static_cast<int>(block_bytes(t)), seed);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace folio::cuda
