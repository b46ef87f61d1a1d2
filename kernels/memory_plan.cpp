#include "kernels/memory_plan.h"

#include "core/common/error.h"

#include <algorithm>
#include <cstdio>

namespace folio {

namespace {

// The backend carves each category out of one allocation (an arena), every tensor aligned to 256
// bytes; cudaMalloc hands out 2 MiB granules, so the plan counts what the device really loses.
size_t granule(size_t bytes) {
  constexpr size_t g = size_t{2} << 20;
  return (bytes + g - 1) / g * g;
}
size_t a256(size_t bytes) { return (bytes + 255) / 256 * 256; }

size_t u(int64_t v) { return static_cast<size_t>(std::max<int64_t>(v, 0)); }

}  // namespace

bool keeps_blocks(std::initializer_list<const TensorView*> parts) {
  for (const TensorView* t : parts)
    if (is_quantized(t->dtype)) return true;
  return false;
}

WeightPlan plan_weights(const ModelConfig& c, const ModelWeights* native) {
  const size_t H = u(c.hidden), F = u(c.ffn_hidden), QD = u(c.q_dim()), KVD = u(c.kv_dim()), V = u(c.vocab_size);
  WeightPlan p;
  size_t total = 0, expand = 0;
  // one matrix of `rows` x `cols`: bf16, or each part in its blocks (float parts as bf16)
  auto matrix = [&](std::initializer_list<const TensorView*> parts, size_t rows, size_t cols, bool layer) {
    if (native == nullptr || !keeps_blocks(parts)) {
      total += a256(rows * cols * 2);
      return;
    }
    for (const TensorView* t : parts)
      total += a256(is_quantized(t->dtype) ? t->bytes() : u(t->rows) * u(t->cols) * 2);
    if (layer) expand = std::max(expand, a256(rows * cols * 2));
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights* L = native != nullptr ? &native->layers[static_cast<size_t>(l)] : nullptr;
    if (L != nullptr) {
      matrix({&L->wq, &L->wk, &L->wv}, QD + 2 * KVD, H, true);
      matrix({&L->wo}, H, QD, true);
      matrix({&L->w_gate, &L->w_up}, 2 * F, H, true);
      matrix({&L->w_down}, H, F, true);
    } else {
      total += a256((QD + 2 * KVD) * H * 2) + a256(H * QD * 2) + a256(2 * F * H * 2) + a256(H * F * 2);
    }
    total += a256(2 * H * 4);  // two norms, fp32
    if (c.qkv_bias) total += a256((QD + 2 * KVD) * 4);
  }
  const bool embd_blocks = native != nullptr && keeps_blocks({&native->tok_embd});
  if (native != nullptr) matrix({&native->tok_embd}, V, H, false);
  else total += a256(V * H * 2);
  if (!c.tied_embeddings) {
    if (native != nullptr) matrix({&native->output}, V, H, false);
    else total += a256(V * H * 2);
  }
  total += a256(H * 4);  // final norm
  const bool out_blocks =
      native != nullptr && (c.tied_embeddings ? embd_blocks : keeps_blocks({&native->output}));
  if (out_blocks) {
    // the output head is expanded in pieces of rows that fit the layers' scratch (at least 4096 rows)
    const size_t piece = std::min(V, std::max<size_t>(4096, expand / std::max<size_t>(H * 2, 1)));
    expand = std::max(expand, a256(piece * H * 2));
    p.output_piece_rows = static_cast<int64_t>(piece);
  }
  p.bytes = granule(total);
  p.dequant_bytes = expand > 0 ? granule(expand) : 0;
  return p;
}

size_t plan_weight_bytes(const ModelConfig& c) { return plan_weights(c, nullptr).bytes; }

size_t plan_scratch_bytes(const ModelConfig& c, int64_t chunk) {
  const size_t n = u(chunk), H = u(c.hidden), F = u(c.ffn_hidden), QD = u(c.q_dim()), KVD = u(c.kv_dim());
  size_t s = 0;
  s += a256(n * H * 4);                 // residual stream, fp32
  s += a256(n * std::max(H, QD) * 2);   // normed activations / attention output, bf16
  s += a256(n * (QD + 2 * KVD) * 2);    // q|k|v
  s += a256(n * QD * 2);                // rotated queries
  s += a256(n * 2 * F * 2);             // gate|up
  s += a256(n * F * 2);                 // swiglu
  s += a256(n * 4);                     // token ids
  s += a256(16);                        // a recorded decode step's position
  s += a256(u(c.vocab_size) * 4);       // logits of the last position
  // decode split-K partials: per query head and split, hd outputs + max + sum
  s += a256(u(c.n_heads) * kMaxDecodeSplits * (u(c.head_dim) + 2) * 4);
  s += a256(u(c.rope.rotary_dim > 0 ? c.rope.rotary_dim : c.head_dim) * 4);  // inverse frequencies
  s += a256(kGemmWorkspaceBytes);
  // a decode GEMV's activations at 8 bits (quantized_x_bytes of the widest input)
  const size_t X = std::max({H, QD, F});
  s += a256(X) + 2 * a256(X / 32 * 4);
  return granule(s);
}

SparseLayout plan_sparse(const ModelConfig& c, int64_t context, int64_t chunk) {
  SparseLayout l;
  if (c.head_dim != 64 && c.head_dim != 96 && c.head_dim != 128) return l;  // the tensor-core kernels' dims
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0) return l;
  const size_t H = u(c.n_heads), R = kSparseMaxSampleRows, C = u(context), G = u(c.n_heads / c.n_kv_heads);
  const int64_t nq = (chunk + 127) / 128, nk = (context + 63) / 64;
  const size_t per_group = (G * R * C + 64) * 4;  // + padding that keeps every group's slice aligned
  l.groups_per_pass = static_cast<int>(std::clamp<size_t>(kSparseScoreBytes / per_group, 1, u(c.n_kv_heads)));
  l.index_stride = nq * nk;
  l.q_sample = a256(H * R * u(c.head_dim) * 2);
  l.scores = a256(u(l.groups_per_pass) * per_group);
  l.lse = a256(H * R * 4);
  l.col = a256(H * C * 4);
  l.diag = a256(H * C * 4);
  l.offsets = a256(H * u(nq + 1) * 4);
  l.index = a256(H * u(l.index_stride) * 4);
  l.budgets = a256(u(c.n_layers) * H * 48);  // cuda::DeviceBudget
  l.results = a256(u(c.n_layers) * H * 24);  // cuda::HeadResult
  l.unit_max = a256(H * 2 * u(nk) * 4);
  l.unit_mass = a256(H * 2 * u(nk) * 8);
  l.pooled_q = a256(H * u(nq) * u(c.head_dim) * 2);
  l.pooled = a256(H * u(nq) * u(nk) * 4);
  l.flags = a256(H * u(nq) * u((nk + 15) / 16 * 16));
  l.row_stats = a256(H * u(nq) * 16);  // cuda::RowStat
  return l;
}

