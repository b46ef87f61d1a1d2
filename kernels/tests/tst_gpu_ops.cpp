// Every CUDA op against the CPU reference (core/cpu/cpu_ops.h) on varied shapes: odd lengths,
// chunk boundaries, head dims 64/96/128 (and odd ones through the simple kernel), GQA ratios 1, 4
// and 8, attention up to 64K keys. Outputs are poisoned (NaN bytes) before each run so that
// elements a kernel forgets to write are caught.
#include <algorithm>
#include <cstdio>

#include "core/common/thread_pool.h"
#include "core/cpu/cpu_ops.h"
#include "kernels/memory_plan.h"
#include "kernels/cuda_ops.h"
#include "kernels/flash_attention_sm90.h"
#include "core/common/error.h"
#include "core/model/quant.h"
#include "kernels/gemm.h"
#include "kernels/quant_ops.h"
#include "kernels/tests/gpu_check.h"

using namespace folio;
using namespace folio::gputest;

namespace {

ThreadPool& pool() {
  static ThreadPool p(0);
  return p;
}

void test_rmsnorm() {
  for (auto [rows, dim] : std::vector<std::pair<int, int>>{{1, 576}, {7, 4096}, {130, 3072}, {3, 100}}) {
    auto x = random_normal(static_cast<size_t>(rows) * dim, 1 + rows, 2.0f);
    auto w = random_normal(static_cast<size_t>(dim), 2, 1.0f);
    Dev<float> dx(x), dw(w);
    Dev<uint16_t> out(x.size());
    cuda::rmsnorm(dx.get(), dw.get(), rows, dim, 1e-5f, out.get(), nullptr);
    std::vector<float> ref(x.size());
    cpu::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, ref.data());
    Compare c = compare(from_bf16(out.download()), ref);
    GCHECK(c.non_finite == 0 && c.rel_norm < 8e-3, "rows %d dim %d: rel %.3g, %zu non-finite", rows, dim, c.rel_norm,
           c.non_finite);
  }
}

void test_embedding() {
  const int vocab = 1000, hidden = 576, n = 37;
  auto table = to_bf16(random_normal(static_cast<size_t>(vocab) * hidden, 3));
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[static_cast<size_t>(i)] = (i * 7919) % vocab;
  Dev<uint16_t> dt(table);
  Dev<int32_t> dtok(tokens);
  Dev<float> out(static_cast<size_t>(n) * hidden);
  cuda::embedding(dt.get(), dtok.get(), n, hidden, out.get(), nullptr);
  auto got = out.download();
  size_t wrong = 0;
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < hidden; ++i)
      if (got[static_cast<size_t>(t) * hidden + i] !=
          bf16_to_f32(table[static_cast<size_t>(tokens[static_cast<size_t>(t)]) * hidden + i]))
        ++wrong;
  GCHECK(wrong == 0, "%zu values differ", wrong);
}

struct RopeCase {
  int n_heads, n_kv, hd, rotary;
  RopeLayout layout;
  bool bias;
  int n;
  int64_t pos0;
};

