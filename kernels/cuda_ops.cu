// Element-wise and row-wise kernels of the forward pass: embedding gather, RMSNorm, bias + RoPE +
// KV write, SwiGLU, conversions. Each reads and writes global memory once; the residual stream is
// fp32, everything fed to the tensor cores is bf16.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda_ops.h"
#include "kernels/cuda_util.h"

namespace folio::cuda {

namespace {

__device__ __forceinline__ __nv_bfloat16 as_bf(bf16 v) { return __ushort_as_bfloat16(v); }
__device__ __forceinline__ bf16 to_bits(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(as_bf(v)); }

unsigned blocks_for(int64_t count, int threads) {
  int64_t b = (count + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535 * 64 ? b : 65535 * 64);
}

__global__ void embedding_kernel(const bf16* __restrict__ table, const int32_t* __restrict__ tokens, int hidden,
                                 float* __restrict__ x) {
  const int t = blockIdx.x;
  const bf16* row = table + static_cast<int64_t>(tokens[t]) * hidden;
  float* out = x + static_cast<int64_t>(t) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = to_f(row[i]);
}

template <int THREADS>
__device__ float block_sum(float v) {
  __shared__ float part[THREADS / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < THREADS / 32; ++i) s += part[i];
  __syncthreads();
  return s;
}

template <int THREADS>
__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, int dim, float eps,
                               bf16* __restrict__ out) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  bf16* yr = out + static_cast<int64_t>(blockIdx.x) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += THREADS) ss += xr[i] * xr[i];
  ss = block_sum<THREADS>(ss);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += THREADS) yr[i] = to_bits(xr[i] * inv * w[i]);
}

// q8 KV: one thread per (row, KV head, block of 32) of the tensor blockIdx.y. The rule is the CPU's
// round_kv_row_q8: scale = fp16(amax / 127), values = clamp(rint(x / scale), -127, 127); an all-zero
// block keeps scale 0, a block with an infinite value gets a NaN scale (it stays visible as such).
__global__ void kv_quantize_q8_kernel(KvQ8Args a) {
  const int t = blockIdx.y;
  const int64_t pos0 = a.pos_dev != nullptr ? *a.pos_dev : a.pos0;
  const int64_t count = static_cast<int64_t>(a.n) * a.n_kv_heads * a.blocks;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int b = static_cast<int>(i % a.blocks);
    const int64_t rest = i / a.blocks;
    const int g = static_cast<int>(rest % a.n_kv_heads);
    const int64_t r = rest / a.n_kv_heads;
    const int64_t row = static_cast<int64_t>(g) * a.capacity + pos0 + r;
    const bf16* src = a.stage[t] + row * a.head_dim + b * 32;
    int8_t* dst = a.values[t] + row * a.head_dim + b * 32;
    const int len = min(32, a.head_dim - b * 32);
    float amax = 0.0f;
    for (int j = 0; j < len; ++j) amax = fmaxf(amax, fabsf(to_f(src[j])));
    uint16_t scale = 0;
    float inv = 0.0f;
    if (isinf(amax)) {
      scale = 0x7e00;  // NaN
    } else if (amax > 0.0f) {
      const __half h = __float2half_rn(amax / 127.0f);
      const float d = __half2float(h);
      if (d > 0.0f) {
        scale = __half_as_ushort(h);
        inv = __frcp_rn(d);
      }
    }
    for (int j = 0; j < len; ++j)
      dst[j] = static_cast<int8_t>(inv > 0.0f ? fminf(fmaxf(rintf(__fmul_rn(to_f(src[j]), inv)), -127.0f), 127.0f) : 0.0f);
    a.scales[t][static_cast<int64_t>(g) * a.capacity * a.blocks + (pos0 + r) * a.blocks + b] = scale;
  }
}

