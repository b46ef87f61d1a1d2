// folio-cli: the headless front end of the engine.
//   folio-cli --model PATH [--tokenizer PATH] [--file DOC ...] (--prompt TEXT | --ask QUESTION) ...
//   folio-cli tokenize --model PATH [--tokenizer PATH] TEXT
// Generated text goes to stdout as it streams; progress and the metrics summary go to stderr.
// --ask goes through folio::chat::Conversation, the service the app asks through, so the prompt
// (documents laid out in the system turn, then the question) is byte for byte the app's;
// --print-prompt shows it.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "app/cli_args.h"
#include "core/chat/chat_document.h"
#include "core/chat/conversation.h"
#include "core/chat/grounding.h"
#include "core/common/input_limits.h"
#include "core/common/mapped_file.h"
#include "core/common/resource_dir.h"
#include "core/engine/chat_prompt.h"
#include "core/engine/engine.h"
#include "core/engine/metrics_json.h"
#include "core/model/model_loader.h"
#include "kernels/cuda_backend.h"

#if FOLIO_CLI_REMOTE
#include <nlohmann/json.hpp>

#include "core/chat/context_packing.h"
#include "core/chat/prompt_layout.h"
#include "core/remote/remote_engine.h"
#endif

#if FOLIO_CLI_DOCS
#include <QCoreApplication>
#include <QFile>
#include <QString>

#include "core/docs/ingest.h"
#include "core/docs/prompt_layout.h"
#endif

