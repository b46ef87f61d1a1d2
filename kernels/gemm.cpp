#include "kernels/gemm.h"

#include <cublasLt.h>

#include <string>

#include "core/common/error.h"
#include "kernels/shared_library.h"

namespace folio::cuda {

namespace {

// cuBLASLt is loaded when the first Gemm is made, not linked: a machine without it (the DEB only
// recommends it) still starts every program and runs on the CPU. The soname comes from the toolkit
// the build used; its folder is the second place to look (a toolkit outside the loader's path).
struct CublasLt {
  decltype(&cublasLtCreate) create = nullptr;
  decltype(&cublasLtDestroy) destroy = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  decltype(&cublasLtMatmulDescCreate) desc_create = nullptr;
  decltype(&cublasLtMatmulDescDestroy) desc_destroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) desc_set = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) pref_create = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) layout_create = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) layout_destroy = nullptr;
  std::string error;  // why it could not be loaded; "" when loaded
};

CublasLt load_cublaslt() {
  CublasLt c;
  SharedLibrary lib(FOLIO_CUBLASLT_SONAME, {FOLIO_CUBLASLT_SONAME, FOLIO_CUBLASLT_TOOLKIT_PATH});
  if (!lib.loaded()) {
    c.error = "cuBLASLt (" FOLIO_CUBLASLT_SONAME ") is not installed: install NVIDIA's libcublas package for CUDA " +
              std::string(FOLIO_CUDA_VERSION_STR);
    return c;
  }
  lib.bind("cublasLtCreate", c.create);
  lib.bind("cublasLtDestroy", c.destroy);
  lib.bind("cublasLtMatmul", c.matmul);
  lib.bind("cublasLtMatmulAlgoGetHeuristic", c.heuristic);
  lib.bind("cublasLtMatmulDescCreate", c.desc_create);
  lib.bind("cublasLtMatmulDescDestroy", c.desc_destroy);
  lib.bind("cublasLtMatmulDescSetAttribute", c.desc_set);
  lib.bind("cublasLtMatmulPreferenceCreate", c.pref_create);
  lib.bind("cublasLtMatmulPreferenceDestroy", c.pref_destroy);
  lib.bind("cublasLtMatmulPreferenceSetAttribute", c.pref_set);
  lib.bind("cublasLtMatrixLayoutCreate", c.layout_create);
  lib.bind("cublasLtMatrixLayoutDestroy", c.layout_destroy);
  c.error = lib.error();
  return c;
}

const CublasLt& lt() {
  static const CublasLt c = load_cublaslt();
  if (!c.error.empty()) throw Error(ErrorCode::BackendUnavailable, c.error);
  return c;
}

void check(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCode::Internal,
                std::string("cuBLASLt ") + what + " failed with status " + std::to_string(static_cast<int>(st)));
}

}  // namespace

std::string cublaslt_unavailable() {
  try {
    lt();
    return {};
  } catch (const Error& e) {
    return e.what();
  }
}

struct Gemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (op) lt().desc_destroy(op);
    if (a) lt().layout_destroy(a);
    if (b) lt().layout_destroy(b);
    if (c) lt().layout_destroy(c);
  }
};

Gemm::Gemm(void* workspace, size_t workspace_bytes) : workspace_(workspace), workspace_bytes_(workspace_bytes) {
  cublasLtHandle_t h = nullptr;
  check(lt().create(&h), "create");
  handle_ = h;
}

Gemm::~Gemm() {
  plans_.clear();
  if (handle_) lt().destroy(static_cast<cublasLtHandle_t>(handle_));
}

// Column-major view: Y^T (m x n) = W (stored k x m, transposed) * X^T (k x n).
Gemm::Plan& Gemm::plan(int64_t n, int64_t m, int64_t k, Out out) {
  auto key = std::make_tuple(n, m, k, static_cast<int>(out));
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  auto p = std::make_unique<Plan>();
  check(lt().desc_create(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc");
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  check(lt().desc_set(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
  check(lt().desc_set(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
  const cudaDataType_t yt = out == Out::Bf16 ? CUDA_R_16BF : CUDA_R_32F;
  check(lt().layout_create(&p->a, CUDA_R_16BF, static_cast<uint64_t>(k), static_cast<uint64_t>(m), k), "layout a");
  check(lt().layout_create(&p->b, CUDA_R_16BF, static_cast<uint64_t>(k), static_cast<uint64_t>(n), k), "layout b");
  check(lt().layout_create(&p->c, yt, static_cast<uint64_t>(m), static_cast<uint64_t>(n), m), "layout c");
  cublasLtMatmulPreference_t pref = nullptr;
  check(lt().pref_create(&pref), "preference");
  check(lt().pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_, sizeof workspace_bytes_),
        "workspace preference");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      lt().heuristic(static_cast<cublasLtHandle_t>(handle_), p->op, p->a, p->b, p->c, p->c, pref, 1, &result, &found);
  lt().pref_destroy(pref);
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
  check(lt().matmul(static_cast<cublasLtHandle_t>(handle_), p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c,
                    &p.algo, workspace_, workspace_bytes_, stream),
        "matmul");
}

}  // namespace folio::cuda
