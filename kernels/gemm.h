// Projections through cuBLASLt: y[n][m] = x[n][k] W[m][k]^T with bf16 x and W, fp32 accumulate,
// y in bf16 or fp32; with accumulate, y += (fp32 only: the residual stream takes the attention
// output and FFN projections directly). One heuristic query per shape, cached.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace folio::cuda {

// Why cuBLASLt cannot be used ("" when it can): it is loaded at run time, not linked (gemm.cpp).
std::string cublaslt_unavailable();

class Gemm {
 public:
  // `workspace` (device memory on the stream's device) of `workspace_bytes` is lent by the caller.
  Gemm(void* workspace, size_t workspace_bytes);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  enum class Out { Bf16, F32, F32Accumulate };
  void run(cudaStream_t stream, const uint16_t* x, int64_t n, const uint16_t* w, int64_t m, int64_t k, void* y,
           Out out);

 private:
  struct Plan;
  Plan& plan(int64_t n, int64_t m, int64_t k, Out out);
  void* handle_ = nullptr;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<std::tuple<int64_t, int64_t, int64_t, int>, std::unique_ptr<Plan>> plans_;
};

}  // namespace folio::cuda
