// folio-server: one local model over the OpenAI-compatible HTTP API (app/server/).
//   folio-server --model PATH [--host 127.0.0.1] [--port 8080] [--api-key KEY] ...
// Once listening it prints one line to stdout, "folio-server: listening on http://HOST:PORT/v1",
// so a script that passes --port 0 learns the port; notes and errors go to stderr.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "app/cli_args.h"
#include "app/server/http_server.h"
#include "core/chat/conversation.h"
#include "core/engine/chat_prompt.h"
#include "core/engine/engine.h"
#include "kernels/cuda_backend.h"

namespace {

const char* kUsage =
    "usage: folio-server --model PATH [--tokenizer PATH] [--host ADDR] [--port N] [--api-key KEY]\n"
    "                    [--backend cpu|cuda] [--gpu N | --gpus LIST] [--gpu-mem-limit GIB] [--threads N]\n"
    "                    [--ctx N] [--attention auto|dense|sparse] [--chat-format NAME] [--model-id NAME]\n"
    "                    [--kv-dtype native|fp8|q8] [--max-body BYTES] [--queue N] [--kv-slots N]\n"
    "       folio-server --help | --version\n";

const char* kOptionHelp =
    "\n"
    "Serves the model over the OpenAI-compatible API: POST /v1/chat/completions, POST /v1/completions,\n"
    "GET /v1/models, GET /health, GET /metrics (Prometheus). One engine; requests run one at a time in\n"
    "the order they came.\n"
    "  --model PATH          GGUF file, folder with config.json + *.safetensors, or llama2.c checkpoint\n"
    "  --tokenizer PATH      tokenizer file; default: the one in or beside the model\n"
    "  --host ADDR           address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port N              port (default 8080; 0 = any free port, printed on stdout)\n"
    "  --api-key KEY         require 'Authorization: Bearer KEY' on every endpoint but /health\n"
    "                        (or set FOLIO_API_KEY, which keeps the key out of the process list)\n"
    "  --backend cpu|cuda    where the model runs (cuda falls back to the CPU when no GPU is usable)\n"
    "  --gpu N               which GPU (--backend cuda)\n"
    "  --gpus LIST           the GPUs to lay the model across, e.g. 0,1 (--backend cuda): tensor parallel\n"
    "                        through NCCL, each GPU holding 1/N of the heads, KV cache and MLP (one index\n"
    "                        is the same as --gpu)\n"
    "  --gpu-mem-limit GIB   most GPU memory Folio may use\n"
    "  --threads N           CPU threads (0 = all)\n"
    "  --ctx N               context of every request in tokens (default: the model's, at most 8192)\n"
    "  --attention MODE      prefill attention: auto (default), dense, sparse\n"
    "  --kv-dtype KIND       the KV cache's values: native (default; fp32 on the CPU, bf16 on the GPU),\n"
    "                        q8 (int8 blocks of 32 with a scale each: about half the memory, so more\n"
    "                        context or --kv-slots fit) or fp8 (CPU only)\n"
    "  --chat-format NAME    plain, chatml, qwen2, smollm2, llama2, llama3, mistral, phi3;\n"
    "                        default: from the model's template\n"
    "  --model-id NAME       the model's name in /v1/models (default: the model file's name)\n"
    "  --max-body BYTES      largest request body (default 8388608); larger ones answer 413\n"
    "  --queue N             requests that may wait besides the running one (default 16); more\n"
    "                        answer 503 with Retry-After\n"
    "  --kv-slots N          KV caches kept for prefix reuse across requests (default 1; each holds\n"
    "                        --ctx tokens)\n"
    "  --version             print folio-server's version\n"
    "  --help                this text\n"
    "\n"
    "Exit codes: 0 stopped by SIGINT/SIGTERM, 1 error (one line on stderr), 2 usage error.\n";

struct Options {
  folio::EngineOptions engine;
  bool gpu_given = false, gpus_given = false;  // --gpu, --gpus
  folio::server::ServerOptions server;
  std::string chat_format;
  int64_t ctx = 0;
};

Options parse(folio::cli::Args& args) {
  Options o;
  if (const char* key = std::getenv("FOLIO_API_KEY"); key != nullptr) o.server.api_key = key;
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "--model") o.engine.model_path = args.value(a);
    else if (a == "--tokenizer") o.engine.tokenizer_path = args.value(a);
    else if (a == "--host") o.server.host = args.value(a);
    else if (a == "--port") o.server.port = static_cast<int>(args.integer(a, 0, 65535));
    else if (a == "--api-key") o.server.api_key = args.value(a);
    else if (a == "--threads") o.engine.threads = static_cast<int>(args.integer(a, 0, 4096));
    else if (a == "--ctx") o.ctx = args.integer(a, 16, int64_t{1} << 24);
    else if (a == "--attention") o.server.attention = folio::sparse::attention_mode_from_name(args.value(a));
    else if (a == "--chat-format") o.chat_format = args.value(a);
    else if (a == "--model-id") o.server.model_id = args.value(a);
    else if (a == "--max-body") o.server.max_body_bytes = static_cast<size_t>(args.integer(a, 1024, int64_t{1} << 32));
    else if (a == "--queue") o.server.max_waiting = static_cast<int>(args.integer(a, 0, 1000));
    else if (a == "--kv-slots") o.server.kv_slots = static_cast<int>(args.integer(a, 1, 64));
    else if (a == "--gpu") {
      o.engine.gpu_device = static_cast<int>(args.integer(a, 0, 1023));
      o.gpu_given = true;
    } else if (a == "--gpus") {
      args.gpus(a, o.engine.gpu_device, o.engine.gpu_devices);
      o.gpus_given = true;
    } else if (a == "--kv-dtype") {
      o.engine.kv_quant = args.kv_dtype(a);
    }
    else if (a == "--gpu-mem-limit")
      o.engine.gpu_mem_limit_bytes = static_cast<size_t>(args.number(a, 0.01, 1e6) * 1073741824.0);
    else if (a == "--backend") {
      const std::string b = args.value(a);
      if (b == "cpu") o.engine.backend = folio::BackendKind::Cpu;
      else if (b == "cuda") o.engine.backend = folio::BackendKind::Cuda;
      else throw folio::cli::UsageError("--backend takes cpu or cuda, not " + b);
    } else {
      throw folio::cli::UsageError("unknown argument " + a);
    }
  }
  if (o.engine.model_path.empty()) throw folio::cli::UsageError("--model PATH is required");
  if (o.server.api_key.find_first_of(" \t\r\n") != std::string::npos)
    throw folio::cli::UsageError("--api-key must not hold spaces or line breaks");
  // Several GPUs: the model laid across them, tensor parallel (the engine refuses with the reason
  // where that cannot be done here).
  if (o.gpus_given && o.gpu_given) throw folio::cli::UsageError("give --gpu N or --gpus LIST, not both");
  if (o.gpus_given && o.engine.backend != folio::BackendKind::Cuda)
    throw folio::cli::UsageError("--gpus goes with --backend cuda");
  o.engine.context_tokens = o.ctx;
  return o;
}

