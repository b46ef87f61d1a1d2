// GGUF files written by this test (a serializer of metadata and tensors below): tiny llama,
// qwen2 and phi3 models load with the right config and weights and run through the engine; bad
// files (wrong magic or version, cut anywhere, absurd counts and lengths, unknown types and
// architectures, missing or misshapen tensors) give a clear folio::Error naming the file. Real
// vocabulary-only GGUF files from shared/models/vocab are read and refused as models.
#include <QtTest>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <unistd.h>

#include "core/common/error.h"
#include "core/engine/engine.h"
#include "core/model/model_loader.h"
#include "core/model/gguf.h"
#include "core/model/gguf_model.h"
#include "core/model/model_weights.h"
#include "core/model/tensor.h"
#include "tests/gguf_writer.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using folio::DType;
using folio::testing::GgufWriter;

namespace {

constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ8_0 = 8;

// ---- Tensor data and what it dequantizes to ----

struct Stored {
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // what a reader must see
};

Stored make_tensor(uint32_t type, int64_t rows, int64_t cols, uint32_t seed, float scale = 0.1f, float offset = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  Stored s;
  auto put_f16 = [&](float v) {
    const uint16_t h = folio::f32_to_f16(v);
    s.bytes.push_back(static_cast<uint8_t>(h & 0xff));
    s.bytes.push_back(static_cast<uint8_t>(h >> 8));
    return folio::f16_to_f32(h);
  };
  for (int64_t i = 0; i < rows * cols; i += (type == kF32 || type == kF16) ? 1 : 32) {
    if (type == kF32) {
      const float v = offset + nd(rng);
      uint8_t b[4];
      std::memcpy(b, &v, 4);
      s.bytes.insert(s.bytes.end(), b, b + 4);
      s.values.push_back(v);
    } else if (type == kF16) {
      s.values.push_back(put_f16(offset + nd(rng)));
    } else if (type == kQ8_0) {
      const float d = put_f16(scale / 50);
      for (int j = 0; j < 32; ++j) {
        const int q = static_cast<int>(rng() % 255) - 127;
        s.bytes.push_back(static_cast<uint8_t>(static_cast<int8_t>(q)));
        s.values.push_back(d * static_cast<float>(q));
      }
    } else if (type == kQ4_0 || type == kQ4_1) {
      const float d = put_f16(scale / 4);
      const float m = type == kQ4_1 ? put_f16(-scale * 2) : 0.0f;
      uint8_t qs[16];
      float vals[32];
      for (int j = 0; j < 16; ++j) {
        const int lo = static_cast<int>(rng() % 16), hi = static_cast<int>(rng() % 16);
        qs[j] = static_cast<uint8_t>(lo | (hi << 4));
        vals[j] = type == kQ4_0 ? d * static_cast<float>(lo - 8) : d * static_cast<float>(lo) + m;
        vals[j + 16] = type == kQ4_0 ? d * static_cast<float>(hi - 8) : d * static_cast<float>(hi) + m;
      }
      s.bytes.insert(s.bytes.end(), qs, qs + 16);
      s.values.insert(s.values.end(), vals, vals + 32);
    }
  }
  return s;
}

struct TinyShape {
  std::string arch = "llama";
  int hidden = 64, layers = 2, heads = 4, kv_heads = 2, ffn = 128, vocab = 96, context = 256;
};

// A tiny model: the written tensors (values by name) and the writer.
struct TinyModel {
  GgufWriter writer;
  std::map<std::string, Stored> tensors;
  TinyShape shape;

