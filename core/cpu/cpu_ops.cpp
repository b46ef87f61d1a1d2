#include "core/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__F16C__)
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
      if (n <= 2 && w.dtype != DType::F32 && aligned16) {
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

void attention(ThreadPool& pool, const float* q, int64_t n, int64_t pos0, const float* k_cache, const float* v_cache,
               int64_t cache_stride, int n_heads, int n_kv_heads, int head_dim, float* out) {
  constexpr int64_t QB = 16;  // queries per work unit
  const int64_t q_blocks = (n + QB - 1) / QB;
  const int64_t q_stride = static_cast<int64_t>(n_heads) * head_dim;
  const int group = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  pool.parallel_for(static_cast<int64_t>(n_heads) * q_blocks, [&](int64_t u0, int64_t u1, int) {
    thread_local std::vector<float> scores;
    thread_local std::vector<float> acc;
    for (int64_t u = u0; u < u1; ++u) {
      const int h = static_cast<int>(u / q_blocks);
      const int64_t i0 = (u % q_blocks) * QB;
      const int64_t qb = std::min(QB, n - i0);
      const int64_t n_keys = pos0 + i0 + qb;  // keys the last query of the block sees
      const float* kh = k_cache + static_cast<int64_t>(h / group) * cache_stride * head_dim;
      const float* vh = v_cache + static_cast<int64_t>(h / group) * cache_stride * head_dim;
      const float* qh = q + i0 * q_stride + static_cast<int64_t>(h) * head_dim;
      scores.resize(static_cast<size_t>(qb * n_keys));
      gemm_nt(qh, q_stride, qb, kh, head_dim, n_keys, head_dim, scores.data(), n_keys);
      acc.assign(static_cast<size_t>(head_dim), 0.0f);
      for (int64_t r = 0; r < qb; ++r) {
        float* s = scores.data() + r * n_keys;
        const int64_t visible = pos0 + i0 + r + 1;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < visible; ++j) {
          s[j] *= scale;
          mx = std::max(mx, s[j]);
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < visible; ++j) {
          s[j] = std::exp(s[j] - mx);
          sum += s[j];
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        float* a = acc.data();
        for (int64_t j = 0; j < visible; ++j) {
          const float pj = s[j];
          const float* vj = vh + j * head_dim;
          for (int d = 0; d < head_dim; ++d) a[d] += pj * vj[d];
        }
        float* o = out + (i0 + r) * q_stride + static_cast<int64_t>(h) * head_dim;
        const float inv = 1.0f / sum;
        for (int d = 0; d < head_dim; ++d) o[d] = a[d] * inv;
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
