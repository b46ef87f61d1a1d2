#include "core/model/model_loader.h"

#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/common/error.h"
#include "core/common/input_limits.h"
#include "core/model/gguf_model.h"
#include "core/model/llama2c.h"
#include "core/model/safetensors.h"

namespace folio {

namespace fs = std::filesystem;

namespace {

class SafetensorsSet {
 public:
  explicit SafetensorsSet(std::string dir) : dir_(std::move(dir)) {}
  void add(SafetensorsFile& file) {
    for (const auto& [name, entry] : file.tensors()) entries_.emplace(name, Source{entry, file.path()});
  }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }

  // A 2-D view with the expected shape.
  TensorView matrix(const std::string& name, int64_t rows, int64_t cols) {
    const Source& s = find(name);
    if (s.entry.shape.size() != 2 || s.entry.shape[0] != rows || s.entry.shape[1] != cols)
      throw Error(ErrorCode::BadModelFile, s.file + ": tensor \"" + name + "\" has shape " + shape_str(s.entry.shape) +
                                               " but config.json needs [" + std::to_string(rows) + ", " +
                                               std::to_string(cols) + "]; the weights do not match the config");
    used_.insert(name);
    return TensorView{s.entry.dtype, rows, cols, s.entry.data};
  }

  // A 1-D tensor converted to fp32 and owned by the model.
  TensorView vector(LoadedModel& m, const std::string& name, int64_t n) {
    const Source& s = find(name);
    if (s.entry.shape.size() != 1 || s.entry.shape[0] != n)
      throw Error(ErrorCode::BadModelFile, s.file + ": tensor \"" + name + "\" has shape " + shape_str(s.entry.shape) +
                                               " but config.json needs [" + std::to_string(n) + "]");
    used_.insert(name);
    TensorView raw{s.entry.dtype, 1, n, s.entry.data};
    std::vector<float> values(static_cast<size_t>(n));
    row_to_f32(raw, 0, values.data());
    return m.own_f32(std::move(values), 1, n);
  }

 private:
  struct Source {
    SafetensorsEntry entry;
    std::string file;
  };
  const Source& find(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end())
      throw Error(ErrorCode::BadModelFile, dir_ + ": tensor \"" + name +
                                               "\" is missing from the safetensors files; the download is incomplete "
                                               "or the weights belong to another model");
    return it->second;
  }
  static std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
  std::string dir_;
  std::map<std::string, Source> entries_;
  std::set<std::string> used_;
};

std::vector<std::string> shard_files(const fs::path& dir) {
  fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    nlohmann::json j;
    const std::string index_text = read_text_file(index.string());
    limits::check_json_bounds(index_text, limits::kSafetensorsIndex, index.string(), ErrorCode::BadModelFile);
    try {
      j = nlohmann::json::parse(index_text);
    } catch (const nlohmann::json::exception&) {
      throw Error(ErrorCode::BadModelFile, index.string() + " is not valid JSON");
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(ErrorCode::BadModelFile, index.string() + " has no weight_map");
    std::set<std::string> names;
    for (const auto& v : j["weight_map"])
      if (v.is_string()) names.insert(v.get<std::string>());
    std::vector<std::string> out;
    for (const auto& n : names) {
      if (n.find('/') != std::string::npos || n.find("..") != std::string::npos)
        throw Error(ErrorCode::BadModelFile, index.string() + " names a shard outside the folder: " + n);
      out.push_back((dir / n).string());
    }
    return out;
  }
  if (fs::exists(dir / "model.safetensors")) return {(dir / "model.safetensors").string()};
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  if (out.empty())
    throw Error(ErrorCode::BadModelFile, dir.string() + " has config.json but no .safetensors weights");
  return out;
}

