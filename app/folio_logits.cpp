// folio-logits: runs a prompt through a model and writes its logits, for comparisons with other
// engines (tools/gpu_hf_check.py).
//   folio-logits --model PATH --tokens FILE.i32 --out FILE [--backend cpu|cuda] [--every N] [--chunk N]
// FILE.i32 holds the prompt as little-endian int32. OUT receives: int32 n, int32 vocab, int32 every,
// then n int32 argmax ids (every position), then float32 logits of positions 0, every, 2 every, ...
// and of the last position.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <vector>

#include "app/cli_args.h"
#include "core/engine/engine.h"
#include "kernels/cuda_backend.h"

int main(int argc, char** argv) {
  folio::register_cuda_backend();
  folio::cli::Args args(argc, argv);
  try {
    folio::EngineOptions eo;
    std::string tokens_path, out_path;
    int64_t every = 64, chunk = 512;
    while (!args.done()) {
      const std::string a = args.next();
      if (a == "--model") eo.model_path = args.value(a);
      else if (a == "--tokens") tokens_path = args.value(a);
      else if (a == "--out") out_path = args.value(a);
      else if (a == "--every") every = args.integer(a, 1, 1 << 20);
      else if (a == "--chunk") chunk = args.integer(a, 1, 1 << 20);
      else if (a == "--backend") eo.backend = args.value(a) == "cuda" ? folio::BackendKind::Cuda : folio::BackendKind::Cpu;
      else throw folio::cli::UsageError("unknown argument " + a);
    }
    if (eo.model_path.empty() || tokens_path.empty() || out_path.empty())
      throw folio::cli::UsageError("usage: folio-logits --model PATH --tokens FILE.i32 --out FILE [--backend cpu|cuda]");
    std::ifstream in(tokens_path, std::ios::binary);
    std::vector<int32_t> tokens;
    int32_t t;
    while (in.read(reinterpret_cast<char*>(&t), 4)) tokens.push_back(t);
    if (tokens.empty()) throw folio::cli::UsageError("no tokens in " + tokens_path);
    const int64_t n = static_cast<int64_t>(tokens.size());
    eo.context_tokens = n;
    eo.prefill_chunk = chunk;
    auto engine = folio::Engine::load(eo);
    if (!engine->notice().empty()) std::fprintf(stderr, "folio-logits: note: %s\n", engine->notice().c_str());
    const int64_t vocab = engine->config().vocab_size;
    // Every position's logits reach the observer, one forward step at a time.
    struct Keep final : folio::ForwardObserver {
      int64_t n = 0, vocab = 0, every = 1;
      std::vector<int32_t> argmax;
      std::vector<float> kept;
      bool wants_all_logits() const override { return true; }
      void on_logits(int64_t pos, int64_t rows, const float* logits) override {
        for (int64_t i = 0; i < rows; ++i) {
          const float* row = logits + i * vocab;
          argmax[static_cast<size_t>(pos + i)] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
          if ((pos + i) % every == 0 || pos + i == n - 1) kept.insert(kept.end(), row, row + vocab);
        }
      }
    } keep;
    keep.n = n;
    keep.vocab = vocab;
    keep.every = every;
    keep.argmax.resize(static_cast<size_t>(n));
    folio::SessionOptions so;
    so.context_tokens = n;
    so.prefill_chunk = chunk;
    so.attention = folio::sparse::AttentionMode::Dense;
    auto session = engine->create_session(so);
    session->set_observer(&keep);
    session->prefill(tokens);
    const std::vector<int32_t>& argmax = keep.argmax;
    const std::vector<float>& kept = keep.kept;
    FILE* f = std::fopen(out_path.c_str(), "wb");
    if (f == nullptr) throw folio::cli::UsageError("cannot write " + out_path);
    const int32_t header[3] = {static_cast<int32_t>(n), static_cast<int32_t>(vocab), static_cast<int32_t>(every)};
    std::fwrite(header, 4, 3, f);
    std::fwrite(argmax.data(), 4, argmax.size(), f);
    std::fwrite(kept.data(), 4, kept.size(), f);
    std::fclose(f);
    std::fprintf(stderr, "folio-logits: %lld positions on %s\n", static_cast<long long>(n), engine->backend_name().c_str());
    return 0;
  } catch (const folio::cli::UsageError& e) {
    std::fprintf(stderr, "folio-logits: %s\n", e.what());
    return 2;
  } catch (const folio::Error& e) {
    std::fprintf(stderr, "folio-logits: error: %s\n", e.what());
    return 1;
  }
}
