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

#include "core/model/quant.h"

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
// Decode and small batches (n < kPanelTokens): no fp32 copy of the weights is made.
//  * Q4_0, Q4_1, Q8_0: the activations are quantized once per call to 8 bits per block of 32
//    (x ~ d * q, as llama.cpp's Q8_0/Q8_1), and each weight block meets each token's block in an
//    integer dot product (AVX2: maddubs/madd), scaled by d_w * d_x. Q4_0's offset of 8 and Q4_1's
//    min enter through s = d_x * sum(q_x). The result differs from the fp32 one by the rounding
//    of the activations (typically 0.5-1% rms of the outputs, as in llama.cpp).
//  * K types: each 256-value block is dequantized to a stack buffer and dotted in fp32 (exact).
// Small matmuls (kInlineMacs) run on the calling thread: waking the pool costs more.
// Prefill (n >= kPanelTokens): Q4_0/Q4_1/Q8_0 use the same integer kernel on tiles of 4 tokens
// (the weight block is unpacked once per tile); K types take the panel path below (a panel of
// rows dequantized to fp32, then the fp32 kernel).

constexpr int64_t kPanelTokens = 16;

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
    const int q = std::abs(v) <= 127.0f ? static_cast<int>(std::nearbyint(v)) : 0;  // NaN: 0, no undefined cast
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

bool has_int8_kernel(DType t) { return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q8_0; }

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
    qtile<T, R, NT>(rp, nb, xs, out);
    for (int i = 0; i < R; ++i)
      for (int t = 0; t < NT; ++t) y[(t0 + t) * m + r + i] = out[i * NT + t];
  }
  for (; r < j0 + rows; ++r) {
    const uint8_t* rp[1] = {base + static_cast<size_t>(r) * rb};
    float out[NT];
    qtile<T, 1, NT>(rp, nb, xs, out);
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
  if (n >= kPanelTokens) pool.parallel_for(n, quantize);
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
          default: qmatmul_rows<DType::Q8_0>(qxp, t0, t1, w, j0, rows, y); break;
        }
      }
    }
  };
  run_units(pool, panels, n * m * w.cols, body);
}

// Few tokens, any block type: each block dequantized to a stack buffer and dotted in fp32.
void qmatmul_fused_f32(ThreadPool& pool, const float* x, int64_t n, const TensorView& w, float* y) {
  const int64_t m = w.rows, k = w.cols;
  const int64_t be = block_elements(w.dtype);
  const size_t bb = block_bytes(w.dtype);
  const int64_t nb = k / be;
  const size_t rb = row_bytes(w.dtype, k);
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const int64_t panel = std::max<int64_t>(4, (m + pool.size() * 4 - 1) / (pool.size() * 4));
  const int64_t panels = (m + panel - 1) / panel;
  run_units(pool, panels, n * m * k, [&](int64_t p0, int64_t p1, int) {
    alignas(32) float buf[256];
    v8f acc[kPanelTokens][4];  // four chains per token: the adds do not wait on each other
    for (int64_t r = p0 * panel; r < std::min(m, p1 * panel); ++r) {
      const uint8_t* row = base + static_cast<size_t>(r) * rb;
      for (int64_t t = 0; t < n; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = v8f{};
      for (int64_t b = 0; b < nb; ++b) {
        dequantize_row(w.dtype, row + static_cast<size_t>(b) * bb, buf, be);
        for (int64_t t = 0; t < n; ++t) {
          const float* xb = x + t * k + b * be;
          v8f a0 = acc[t][0], a1 = acc[t][1], a2 = acc[t][2], a3 = acc[t][3];
          for (int64_t i = 0; i < be; i += 32) {
            a0 += load8(xb + i) * load8(buf + i);
            a1 += load8(xb + i + 8) * load8(buf + i + 8);
            a2 += load8(xb + i + 16) * load8(buf + i + 16);
            a3 += load8(xb + i + 24) * load8(buf + i + 24);
          }
          acc[t][0] = a0, acc[t][1] = a1, acc[t][2] = a2, acc[t][3] = a3;
        }
      }
      for (int64_t t = 0; t < n; ++t) y[t * m + r] = hsum((acc[t][0] + acc[t][1]) + (acc[t][2] + acc[t][3]));
    }
  });
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
  if (is_quantized(w.dtype) && n > 0 && (has_int8_kernel(w.dtype) || n < kPanelTokens)) {
    if (has_int8_kernel(w.dtype)) qmatmul_int8(pool, x, n, w, y);
    else qmatmul_fused_f32(pool, x, n, w, y);
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
