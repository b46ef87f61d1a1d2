#include "core/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif


namespace folio::cpu {

namespace {

// 8 floats; with -march=x86-64-v3 one AVX2 register, elsewhere the compiler splits it.
typedef float v8f __attribute__((vector_size(32)));

inline v8f load8(const float* p) {
  v8f v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

inline float hsum(v8f v) {
  float s = 0.0f;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

// c[i][j] = dot(a_i, b_j) over k, for MR rows of a (stride lda) and NR rows of b (stride ldb).
template <int MR, int NR>
inline void dot_block(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k, float* c, int64_t ldc) {
  v8f acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = v8f{};
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    v8f av[MR];
    for (int i = 0; i < MR; ++i) av[i] = load8(a + i * lda + p);
    for (int j = 0; j < NR; ++j) {
      v8f bv = load8(b + j * ldb + p);
      for (int i = 0; i < MR; ++i) acc[i][j] += av[i] * bv;
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t q = p; q < k; ++q) s += a[i * lda + q] * b[j * ldb + q];
      c[i * ldc + j] = s;
    }
  }
}

template <int MR>
inline void dot_block_rows(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k, float* c, int64_t ldc,
                           int nr) {
  if (nr == 2) dot_block<MR, 2>(a, lda, b, ldb, k, c, ldc);
  else dot_block<MR, 1>(a, lda, b, ldb, k, c, ldc);
}

// C[n][m] (stride ldc) = A[n][k] B[m][k]^T, all fp32.
void gemm_nt(const float* a, int64_t lda, int64_t n, const float* b, int64_t ldb, int64_t m, int64_t k, float* c,
             int64_t ldc) {
  constexpr int MR = 4, NR = 2;
  for (int64_t i = 0; i < n; i += MR) {
    const int mr = static_cast<int>(std::min<int64_t>(MR, n - i));
    for (int64_t j = 0; j < m; j += NR) {
      const int nr = static_cast<int>(std::min<int64_t>(NR, m - j));
      const float* ap = a + i * lda;
      const float* bp = b + j * ldb;
      float* cp = c + i * ldc + j;
      switch (mr) {
        case 4: dot_block_rows<4>(ap, lda, bp, ldb, k, cp, ldc, nr); break;
        case 3: dot_block_rows<3>(ap, lda, bp, ldb, k, cp, ldc, nr); break;
        case 2: dot_block_rows<2>(ap, lda, bp, ldb, k, cp, ldc, nr); break;
        default: dot_block_rows<1>(ap, lda, bp, ldb, k, cp, ldc, nr); break;
      }
    }
  }
}

// Decode (few tokens): dot products straight from the stored 16-bit weights, no fp32 panel.
typedef uint16_t v8u16 __attribute__((vector_size(16)));
typedef uint32_t v8u32 __attribute__((vector_size(32)));

inline v8f load8_bf16(const uint16_t* p) {
  v8u16 h;
  __builtin_memcpy(&h, p, sizeof(h));
  v8u32 w = __builtin_convertvector(h, v8u32) << 16;
  v8f f;
  __builtin_memcpy(&f, &w, sizeof(f));
  return f;
}

inline v8f load8_f16(const uint16_t* p) {
#if defined(__F16C__)
  __m128i h;
  __builtin_memcpy(&h, p, sizeof(h));
  __m256 f = _mm256_cvtph_ps(h);
  v8f out;
  __builtin_memcpy(&out, &f, sizeof(out));
  return out;
#else
  v8f out;
  for (int i = 0; i < 8; ++i) out[i] = f16_to_f32(p[i]);
  return out;
#endif
}

template <v8f (*Load)(const uint16_t*), float (*Scalar)(uint16_t)>
inline float dot_16bit(const float* x, const uint16_t* w, int64_t k) {
  v8f acc0{}, acc1{}, acc2{}, acc3{};
  int64_t p = 0;
  for (; p + 32 <= k; p += 32) {
    acc0 += load8(x + p) * Load(w + p);
    acc1 += load8(x + p + 8) * Load(w + p + 8);
    acc2 += load8(x + p + 16) * Load(w + p + 16);
    acc3 += load8(x + p + 24) * Load(w + p + 24);
  }
  for (; p + 8 <= k; p += 8) acc0 += load8(x + p) * Load(w + p);
  float s = hsum((acc0 + acc1) + (acc2 + acc3));
  for (; p < k; ++p) s += x[p] * Scalar(w[p]);
  return s;
}

void gemv_16bit(const float* x, int64_t n, const TensorView& w, int64_t j0, int64_t rows, float* y, int64_t ldy) {
  const int64_t k = w.cols;
  const uint16_t* base = static_cast<const uint16_t*>(w.data);
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* wr = base + (j0 + r) * k;
    for (int64_t i = 0; i < n; ++i)
      y[i * ldy + j0 + r] = w.dtype == DType::BF16 ? dot_16bit<load8_bf16, bf16_to_f32>(x + i * k, wr, k)
                                                   : dot_16bit<load8_f16, f16_to_f32>(x + i * k, wr, k);
  }
}

// ---- GGUF block-quantized weights ----
//
// No fp32 copy of the weights is made. The activations are quantized once per call to 8 bits
// per block of 32 (x ~ d * q, as llama.cpp's Q8_0/Q8_1), and each weight block meets each
// token's block in an integer dot product (AVX2: maddubs/madd), scaled by d_w * d_x:
//  * Q4_0, Q4_1, Q8_0: one activation block per weight block. Q4_0's offset of 8 and Q4_1's min
//    enter through s = d_x * sum(q_x).
//  * Q4_K, Q5_K, Q6_K: the 256 values of a super-block are 8 sub-blocks of 32 that line up with
//    8 activation blocks. A sub-block's 6-bit scale (Q6_K: two int8 scales, one per 16) is
//    applied in the integer multiply-add (madd against the scale instead of 1), so per 32
//    values the float work is that of Q4_1: one conversion and one multiply-add by d * d_x.
//    Q4_K/Q5_K's min enters as for Q4_1 (-dmin * min_j * s_j); Q6_K's values q - 32 are signed
//    (|q - 32| <= 32 times the activation's sign, as Q8_0's).
// The result differs from the fp32 one by the rounding of the activations (typically 0.5-1% rms
// of the outputs, as in llama.cpp, whose K-quant kernels round to one scale per 256).
// Small matmuls (kInlineMacs) run on the calling thread: waking the pool costs more.
// Prefill runs the same kernels on tiles of 2 rows x 4 tokens (each weight block unpacked once
// per tile), and is faster than dequantizing panels to fp32 for the fp32 kernel (measured in
// docs/cpu-quant.md); the panel path below remains for 16-bit weights.

// From this many tokens the activations are quantized on the pool's threads.
constexpr int64_t kParallelQuantizeTokens = 16;

inline float load_half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return f16_to_f32(h);
#endif
}

