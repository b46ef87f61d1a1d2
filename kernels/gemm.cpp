#include "kernels/gemm.h"

#include <cublasLt.h>

#include <string>

#include "core/common/error.h"

namespace folio::cuda {

namespace {

void check(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCode::Internal, std::string("cuBLASLt ") + what + " failed with status " +
                                         std::to_string(static_cast<int>(st)));
}

}  // namespace

struct Gemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (op) cublasLtMatmulDescDestroy(op);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
  }
};

Gemm::Gemm(void* workspace, size_t workspace_bytes) : workspace_(workspace), workspace_bytes_(workspace_bytes) {
  cublasLtHandle_t h = nullptr;
  check(cublasLtCreate(&h), "create");
  handle_ = h;
}

Gemm::~Gemm() {
  plans_.clear();
  if (handle_) cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

// Column-major view: Y^T (m x n) = W (stored k x m, transposed) * X^T (k x n).
Gemm::Plan& Gemm::plan(int64_t n, int64_t m, int64_t k, Out out) {
  auto key = std::make_tuple(n, m, k, static_cast<int>(out));
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  check(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
  check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
  const cudaDataType_t yt = out == Out::Bf16 ? CUDA_R_16BF : CUDA_R_32F;
  check(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, static_cast<uint64_t>(k), static_cast<uint64_t>(m), k), "layout a");
  check(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, static_cast<uint64_t>(k), static_cast<uint64_t>(n), k), "layout b");
  check(cublasLtMatrixLayoutCreate(&p->c, yt, static_cast<uint64_t>(m), static_cast<uint64_t>(n), m), "layout c");
  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "preference");
  check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_,
                                             sizeof workspace_bytes_),
        "workspace preference");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(static_cast<cublasLtHandle_t>(handle_), p->op, p->a, p->b,
                                                           p->c, p->c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  check(st, "heuristic");
  if (found == 0)
    throw Error(ErrorCode::Internal, "cuBLASLt has no algorithm for a " + std::to_string(n) + "x" + std::to_string(m) +
                                         "x" + std::to_string(k) + " bf16 matmul");
  p->algo = result.algo;
  Plan& ref = *p;
  plans_.emplace(key, std::move(p));
  return ref;
}

void Gemm::run(cudaStream_t stream, const uint16_t* x, int64_t n, const uint16_t* w, int64_t m, int64_t k, void* y,
               Out out) {
  if (n <= 0) return;
  Plan& p = plan(n, m, k, out);
  const float alpha = 1.0f, beta = out == Out::F32Accumulate ? 1.0f : 0.0f;
  check(cublasLtMatmul(static_cast<cublasLtHandle_t>(handle_), p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c,
                       &p.algo, workspace_, workspace_bytes_, stream),
        "matmul");
}

}  // namespace folio::cuda
