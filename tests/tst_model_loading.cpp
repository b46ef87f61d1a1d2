// Loading models through the public API (folio::load_model, folio::Engine::load,
// folio::parse_hf_config): the good files load with the right configuration, and every broken
// file (missing, truncated, bad header, bad config, wrong tensors, bad llama2.c header) is refused
// with the right folio::ErrorCode and a one-line message that names the file and the fault.
#include <QByteArray>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <cstdint>
#include <cstring>
#include <functional>
#include <typeinfo>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/engine/engine.h"
#include "core/model/model_loader.h"
#include "core/model/model_config.h"
#include "core/model/model_weights.h"
#include "tests/test_support.h"

using folio::Error;
using folio::ErrorCode;
using folio::test::shared_models;
using folio::test::source_dir;

namespace {

std::string stories_bin() { return source_dir() + "/resources/models/stories260K/stories260K.bin"; }
std::string fixture_dir(const std::string& name) { return source_dir() + "/tests/fixtures/hf/" + name; }
QString qs(const std::string& s) { return QString::fromStdString(s); }

QByteArray read_bytes(const std::string& path) {
  QFile f(qs(path));
  if (!f.open(QIODevice::ReadOnly)) return {};
  return f.readAll();
}

bool write_bytes(const std::string& path, const QByteArray& bytes) {
  QFile f(qs(path));
  if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate)) return false;
  return f.write(bytes) == bytes.size();
}

// Runs f and checks that it throws folio::Error with `code` and a message containing every phrase.
// Reports a test failure (and returns false) otherwise.
bool check_error(const std::function<void()>& f, ErrorCode code, const QStringList& phrases, const char* what,
                 const char* file, int line) {
  std::optional<Error> error;
  try {
    f();
  } catch (const Error& e) {
    error = e;
  } catch (const std::exception& e) {
    QTest::qFail(qPrintable(QString("%1 threw a %2 instead of folio::Error: %3")
                                .arg(what, typeid(e).name(), QString::fromUtf8(e.what()))),
                 file, line);
    return false;
  }
  if (!error) {
    QTest::qFail(qPrintable(QString("%1 did not throw (expected %2)").arg(what, folio::error_code_name(code))), file,
                 line);
    return false;
  }
  const QString message = QString::fromUtf8(error->what());
  if (error->code() != code) {
    QTest::qFail(qPrintable(QString("%1: error code %2, expected %3; message: %4")
                                .arg(what, folio::error_code_name(error->code()), folio::error_code_name(code),
                                     message)),
                 file, line);
    return false;
  }
  for (const QString& p : phrases) {
    if (!message.contains(p)) {
      QTest::qFail(qPrintable(QString("%1: message does not contain \"%2\": %3").arg(what, p, message)), file, line);
      return false;
    }
  }
  if (message.contains('\n')) {
    QTest::qFail(qPrintable(QString("%1: message is not one line: %2").arg(what, message)), file, line);
    return false;
  }
  return true;
}

// Like check_error, but any of the codes is right.
bool check_error_any(const std::function<void()>& f, std::vector<ErrorCode> codes, const QStringList& phrases,
                     const char* what, const char* file, int line) {
  ErrorCode got = codes.front();
  try {
    f();
  } catch (const Error& e) {
    got = e.code();
  } catch (...) {
  }
  for (ErrorCode c : codes)
    if (c == got) return check_error(f, c, phrases, what, file, line);
  return check_error(f, codes.front(), phrases, what, file, line);
}

}  // namespace