// One block of 32 activations at 8 bits.
struct QxBlock {
  float d;  // scale: x ~ d * q
  float s;  // d * sum(q)
  int8_t q[32];
};
constexpr int kQxBlockFloats = sizeof(QxBlock) / sizeof(float);  // the stride of a gather over blocks
static_assert(sizeof(QxBlock) % sizeof(float) == 0);

void quantize_x_block(const float* x, QxBlock* out) {
#if defined(__AVX2__)
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
         v3 = _mm256_loadu_ps(x + 24);
  __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                            _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float amax = _mm_cvtss_f32(m4);
  const float d = amax / 127.0f;
  const __m256 id = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  // round to nearest even (the default rounding mode), as std::nearbyint in the scalar version
  __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, id)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, id)),
          i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, id)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, id));
  __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
  s4 = _mm_hadd_epi32(s4, s4);
  s4 = _mm_hadd_epi32(s4, s4);
  // packs interleave the 128-bit lanes; the permute puts the 32 values back in order
  __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out->q), p);
  out->d = d;
  out->s = d * static_cast<float>(_mm_cvtsi128_si32(s4));
#else
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[i]));
  const float d = amax / 127.0f;
  const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
  int sum = 0;
  for (int i = 0; i < 32; ++i) {
    const float v = x[i] * id;
    // x * id of the largest value may come out a hair above 127: clamp it, not zero it (NaN: 0)
    const float c = std::clamp(v, -127.0f, 127.0f);
    const int q = c == c ? static_cast<int>(std::nearbyint(c)) : 0;
    out->q[i] = static_cast<int8_t>(q);
    sum += q;
  }
  out->d = d;
  out->s = d * static_cast<float>(sum);
#endif
}

// Waking the pool's threads costs several microseconds: a matmul smaller than this many
// multiply-adds (a few microseconds on one core) runs on the calling thread.
constexpr int64_t kInlineMacs = int64_t{1} << 15;