// q8 rows back to bf16: PER values per thread (8 where the head dim allows: one 8-byte load, one
// 16-byte store, all in one block of 32).
template <int PER>
__global__ void kv_expand_q8_kernel(KvQ8Args a, int64_t rows) {
  const int t = blockIdx.y;
  if (a.pos_dev != nullptr) rows = *a.pos_dev + a.n;
  const int64_t per_row = a.head_dim / PER, per_head = rows * per_row;
  const int64_t count = per_head * a.n_kv_heads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t g = i / per_head, rem = i % per_head, r = rem / per_row;
    const int c = static_cast<int>(rem % per_row) * PER;
    const int64_t row = g * a.capacity + r;
    const float s = __half2float(__ushort_as_half(a.scales[t][row * a.blocks + c / 32]));
    const int8_t* src = a.values[t] + row * a.head_dim + c;
    bf16* dst = a.stage[t] + row * a.head_dim + c;
    if constexpr (PER == 8) {
      const uint2 raw = *reinterpret_cast<const uint2*>(src);
      const int8_t* v = reinterpret_cast<const int8_t*>(&raw);
      uint4 out;
      uint32_t* o = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
      for (int j = 0; j < 4; ++j)
        o[j] = static_cast<uint32_t>(to_bits(v[2 * j] * s)) | (static_cast<uint32_t>(to_bits(v[2 * j + 1] * s)) << 16);
      *reinterpret_cast<uint4*>(dst) = out;
    } else {
      dst[0] = to_bits(src[0] * s);
    }
  }
}

// One block per token (a few for a decode step: blockIdx.y); threads walk (head, pair) for q and
// k, then copy v.
__global__ void rope_qkv_kernel(RopeArgs a) {
  const int t = blockIdx.x;
  const int first = blockIdx.y * blockDim.x, stride = gridDim.y * blockDim.x;
  const int QD = a.n_heads * a.head_dim, KVD = a.n_kv_heads * a.head_dim;
  const int width = QD + 2 * KVD;
  const bf16* row = a.qkv + static_cast<int64_t>(t) * width;
  const int64_t pos = (a.pos_dev != nullptr ? *a.pos_dev : a.pos0) + t;
  const float fpos = static_cast<float>(pos);
  auto val = [&](int col) {
    float v = to_f(row[col]);
    if (a.bias != nullptr) v += a.bias[col];
    return v;
  };
  const int half = a.head_dim / 2;
  // q and k: one thread per (head, i) with i < head_dim / 2 covering elements (i0, i1)
  const int total_heads = a.n_heads + a.n_kv_heads;
  for (int idx = first + threadIdx.x; idx < total_heads * half; idx += stride) {
    const int h = idx / half, i = idx % half;
    const bool is_q = h < a.n_heads;
    const int base = is_q ? h * a.head_dim : QD + (h - a.n_heads) * a.head_dim;
    int i0, i1;
    if (i < a.rotary_half) {
      i0 = a.adjacent_pairs ? 2 * i : i;
      i1 = a.adjacent_pairs ? 2 * i + 1 : i + a.rotary_half;
    } else {
      // past the rotary dims (partial rotary): two plain copies
      const int j = 2 * a.rotary_half + 2 * (i - a.rotary_half);
      i0 = j;
      i1 = j + 1;
    }
    float x0 = val(base + i0), x1 = val(base + i1);
    if (i < a.rotary_half) {
      float s, c;
      sincosf(fpos * a.inv_freq[i], &s, &c);
      c *= a.attention_scale;
      s *= a.attention_scale;
      const float y0 = x0 * c - x1 * s, y1 = x1 * c + x0 * s;
      x0 = y0;
      x1 = y1;
    }
    if (is_q) {
      bf16* q = a.q + static_cast<int64_t>(t) * QD + h * a.head_dim;
      q[i0] = to_bits(x0);
      q[i1] = to_bits(x1);
    } else {
      const int g = h - a.n_heads;
      bf16* k = a.k_cache + (static_cast<int64_t>(g) * a.capacity + pos) * a.head_dim;
      k[i0] = to_bits(x0);
      k[i1] = to_bits(x1);
    }
  }
  for (int idx = first + threadIdx.x; idx < KVD; idx += stride) {
    const int g = idx / a.head_dim, d = idx % a.head_dim;
    a.v_cache[(static_cast<int64_t>(g) * a.capacity + pos) * a.head_dim + d] = to_bits(val(QD + KVD + idx));
  }
}

__global__ void swiglu_kernel(const bf16* __restrict__ gu, int64_t n, int ffn, bf16* __restrict__ out) {
  const int64_t total = n * ffn;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / ffn, j = i % ffn;
    const float g = to_f(gu[t * 2 * ffn + j]);
    const float u = to_f(gu[t * 2 * ffn + ffn + j]);
    out[i] = to_bits(g / (1.0f + __expf(-g)) * u);
  }
}