void test_rope_qkv() {
  const std::vector<RopeCase> cases = {
      {4, 2, 64, 64, RopeLayout::RotateHalf, false, 1, 0},   {8, 8, 96, 96, RopeLayout::AdjacentPairs, true, 37, 1000},
      {4, 1, 128, 64, RopeLayout::RotateHalf, false, 130, 5}, {32, 8, 128, 128, RopeLayout::RotateHalf, false, 513, 65000},
      {2, 1, 80, 80, RopeLayout::RotateHalf, true, 9, 3},      {8, 4, 8, 8, RopeLayout::AdjacentPairs, false, 17, 200},
  };
  for (const RopeCase& rc : cases) {
    const int QD = rc.n_heads * rc.hd, KVD = rc.n_kv * rc.hd, W = QD + 2 * KVD;
    const int64_t capacity = rc.pos0 + rc.n + 3;
    RopeConfig cfg;
    cfg.theta = 500000.0;
    cfg.rotary_dim = rc.rotary;
    cfg.layout = rc.layout;
    RopeTable table = make_rope_table(cfg, capacity);
    auto qkv = bf16_round(random_normal(static_cast<size_t>(rc.n) * W, 11 + rc.n));
    auto bias = random_normal(static_cast<size_t>(W), 12, 0.5f);
    Dev<uint16_t> dqkv(to_bf16(qkv));
    Dev<float> dbias(bias), dfreq(table.inv_freq);
    Dev<uint16_t> q(static_cast<size_t>(rc.n) * QD), kc(static_cast<size_t>(rc.n_kv * capacity * rc.hd)),
        vc(static_cast<size_t>(rc.n_kv * capacity * rc.hd));
    cuda::RopeArgs a;
    a.qkv = dqkv.get();
    a.bias = rc.bias ? dbias.get() : nullptr;
    a.inv_freq = dfreq.get();
    a.n = rc.n;
    a.pos0 = rc.pos0;
    a.n_heads = rc.n_heads;
    a.n_kv_heads = rc.n_kv;
    a.head_dim = rc.hd;
    a.rotary_half = rc.rotary / 2;
    a.adjacent_pairs = rc.layout == RopeLayout::AdjacentPairs;
    a.attention_scale = table.attention_scale;
    a.q = q.get();
    a.k_cache = kc.get();
    a.v_cache = vc.get();
    a.capacity = capacity;
    cuda::rope_qkv(a, nullptr);
    // CPU: bias, rope on q and k
    std::vector<float> rq(static_cast<size_t>(rc.n) * QD), rk(static_cast<size_t>(rc.n) * KVD),
        rv(static_cast<size_t>(rc.n) * KVD);
    for (int t = 0; t < rc.n; ++t)
      for (int i = 0; i < W; ++i) {
        float v = qkv[static_cast<size_t>(t) * W + i] + (rc.bias ? bias[static_cast<size_t>(i)] : 0.0f);
        if (i < QD) rq[static_cast<size_t>(t) * QD + i] = v;
        else if (i < QD + KVD) rk[static_cast<size_t>(t) * KVD + i - QD] = v;
        else rv[static_cast<size_t>(t) * KVD + i - QD - KVD] = v;
      }
    std::vector<int32_t> positions(static_cast<size_t>(rc.n));
    for (int t = 0; t < rc.n; ++t) positions[static_cast<size_t>(t)] = static_cast<int32_t>(rc.pos0 + t);
    cpu::rope(rq.data(), rc.n, QD, rc.n_heads, rc.hd, positions, table, rc.layout);
    cpu::rope(rk.data(), rc.n, KVD, rc.n_kv, rc.hd, positions, table, rc.layout);
    Compare cq = compare(from_bf16(q.download()), rq);
    auto gk = kc.download(), gv = vc.download();
    std::vector<float> gotk(rk.size()), gotv(rv.size());
    size_t untouched_bad = 0;
    for (int g = 0; g < rc.n_kv; ++g)
      for (int64_t p = 0; p < capacity; ++p)
        for (int d = 0; d < rc.hd; ++d) {
          const size_t src = (static_cast<size_t>(g) * capacity + p) * rc.hd + d;
          if (p >= rc.pos0 && p < rc.pos0 + rc.n) {
            const size_t dst = static_cast<size_t>(p - rc.pos0) * KVD + g * rc.hd + d;
            gotk[dst] = bf16_to_f32(gk[src]);
            gotv[dst] = bf16_to_f32(gv[src]);
          } else if (gk[src] != 0xffff || gv[src] != 0xffff) {
            ++untouched_bad;
          }
        }
    Compare ck = compare(gotk, rk), cv = compare(gotv, rv);
    GCHECK(cq.non_finite == 0 && cq.rel_norm < 8e-3, "hd %d q rel %.3g nonfinite %zu", rc.hd, cq.rel_norm, cq.non_finite);
    GCHECK(ck.non_finite == 0 && ck.rel_norm < 8e-3, "hd %d k rel %.3g nonfinite %zu", rc.hd, ck.rel_norm, ck.non_finite);
    GCHECK(cv.non_finite == 0 && cv.rel_norm < 8e-3, "hd %d v rel %.3g", rc.hd, cv.rel_norm);
    GCHECK(untouched_bad == 0, "hd %d: %zu cache values outside the chunk were written", rc.hd, untouched_bad);
  }
}

void test_swiglu() {
  for (auto [n, F] : std::vector<std::pair<int, int>>{{1, 1536}, {77, 14336}, {3, 100}}) {
    auto gu = bf16_round(random_normal(static_cast<size_t>(n) * 2 * F, 5 + n, 2.0f));
    Dev<uint16_t> dgu(to_bf16(gu)), out(static_cast<size_t>(n) * F);
    cuda::swiglu(dgu.get(), n, F, out.get(), nullptr);
    std::vector<float> g(static_cast<size_t>(n) * F), u(g.size()), ref(g.size());
    for (int t = 0; t < n; ++t)
      for (int i = 0; i < F; ++i) {
        g[static_cast<size_t>(t) * F + i] = gu[static_cast<size_t>(t) * 2 * F + i];
        u[static_cast<size_t>(t) * F + i] = gu[static_cast<size_t>(t) * 2 * F + F + i];
      }
    cpu::swiglu(g.data(), u.data(), static_cast<int64_t>(g.size()), ref.data());
    Compare c = compare(from_bf16(out.download()), ref);
    GCHECK(c.non_finite == 0 && c.rel_norm < 8e-3, "n %d F %d rel %.3g", n, F, c.rel_norm);
  }
}

