// Dequantization of ggml's block formats. Each block is read field by field through memcpy: the
// data usually lies in a memory map at any byte offset, so no field is read through a cast pointer.
#include "core/model/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace folio {

namespace {

inline float read_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Q8_0: f16 d, then 32 int8 values; x = d * q.
void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = read_f16(b);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(static_cast<int8_t>(b[2 + i]));
}

// Q4_0: f16 d, then 16 bytes; byte i holds value i (low nibble) and value i + 16 (high nibble),
// each stored with an offset of 8; x = d * (q - 8).
void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = read_f16(b);
  const uint8_t* qs = b + 2;
  for (int i = 0; i < 16; ++i) {
    y[i] = d * static_cast<float>((qs[i] & 0x0f) - 8);
    y[i + 16] = d * static_cast<float>((qs[i] >> 4) - 8);
  }
}

// Q4_1: f16 d, f16 m, then 16 bytes of nibbles as Q4_0; x = d * q + m.
void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = read_f16(b);
  const float m = read_f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int i = 0; i < 16; ++i) {
    y[i] = d * static_cast<float>(qs[i] & 0x0f) + m;
    y[i + 16] = d * static_cast<float>(qs[i] >> 4) + m;
  }
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block, packed in 12 bytes:
// bytes 0-3 hold the low 6 bits of scales 0-3 (their top 2 bits: high bits of scales 4-7),
// bytes 4-7 the same for mins 0-3 / mins 4-7, bytes 8-11 the low 4 bits of scale (low nibble)
// and min (high nibble) of sub-blocks 4-7.
inline void k_scale_min(int j, const uint8_t* s, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles. Values go in 4 groups
// of 64: group g uses bytes [32g, 32g + 32); the low nibbles are sub-block 2g, the high nibbles
// sub-block 2g + 1. x = d * scale * q - dmin * min.
void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = read_f16(b);
  const float dmin = read_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int g = 0; g < 4; ++g) {
    int sc0, m0, sc1, m1;
    k_scale_min(2 * g, scales, &sc0, &m0);
    k_scale_min(2 * g + 1, scales, &sc1, &m1);
    const float d0 = d * static_cast<float>(sc0), o0 = dmin * static_cast<float>(m0);
    const float d1 = d * static_cast<float>(sc1), o1 = dmin * static_cast<float>(m1);
    const uint8_t* q = qs + 32 * g;
    float* out = y + 64 * g;
#if defined(__AVX2__)
    // the same products and differences as below (no fused multiply-add): identical results
    const __m256 d0v = _mm256_set1_ps(d0), o0v = _mm256_set1_ps(o0), d1v = _mm256_set1_ps(d1), o1v = _mm256_set1_ps(o1);
    for (int l = 0; l < 32; l += 8) {
      const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + l)));
      const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0x0f)));
      const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
      _mm256_storeu_ps(out + l, _mm256_sub_ps(_mm256_mul_ps(d0v, lo), o0v));
      _mm256_storeu_ps(out + l + 32, _mm256_sub_ps(_mm256_mul_ps(d1v, hi), o1v));
    }
#else
    for (int l = 0; l < 32; ++l) {
      out[l] = d0 * static_cast<float>(q[l] & 0x0f) - o0;
      out[l + 32] = d1 * static_cast<float>(q[l] >> 4) - o1;
    }
#endif
  }
}

// Q5_K: as Q4_K with 32 bytes of fifth bits (qh) before the nibbles: value l of sub-block j has
// its fifth bit in bit j of qh[l].
void dequant_q5_k(const uint8_t* b, float* y) {
  const float d = read_f16(b);
  const float dmin = read_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int g = 0; g < 4; ++g) {
    int sc0, m0, sc1, m1;
    k_scale_min(2 * g, scales, &sc0, &m0);
    k_scale_min(2 * g + 1, scales, &sc1, &m1);
    const float d0 = d * static_cast<float>(sc0), o0 = dmin * static_cast<float>(m0);
    const float d1 = d * static_cast<float>(sc1), o1 = dmin * static_cast<float>(m1);
    const uint8_t* q = qs + 32 * g;
    const int bit0 = 2 * g, bit1 = 2 * g + 1;
    float* out = y + 64 * g;
#if defined(__AVX2__)
    const __m256 d0v = _mm256_set1_ps(d0), o0v = _mm256_set1_ps(o0), d1v = _mm256_set1_ps(d1), o1v = _mm256_set1_ps(o1);
    const __m256i one = _mm256_set1_epi32(1);
    for (int l = 0; l < 32; l += 8) {
      const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + l)));
      const __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qh + l)));
      const __m256i lo = _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0x0f)),
                                         _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, bit0), one), 4));
      const __m256i hi = _mm256_or_si256(_mm256_srli_epi32(v, 4),
                                         _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, bit1), one), 4));
      _mm256_storeu_ps(out + l, _mm256_sub_ps(_mm256_mul_ps(d0v, _mm256_cvtepi32_ps(lo)), o0v));
      _mm256_storeu_ps(out + l + 32, _mm256_sub_ps(_mm256_mul_ps(d1v, _mm256_cvtepi32_ps(hi)), o1v));
    }
