// Byte-level BPE and GGUF vocabularies: llama.cpp's test vectors for llama-spm, phi-3 (SentencePiece
// built from GGUF metadata), llama-bpe (Llama 3) and qwen2 (byte-level BPE); round trips, streaming
// decode, special tokens, a tokenizer.json written here, speed, and clear errors for bad input.
#include <QElapsedTimer>
#include <QTemporaryDir>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/common/mapped_file.h"
#include "core/model/gguf.h"
#include "core/tokenizer/bpe_tokenizer.h"
#include "core/tokenizer/gguf_tokenizer.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/test_support.h"
#include "tests/tokenizer_test_support.h"

using folio::Error;
using folio::ErrorCode;
using folio::test::shared_models;

namespace {

using folio::test::error_from;
using folio::test::is_valid_utf8;
using folio::test::read_vectors;
using folio::test::show;
using folio::test::stream_decode;
using folio::test::Vector;
using folio::test::write_file;

std::string vocab_file(const std::string& name) { return shared_models() + "/vocab/ggml-vocab-" + name + ".gguf"; }


std::string raw_bytes(const folio::Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string out;
  int32_t previous = -1;
  for (int32_t id : ids) {
    out += tok.token_bytes(id, previous);
    previous = id;
  }
  return out;
}

bool contains(const std::vector<int32_t>& ids, int32_t id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); }

// A minimal GGUF v3 writer for metadata-only files.
class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& value) {
    begin(key, 8);
    put_string(value);
  }
  void add_u32(const std::string& key, uint32_t value) {
    begin(key, 4);
    put(value);
  }
  void add_bool(const std::string& key, bool value) {
    begin(key, 7);
    put(static_cast<uint8_t>(value ? 1 : 0));
  }
  void add_strings(const std::string& key, const std::vector<std::string>& values) {
    begin(key, 9);
    put(uint32_t{8});
    put(static_cast<uint64_t>(values.size()));
    for (const std::string& v : values) put_string(v);
  }
  void add_i32s(const std::string& key, const std::vector<int32_t>& values) {
    begin(key, 9);
    put(uint32_t{5});
    put(static_cast<uint64_t>(values.size()));
    for (int32_t v : values) put(v);
  }
  std::string bytes() const {
    std::string out = "GGUF";
    auto append = [&](auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    append(uint32_t{3});
    append(uint64_t{0});
    append(static_cast<uint64_t>(count_));
    return out + body_;
  }

 private:
  template <typename T>
  void put(T v) {
    body_.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void put_string(const std::string& s) {
    put(static_cast<uint64_t>(s.size()));
    body_ += s;
  }
  void begin(const std::string& key, uint32_t type) {
    put_string(key);
    put(type);
    ++count_;
  }
  std::string body_;
  size_t count_ = 0;
};

// A small byte-level vocabulary: the 256 byte characters (ids 0..255 in byte order), then the
// results of the merges "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d".
struct SmallVocab {
  std::vector<std::string> tokens;
  std::vector<std::pair<std::string, std::string>> merges = {{"h", "e"},     {"l", "l"},    {"he", "ll"},
                                                             {"hell", "o"},  {"Ġ", "w"},    {"o", "r"},
                                                             {"Ġw", "or"},   {"Ġwor", "l"}, {"Ġworl", "d"}};
  SmallVocab() {
    for (const std::string& c : folio::gpt2_byte_to_unicode()) tokens.push_back(c);
    for (const auto& [a, b] : merges) tokens.push_back(a + b);
  }
  int32_t id(const std::string& text) const {
    return static_cast<int32_t>(std::find(tokens.begin(), tokens.end(), text) - tokens.begin());
  }
};

std::string small_gguf(const std::string& model, const std::string& pre, bool with_merges) {
  const SmallVocab v;
  std::vector<std::string> tokens = v.tokens;
  tokens.push_back("<|eot|>");
  std::vector<int32_t> types(tokens.size(), 1);
  types.back() = 3;
  std::vector<std::string> merges;
  for (const auto& [a, b] : v.merges) merges.push_back(a + " " + b);
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("tokenizer.ggml.model", model);
  w.add_string("tokenizer.ggml.pre", pre);
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", types);
  if (with_merges) w.add_strings("tokenizer.ggml.merges", merges);
  w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tokens.size() - 1));
  return w.bytes();
}