void test_gemm() {
  Dev<uint8_t> ws(kGemmWorkspaceBytes, 0);
  cuda::Gemm gemm(ws.get(), kGemmWorkspaceBytes);
  struct G {
    int n, m, k;
  };
  for (G s : std::vector<G>{{1, 576, 576}, {7, 1536, 576}, {130, 1000, 384}, {513, 256, 4096}, {4096, 512, 512}}) {
    auto x = bf16_round(random_normal(static_cast<size_t>(s.n) * s.k, 21 + s.n));
    auto w = bf16_round(random_normal(static_cast<size_t>(s.m) * s.k, 22 + s.m, 0.05f));
    auto y0 = random_normal(static_cast<size_t>(s.n) * s.m, 23);
    std::vector<float> ref(static_cast<size_t>(s.n) * s.m);
    pool().parallel_for(s.n, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t)
        for (int j = 0; j < s.m; ++j) {
          double acc = 0.0;
          for (int i = 0; i < s.k; ++i)
            acc += static_cast<double>(x[static_cast<size_t>(t * s.k + i)]) * w[static_cast<size_t>(j) * s.k + i];
          ref[static_cast<size_t>(t * s.m + j)] = static_cast<float>(acc);
        }
    });
    Dev<uint16_t> dx(to_bf16(x)), dw(to_bf16(w)), yb(ref.size());
    Dev<float> yf(ref.size()), ya(y0);
    gemm.run(nullptr, dx.get(), s.n, dw.get(), s.m, s.k, yb.get(), cuda::Gemm::Out::Bf16);
    gemm.run(nullptr, dx.get(), s.n, dw.get(), s.m, s.k, yf.get(), cuda::Gemm::Out::F32);
    gemm.run(nullptr, dx.get(), s.n, dw.get(), s.m, s.k, ya.get(), cuda::Gemm::Out::F32Accumulate);
    std::vector<float> ref_acc(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) ref_acc[i] = ref[i] + y0[i];
    Compare cb = compare(from_bf16(yb.download()), ref), cf = compare(yf.download(), ref),
            ca = compare(ya.download(), ref_acc);
    GCHECK(cb.non_finite == 0 && cb.rel_norm < 8e-3, "%dx%dx%d bf16 rel %.3g", s.n, s.m, s.k, cb.rel_norm);
    GCHECK(cf.non_finite == 0 && cf.rel_norm < 1e-4, "%dx%dx%d f32 rel %.3g", s.n, s.m, s.k, cf.rel_norm);
    GCHECK(ca.non_finite == 0 && ca.rel_norm < 1e-4, "%dx%dx%d acc rel %.3g", s.n, s.m, s.k, ca.rel_norm);
  }
}

