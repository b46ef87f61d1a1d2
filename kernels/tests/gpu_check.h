// A minimal harness for the GPU tests: plain executables (no Qt on the GPU machine) that exit 77
// (CTest's "skipped") where no GPU is usable, 1 on any failed check, 0 otherwise.
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/model/quant.h"
#include "core/model/tensor.h"
#include "kernels/cuda_util.h"

namespace folio::gputest {

inline int& failures() {
  static int f = 0;
  return f;
}

#define GCHECK(cond, ...)                                                                   \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "  FAIL %s:%d: %s ", __FILE__, __LINE__, #cond);                 \
      std::fprintf(stderr, __VA_ARGS__);                                                    \
      std::fprintf(stderr, "\n");                                                           \
      ++::folio::gputest::failures();                                                       \
    }                                                                                       \
  } while (0)

struct Case {
  std::string name;
  std::function<void()> fn;
};

inline int run_cases(const char* suite, const std::vector<Case>& cases) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    std::printf("%s: SKIP (no usable GPU)\n", suite);
    return 77;
  }
  // FOLIO_GPU_CASES=name[,name...] runs only those cases (for compute-sanitizer runs)
  const char* only = std::getenv("FOLIO_GPU_CASES");
  std::string wanted = ",";
  if (only != nullptr) wanted.append(only);
  wanted.push_back(',');
  for (const Case& c : cases) {
    std::string key = ",";
    key.append(c.name);
    key.push_back(',');
    if (wanted.size() > 2 && wanted.find(key) == std::string::npos) continue;
    const int before = failures();
    try {
      c.fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  FAIL %s threw: %s\n", c.name.c_str(), e.what());
      ++failures();
    }
    std::printf("%s %s::%s\n", failures() == before ? "PASS" : "FAIL", suite, c.name.c_str());
    std::fflush(stdout);
  }
  std::printf("%s: %d failure(s) in %zu cases\n", suite, failures(), cases.size());
  return failures() == 0 ? 0 : 1;
}

// A matrix of GGUF blocks: random bytes with sane scales.
inline std::vector<uint8_t> random_blocks(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.002f, 0.02f);
  const size_t bb = block_bytes(type);
  const int64_t blocks = rows * cols / block_elements(type);
  std::vector<uint8_t> out(static_cast<size_t>(blocks) * bb);
  for (auto& b : out) b = static_cast<uint8_t>(byte(rng));
  auto put = [](uint8_t* p, float v) {
    const uint16_t h = f32_to_f16(v);
    std::memcpy(p, &h, 2);
  };
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* p = out.data() + static_cast<size_t>(b) * bb;
    switch (type) {
      case DType::Q8_0:
      case DType::Q4_0: put(p, scale(rng)); break;
      // mins near the mean quant and every type near the same spread (~0.05): weights centred on
      // zero, so a model of them is not chaotic and the CPU's 8-bit activations and the GPU's bf16
      // ones give close logits (CPU quantized vs its fp32 twin: 1.4%, bf16-rounded twin: 1.4%)
      case DType::Q4_1: { const float d = scale(rng); put(p, d); put(p + 2, -7.5f * d); break; }
      case DType::Q4_K: { const float d = scale(rng) * 0.03f; put(p, d); put(p + 2, 7.5f * d); break; }
      case DType::Q5_K: { const float d = scale(rng) * 0.015f; put(p, d); put(p + 2, 15.5f * d); break; }
      case DType::Q6_K: put(p + 208, scale(rng) * 0.003f); break;
      default: break;
    }
  }
  return out;
}

inline std::vector<float> dequantized(DType type, const std::vector<uint8_t>& blocks, int64_t rows, int64_t cols) {
  std::vector<float> w(static_cast<size_t>(rows * cols));
  TensorView v;
  v.dtype = type;
  v.rows = rows;
  v.cols = cols;
  v.data = blocks.data();
  for (int64_t r = 0; r < rows; ++r) row_to_f32(v, r, w.data() + r * cols);
  return w;
}

inline std::vector<float> random_normal(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

inline std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(v[i]);
  return out;
}

// Rounds through bf16 (the values the GPU really sees).
inline std::vector<float> bf16_round(const std::vector<float>& v) { return from_bf16(to_bf16(v)); }

// A device buffer of T, freed at scope end; filled with a poison byte pattern on creation.
template <typename T>
class Dev {
 public:
  explicit Dev(size_t n, int poison_byte = 0xff) : n_(n) {
    FOLIO_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
    FOLIO_CUDA_CHECK(cudaMemset(p_, poison_byte, std::max<size_t>(n, 1) * sizeof(T)));
  }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) { upload(v); }
  ~Dev() { cudaFree(p_); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void upload(const std::vector<T>& v) {
    FOLIO_CUDA_CHECK(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    FOLIO_CUDA_CHECK(cudaDeviceSynchronize());
    FOLIO_CUDA_CHECK(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

struct Compare {
  double rel_norm = 0.0;  // ||a - b|| / ||b||
  double max_rel = 0.0;   // max |a - b| / max |b|
  size_t non_finite = 0;
};

inline Compare compare(const std::vector<float>& got, const std::vector<float>& ref) {
  Compare c;
  double num = 0.0, den = 0.0, max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) {
      ++c.non_finite;
      continue;
    }
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
    max_diff = std::max(max_diff, std::fabs(d));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
  }
  c.rel_norm = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  c.max_rel = max_ref > 0 ? max_diff / max_ref : max_diff;
  return c;
}

}  // namespace folio::gputest