// tokenizer.json for SmallVocab: llama-3-like Split + ByteLevel, merges in both spellings, a BOS
// template, a special and a non-special added token.
std::string small_tokenizer_json(bool with_merges) {
  const SmallVocab v;
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) vocab[v.tokens[i]] = i;
  nlohmann::json merges = nlohmann::json::array();
  for (size_t i = 0; i < v.merges.size(); ++i) {
    if (i % 2 == 0) merges.push_back(v.merges[i].first + " " + v.merges[i].second);
    else merges.push_back(nlohmann::json::array({v.merges[i].first, v.merges[i].second}));
  }
  const int n = static_cast<int>(v.tokens.size());
  nlohmann::json model = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"vocab", vocab},
                          {"byte_fallback", false}, {"ignore_merges", false}};
  if (with_merges) model["merges"] = merges;
  nlohmann::json root = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", n}, {"content", "<|begin|>"}, {"special", true}, {"lstrip", false}, {"rstrip", false}},
        {{"id", n + 1}, {"content", "<|end|>"}, {"special", true}, {"lstrip", false}, {"rstrip", false}},
        {{"id", n + 2}, {"content", "<sep>"}, {"special", false}, {"lstrip", false}, {"rstrip", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<|begin|>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<|begin|>", {{"id", "<|begin|>"}, {"ids", {n}}, {"tokens", {"<|begin|>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", model}};
  return root.dump(1);
}

// Varied text for the speed test: words of random letters (so the piece cache rarely helps),
// numbers, punctuation, accented and CJK characters, emoji, newlines.
// With `words` > 0 the letters come from that many fixed words (more like real text, where most
// pieces repeat).
std::string varied_text(size_t bytes, size_t words = 0) {
  std::mt19937 rng(4242);
  std::vector<std::string> lexicon(words);
  for (std::string& w : lexicon) {
    const unsigned len = 1 + rng() % 9;
    for (unsigned i = 0; i < len; ++i) w += static_cast<char>((rng() % 5 == 0 ? 'A' : 'a') + rng() % 26);
  }
  const std::vector<std::string> extras = {"é", "ß", "ж", "日本", "語", "🦙", "✅", "—", "’", "\t", "\n", "\n\n", "  "};
  std::string out;
  out.reserve(bytes + 64);
  while (out.size() < bytes) {
    const unsigned r = rng() % 20;
    if (r < 12) {
      out += ' ';
      if (!lexicon.empty()) {
        out += lexicon[std::min(rng() % lexicon.size(), rng() % lexicon.size())];  // favours the first words
        continue;
      }
      const unsigned len = 1 + rng() % 9;
      for (unsigned i = 0; i < len; ++i) out += static_cast<char>((rng() % 5 == 0 ? 'A' : 'a') + rng() % 26);
    } else if (r < 14) {
      out += ' ' + std::to_string(rng() % 100000);
    } else if (r < 17) {
      out += ".,;:!?()[]{}'\"-+*/=<>"[rng() % 22];
    } else {
      out += extras[rng() % extras.size()];
    }
  }
  return out;
}

}  // namespace

class TstBpeTokenizer : public QObject {
  Q_OBJECT