// Weights kept in their blocks: the bf16 expansion equals the CPU's dequantized values rounded to
// bf16 (the same fp32 operations); the GEMV against the fp64 product with the CPU's values, into
// bf16, fp32 and added to fp32; the embedding gather bit-exact; rows that are not whole blocks refused.
void test_quant() {
  struct Q {
    DType t;
    int64_t rows, cols;
  };
  std::vector<Q> cases;
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    cases.push_back({t, 1, 32});
    cases.push_back({t, 37, 96});
    cases.push_back({t, 130, 576});
    cases.push_back({t, 257, 4096});
  }
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    cases.push_back({t, 1, 256});
    cases.push_back({t, 37, 512});
    cases.push_back({t, 131, 1280});
    cases.push_back({t, 64, 14336});
  }
  uint32_t seed = 500;
  for (const Q& q : cases) {
    const auto blocks = random_blocks(q.t, q.rows, q.cols, seed++);
    const auto w = dequantized(q.t, blocks, q.rows, q.cols);
    Dev<uint8_t> dw(blocks);
    // expansion to bf16
    Dev<uint16_t> ex(w.size());
    cuda::quant_to_bf16(q.t, dw.get(), q.rows, q.cols, ex.get(), nullptr);
    const auto got = ex.download();
    size_t differ = 0;
    for (size_t i = 0; i < w.size(); ++i) differ += got[i] != f32_to_bf16(w[i]);
    GCHECK(differ == 0, "%s %lldx%lld: %zu of %zu expanded values differ from the CPU's", dtype_name(q.t),
           static_cast<long long>(q.rows), static_cast<long long>(q.cols), differ, w.size());
    // GEMV
    const auto x = bf16_round(random_normal(static_cast<size_t>(q.cols), seed++));
    const auto y0 = random_normal(static_cast<size_t>(q.rows), seed++);
    std::vector<float> ref(static_cast<size_t>(q.rows)), ref_acc(ref.size());
    for (int64_t r = 0; r < q.rows; ++r) {
      double acc = 0.0;
      for (int64_t k = 0; k < q.cols; ++k) acc += static_cast<double>(w[static_cast<size_t>(r * q.cols + k)]) * x[static_cast<size_t>(k)];
      ref[static_cast<size_t>(r)] = static_cast<float>(acc);
      ref_acc[static_cast<size_t>(r)] = static_cast<float>(acc + y0[static_cast<size_t>(r)]);
    }
    Dev<uint16_t> dx(to_bf16(x)), yb(ref.size());
    Dev<float> yf(ref.size()), ya(y0);
    cuda::quant_gemv(q.t, dw.get(), q.rows, q.cols, dx.get(), yb.get(), cuda::GemvOut::Bf16, nullptr);
    cuda::quant_gemv(q.t, dw.get(), q.rows, q.cols, dx.get(), yf.get(), cuda::GemvOut::F32, nullptr);
    cuda::quant_gemv(q.t, dw.get(), q.rows, q.cols, dx.get(), ya.get(), cuda::GemvOut::F32Accumulate, nullptr);
    Compare cb = compare(from_bf16(yb.download()), ref), cf = compare(yf.download(), ref),
            ca = compare(ya.download(), ref_acc);
    GCHECK(cf.non_finite == 0 && cf.rel_norm < 2e-5, "%s %lldx%lld gemv f32 rel %.3g", dtype_name(q.t),
           static_cast<long long>(q.rows), static_cast<long long>(q.cols), cf.rel_norm);
    GCHECK(ca.non_finite == 0 && ca.rel_norm < 2e-5, "%s gemv acc rel %.3g", dtype_name(q.t), ca.rel_norm);
    GCHECK(cb.non_finite == 0 && cb.rel_norm < 8e-3, "%s gemv bf16 rel %.3g", dtype_name(q.t), cb.rel_norm);
    // the integer-dot GEMV (Q4_K, Q5_K): against the fp64 product with the activations rounded as
    // the CPU rounds them (tight), and against the unrounded product (the rounding's own error)
    if (cuda::gemv_takes_quantized_x(q.t)) {
      std::vector<float> xr(x.size()), s_host(x.size() / 32);
      for (size_t b = 0; b < x.size() / 32; ++b) {
        float amax = 0.0f;
        for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[32 * b + i]));
        const float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        for (size_t i = 0; i < 32; ++i) xr[32 * b + i] = d * std::nearbyint(x[32 * b + i] * inv);
      }
      std::vector<float> ref_q(ref.size());
      for (int64_t r = 0; r < q.rows; ++r) {
        double acc = 0.0;
        for (int64_t k = 0; k < q.cols; ++k) acc += static_cast<double>(w[static_cast<size_t>(r * q.cols + k)]) * xr[static_cast<size_t>(k)];
        ref_q[static_cast<size_t>(r)] = static_cast<float>(acc);
      }
      Dev<uint8_t> scratch(cuda::quantized_x_bytes(q.cols));
      const cuda::QuantizedX qx = cuda::carve_quantized_x(scratch.get(), q.cols);
      cuda::quantize_x(dx.get(), q.cols, qx, nullptr);
      Dev<float> yq(ref.size()), yqa(y0);
      cuda::quant_gemv_qx(q.t, dw.get(), q.rows, q.cols, qx, yq.get(), cuda::GemvOut::F32, nullptr);
      cuda::quant_gemv_qx(q.t, dw.get(), q.rows, q.cols, qx, yqa.get(), cuda::GemvOut::F32Accumulate, nullptr);
      std::vector<float> ref_qa(ref.size());
      for (size_t i = 0; i < ref.size(); ++i) ref_qa[i] = ref_q[i] + y0[i];
      const Compare cq = compare(yq.download(), ref_q), cqa = compare(yqa.download(), ref_qa), cu = compare(yq.download(), ref);
      GCHECK(cq.non_finite == 0 && cq.rel_norm < 2e-5, "%s %lldx%lld integer-dot gemv rel %.3g (activations rounded)",
             dtype_name(q.t), static_cast<long long>(q.rows), static_cast<long long>(q.cols), cq.rel_norm);
      GCHECK(cqa.non_finite == 0 && cqa.rel_norm < 2e-5, "%s integer-dot gemv acc rel %.3g", dtype_name(q.t), cqa.rel_norm);
      GCHECK(cu.rel_norm < 2e-2, "%s integer-dot gemv against unrounded activations rel %.3g", dtype_name(q.t), cu.rel_norm);
      std::printf("  %s %lldx%lld integer-dot gemv: rel %.2g (rounded activations), %.2g (unrounded)\n", dtype_name(q.t),
                  static_cast<long long>(q.rows), static_cast<long long>(q.cols), cq.rel_norm, cu.rel_norm);
    }
    // embedding rows
    const std::vector<int32_t> tokens = {0, static_cast<int32_t>(q.rows - 1), static_cast<int32_t>(q.rows / 2)};
    Dev<int32_t> dt(tokens);
    Dev<float> xe(tokens.size() * static_cast<size_t>(q.cols));
    cuda::quant_embedding(q.t, dw.get(), q.cols, dt.get(), static_cast<int>(tokens.size()), xe.get(), nullptr);
    const auto e = xe.download();
    size_t wrong = 0;
    for (size_t i = 0; i < tokens.size(); ++i)
      for (int64_t k = 0; k < q.cols; ++k)
        wrong += std::memcmp(&e[i * static_cast<size_t>(q.cols) + static_cast<size_t>(k)],
                             &w[static_cast<size_t>(tokens[i] * q.cols + k)], 4) != 0;
    GCHECK(wrong == 0, "%s embedding: %zu values differ", dtype_name(q.t), wrong);
  }
  // bf16 rows beside quantized ones (a fused matrix may mix them)
  {
    const int64_t rows = 45, cols = 200;
    const auto w = bf16_round(random_normal(static_cast<size_t>(rows * cols), 77, 0.05f));
    const auto x = bf16_round(random_normal(static_cast<size_t>(cols), 78));
    std::vector<float> ref(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0.0;
      for (int64_t k = 0; k < cols; ++k) acc += static_cast<double>(w[static_cast<size_t>(r * cols + k)]) * x[static_cast<size_t>(k)];
      ref[static_cast<size_t>(r)] = static_cast<float>(acc);
    }
    Dev<uint16_t> dw(to_bf16(w)), dx(to_bf16(x));
    Dev<float> y(ref.size());
    cuda::quant_gemv(DType::BF16, dw.get(), rows, cols, dx.get(), y.get(), cuda::GemvOut::F32, nullptr);
    Compare c = compare(y.download(), ref);
    GCHECK(c.non_finite == 0 && c.rel_norm < 2e-5, "bf16 gemv rel %.3g", c.rel_norm);
  }
  // a row that is not a whole number of blocks is refused with a clear error
  for (DType t : {DType::Q4_K, DType::Q8_0}) {
    Dev<uint8_t> dw(4096);
    Dev<uint16_t> dx(300);
    Dev<float> y(4);
    bool refused = false;
    try {
      cuda::quant_gemv(t, dw.get(), 4, 300, dx.get(), y.get(), cuda::GemvOut::F32, nullptr);
    } catch (const Error& e) {
      refused = e.code() == ErrorCode::BadModelFile && std::string(e.what()).find("whole number") != std::string::npos;
    }
    GCHECK(refused, "%s with 300 values per row was not refused", dtype_name(t));
  }
}

