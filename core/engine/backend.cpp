#include "core/engine/backend.h"

#include <map>
#include <mutex>

#include "core/common/error.h"

namespace folio {

const char* backend_key(BackendKind k) { return k == BackendKind::Cuda ? "cuda" : "cpu"; }

const char* backend_kind_name(BackendKind k) {
  switch (k) {
    case BackendKind::Cpu: return "the CPU";
    case BackendKind::Cuda: return "the GPU";
  }
  return "?";
}

namespace {
class VectorBuffer final : public HostBuffer {
 public:
  explicit VectorBuffer(size_t n) : v_(n) {}
  std::span<uint8_t> bytes() override { return v_; }

 private:
  std::vector<uint8_t> v_;
};
}  // namespace

std::unique_ptr<HostBuffer> Backend::host_buffer(size_t bytes) { return std::make_unique<VectorBuffer>(bytes); }

namespace {
[[noreturn]] void not_a_rank(const Backend& b) {
  throw Error(ErrorCode::BackendUnavailable, b.name() + " cannot run as a rank of a tensor-parallel layout");
}
}  // namespace

void Backend::project_part(Proj, int, int64_t) { not_a_rank(*this); }
PartBuffer Backend::part_buffer(int64_t) { not_a_rank(*this); }
void Backend::add_part(int64_t) { not_a_rank(*this); }

void check_forward_args(const ModelConfig& c, const KvCache& kv, std::span<const int32_t> tokens, int64_t pos) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (pos < 0 || pos + n > kv.capacity())
    throw Error(ErrorCode::OutOfContext, "positions " + std::to_string(pos) + ".." + std::to_string(pos + n) +
                                             " do not fit the context of " + std::to_string(kv.capacity()) + " tokens");
  for (int32_t t : tokens)
    if (t < 0 || t >= c.vocab_size)
      throw Error(ErrorCode::BadArgument, "token id " + std::to_string(t) + " is outside the vocabulary (" +
                                              std::to_string(c.vocab_size) + ")");
}

namespace {
std::mutex g_registry_mutex;
std::map<BackendKind, BackendFactory>& registry() {
  static std::map<BackendKind, BackendFactory> r;
  return r;
}
}  // namespace

void register_backend(BackendKind kind, BackendFactory factory) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  registry()[kind] = factory;
}

namespace {
GpuLister g_gpu_lister = nullptr;
}  // namespace

void register_gpu_lister(GpuLister lister) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  g_gpu_lister = lister;
}

std::vector<GpuInfo> list_gpus(std::string& why) {
  GpuLister lister = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    lister = g_gpu_lister;
  }
  if (lister == nullptr) {
    why = "this program was built without the CUDA backend";
    return {};
  }
  return lister(why);
}

BackendFactory registered_backend(BackendKind kind) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  auto it = registry().find(kind);
  return it == registry().end() ? nullptr : it->second;
}

}  // namespace folio