 private slots:
  // ------------------------------------------------------------------ llama.cpp conformance
  void gguf_vocab_matches_llama_cpp_vectors_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<bool>("byte_level");
    QTest::newRow("llama-spm") << "llama-spm" << false;
    QTest::newRow("phi-3") << "phi-3" << false;
    QTest::newRow("llama-bpe") << "llama-bpe" << true;
    QTest::newRow("qwen2") << "qwen2" << true;
  }

  // As llama.cpp's test-tokenizer-0: common_tokenize(ctx, text, add_special = false,
  // parse_special = false) for every input.
  void gguf_vocab_matches_llama_cpp_vectors() {
    QFETCH(QString, name);
    QFETCH(bool, byte_level);
    const std::string gguf = vocab_file(name.toStdString());
    FOLIO_REQUIRE_FILE(gguf);
    FOLIO_REQUIRE_FILE(gguf + ".inp");
    FOLIO_REQUIRE_FILE(gguf + ".out");
    const auto tok = folio::load_tokenizer(gguf);
    QCOMPARE(dynamic_cast<const folio::BpeTokenizer*>(tok.get()) != nullptr, byte_level);
    const std::vector<Vector> vectors = read_vectors(gguf + ".inp", gguf + ".out");
    QCOMPARE(vectors.size(), size_t{46});
    int failures = 0;
    for (size_t i = 0; i < vectors.size(); ++i) {
      const Vector& v = vectors[i];
      const std::vector<int32_t> ids = tok->encode(v.text, false, false);
      if (ids != v.ids) {
        ++failures;
        qWarning("%s vector %zu \"%s\": got %s, llama.cpp has %s", qPrintable(name), i, qPrintable(show(v.text)),
                 qPrintable(show(ids)), qPrintable(show(v.ids)));
        continue;
      }
      // Every input comes back exactly, whole and streamed, never as partial characters.
      const std::string text = tok->decode(ids);
      QVERIFY2(text == v.text, qPrintable(QString("vector %1 decodes to \"%2\"").arg(i).arg(show(text))));
      bool valid = false;
      QVERIFY2(stream_decode(*tok, ids, &valid) == v.text && valid,
               qPrintable(QString("vector %1: streamed text differs or is invalid UTF-8").arg(i)));
    }
    QCOMPARE(failures, 0);
  }

  // ------------------------------------------------------------------ Llama 3 (llama-bpe)
  void llama3_specials_and_bos() {
    const std::string gguf = vocab_file("llama-bpe");
    FOLIO_REQUIRE_FILE(gguf);
    const auto tok = folio::load_gguf_tokenizer(gguf);
    QCOMPARE(tok->vocab_size(), 128256);
    QCOMPARE(tok->bos_id(), 128000);  // llama.cpp's llama-bpe default: add_bos_token
    QCOMPARE(tok->eos_id(), 128001);
    QCOMPARE(tok->encode("Hello world", false), (std::vector<int32_t>{9906, 1917}));
    QCOMPARE(tok->encode("Hello world", true), (std::vector<int32_t>{128000, 9906, 1917}));
    QCOMPARE(tok->piece(9906), std::string("Hello"));
    QCOMPARE(tok->piece(1917), std::string("\xC4\xA0world"));  // "Ġworld"
    QCOMPARE(tok->piece_to_id("\xC4\xA0world"), std::optional<int32_t>(1917));
    QCOMPARE(tok->piece_to_id("no such piece"), std::optional<int32_t>());
    QCOMPARE(tok->token_bytes(1917, 9906), std::string(" world"));
    QVERIFY(tok->is_control(128000) && tok->is_control(128009) && !tok->is_control(9906));

    // <|begin_of_text|>, <|start_header_id|> ... are control tokens: parsed with parse_special only.
    const std::string chat = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    const std::vector<int32_t> parsed = tok->encode(chat, false, true);
    QCOMPARE(parsed.front(), 128000);
    QCOMPARE(parsed[1], 128006);
    QCOMPARE(parsed.back(), 128009);
    QVERIFY(contains(parsed, 128007));
    const std::vector<int32_t> literal = tok->encode(chat, false, false);
    QVERIFY(!contains(literal, 128000) && !contains(literal, 128006) && !contains(literal, 128009));
    QCOMPARE(tok->decode(literal), chat);
    // Control tokens are not shown (llama.cpp's token_to_piece without `special`).
    QCOMPARE(tok->decode(parsed), std::string("user\n\nHi"));
    QCOMPARE(tok->token_bytes(128000, -1), std::string());
    const auto bad_id = error_from([&] { (void)tok->token_bytes(128256, -1); });
    QVERIFY(bad_id && bad_id->code() == ErrorCode::BadArgument);
    QVERIFY(error_from([&] { (void)tok->piece(-1); }).has_value());
  }

  // ------------------------------------------------------------------ Qwen2
  void qwen2_specials_no_bos() {
    const std::string gguf = vocab_file("qwen2");
    FOLIO_REQUIRE_FILE(gguf);
    const auto tok = folio::load_tokenizer(gguf);
    QCOMPARE(tok->vocab_size(), 151936);
    QCOMPARE(tok->bos_id(), -1);  // Qwen2 does not prepend BOS (no add_bos_token, llama.cpp's default false)
    QCOMPARE(tok->eos_id(), 151643);
    QCOMPARE(tok->encode("Hello", true), tok->encode("Hello", false));
    const std::string chat = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n";
    const std::vector<int32_t> parsed = tok->encode(chat, true, true);
    QCOMPARE(parsed.front(), 151644);
    QVERIFY(contains(parsed, 151645));
    QCOMPARE(std::count(parsed.begin(), parsed.end(), 151644), 2);
    QCOMPARE(tok->decode(parsed), std::string("user\nHello\nassistant\n"));
    const std::vector<int32_t> literal = tok->encode(chat, false, false);
    QVERIFY(!contains(literal, 151644) && !contains(literal, 151645));
    QCOMPARE(tok->decode(literal), chat);
    // User-defined tokens (type 4) are matched even without parse_special, as llama.cpp does,
    // and decode to their text.
    const std::vector<int32_t> pad = tok->encode("a[PAD151650]b", false, false);
    QVERIFY2(contains(pad, 151650), qPrintable(show(pad)));
    QVERIFY(!tok->is_control(151650));
    QCOMPARE(tok->decode(pad), std::string("a[PAD151650]b"));
  }

  // ------------------------------------------------------------------ SentencePiece from GGUF
  void llama_spm_and_phi3_from_gguf() {
    const std::string spm = vocab_file("llama-spm");
    const std::string phi3 = vocab_file("phi-3");
    FOLIO_REQUIRE_FILE(spm);
    FOLIO_REQUIRE_FILE(phi3);
    const auto llama = folio::load_gguf_tokenizer(spm);
    QCOMPARE(llama->vocab_size(), 32000);
    QCOMPARE(llama->encode("Hello world", false), (std::vector<int32_t>{15043, 3186}));
    QCOMPARE(llama->encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
    QCOMPARE(llama->encode("Hello</s>", false, true), (std::vector<int32_t>{15043, 2}));
    QVERIFY(!contains(llama->encode("Hello</s>", false, false), 2));
    QCOMPARE(llama->decode(std::vector<int32_t>{1, 15043, 3186, 2}), std::string("Hello world"));

    const auto phi = folio::load_gguf_tokenizer(phi3);
    QCOMPARE(phi->vocab_size(), 32064);
    QCOMPARE(phi->bos_id(), 1);
    QCOMPARE(phi->eos_id(), 32000);
    QVERIFY(phi->is_control(32007) && phi->is_control(32010) && !phi->is_control(15043));
    QCOMPARE(phi->piece(32010), std::string("<|user|>"));
    // Phi-3's chat markers are control tokens past the 32000 SentencePiece pieces; llama.cpp gives
    // them rstrip, so the newline after each goes.
    const std::string chat = "<|user|>\nHello<|end|>\n<|assistant|>";
    QCOMPARE(phi->encode(chat, true, true), (std::vector<int32_t>{1, 32010, 15043, 32007, 32001}));
    const std::vector<int32_t> literal = phi->encode(chat, false, false);
    QVERIFY(!contains(literal, 32010) && !contains(literal, 32007));
    QCOMPARE(phi->decode(literal), chat);
    QCOMPARE(phi->decode(std::vector<int32_t>{1, 32010, 15043, 32007, 32001}), std::string("Hello"));
  }

  // ------------------------------------------------------------------ streaming, bytes
  void stream_decoder_over_byte_level_tokens() {
    const std::string gguf = vocab_file("qwen2");
    FOLIO_REQUIRE_FILE(gguf);
    const auto tok = folio::load_tokenizer(gguf);
    const std::string text = "Zürich 🦙🦙 日本語のテキスト ✅ ¿qué? Ελληνικά — 𝔘𝔫𝔦𝔠𝔬𝔡𝔢";
    const std::vector<int32_t> ids = tok->encode(text, false);
    int partial = 0;  // tokens whose bytes are not whole characters on their own
    for (int32_t id : ids) partial += is_valid_utf8(tok->token_bytes(id, -1)) ? 0 : 1;
    QVERIFY2(partial > 0, "the text should need tokens that carry part of a character");
    bool valid = false;
    QCOMPARE(stream_decode(*tok, ids, &valid), text);
    QVERIFY(valid);
    QCOMPARE(tok->decode(ids), text);
  }

  void invalid_utf8_input_is_kept_as_bytes() {
    const std::string gguf = vocab_file("llama-bpe");
    FOLIO_REQUIRE_FILE(gguf);
    const auto tok = folio::load_tokenizer(gguf);
    const std::string text = std::string("ab\xFF\xFE cd \xC3") + "(" + "\xE2\x82" + " \xF0\x9F\xA6";
    const std::vector<int32_t> ids = tok->encode(text, false);
    QCOMPARE(raw_bytes(*tok, ids), text);
    bool valid = false;
    (void)stream_decode(*tok, ids, &valid);
    QVERIFY(valid);  // invalid bytes come out as U+FFFD
  }

  // ------------------------------------------------------------------ pre-tokenizers
  void presets_split_as_llama_cpp() {
    const auto split = [](const char* preset, const std::string& text) {
      const std::optional<folio::BpePreset> p = folio::llama_cpp_bpe_preset(preset);
      if (!p) return std::vector<std::string>{"(no preset)"};
      folio::BpeVocabulary v;
      for (const std::string& c : folio::gpt2_byte_to_unicode()) v.tokens.push_back({c});
      for (const std::string& r : p->regexes) v.pre_tokenizer.push_back({folio::PreTokenizerStep::Kind::Split, r});
      return folio::BpeTokenizer(std::move(v), "test").pre_tokenize(text);
    };
    using S = std::vector<std::string>;
    QCOMPARE(split("llama-bpe", "abc 12345 it's"), (S{"abc", " ", "123", "45", " it", "'s"}));
    QCOMPARE(split("llama-bpe", "HE'LL x\n\n  y"), (S{"HE", "'LL", " x", "\n\n", " ", " y"}));
    QCOMPARE(split("qwen2", "abc 123"), (S{"abc", " ", "1", "2", "3"}));
    QCOMPARE(split("gpt-2", "abc 123  x!!"), (S{"abc", " 123", " ", " x", "!!"}));
    QCOMPARE(split("smollm", "abc 123"), (S{"abc", " ", "1", "2", "3"}));
    QCOMPARE(split("default", "a, 1234"), (S{"a", ",", " ", "123", "4"}));
    QCOMPARE(split("no-such-preset", "x"), (S{"(no preset)"}));
    QVERIFY(!folio::llama_cpp_bpe_preset("no-such-preset").has_value());
    QVERIFY(folio::known_bpe_preset_names().find("llama-bpe") != std::string::npos);
  }

  // ------------------------------------------------------------------ tokenizer.json
  void hf_tokenizer_json_loads_and_encodes() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.path().toStdString() + "/tokenizer.json";
    write_file(path, small_tokenizer_json(true));
    write_file(dir.path().toStdString() + "/tokenizer_config.json",
               R"({"bos_token": "<|begin|>", "eos_token": {"content": "<|end|>"}, "add_bos_token": false})");
    const SmallVocab v;
    const int32_t n = static_cast<int32_t>(v.tokens.size());
    const auto tok = folio::load_tokenizer(path);
    QVERIFY(dynamic_cast<const folio::BpeTokenizer*>(tok.get()) != nullptr);
    QCOMPARE(tok->vocab_size(), n + 3);
    QCOMPARE(tok->bos_id(), n);  // from the TemplateProcessing post-processor
    QCOMPARE(tok->eos_id(), n + 1);  // from tokenizer_config.json
    const int32_t hello = v.id("hello");
    const int32_t world = v.id("\xC4\xA0world");
    QCOMPARE(tok->encode("hello world", false), (std::vector<int32_t>{hello, world}));
    QCOMPARE(tok->encode("hello world", true), (std::vector<int32_t>{n, hello, world}));
    // Merges apply by rank: "hell" needs "he"+"ll"; "hel" alone stays "he" "l".
    QCOMPARE(tok->encode("hel", false), (std::vector<int32_t>{v.id("he"), v.id("l")}));
    QCOMPARE(tok->encode("hello<|end|>", false, true), (std::vector<int32_t>{hello, n + 1}));
    QVERIFY(!contains(tok->encode("hello<|end|>", false, false), n + 1));
    QCOMPARE(tok->encode("hello<sep>world", false, false), (std::vector<int32_t>{hello, n + 2, v.id("w"), v.id("or"), v.id("l"), v.id("d")}));
    QCOMPARE(tok->decode(tok->encode("hello<sep> world<|end|>", true, true)), std::string("hello<sep> world"));
    QVERIFY(tok->is_control(n + 1) && !tok->is_control(n + 2));
    const std::string other = "Grüße, 日本 🦙!\n\tok";
    QCOMPARE(tok->decode(tok->encode(other, false)), other);

    // Straight from text, without the config: no eos marker known, BOS from the template.
    const auto parsed = folio::parse_hf_tokenizer_json(small_tokenizer_json(true), "inline tokenizer.json");
    QCOMPARE(parsed->bos_id(), n);
    QCOMPARE(parsed->encode("hello world", false), (std::vector<int32_t>{hello, world}));
  }

  void gguf_written_here_loads() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.path().toStdString() + "/small.gguf";
    write_file(path, small_gguf("gpt2", "gpt-2", true));
    const SmallVocab v;
    const auto tok = folio::load_tokenizer(path);
    QCOMPARE(tok->encode("hello world", false), (std::vector<int32_t>{v.id("hello"), v.id("\xC4\xA0world")}));
    QCOMPARE(tok->bos_id(), -1);
    const int32_t eot = static_cast<int32_t>(v.tokens.size());
    QCOMPARE(tok->eos_id(), eot);
    QCOMPARE(tok->encode("hello<|eot|>", false, true), (std::vector<int32_t>{v.id("hello"), eot}));
    // Also through the GgufFile overload.
    const folio::GgufFile file(path);
    QCOMPARE(folio::load_gguf_tokenizer(file)->encode("hello", false), (std::vector<int32_t>{v.id("hello")}));
  }

  // ------------------------------------------------------------------ speed and threads
  void encodes_a_megabyte_quickly() {
    const std::string gguf = vocab_file("llama-bpe");
    FOLIO_REQUIRE_FILE(gguf);
    QElapsedTimer load_timer;
    load_timer.start();
    const auto tok = folio::load_tokenizer(gguf);
    const qint64 load_ms = load_timer.elapsed();
    const std::string text = varied_text(1 << 20);
    QElapsedTimer timer;
    timer.start();
    const std::vector<int32_t> ids = tok->encode(text, false);
    const qint64 ms = timer.elapsed();
    qInfo("llama-bpe: loaded in %lld ms; encoded %zu bytes into %zu tokens in %lld ms", load_ms, text.size(),
          ids.size(), ms);
    QVERIFY2(ms < 10000, qPrintable(QString("encoding 1 MB took %1 ms").arg(ms)));
    QCOMPARE(tok->decode(ids), text);
    const std::string repeating = varied_text(1 << 20, 20000);
    timer.restart();
    const std::vector<int32_t> repeating_ids = tok->encode(repeating, false);
    const qint64 repeating_ms = timer.elapsed();
    qInfo("llama-bpe: 1 MB from 20000 words: %zu tokens in %lld ms", repeating_ids.size(), repeating_ms);
    QVERIFY2(repeating_ms < 10000, qPrintable(QString("encoding 1 MB took %1 ms").arg(repeating_ms)));
    QCOMPARE(tok->decode(repeating_ids), repeating);

    // The same ids from several threads at once (the piece cache is shared).
    const std::string part = text.substr(0, 200000);
    const std::vector<int32_t> expected = tok->encode(part, false);
    std::vector<std::vector<int32_t>> results(4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < results.size(); ++t)
      threads.emplace_back([&, t] { results[t] = tok->encode(part, false); });
    for (std::thread& t : threads) t.join();
    for (const auto& r : results) QVERIFY(r == expected);
  }

  // ------------------------------------------------------------------ errors
  void bad_gguf_files_give_clear_errors() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string base = dir.path().toStdString();
    auto expect_bad = [&](const std::string& path, const char* must_mention) {
      const auto e = error_from([&] { (void)folio::load_tokenizer(path); });
      if (!e) return QString("no error for %1").arg(QString::fromStdString(path));
      if (e->code() != ErrorCode::BadTokenizer) return QString("code %1: %2").arg(folio::error_code_name(e->code()), e->what());
      const QString what = e->what();
      if (!what.contains(QString::fromStdString(path))) return QString("message lacks the path: ") + what;
      if (must_mention != nullptr && !what.contains(must_mention)) return QString("message lacks \"%1\": %2").arg(must_mention, what);
      if (what.contains('\n')) return QString("message is not one line: ") + what;
      return QString();
    };

    // Metadata written here: unknown pre-tokenizer, unknown model, no merges, no tokens.
    const std::string unknown_pre = base + "/unknown-pre.gguf";
    write_file(unknown_pre, small_gguf("gpt2", "no-such-pre", true));
    QString why = expect_bad(unknown_pre, "no-such-pre");
    QVERIFY2(why.isEmpty(), qPrintable(why));
    const std::string unknown_model = base + "/unknown-model.gguf";
    write_file(unknown_model, small_gguf("wordpiece-x", "gpt-2", true));
    why = expect_bad(unknown_model, "wordpiece-x");
    QVERIFY2(why.isEmpty(), qPrintable(why));
    const std::string no_merges = base + "/no-merges.gguf";
    write_file(no_merges, small_gguf("gpt2", "gpt-2", false));
    why = expect_bad(no_merges, "merges");
    QVERIFY2(why.isEmpty(), qPrintable(why));
    GgufWriter empty;
    empty.add_string("general.architecture", "llama");
    const std::string no_tokenizer = base + "/no-tokenizer.gguf";
    write_file(no_tokenizer, empty.bytes());
    why = expect_bad(no_tokenizer, "tokenizer.ggml.model");
    QVERIFY2(why.isEmpty(), qPrintable(why));

    // Truncated copies of a real vocabulary, and garbage.
    const std::string real = vocab_file("qwen2");
    FOLIO_REQUIRE_FILE(real);
    const std::string bytes = folio::read_text_file(real);
    for (size_t cut : {size_t{0}, size_t{3}, size_t{10}, size_t{30}, size_t{1000}, bytes.size() / 2, bytes.size() - 1}) {
      const std::string truncated = base + "/truncated.gguf";
      write_file(truncated, bytes.substr(0, cut));
      why = expect_bad(truncated, nullptr);
      QVERIFY2(why.isEmpty(), qPrintable(QString("cut at %1: %2").arg(cut).arg(why)));
    }
    std::mt19937 rng(777);
    for (int round = 0; round < 32; ++round) {
      std::string junk(1 + rng() % 4000, '\0');
      for (char& c : junk) c = static_cast<char>(rng() & 0xff);
      if (round % 2 == 0) junk = "GGUF" + std::string("\x03\0\0\0", 4) + junk;
      const std::string garbage = base + "/garbage.gguf";
      write_file(garbage, junk);
      why = expect_bad(garbage, nullptr);
      QVERIFY2(why.isEmpty(), qPrintable(QString("round %1: %2").arg(round).arg(why)));
    }
  }

  void bad_tokenizer_json_gives_clear_errors() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string path = dir.path().toStdString() + "/tokenizer.json";
    auto expect_bad = [&](const std::string& text, const char* must_mention) {
      write_file(path, text);
      const auto e = error_from([&] { (void)folio::load_tokenizer(path); });
      if (!e) return QString("no error");
      if (e->code() != ErrorCode::BadTokenizer) return QString("code %1: %2").arg(folio::error_code_name(e->code()), e->what());
      const QString what = e->what();
      if (!what.contains(QString::fromStdString(path))) return QString("message lacks the path: ") + what;
      if (must_mention != nullptr && !what.contains(must_mention)) return QString("message lacks \"%1\": %2").arg(must_mention, what);
      return QString();
    };
    QString why = expect_bad(small_tokenizer_json(false), "merges");
    QVERIFY2(why.isEmpty(), qPrintable(why));
    const std::string good = small_tokenizer_json(true);
    why = expect_bad(good.substr(0, good.size() / 2), "JSON");
    QVERIFY2(why.isEmpty(), qPrintable(why));
    why = expect_bad("", nullptr);
    QVERIFY2(why.isEmpty(), qPrintable(why));
    why = expect_bad("[1, 2, 3]", nullptr);
    QVERIFY2(why.isEmpty(), qPrintable(why));

    nlohmann::json j = nlohmann::json::parse(good);
    j["model"]["type"] = "WordPiece";
    why = expect_bad(j.dump(), "WordPiece");
    QVERIFY2(why.isEmpty(), qPrintable(why));
    j = nlohmann::json::parse(good);
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
    why = expect_bad(j.dump(), "Metaspace");
    QVERIFY2(why.isEmpty(), qPrintable(why));
    j = nlohmann::json::parse(good);
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
    why = expect_bad(j.dump(), "PCRE2");
    QVERIFY2(why.isEmpty(), qPrintable(why));
    j = nlohmann::json::parse(good);
    j["model"]["vocab"]["h"] = "not a number";
    why = expect_bad(j.dump(), nullptr);
    QVERIFY2(why.isEmpty(), qPrintable(why));
    j = nlohmann::json::parse(good);
    j["model"]["merges"][0] = 42;
    why = expect_bad(j.dump(), "merges");
    QVERIFY2(why.isEmpty(), qPrintable(why));
    j = nlohmann::json::parse(good);
    j["added_tokens"][0]["id"] = "zero";
    why = expect_bad(j.dump(), nullptr);
    QVERIFY2(why.isEmpty(), qPrintable(why));
  }
};

QTEST_APPLESS_MAIN(TstBpeTokenizer)
#include "tst_bpe_tokenizer.moc"