struct AttnCase {
  int hd, n_heads, n_kv, n;
  int64_t pos0;
};

// Runs GPU attention (prefill kernel, or decode for n == 1 when `decode`) and the CPU reference.
void check_attention(const AttnCase& ac, bool decode, bool explicit_tiles,
                     cuda::AttentionKernel kernel = cuda::AttentionKernel::Auto,
                     cuda::DecodeKernel decode_kernel = cuda::DecodeKernel::Auto) {
  const int64_t capacity = ac.pos0 + ac.n + 5;
  const int64_t kv_len = ac.pos0 + ac.n;
  const size_t cache = static_cast<size_t>(ac.n_kv) * static_cast<size_t>(capacity) * ac.hd;
  auto q = bf16_round(random_normal(static_cast<size_t>(ac.n) * ac.n_heads * ac.hd, 31 + ac.n, 1.0f));
  auto k = bf16_round(random_normal(cache, 32 + ac.hd, 1.0f));
  auto v = bf16_round(random_normal(cache, 33 + ac.hd, 1.0f));
  // rows past kv_len are poison in the GPU cache: kernels must not read them into results
  auto kb = to_bf16(k), vb = to_bf16(v);
  for (int g = 0; g < ac.n_kv; ++g)
    for (int64_t p = kv_len; p < capacity; ++p)
      for (int d = 0; d < ac.hd; ++d) {
        const size_t i = (static_cast<size_t>(g) * capacity + p) * ac.hd + d;
        kb[i] = 0x7fc0;  // NaN
        vb[i] = 0x7fc0;
      }
  Dev<uint16_t> dq(to_bf16(q)), dk(kb), dv(vb), out(q.size());
  Dev<float> partial(static_cast<size_t>(ac.n_heads) * kMaxDecodeSplits * (ac.hd + 2));
  cuda::AttentionArgs a;
  a.q = dq.get();
  a.k_cache = dk.get();
  a.v_cache = dv.get();
  a.out = out.get();
  a.n = ac.n;
  a.pos0 = ac.pos0;
  a.capacity = capacity;
  a.n_heads = ac.n_heads;
  a.n_kv_heads = ac.n_kv;
  a.head_dim = ac.hd;
  a.kernel = kernel;
  a.decode_kernel = decode_kernel;
  std::vector<int32_t> offsets, indices;
  std::unique_ptr<Dev<int32_t>> doff, didx;
  if (explicit_tiles) {
    // every causal tile, listed in reverse order: must equal the implicit dense walk
    const int nq = (ac.n + cuda::kQueryTile - 1) / cuda::kQueryTile;
    for (int h = 0; h < ac.n_heads; ++h) {
      offsets.push_back(static_cast<int32_t>(indices.size()));
      for (int i = 0; i < nq; ++i) {
        const int64_t last = ac.pos0 + std::min((i + 1) * cuda::kQueryTile, ac.n) - 1;
        for (int64_t t = last / cuda::kKeyTile; t >= 0; --t) indices.push_back(static_cast<int32_t>(t));
        offsets.push_back(static_cast<int32_t>(indices.size()));
      }
    }
    doff = std::make_unique<Dev<int32_t>>(offsets);
    didx = std::make_unique<Dev<int32_t>>(indices);
    a.tile_offset = doff->get();
    a.tile_index = didx->get();
  }
  if (decode) cuda::attention_decode(a, partial.get(), 132, nullptr);
  else cuda::attention_prefill(a, nullptr);
  std::vector<float> ref(q.size());
  cpu::attention(pool(), q.data(), ac.n, ac.pos0, k.data(), v.data(), capacity, ac.n_heads, ac.n_kv, ac.hd, ref.data());
  Compare c = compare(from_bf16(out.download()), ref);
  GCHECK(c.non_finite == 0 && c.rel_norm < 1.5e-2 && c.max_rel < 5e-2,
         "hd %d heads %d/%d n %d pos0 %lld %s%s%s: rel %.3g max %.3g non-finite %zu", ac.hd, ac.n_heads, ac.n_kv, ac.n,
         static_cast<long long>(ac.pos0), decode ? "decode" : "prefill", explicit_tiles ? " (tile list)" : "",
         decode ? (decode_kernel == cuda::DecodeKernel::Simt ? " [simt]" : "")
                : kernel == cuda::AttentionKernel::Hopper ? " [hopper]"
                : kernel == cuda::AttentionKernel::Mma    ? " [mma]"
                                                          : "",
         c.rel_norm, c.max_rel, c.non_finite);
}