std::unique_ptr<LoadedModel> load_safetensors_model(const fs::path& dir, const LoadProgressFn& progress) {
  auto model = std::make_unique<LoadedModel>();
  model->format = ModelFormat::Safetensors;
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path))
    throw Error(ErrorCode::FileNotFound, "no config.json in " + dir.string() + "; a safetensors model is a folder "
                                         "with config.json and the .safetensors files");
  model->config = parse_hf_config(read_text_file(config_path.string()), config_path.string());
  const ModelConfig& c = model->config;

  std::vector<std::string> paths = shard_files(dir);
  SafetensorsSet set(dir.string());
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (size_t i = 0; i < paths.size(); ++i) {
    if (progress) progress(static_cast<float>(i) / static_cast<float>(paths.size() + 1), "mapping weights");
    files.push_back(std::make_unique<SafetensorsFile>(paths[i]));
    set.add(*files.back());
  }

  ModelWeights& w = model->weights;
  w.tok_embd = set.matrix("model.embed_tokens.weight", c.vocab_size, c.hidden);
  w.out_norm = set.vector(*model, "model.norm.weight", c.hidden);
  if (set.has("lm_head.weight") && !c.tied_embeddings) {
    w.output = set.matrix("lm_head.weight", c.vocab_size, c.hidden);
  } else {
    w.output = w.tok_embd;
  }
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights l;
    l.attn_norm = set.vector(*model, p + "input_layernorm.weight", c.hidden);
    l.ffn_norm = set.vector(*model, p + "post_attention_layernorm.weight", c.hidden);
    if (c.arch == Architecture::Phi3) {
      TensorView qkv = set.matrix(p + "self_attn.qkv_proj.weight", c.q_dim() + 2 * c.kv_dim(), c.hidden);
      l.wq = qkv.row_slice(0, c.q_dim());
      l.wk = qkv.row_slice(c.q_dim(), c.kv_dim());
      l.wv = qkv.row_slice(c.q_dim() + c.kv_dim(), c.kv_dim());
      TensorView gate_up = set.matrix(p + "mlp.gate_up_proj.weight", 2 * c.ffn_hidden, c.hidden);
      l.w_gate = gate_up.row_slice(0, c.ffn_hidden);
      l.w_up = gate_up.row_slice(c.ffn_hidden, c.ffn_hidden);
    } else {
      l.wq = set.matrix(p + "self_attn.q_proj.weight", c.q_dim(), c.hidden);
      l.wk = set.matrix(p + "self_attn.k_proj.weight", c.kv_dim(), c.hidden);
      l.wv = set.matrix(p + "self_attn.v_proj.weight", c.kv_dim(), c.hidden);
      l.w_gate = set.matrix(p + "mlp.gate_proj.weight", c.ffn_hidden, c.hidden);
      l.w_up = set.matrix(p + "mlp.up_proj.weight", c.ffn_hidden, c.hidden);
    }
    if (c.qkv_bias) {
      l.bq = set.vector(*model, p + "self_attn.q_proj.bias", c.q_dim());
      l.bk = set.vector(*model, p + "self_attn.k_proj.bias", c.kv_dim());
      l.bv = set.vector(*model, p + "self_attn.v_proj.bias", c.kv_dim());
    }
    l.wo = set.matrix(p + "self_attn.o_proj.weight", c.hidden, c.q_dim());
    l.w_down = set.matrix(p + "mlp.down_proj.weight", c.hidden, c.ffn_hidden);
    w.layers.push_back(l);
  }
  for (auto& f : files) model->files.push_back(f->release_mapping());
  if (fs::exists(dir / "tokenizer.model")) model->tokenizer_path = (dir / "tokenizer.model").string();
  else if (fs::exists(dir / "tokenizer.json")) model->tokenizer_path = (dir / "tokenizer.json").string();
  if (fs::exists(dir / "tokenizer_config.json")) {
    const std::string tc_path = (dir / "tokenizer_config.json").string();
    const std::string tc_text = read_text_file(tc_path);
    limits::check_json_bounds(tc_text, limits::kTokenizerConfig, tc_path, ErrorCode::BadTokenizer);
    try {
      auto tc = nlohmann::json::parse(tc_text);
      if (tc.contains("chat_template") && tc["chat_template"].is_string())
        model->chat_template = tc["chat_template"].get<std::string>();
    } catch (const nlohmann::json::exception&) {
      // tokenizer_config.json only offers the chat template; without it the format is guessed
    }
  }
  if (progress) progress(1.0f, "weights mapped");
  return model;
}

bool looks_like_safetensors(const std::string& path) {
  return fs::path(path).extension() == ".safetensors";
}

}  // namespace

std::unique_ptr<LoadedModel> load_model(const std::string& path, const LoadProgressFn& progress) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(ErrorCode::FileNotFound, "model not found: " + path);
  std::unique_ptr<LoadedModel> model;
  if (fs::is_directory(path)) {
    model = load_safetensors_model(fs::path(path), progress);
  } else if (looks_like_safetensors(path)) {
    model = load_safetensors_model(fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path(),
                                   progress);
  } else if (fs::path(path).extension() == ".gguf") {
    model = load_gguf_model(path, progress);
  } else {
    model = load_llama2c_model(path, progress);
  }
  model->path = path;
  return model;
}

std::string find_tokenizer(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(ErrorCode::FileNotFound, "model not found: " + path);
  const fs::path p(path);
  const bool folder = fs::is_directory(p, ec);
  if (!folder && !looks_like_safetensors(path)) {
    std::ifstream in(path, std::ios::binary);
    char head[28] = {};
    in.read(head, sizeof head);
    const std::streamsize got = in.gcount();
    if ((got >= 4 && std::memcmp(head, "GGUF", 4) == 0) || p.extension() == ".gguf") return path;
    // llama2.c v0 header: seven int32 (dim, hidden, layers, heads, kv heads, vocab, seq_len); a
    // negative vocab marks an untied classifier.
    const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
    std::vector<std::string> names = {"tokenizer.model", "tokenizer.bin"};
    if (got == sizeof head) {
      int32_t vocab = 0;
      std::memcpy(&vocab, head + 20, sizeof vocab);
      if (vocab != 0 && vocab != INT32_MIN)
        names.push_back("tok" + std::to_string(vocab < 0 ? -vocab : vocab) + ".bin");
    }
    for (const std::string& n : names)
      if (fs::exists(dir / n, ec)) return (dir / n).string();
    throw Error(
        ErrorCode::BadTokenizer,
        "no tokenizer beside " + path + " (tokenizer.model, tokenizer.bin or tok<vocab>.bin); pass --tokenizer PATH");
  }
  const fs::path dir = folder ? p : (p.parent_path().empty() ? fs::path(".") : p.parent_path());
  for (const char* n : {"tokenizer.model", "tokenizer.json"})
    if (fs::exists(dir / n, ec)) return (dir / n).string();
  throw Error(ErrorCode::BadTokenizer,
              "no tokenizer.model or tokenizer.json in " + dir.string() + "; pass --tokenizer PATH");
}

}  // namespace folio