namespace {

using folio::Error;
using folio::ErrorCode;

// Progress is drawn on one terminal line with \r; it is cleared before anything else is printed.
bool g_progress_line = false;

void end_progress_line() {
  if (g_progress_line) std::fprintf(stderr, "\r%70s\r", "");
  g_progress_line = false;
}

const char* kUsage =
    "usage: folio-cli --model PATH [--tokenizer PATH] [--file DOC ...] [--dir FOLDER ...]\n"
    "                 (--prompt TEXT | --ask QUESTION)\n"
    "                 [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--min-p P]\n"
    "                 [--repeat-penalty R] [--seed S] [--backend cpu|cuda] [--ctx N] [--chunk N]\n"
    "                 [--threads N] [--chat-format NAME] [--system TEXT] [--stop TEXT ...]\n"
    "                 [--metrics-json FILE] [--quiet] [--gpu N | --gpus LIST] [--gpu-mem-limit GIB]\n"
    "                 [--attention auto|dense|sparse] [--sparse-config FILE] [--print-prompt]\n"
    "                 [--fit relevant|beginning|error] [--sources] [--password TEXT]\n"
    "                 [--kv-cache FOLDER] [--kv-cache-limit GIB] [--cpu-ranks N]\n"
    "                 [--kv-dtype native|fp8|q8]\n"
    "       folio-cli --backend remote --url URL [--api-key KEY] [--remote-model NAME] [--file DOC ...]\n"
    "                 (--prompt TEXT | --ask QUESTION) [--max-tokens N] [--temperature T] ...\n"
    "       folio-cli tokenize (--model PATH | --tokenizer PATH) TEXT\n"
    "       folio-cli --help | --version\n";

// --help: the usage, then every option.
const char* kOptionHelp =
    "\n"
    "Generation (text to stdout; progress and metrics to stderr):\n"
    "  --model PATH          GGUF file, folder with config.json + *.safetensors, or llama2.c checkpoint;\n"
    "                        or the name of a model that ships with Folio (stories260K, folio-needle),\n"
    "                        found in share/folio beside folio-cli's bin/ folder\n"
    "  --tokenizer PATH      tokenizer file (tokenizer.model, tokenizer.bin, tokenizer.json, GGUF);\n"
    "                        default: the one in or beside the model\n"
    "  --prompt TEXT         raw completion: BOS, then TEXT\n"
    "  --ask QUESTION        ask through the app's chat service, over the --file/--dir documents\n"
    "  --file DOC            a document for --ask (repeatable): PDF, text file, or a folder read as a\n"
    "                        source tree (honouring .gitignore); read as the app reads it\n"
    "  --dir FOLDER          a source folder for --ask (repeatable); folders only\n"
    "  --password TEXT       the password of the password-protected PDFs among the --file documents\n"
    "  --kv-cache FOLDER     keep the KV of the documents' prefix in FOLDER: asked about the same\n"
    "                        documents again, or with others added after them (same model, system\n"
    "                        prompt, chat format), the saved part is loaded instead of prefilled\n"
    "                        (CPU backend; others prefill as before)\n"
    "  --kv-cache-limit GIB  most disk space the KV cache folder takes (default 4); the least\n"
    "                        recently used files go first\n"
    "  --fit MODE            when the documents do not fit the context: relevant (default: the parts\n"
    "                        that match the question, in order, with markers for what is left out),\n"
    "                        beginning (the first parts), error (refuse with the numbers)\n"
    "  --print-prompt        with --ask: write the exact prompt to stdout and stop (no model run)\n"
    "  --sources             with --ask and documents: after the answer, list the passages of the\n"
    "                        documents that support it (page or file:lines and a quote) and the\n"
    "                        citations it wrote that point nowhere\n"
    "  --system TEXT         system turn for --ask without documents\n"
    "  --chat-format NAME    plain, chatml, qwen2, smollm2, llama2, llama3, mistral, phi3;\n"
    "                        default: from the model's template\n"
    "  --max-tokens N        most tokens to generate (default 256)\n"
    "  --stop TEXT           stop before this text (repeatable)\n"
    "  --temperature T       sampling temperature; 0 = greedy\n"
    "  --top-k K             keep the K most likely tokens (0 = all)\n"
    "  --top-p P             keep the smallest set of tokens whose probability reaches P\n"
    "  --min-p P             drop tokens below P times the most likely one's probability\n"
    "  --repeat-penalty R    penalty for tokens already in the text (1 = none)\n"
    "  --seed S              sampler seed\n"
    "  --ctx N               context in tokens; default: what the prompt and --max-tokens need, up to\n"
    "                        the model's trained context (and on the CPU, a KV cache of at most half\n"
    "                        the available memory); with documents that do not fit, that largest context\n"
    "  --chunk N             prefill chunk in tokens (default: the backend's)\n"
    "  --threads N           CPU threads (0 = all)\n"
    "  --kv-dtype native|fp8|q8  the KV cache's values: the backend's own (fp32 CPU, bf16 GPU), or 8 bits:\n"
    "                        fp8 (E4M3, a scale per token and head) or q8 (int8 blocks of 32 with a\n"
    "                        scale each: closer to the model; on the GPU about half of bf16's memory).\n"
    "                        The CPU rounds to those values (the reference) but keeps fp32; the GPU\n"
    "                        keeps q8 only\n"
    "  --cpu-ranks N         on the CPU, split the model tensor-parallel over N ranks (threads with a host\n"
    "                        all-reduce): the multi-GPU layout, to try without GPUs; slower than one rank\n"
    "  --backend cpu|cuda|remote  where the model runs (cuda falls back to the CPU when no GPU is usable;\n"
    "                        remote: on an OpenAI-compatible server, see --url)\n"
    "  --url URL             --backend remote: the server's API base, e.g. http://host:8080/v1 (folio-server,\n"
    "                        vLLM, SGLang, llama.cpp's server); the prompt is built here and sent as chat messages\n"
    "  --api-key KEY         --backend remote: sent as 'Authorization: Bearer KEY' (or set FOLIO_API_KEY)\n"
    "  --remote-model NAME   --backend remote: the model to ask (default: the first the server lists)\n"
    "                        (with --tokenizer, the served model's, documents larger than the server's\n"
    "                        context are packed here as --fit says)\n"
    "  --gpu N               which GPU (--backend cuda)\n"
    "  --gpus LIST           the GPUs to lay the model across, e.g. 0,1 (--backend cuda): tensor parallel\n"
    "                        through NCCL, each GPU holding 1/N of the heads, KV cache and MLP\n"
    "  --gpu-mem-limit GIB   most GPU memory Folio may use (on each GPU)\n"
    "  --gpu-weights KIND    blocks (default): quantized GGUF weights stay quantized on the GPU; bf16:\n"
    "                        expand them at load (more memory)\n"
    "  --attention MODE      prefill attention: auto (default), dense, sparse\n"
    "  --sparse-config FILE  per-head sparse patterns (folio-sparse search); default: the model's\n"
    "  --metrics-json FILE   write the run's metrics (TTFT, rates, memory) as JSON\n"
    "  --quiet               no progress, notes or metrics on stderr\n"
    "\n"
    "tokenize: print the token ids of TEXT (no BOS), loading only the tokenizer (a vocabulary-only\n"
    "GGUF is enough).\n"
    "  --version             print folio-cli's version\n"
    "  --help                this text\n"
    "\n"
    "Exit codes: 0 done, 1 error (one line on stderr says what and what to do), 2 usage error.\n";

// A --file (a file, or a folder read as a source tree) or a --dir (a folder only).
struct DocumentArg {
  std::string path;
  bool folder = false;
};

struct CliOptions {
  folio::EngineOptions engine;
  std::vector<DocumentArg> files;
  std::string pdf_password;  // --password: for protected PDFs
  std::string kv_cache;      // --kv-cache FOLDER ("" = off)
  double kv_cache_limit_gib = 4.0;
  std::optional<std::string> prompt;
  std::optional<std::string> ask;
  std::string system;
  std::string chat_format;
  std::string metrics_json;
  std::vector<std::string> stops;
  int64_t ctx = 0;
  int64_t chunk = 0;
  folio::sparse::AttentionMode attention = folio::sparse::AttentionMode::Auto;
  std::string sparse_config;
  int max_tokens = 256;
  folio::SamplerParams sampler;
  bool quiet = false;
  bool print_prompt = false;  // --ask: write the rendered prompt to stdout and stop
  bool sources = false;       // --ask: list the passages that support the answer after it
  // --ask with documents larger than the context: the sections most relevant to the question, the
  // first ones, or an error.
  folio::chat::FitMode fit = folio::chat::FitMode::Relevant;
  // --backend remote: the model runs behind an OpenAI-compatible API at remote_url.
  bool remote = false;
  std::string remote_url;
  std::string api_key;
  std::string remote_model;
};

std::string format_mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

// --model NAME, where no file or folder of that name is in the working folder, names a model that
// ships with Folio (share/folio/models/NAME); the note says which folder it came from.
std::string resolve_model(const std::string& model, bool quiet) {
  std::error_code ec;
  if (model.empty() || std::filesystem::exists(model, ec)) return model;
  const std::optional<std::filesystem::path> bundled = folio::bundled_model_path(model);
  if (!bundled) {
    if (model.find('/') != std::string::npos) return model;  // a path: the engine says it is not there
    const std::string names = folio::bundled_model_names();
    const std::string where = names.empty() ? "no share/folio beside folio-cli's bin/ folder" : "bundled: " + names;
    throw Error(ErrorCode::FileNotFound, model +
                                             " not found: no file or folder of that name here, and no model of that "
                                             "name ships with Folio (" +
                                             where + ")");
  }
  if (!quiet)
    std::fprintf(stderr, "folio-cli: note: %s is the model that ships with Folio: %s\n", model.c_str(),
                 bundled->c_str());
  return bundled->string();
}

int run_tokenize(folio::cli::Args& args) {
  folio::EngineOptions eo;
  std::vector<std::string> rest;
  while (!args.done()) {
    std::string a = args.next();
    if (a == "--model") eo.model_path = args.value(a);
    else if (a == "--tokenizer") eo.tokenizer_path = args.value(a);
    else if (a.rfind("--", 0) == 0) throw folio::cli::UsageError("unknown option " + a);
    else rest.push_back(a);
  }
  if (eo.model_path.empty() && eo.tokenizer_path.empty()) throw folio::cli::UsageError("tokenize needs --model or --tokenizer");
  eo.model_path = resolve_model(eo.model_path, /*quiet=*/true);
  if (rest.size() != 1) throw folio::cli::UsageError("tokenize takes exactly one TEXT argument");
  // Only the tokenizer is loaded (a vocabulary-only GGUF is enough; no weights are read).
  const std::unique_ptr<folio::Tokenizer> tok =
      folio::load_tokenizer(eo.tokenizer_path.empty() ? folio::find_tokenizer(eo.model_path) : eo.tokenizer_path);
  std::vector<int32_t> ids = tok->encode(rest[0], /*add_bos=*/false);
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
  std::cout << "\n";
  return 0;
}

CliOptions parse_generate(folio::cli::Args& args) {
  CliOptions o;
  while (!args.done()) {
    std::string a = args.next();
    if (a == "--model") o.engine.model_path = args.value(a);
    else if (a == "--tokenizer") o.engine.tokenizer_path = args.value(a);
    else if (a == "--file") o.files.push_back({args.value(a), false});
    else if (a == "--dir") o.files.push_back({args.value(a), true});
    else if (a == "--prompt") o.prompt = args.value(a);
    else if (a == "--ask") o.ask = args.value(a);
    else if (a == "--system") o.system = args.value(a);
    else if (a == "--chat-format") o.chat_format = args.value(a);
    else if (a == "--stop") o.stops.push_back(args.value(a));
    else if (a == "--max-tokens") o.max_tokens = static_cast<int>(args.integer(a, 0, 1 << 24));
    else if (a == "--temperature") o.sampler.temperature = static_cast<float>(args.number(a, 0.0, 100.0));
    else if (a == "--top-k") o.sampler.top_k = static_cast<int>(args.integer(a, 0, 1 << 24));
    else if (a == "--top-p") o.sampler.top_p = static_cast<float>(args.number(a, 0.0, 1.0));
    else if (a == "--min-p") o.sampler.min_p = static_cast<float>(args.number(a, 0.0, 1.0));
    else if (a == "--repeat-penalty") o.sampler.repetition_penalty = static_cast<float>(args.number(a, 0.0, 100.0));
    else if (a == "--seed") o.sampler.seed = static_cast<uint64_t>(args.integer(a, 0, INT64_MAX));
    else if (a == "--ctx") o.ctx = args.integer(a, 1, int64_t{1} << 24);
    else if (a == "--chunk") o.chunk = args.integer(a, 1, int64_t{1} << 24);
    else if (a == "--threads") o.engine.threads = static_cast<int>(args.integer(a, 0, 4096));
    else if (a == "--cpu-ranks") o.engine.cpu_ranks = static_cast<int>(args.integer(a, 1, 64));
    else if (a == "--kv-dtype") o.engine.kv_quant = args.kv_dtype(a);
    else if (a == "--metrics-json") o.metrics_json = args.value(a);
    else if (a == "--quiet") o.quiet = true;
    else if (a == "--print-prompt") o.print_prompt = true;
    else if (a == "--sources") o.sources = true;
    else if (a == "--password") o.pdf_password = args.value(a);
    else if (a == "--kv-cache") o.kv_cache = args.value(a);
    else if (a == "--kv-cache-limit") o.kv_cache_limit_gib = args.number(a, 0.001, 1e6);
    else if (a == "--fit") o.fit = folio::chat::fit_mode_from_name(args.value(a));
    else if (a == "--attention") o.attention = folio::sparse::attention_mode_from_name(args.value(a));
    else if (a == "--sparse-config") o.sparse_config = args.value(a);
    else if (a == "--gpu") o.engine.gpu_device = static_cast<int>(args.integer(a, 0, 1023));
    else if (a == "--gpus") args.gpus(a, o.engine.gpu_device, o.engine.gpu_devices);
    else if (a == "--gpu-mem-limit")
      o.engine.gpu_mem_limit_bytes = static_cast<size_t>(args.number(a, 0.01, 1e6) * 1073741824.0);
    else if (a == "--gpu-weights") {
      const std::string v = args.value(a);
      if (v != "blocks" && v != "bf16") throw folio::cli::UsageError("--gpu-weights takes blocks or bf16");
      o.engine.gpu_quantized_weights = v == "blocks";
    }
    else if (a == "--url") o.remote_url = args.value(a);
    else if (a == "--api-key") o.api_key = args.value(a);
    else if (a == "--remote-model") o.remote_model = args.value(a);
    else if (a == "--backend") {
      std::string b = args.value(a);
      if (b == "cpu") o.engine.backend = folio::BackendKind::Cpu;
      else if (b == "cuda") o.engine.backend = folio::BackendKind::Cuda;
      else if (b == "remote") o.remote = true;
      else throw folio::cli::UsageError("--backend takes cpu, cuda or remote, not " + b);
    } else {
      throw folio::cli::UsageError("unknown argument " + a);
    }
  }
  if (o.remote) {
    if (o.remote_url.empty()) throw folio::cli::UsageError("--backend remote needs --url (e.g. http://host:8080/v1)");
    if (!o.engine.model_path.empty())
      throw folio::cli::UsageError("--model goes with a local engine; with --backend remote the server has the model "
                                   "(--remote-model names it)");
    if (o.api_key.empty())
      if (const char* key = std::getenv("FOLIO_API_KEY"); key != nullptr) o.api_key = key;
  } else {
    if (!o.remote_url.empty() || !o.api_key.empty() || !o.remote_model.empty())
      throw folio::cli::UsageError("--url, --api-key and --remote-model go with --backend remote");
    if (o.engine.model_path.empty()) throw folio::cli::UsageError("--model PATH is required");
    o.engine.model_path = resolve_model(o.engine.model_path, o.quiet);
  }
  o.engine.context_tokens = o.ctx;
  o.engine.prefill_chunk = o.chunk;
  if (o.prompt.has_value() == o.ask.has_value()) throw folio::cli::UsageError("give exactly one of --prompt and --ask");
  if (o.prompt && !o.files.empty()) throw folio::cli::UsageError("--file and --dir go with --ask, not --prompt");
  if (o.print_prompt && !o.ask) throw folio::cli::UsageError("--print-prompt goes with --ask");
  if (!o.kv_cache.empty() && (!o.ask || o.files.empty()))
    throw folio::cli::UsageError("--kv-cache goes with --ask and --file or --dir");
  if (!o.pdf_password.empty() && o.files.empty()) throw folio::cli::UsageError("--password goes with --file");
  if (o.sources && (!o.ask || o.files.empty()))
    throw folio::cli::UsageError("--sources goes with --ask and --file or --dir");
  if (!o.system.empty() && !o.ask) throw folio::cli::UsageError("--system goes with --ask");
  return o;
}

#if FOLIO_CLI_DOCS
// Names from the file system as a terminal may show them: control characters escaped.
std::string shown(const QString& text) {
  return folio::printable_name(text.toStdString(), 4096);
}

// The app's loaders (core/docs): PDFs, text files with encoding detection, source folders; a bad
// document throws the app's message. What the app shows beside a document (notices, files left out
// of a folder) goes to stderr.
using LoadedDocuments = QVector<folio::docs::Document>;  // as the loader read them (citations are checked on these)

std::vector<folio::chat::Document> read_documents(const std::vector<DocumentArg>& args, bool quiet, bool tty,
                                                  const std::string& pdf_password = {},
                                                  LoadedDocuments* loaded = nullptr) {
  std::vector<folio::chat::Document> docs;
  for (const DocumentArg& a : args) {
    const QString path = QString::fromStdString(a.path);
    folio::docs::LoadOptions lo;
    lo.pdf_password = QString::fromStdString(pdf_password);
    lo.pdf_worker = QCoreApplication::applicationFilePath();  // PDFs are read in a guarded process
    lo.on_progress = [&](int done, int total) {
      if (quiet || !tty || total <= 1) return;
      std::fprintf(stderr, "\rreading %s: %d/%d", a.path.c_str(), done, total);
      g_progress_line = true;
    };
    folio::docs::Document doc =
        a.folder ? folio::docs::load_source_tree(path, lo) : folio::docs::load_document(path, lo);
    end_progress_line();
    if (!quiet) {
      for (const QString& n : doc.notices) std::fprintf(stderr, "folio-cli: note: %s\n", shown(n).c_str());
      // Files left out by the user's own .gitignore or version control are not listed.
      int listed = 0, unlisted = 0;
      for (const folio::docs::SkippedFile& s : doc.skipped) {
        if (s.kind == folio::docs::SkipKind::Ignored || s.kind == folio::docs::SkipKind::GitFolder) continue;
        if (listed++ < 20)
          std::fprintf(stderr, "folio-cli: note: left out of %s: %s: %s\n", shown(doc.title).c_str(),
                       shown(s.path).c_str(), shown(s.reason).c_str());
        else
          ++unlisted;
      }
      if (unlisted > 0) std::fprintf(stderr, "folio-cli: note: ... and %d more files left out\n", unlisted);
    }
    if (loaded != nullptr) {
      // Citations are checked against pages, files and line ranges, never the text: the loaded
      // document is kept without it (a text document of hundreds of MiB is not held twice).
      folio::docs::Document outline = doc;  // shares the text until it is let go below
      for (folio::docs::Section& s : outline.sections) s.text = QString();
      docs.push_back(folio::docs::chat_document(std::move(doc)));
      loaded->push_back(std::move(outline));
    } else {
      docs.push_back(folio::docs::chat_document(std::move(doc)));
    }
  }
  return docs;
}

// The citations an answer wrote that point nowhere in the documents, one line each.
std::vector<std::string> citation_problems(const std::string& answer, const LoadedDocuments& loaded) {
  std::vector<std::string> out;
  for (const folio::docs::CitationCheck& c : folio::docs::check_citations(QString::fromStdString(answer), loaded))
    if (!c.found) out.push_back(("\"" + c.citation.text + "\": " + c.problem).toStdString());
  return out;
}
#else
struct LoadedDocuments {};  // without Qt, written citations are not checked

std::vector<std::string> citation_problems(const std::string&, const LoadedDocuments&) {
  return {};
}

// Without Qt: plain UTF-8 text files only (core/chat's reader sections them as the app does).
std::vector<folio::chat::Document> read_documents(const std::vector<DocumentArg>& args, bool, bool,
                                                  const std::string& = {}, LoadedDocuments* = nullptr) {
  std::vector<folio::chat::Document> docs;
  for (const DocumentArg& a : args) {
    if (a.folder)
      throw Error(ErrorCode::BadArgument, a.path +
                                              ": this folio-cli was built without Qt (FOLIO_APP=OFF) and reads "
                                              "no folders; build it with the Qt parts");
    docs.push_back(folio::chat::read_text_document(a.path));
  }
  return docs;
}
#endif

// After the answer (--sources): the passages that support it, and the citations it wrote that point nowhere.
void print_sources(const folio::chat::GroundingIndex& index, const std::string& question, const std::string& answer,
                   const std::vector<std::string>& problems) {
  const std::vector<folio::chat::SourcePassage> found = index.ground(answer, question);
  std::printf("\nSources:\n");
  if (found.empty()) std::printf("  none found: no passage of the documents says what the answer says\n");
  for (size_t i = 0; i < found.size(); ++i)
    std::printf("  %zu. %s: \"%s\"\n", i + 1,
                folio::chat::source_location(index.documents()[found[i].document], found[i]).c_str(),
                found[i].quote.c_str());
  for (const std::string& p : problems) std::printf("  not in the documents: %s\n", p.c_str());
}

// The largest context folio-cli picks by itself: the model's trained context, and on the CPU a KV
// cache (fp32) of at most half the memory available at load (Engine::largest_context). (A GPU's
// plan is checked by its backend when the session's cache is made; its error names the largest
// context that fits.)
int64_t largest_default_context(const folio::Engine& engine) {
  const folio::ModelConfig& c = engine.config();
  if (engine.backend_kind() == folio::BackendKind::Cpu) return engine.largest_context();
  return c.max_context > 0 ? c.max_context : 8192;
}

// The context a prompt needs with room for max_tokens of answer, in whole 256-token steps, at most cap.
int64_t context_for(int64_t prompt_tokens, int max_tokens, int64_t cap) {
  const int64_t need = prompt_tokens + std::max(max_tokens, 1);
  return std::min(cap, (need + 255) / 256 * 256);
}

int run_generate(const CliOptions& o) {
  const bool tty = isatty(STDERR_FILENO) != 0;
  // Read the documents first: a bad file is reported before the model is loaded.
  LoadedDocuments loaded;
  std::vector<folio::chat::Document> docs = read_documents(o.files, o.quiet, tty, o.pdf_password, &loaded);
  // --sources grounds the answer in the whole documents (also when the prompt held only part of them).
  std::optional<folio::chat::GroundingIndex> grounding;
  if (o.sources) grounding.emplace(docs);

  auto engine = folio::Engine::load(o.engine, [&](float f, std::string_view stage) {
    if (o.quiet || !tty) return;
    std::fprintf(stderr, "\rloading: %-24.*s %3d%%", static_cast<int>(stage.size()), stage.data(),
                 static_cast<int>(f * 100));
    g_progress_line = true;
  });
  end_progress_line();
  if (!engine->notice().empty()) std::fprintf(stderr, "folio-cli: note: %s\n", engine->notice().c_str());

  folio::RequestOptions req;
  req.generate.sampler = o.sampler;
  req.generate.max_tokens = o.max_tokens;
  req.generate.stop_strings = o.stops;
  if (o.chunk > 0) req.prefill.chunk_tokens = o.chunk;
  req.prefill.on_progress = [&](const folio::PrefillProgress& p) {
    if (o.quiet || !tty) return;
    std::fprintf(stderr, "\rprefill %lld/%lld tokens", static_cast<long long>(p.done_tokens),
                 static_cast<long long>(p.total_tokens));
    g_progress_line = true;
  };
  req.generate.on_token = [&](int32_t, std::string_view text) {
    end_progress_line();
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  std::shared_ptr<const folio::sparse::SparseConfig> sparse_config;
  if (!o.sparse_config.empty())
    sparse_config = std::make_shared<const folio::sparse::SparseConfig>(
        folio::sparse::SparseConfig::from_json(folio::read_text_file(o.sparse_config), o.sparse_config));
  // Without --ctx: what the request needs, up to the most the model and the memory allow.
  const int64_t ctx_cap = o.ctx > 0 ? o.ctx : largest_default_context(*engine);
  int64_t ctx = ctx_cap;

  folio::RequestResult r;
  if (o.prompt) {
    std::vector<int32_t> prompt = engine->tokenizer().encode(*o.prompt, /*add_bos=*/true);
    if (prompt.empty()) throw Error(ErrorCode::BadArgument, "the model has no BOS token; give a non-empty --prompt");
    if (o.ctx == 0) ctx = context_for(static_cast<int64_t>(prompt.size()), o.max_tokens, ctx_cap);
    folio::SessionOptions so;
    so.context_tokens = ctx;
    so.attention = o.attention;
    so.sparse_config = sparse_config;
    r = engine->create_session(so)->run(prompt, req);
  } else {
    folio::ChatFormatKind kind = folio::detect_chat_format(*engine);
    if (!o.chat_format.empty()) {
      auto k = folio::chat_format_from_name(o.chat_format);
      if (!k) throw folio::cli::UsageError("unknown --chat-format " + o.chat_format +
                                           " (plain, chatml, qwen2, smollm2, llama2, llama3, mistral, phi3)");
      kind = *k;
    }
    folio::chat::Conversation conversation(*engine, kind);
    conversation.set_documents(std::move(docs));
    std::optional<folio::chat::KvStore> kv_store;
    if (!o.kv_cache.empty()) {
      kv_store.emplace(o.kv_cache, static_cast<uint64_t>(o.kv_cache_limit_gib * 1073741824.0));
      // The model by its path, size and time: a changed model file does not load an old KV.
      struct stat st {};
      std::string model_id = o.engine.model_path;
      if (::stat(o.engine.model_path.c_str(), &st) == 0) {
        model_id += '|';
        model_id += std::to_string(st.st_size);
        model_id += '|';
        model_id += std::to_string(st.st_mtime);
      }
      model_id += '|';
      model_id += folio::chat_format_name(kind);
      conversation.set_kv_store(&*kv_store, model_id);
    }
    conversation.set_system_prompt(o.system);  // first in the system turn, before the documents
    folio::chat::AskOptions ask;
    ask.context_tokens = ctx;
    ask.generate = req.generate;
    ask.prefill = req.prefill;
    ask.attention = o.attention;
    ask.sparse_config = sparse_config;
    ask.fit = o.fit;
    if (o.ctx == 0) {
      // The prompt under the largest context; when its documents went in whole, the context it needs
      // gives the same prompt (packed documents keep the largest context, their budget).
      folio::chat::FitCheck fit;
      std::string packing;
      const folio::chat::Prompt p = conversation.fitted_prompt(*o.ask, ask, fit, packing);
      if (fit.fits && packing.empty()) ctx = context_for(static_cast<int64_t>(p.tokens.size()), o.max_tokens, ctx_cap);
      ask.context_tokens = ctx;
    }
    if (o.print_prompt) {
      folio::chat::FitCheck fit;
      std::string packing;
      const folio::chat::Prompt p = conversation.fitted_prompt(*o.ask, ask, fit, packing);
      if (!fit.fits) throw Error(ErrorCode::OutOfContext, fit.message() + " (--ctx, --max-tokens, --fit)");
      std::fwrite(p.text.data(), 1, p.text.size(), stdout);
      std::fflush(stdout);
      if (!o.quiet) {
        std::fprintf(stderr, "folio-cli: the prompt is %zu tokens (chat format %s; context %lld tokens)\n",
                     p.tokens.size(), folio::chat_format_name(kind), static_cast<long long>(ctx));
        if (!packing.empty()) std::fprintf(stderr, "folio-cli: documents packed: %s\n", packing.c_str());
      }
      return 0;
    }
    folio::chat::Answer a = conversation.ask(*o.ask, ask);
    if (!a.packing.empty() && !o.quiet) {
      end_progress_line();
      std::fprintf(stderr, "folio-cli: documents packed: %s\n", a.packing.c_str());
    }
    if (!o.quiet && kv_store) {
      end_progress_line();
      if (!a.kv_note.empty()) std::fprintf(stderr, "folio-cli: note: %s\n", a.kv_note.c_str());
      if (a.kv_loaded_tokens > 0)
        std::fprintf(stderr,
                     "folio-cli: the documents' KV (%lld tokens) was loaded from %s in %.1f ms (before the ttft "
                     "below)\n",
                     static_cast<long long>(a.kv_loaded_tokens), o.kv_cache.c_str(), a.kv_load_ms);
      if (a.kv_saved_bytes > 0)
        std::fprintf(stderr, "folio-cli: the documents' KV was saved to %s (%s)\n", o.kv_cache.c_str(),
                     format_mib(a.kv_saved_bytes).c_str());
    }
    if (!a.fit.fits) throw Error(ErrorCode::OutOfContext, a.fit.message() + " (--ctx, --max-tokens, --fit)");
    r = std::move(a.result);
  }
  std::fputs("\n", stdout);
  if (grounding) print_sources(*grounding, *o.ask, r.text, citation_problems(r.text, loaded));
  std::fflush(stdout);

  const folio::Metrics& m = r.metrics;
  if (!o.quiet) {
    std::fprintf(stderr, "ttft %.1f ms | prefill %lld tokens, %.1f tok/s | decode %lld tokens, %.1f tok/s | stop: %s\n",
                 m.ttft_ms, static_cast<long long>(m.prefill_tokens), m.prefill_tok_s,
                 static_cast<long long>(m.decode_tokens), m.decode_tok_s, folio::stop_reason_name(m.stop));
    if (m.sparse_chunks > 0)
      std::fprintf(stderr, "attention %s: %lld sparse and %lld dense chunks, density %.3f, estimated mass kept %.3f, "
                   "%lld head plans short of their mass target, estimation %.1f ms\n",
                   m.attention_mode.c_str(), static_cast<long long>(m.sparse_chunks),
                   static_cast<long long>(m.dense_chunks), m.attention_density, m.est_mass_mean,
                   static_cast<long long>(m.heads_short_of_mass), m.estimate_ms);
    if (!m.attention_note.empty()) std::fprintf(stderr, "attention: %s\n", m.attention_note.c_str());
    for (const auto& d : m.memory)
      std::fprintf(stderr, "memory %s: weights %s, kv cache %s, scratch %s\n", d.device.c_str(),
                   format_mib(d.weights_bytes).c_str(), format_mib(d.kv_bytes).c_str(),
                   format_mib(d.scratch_bytes).c_str());
  }
  if (!o.metrics_json.empty()) {
    std::ofstream out(o.metrics_json);
    if (!out) throw Error(ErrorCode::FileUnreadable, "cannot write metrics to " + o.metrics_json);
    out << folio::metrics_to_json(m) << "\n";
  }
  return 0;
}

#if FOLIO_CLI_REMOTE
// --backend remote: the documents are read and laid out here, as for the local engine (the system
// turn a chat model gets: the user's system prompt, then the documents with the citation
// instruction), and sent as chat messages; the server applies its model's chat template.
int run_remote(const CliOptions& o) {
  const bool tty = isatty(STDERR_FILENO) != 0;
  std::vector<folio::chat::Document> docs = read_documents(o.files, o.quiet, tty);
  folio::remote::RemoteOptions ro;
  ro.url = o.remote_url;
  ro.api_key = o.api_key;
  ro.model = o.remote_model;
  folio::remote::RemoteEngine remote(ro);
  // With --tokenizer (the served model's), prompts are counted here and documents larger than the
  // server's context are packed as for the local engine (--fit); without it the server counts.
  std::unique_ptr<folio::Tokenizer> tokenizer;
  if (!o.engine.tokenizer_path.empty()) tokenizer = folio::load_tokenizer(o.engine.tokenizer_path);
  auto messages_for = [&](const std::vector<folio::chat::Document>& d) {
    std::vector<folio::ChatMessage> m;
    if (std::string system = folio::chat::system_text(folio::ChatFormatKind::ChatML, d, o.system); !system.empty())
      m.push_back({"system", std::move(system)});
    m.push_back({"user", *o.ask});
    return m;
  };
  std::vector<folio::ChatMessage> messages;
  if (o.ask) messages = messages_for(docs);
  if (o.print_prompt) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& m : messages) j.push_back({{"role", m.role}, {"content", m.content}});
    std::fputs(j.dump(2).c_str(), stdout);
    std::fputs("\n", stdout);
    return 0;
  }
  const folio::remote::RemoteModel model = remote.connect();
  if (!o.quiet)
    std::fprintf(stderr, "folio-cli: asking %s at %s%s\n", model.id.c_str(), o.remote_url.c_str(),
                 model.context_tokens > 0 ? (", context " + std::to_string(model.context_tokens) + " tokens").c_str()
                                          : "");
  if (tokenizer && o.ask && !docs.empty() && model.context_tokens > 0) {
    auto count = [&](const std::string& text) {
      return static_cast<int64_t>(tokenizer->encode(text, false, false).size());
    };
    // The server's chat template is not known here: each message is given a margin for its markers.
    constexpr int64_t kTemplateTokens = 16;
    auto prompt_tokens = [&](const std::vector<folio::ChatMessage>& m) {
      int64_t n = 0;
      for (const auto& x : m) n += count(x.content) + kTemplateTokens;
      return n;
    };
    const int64_t need = prompt_tokens(messages);
    const int64_t room = model.context_tokens - o.max_tokens;  // OpenAI's rule: prompt + max_tokens
    if (need > room) {
      const std::string numbers = "the prompt is about " + std::to_string(need) + " tokens and " +
                                  std::to_string(o.max_tokens) + " are asked for the answer, more than the server's " +
                                  "context of " + std::to_string(model.context_tokens) + " tokens";
      if (o.fit == folio::chat::FitMode::Error)
        throw Error(ErrorCode::OutOfContext, numbers + " (--fit, --max-tokens, fewer documents)");
      const folio::chat::PackingIndex index(docs, count);
      int64_t budget = room - (need - index.total_tokens());
      for (int attempt = 0; attempt < 4 && budget > 0; ++attempt) {
        folio::chat::PackResult packed = folio::chat::pack_documents(index, *o.ask, budget, o.fit);
        std::vector<folio::ChatMessage> m = messages_for(packed.docs);
        const int64_t over = prompt_tokens(m) - room;
        if (over <= 0) {
          messages = std::move(m);
          if (!o.quiet) std::fprintf(stderr, "folio-cli: documents packed: %s\n", packed.summary.c_str());
          break;
        }
        budget -= over + 16;
      }
      if (prompt_tokens(messages) > room) throw Error(ErrorCode::OutOfContext, numbers + "; packing could not fit them");
    }
  }
  folio::GenerateOptions gen;
  gen.sampler = o.sampler;
  gen.max_tokens = o.max_tokens;
  gen.stop_strings = o.stops;
  gen.on_token = [](int32_t, std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  folio::remote::RemoteResult rr;
  try {
    rr = o.ask ? remote.chat(messages, gen) : remote.complete(*o.prompt, gen);
  } catch (const folio::remote::RemoteError& e) {
    // Documents too long for the server, counted there: here they could be packed to fit.
    if (e.failure() != folio::remote::RemoteFailure::ContextTooLong || tokenizer || docs.empty()) throw;
    throw folio::remote::RemoteError(e.failure(), e.code(),
                                     std::string(e.what()) +
                                         "; or give --tokenizer (the served model's tokenizer or GGUF) to pack the "
                                         "documents into it here",
                                     e.detail());
  }
  std::fputs("\n", stdout);
  // The server's count is the real one; without it, the local tokenizer's (an estimate: the
  // server's template is not known here).
  std::string prompt_count = rr.usage_from_server ? std::to_string(rr.result.metrics.prompt_tokens) : "?";
  if (!rr.usage_from_server && tokenizer) {
    int64_t n = 0;
    if (o.ask)
      for (const auto& x : messages) n += static_cast<int64_t>(tokenizer->encode(x.content, false, false).size()) + 16;
    else
      n = static_cast<int64_t>(tokenizer->encode(*o.prompt, true).size());
    rr.result.metrics.prompt_tokens = n;
    prompt_count = "about " + std::to_string(n) + " (counted here)";
  }
  if (rr.cut) {
    // What came is kept (it is above) and marked, on stdout with the answer and on stderr.
    std::printf("[the answer was cut off here: %s]\n", rr.cut_reason.c_str());
    std::fflush(stdout);
  }
  std::fflush(stdout);
  const folio::Metrics& m = rr.result.metrics;
  if (!o.quiet) {
    std::fprintf(stderr, "ttft %.1f ms | decode %lld tokens, %.1f tok/s (measured here) | prompt %s tokens | stop: %s\n",
                 m.ttft_ms, static_cast<long long>(m.decode_tokens), m.decode_tok_s,
                 prompt_count.c_str(),
                 folio::stop_reason_name(m.stop));
    if (!rr.server_metrics_json.empty()) {
      const nlohmann::json s = nlohmann::json::parse(rr.server_metrics_json, nullptr, false);
      if (s.is_object())
        std::fprintf(stderr, "server: ttft %.1f ms | prefill %lld tokens (%lld reused), %.1f tok/s | decode %.1f tok/s\n",
                     s.value("ttft_ms", 0.0), static_cast<long long>(s.value("prefill_tokens", int64_t{0})),
                     static_cast<long long>(s.value("reused_tokens", int64_t{0})), s.value("prefill_tok_s", 0.0),
                     s.value("decode_tok_s", 0.0));
    }
  }
  if (!o.metrics_json.empty()) {
    std::ofstream out(o.metrics_json);
    if (!out) throw Error(ErrorCode::FileUnreadable, "cannot write metrics to " + o.metrics_json);
    nlohmann::json j = nlohmann::json::parse(folio::metrics_to_json(m));
    if (!rr.server_metrics_json.empty()) j["server"] = nlohmann::json::parse(rr.server_metrics_json, nullptr, false);
    out << j.dump(2) << "\n";
  }
  if (rr.cut)
    throw Error(ErrorCode::BackendUnavailable, "the answer was cut off after " + std::to_string(m.decode_tokens) +
                                                   " tokens: " + rr.cut_reason + " (what came is kept above)");
  return 0;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  folio::register_cuda_backend();
#if FOLIO_CLI_DOCS
  // Qt PDF's document is a QObject: an application object is there before any document is read
  // (given no arguments, so Qt takes none of folio-cli's).
  int qt_argc = 1;
  char qt_name[] = "folio-cli";
  char* qt_argv[] = {qt_name, nullptr};
  QCoreApplication qt_app(qt_argc, qt_argv);
  // The guarded PDF reader (folio::docs::LoadOptions::pdf_worker): read one PDF, answer on stdout.
  if (argc == 3 && std::strcmp(argv[1], "--parse-pdf") == 0)
    return folio::docs::run_pdf_worker(QFile::decodeName(argv[2]));
#endif
  folio::cli::Args args(argc, argv);
  try {
    if (args.done()) throw folio::cli::UsageError("no arguments");
    if (args.peek() == "--help" || args.peek() == "-h") {
      std::fputs(kUsage, stdout);
      std::fputs(kOptionHelp, stdout);
      return 0;
    }
    if (args.peek() == "--version") {
      std::printf("folio-cli %s\n", FOLIO_VERSION_STR);
      return 0;
    }
    if (args.peek() == "tokenize") {
      args.next();
      return run_tokenize(args);
    }
    const CliOptions o = parse_generate(args);
    if (o.remote) {
#if FOLIO_CLI_REMOTE
      return run_remote(o);
#else
      throw folio::cli::UsageError("this folio-cli was built without cpp-httplib: --backend remote is not available");
#endif
    }
    return run_generate(o);
  } catch (const folio::cli::UsageError& e) {
    std::fprintf(stderr, "folio-cli: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const Error& e) {
    end_progress_line();
    // Messages name files and what is inside them: control characters are escaped for the terminal.
    std::fprintf(stderr, "folio-cli: error: %s\n", folio::printable_name(e.what(), 4096).c_str());
    return 1;
  } catch (const std::exception& e) {
    end_progress_line();
    std::fprintf(stderr, "folio-cli: internal error: %s\n", folio::printable_name(e.what(), 4096).c_str());
    return 3;
  }
}