#define EXPECT_ERROR(expr, code, ...)                                                                      \
  do {                                                                                                     \
    if (!check_error([&] { (void)(expr); }, code, QStringList{__VA_ARGS__}, #expr, __FILE__, __LINE__)) \
      return;                                                                                              \
  } while (0)

namespace {

// ---------------------------------------------------------------------------------------------
// safetensors files made in the test

QByteArray le64(uint64_t v) {
  QByteArray b(8, '\0');
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return b;
}

QByteArray safetensors_raw(uint64_t header_len, const QByteArray& header_text, const QByteArray& data) {
  return le64(header_len) + header_text + data;
}

// The header padded with spaces to a multiple of 8 bytes, as the safetensors writers do (the
// tensor data then starts 8-byte aligned).
QByteArray safetensors_bytes(const QJsonObject& header, const QByteArray& data, bool pad = true) {
  QByteArray text = QJsonDocument(header).toJson(QJsonDocument::Compact);
  while (pad && text.size() % 8 != 0) text.append(' ');
  return safetensors_raw(static_cast<uint64_t>(text.size()), text, data);
}

struct Safetensors {
  QJsonObject header;
  QByteArray data;
};

std::optional<Safetensors> parse_safetensors(const QByteArray& bytes) {
  if (bytes.size() < 8) return std::nullopt;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  if (n > static_cast<uint64_t>(bytes.size() - 8)) return std::nullopt;
  QJsonDocument doc = QJsonDocument::fromJson(bytes.mid(8, static_cast<qsizetype>(n)));
  if (!doc.isObject()) return std::nullopt;
  return Safetensors{doc.object(), bytes.mid(8 + static_cast<qsizetype>(n))};
}

QJsonObject tensor_entry(const QString& dtype, const QList<qint64>& shape, qint64 begin, qint64 end) {
  QJsonArray s;
  for (qint64 d : shape) s.append(d);
  return QJsonObject{{"dtype", dtype}, {"shape", s}, {"data_offsets", QJsonArray{begin, end}}};
}

}  // namespace

class TestModelLoading : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir tmp_;

  // A copy of a fixture folder under the temporary dir; "" (and a failure) when it cannot be made.
  std::string copy_fixture(const std::string& fixture, const std::string& name) {
    const std::string dir = tmp_.path().toStdString() + "/" + name;
    if (!QDir().mkpath(qs(dir))) return "";
    for (const char* f : {"config.json", "model.safetensors"}) {
      QFile::remove(qs(dir + "/" + f));
      if (!QFile::copy(qs(fixture_dir(fixture) + "/" + f), qs(dir + "/" + f))) return "";
      QFile(qs(dir + "/" + f)).setPermissions(QFileDevice::ReadOwner | QFileDevice::WriteOwner);
    }
    return dir;
  }

  // A copy of llama_linear_tied whose model.safetensors is replaced by `bytes`.
  std::string model_with_safetensors(const std::string& name, const QByteArray& bytes) {
    const std::string dir = copy_fixture("llama_linear_tied", name);
    if (dir.empty() || !write_bytes(dir + "/model.safetensors", bytes)) return "";
    return dir;
  }

  // A copy of llama_linear_tied whose config.json is replaced by `text`.
  std::string model_with_config(const std::string& name, const QByteArray& text) {
    const std::string dir = copy_fixture("llama_linear_tied", name);
    if (dir.empty() || !write_bytes(dir + "/config.json", text)) return "";
    return dir;
  }

  static QJsonObject fixture_config() {
    return QJsonDocument::fromJson(read_bytes(fixture_dir("llama_linear_tied") + "/config.json")).object();
  }
  static std::optional<Safetensors> fixture_safetensors() {
    return parse_safetensors(read_bytes(fixture_dir("llama_linear_tied") + "/model.safetensors"));
  }

  // A llama2.c file: a seven-int32 header followed by `payload_bytes` bytes of zeros.
  std::string llama2c_file(const std::string& name, const std::vector<int32_t>& header, size_t payload_bytes) {
    QByteArray bytes(static_cast<qsizetype>(header.size() * 4), '\0');
    std::memcpy(bytes.data(), header.data(), header.size() * 4);
    bytes.append(QByteArray(static_cast<qsizetype>(payload_bytes), '\0'));
    const std::string path = tmp_.path().toStdString() + "/" + name;
    return write_bytes(path, bytes) ? path : "";
  }

 private slots:
  void initTestCase() {
    QVERIFY2(tmp_.isValid(), "cannot create a temporary folder");
    FOLIO_REQUIRE_FILE(fixture_dir("llama_linear_tied") + "/model.safetensors");
  }

  // --- missing files ----------------------------------------------------------------------------

  void missingFile() {
    const std::string path = tmp_.path().toStdString() + "/no-such-model.bin";
    EXPECT_ERROR(folio::load_model(path), ErrorCode::FileNotFound, qs(path));
    folio::EngineOptions o;
    o.model_path = path;
    EXPECT_ERROR(folio::Engine::load(o), ErrorCode::FileNotFound, qs(path));
  }

  void missingFolder() {
    const std::string path = tmp_.path().toStdString() + "/no-such-folder/model";
    EXPECT_ERROR(folio::load_model(path), ErrorCode::FileNotFound, qs(path));
    const std::string slash = tmp_.path().toStdString() + "/no-such-folder/";
    EXPECT_ERROR(folio::load_model(slash), ErrorCode::FileNotFound, qs(slash));
    const std::string st = tmp_.path().toStdString() + "/no-such-folder/model.safetensors";
    EXPECT_ERROR(folio::load_model(st), ErrorCode::FileNotFound, qs(st));
    folio::EngineOptions o;
    o.model_path = path;
    EXPECT_ERROR(folio::Engine::load(o), ErrorCode::FileNotFound, qs(path));
  }

  void folderWithoutConfig() {
    const std::string dir = tmp_.path().toStdString() + "/no-config";
    QVERIFY(QDir().mkpath(qs(dir)));
    QVERIFY(QFile::copy(qs(fixture_dir("llama_linear_tied") + "/model.safetensors"), qs(dir + "/model.safetensors")));
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::FileNotFound, "config.json", qs(dir));
    // The same through the .safetensors file inside the folder.
    EXPECT_ERROR(folio::load_model(dir + "/model.safetensors"), ErrorCode::FileNotFound, "config.json", qs(dir));
    // An empty folder.
    const std::string empty = tmp_.path().toStdString() + "/empty-folder";
    QVERIFY(QDir().mkpath(qs(empty)));
    EXPECT_ERROR(folio::load_model(empty), ErrorCode::FileNotFound, "config.json", qs(empty));
  }

  // --- safetensors ----------------------------------------------------------------------------

  void fixtureCopyLoads() {
    // The baseline for the broken copies below: an unchanged copy loads.
    const std::string dir = copy_fixture("llama_linear_tied", "good");
    QVERIFY(!dir.empty());
    auto model = folio::load_model(dir);
    QVERIFY(model != nullptr);
    QCOMPARE(model->format, folio::ModelFormat::Safetensors);
    QCOMPARE(model->config.hidden, 96);
    QCOMPARE(model->config.n_layers, 2);
    QCOMPARE(model->config.vocab_size, 256);
    QVERIFY(model->config.tied_embeddings);
    QCOMPARE(static_cast<int>(model->weights.layers.size()), 2);
    QCOMPARE(model->weights.output.data, model->weights.tok_embd.data);
    // A re-written copy (the header made by this test) loads too.
    auto st = fixture_safetensors();
    QVERIFY(st.has_value());
    const std::string dir2 = model_with_safetensors("good-rewritten", safetensors_bytes(st->header, st->data));
    QVERIFY(!dir2.empty());
    QVERIFY(folio::load_model(dir2) != nullptr);
    QVERIFY(folio::load_model(dir2 + "/model.safetensors") != nullptr);
  }

  void safetensorsUnpaddedHeader() {
    // A header whose length is odd: the tensor data is not aligned to its element size. The file
    // is either read correctly or refused with a clear message; never read through a misaligned
    // pointer (undefined behaviour, reported by UBSan).
    auto st = fixture_safetensors();
    QVERIFY(st.has_value());
    QByteArray text = QJsonDocument(st->header).toJson(QJsonDocument::Compact);
    if (text.size() % 2 == 0) text.append(' ');
    const std::string dir =
        model_with_safetensors("unpadded", safetensors_raw(static_cast<uint64_t>(text.size()), text, st->data));
    QVERIFY(!dir.empty());
    try {
      auto model = folio::load_model(dir);
      auto reference = folio::load_model(fixture_dir("llama_linear_tied"));
      QCOMPARE(model->weights.out_norm.cols, reference->weights.out_norm.cols);
      QVERIFY(std::memcmp(model->weights.out_norm.data, reference->weights.out_norm.data,
                          model->weights.out_norm.bytes()) == 0);
    } catch (const Error& e) {
      QCOMPARE(folio::error_code_name(e.code()), folio::error_code_name(ErrorCode::BadModelFile));
      QVERIFY2(QString(e.what()).contains(qs(dir + "/model.safetensors")), e.what());
    }
  }

  void safetensorsTruncated() {
    const QByteArray full = read_bytes(fixture_dir("llama_linear_tied") + "/model.safetensors");
    auto st = parse_safetensors(full);
    QVERIFY(st.has_value());
    const qsizetype data_start = full.size() - st->data.size();
    const std::string dir = model_with_safetensors("truncated", full.left(data_start + st->data.size() / 2));
    QVERIFY(!dir.empty());
    const std::string file = dir + "/model.safetensors";
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadModelFile, qs(file), "past the end");
    folio::EngineOptions o;
    o.model_path = dir;
    EXPECT_ERROR(folio::Engine::load(o), ErrorCode::BadModelFile, qs(file), "past the end");
    // Cut one byte short.
    const std::string dir2 = model_with_safetensors("truncated-1", full.left(full.size() - 1));
    EXPECT_ERROR(folio::load_model(dir2), ErrorCode::BadModelFile, qs(dir2 + "/model.safetensors"), "past the end");
    // Cut inside the header.
    const std::string dir3 = model_with_safetensors("truncated-header", full.left(100));
    EXPECT_ERROR(folio::load_model(dir3), ErrorCode::BadModelFile, qs(dir3 + "/model.safetensors"), "header");
    // Shorter than the 8-byte length.
    const std::string dir4 = model_with_safetensors("truncated-4", full.left(4));
    EXPECT_ERROR(folio::load_model(dir4), ErrorCode::BadModelFile, qs(dir4 + "/model.safetensors"), "too short");
    // Empty.
    const std::string dir5 = model_with_safetensors("empty-file", QByteArray());
    EXPECT_ERROR(folio::load_model(dir5), ErrorCode::BadModelFile, qs(dir5 + "/model.safetensors"), "too short");
  }

  void safetensorsOffsetsPastEnd() {
    auto st = fixture_safetensors();
    QVERIFY(st.has_value());
    const QString name = "model.layers.1.mlp.up_proj.weight";
    QJsonObject e = st->header[name].toObject();
    const qint64 bytes = e["data_offsets"].toArray()[1].toInteger() - e["data_offsets"].toArray()[0].toInteger();
    const qint64 begin = st->data.size() - bytes / 2;  // the second half lies past the end
    e["data_offsets"] = QJsonArray{begin, begin + bytes};
    st->header[name] = e;
    const std::string dir = model_with_safetensors("offsets-past-end", safetensors_bytes(st->header, st->data));
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadModelFile, qs(dir + "/model.safetensors"), name,
                 "past the end");
    // begin > end.
    e["data_offsets"] = QJsonArray{bytes, 0};
    st->header[name] = e;
    const std::string dir2 = model_with_safetensors("offsets-reversed", safetensors_bytes(st->header, st->data));
    EXPECT_ERROR(folio::load_model(dir2), ErrorCode::BadModelFile, qs(dir2 + "/model.safetensors"), name);
    // Offsets far beyond 2^63.
    QByteArray text = QString(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,16]}})").toUtf8();
    const std::string dir3 =
        model_with_safetensors("offsets-huge", safetensors_raw(static_cast<uint64_t>(text.size()), text, QByteArray(8, 0)));
    EXPECT_ERROR(folio::load_model(dir3), ErrorCode::BadModelFile, qs(dir3 + "/model.safetensors"), "\"a\"");
  }

  void safetensorsSizeDoesNotMatchShape() {
    QJsonObject header{{"a", tensor_entry("F32", {3}, 0, 8)}};
    const std::string dir = model_with_safetensors("size-vs-shape", safetensors_bytes(header, QByteArray(8, 0)));
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadModelFile, qs(dir + "/model.safetensors"), "\"a\"", "bytes");
    // A shape whose element count overflows.
    QJsonObject huge{{"a", tensor_entry("F32", {qint64{1} << 40, qint64{1} << 40}, 0, 8)}};
    const std::string dir2 = model_with_safetensors("shape-overflow", safetensors_bytes(huge, QByteArray(8, 0)));
    EXPECT_ERROR(folio::load_model(dir2), ErrorCode::BadModelFile, qs(dir2 + "/model.safetensors"), "\"a\"");
    // A negative dimension.
    QJsonObject negative{{"a", tensor_entry("F32", {-2}, 0, 8)}};
    const std::string dir3 = model_with_safetensors("shape-negative", safetensors_bytes(negative, QByteArray(8, 0)));
    EXPECT_ERROR(folio::load_model(dir3), ErrorCode::BadModelFile, qs(dir3 + "/model.safetensors"), "\"a\"", "shape");
  }

  void safetensorsOverlap() {
    QJsonObject header{{"a", tensor_entry("F32", {2}, 0, 8)}, {"b", tensor_entry("F32", {2}, 4, 12)}};
    const std::string dir = model_with_safetensors("overlap", safetensors_bytes(header, QByteArray(16, 0)));
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadModelFile, qs(dir + "/model.safetensors"), "overlap");
    // Two real tensors of the fixture pointing at the same bytes.
    auto st = fixture_safetensors();
    QVERIFY(st.has_value());
    QJsonObject k = st->header["model.layers.0.self_attn.k_proj.weight"].toObject();
    QJsonObject v = st->header["model.layers.0.self_attn.v_proj.weight"].toObject();
    v["data_offsets"] = k["data_offsets"];
    st->header["model.layers.0.self_attn.v_proj.weight"] = v;
    const std::string dir2 = model_with_safetensors("overlap-fixture", safetensors_bytes(st->header, st->data));
    EXPECT_ERROR(folio::load_model(dir2), ErrorCode::BadModelFile, qs(dir2 + "/model.safetensors"), "overlap");
  }

  void safetensorsHeaderLongerThanFile() {
    const QByteArray text = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    const std::string dir =
        model_with_safetensors("header-too-long", safetensors_raw(1000000, text, QByteArray(8, 0)));
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadModelFile, qs(dir + "/model.safetensors"), "header length",
                 "larger than the file");
    // A length near 2^64 (must not wrap around).
    const std::string dir2 = model_with_safetensors("header-len-max",
                                                    safetensors_raw(std::numeric_limits<uint64_t>::max() - 3, text,
                                                                    QByteArray(8, 0)));
    EXPECT_ERROR(folio::load_model(dir2), ErrorCode::BadModelFile, qs(dir2 + "/model.safetensors"), "header length");
  }

  void safetensorsHeaderNotJson() {
    const QByteArray text = "this is not JSON at all {{{";
    const std::string dir = model_with_safetensors("header-not-json", safetensors_raw(text.size(), text, QByteArray()));
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadModelFile, qs(dir + "/model.safetensors"), "JSON");
    // Valid JSON, but not an object.
    const QByteArray array = "[1, 2, 3]";
    const std::string dir2 = model_with_safetensors("header-array", safetensors_raw(array.size(), array, QByteArray()));
    EXPECT_ERROR(folio::load_model(dir2), ErrorCode::BadModelFile, qs(dir2 + "/model.safetensors"), "JSON object");
    // An entry without data_offsets.
    const QByteArray no_offsets = R"({"a":{"dtype":"F32","shape":[2]}})";
    const std::string dir3 =
        model_with_safetensors("header-no-offsets", safetensors_raw(no_offsets.size(), no_offsets, QByteArray(8, 0)));
    EXPECT_ERROR(folio::load_model(dir3), ErrorCode::BadModelFile, qs(dir3 + "/model.safetensors"), "data_offsets");
    // Deeply nested JSON (must not overflow the stack).
    const QByteArray deep = QByteArray(200000, '[') + QByteArray(200000, ']');
    const std::string dir4 = model_with_safetensors("header-deep", safetensors_raw(deep.size(), deep, QByteArray()));
    EXPECT_ERROR(folio::load_model(dir4), ErrorCode::BadModelFile, qs(dir4 + "/model.safetensors"));
  }

  void safetensorsUnsupportedDtype() {
    auto st = fixture_safetensors();
    QVERIFY(st.has_value());
    // An I8 tensor of the right byte size: the same bytes viewed as [2 * 192, 96] int8.
    const QString name = "model.layers.0.mlp.gate_proj.weight";
    QJsonObject e = st->header[name].toObject();
    e["dtype"] = "I8";
    e["shape"] = QJsonArray{2 * 192, 96};
    st->header[name] = e;
    const std::string dir = model_with_safetensors("dtype-i8", safetensors_bytes(st->header, st->data));
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::UnsupportedModel, qs(dir + "/model.safetensors"), name, "I8");
    // A dtype that is not a string: a damaged header, not an unknown type.
    QJsonObject bad{{"a", QJsonObject{{"dtype", 7}, {"shape", QJsonArray{2}}, {"data_offsets", QJsonArray{0, 8}}}}};
    const std::string dir2 = model_with_safetensors("dtype-number", safetensors_bytes(bad, QByteArray(8, 0)));
    EXPECT_ERROR(folio::load_model(dir2), ErrorCode::BadModelFile, qs(dir2 + "/model.safetensors"), "\"a\"", "dtype");
  }

  void safetensorsWrongShape() {
    auto st = fixture_safetensors();
    QVERIFY(st.has_value());
    // q_proj transposed: the same bytes, shape [96, 128] instead of [128, 96].
    const QString name = "model.layers.0.self_attn.q_proj.weight";
    QJsonObject e = st->header[name].toObject();
    e["shape"] = QJsonArray{96, 128};
    st->header[name] = e;
    const std::string dir = model_with_safetensors("wrong-shape", safetensors_bytes(st->header, st->data));
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadModelFile, qs(dir + "/model.safetensors"), name, "shape",
                 "[96, 128]", "[128, 96]");
    // A norm with a 2-D shape.
    auto st2 = fixture_safetensors();
    const QString norm = "model.norm.weight";
    QJsonObject n = st2->header[norm].toObject();
    n["shape"] = QJsonArray{2, 48};
    st2->header[norm] = n;
    const std::string dir2 = model_with_safetensors("wrong-shape-norm", safetensors_bytes(st2->header, st2->data));
    EXPECT_ERROR(folio::load_model(dir2), ErrorCode::BadModelFile, qs(dir2 + "/model.safetensors"), norm, "shape");
    // A config that does not match the weights (hidden_size changed).
    QJsonObject cfg = fixture_config();
    cfg["intermediate_size"] = 256;
    const std::string dir3 = model_with_config("config-mismatch", QJsonDocument(cfg).toJson());
    EXPECT_ERROR(folio::load_model(dir3), ErrorCode::BadModelFile, qs(dir3 + "/model.safetensors"), "mlp", "shape");
  }

  void safetensorsMissingTensor() {
    auto st = fixture_safetensors();
    QVERIFY(st.has_value());
    const QString name = "model.layers.1.mlp.down_proj.weight";
    st->header.remove(name);
    const std::string dir = model_with_safetensors("missing-tensor", safetensors_bytes(st->header, st->data));
    QVERIFY(!dir.empty());
    // The message names the tensor, says it is missing, and where it was looked for.
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadModelFile, name, "missing", qs(dir));
  }

  // --- config.json --------------------------------------------------------------------------------

  void configUnknownArchitecture() {
    QJsonObject cfg = fixture_config();
    cfg["architectures"] = QJsonArray{"GPT2LMHeadModel"};
    cfg["model_type"] = "gpt2";
    const QByteArray text = QJsonDocument(cfg).toJson();
    EXPECT_ERROR(folio::parse_hf_config(text.toStdString(), "some/config.json"), ErrorCode::UnsupportedModel,
                 "some/config.json", "GPT2LMHeadModel");
    const std::string dir = model_with_config("gpt2", text);
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::UnsupportedModel, qs(dir + "/config.json"), "GPT2LMHeadModel",
                 "unsupported");
    // Only model_type.
    cfg.remove("architectures");
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "c.json"),
                 ErrorCode::UnsupportedModel, "c.json", "gpt2");
    // Neither: not a model's config.
    cfg.remove("model_type");
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "c.json"), ErrorCode::BadConfig,
                 "c.json", "architectures");
  }

  void configMissingField() {
    QJsonObject cfg = fixture_config();
    cfg.remove("hidden_size");
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "x/config.json"),
                 ErrorCode::BadConfig, "x/config.json", "hidden_size", "missing");
    const std::string dir = model_with_config("no-hidden-size", QJsonDocument(cfg).toJson());
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadConfig, qs(dir + "/config.json"), "hidden_size", "missing");
    // A field of the wrong type.
    QJsonObject cfg2 = fixture_config();
    cfg2["num_hidden_layers"] = "two";
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg2).toJson().toStdString(), "x/config.json"),
                 ErrorCode::BadConfig, "x/config.json", "num_hidden_layers", "integer");
    // null counts as missing.
    QJsonObject cfg3 = fixture_config();
    cfg3["vocab_size"] = QJsonValue::Null;
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg3).toJson().toStdString(), "x/config.json"),
                 ErrorCode::BadConfig, "vocab_size", "missing");
  }

  void configHeadsDoNotDivide() {
    QJsonObject cfg = fixture_config();
    cfg.remove("head_dim");
    cfg["num_attention_heads"] = 3;
    cfg["num_key_value_heads"] = 2;
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "x/config.json"),
                 ErrorCode::BadConfig, "x/config.json", "num_attention_heads", "num_key_value_heads");
    const std::string dir = model_with_config("heads-3-2", QJsonDocument(cfg).toJson());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadConfig, qs(dir + "/config.json"), "num_key_value_heads");
    // Zero heads.
    cfg["num_attention_heads"] = 0;
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "x/config.json"),
                 ErrorCode::BadConfig, "num_attention_heads");
    // Zero kv heads.
    cfg["num_attention_heads"] = 2;
    cfg["num_key_value_heads"] = 0;
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "x/config.json"),
                 ErrorCode::BadConfig, "num_key_value_heads");
    // Negative sizes.
    QJsonObject neg = fixture_config();
    neg["intermediate_size"] = -192;
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(neg).toJson().toStdString(), "x/config.json"),
                 ErrorCode::BadConfig, "intermediate_size");
  }

  void configAbsurdHeadDim() {
    // head_dim so large that heads * head_dim does not fit in 32 bits: refused as a bad config
    // (not an integer overflow further on).
    QJsonObject cfg = fixture_config();
    cfg["head_dim"] = qint64{1} << 30;
    cfg["num_attention_heads"] = 4;
    cfg["num_key_value_heads"] = 4;
    const std::string dir = model_with_config("head-dim-absurd", QJsonDocument(cfg).toJson());
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadConfig, qs(dir + "/config.json"), "head_dim");
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "x/config.json"),
                 ErrorCode::BadConfig, "x/config.json", "head_dim");
  }

  void configNotJson() {
    EXPECT_ERROR(folio::parse_hf_config("{\"hidden_size\": 64,", "x/config.json"), ErrorCode::BadConfig,
                 "x/config.json", "JSON");
    EXPECT_ERROR(folio::parse_hf_config("[1, 2]", "x/config.json"), ErrorCode::BadConfig, "x/config.json",
                 "JSON object");
    EXPECT_ERROR(folio::parse_hf_config("", "x/config.json"), ErrorCode::BadConfig, "x/config.json", "JSON");
    const std::string dir = model_with_config("config-not-json", "not json\nat all\n");
    QVERIFY(!dir.empty());
    EXPECT_ERROR(folio::load_model(dir), ErrorCode::BadConfig, qs(dir + "/config.json"), "JSON");
    const std::string dir2 = model_with_config("config-binary", QByteArray("\x00\x01\x02\xff\xfe", 5));
    EXPECT_ERROR(folio::load_model(dir2), ErrorCode::BadConfig, qs(dir2 + "/config.json"), "JSON");
  }

  // --- rope settings in config.json ---------------------------------------------------------

  void ropeClassicLayout() {
    // transformers 4.x: rope_theta at the top level, rope_scaling beside it.
    QJsonObject cfg = fixture_config();
    cfg.remove("rope_parameters");
    cfg["rope_theta"] = 500000.0;
    cfg["rope_scaling"] = QJsonObject{{"type", "linear"}, {"factor", 2.0}};
    folio::ModelConfig c = folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "classic-linear");
    QCOMPARE(c.rope.scaling, folio::RopeScaling::Linear);
    QCOMPARE(c.rope.factor, 2.0);
    QCOMPARE(c.rope.theta, 500000.0);
    QCOMPARE(c.rope.layout, folio::RopeLayout::RotateHalf);
    QCOMPARE(c.rope.rotary_dim, 64);

    cfg["rope_scaling"] = QJsonObject{{"rope_type", "llama3"},
                                      {"factor", 8.0},
                                      {"low_freq_factor", 1.0},
                                      {"high_freq_factor", 4.0},
                                      {"original_max_position_embeddings", 8192}};
    c = folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "classic-llama3");
    QCOMPARE(c.rope.scaling, folio::RopeScaling::Llama3);
    QCOMPARE(c.rope.factor, 8.0);
    QCOMPARE(c.rope.theta, 500000.0);
    QCOMPARE(c.rope.low_freq_factor, 1.0);
    QCOMPARE(c.rope.high_freq_factor, 4.0);
    QCOMPARE(c.rope.original_context, int64_t{8192});

    // Llama 3.1 also writes both "type" and "rope_type".
    cfg["rope_scaling"] = QJsonObject{{"rope_type", "llama3"}, {"type", "llama3"}, {"factor", 8.0},
                                      {"original_max_position_embeddings", 8192}};
    c = folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "classic-llama3-both");
    QCOMPARE(c.rope.scaling, folio::RopeScaling::Llama3);

    // No scaling at all; rope_scaling null.
    cfg["rope_scaling"] = QJsonValue::Null;
    cfg["rope_theta"] = 1000000.0;
    c = folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "classic-none");
    QCOMPARE(c.rope.scaling, folio::RopeScaling::None);
    QCOMPARE(c.rope.theta, 1000000.0);
    cfg.remove("rope_theta");
    c = folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "classic-default");
    QCOMPARE(c.rope.theta, 10000.0);
  }

  void ropeBadSettings() {
    QJsonObject cfg = fixture_config();
    cfg.remove("rope_parameters");
    cfg["rope_scaling"] = QJsonObject{{"rope_type", "llama3"}, {"factor", 8.0}};
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "r.json"), ErrorCode::BadConfig,
                 "r.json", "original_max_position_embeddings");
    cfg["rope_scaling"] = QJsonObject{{"type", "dynamic"}, {"factor", 2.0}};
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "r.json"),
                 ErrorCode::UnsupportedModel, "r.json", "dynamic");
    cfg["rope_scaling"] = QJsonObject{{"type", "linear"}, {"factor", "two"}};
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "r.json"), ErrorCode::BadConfig,
                 "r.json", "factor");
    cfg.remove("rope_scaling");
    cfg["rope_theta"] = -5.0;
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "r.json"), ErrorCode::BadConfig,
                 "r.json", "rope_theta");
  }

  void ropeScalingFactorMustBePositive() {
    // A linear factor of 0 would divide every RoPE frequency by zero at run time.
    QJsonObject cfg = fixture_config();
    cfg.remove("rope_parameters");
    cfg["rope_scaling"] = QJsonObject{{"type", "linear"}, {"factor", 0.0}};
    EXPECT_ERROR(folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "r.json"), ErrorCode::BadConfig,
                 "r.json", "factor");
  }

  void ropeTransformers5Fixtures_data() {
    QTest::addColumn<QString>("fixture");
    QTest::addColumn<int>("scaling");
    QTest::addColumn<double>("theta");
    QTest::addColumn<double>("factor");
    QTest::addColumn<qint64>("original");
    QTest::newRow("llama3") << "llama3_scaled" << int(folio::RopeScaling::Llama3) << 500000.0 << 8.0 << qint64{32};
    QTest::newRow("linear") << "llama_linear_tied" << int(folio::RopeScaling::Linear) << 10000.0 << 2.0 << qint64{0};
    QTest::newRow("default") << "mistral_sharded" << int(folio::RopeScaling::None) << 1000000.0 << 1.0 << qint64{0};
    QTest::newRow("longrope") << "phi3_longrope" << int(folio::RopeScaling::LongRope) << 10000.0 << 4.0 << qint64{32};
    QTest::newRow("yarn") << "qwen2_yarn_tied" << int(folio::RopeScaling::Yarn) << 10000.0 << 4.0 << qint64{32};
  }

  void ropeTransformers5Fixtures() {
    QFETCH(QString, fixture);
    QFETCH(int, scaling);
    QFETCH(double, theta);
    QFETCH(double, factor);
    QFETCH(qint64, original);
    const std::string path = fixture_dir(fixture.toStdString()) + "/config.json";
    FOLIO_REQUIRE_FILE(path);
    folio::ModelConfig c = folio::parse_hf_config(read_bytes(path).toStdString(), path);
    QCOMPARE(int(c.rope.scaling), scaling);
    QCOMPARE(c.rope.theta, theta);
    QCOMPARE(c.rope.factor, factor);
    QCOMPARE(c.rope.original_context, original);
    if (c.rope.scaling == folio::RopeScaling::LongRope) {
      QCOMPARE(static_cast<int>(c.rope.short_factor.size()), c.rope.rotary_dim / 2);
      QCOMPARE(static_cast<int>(c.rope.long_factor.size()), c.rope.rotary_dim / 2);
    }
    // And the whole folder loads.
    auto model = folio::load_model(fixture_dir(fixture.toStdString()));
    QCOMPARE(int(model->config.rope.scaling), scaling);
    QCOMPARE(model->config.rope.theta, theta);
  }

  void ropeParametersWinOverClassic() {
    // A transformers 5 file: theta inside rope_parameters, no top-level rope_theta.
    QJsonObject cfg = fixture_config();
    cfg["rope_parameters"] = QJsonObject{{"rope_type", "default"}, {"rope_theta", 250000.0}};
    folio::ModelConfig c = folio::parse_hf_config(QJsonDocument(cfg).toJson().toStdString(), "t5");
    QCOMPARE(c.rope.scaling, folio::RopeScaling::None);
    QCOMPARE(c.rope.theta, 250000.0);
  }

  // --- llama2.c -----------------------------------------------------------------------------------

  void llama2cStoriesLoads() {
    FOLIO_REQUIRE_FILE(stories_bin());
    auto model = folio::load_model(stories_bin());
    QVERIFY(model != nullptr);
    const folio::ModelConfig& c = model->config;
    QCOMPARE(model->format, folio::ModelFormat::Llama2c);
    QCOMPARE(c.arch, folio::Architecture::Llama);
    QCOMPARE(c.hidden, 64);
    QCOMPARE(c.ffn_hidden, 172);
    QCOMPARE(c.n_layers, 5);
    QCOMPARE(c.n_heads, 8);
    QCOMPARE(c.n_kv_heads, 4);
    QCOMPARE(c.head_dim, 8);
    QCOMPARE(c.vocab_size, 512);
    QCOMPARE(c.max_context, int64_t{512});
    QVERIFY(c.tied_embeddings);
    QCOMPARE(c.rope.layout, folio::RopeLayout::AdjacentPairs);
    QCOMPARE(c.rope.scaling, folio::RopeScaling::None);
    QCOMPARE(c.rope.theta, 10000.0);
    QCOMPARE(c.rope.rotary_dim, 8);
    QCOMPARE(c.bos_id, 1);
    QCOMPARE(static_cast<int>(model->weights.layers.size()), 5);
    QCOMPARE(model->weights.output.data, model->weights.tok_embd.data);
    QVERIFY2(QString::fromStdString(model->tokenizer_path).endsWith("tok512.bin"), model->tokenizer_path.c_str());
    QCOMPARE(model->path, stories_bin());

    folio::EngineOptions o;
    o.model_path = stories_bin();
    auto engine = folio::Engine::load(o);
    QVERIFY(engine->has_tokenizer());
    QCOMPARE(engine->tokenizer().vocab_size(), 512);
    QCOMPARE(engine->config().vocab_size, 512);
  }

  void llama2cDamagedCopies_data() {
    QTest::addColumn<qint64>("delta");  // bytes added to (or, negative, cut from) a copy
    QTest::addColumn<QString>("phrase");
    QTest::newRow("cut 1 byte") << qint64{-1} << "truncated";
    QTest::newRow("cut 7 bytes") << qint64{-7} << "truncated";
    QTest::newRow("cut half") << qint64{-500000} << "truncated";
    QTest::newRow("1 extra byte") << qint64{1} << "bytes";
    QTest::newRow("5 extra bytes") << qint64{5} << "bytes";
    QTest::newRow("4096 extra bytes") << qint64{4096} << "bytes";
  }

  void llama2cDamagedCopies() {
    QFETCH(qint64, delta);
    QFETCH(QString, phrase);
    FOLIO_REQUIRE_FILE(stories_bin());
    QByteArray bytes = read_bytes(stories_bin());
    QVERIFY(bytes.size() > 1000000);
    if (delta < 0) bytes.truncate(bytes.size() + delta);
    else bytes.append(QByteArray(static_cast<qsizetype>(delta), '\x7f'));
    const std::string path = tmp_.path().toStdString() + "/damaged" + std::to_string(delta) + ".bin";
    QVERIFY(write_bytes(path, bytes));
    EXPECT_ERROR(folio::load_model(path), ErrorCode::BadModelFile, qs(path), phrase);
    folio::EngineOptions o;
    o.model_path = path;
    EXPECT_ERROR(folio::Engine::load(o), ErrorCode::BadModelFile, qs(path), phrase);
  }

  void llama2cTooShort() {
    for (int n : {0, 1, 20, 27}) {
      const std::string path = tmp_.path().toStdString() + "/short" + std::to_string(n) + ".bin";
      QVERIFY(write_bytes(path, QByteArray(n, '\x01')));
      EXPECT_ERROR(folio::load_model(path), ErrorCode::BadModelFile, qs(path), "too short");
    }
  }

  void llama2cBadHeader_data() {
    // dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab, seq_len
    QTest::addColumn<QList<int>>("header");
    QTest::addColumn<QString>("phrase");
    const int kMin = std::numeric_limits<int32_t>::min(), kMax = std::numeric_limits<int32_t>::max();
    QTest::newRow("n_heads 0") << QList<int>{64, 172, 5, 0, 4, 512, 512} << "num_attention_heads";
    QTest::newRow("n_heads -8") << QList<int>{64, 172, 5, -8, 4, 512, 512} << "num_attention_heads";
    QTest::newRow("n_kv_heads 0") << QList<int>{64, 172, 5, 8, 0, 512, 512} << "num_key_value_heads";
    QTest::newRow("kv heads do not divide") << QList<int>{64, 172, 5, 8, 3, 512, 512} << "num_key_value_heads";
    QTest::newRow("kv heads more than heads") << QList<int>{64, 172, 5, 8, 16, 512, 512} << "num_key_value_heads";
    QTest::newRow("dim -64") << QList<int>{-64, 172, 5, 8, 4, 512, 512} << "hidden_size";
    QTest::newRow("dim 0") << QList<int>{0, 172, 5, 8, 4, 512, 512} << "hidden_size";
    QTest::newRow("dim not divisible") << QList<int>{68, 172, 5, 8, 4, 512, 512} << "";
    QTest::newRow("more heads than dims") << QList<int>{64, 172, 5, 128, 4, 512, 512} << "head_dim";
    QTest::newRow("hidden_dim -1") << QList<int>{64, -1, 5, 8, 4, 512, 512} << "intermediate_size";
    QTest::newRow("layers 0") << QList<int>{64, 172, 0, 8, 4, 512, 512} << "num_hidden_layers";
    QTest::newRow("layers 1e9") << QList<int>{64, 172, 1000000000, 8, 4, 512, 512} << "";
    QTest::newRow("dim max") << QList<int>{kMax, 172, 5, 1, 1, 512, 512} << "";
    QTest::newRow("hidden_dim max") << QList<int>{64, kMax, 5, 8, 4, 512, 512} << "";
    QTest::newRow("vocab 0") << QList<int>{64, 172, 5, 8, 4, 0, 512} << "vocab_size";
    QTest::newRow("vocab max") << QList<int>{64, 172, 5, 8, 4, kMax, 512} << "";
    QTest::newRow("vocab -max") << QList<int>{64, 172, 5, 8, 4, -kMax, 512} << "";
    QTest::newRow("vocab min") << QList<int>{64, 172, 5, 8, 4, kMin, 512} << "";
    QTest::newRow("seq_len 0") << QList<int>{64, 172, 5, 8, 4, 512, 0} << "max_position_embeddings";
    QTest::newRow("seq_len -1") << QList<int>{64, 172, 5, 8, 4, 512, -1} << "max_position_embeddings";
    QTest::newRow("seq_len max") << QList<int>{64, 172, 5, 8, 4, 512, kMax} << "";
    QTest::newRow("all max") << QList<int>{kMax, kMax, kMax, kMax, kMax, kMax, kMax} << "";
    QTest::newRow("all min") << QList<int>{kMin, kMin, kMin, kMin, kMin, kMin, kMin} << "";
    QTest::newRow("text file") << QList<int>{0x636e6f4f, 0x70752065, 0x61206e6f, 0x6d697420, 0x74202c65, 0x65726568,
                                             0x73617720}
                               << "";
  }

  void llama2cBadHeader() {
    QFETCH(QList<int>, header);
    QFETCH(QString, phrase);
    std::vector<int32_t> h(header.begin(), header.end());
    const std::string path =
        llama2c_file("header-" + QString(QTest::currentDataTag()).replace(' ', '_').toStdString() + ".bin", h, 4096);
    QVERIFY(!path.empty());
    QStringList phrases{qs(path)};
    if (!phrase.isEmpty()) phrases << phrase;
    if (!check_error_any([&] { folio::load_model(path); }, {ErrorCode::BadConfig, ErrorCode::BadModelFile}, phrases,
                         "load_model", __FILE__, __LINE__))
      return;
    folio::EngineOptions o;
    o.model_path = path;
    check_error_any([&] { folio::Engine::load(o); }, {ErrorCode::BadConfig, ErrorCode::BadModelFile}, {qs(path)},
                    "Engine::load", __FILE__, __LINE__);
  }

  void llama2cHeaderOfStoriesWithShortData() {
    // The real header of stories260K, but only a few bytes of weights.
    FOLIO_REQUIRE_FILE(stories_bin());
    const std::string path = tmp_.path().toStdString() + "/header-only.bin";
    QVERIFY(write_bytes(path, read_bytes(stories_bin()).left(28 + 64)));
    EXPECT_ERROR(folio::load_model(path), ErrorCode::BadModelFile, qs(path), "truncated");
  }

  void gguf() {
    const std::string path = tmp_.path().toStdString() + "/model.gguf";
    QVERIFY(write_bytes(path, QByteArray("GGUF\x03\x00\x00\x00", 8)));
    // A GGUF header cut after its version: a damaged file, named, never a crash.
    EXPECT_ERROR(folio::load_model(path), ErrorCode::BadModelFile, qs(path), "GGUF");
  }

  // --- tokenizer against model --------------------------------------------------------------------

  void tokenizerLargerThanModel() {
    FOLIO_REQUIRE_FILE(stories_bin());
    const std::string tok = shared_models() + "/llama2-tokenizer.model";
    FOLIO_REQUIRE_FILE(tok);
    folio::EngineOptions o;
    o.model_path = stories_bin();
    o.tokenizer_path = tok;
    EXPECT_ERROR(folio::Engine::load(o), ErrorCode::BadTokenizer, qs(tok), "32000", "512");
  }

  void tokenizerMissing() {
    FOLIO_REQUIRE_FILE(stories_bin());
    const std::string tok = tmp_.path().toStdString() + "/no-such-tokenizer.model";
    folio::EngineOptions o;
    o.model_path = stories_bin();
    o.tokenizer_path = tok;
    EXPECT_ERROR(folio::Engine::load(o), ErrorCode::FileNotFound, qs(tok));
  }

  void engineWithoutModelPath() {
    folio::EngineOptions o;
    EXPECT_ERROR(folio::Engine::load(o), ErrorCode::BadArgument, "model");
  }
};

QTEST_APPLESS_MAIN(TestModelLoading)
#include "tst_model_loading.moc"