#else
    for (int l = 0; l < 32; ++l) {
      const int lo = (q[l] & 0x0f) | (((qh[l] >> bit0) & 1) << 4);
      const int hi = (q[l] >> 4) | (((qh[l] >> bit1) & 1) << 4);
      out[l] = d0 * static_cast<float>(lo) - o0;
      out[l + 32] = d1 * static_cast<float>(hi) - o1;
    }
#endif
  }
}

// Q6_K: 128 bytes of low nibbles (ql), 64 bytes of high 2-bit pairs (qh), 16 int8 scales (one per
// 16 values), f16 d. Two halves of 128 values; in half h, for l in [0, 32):
//   value l      = ql[64h + l] low nibble  | bits 0-1 of qh[32h + l]
//   value l + 32 = ql[64h + l + 32] low    | bits 2-3
//   value l + 64 = ql[64h + l] high nibble | bits 4-5
//   value l + 96 = ql[64h + l + 32] high   | bits 6-7
// each minus 32, times d * scales[8h + l/16 + 2 * quarter].
void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql_all = b;
  const uint8_t* qh_all = b + 128;
  const uint8_t* sc_all = b + 192;
  const float d = read_f16(b + 208);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = ql_all + 64 * h;
    const uint8_t* qh = qh_all + 32 * h;
    float* out = y + 128 * h;
#if defined(__AVX2__)
    const __m256i m15 = _mm256_set1_epi32(0x0f), m3 = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
    for (int l = 0; l < 32; l += 8) {
      const int base = 8 * h + l / 16;  // the 8 values share their scales
      const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l)));
      const __m256i a2 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l + 32)));
      const __m256i hb = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qh + l)));
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(a, m15), _mm256_slli_epi32(_mm256_and_si256(hb, m3), 4)),
          _mm256_or_si256(_mm256_and_si256(a2, m15), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hb, 2), m3), 4)),
          _mm256_or_si256(_mm256_srli_epi32(a, 4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hb, 4), m3), 4)),
          _mm256_or_si256(_mm256_srli_epi32(a2, 4), _mm256_slli_epi32(_mm256_srli_epi32(hb, 6), 4)),
      };
      for (int c = 0; c < 4; ++c) {
        const float scale = d * static_cast<float>(static_cast<int8_t>(sc_all[base + 2 * c]));
        _mm256_storeu_ps(out + l + 32 * c,
                         _mm256_mul_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(_mm256_sub_epi32(q[c], off))));
      }
    }
#else
    for (int l = 0; l < 32; ++l) {
      const int base = 8 * h + l / 16;
      const int q0 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q1 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * static_cast<float>(static_cast<int8_t>(sc_all[base + 0])) * static_cast<float>(q0);
      out[l + 32] = d * static_cast<float>(static_cast<int8_t>(sc_all[base + 2])) * static_cast<float>(q1);
      out[l + 64] = d * static_cast<float>(static_cast<int8_t>(sc_all[base + 4])) * static_cast<float>(q2);
      out[l + 96] = d * static_cast<float>(static_cast<int8_t>(sc_all[base + 6])) * static_cast<float>(q3);
    }
#endif
  }
}

// ---- Quantizers (min/max per block, round to nearest) ----

// Stores v as f16 at p and returns the value the reader will see.
inline float write_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
  return f16_to_f32(h);
}

inline int round_clamp(float v, int lo, int hi) {
  return std::clamp(static_cast<int>(std::lround(v)), lo, hi);
}

void quant_q8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[i]));
  const float d = write_f16(b, amax / 127.0f);
  const float id = d > 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < 32; ++i) b[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(round_clamp(x[i] * id, -127, 127)));
}

void quant_q4_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[i]));
  const float d = write_f16(b, amax / 7.0f);
  const float id = d > 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < 16; ++i)
    b[2 + i] = static_cast<uint8_t>(round_clamp(x[i] * id + 8.0f, 0, 15) |
                                    (round_clamp(x[i + 16] * id + 8.0f, 0, 15) << 4));
}

