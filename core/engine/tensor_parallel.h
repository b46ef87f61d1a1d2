// Tensor parallel: one model over N ranks (GPUs, or CPU threads that stand in for them). Each rank
// is an ordinary backend made from a shard of the model: a slice of the query heads with the KV
// heads they read (so each rank holds 1/N of the KV cache, or one KV head where the model has
// fewer KV heads than ranks), and a slice of the MLP columns. Every rank keeps the whole residual
// stream; the two projections that add to it (attention output, MLP down) are summed over the
// ranks by a Collective before they are added. The embedding is read on every rank and the logits
// are computed on rank 0. The forward pass (core/engine/forward.cpp) drives the wrapper like any
// other backend: there is no second layer loop.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/engine/backend.h"
#include "core/model/model_weights.h"

namespace folio {

class ThreadPool;

// How a model's heads and MLP columns fall to the ranks.
struct TensorParallelLayout {
  int ranks = 1;
  int heads_per_rank = 0;     // query heads
  int kv_heads_per_rank = 0;  // KV heads a rank holds
  int kv_replicas = 1;        // ranks that hold the same KV head (> 1 when KV heads < ranks)
  std::vector<int64_t> ffn_begin;  // rank r's MLP columns are [ffn_begin[r], ffn_begin[r + 1])

  int first_head(int rank) const { return rank * heads_per_rank; }
  int first_kv_head(int rank) const { return kv_replicas > 1 ? rank / kv_replicas : rank * kv_heads_per_rank; }
  // The rank that reports (and saves) its KV heads; the others hold copies.
  bool owns_kv(int rank) const { return rank % kv_replicas == 0; }
};

// The layout of `model` over `ranks`: query heads split evenly; KV heads split evenly, or, where
// there are fewer KV heads than ranks, each KV head on the ranks whose query heads read it; MLP
// columns split as evenly as the down projection's blocks allow. Throws Error(BadArgument) that
// names the counts when the model cannot be split so (e.g. 3 KV heads over 2 ranks).
TensorParallelLayout plan_tensor_parallel(const LoadedModel& model, int ranks);

// Rank `rank`'s shard: a model whose config has the rank's heads and MLP columns. Row slices are
// views into the whole model (kept alive by the shard); column slices (the attention output and MLP
// down projections) are copied, whole blocks per row for quantized weights.
std::shared_ptr<const LoadedModel> shard_model(const std::shared_ptr<const LoadedModel>& model,
                                               const TensorParallelLayout& layout, int rank);

// Sums the ranks' part buffers element-wise, in place, so every rank ends with the same sum.
class Collective {
 public:
  virtual ~Collective() = default;
  virtual std::string name() const = 0;
  virtual void all_reduce_sum(std::span<const PartBuffer> parts) = 0;
};

// The CPU all-reduce over host fp32 parts: each of `threads`' threads sums a slice of the values
// over the ranks (in rank order, so every rank gets bit-identical sums) and writes it back to all.
std::unique_ptr<Collective> make_host_collective(ThreadPool& threads);

// The wrapper over N rank backends (rank r made from shard_model(model, layout, r)). Ops run on one
// host thread per rank. `collective` null: the host all-reduce (CPU ranks).
std::unique_ptr<Backend> create_tensor_parallel_backend(std::shared_ptr<const LoadedModel> model,
                                                        const TensorParallelLayout& layout,
                                                        std::vector<std::unique_ptr<Backend>> ranks,
                                                        std::unique_ptr<Collective> collective);

// N CPU backends in one process, for the tests of the split and for trying the layout without GPUs
// (slower than one CPU backend: every op waits for every rank). threads: all ranks together.
std::unique_ptr<Backend> create_cpu_tensor_parallel_backend(std::shared_ptr<const LoadedModel> model, int ranks,
                                                            int threads, KvQuant kv_quant = KvQuant::None);

}  // namespace folio
