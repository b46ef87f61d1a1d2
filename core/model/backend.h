// The one backend interface. A backend owns the weights in its own memory (or uses them in place),
// keeps KV caches, and runs the forward pass over a chunk of tokens. The CPU backend (core/cpu) is
// the reference; the CUDA backend (kernels/) implements the same interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/model/model_config.h"
#include "core/model/model_weights.h"

namespace folio {

enum class BackendKind { Cpu, Cuda };

// Memory a backend holds, by category, on one device.
struct DeviceMemory {
  std::string device;          // "cpu", "cuda:0" ...
  size_t weights_bytes = 0;    // weights as the backend holds them (mapped files count for the CPU)
  size_t kv_bytes = 0;         // all live KV caches
  size_t scratch_bytes = 0;    // activations and workspaces
  size_t total_bytes = 0;      // device capacity (0 = unknown)
  size_t free_bytes = 0;       // free as the device reports it (0 = unknown)
};

// A backend's KV cache for one session: keys and values of positions [0, capacity).
class KvCache {
 public:
  virtual ~KvCache() = default;
  virtual int64_t capacity() const = 0;
  virtual size_t bytes() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendKind kind() const = 0;
  virtual std::string name() const = 0;
  virtual const ModelConfig& config() const = 0;

  virtual std::unique_ptr<KvCache> create_kv_cache(int64_t capacity_tokens) = 0;

  // Runs tokens at positions [pos, pos + tokens.size()) through every layer, writing their keys
  // and values into `kv`. If `logits` is non-null it receives the last token's logits
  // (vocab_size floats). Throws Error on bad arguments (positions past the cache).
  virtual void forward(KvCache& kv, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
                       float* logits) = 0;

  // Logits of every position of the chunk ([tokens.size()][vocab_size] floats), for reference
  // comparisons (tests, tools). The default runs one token at a time.
  virtual void forward_all_logits(KvCache& kv, std::span<const int32_t> tokens, int64_t pos, const RopeTable& rope,
                                  float* logits);

  // The prefill chunk this backend runs best with (the session default when none is asked for).
  virtual int64_t preferred_chunk() const { return 512; }

  virtual std::vector<DeviceMemory> memory() const = 0;
};

// threads <= 0: all hardware threads.
std::unique_ptr<Backend> create_cpu_backend(std::shared_ptr<const LoadedModel> model, int threads);

}  // namespace folio