__global__ void f32_to_bf16_kernel(const float* in, int64_t count, bf16* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = to_bits(in[i]);
}

__global__ void bf16_to_f32_kernel(const bf16* in, int64_t count, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = to_f(in[i]);
}

__global__ void add_f32_kernel(float* x, const float* y, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__global__ void fill_normal_kernel(bf16* out, int64_t count, uint64_t seed, float stddev) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = mix64(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i));
    const float u1 = (static_cast<float>(r >> 40) + 0.5f) * (1.0f / 16777216.0f);
    const float u2 = static_cast<float>((r >> 16) & 0xffffff) * (1.0f / 16777216.0f);
    const float z = sqrtf(-2.0f * __logf(u1)) * __cosf(6.2831853f * u2);
    out[i] = to_bits(z * stddev);
  }
}

__global__ void fill_kernel(bf16* out, int64_t count, bf16 v) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = v;
}

}  // namespace

void embedding(const bf16* table, const int32_t* tokens, int n, int hidden, float* x, cudaStream_t stream) {
  if (n <= 0) return;
  embedding_kernel<<<n, 256, 0, stream>>>(table, tokens, hidden, x);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void rmsnorm(const float* x, const float* weight, int rows, int dim, float eps, bf16* out, cudaStream_t stream) {
  if (rows <= 0) return;
  rmsnorm_kernel<256><<<rows, 256, 0, stream>>>(x, weight, dim, eps, out);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void rope_qkv(const RopeArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  // a step of few tokens spreads each token's pairs over several blocks (one block did a decode
  // step's 2,560 pairs of the 8B shape in 11.6 us on the H100)
  const int pairs = (a.n_heads + a.n_kv_heads) * (a.head_dim / 2);
  const unsigned per_token = a.n >= 16 ? 1u : static_cast<unsigned>(std::min(16, (pairs + 255) / 256));
  rope_qkv_kernel<<<dim3(static_cast<unsigned>(a.n), per_token), 256, 0, stream>>>(a);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void kv_quantize_q8(const KvQ8Args& a, cudaStream_t stream) {
  const int64_t count = static_cast<int64_t>(a.n) * a.n_kv_heads * a.blocks;
  if (count <= 0) return;
  kv_quantize_q8_kernel<<<dim3(blocks_for(count, 128), 2), 128, 0, stream>>>(a);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void kv_expand_q8(const KvQ8Args& a, int64_t rows, cudaStream_t stream) {
  if (rows <= 0) return;
  const bool wide = a.head_dim % 8 == 0;
  const int64_t count = rows * a.n_kv_heads * (wide ? a.head_dim / 8 : a.head_dim);
  const dim3 grid(blocks_for(count, 256), 2);
  if (wide) kv_expand_q8_kernel<8><<<grid, 256, 0, stream>>>(a, rows);
  else kv_expand_q8_kernel<1><<<grid, 256, 0, stream>>>(a, rows);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void swiglu(const bf16* gate_up, int n, int ffn, bf16* out, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(n) * ffn;
  if (total <= 0) return;
  swiglu_kernel<<<blocks_for(total, 256), 256, 0, stream>>>(gate_up, n, ffn, out);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void f32_to_bf16(const float* in, int64_t count, bf16* out, cudaStream_t stream) {
  if (count <= 0) return;
  f32_to_bf16_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(in, count, out);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void bf16_to_f32(const bf16* in, int64_t count, float* out, cudaStream_t stream) {
  if (count <= 0) return;
  bf16_to_f32_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(in, count, out);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void add_f32(float* x, const float* y, int64_t count, cudaStream_t stream) {
  if (count <= 0) return;
  add_f32_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(x, y, count);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void fill_normal_bf16(bf16* out, int64_t count, uint64_t seed, float stddev, cudaStream_t stream) {
  if (count <= 0) return;
  fill_normal_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(out, count, seed, stddev);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

void fill_bf16(bf16* out, int64_t count, float value, cudaStream_t stream) {
  if (count <= 0) return;
  uint32_t bits;
  memcpy(&bits, &value, 4);
  const bf16 b = static_cast<bf16>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
  fill_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(out, count, b);
  FOLIO_CUDA_CHECK(cudaGetLastError());
}

}  // namespace folio::cuda