void quant_q4_1(const float* x, uint8_t* b) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < 32; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  const float d = write_f16(b, (hi - lo) / 15.0f);
  const float m = write_f16(b + 2, lo);
  const float id = d > 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < 16; ++i)
    b[4 + i] = static_cast<uint8_t>(round_clamp((x[i] - m) * id, 0, 15) |
                                    (round_clamp((x[i + 16] - m) * id, 0, 15) << 4));
}

// Q4_K / Q5_K (levels 15 or 31): per sub-block of 32 a scale (max - min) / levels and an offset
// -min (min clamped to <= 0, as the format stores a non-negative min that is subtracted), each
// then quantized to 6 bits against the block's d and dmin.
void quant_q45_k(const float* x, uint8_t* b, int levels) {
  float scale[8], offset[8];
  float max_scale = 0.0f, max_offset = 0.0f;
  for (int j = 0; j < 8; ++j) {
    float lo = 0.0f, hi = x[32 * j];
    for (int i = 0; i < 32; ++i) lo = std::min(lo, x[32 * j + i]), hi = std::max(hi, x[32 * j + i]);
    scale[j] = (hi - lo) / static_cast<float>(levels);
    offset[j] = -lo;
    max_scale = std::max(max_scale, scale[j]);
    max_offset = std::max(max_offset, offset[j]);
  }
  const float d = write_f16(b, max_scale / 63.0f);
  const float dmin = write_f16(b + 2, max_offset / 63.0f);
  int sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = d > 0.0f ? round_clamp(scale[j] / d, 0, 63) : 0;
    mn[j] = dmin > 0.0f ? round_clamp(offset[j] / dmin, 0, 63) : 0;
  }
  uint8_t* s = b + 4;
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
  uint8_t* qh = b + 16;
  uint8_t* qs = b + (levels == 15 ? 16 : 48);
  if (levels == 31) std::memset(qh, 0, 32);
  for (int j = 0; j < 8; ++j) {
    const float step = d * static_cast<float>(sc[j]);
    const float off = dmin * static_cast<float>(mn[j]);
    const float id = step > 0.0f ? 1.0f / step : 0.0f;
    for (int l = 0; l < 32; ++l) {
      const int q = round_clamp((x[32 * j + l] + off) * id, 0, levels);
      uint8_t& byte = qs[32 * (j / 2) + l];
      if (j % 2 == 0) byte = static_cast<uint8_t>(q & 15);
      else byte = static_cast<uint8_t>(byte | ((q & 15) << 4));
      if (levels == 31) qh[l] = static_cast<uint8_t>(qh[l] | (((q >> 4) & 1) << j));
    }
  }
}

// Q6_K: per 16 values a signed scale max|x| / 31, quantized to int8 against the block's d.
void quant_q6_k(const float* x, uint8_t* b) {
  float scale[16], max_abs_scale = 0.0f;
  for (int s = 0; s < 16; ++s) {
    float amax = 0.0f;
    for (int i = 0; i < 16; ++i) amax = std::max(amax, std::abs(x[16 * s + i]));
    scale[s] = amax / 31.0f;
    max_abs_scale = std::max(max_abs_scale, scale[s]);
  }
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  const float d = write_f16(b + 208, max_abs_scale / 127.0f);
  for (int s = 0; s < 16; ++s) sc[s] = static_cast<int8_t>(d > 0.0f ? round_clamp(scale[s] / d, -128, 127) : 0);
  std::memset(ql, 0, 192);
  // value i = 128h + 32c + l: scale index 8h + 2c + l/16 (as the reader's layout comment says)
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, c = (i % 128) / 32, l = i % 32;
    const float step = d * static_cast<float>(sc[8 * h + 2 * c + l / 16]);
    const int q = step != 0.0f ? round_clamp(x[i] / step + 32.0f, 0, 63) : 32;
    uint8_t& low = ql[64 * h + l + (c % 2) * 32];
    low = static_cast<uint8_t>(low | (c < 2 ? (q & 15) : (q & 15) << 4));
    qh[32 * h + l] = static_cast<uint8_t>(qh[32 * h + l] | ((q >> 4) << (2 * c)));
  }
}

}  // namespace

