// The tokenizer layer: SentencePiece conformance on the Llama 2 vocabulary (llama.cpp's test
// vectors), the llama2.c tokenizer.bin of stories260K, streaming decode, special tokens, and
// clear errors for bad files.
#include <QTemporaryDir>
#include <algorithm>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/common/mapped_file.h"
#include "core/tokenizer/sentencepiece_tokenizer.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/test_support.h"
#include "tests/tokenizer_test_support.h"

using folio::Error;
using folio::ErrorCode;
using folio::test::shared_models;
using folio::test::source_dir;

namespace {

using folio::test::error_from;
using folio::test::is_valid_utf8;
using folio::test::read_vectors;
using folio::test::show;
using folio::test::stream_decode;
using folio::test::Vector;
using folio::test::write_file;

const std::vector<int32_t> kStoriesGreedyIds = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                                                395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292};
const std::string kStoriesText = "Once upon a time, there was a little girl named Lily. She loved to play outsid";

std::string llama2_model() { return shared_models() + "/llama2-tokenizer.model"; }
std::string tok512_in_repo() { return source_dir() + "/resources/models/stories260K/tok512.bin"; }


}  // namespace

class TstTokenizer : public QObject {
  Q_OBJECT

 private slots:
  void llama2_encodes_hello_world() {
    FOLIO_REQUIRE_FILE(llama2_model());
    const auto tok = folio::load_tokenizer(llama2_model());
    QCOMPARE(tok->encode("Hello world", false), (std::vector<int32_t>{15043, 3186}));
    QCOMPARE(tok->encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
    QCOMPARE(tok->vocab_size(), 32000);
    QCOMPARE(tok->bos_id(), 1);
    QCOMPARE(tok->eos_id(), 2);
    QVERIFY(tok->is_control(1) && tok->is_control(2) && !tok->is_control(15043));
    QCOMPARE(tok->piece(15043), std::string("\xE2\x96\x81Hello"));
    QCOMPARE(tok->piece(13), std::string("<0x0A>"));
    QCOMPARE(tok->piece_to_id("\xE2\x96\x81Hello"), std::optional<int32_t>(15043));
    QCOMPARE(tok->piece_to_id("no such piece"), std::optional<int32_t>());
    QCOMPARE(tok->decode(std::vector<int32_t>{1, 15043, 3186, 2}), std::string("Hello world"));
    QCOMPARE(tok->token_bytes(13, 15043), std::string("\n"));
    QCOMPARE(tok->token_bytes(3186, 15043), std::string(" world"));
    QCOMPARE(tok->token_bytes(15043, -1), std::string("Hello"));  // the dummy-prefix space goes
    QCOMPARE(tok->token_bytes(15043, 1), std::string("Hello"));
    QCOMPARE(tok->token_bytes(1, -1), std::string());
  }

  void llama2_matches_llama_cpp_test_vectors() {
    const std::string inp = shared_models() + "/vocab/ggml-vocab-llama-spm.gguf.inp";
    const std::string out = shared_models() + "/vocab/ggml-vocab-llama-spm.gguf.out";
    FOLIO_REQUIRE_FILE(llama2_model());
    FOLIO_REQUIRE_FILE(inp);
    FOLIO_REQUIRE_FILE(out);
    const auto tok = folio::load_tokenizer(llama2_model());
    const std::vector<Vector> vectors = read_vectors(inp, out);
    QCOMPARE(vectors.size(), size_t{46});
    QCOMPARE(vectors.front().text, std::string("ied 4 \xC2\xBD months"));
    for (size_t i = 0; i < vectors.size(); ++i) {
      const Vector& v = vectors[i];
      const std::vector<int32_t> ids = tok->encode(v.text, false);
      QVERIFY2(ids == v.ids, qPrintable(QString("vector %1 \"%2\": got %3, llama.cpp has %4")
                                            .arg(i).arg(show(v.text), show(ids), show(v.ids))));
      // With the identity normalizer SentencePiece round-trips every one of these inputs.
      const std::string text = tok->decode(ids);
      QVERIFY2(text == v.text, qPrintable(QString("vector %1 decodes to \"%2\"").arg(i).arg(show(text))));
      bool valid = false;
      QVERIFY2(stream_decode(*tok, ids, &valid) == text && valid,
               qPrintable(QString("vector %1: streamed text differs or is invalid UTF-8").arg(i)));
    }
  }

  void tok512_decodes_stories_greedy_ids() {
    FOLIO_REQUIRE_FILE(tok512_in_repo());
    const auto tok = folio::load_tokenizer(tok512_in_repo());
    QCOMPARE(tok->vocab_size(), 512);
    QCOMPARE(tok->bos_id(), 1);
    QCOMPARE(tok->eos_id(), 2);
    QCOMPARE(tok->piece(1), std::string("<s>"));
    QCOMPARE(tok->piece(2), std::string("</s>"));
    QCOMPARE(tok->piece(259), std::string("\xE2\x96\x81t"));  // llama2.c's " t" in SentencePiece form
    QCOMPARE(tok->token_bytes(3 + 0x0A, 259), std::string("\n"));

    std::vector<int32_t> ids = {1};
    ids.insert(ids.end(), kStoriesGreedyIds.begin(), kStoriesGreedyIds.end());
    QCOMPARE(tok->decode(ids), kStoriesText);
    bool valid = false;
    QCOMPARE(stream_decode(*tok, ids, &valid), kStoriesText);
    QVERIFY(valid);

    // SentencePiece's BPE gives back exactly the ids the model generated.
    QCOMPARE(tok->encode(kStoriesText, true), ids);
    QCOMPARE(tok->encode(kStoriesText, false), kStoriesGreedyIds);
    // Text outside the 512 pieces falls back to bytes and still round-trips.
    const std::string other = "Zürich 🦙 {x}";
    QCOMPARE(tok->decode(tok->encode(other, true)), other);
  }

  void tok512_shared_copy_matches_repo_copy() {
    FOLIO_REQUIRE_FILE(tok512_in_repo());
    FOLIO_REQUIRE_FILE(shared_models() + "/tok512.bin");
    const auto a = folio::load_tokenizer(tok512_in_repo());
    const auto b = folio::load_tokenizer(shared_models() + "/tok512.bin");
    QCOMPARE(a->encode(kStoriesText, true), b->encode(kStoriesText, true));
  }

  void stream_decoder_never_splits_a_character() {
    FOLIO_REQUIRE_FILE(llama2_model());
    const auto tok = folio::load_tokenizer(llama2_model());
    const std::string text = "\xC3\xA4\xE2\x82\xAC\xF0\x9F\xA6\x99";  // "ä€🦙"
    const std::vector<int32_t> ids = tok->encode(text, true);
    int byte_pieces = 0;
    for (int32_t id : ids) byte_pieces += tok->piece(id).starts_with("<0x") ? 1 : 0;
    QVERIFY2(byte_pieces >= 4, qPrintable(show(ids)));  // 🦙 has no piece: four byte tokens

    folio::StreamDecoder decoder(*tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string part = decoder.push(id);
      QVERIFY2(is_valid_utf8(part), qPrintable(QString("token %1 gave a partial character").arg(id)));
      streamed += part;
    }
    const std::string rest = decoder.flush();
    QVERIFY(rest.empty());
    QCOMPARE(streamed, tok->decode(ids));
    QCOMPARE(streamed, text);
  }

  void stream_decoder_replaces_invalid_bytes() {
    FOLIO_REQUIRE_FILE(llama2_model());
    const auto tok = folio::load_tokenizer(llama2_model());
    const int32_t f0 = *tok->piece_to_id("<0xF0>");
    const int32_t e2 = *tok->piece_to_id("<0xE2>");
    const int32_t x82 = *tok->piece_to_id("<0x82>");
    const std::string fffd = "\xEF\xBF\xBD";
    // A 4-byte lead followed by a word: the lead is held, then becomes U+FFFD.
    folio::StreamDecoder decoder(*tok);
    QCOMPARE(decoder.push(f0), std::string());
    QCOMPARE(decoder.push(15043), fffd + " Hello");
    QCOMPARE(decoder.flush(), std::string());
    // An incomplete sequence at the end comes out at flush().
    folio::StreamDecoder tail(*tok);
    QCOMPARE(tail.push(3186), std::string("world"));
    QCOMPARE(tail.push(e2), std::string());
    QCOMPARE(tail.push(x82), std::string());
    QCOMPARE(tail.flush(), fffd + fffd);
    const std::vector<int32_t> ids = {f0, 15043, 3186, e2, x82};
    bool valid = false;
    QCOMPARE(stream_decode(*tok, ids, &valid), tok->decode(ids));
    QVERIFY(valid);
  }

  void parse_special_matches_added_and_control_tokens() {
    FOLIO_REQUIRE_FILE(llama2_model());
    const auto tok = folio::load_sentencepiece_model(llama2_model());
    const std::vector<int32_t> user = tok->encode("user", false);
    const std::vector<int32_t> plain = tok->encode("<|im_start|>user", false);
    tok->add_special_token(32000, "<|im_start|>");
    tok->add_special_token(32001, "<|im");  // shorter overlapping token: the longest match wins
    QCOMPARE(tok->vocab_size(), 32002);
    QVERIFY(tok->is_control(32000));
    QCOMPARE(tok->piece(32000), std::string("<|im_start|>"));
    QCOMPARE(tok->piece_to_id("<|im_start|>"), std::optional<int32_t>(32000));

    std::vector<int32_t> expected = {32000};
    expected.insert(expected.end(), user.begin(), user.end());
    QCOMPARE(tok->encode("<|im_start|>user", false, true), expected);
    expected.insert(expected.begin(), 1);
    QCOMPARE(tok->encode("<|im_start|>user", true, true), expected);

    // Without parse_special the marker is ordinary text.
    const std::vector<int32_t> literal = tok->encode("<|im_start|>user", false, false);
    QCOMPARE(literal, plain);
    QVERIFY(std::find(literal.begin(), literal.end(), 32000) == literal.end());

    // The model's own control pieces match too, only with parse_special.
    const std::vector<int32_t> with_eos = tok->encode("Hello</s>", false, true);
    QCOMPARE(with_eos, (std::vector<int32_t>{15043, 2}));
    const std::vector<int32_t> no_eos = tok->encode("Hello</s>", false, false);
    QVERIFY(std::find(no_eos.begin(), no_eos.end(), 2) == no_eos.end());

    // Added tokens decode to their text; the model's control tokens to nothing.
    QCOMPARE(tok->decode(tok->encode("<|im_start|>user", true, true)), std::string("<|im_start|> user"));
    QCOMPARE(tok->decode(std::vector<int32_t>{1, 32000, 2}), std::string("<|im_start|>"));

    // Non-special added tokens are matched even without parse_special.
    tok->add_token(32002, "@@sep@@", false);
    const std::vector<int32_t> sep = tok->encode("a@@sep@@b", false, false);
    QVERIFY(std::find(sep.begin(), sep.end(), 32002) != sep.end());
    QVERIFY(!tok->is_control(32002));

    const auto dup = error_from([&] { tok->add_special_token(32005, "<|im_start|>"); });
    QVERIFY(dup && dup->code() == ErrorCode::BadArgument);
    const auto bad_id = error_from([&] { (void)tok->token_bytes(40000, -1); });
    QVERIFY(bad_id && bad_id->code() == ErrorCode::BadArgument);
  }

  void builder_makes_a_tokenizer_in_memory() {
    FOLIO_REQUIRE_FILE(tok512_in_repo());
    const std::string path = tok512_in_repo();
    folio::SpmModelBuilder builder = folio::llama2c_tokenizer_to_spm(folio::read_text_file(path), path);
    QCOMPARE(builder.pieces.size(), size_t{512});
    QCOMPARE(builder.pieces[3].type, folio::SpmModelBuilder::PieceType::Byte);
    // As a GGUF vocabulary would come: a chat marker appended as a control piece.
    builder.pieces.push_back({"<|end|>", 0.0f, folio::SpmModelBuilder::PieceType::Control});
    const auto tok = folio::make_sentencepiece_tokenizer_from_proto(builder.serialize(), "test vocabulary");
    QCOMPARE(tok->vocab_size(), 513);
    QVERIFY(tok->is_control(512));
    std::vector<int32_t> ids = tok->encode("Once upon<|end|>", true, true);
    QCOMPARE(ids.back(), 512);
    QCOMPARE(tok->decode(ids), std::string("Once upon"));

    folio::SpmModelBuilder twice = builder;
    twice.pieces[300].text = twice.pieces[301].text;
    const auto dup = error_from([&] { (void)twice.serialize("dup vocab"); });
    QVERIFY(dup && dup->code() == ErrorCode::BadTokenizer && QString(dup->what()).contains("dup vocab"));
    folio::SpmModelBuilder no_bytes = builder;
    no_bytes.pieces[10].type = folio::SpmModelBuilder::PieceType::Normal;
    QVERIFY(error_from([&] { (void)no_bytes.serialize(); }).has_value());
  }

  void bad_files_give_clear_errors() {
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string base = dir.path().toStdString();

    const std::string missing = base + "/no-such-tokenizer.model";
    auto e = error_from([&] { (void)folio::load_tokenizer(missing); });
    QVERIFY(e && e->code() == ErrorCode::FileNotFound);
    QVERIFY(QString(e->what()).contains(QString::fromStdString(missing)));

    e = error_from([&] { (void)folio::load_tokenizer(base); });
    QVERIFY(e && e->code() == ErrorCode::FileUnreadable && QString(e->what()).contains(dir.path()));

    const std::string empty = base + "/empty.bin";
    write_file(empty, "");
    e = error_from([&] { (void)folio::load_tokenizer(empty); });
    QVERIFY(e && e->code() == ErrorCode::BadTokenizer && QString(e->what()).contains(QString::fromStdString(empty)));

    FOLIO_REQUIRE_FILE(tok512_in_repo());
    const std::string tok512 = folio::read_text_file(tok512_in_repo());
    for (size_t cut : {size_t{2}, size_t{4}, size_t{10}, size_t{600}, size_t{3000}, tok512.size() - 1}) {
      const std::string truncated = base + "/truncated.bin";
      write_file(truncated, tok512.substr(0, cut));
      e = error_from([&] { (void)folio::load_tokenizer(truncated); });
      QVERIFY2(e && e->code() == ErrorCode::BadTokenizer, qPrintable(QString("cut at %1").arg(cut)));
      QVERIFY2(QString(e->what()).contains(QString::fromStdString(truncated)), e->what());
    }

    std::mt19937 rng(12345);
    for (int round = 0; round < 64; ++round) {
      std::string bytes(1 + rng() % 5000, '\0');
      for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
      if (round % 4 == 0) bytes[0] = 0x0A;  // looks like the start of a protobuf
      if (round % 4 == 1 && bytes.size() >= 4) bytes[1] = bytes[2] = bytes[3] = 0;  // and of a tokenizer.bin
      const std::string garbage = base + "/garbage.model";
      write_file(garbage, bytes);
      e = error_from([&] { (void)folio::load_tokenizer(garbage); });
      QVERIFY2(e && e->code() == ErrorCode::BadTokenizer, qPrintable(QString("round %1").arg(round)));
      QVERIFY2(QString(e->what()).contains(QString::fromStdString(garbage)), e->what());
    }

    if (folio::test::exists(llama2_model())) {
      const std::string model = folio::read_text_file(llama2_model());
      for (size_t cut : {size_t{1}, size_t{100}, model.size() / 2, model.size() - 3}) {
        const std::string truncated = base + "/truncated.model";
        write_file(truncated, model.substr(0, cut));
        e = error_from([&] { (void)folio::load_tokenizer(truncated); });
        QVERIFY2(e && e->code() == ErrorCode::BadTokenizer, qPrintable(QString("cut at %1").arg(cut)));
        QVERIFY2(QString(e->what()).contains(QString::fromStdString(truncated)), e->what());
      }
    }
  }
};

QTEST_APPLESS_MAIN(TstTokenizer)
#include "tst_tokenizer.moc"