int run(Options o) {
  // SIGINT/SIGTERM are taken by a watcher thread (blocked here before any thread starts), which
  // stops the server; a client that goes away mid-write must not kill the process (SIGPIPE).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<folio::Engine> engine = folio::Engine::load(o.engine);
  if (!engine->notice().empty()) std::fprintf(stderr, "folio-server: note: %s\n", engine->notice().c_str());

  o.server.chat_format = folio::detect_chat_format(*engine);
  if (!o.chat_format.empty()) {
    auto k = folio::chat_format_from_name(o.chat_format);
    if (!k)
      throw folio::cli::UsageError("unknown --chat-format " + o.chat_format +
                                   " (plain, chatml, qwen2, smollm2, llama2, llama3, mistral, phi3)");
    o.server.chat_format = *k;
  }
  o.server.context_tokens = folio::chat::effective_context(o.ctx, engine->config().max_context);
  if (o.ctx > o.server.context_tokens)
    std::fprintf(stderr, "folio-server: note: --ctx %lld is more than the model was trained for; serving %lld tokens\n",
                 static_cast<long long>(o.ctx), static_cast<long long>(o.server.context_tokens));
  if (o.server.model_id.empty()) {
    std::filesystem::path p(o.engine.model_path);
    if (p.filename().empty()) p = p.parent_path();  // a folder given with a trailing slash
    o.server.model_id = p.extension() == ".gguf" || p.extension() == ".bin" ? p.stem().string() : p.filename().string();
  }

  folio::server::HttpServer server(*engine, o.server);
  const int port = server.bind();
  std::thread watcher([&server, stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    server.stop();
  });
  std::fprintf(stderr, "folio-server: %s on %s, context %lld tokens, chat format %s%s\n", o.server.model_id.c_str(),
               engine->backend_name().c_str(), static_cast<long long>(o.server.context_tokens),
               folio::chat_format_name(o.server.chat_format), o.server.api_key.empty() ? "" : ", API key required");
  std::printf("folio-server: listening on http://%s:%d/v1\n", o.server.host.c_str(), port);
  std::fflush(stdout);
  server.serve();
  // serve() returned: stopped by the watcher, or the listening socket failed; wake the watcher.
  kill(getpid(), SIGTERM);  // blocked in every thread: pending until the watcher takes it
  watcher.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  folio::register_cuda_backend();
  folio::cli::Args args(argc, argv);
  try {
    if (args.done()) throw folio::cli::UsageError("no arguments");
    if (args.peek() == "--help" || args.peek() == "-h") {
      std::fputs(kUsage, stdout);
      std::fputs(kOptionHelp, stdout);
      return 0;
    }
    if (args.peek() == "--version") {
      std::printf("folio-server %s\n", FOLIO_VERSION_STR);
      return 0;
    }
    return run(parse(args));
  } catch (const folio::cli::UsageError& e) {
    std::fprintf(stderr, "folio-server: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const folio::Error& e) {
    std::fprintf(stderr, "folio-server: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "folio-server: internal error: %s\n", e.what());
    return 3;
  }
}
