// folio-bench: measures TTFT, prefill and decode rates and memory of a backend; prints JSON.
//   folio-bench (--model PATH | --shape NAME [--dtype f32|bf16|f16]) [--prompt-tokens 512,2048]
//               [--decode-tokens 32] [--reps 3] [--chunk N] [--threads N] [--backend cpu|cuda]
// Each configuration runs --reps times on random prompt tokens; medians are reported.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "app/cli_args.h"
#include "core/engine/engine.h"
#include "core/engine/metrics_json.h"
#include "core/model/random_model.h"

namespace {

const char* kUsage =
    "usage: folio-bench (--model PATH | --shape NAME [--dtype f32|bf16|f16]) [--prompt-tokens N[,N...]]\n"
    "                   [--decode-tokens N] [--reps N] [--chunk N] [--threads N] [--backend cpu|cuda]\n";

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v <= 0) throw folio::cli::UsageError("bad token count \"" + item + "\"");
    out.push_back(v);
  }
  return out;
}

std::string today() {
  char buf[16];
  std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%d", std::gmtime(&t));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  folio::cli::Args args(argc, argv);
  try {
    folio::EngineOptions eo;
    std::string shape, dtype_name = "bf16";
    std::vector<int64_t> lengths = {512, 2048};
    int64_t decode = 32, reps = 3, chunk = 512;
    while (!args.done()) {
      std::string a = args.next();
      if (a == "--help" || a == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (a == "--model") eo.model_path = args.value(a);
      else if (a == "--shape") shape = args.value(a);
      else if (a == "--dtype") dtype_name = args.value(a);
      else if (a == "--prompt-tokens") lengths = parse_list(args.value(a));
      else if (a == "--decode-tokens") decode = args.integer(a, 1, 1 << 20);
      else if (a == "--reps") reps = args.integer(a, 1, 1000);
      else if (a == "--chunk") chunk = args.integer(a, 1, 1 << 24);
      else if (a == "--threads") eo.threads = static_cast<int>(args.integer(a, 0, 4096));
      else if (a == "--backend") {
        std::string b = args.value(a);
        if (b == "cpu") eo.backend = folio::BackendKind::Cpu;
        else if (b == "cuda") eo.backend = folio::BackendKind::Cuda;
        else throw folio::cli::UsageError("--backend takes cpu or cuda");
      } else {
        throw folio::cli::UsageError("unknown argument " + a);
      }
    }
    if (eo.model_path.empty() == shape.empty()) throw folio::cli::UsageError("give one of --model and --shape");

    std::unique_ptr<folio::Engine> engine;
    std::string model_label;
    if (!shape.empty()) {
      folio::DType dt = dtype_name == "f32" ? folio::DType::F32
                        : dtype_name == "f16" ? folio::DType::F16
                        : dtype_name == "bf16" ? folio::DType::BF16
                                               : throw folio::cli::UsageError("--dtype takes f32, bf16 or f16");
      std::shared_ptr<folio::LoadedModel> model =
          folio::make_random_model(folio::named_model_shape(shape), dt, 1234);
      engine = folio::Engine::create(std::move(model), nullptr, eo);
      model_label = "random " + shape + " (" + dtype_name + ")";
    } else {
      engine = folio::Engine::load(eo);
      model_label = eo.model_path;
    }
    if (!engine->notice().empty()) std::fprintf(stderr, "folio-bench: note: %s\n", engine->notice().c_str());
    const folio::ModelConfig& c = engine->config();

    nlohmann::json out;
    out["date"] = today();
    out["model"] = model_label;
    out["backend"] = engine->backend_name();
    out["layers"] = c.n_layers;
    out["hidden"] = c.hidden;
    out["heads"] = c.n_heads;
    out["kv_heads"] = c.n_kv_heads;
    out["ffn"] = c.ffn_hidden;
    out["vocab"] = c.vocab_size;
    out["decode_tokens"] = decode;
    out["reps"] = reps;
    out["results"] = nlohmann::json::array();
    std::mt19937 rng(42);
    std::uniform_int_distribution<int32_t> token(3, c.vocab_size - 1);
    for (int64_t len : lengths) {
      folio::SessionOptions so;
      so.context_tokens = len + decode + 1;
      so.prefill_chunk = chunk;
      auto session = engine->create_session(so);
      std::vector<double> ttft, prefill, dec;
      folio::Metrics last;
      for (int64_t r = 0; r < reps; ++r) {
        std::vector<int32_t> prompt(static_cast<size_t>(len));
        for (auto& t : prompt) t = token(rng);
        folio::RequestOptions req;
        req.keep_prefix = false;
        req.generate.max_tokens = static_cast<int>(decode);
        req.generate.stop_at_eos = false;
        folio::RequestResult res = session->run(prompt, req);
        ttft.push_back(res.metrics.ttft_ms);
        prefill.push_back(res.metrics.prefill_tok_s);
        dec.push_back(res.metrics.decode_tok_s);
        last = res.metrics;
        std::fprintf(stderr, "folio-bench: %lld tokens rep %lld: ttft %.1f ms, prefill %.1f tok/s, decode %.1f tok/s\n",
                     static_cast<long long>(len), static_cast<long long>(r + 1), res.metrics.ttft_ms,
                     res.metrics.prefill_tok_s, res.metrics.decode_tok_s);
      }
      nlohmann::json row;
      row["prompt_tokens"] = len;
      row["prefill_chunk"] = chunk;
      row["ttft_ms"] = median(ttft);
      row["prefill_tok_s"] = median(prefill);
      row["decode_tok_s"] = median(dec);
      row["last_run"] = nlohmann::json::parse(folio::metrics_to_json(last));
      out["results"].push_back(row);
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  } catch (const folio::cli::UsageError& e) {
    std::fprintf(stderr, "folio-bench: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const folio::Error& e) {
    std::fprintf(stderr, "folio-bench: error: %s\n", e.what());
    return 1;
  }
}