// The prefill kernels this machine runs: the mma.sync kernel everywhere, the Hopper kernel on
// sm_90 (where the build must have it: the GPU presets build sm_90a).
std::vector<cuda::AttentionKernel> prefill_kernels() {
  std::vector<cuda::AttentionKernel> kernels = {cuda::AttentionKernel::Mma};
  cudaDeviceProp prop{};
  FOLIO_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  if (prop.major == 9) {
    GCHECK(cuda::sm90_prefill_available(), "an sm_90 GPU without the Hopper kernel: was sm_90a left out of the build?");
    kernels.push_back(cuda::AttentionKernel::Hopper);
  }
  return kernels;
}

void test_attention_prefill() {
  const std::vector<AttnCase> cases = {
      {64, 4, 4, 1, 0},      {64, 8, 2, 77, 0},    {96, 8, 8, 200, 0},      {128, 8, 1, 130, 0},
      {128, 32, 8, 300, 129}, {128, 16, 2, 513, 4000}, {96, 4, 1, 64, 63}, {64, 8, 1, 1000, 0},
      {128, 8, 8, 4096, 0},  {96, 32, 32, 129, 8191}, {128, 8, 2, 256, 65536 - 256},
      {64, 8, 2, 191, 33},   {96, 8, 2, 321, 1000}, {128, 32, 8, 1111, 0}, {128, 4, 4, 63, 5},
      {80, 2, 1, 150, 7},    {8, 8, 4, 40, 0},
  };
  for (cuda::AttentionKernel kernel : prefill_kernels())
    for (const AttnCase& c : cases)
      if (kernel == cuda::AttentionKernel::Auto || cuda::attention_head_dim_fast(c.hd)) check_attention(c, false, false, kernel);
  for (const AttnCase& c : cases) check_attention(c, false, false);  // what the engine runs
}

void test_attention_tile_list() {
  for (cuda::AttentionKernel kernel : prefill_kernels())
    for (const AttnCase& c :
         std::vector<AttnCase>{{128, 8, 2, 300, 129}, {64, 4, 1, 700, 0}, {96, 4, 4, 129, 64}, {128, 32, 8, 2000, 77}})
      check_attention(c, false, true, kernel);
}