void run_units(ThreadPool& pool, int64_t units, int64_t macs, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (macs < kInlineMacs) fn(0, units, 0);
  else pool.parallel_for(units, fn);
}

bool is_k_type(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

bool has_int8_kernel(DType t) { return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q8_0 || is_k_type(t); }

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block (the 12 packed bytes at s;
// layout in core/model/quant.cpp).
inline void k_scale_min(int j, const uint8_t* s, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

#if defined(__AVX2__)
inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 partial sums of u[i] * s[i] (u unsigned, s signed bytes) as floats.
inline __m256 dot_u8_s8(__m256i u, __m256i s) {
  const __m256i p16 = _mm256_maddubs_epi16(u, s);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}
#endif

// Dot products of R weight rows with NT tokens (R x NT outputs, out[r * NT + t]); the tokens'
// quantized blocks start at xs[t]. Each weight block is unpacked once for the NT tokens and each
// activation block loaded once for the R rows.
template <DType T, int R, int NT>
inline void qtile(const uint8_t* const* rows, int64_t nb, const QxBlock* const* xs, float* out) {
  constexpr size_t bb = T == DType::Q8_0 ? 34 : T == DType::Q4_0 ? 18 : 20;
  float corr[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) corr[r][t] = 0.0f;
#if defined(__AVX2__)
  __m256 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wq[R], wabs[R];
    __m256 dw[R];
    float cw[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = rows[r] + static_cast<size_t>(b) * bb;
      dw[r] = _mm256_set1_ps(load_half(blk));
      if constexpr (T == DType::Q8_0) {
        wq[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
        wabs[r] = _mm256_sign_epi8(wq[r], wq[r]);  // |w| (-128 -> 128 as unsigned)
        cw[r] = 0.0f;
      } else {
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + (T == DType::Q4_0 ? 2 : 4)));
        wq[r] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0f));
        cw[r] = T == DType::Q4_0 ? -8.0f * load_half(blk) : load_half(blk + 2);
      }
    }
    for (int t = 0; t < NT; ++t) {
      const QxBlock& a = xs[t][b];
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q));
      const __m256 dx = _mm256_broadcast_ss(&a.d);
      for (int r = 0; r < R; ++r) {
        const __m256 p = T == DType::Q8_0 ? dot_u8_s8(wabs[r], _mm256_sign_epi8(xq, wq[r])) : dot_u8_s8(wq[r], xq);
        acc[r][t] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw[r], dx), acc[r][t]);
        if constexpr (T != DType::Q8_0) corr[r][t] += cw[r] * a.s;
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) out[r * NT + t] = hsum_ps(acc[r][t]) + corr[r][t];
#else
  float acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = rows[r] + static_cast<size_t>(b) * bb;
      const float dw = load_half(blk);
      int8_t w[32];
      float cw = 0.0f;
      if constexpr (T == DType::Q8_0) {
        std::memcpy(w, blk + 2, 32);
      } else {
        const uint8_t* qs = blk + (T == DType::Q4_0 ? 2 : 4);
        for (int i = 0; i < 16; ++i) {
          w[i] = static_cast<int8_t>(qs[i] & 0x0f);
          w[i + 16] = static_cast<int8_t>(qs[i] >> 4);
        }
        cw = T == DType::Q4_0 ? -8.0f * dw : load_half(blk + 2);
      }
      for (int t = 0; t < NT; ++t) {
        const QxBlock& a = xs[t][b];
        int32_t s = 0;
        for (int i = 0; i < 32; ++i) s += static_cast<int32_t>(w[i]) * a.q[i];
        acc[r][t] += static_cast<float>(s) * (dw * a.d);
        corr[r][t] += cw * a.s;
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) out[r * NT + t] = acc[r][t] + corr[r][t];
#endif
}