void dequantize_row(DType type, const uint8_t* src, float* out, int64_t cols) {
  const int64_t per_block = block_elements(type);
  const size_t bytes = block_bytes(type);
  const int64_t blocks = cols / per_block;
  void (*fn)(const uint8_t*, float*) = nullptr;
  switch (type) {
    case DType::Q8_0: fn = dequant_q8_0; break;
    case DType::Q4_0: fn = dequant_q4_0; break;
    case DType::Q4_1: fn = dequant_q4_1; break;
    case DType::Q4_K: fn = dequant_q4_k; break;
    case DType::Q5_K: fn = dequant_q5_k; break;
    case DType::Q6_K: fn = dequant_q6_k; break;
    case DType::F32:
      std::memcpy(out, src, static_cast<size_t>(cols) * 4);
      return;
    case DType::F16:
    case DType::BF16:
      for (int64_t i = 0; i < cols; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = type == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
      return;
  }
  for (int64_t b = 0; b < blocks; ++b) fn(src + static_cast<size_t>(b) * bytes, out + b * per_block);
}

void quantize_row(DType type, const float* x, uint8_t* out, int64_t cols) {
  const int64_t per_block = block_elements(type);
  const size_t bytes = block_bytes(type);
  for (int64_t b = 0; b < cols / per_block; ++b) {
    const float* xb = x + b * per_block;
    uint8_t* ob = out + static_cast<size_t>(b) * bytes;
    switch (type) {
      case DType::Q8_0: quant_q8_0(xb, ob); break;
      case DType::Q4_0: quant_q4_0(xb, ob); break;
      case DType::Q4_1: quant_q4_1(xb, ob); break;
      case DType::Q4_K: quant_q45_k(xb, ob, 15); break;
      case DType::Q5_K: quant_q45_k(xb, ob, 31); break;
      case DType::Q6_K: quant_q6_k(xb, ob); break;
      case DType::F32: std::memcpy(ob, xb, 4); break;
      case DType::F16: {
        const uint16_t h = f32_to_f16(*xb);
        std::memcpy(ob, &h, 2);
        break;
      }
      case DType::BF16: {
        const uint16_t h = f32_to_bf16(*xb);
        std::memcpy(ob, &h, 2);
        break;
      }
    }
  }
}

float quantize_kv_row_fp8(const float* x, int64_t n, uint8_t* codes) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (!(amax > 0.0f) || !std::isfinite(amax)) {
    std::fill(codes, codes + n, uint8_t{0});
    return amax > 0.0f ? amax : 0.0f;  // inf / NaN rows stay visible as a non-finite scale
  }
  const float scale = amax / 448.0f;
  const float inv = 1.0f / scale;
  for (int64_t i = 0; i < n; ++i) codes[i] = f32_to_e4m3(x[i] * inv);
  return scale;
}

void dequantize_kv_row_fp8(const uint8_t* codes, int64_t n, float scale, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = e4m3_to_f32(codes[i]) * scale;
}

void round_kv_row_fp8(float* x, int64_t n) {
  uint8_t codes[512];
  for (int64_t at = 0; at < n; at += 512) {  // head dims are at most 256; longer rows in pieces
    const int64_t m = std::min<int64_t>(512, n - at);
    const float scale = quantize_kv_row_fp8(x + at, m, codes);
    if (!std::isfinite(scale)) continue;
    dequantize_kv_row_fp8(codes, m, scale, x + at);
  }
}

void round_kv_row_q8(float* x, int64_t n) {
  for (int64_t b = 0; b < n; b += 32) {
    const int64_t e = std::min(n, b + 32);
    float amax = 0.0f;
    for (int64_t i = b; i < e; ++i) amax = std::max(amax, std::fabs(x[i]));
    if (!(amax > 0.0f) || !std::isfinite(amax)) continue;  // zeros stay; non-finite rows stay visible
    const float d = f16_to_f32(f32_to_f16(amax / 127.0f));
    if (!(d > 0.0f)) {  // below fp16's smallest step: nothing to keep
      std::fill(x + b, x + e, 0.0f);
      continue;
    }
    const float inv = 1.0f / d;
    for (int64_t i = b; i < e; ++i) x[i] = std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f) * d;
  }
}

const char* kv_quant_name(KvQuant q) {
  switch (q) {
    case KvQuant::Fp8: return "fp8";
    case KvQuant::Q8: return "q8";
    case KvQuant::None: break;
  }
  return "native";
}

void round_kv_row(KvQuant q, float* x, int64_t n) {
  if (q == KvQuant::Fp8) round_kv_row_fp8(x, n);
  else if (q == KvQuant::Q8) round_kv_row_q8(x, n);
}

}  // namespace folio