  void tensor(const std::string& name, uint32_t type, int64_t rows, int64_t cols, uint32_t seed, float scale = 0.1f,
              float offset = 0.0f) {
    Stored s = make_tensor(type, rows, cols, seed, scale, offset);
    if (rows == 1) writer.add_tensor(name, {cols}, type, s.bytes);
    else writer.add_tensor(name, {cols, rows}, type, s.bytes);
    tensors[name] = std::move(s);
  }
};

TinyModel make_tiny(const TinyShape& shape = {}, bool tied = false) {
  TinyModel m;
  m.shape = shape;
  GgufWriter& w = m.writer;
  const std::string a = shape.arch;
  const int hd = shape.hidden / shape.heads;
  const int qd = shape.hidden, kvd = shape.kv_heads * hd;
  w.add_string("general.architecture", a);
  w.add_string("general.name", "tiny test model");
  w.add_u32("general.alignment", 32);
  w.add_u32(a + ".context_length", static_cast<uint32_t>(shape.context));
  w.add_u32(a + ".embedding_length", static_cast<uint32_t>(shape.hidden));
  w.add_u32(a + ".feed_forward_length", static_cast<uint32_t>(shape.ffn));
  w.add_u32(a + ".block_count", static_cast<uint32_t>(shape.layers));
  w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(shape.heads));
  w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(shape.kv_heads));
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.add_f32(a + ".rope.freq_base", 500000.0f);
  w.add_u32(a + ".rope.dimension_count", static_cast<uint32_t>(hd));
  w.add_string("tokenizer.ggml.model", "gpt2");
  std::vector<std::string> tokens;
  for (int i = 0; i < shape.vocab; ++i) tokens.push_back("t" + std::to_string(i));
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", std::vector<int32_t>(static_cast<size_t>(shape.vocab), 1));
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.add_bool("tokenizer.ggml.add_bos_token", true);
  w.add_string("tokenizer.chat_template", "{{ messages }}");

  uint32_t seed = 1;
  m.tensor("token_embd.weight", kQ8_0, shape.vocab, shape.hidden, seed++, 1.0f);
  m.tensor("output_norm.weight", kF32, 1, shape.hidden, seed++, 0.1f, 1.0f);
  if (!tied) m.tensor("output.weight", kF32, shape.vocab, shape.hidden, seed++);
  for (int l = 0; l < shape.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    m.tensor(p + "attn_norm.weight", kF32, 1, shape.hidden, seed++, 0.1f, 1.0f);
    m.tensor(p + "ffn_norm.weight", kF32, 1, shape.hidden, seed++, 0.1f, 1.0f);
    if (a == "phi3") {
      m.tensor(p + "attn_qkv.weight", kQ8_0, qd + 2 * kvd, shape.hidden, seed++);
      m.tensor(p + "ffn_up.weight", kQ8_0, 2 * shape.ffn, shape.hidden, seed++);
    } else {
      m.tensor(p + "attn_q.weight", kQ8_0, qd, shape.hidden, seed++);
      m.tensor(p + "attn_k.weight", kQ4_0, kvd, shape.hidden, seed++);
      m.tensor(p + "attn_v.weight", kF32, kvd, shape.hidden, seed++);
      m.tensor(p + "ffn_gate.weight", kQ4_1, shape.ffn, shape.hidden, seed++);
      m.tensor(p + "ffn_up.weight", kF16, shape.ffn, shape.hidden, seed++);
    }
    if (a == "qwen2") {
      m.tensor(p + "attn_q.bias", kF32, 1, qd, seed++);
      m.tensor(p + "attn_k.bias", kF32, 1, kvd, seed++);
      m.tensor(p + "attn_v.bias", kF32, 1, kvd, seed++);
    }
    m.tensor(p + "attn_output.weight", kQ8_0, shape.hidden, qd, seed++);
    m.tensor(p + "ffn_down.weight", kQ8_0, shape.hidden, shape.ffn, seed++);
  }
  return m;
}

std::vector<float> rows_f32(const folio::TensorView& v) {
  std::vector<float> out(static_cast<size_t>(v.rows * v.cols));
  for (int64_t r = 0; r < v.rows; ++r) folio::row_to_f32(v, r, out.data() + r * v.cols);
  return out;
}