// The K types: dot products of R weight rows with NT tokens over nsb super-blocks of 256 values
// (out[r * NT + t]); token t's 8 activation blocks of super-block sb are xs[t][8 sb ...].
template <DType T, int R, int NT>
inline void ktile(const uint8_t* const* rows, int64_t nsb, const QxBlock* const* xs, float* out) {
  constexpr size_t bb = T == DType::Q4_K ? 144 : T == DType::Q5_K ? 176 : 210;
  float corr[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) corr[r][t] = 0.0f;
#if defined(__AVX2__)
  __m256 acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* blk[R];
    __m256 dw[R];
    __m256i scb[R];  // the scales, as bytes in both 128-bit lanes (Q4_K/Q5_K: zero-extended to 16 bits)
    __m256 sums[NT];  // Q4_K/Q5_K: the s fields of the token's 8 activation blocks
    if constexpr (T != DType::Q6_K) {
      const __m256i stride =
          _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(kQxBlockFloats));
      for (int t = 0; t < NT; ++t) sums[t] = _mm256_i32gather_ps(&xs[t][8 * sb].s, stride, 4);
    }
    for (int r = 0; r < R; ++r) {
      blk[r] = rows[r] + static_cast<size_t>(sb) * bb;
      if constexpr (T == DType::Q6_K) {
        dw[r] = _mm256_set1_ps(load_half(blk[r] + 208));
        scb[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[r] + 192)));
      } else {
        dw[r] = _mm256_set1_ps(load_half(blk[r]));
        // the 12 packed bytes as three words: 8 six-bit scales and 8 six-bit mins, four per word
        uint32_t a[3];
        std::memcpy(a, blk[r] + 4, 12);
        const uint32_t sc_lo = a[0] & 0x3f3f3f3f, mn_lo = a[1] & 0x3f3f3f3f;
        const uint32_t sc_hi = (a[2] & 0x0f0f0f0f) | (((a[0] >> 6) & 0x03030303) << 4);
        const uint32_t mn_hi = ((a[2] >> 4) & 0x0f0f0f0f) | (((a[1] >> 6) & 0x03030303) << 4);
        const __m128i sc8 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int>(sc_hi), static_cast<int>(sc_lo)));
        scb[r] = _mm256_broadcastsi128_si256(sc8);
        // the mins meet the 8 activation blocks' sums at once: -dmin * min_j * s_j in lane j
        const __m256 mins = _mm256_cvtepi32_ps(
            _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, static_cast<int>(mn_hi), static_cast<int>(mn_lo))));
        const __m256 neg_mins = _mm256_mul_ps(mins, _mm256_set1_ps(-load_half(blk[r] + 2)));
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(neg_mins, sums[t], acc[r][t]);
      }
    }
    for (int j = 0; j < 8; ++j) {
      __m256i wq[R], wsgn[R], scv[R];
      for (int r = 0; r < R; ++r) {
        if constexpr (T == DType::Q6_K) {
          // int16 lanes: scale 2j in the low 128 bits, 2j + 1 in the high (a byte moved to the
          // top of each lane, then an arithmetic shift back: sign-extended)
          const __m256i pick = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(((2 * j + 1) << 8) | 0x80)),
                                                _mm_set1_epi16(static_cast<int16_t>(((2 * j) << 8) | 0x80)));
          scv[r] = _mm256_srai_epi16(_mm256_shuffle_epi8(scb[r], pick), 8);
          // sub-block j = 4h + c: low bits in ql[64h + 32(c % 2) ...] (nibble c / 2), high bits
          // at bits 2c of qh[32h ...]
          const int h = j / 4, c = j % 4;
          const __m256i ql = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[r] + 64 * h + 32 * (c % 2)));
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[r] + 128 + 32 * h));
          const __m256i lo = c < 2 ? _mm256_and_si256(ql, m4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), _mm256_set1_epi8(3));
          wsgn[r] = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
          wq[r] = _mm256_sign_epi8(wsgn[r], wsgn[r]);  // |q - 32| <= 32
        } else {
          scv[r] = _mm256_shuffle_epi8(scb[r], _mm256_set1_epi16(static_cast<int16_t>(0x0100 + 0x0202 * j)));
          const uint8_t* qs = blk[r] + (T == DType::Q4_K ? 16 : 48) + 32 * (j / 2);
          const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
          wq[r] = j % 2 == 0 ? _mm256_and_si256(raw, m4) : _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
          if constexpr (T == DType::Q5_K) {
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[r] + 16));
            const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(qh, j), _mm256_set1_epi8(1));
            wq[r] = _mm256_or_si256(wq[r], _mm256_slli_epi16(bit, 4));
          }
        }
      }
      for (int t = 0; t < NT; ++t) {
        const QxBlock& xb = xs[t][8 * sb + j];
        const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.q));
        const __m256 dx = _mm256_broadcast_ss(&xb.d);
        for (int r = 0; r < R; ++r) {
          const __m256i xs8 = T == DType::Q6_K ? _mm256_sign_epi8(xq, wsgn[r]) : xq;
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wq[r], xs8), scv[r]);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[r], dx), acc[r][t]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) out[r * NT + t] = hsum_ps(acc[r][t]) + corr[r][t];
#else
  float acc[R][NT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
  for (int64_t sb = 0; sb < nsb; ++sb) {
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = rows[r] + static_cast<size_t>(sb) * bb;
      const float d = load_half(T == DType::Q6_K ? blk + 208 : blk);
      const float dmin = T == DType::Q6_K ? 0.0f : load_half(blk + 2);
      for (int j = 0; j < 8; ++j) {
        int8_t w[32];  // the sub-block's integer values (Q6_K: q - 32)
        int sc_lo, sc_hi, min = 0;
        if constexpr (T == DType::Q6_K) {
          const int h = j / 4, c = j % 4;
          const uint8_t* ql = blk + 64 * h + 32 * (c % 2);
          const uint8_t* qh = blk + 128 + 32 * h;
          for (int l = 0; l < 32; ++l) {
            const int lo = c < 2 ? (ql[l] & 0x0f) : (ql[l] >> 4);
            w[l] = static_cast<int8_t>((lo | (((qh[l] >> (2 * c)) & 3) << 4)) - 32);
          }
          sc_lo = static_cast<int8_t>(blk[192 + 2 * j]);
          sc_hi = static_cast<int8_t>(blk[192 + 2 * j + 1]);
        } else {
          int scale;
          k_scale_min(j, blk + 4, &scale, &min);
          sc_lo = sc_hi = scale;
          const uint8_t* qs = blk + (T == DType::Q4_K ? 16 : 48) + 32 * (j / 2);
          for (int l = 0; l < 32; ++l) {
            int q = j % 2 == 0 ? (qs[l] & 0x0f) : (qs[l] >> 4);
            if constexpr (T == DType::Q5_K) q |= ((blk[16 + l] >> j) & 1) << 4;
            w[l] = static_cast<int8_t>(q);
          }
        }
        for (int t = 0; t < NT; ++t) {
          const QxBlock& a = xs[t][8 * sb + j];
          int32_t s_lo = 0, s_hi = 0;
          for (int l = 0; l < 16; ++l) s_lo += static_cast<int32_t>(w[l]) * a.q[l];
          for (int l = 16; l < 32; ++l) s_hi += static_cast<int32_t>(w[l]) * a.q[l];
          acc[r][t] += static_cast<float>(s_lo * sc_lo + s_hi * sc_hi) * (d * a.d);
          if constexpr (T != DType::Q6_K) corr[r][t] += -dmin * static_cast<float>(min) * a.s;
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < NT; ++t) out[r * NT + t] = acc[r][t] + corr[r][t];
#endif
}

// One tile of R rows x NT tokens over a whole row (nb blocks of 32 values), any integer type.
template <DType T, int R, int NT>
inline void int8_tile(const uint8_t* const* rows, int64_t nb, const QxBlock* const* xs, float* out) {
  if constexpr (T == DType::Q4_K || T == DType::Q5_K || T == DType::Q6_K) ktile<T, R, NT>(rows, nb / 8, xs, out);
  else qtile<T, R, NT>(rows, nb, xs, out);
}

// Rows [j0, j0 + rows) of y for NT tokens starting at t0 (rows in groups of R, then singles).
template <DType T, int R, int NT>
void qtile_rows(const QxBlock* qx, int64_t t0, const TensorView& w, int64_t j0, int64_t rows, float* y) {
  const int64_t nb = w.cols / 32;
  const size_t rb = row_bytes(w.dtype, w.cols);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const int64_t m = w.rows;
  const QxBlock* xs[NT];
  for (int t = 0; t < NT; ++t) xs[t] = qx + (t0 + t) * nb;
  int64_t r = j0;
  for (; r + R <= j0 + rows; r += R) {
    const uint8_t* rp[R];
    for (int i = 0; i < R; ++i) rp[i] = base + static_cast<size_t>(r + i) * rb;
    float out[R * NT];
    int8_tile<T, R, NT>(rp, nb, xs, out);
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) y[(t0 + t) * m + r + i] = out[i * NT + t];
  }
  for (; r < j0 + rows; ++r) {
    const uint8_t* rp[1] = {base + static_cast<size_t>(r) * rb};
    float out[NT];
    int8_tile<T, 1, NT>(rp, nb, xs, out);
    for (int t = 0; t < NT; ++t) y[(t0 + t) * m + r] = out[t];
  }
}

// Rows [j0, j0 + rows) of y for tokens [t_begin, t_end): tiles of 2 rows x 4 tokens (a single
// token: 4 rows).
template <DType T>
void qmatmul_rows(const QxBlock* qx, int64_t t_begin, int64_t t_end, const TensorView& w, int64_t j0, int64_t rows,
                  float* y) {
  if (t_end - t_begin == 1) {
    qtile_rows<T, 4, 1>(qx, t_begin, w, j0, rows, y);
    return;
  }
  for (int64_t t0 = t_begin; t0 < t_end; t0 += 4) {
    switch (std::min<int64_t>(4, t_end - t0)) {
      case 4: qtile_rows<T, 2, 4>(qx, t0, w, j0, rows, y); break;
      case 3: qtile_rows<T, 2, 3>(qx, t0, w, j0, rows, y); break;
      case 2: qtile_rows<T, 2, 2>(qx, t0, w, j0, rows, y); break;
      default: qtile_rows<T, 4, 1>(qx, t0, w, j0, rows, y); break;
    }
  }
}

void qmatmul_int8(ThreadPool& pool, const float* x, int64_t n, const TensorView& w, float* y) {
  const int64_t nb = w.cols / 32;
  thread_local std::vector<QxBlock> qx;  // of the calling thread; workers only read it
  qx.resize(static_cast<size_t>(n * nb));
  QxBlock* qxp = qx.data();
  auto quantize = [&](int64_t t0, int64_t t1, int) {
    for (int64_t i = t0 * nb; i < t1 * nb; ++i) quantize_x_block(x + i * 32, qxp + i);
  };
  if (n >= kParallelQuantizeTokens) pool.parallel_for(n, quantize);
  else quantize(0, n, 0);
  const int64_t m = w.rows;
  // Work units: panels of rows; each thread takes a contiguous range of them. Tokens go in
  // blocks of kTokenBlock (their quantized activations, up to ~120 KB, stay in L2) over all of
  // the thread's rows, in tiles of 4 tokens (each weight block unpacked once per tile).
  constexpr int64_t kTokenBlock = 64;
  const int64_t panel = 16;
  const int64_t panels = (m + panel - 1) / panel;
  auto body = [&](int64_t p0, int64_t p1, int) {
    for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
      const int64_t t1 = std::min(n, t0 + kTokenBlock);
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t j0 = p * panel;
        const int64_t rows = std::min(panel, m - j0);
        switch (w.dtype) {
          case DType::Q4_0: qmatmul_rows<DType::Q4_0>(qxp, t0, t1, w, j0, rows, y); break;
          case DType::Q4_1: qmatmul_rows<DType::Q4_1>(qxp, t0, t1, w, j0, rows, y); break;
          case DType::Q4_K: qmatmul_rows<DType::Q4_K>(qxp, t0, t1, w, j0, rows, y); break;
          case DType::Q5_K: qmatmul_rows<DType::Q5_K>(qxp, t0, t1, w, j0, rows, y); break;
          case DType::Q6_K: qmatmul_rows<DType::Q6_K>(qxp, t0, t1, w, j0, rows, y); break;
          default: qmatmul_rows<DType::Q8_0>(qxp, t0, t1, w, j0, rows, y); break;
        }
      }
    }
  };
  run_units(pool, panels, n * m * w.cols, body);
}

}  // namespace