void test_attention_decode() {
  const std::vector<AttnCase> cases = {
      {64, 9, 3, 1, 0},    {64, 9, 3, 1, 999},   {128, 32, 8, 1, 32767}, {96, 32, 32, 1, 4999},
      {128, 8, 1, 1, 65535}, {128, 16, 2, 1, 100}, {80, 2, 1, 1, 299},    {128, 28, 4, 1, 777},
      {64, 16, 1, 1, 2000},  {128, 8, 4, 1, 1500}, {96, 12, 1, 1, 333},   // groups of 16, 2 and 12
      {64, 8, 8, 1, 12345},  {96, 24, 2, 1, 64},    {128, 32, 8, 1, 127},  {128, 32, 8, 1, 0},
  };
  // the tensor-core kernel (the default for bf16 KV at hd 64/96/128) and the SIMT kernel
  for (const AttnCase& c : cases)
    for (cuda::DecodeKernel dk : {cuda::DecodeKernel::Auto, cuda::DecodeKernel::Simt})
      check_attention(c, true, false, cuda::AttentionKernel::Auto, dk);
}

// The 8-bit (q8) KV rows: kv_quantize_q8 (in two chunks, the second at pos0) and kv_expand_q8
// against the CPU's round_kv_row_q8 on the same bf16 rows, bit for bit after bf16 rounding: head dims
// with a short last block (80, 200) and below one block (8), a zero block, a block 1000x larger;
// then the decode kernel reading the 8-bit rows against the CPU attention over the rounded rows, and
// against the same kernel over the expanded bf16 rows.
void test_kv_q8() {
  struct C {
    int hd, n_heads, n_kv;
    int64_t pos0;
    int n;
  };
  for (const C& c : std::vector<C>{{128, 32, 8, 0, 300}, {64, 9, 3, 1000, 1}, {96, 12, 1, 333, 70}, {80, 4, 2, 17, 9},
                                   {8, 8, 4, 5, 40}, {200, 4, 4, 0, 3}, {128, 16, 2, 4095, 1}, {96, 24, 2, 5000, 1},
                                   {64, 32, 8, 777, 1}, {128, 32, 8, 130, 1}, {96, 12, 4, 1001, 1}}) {
    // the tensor-core decode kernel reads 8-bit rows where capacity x blocks is even (the last case's
    // is odd: the SIMT kernel reads it)
    const int64_t capacity = c.pos0 + c.n + 3, rows = c.pos0 + c.n;
    const int blocks = (c.hd + 31) / 32;
    const size_t cache = static_cast<size_t>(c.n_kv) * static_cast<size_t>(capacity) * c.hd;
    const size_t scale_count = static_cast<size_t>(c.n_kv) * static_cast<size_t>(capacity) * blocks;
    std::vector<float> kv[2] = {bf16_round(random_normal(cache, 41 + c.hd, 1.0f)),
                                bf16_round(random_normal(cache, 42 + c.hd, 1.0f))};
    for (int d = 0; d < std::min(32, c.hd); ++d) {
      kv[0][static_cast<size_t>(c.pos0) * c.hd + d] = 0.0f;  // head 0, row pos0: a zero block
      if (rows > 1) kv[1][static_cast<size_t>(rows - 2) * c.hd + d] *= 1000.0f;
    }
    kv[1] = bf16_round(kv[1]);
    Dev<uint16_t> stage_k(to_bf16(kv[0])), stage_v(to_bf16(kv[1]));
    Dev<int8_t> val_k(cache), val_v(cache);
    Dev<uint16_t> sc_k(scale_count), sc_v(scale_count);
    cuda::KvQ8Args a;
    a.stage[0] = stage_k.get();
    a.stage[1] = stage_v.get();
    a.values[0] = val_k.get();
    a.values[1] = val_v.get();
    a.scales[0] = sc_k.get();
    a.scales[1] = sc_v.get();
    a.n_kv_heads = c.n_kv;
    a.head_dim = c.hd;
    a.blocks = blocks;
    a.capacity = capacity;
    if (c.pos0 > 0) {
      a.pos0 = 0;
      a.n = static_cast<int>(c.pos0);
      cuda::kv_quantize_q8(a, nullptr);
    }
    a.pos0 = c.pos0;
    a.n = c.n;
    cuda::kv_quantize_q8(a, nullptr);
    // the reference: each head's row rounded on the CPU
    std::vector<float> want[2] = {kv[0], kv[1]};
    for (auto& w : want)
      for (int g = 0; g < c.n_kv; ++g)
        for (int64_t r = 0; r < rows; ++r) round_kv_row_q8(w.data() + (static_cast<size_t>(g) * capacity + r) * c.hd, c.hd);
    // decode straight from the 8-bit rows (head dims of the split-K kernel), before the expansion
    if (c.n == 1 && cuda::attention_head_dim_fast(c.hd)) {
      auto q = bf16_round(random_normal(static_cast<size_t>(c.n_heads) * c.hd, 43, 1.0f));
      Dev<uint16_t> dq(to_bf16(q)), out(q.size()), out16(q.size());
      Dev<float> partial(static_cast<size_t>(c.n_heads) * kMaxDecodeSplits * (c.hd + 2));
      Dev<uint16_t> rk(to_bf16(want[0])), rv(to_bf16(want[1]));  // the rounded rows as bf16
      cuda::AttentionArgs d;
      d.q = dq.get();
      d.out = out.get();
      d.n = 1;
      d.pos0 = c.pos0;
      d.capacity = capacity;
      d.n_heads = c.n_heads;
      d.n_kv_heads = c.n_kv;
      d.head_dim = c.hd;
      d.k_q8 = val_k.get();
      d.v_q8 = val_v.get();
      d.k_scale = sc_k.get();
      d.v_scale = sc_v.get();
      d.kv_blocks = blocks;
      cuda::attention_decode(d, partial.get(), 132, nullptr);
      std::vector<float> ref(q.size());
      cpu::attention(pool(), q.data(), 1, c.pos0, want[0].data(), want[1].data(), capacity, c.n_heads, c.n_kv, c.hd,
                     ref.data());
      const Compare cq = compare(from_bf16(out.download()), ref);
      // the other decode kernel on the same 8-bit rows (SIMT where the tensor-core kernel ran, and the
      // SIMT kernel again where the capacity sent both to it)
      Dev<uint16_t> out_simt(q.size());
      d.out = out_simt.get();
      d.decode_kernel = cuda::DecodeKernel::Simt;
      cuda::attention_decode(d, partial.get(), 132, nullptr);
      d.decode_kernel = cuda::DecodeKernel::Auto;
      d.out = out.get();
      const Compare cs = compare(from_bf16(out.download()), from_bf16(out_simt.download()));
      d.k_q8 = nullptr;
      d.v_q8 = nullptr;
      d.k_cache = rk.get();
      d.v_cache = rv.get();
      d.out = out16.get();
      cuda::attention_decode(d, partial.get(), 132, nullptr);
      const Compare c16 = compare(from_bf16(out.download()), from_bf16(out16.download()));
      std::printf("  q8 decode hd %d heads %d/%d at %lld (capacity %lld, %s kernel): vs CPU rel %.3g (max %.3g); vs "
                  "bf16 rows rel %.3g; vs the SIMT kernel rel %.3g\n",
                  c.hd, c.n_heads, c.n_kv, static_cast<long long>(c.pos0), static_cast<long long>(capacity),
                  (capacity * blocks) % 2 == 0 ? "tensor-core" : "SIMT", cq.rel_norm, cq.max_rel, c16.rel_norm, cs.rel_norm);
      GCHECK(cq.non_finite == 0 && cq.rel_norm < 1.5e-2 && cq.max_rel < 5e-2, "q8 decode hd %d: rel %.3g max %.3g",
             c.hd, cq.rel_norm, cq.max_rel);
      GCHECK(c16.non_finite == 0 && c16.rel_norm < 1e-2, "q8 decode hd %d vs bf16 rows: rel %.3g", c.hd, c16.rel_norm);
      GCHECK(cs.non_finite == 0 && cs.rel_norm < 1e-2, "q8 decode hd %d vs the SIMT kernel: rel %.3g", c.hd, cs.rel_norm);
    }
    cuda::kv_expand_q8(a, rows, nullptr);
    const std::vector<uint16_t> got[2] = {stage_k.download(), stage_v.download()};
    for (int t = 0; t < 2; ++t) {
      const std::vector<uint16_t> w = to_bf16(want[t]);
      size_t differ = 0, first = 0;
      for (int g = 0; g < c.n_kv; ++g)
        for (int64_t r = 0; r < rows; ++r)
          for (int d = 0; d < c.hd; ++d) {
            const size_t i = (static_cast<size_t>(g) * capacity + r) * c.hd + d;
            // by value: the CPU's rule may give -0 where the GPU gives +0
            if (bf16_to_f32(got[t][i]) != bf16_to_f32(w[i]) && differ++ == 0) first = i;
          }
      GCHECK(differ == 0, "q8 %s hd %d pos0 %lld n %d: %zu values differ from the CPU's rounding (first at %zu: %g vs %g)",
             t == 0 ? "K" : "V", c.hd, static_cast<long long>(c.pos0), c.n, differ, first, bf16_to_f32(got[t][first]),
             bf16_to_f32(w[first]));
    }
  }
}

}  // namespace

int main() {
  return run_cases("tst_gpu_ops", {
                                      {"rmsnorm", test_rmsnorm},
                                      {"embedding", test_embedding},
                                      {"rope_qkv", test_rope_qkv},
                                      {"swiglu", test_swiglu},
                                      {"gemm", test_gemm},
                                      {"quant", test_quant},
                                      {"attention_prefill", test_attention_prefill},
                                      {"attention_tile_list", test_attention_tile_list},
                                      {"attention_decode", test_attention_decode},
                                      {"kv_q8", test_kv_q8},
                                  });
}