std::vector<float> slice(const std::vector<float>& v, int64_t first_row, int64_t rows, int64_t cols) {
  return std::vector<float>(v.begin() + first_row * cols, v.begin() + (first_row + rows) * cols);
}

template <typename T>
void patch(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

}  // namespace

class GgufTest : public QObject {
  Q_OBJECT
  std::string dir_;
  int counter_ = 0;

  std::string write(const std::vector<uint8_t>& bytes, const std::string& name = "") {
    const std::string path = dir_ + "/" + (name.empty() ? "m" + std::to_string(counter_++) : name) + ".gguf";
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  // Loading `bytes` must throw folio::Error with `code`, naming the file, and mentioning `needle`.
  void expect_error(const std::vector<uint8_t>& bytes, folio::ErrorCode code, const QString& needle) {
    const std::string path = write(bytes);
    try {
      folio::load_model(path);
      QFAIL(qPrintable("loaded a bad file; expected: " + needle));
    } catch (const folio::Error& e) {
      const QString what = QString::fromStdString(e.what());
      QVERIFY2(e.code() == code, qPrintable(QString("code %1: %2").arg(folio::error_code_name(e.code())).arg(what)));
      QVERIFY2(what.contains(QString::fromStdString(path)), qPrintable(what));
      QVERIFY2(what.contains(needle, Qt::CaseInsensitive), qPrintable(what));
      QVERIFY2(!what.contains('\n'), qPrintable(what));
    }
  }

  void check_runs(std::shared_ptr<folio::LoadedModel> model) {
    auto engine = folio::Engine::create(model, nullptr, folio::EngineOptions{});
    folio::SessionOptions so;
    so.context_tokens = 64;
    auto session = engine->create_session(so);
    std::vector<int32_t> prompt;
    for (int i = 0; i < 20; ++i) prompt.push_back((i * 7 + 3) % model->config.vocab_size);
    session->prefill(prompt);  // 20 tokens: the prefill (panel) paths
    QCOMPARE(static_cast<int64_t>(session->logits().size()), static_cast<int64_t>(model->config.vocab_size));
    for (float v : session->logits()) QVERIFY(std::isfinite(v));
    const std::vector<int32_t> one = {5};
    session->prefill(one);  // one token: the decode paths
    for (float v : session->logits()) QVERIFY(std::isfinite(v));
  }

 private slots:
  void initTestCase() {
    dir_ = (fs::temp_directory_path() / ("folio_tst_gguf_" + std::to_string(::getpid()))).string();
    fs::create_directories(dir_);
  }
  void cleanupTestCase() { fs::remove_all(dir_); }

  void reads_metadata() {
    TinyModel m = make_tiny();
    folio::GgufFile f(write(m.writer.bytes()));
    QCOMPARE(f.version(), 3u);
    QCOMPARE(*f.get_string("general.architecture"), std::string("llama"));
    QCOMPARE(*f.get_int("llama.block_count"), int64_t{2});
    QCOMPARE(*f.get_float("llama.rope.freq_base"), 500000.0);
    const folio::GgufValue* tokens = f.find("tokenizer.ggml.tokens");
    QVERIFY(tokens != nullptr);
    QCOMPARE(tokens->count, uint64_t{96});
    QCOMPARE(tokens->strings[95], std::string("t95"));
    QCOMPARE(f.find("tokenizer.ggml.token_type")->items.size(), size_t{96});
    QCOMPARE(*f.get_int("tokenizer.ggml.add_bos_token"), int64_t{1});
    const folio::GgufTensorInfo* q = f.find_tensor("blk.0.attn_q.weight");
    QVERIFY(q != nullptr);
    QCOMPARE(q->dims, (std::vector<int64_t>{64, 64}));
    QCOMPARE(q->dtype, DType::Q8_0);
    QCOMPARE(q->bytes, size_t{64 * 2 * 34});
    QCOMPARE(f.tensors().size(), m.tensors.size());
    // version 2 reads the same
    folio::GgufFile f2(write(m.writer.bytes(2)));
    QCOMPARE(f2.version(), 2u);
    QCOMPARE(f2.tensors().size(), m.tensors.size());
  }

  void loads_llama() {
    TinyModel m = make_tiny();
    const std::string path = write(m.writer.bytes());
    auto model = folio::load_model(path);
    QCOMPARE(model->format, folio::ModelFormat::Gguf);
    QCOMPARE(model->path, path);
    QVERIFY(model->tokenizer_path.empty());
    QCOMPARE(model->chat_template, std::string("{{ messages }}"));
    const folio::ModelConfig& c = model->config;
    QCOMPARE(c.arch, folio::Architecture::Llama);
    QCOMPARE(c.arch_label, std::string("gguf llama"));
    QCOMPARE(c.hidden, 64);
    QCOMPARE(c.n_layers, 2);
    QCOMPARE(c.n_heads, 4);
    QCOMPARE(c.n_kv_heads, 2);
    QCOMPARE(c.head_dim, 16);
    QCOMPARE(c.ffn_hidden, 128);
    QCOMPARE(c.vocab_size, 96);
    QCOMPARE(c.max_context, int64_t{256});
    QCOMPARE(c.norm_eps, 1e-6f);
    QCOMPARE(c.rope.theta, 500000.0);
    QCOMPARE(c.rope.rotary_dim, 16);
    QCOMPARE(c.rope.layout, folio::RopeLayout::AdjacentPairs);
    QCOMPARE(c.rope.scaling, folio::RopeScaling::None);
    QCOMPARE(c.bos_id, 1);
    QCOMPARE(c.eos_ids, std::vector<int32_t>{2});
    QVERIFY(!c.tied_embeddings);
    QVERIFY(!c.qkv_bias);

    // every weight reads back as written
    const folio::ModelWeights& w = model->weights;
    QCOMPARE(rows_f32(w.tok_embd), m.tensors["token_embd.weight"].values);
    QCOMPARE(rows_f32(w.output), m.tensors["output.weight"].values);
    QCOMPARE(rows_f32(w.out_norm), m.tensors["output_norm.weight"].values);
    QCOMPARE(w.layers.size(), size_t{2});
    for (int l = 0; l < 2; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      const folio::LayerWeights& L = w.layers[static_cast<size_t>(l)];
      QCOMPARE(L.wq.dtype, DType::Q8_0);
      QCOMPARE(L.wk.dtype, DType::Q4_0);
      QCOMPARE(L.w_gate.dtype, DType::Q4_1);
      QCOMPARE(L.w_up.dtype, DType::F16);
      QCOMPARE(L.wk.rows, int64_t{32});
      QCOMPARE(L.wk.cols, int64_t{64});
      QCOMPARE(rows_f32(L.attn_norm), m.tensors[p + "attn_norm.weight"].values);
      QCOMPARE(rows_f32(L.ffn_norm), m.tensors[p + "ffn_norm.weight"].values);
      QCOMPARE(rows_f32(L.wq), m.tensors[p + "attn_q.weight"].values);
      QCOMPARE(rows_f32(L.wk), m.tensors[p + "attn_k.weight"].values);
      QCOMPARE(rows_f32(L.wv), m.tensors[p + "attn_v.weight"].values);
      QCOMPARE(rows_f32(L.wo), m.tensors[p + "attn_output.weight"].values);
      QCOMPARE(rows_f32(L.w_gate), m.tensors[p + "ffn_gate.weight"].values);
      QCOMPARE(rows_f32(L.w_up), m.tensors[p + "ffn_up.weight"].values);
      QCOMPARE(rows_f32(L.w_down), m.tensors[p + "ffn_down.weight"].values);
      QVERIFY(L.bq.empty());
    }
    QVERIFY(model->weight_bytes() > 0);
    check_runs(std::move(model));
  }

  // Without output.weight the embedding is the output; with an output equal to the embedding
  // the logits are the same.
  void tied_output() {
    TinyModel tied = make_tiny({}, true);
    auto a = folio::load_model(write(tied.writer.bytes()));
    QVERIFY(a->config.tied_embeddings);
    QCOMPARE(a->weights.output.data, a->weights.tok_embd.data);
    TinyModel untied = make_tiny({}, true);
    untied.writer.add_tensor("output.weight", {64, 96}, kQ8_0, tied.tensors["token_embd.weight"].bytes);
    auto b = folio::load_model(write(untied.writer.bytes()));
    QVERIFY(!b->config.tied_embeddings);
    QVERIFY(b->weights.output.data != b->weights.tok_embd.data);
    std::vector<std::vector<float>> logits;
    for (auto* model : {&a, &b}) {
      auto engine = folio::Engine::create(std::shared_ptr<folio::LoadedModel>(std::move(*model)), nullptr, {});
      auto s = engine->create_session({});
      const std::vector<int32_t> prompt = {1, 17, 33, 4};
      s->prefill(prompt);
      logits.emplace_back(s->logits().begin(), s->logits().end());
    }
    QCOMPARE(logits[0], logits[1]);
  }

  void loads_qwen2_with_biases() {
    TinyShape shape;
    shape.arch = "qwen2";
    TinyModel m = make_tiny(shape);
    auto model = folio::load_model(write(m.writer.bytes()));
    const folio::ModelConfig& c = model->config;
    QCOMPARE(c.arch, folio::Architecture::Qwen2);
    QCOMPARE(c.arch_label, std::string("gguf qwen2"));
    QCOMPARE(c.rope.layout, folio::RopeLayout::RotateHalf);
    QVERIFY(c.qkv_bias);
    const folio::LayerWeights& L = model->weights.layers[1];
    QCOMPARE(rows_f32(L.bq), m.tensors["blk.1.attn_q.bias"].values);
    QCOMPARE(rows_f32(L.bk), m.tensors["blk.1.attn_k.bias"].values);
    QCOMPARE(rows_f32(L.bv), m.tensors["blk.1.attn_v.bias"].values);
    check_runs(std::move(model));
  }

  // phi3: fused attn_qkv (Q, K, V rows) and ffn_up holding gate then up.
  void loads_phi3_fused() {
    TinyShape shape;
    shape.arch = "phi3";
    shape.kv_heads = 4;
    TinyModel m = make_tiny(shape);
    auto model = folio::load_model(write(m.writer.bytes()));
    const folio::ModelConfig& c = model->config;
    QCOMPARE(c.arch, folio::Architecture::Phi3);
    QCOMPARE(c.rope.layout, folio::RopeLayout::RotateHalf);
    const folio::LayerWeights& L = model->weights.layers[0];
    const auto& qkv = m.tensors["blk.0.attn_qkv.weight"].values;
    QCOMPARE(rows_f32(L.wq), slice(qkv, 0, 64, 64));
    QCOMPARE(rows_f32(L.wk), slice(qkv, 64, 64, 64));
    QCOMPARE(rows_f32(L.wv), slice(qkv, 128, 64, 64));
    const auto& gate_up = m.tensors["blk.0.ffn_up.weight"].values;
    QCOMPARE(rows_f32(L.w_gate), slice(gate_up, 0, 128, 64));
    QCOMPARE(rows_f32(L.w_up), slice(gate_up, 128, 128, 64));
    check_runs(std::move(model));
  }

  // Llama-3 scaling as rope_freqs.weight: per-pair divisors of the inverse frequencies.
  void rope_freqs_tensor() {
    TinyModel m = make_tiny();
    const std::vector<float> factors = {1, 1, 1, 2, 4, 8, 8, 8};
    std::vector<uint8_t> bytes(factors.size() * 4);
    std::memcpy(bytes.data(), factors.data(), bytes.size());
    m.writer.add_tensor("rope_freqs.weight", {8}, kF32, bytes);
    auto model = folio::load_model(write(m.writer.bytes()));
    QCOMPARE(model->config.rope.freq_factors.size(), size_t{8});
    const folio::RopeTable table = folio::make_rope_table(model->config.rope, 256);
    for (int i = 0; i < 8; ++i) {
      const double base = 1.0 / std::pow(500000.0, 2.0 * i / 16.0);
      QVERIFY(std::abs(table.inv_freq[static_cast<size_t>(i)] - base / factors[static_cast<size_t>(i)]) <= 1e-6 * base);
    }
    // a wrong length is a config error naming the file
    TinyModel bad = make_tiny();
    bad.writer.add_tensor("rope_freqs.weight", {4}, kF32, std::vector<uint8_t>(16, 0));
    expect_error(bad.writer.bytes(), folio::ErrorCode::BadModelFile, "rope_freqs.weight");
  }

  // Phi-3 LongRoPE: rope_factors_long/short and the original context.
  void longrope_tensors() {
    TinyShape shape;
    shape.arch = "phi3";
    TinyModel m = make_tiny(shape);
    std::vector<float> lf(8, 4.0f), sf(8, 1.5f);
    std::vector<uint8_t> lb(32), sb(32);
    std::memcpy(lb.data(), lf.data(), 32);
    std::memcpy(sb.data(), sf.data(), 32);
    m.writer.add_tensor("rope_factors_long.weight", {8}, kF32, lb);
    m.writer.add_tensor("rope_factors_short.weight", {8}, kF32, sb);
    m.writer.add_u32("phi3.rope.scaling.original_context_length", 64);
    m.writer.add_f32("phi3.rope.scaling.attn_factor", 1.25f);
    auto model = folio::load_model(write(m.writer.bytes()));
    const folio::RopeConfig& r = model->config.rope;
    QCOMPARE(r.scaling, folio::RopeScaling::LongRope);
    QCOMPARE(r.original_context, int64_t{64});
    QCOMPARE(r.factor, 4.0);
    QCOMPARE(r.long_factor, std::vector<double>(8, 4.0));
    QCOMPARE(r.short_factor, std::vector<double>(8, 1.5));
    QCOMPARE(folio::make_rope_table(r, 32).attention_scale, 1.25f);
  }

  void bad_magic_and_versions() {
    TinyModel m = make_tiny();
    auto bytes = m.writer.bytes();
    auto bad = bytes;
    bad[0] = 'X';
    expect_error(bad, folio::ErrorCode::BadModelFile, "not a GGUF file");
    expect_error(m.writer.bytes(1), folio::ErrorCode::UnsupportedModel, "version 1");
    expect_error(m.writer.bytes(4), folio::ErrorCode::UnsupportedModel, "version 4");
    expect_error({}, folio::ErrorCode::BadModelFile, "not a GGUF file");
  }

  // A file cut anywhere is an error, never a crash.
  void truncated_anywhere() {
    TinyModel m = make_tiny();
    const auto bytes = m.writer.bytes();
    const size_t header = m.writer.header_size();
    QVERIFY(header > 1000);
    int cuts = 0;
    for (size_t cut = 0; cut < bytes.size(); cut += cut < header + 64 ? 1 : 61) {
      const std::string path = write(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(cut)), "cut");
      try {
        folio::load_model(path);
        QFAIL(qPrintable(QString("a file cut at %1 of %2 bytes loaded").arg(cut).arg(bytes.size())));
      } catch (const folio::Error& e) {
        QVERIFY2(QString(e.what()).contains(QString::fromStdString(path)), e.what());
      }
      ++cuts;
    }
    QVERIFY(cuts > 1000);
    // the last tensor's data cut short: named, with the cause
    expect_error(std::vector<uint8_t>(bytes.begin(), bytes.end() - 40), folio::ErrorCode::BadModelFile,
                 "runs past the end of the file");
  }