void embedding(const TensorView& table, std::span<const int32_t> tokens, float* out) {
  for (size_t t = 0; t < tokens.size(); ++t) row_to_f32(table, tokens[t], out + t * static_cast<size_t>(table.cols));
}

void rmsnorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = out + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(dim)) + eps);
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * weight[i];
  }
}

void matmul(ThreadPool& pool, const float* x, int64_t n, const TensorView& w, const float* bias, float* y) {
  const int64_t m = w.rows, k = w.cols;
  if (has_int8_kernel(w.dtype) && n > 0) {
    qmatmul_int8(pool, x, n, w, y);
    if (bias != nullptr)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t r = 0; r < m; ++r) y[i * m + r] += bias[r];
    return;
  }
  // Work unit: a panel of weight rows, dequantized once to fp32 and used for all n tokens.
  const int64_t panel = n >= 16 ? 32 : std::max<int64_t>(8, (m + pool.size() * 4 - 1) / (pool.size() * 4));
  const int64_t panels = (m + panel - 1) / panel;
  pool.parallel_for(panels, [&](int64_t p0, int64_t p1, int) {
    thread_local std::vector<float> packed;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t j0 = p * panel;
      const int64_t rows = std::min(panel, m - j0);
      const float* b;
      const bool aligned16 = reinterpret_cast<uintptr_t>(w.data) % alignof(uint16_t) == 0;
      if (n <= 2 && (w.dtype == DType::F16 || w.dtype == DType::BF16) && aligned16) {
        gemv_16bit(x, n, w, j0, rows, y, m);
        if (bias != nullptr)
          for (int64_t i = 0; i < n; ++i)
            for (int64_t r = 0; r < rows; ++r) y[i * m + j0 + r] += bias[j0 + r];
        continue;
      }
      if (w.dtype == DType::F32 && reinterpret_cast<uintptr_t>(w.data) % alignof(float) == 0) {
        b = static_cast<const float*>(w.data) + j0 * k;
      } else {
        packed.resize(static_cast<size_t>(rows * k));
        for (int64_t r = 0; r < rows; ++r) row_to_f32(w, j0 + r, packed.data() + r * k);
        b = packed.data();
      }
      gemm_nt(x, k, n, b, k, rows, k, y + j0, m);
      if (bias != nullptr)
        for (int64_t i = 0; i < n; ++i)
          for (int64_t r = 0; r < rows; ++r) y[i * m + j0 + r] += bias[j0 + r];
    }
  });
}