KvLayout plan_kv(const ModelConfig& c, int64_t context, KvQuant quant) {
  if (quant == KvQuant::Fp8)
    throw Error(ErrorCode::BackendUnavailable,
                "the GPU keeps its 8-bit KV cache as q8 (int8 blocks with fp16 scales: 0.17% perplexity against "
                "fp8's 1.00% on SmolLM2 at 8K); choose --kv-dtype q8");
  KvLayout l;
  l.quant = quant;
  const size_t L = u(c.n_layers), C = u(context), KVD = u(c.kv_dim());
  if (quant == KvQuant::Q8) {
    l.blocks = (c.head_dim + 31) / 32;
    l.values = a256(KVD * C);
    l.scales = a256(u(c.n_kv_heads) * C * u(l.blocks) * 2);
    l.stage = a256(KVD * C * 2);
    l.bytes = granule(L * 2 * (l.values + l.scales) + 2 * l.stage);
    l.bytes_per_token = L * 2 * (KVD + u(c.n_kv_heads) * u(l.blocks) * 2) + 2 * KVD * 2;
  } else {
    l.values = a256(KVD * C * 2);
    l.bytes = granule(L * 2 * l.values);
    l.bytes_per_token = static_cast<size_t>(c.kv_bytes_per_token(2));
  }
  return l;
}

MemoryPlan plan_memory(const ModelConfig& c, int64_t context, int64_t chunk, const ModelWeights* native, KvQuant kv) {
  MemoryPlan p;
  p.context = context;
  p.chunk = chunk;
  const KvLayout kl = plan_kv(c, context, kv);
  p.kv_bytes_per_token = kl.bytes_per_token;
  const WeightPlan w = plan_weights(c, native);
  p.weights_bytes = w.bytes;
  p.kv_bytes = kl.bytes;
  p.scratch_bytes = plan_scratch_bytes(c, chunk) + w.dequant_bytes;
  const size_t sparse = plan_sparse(c, context, chunk).total();
  p.sparse_bytes = sparse > 0 ? granule(sparse) : 0;
  return p;
}

int64_t largest_context(const ModelConfig& c, int64_t chunk, size_t available, const ModelWeights* native,
                        KvQuant kv) {
  const MemoryPlan base = plan_memory(c, 0, chunk, native, kv);
  if (base.total() >= available) return 0;
  const size_t per_token = base.kv_bytes_per_token;
  int64_t ctx = static_cast<int64_t>((available - base.total()) / std::max<size_t>(per_token, 1));
  ctx = ctx / 256 * 256;
  while (ctx > 0 && plan_memory(c, ctx, chunk, native, kv).total() > available) ctx -= 256;
  return std::max<int64_t>(ctx, 0);
}

std::string format_gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / static_cast<double>(size_t{1} << 30));
  return buf;
}

std::string describe_plan(const MemoryPlan& p) {
  return "weights " + format_gib(p.weights_bytes) + " + KV cache " + format_gib(p.kv_bytes) + " (" +
         std::to_string(p.context) + " tokens) + scratch " + format_gib(p.scratch_bytes) + " (chunks of " +
         std::to_string(p.chunk) + ")" + (p.sparse_bytes > 0 ? " + sparse prefill " + format_gib(p.sparse_bytes) : "") +
         " = " + format_gib(p.total());
}

}  // namespace folio