  // Random bytes of the header changed: each file loads or gives a folio::Error, never a crash
  // (the sanitizer build checks that no read leaves the file).
  void corrupted_header_bytes() {
    TinyModel m = make_tiny();
    const auto bytes = m.writer.bytes();
    const size_t header = m.writer.header_size();
    std::mt19937 rng(77);
    int errors = 0;
    for (int i = 0; i < 400; ++i) {
      auto b = bytes;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        const size_t at = rng() % header;
        b[at] = static_cast<uint8_t>(i % 3 == 0 ? 0xff : rng());
      }
      try {
        auto model = folio::load_model(write(b, "flip"));
        QVERIFY(model->config.n_layers > 0);
      } catch (const folio::Error&) {
        ++errors;
      }
    }
    QVERIFY(errors > 0);
  }

  void absurd_counts_and_lengths() {
    TinyModel m = make_tiny();
    const auto bytes = m.writer.bytes();
    auto b = bytes;
    patch<uint64_t>(b, 8, uint64_t{1} << 40);  // tensor count
    expect_error(b, folio::ErrorCode::BadModelFile, "absurd tensor count");
    b = bytes;
    patch<uint64_t>(b, 16, uint64_t{1} << 62);  // key count
    expect_error(b, folio::ErrorCode::BadModelFile, "absurd metadata key count");
    b = bytes;
    patch<uint64_t>(b, 24, uint64_t{1} << 50);  // length of the first key's name
    expect_error(b, folio::ErrorCode::BadModelFile, "bytes but only");
    b = bytes;
    patch<uint64_t>(b, 24, bytes.size() - 20);  // a length just past the end
    expect_error(b, folio::ErrorCode::BadModelFile, "remain");
    // an array claiming more items than the file holds
    GgufWriter w;
    w.add_strings("tokenizer.ggml.tokens", {"a", "b"});
    b = w.bytes();
    const size_t count_at = 24 + 8 + std::string("tokenizer.ggml.tokens").size() + 4 + 4;
    patch<uint64_t>(b, count_at, uint64_t{1} << 40);
    expect_error(b, folio::ErrorCode::BadModelFile, "items");
    // a metadata value of an unknown type
    b = w.bytes();
    patch<uint32_t>(b, 24 + 8 + std::string("tokenizer.ggml.tokens").size(), 77);
    expect_error(b, folio::ErrorCode::BadModelFile, "unknown type");
  }

  void unsupported_tensor_type() {
    TinyModel m = make_tiny();
    m.writer.set_tensor_type("blk.1.attn_q.weight", kQ5_0);
    expect_error(m.writer.bytes(), folio::ErrorCode::UnsupportedModel, "\"blk.1.attn_q.weight\" has ggml type Q5_0");
    m.writer.set_tensor_type("blk.1.attn_q.weight", 999);
    expect_error(m.writer.bytes(), folio::ErrorCode::UnsupportedModel, "blk.1.attn_q.weight");
    // a tensor of an unknown type that the model does not need is no obstacle
    TinyModel extra = make_tiny();
    extra.writer.add_tensor("mystery.weight", {32}, 23 /* IQ4_XS */, std::vector<uint8_t>(17, 0));
    auto model = folio::load_model(write(extra.writer.bytes()));
    QCOMPARE(model->config.n_layers, 2);
  }

  void unknown_architecture() {
    TinyShape shape;
    shape.arch = "gpt2";
    TinyModel m = make_tiny(shape);
    expect_error(m.writer.bytes(), folio::ErrorCode::UnsupportedModel, "\"gpt2\"");
    expect_error(m.writer.bytes(), folio::ErrorCode::UnsupportedModel, "llama, qwen2 and phi3");
  }

  void missing_metadata() {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_tensor("token_embd.weight", {32, 4}, kF32, std::vector<uint8_t>(32 * 4 * 4, 0));
    expect_error(w.bytes(), folio::ErrorCode::BadConfig, "llama.embedding_length");
  }

  void missing_tensor() {
    TinyModel m = make_tiny();
    m.writer.remove_tensor("blk.1.ffn_down.weight");
    expect_error(m.writer.bytes(), folio::ErrorCode::BadModelFile, "\"blk.1.ffn_down.weight\" is missing");
  }

  void wrong_shape() {
    TinyModel m = make_tiny();
    m.writer.set_tensor_dims("blk.0.attn_k.weight", {64, 16});  // 16 rows instead of 32 (same data size is not needed)
    expect_error(m.writer.bytes(), folio::ErrorCode::BadModelFile, "\"blk.0.attn_k.weight\" has shape [16, 64]");
    expect_error(m.writer.bytes(), folio::ErrorCode::BadModelFile, "needs [32, 64]");
    TinyModel v = make_tiny();
    v.writer.set_tensor_dims("output_norm.weight", {32});
    expect_error(v.writer.bytes(), folio::ErrorCode::BadModelFile, "output_norm.weight");
    TinyModel rows = make_tiny();  // not a whole number of blocks per row
    rows.writer.set_tensor_dims("blk.0.attn_q.weight", {48, 64});
    expect_error(rows.writer.bytes(), folio::ErrorCode::BadModelFile, "not a multiple of 32");
  }

  void inconsistent_metadata() {
    TinyShape shape;
    shape.kv_heads = 3;  // 4 heads do not split into 3 groups
    expect_error(make_tiny(shape).writer.bytes(), folio::ErrorCode::BadConfig, "num_key_value_heads");
    TinyModel m = make_tiny();
    m.writer.add_u32("llama.attention.head_count_kv", 2);  // a key given twice
    expect_error(m.writer.bytes(), folio::ErrorCode::BadModelFile, "\"llama.attention.head_count_kv\" appears twice");
    GgufWriter w;  // a count beyond int32
    w.add_string("general.architecture", "llama");
    w.add_tensor("token_embd.weight", {32, 4}, kF32, std::vector<uint8_t>(32 * 4 * 4, 0));
    for (const char* key : {"llama.feed_forward_length", "llama.block_count", "llama.attention.head_count"})
      w.add_u32(key, 4);
    w.add_u32("llama.embedding_length", 4000000000u);
    expect_error(w.bytes(), folio::ErrorCode::BadConfig, "llama.embedding_length");
  }

  // Real vocabulary-only files from llama.cpp: metadata reads, loading as a model is refused.
  void real_vocab_files() {
    const std::string dir = folio::test::shared_models() + "/vocab";
    FOLIO_REQUIRE_FILE(dir + "/ggml-vocab-llama-bpe.gguf");
    {
      folio::GgufFile f(dir + "/ggml-vocab-llama-bpe.gguf");
      const folio::GgufValue* tokens = f.find("tokenizer.ggml.tokens");
      QVERIFY(tokens != nullptr);
      QCOMPARE(tokens->type, folio::GgufType::Array);
      QCOMPARE(tokens->element_type, folio::GgufType::String);
      QCOMPARE(tokens->strings.size(), size_t{128256});
      QCOMPARE(*f.get_string("tokenizer.ggml.model"), std::string("gpt2"));
      QVERIFY(f.find("tokenizer.ggml.merges") != nullptr);
      QVERIFY(f.tensors().empty());
    }
    int files = 0;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() != ".gguf") continue;
      ++files;
      folio::GgufFile f(e.path().string());
      QVERIFY(f.find("tokenizer.ggml.tokens") != nullptr);
      try {
        folio::load_model(e.path().string());
        QFAIL("a vocabulary-only file loaded as a model");
      } catch (const folio::Error& err) {
        QVERIFY2(err.code() == folio::ErrorCode::BadModelFile, err.what());
        QVERIFY2(QString(err.what()).contains("vocabulary-only"), err.what());
        QVERIFY2(QString(err.what()).contains(QString::fromStdString(e.path().string())), err.what());
      }
    }
    QVERIFY(files >= 1);
  }
};

QTEST_APPLESS_MAIN(GgufTest)
#include "tst_gguf.moc"