void rope(float* x, int64_t n, int64_t stride, int n_heads, int head_dim, std::span<const int32_t> positions,
          const RopeTable& table, RopeLayout layout) {
  const int half = static_cast<int>(table.inv_freq.size());
  std::vector<float> cos_v(static_cast<size_t>(half)), sin_v(static_cast<size_t>(half));
  for (int64_t t = 0; t < n; ++t) {
    const float pos = static_cast<float>(positions[static_cast<size_t>(t)]);
    for (int i = 0; i < half; ++i) {
      // fp32 angle, as transformers computes it
      const float angle = pos * table.inv_freq[static_cast<size_t>(i)];
      cos_v[static_cast<size_t>(i)] = std::cos(angle) * table.attention_scale;
      sin_v[static_cast<size_t>(i)] = std::sin(angle) * table.attention_scale;
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + t * stride + static_cast<int64_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const int i0 = layout == RopeLayout::RotateHalf ? i : 2 * i;
        const int i1 = layout == RopeLayout::RotateHalf ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        const float c = cos_v[static_cast<size_t>(i)], s = sin_v[static_cast<size_t>(i)];
        v[i0] = a * c - b * s;
        v[i1] = b * c + a * s;
      }
    }
  }
}

namespace {

typedef int32_t v8i __attribute__((vector_size(32)));

// e^x for 8 lanes: 2^n * e^r with r in [-ln2/2, ln2/2] and a degree-6 polynomial (relative error
// about 2e-7, close to std::exp in fp32). Inputs below -87 flush to 0.
inline v8f exp8(v8f x) {
  const v8f lo = v8f{} - 87.0f, hi = v8f{} + 88.0f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const v8f t = x * 1.44269504088896341f + 0.5f;
  v8i n = __builtin_convertvector(t, v8i);
  v8f nf = __builtin_convertvector(n, v8f);
  const v8i too_big = nf > t;  // truncation rounded a negative value up: make it a floor
  n += too_big;                // -1 where set
  nf = __builtin_convertvector(n, v8f);
  const v8f r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
  v8f p = v8f{} + (1.0f / 720.0f);
  p = p * r + (1.0f / 120.0f);
  p = p * r + (1.0f / 24.0f);
  p = p * r + (1.0f / 6.0f);
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const v8i bits = (n + 127) << 23;
  v8f scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  const v8i underflow = x <= lo;
  v8f out = p * scale;
  v8i out_bits;
  __builtin_memcpy(&out_bits, &out, sizeof(out_bits));
  out_bits &= ~underflow;
  __builtin_memcpy(&out, &out_bits, sizeof(out));
  return out;
}

// s[0, len) <- exp(s * scale - max) in place; returns the sum.
float softmax_numerators(float* s, int64_t len, float scale) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < len; ++j) mx = std::max(mx, s[j]);
  const float shift = mx * scale;
  v8f acc{};
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    v8f e = exp8(load8(s + j) * scale - shift);
    __builtin_memcpy(s + j, &e, sizeof(e));
    acc += e;
  }
  float sum = hsum(acc);
  for (; j < len; ++j) {
    s[j] = std::exp(s[j] * scale - shift);
    sum += s[j];
  }
  return sum;
}

}  // namespace

void attention(ThreadPool& pool, const float* q, int64_t n, int64_t pos0, const float* k_cache, const float* v_cache,
               int64_t cache_stride, int n_heads, int n_kv_heads, int head_dim, float* out) {
  constexpr int64_t QB = 16;  // queries per work unit
  const int64_t q_blocks = (n + QB - 1) / QB;
  const int64_t q_stride = static_cast<int64_t>(n_heads) * head_dim;
  const int group = n_heads / n_kv_heads;
  const int64_t n_total = pos0 + n;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // Prefill: V transposed once per call ([kv_head][dim][key]) so that P V is the same
  // dot-product kernel as Q K^T. Decode (a few queries) reads V rows directly.
  const bool transpose_v = n >= QB;
  // The caller's buffer (thread_local: each worker would see its own, empty one).
  thread_local std::vector<float> vt_buffer;
  if (transpose_v)
    vt_buffer.resize(static_cast<size_t>(n_kv_heads) * static_cast<size_t>(head_dim) * static_cast<size_t>(n_total));
  float* const vt_data = vt_buffer.data();
  if (transpose_v) {
    pool.parallel_for(static_cast<int64_t>(n_kv_heads) * head_dim, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t g = r / head_dim, d = r % head_dim;
        const float* src = v_cache + g * cache_stride * head_dim + d;
        float* dst = vt_data + r * n_total;
        for (int64_t j = 0; j < n_total; ++j) dst[j] = src[j * head_dim];
      }
    });
  }
  pool.parallel_for(static_cast<int64_t>(n_heads) * q_blocks, [&](int64_t u0, int64_t u1, int) {
    thread_local std::vector<float> scores;
    thread_local std::vector<float> acc;
    thread_local std::vector<float> sums;
    for (int64_t u = u0; u < u1; ++u) {
      const int h = static_cast<int>(u / q_blocks);
      const int g = h / group;
      const int64_t i0 = (u % q_blocks) * QB;
      const int64_t qb = std::min(QB, n - i0);
      const int64_t n_keys = pos0 + i0 + qb;  // keys the last query of the block sees
      const float* kh = k_cache + static_cast<int64_t>(g) * cache_stride * head_dim;
      const float* vh = v_cache + static_cast<int64_t>(g) * cache_stride * head_dim;
      const float* qh = q + i0 * q_stride + static_cast<int64_t>(h) * head_dim;
      scores.resize(static_cast<size_t>(qb * n_keys));
      sums.resize(static_cast<size_t>(qb));
      gemm_nt(qh, q_stride, qb, kh, head_dim, n_keys, head_dim, scores.data(), n_keys);
      for (int64_t r = 0; r < qb; ++r) {
        float* s = scores.data() + r * n_keys;
        const int64_t visible = pos0 + i0 + r + 1;
        sums[static_cast<size_t>(r)] = softmax_numerators(s, visible, scale);
        std::fill(s + visible, s + n_keys, 0.0f);  // causal mask
      }
      acc.resize(static_cast<size_t>(qb * head_dim));
      if (transpose_v) {
        gemm_nt(scores.data(), n_keys, qb, vt_data + static_cast<int64_t>(g) * head_dim * n_total, n_total, head_dim,
                n_keys, acc.data(), head_dim);
      } else {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t r = 0; r < qb; ++r) {
          const float* s = scores.data() + r * n_keys;
          float* a = acc.data() + r * head_dim;
          for (int64_t j = 0; j < pos0 + i0 + r + 1; ++j) {
            const float pj = s[j];
            const float* vj = vh + j * head_dim;
            for (int d = 0; d < head_dim; ++d) a[d] += pj * vj[d];
          }
        }
      }
      for (int64_t r = 0; r < qb; ++r) {
        float* o = out + (i0 + r) * q_stride + static_cast<int64_t>(h) * head_dim;
        const float inv = 1.0f / sums[static_cast<size_t>(r)];
        for (int d = 0; d < head_dim; ++d) o[d] = acc[static_cast<size_t>(r * head_dim + d)] * inv;
      }
    }
  });
}

void swiglu(const float* gate, const float* up, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add_inplace(float* x, const float* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) x[i] += y[i];
}

}  // namespace folio::cpu
