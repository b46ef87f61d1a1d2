// GGUF block formats: dequantize_row against blocks built field by field in this test from the
// format definitions (ggml's layouts), quantize_row round trips, and cpu::matmul over quantized
// weights (integer kernels for every type) against the same product over the dequantized fp32
// matrix.
#include <QtTest>
#include <cmath>
#include <cstring>
#include <random>

#include "core/common/thread_pool.h"
#include "core/cpu/cpu_ops.h"
#include "core/model/quant.h"
#include "core/model/tensor.h"
#include "tests/test_support.h"

using folio::DType;

namespace {

void put_f16(uint8_t* p, float v) {
  const uint16_t h = folio::f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

float f16_round(float v) { return folio::f16_to_f32(folio::f32_to_f16(v)); }

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Dequantizes `cols` values stored at an odd address (fields must be read without alignment).
std::vector<float> dequant(DType t, const std::vector<uint8_t>& blocks, int64_t cols) {
  std::vector<uint8_t> shifted(blocks.size() + 1);
  std::memcpy(shifted.data() + 1, blocks.data(), blocks.size());
  std::vector<float> out(static_cast<size_t>(cols), NAN);
  folio::dequantize_row(t, shifted.data() + 1, out.data(), cols);
  return out;
}

// ---- Simple quantizers for the 32-value types (this test's own, round to nearest) ----

// Q8_0: d = max|x| / 127, q = round(x / d).
std::vector<uint8_t> quantize_q8_0(const std::vector<float>& x, std::vector<float>* expect, std::vector<float>* bound) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    uint8_t blk[34];
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[b * 32 + i]));
    const float d = amax / 127.0f;
    put_f16(blk, d);
    for (int i = 0; i < 32; ++i) {
      const int q = d > 0 ? static_cast<int>(std::lround(x[b * 32 + i] / d)) : 0;
      blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
      expect->push_back(f16_round(d) * static_cast<float>(q));
      bound->push_back(d * 0.5f + 127 * d / 2048);  // half a step + the f16 rounding of d
    }
    out.insert(out.end(), blk, blk + 34);
  }
  return out;
}

// Q4_0: d = max|x| / 7, q = round(x / d) + 8 in [0, 15]; value i of the block in the low nibble
// of byte i (i < 16) or the high nibble of byte i - 16.
std::vector<uint8_t> quantize_q4_0(const std::vector<float>& x, std::vector<float>* expect, std::vector<float>* bound) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    uint8_t blk[18] = {};
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[b * 32 + i]));
    const float d = amax / 7.0f;
    put_f16(blk, d);
    for (int i = 0; i < 32; ++i) {
      const int q = std::clamp(d > 0 ? static_cast<int>(std::lround(x[b * 32 + i] / d)) + 8 : 8, 0, 15);
      blk[2 + i % 16] |= static_cast<uint8_t>(i < 16 ? q : q << 4);
      expect->push_back(f16_round(d) * static_cast<float>(q - 8));
      bound->push_back(d * 0.5f + 8 * d / 2048);
    }
    out.insert(out.end(), blk, blk + 18);
  }
  return out;
}

// Q4_1: m = min(x), d = (max - min) / 15, q = round((x - m) / d); x ~ d * q + m.
std::vector<uint8_t> quantize_q4_1(const std::vector<float>& x, std::vector<float>* expect, std::vector<float>* bound) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    uint8_t blk[20] = {};
    float lo = x[b * 32], hi = x[b * 32];
    for (int i = 0; i < 32; ++i) {
      lo = std::min(lo, x[b * 32 + i]);
      hi = std::max(hi, x[b * 32 + i]);
    }
    const float d = (hi - lo) / 15.0f;
    put_f16(blk, d);
    put_f16(blk + 2, lo);
    for (int i = 0; i < 32; ++i) {
      const int q = std::clamp(d > 0 ? static_cast<int>(std::lround((x[b * 32 + i] - lo) / d)) : 0, 0, 15);
      blk[4 + i % 16] |= static_cast<uint8_t>(i < 16 ? q : q << 4);
      expect->push_back(f16_round(d) * static_cast<float>(q) + f16_round(lo));
      bound->push_back(d * 0.5f + 15 * d / 2048 + std::abs(lo) / 2048);  // the min is stored as f16 too
    }
    out.insert(out.end(), blk, blk + 20);
  }
  return out;
}

// ---- K-type blocks built field by field from chosen integer fields ----

// The 12 scale bytes of Q4_K/Q5_K from 8 six-bit scales and 8 six-bit mins: bytes 0-3 = low 6
// bits of scales 0-3 with the top 2 bits of scales 4-7 above them, bytes 4-7 the same for the
// mins, bytes 8-11 = low 4 bits of scale 4+j | low 4 bits of min 4+j << 4.
void pack_k_scales(const int sc[8], const int mn[8], uint8_t out[12]) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}

struct KBlock {
  std::vector<uint8_t> bytes;
  std::vector<float> expect;  // 256 values by the format's definition
};

// Q4_K / Q5_K (bits = 4 or 5): 8 sub-blocks of 32; value i is in sub-block j = i / 32; sub-blocks
// 2g and 2g+1 share the 32 bytes qs[32g..32g+32) (low / high nibble); Q5_K's fifth bit of value
// l of sub-block j is bit j of qh[l]. x = d * scale_j * q - dmin * min_j.
KBlock make_q45_k(int bits, float d, float dmin, std::mt19937& rng) {
  std::uniform_int_distribution<int> six(0, 63), quant(0, (1 << bits) - 1);
  int sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = six(rng);
    mn[j] = six(rng);
  }
  sc[0] = 63, mn[7] = 63, sc[5] = 0;  // extremes of the 6-bit fields
  KBlock k;
  const size_t size = bits == 4 ? 144 : 176;
  k.bytes.assign(size, 0);
  put_f16(k.bytes.data(), d);
  put_f16(k.bytes.data() + 2, dmin);
  pack_k_scales(sc, mn, k.bytes.data() + 4);
  uint8_t* qh = k.bytes.data() + 16;
  uint8_t* qs = k.bytes.data() + (bits == 4 ? 16 : 48);
  for (int i = 0; i < 256; ++i) {
    const int j = i / 32, l = i % 32, g = j / 2;
    const int q = quant(rng);
    qs[32 * g + l] |= static_cast<uint8_t>((j % 2 == 0) ? (q & 15) : (q & 15) << 4);
    if (bits == 5) qh[l] |= static_cast<uint8_t>(((q >> 4) & 1) << j);
    k.expect.push_back(f16_round(d) * static_cast<float>(sc[j]) * static_cast<float>(q) -
                       f16_round(dmin) * static_cast<float>(mn[j]));
  }
  return k;
}

// Q6_K: 16 int8 scales, one per 16 values; value i of half h = i / 128, quarter c = (i % 128) / 32,
// l = i % 32 has its low 4 bits in ql[64h + l + 32 (c odd)] (low nibble for c < 2, else high),
// its high 2 bits at bits 2c of qh[32h + l], scale scales[8h + 2c + l / 16]; x = d * scale * (q - 32).
KBlock make_q6_k(float d, std::mt19937& rng) {
  std::uniform_int_distribution<int> quant(0, 63), scale(-128, 127);
  int8_t sc[16];
  for (auto& s : sc) s = static_cast<int8_t>(scale(rng));
  sc[3] = -128, sc[12] = 127;
  KBlock k;
  k.bytes.assign(210, 0);
  uint8_t* ql = k.bytes.data();
  uint8_t* qh = k.bytes.data() + 128;
  std::memcpy(k.bytes.data() + 192, sc, 16);
  put_f16(k.bytes.data() + 208, d);
  for (int i = 0; i < 256; ++i) {
    const int h = i / 128, c = (i % 128) / 32, l = i % 32;
    const int q = i == 0 ? 0 : i == 1 ? 63 : quant(rng);
    uint8_t& low = ql[64 * h + l + (c % 2) * 32];
    low |= static_cast<uint8_t>(c < 2 ? (q & 15) : (q & 15) << 4);
    qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * c));
    k.expect.push_back(f16_round(d) * static_cast<float>(sc[8 * h + 2 * c + l / 16]) * static_cast<float>(q - 32));
  }
  return k;
}

// A random matrix of `type` whose scales are sane (random bytes elsewhere).
std::vector<uint8_t> random_matrix(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.002f, 0.02f);
  const size_t bb = folio::block_bytes(type);
  const int64_t blocks = rows * cols / folio::block_elements(type);
  std::vector<uint8_t> out(static_cast<size_t>(blocks) * bb);
  for (auto& b : out) b = static_cast<uint8_t>(byte(rng));
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* p = out.data() + static_cast<size_t>(b) * bb;
    switch (type) {
      case DType::Q8_0:
      case DType::Q4_0: put_f16(p, scale(rng)); break;
      case DType::Q4_1: put_f16(p, scale(rng)); put_f16(p + 2, -8 * scale(rng)); break;
      case DType::Q4_K:
      case DType::Q5_K: put_f16(p, scale(rng) * 0.1f); put_f16(p + 2, scale(rng) * 0.1f); break;
      case DType::Q6_K: put_f16(p + 208, scale(rng) * 0.02f); break;
      default: break;
    }
  }
  return out;
}

double max_rel(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return diff / scale;
}

// What the integer kernels see of an activation block: d = max|x| / 127, q = round-half-even(x * 127 / max|x|).
std::vector<float> quantize_activations_8bit(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[b * 32 + i]));
    const float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
    for (int i = 0; i < 32; ++i) out[b * 32 + i] = d * std::nearbyint(x[b * 32 + i] * id);
  }
  return out;
}

const DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

}  // namespace

class QuantTest : public QObject {
  Q_OBJECT
  folio::ThreadPool pool_{3};

 private slots:
  // FP8 E4M3 (the 8-bit KV cache's element type) against ml_dtypes' float8_e4m3fn: every code's
  // value, and the code of every midpoint between neighbours (ties to even), a float32 step either
  // side, 3,000 random values and the saturating ends (tests/data/e4m3-reference.tsv).
  void e4m3_matches_ml_dtypes() {
    const std::string path = folio::test::source_dir() + "/tests/data/e4m3-reference.tsv";
    QFile f(QString::fromStdString(path));
    QVERIFY2(f.open(QIODevice::ReadOnly), qPrintable(QString::fromStdString(path)));
    int codes = 0, rounds = 0;
    auto as_float = [](uint32_t b) {
      float x;
      std::memcpy(&x, &b, 4);
      return x;
    };
    while (!f.atEnd()) {
      const QList<QByteArray> cols = f.readLine().trimmed().split('\t');
      if (cols.size() != 3 || cols[0].startsWith('#')) continue;
      bool ok1 = false, ok2 = false;
      if (cols[0] == "code") {
        const auto code = static_cast<uint8_t>(cols[1].toUInt(&ok1, 16));
        const float want = as_float(cols[2].toUInt(&ok2, 16));
        QVERIFY(ok1 && ok2);
        const float got = folio::e4m3_to_f32(code);
        if (std::isnan(want)) QVERIFY(std::isnan(got));
        else QVERIFY2(got == want && std::signbit(got) == std::signbit(want), qPrintable(QString("code %1").arg(code)));
        if (!std::isnan(want)) QCOMPARE(folio::f32_to_e4m3(want), code);  // every finite value is exact
        ++codes;
      } else if (cols[0] == "round") {
        const float x = as_float(cols[1].toUInt(&ok1, 16));
        const auto want = static_cast<uint8_t>(cols[2].toUInt(&ok2, 16));
        QVERIFY(ok1 && ok2);
        const uint8_t got = folio::f32_to_e4m3(x);
        if (got != want) QFAIL(qPrintable(QString("%1 rounds to %2, want %3").arg(double(x), 0, 'g', 9).arg(got, 2, 16).arg(want, 2, 16)));
        ++rounds;
      }
    }
    QCOMPARE(codes, 256);
    QVERIFY(rounds > 3000);
  }

  // One K or V row of a head: codes and one scale (amax / 448); every value within half an E4M3
  // step of itself (relative 2^-4, or 2^-10 of the scale where it falls among the subnormals); a
  // rounded row rounds to itself; a row of zeros stays zeros.
  void kv_rows_in_fp8() {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int trial = 0; trial < 50; ++trial) {
      const int n = trial % 2 == 0 ? 128 : 64;
      std::vector<float> x(static_cast<size_t>(n));
      const float spread = std::exp2(static_cast<float>(trial % 20 - 10));
      for (auto& v : x) v = nd(rng) * spread;
      x[static_cast<size_t>(trial) % x.size()] *= 40.0f;  // an outlier sets the scale
      std::vector<uint8_t> codes(x.size());
      const float scale = folio::quantize_kv_row_fp8(x.data(), n, codes.data());
      float amax = 0.0f;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      QCOMPARE(scale, amax / 448.0f);
      std::vector<float> y(x.size());
      folio::dequantize_kv_row_fp8(codes.data(), n, scale, y.data());
      for (size_t i = 0; i < x.size(); ++i)
        QVERIFY(std::fabs(y[i] - x[i]) <= std::max(std::fabs(x[i]) * 0.0625f, scale * std::exp2(-10.0f)) * 1.0001f);
      std::vector<float> z = x;
      folio::round_kv_row_fp8(z.data(), n);
      QCOMPARE(z, y);
      folio::round_kv_row_fp8(z.data(), n);
      QCOMPARE(z, y);
    }
    std::vector<float> zeros(128, 0.0f);
    std::vector<uint8_t> codes(128, 0xAA);
    QCOMPARE(folio::quantize_kv_row_fp8(zeros.data(), 128, codes.data()), 0.0f);
    QVERIFY(std::all_of(codes.begin(), codes.end(), [](uint8_t c) { return c == 0; }));
  }

  // Q8 rows: blocks of 32 (a short last block), fp16 scale amax / 127, every value within half a
  // step of itself; a rounded row rounds to itself.
  void kv_rows_in_q8() {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int n : {8, 64, 80, 128}) {
      std::vector<float> x(static_cast<size_t>(n));
      for (auto& v : x) v = nd(rng);
      x[3] = 25.0f;
      std::vector<float> y = x;
      folio::round_kv_row_q8(y.data(), n);
      for (int b = 0; b < n; b += 32) {
        float amax = 0.0f;
        for (int i = b; i < std::min(n, b + 32); ++i) amax = std::max(amax, std::fabs(x[static_cast<size_t>(i)]));
        const float d = folio::f16_to_f32(folio::f32_to_f16(amax / 127.0f));
        for (int i = b; i < std::min(n, b + 32); ++i) {
          const float q = y[static_cast<size_t>(i)] / d;
          QVERIFY(std::fabs(q - std::round(q)) < 1e-3f && std::fabs(q) <= 127.0f);
          QVERIFY(std::fabs(y[static_cast<size_t>(i)] - x[static_cast<size_t>(i)]) <= d * 0.5001f + 1e-6f);
        }
      }
      std::vector<float> z = y;
      folio::round_kv_row_q8(z.data(), n);
      for (size_t i = 0; i < z.size(); ++i) QVERIFY(std::fabs(z[i] - y[i]) <= 1e-6f * std::fabs(y[i]) + 1e-9f);
      folio::round_kv_row(folio::KvQuant::None, x.data(), n);  // native: untouched
    }
  }

  void block_sizes() {
    QCOMPARE(folio::block_bytes(DType::Q8_0), size_t{34});
    QCOMPARE(folio::block_bytes(DType::Q4_0), size_t{18});
    QCOMPARE(folio::block_bytes(DType::Q4_1), size_t{20});
    QCOMPARE(folio::block_bytes(DType::Q4_K), size_t{144});
    QCOMPARE(folio::block_bytes(DType::Q5_K), size_t{176});
    QCOMPARE(folio::block_bytes(DType::Q6_K), size_t{210});
    QCOMPARE(folio::row_bytes(DType::Q4_K, 512), size_t{288});
  }

  void simple_types_data() {
    QTest::addColumn<int>("type");
    for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) QTest::newRow(folio::dtype_name(t)) << static_cast<int>(t);
  }

  // Known blocks: the stored fields give exactly d * q (+ m), and quantizing random values with
  // this test's quantizer round-trips within half a step (plus the f16 rounding of the scales).
  void simple_types() {
    QFETCH(int, type);
    const DType t = static_cast<DType>(type);
    auto x = random_floats(32 * 12, 11);
    for (int i = 0; i < 32; ++i) x[64 + i] = 0.0f;  // an all-zero block (d = 0)
    x[100] = 40.0f;                                  // a block with an outlier
    std::vector<float> expect, error_bound;
    const auto blocks = t == DType::Q8_0 ? quantize_q8_0(x, &expect, &error_bound)
                        : t == DType::Q4_0 ? quantize_q4_0(x, &expect, &error_bound)
                                           : quantize_q4_1(x, &expect, &error_bound);
    QCOMPARE(blocks.size(), 12 * folio::block_bytes(t));
    const auto got = dequant(t, blocks, static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      QCOMPARE(got[i], expect[i]);
      const float bound = error_bound[i] * 1.01f + 1e-6f;
      QVERIFY2(std::abs(got[i] - x[i]) <= bound,
               qPrintable(QString("value %1: %2 vs %3 (bound %4)").arg(i).arg(got[i]).arg(x[i]).arg(bound)));
    }
    for (int i = 64; i < 96; ++i) QCOMPARE(got[static_cast<size_t>(i)], 0.0f);
  }

  void hand_built_simple_blocks() {
    // Q8_0: d = 0.5, q = -128, -1, 0, 1, 127, ...
    uint8_t q8[34] = {};
    put_f16(q8, 0.5f);
    const int8_t vals[5] = {-128, -1, 0, 1, 127};
    for (int i = 0; i < 32; ++i) q8[2 + i] = static_cast<uint8_t>(vals[i % 5]);
    auto y = dequant(DType::Q8_0, std::vector<uint8_t>(q8, q8 + 34), 32);
    for (int i = 0; i < 32; ++i) QCOMPARE(y[static_cast<size_t>(i)], 0.5f * vals[i % 5]);
    // Q4_0: d = 0.25, byte i = (15 - i%16) << 4 | i%16: value i = 0.25 * (i - 8), value i + 16 = 0.25 * (7 - i)
    uint8_t q4[18] = {};
    put_f16(q4, 0.25f);
    for (int i = 0; i < 16; ++i) q4[2 + i] = static_cast<uint8_t>(((15 - i) << 4) | i);
    y = dequant(DType::Q4_0, std::vector<uint8_t>(q4, q4 + 18), 32);
    for (int i = 0; i < 16; ++i) {
      QCOMPARE(y[static_cast<size_t>(i)], 0.25f * static_cast<float>(i - 8));
      QCOMPARE(y[static_cast<size_t>(i + 16)], 0.25f * static_cast<float>(7 - i));
    }
    // Q4_1: d = 2, m = -3: value = 2 q - 3
    uint8_t q41[20] = {};
    put_f16(q41, 2.0f);
    put_f16(q41 + 2, -3.0f);
    for (int i = 0; i < 16; ++i) q41[4 + i] = static_cast<uint8_t>(((15 - i) << 4) | i);
    y = dequant(DType::Q4_1, std::vector<uint8_t>(q41, q41 + 20), 32);
    for (int i = 0; i < 16; ++i) {
      QCOMPARE(y[static_cast<size_t>(i)], 2.0f * static_cast<float>(i) - 3.0f);
      QCOMPARE(y[static_cast<size_t>(i + 16)], 2.0f * static_cast<float>(15 - i) - 3.0f);
    }
  }

  void k_types_data() {
    QTest::addColumn<int>("type");
    QTest::addColumn<float>("d");
    QTest::addColumn<float>("dmin");
    for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      // dyadic scales: every product is exact, so any evaluation order gives the same floats
      QTest::newRow(qPrintable(QString("%1 dyadic").arg(folio::dtype_name(t)))) << static_cast<int>(t) << 0.01171875f
                                                                               << 0.0078125f;
      // arbitrary f16 scales
      QTest::newRow(qPrintable(QString("%1 f16").arg(folio::dtype_name(t)))) << static_cast<int>(t) << 0.0123f << 0.00377f;
    }
  }

  void k_types() {
    QFETCH(int, type);
    QFETCH(float, d);
    QFETCH(float, dmin);
    const DType t = static_cast<DType>(type);
    std::mt19937 rng(static_cast<uint32_t>(type) * 7 + 1);
    std::vector<uint8_t> bytes;
    std::vector<float> expect;
    for (int b = 0; b < 3; ++b) {  // three blocks in a row: block offsets matter
      KBlock k = t == DType::Q6_K ? make_q6_k(d * static_cast<float>(b + 1), rng)
                                  : make_q45_k(t == DType::Q4_K ? 4 : 5, d * static_cast<float>(b + 1), dmin, rng);
      QCOMPARE(k.bytes.size(), folio::block_bytes(t));
      bytes.insert(bytes.end(), k.bytes.begin(), k.bytes.end());
      expect.insert(expect.end(), k.expect.begin(), k.expect.end());
    }
    const auto got = dequant(t, bytes, 768);
    const bool dyadic = d == 0.01171875f;
    for (size_t i = 0; i < expect.size(); ++i) {
      if (dyadic) {
        QVERIFY2(got[i] == expect[i], qPrintable(QString("value %1: %2, want %3").arg(i).arg(got[i]).arg(expect[i])));
      } else {
        QVERIFY2(std::abs(got[i] - expect[i]) <= 1e-6f * (1.0f + std::abs(expect[i])),
                 qPrintable(QString("value %1: %2, want %3").arg(i).arg(got[i]).arg(expect[i])));
      }
    }
  }

  // row_to_f32 on a quantized view goes through dequantize_row, row by row.
  void row_to_f32_rows() {
    const auto bytes = random_matrix(DType::Q6_K, 3, 512, 5);
    folio::TensorView v{DType::Q6_K, 3, 512, bytes.data()};
    for (int r = 0; r < 3; ++r) {
      std::vector<float> a(512), b(512);
      folio::row_to_f32(v, r, a.data());
      folio::dequantize_row(DType::Q6_K, bytes.data() + r * folio::row_bytes(DType::Q6_K, 512), b.data(), 512);
      QCOMPARE(a, b);
    }
  }

  // quantize_row (the quantizers of random models and benchmarks) round-trips through
  // dequantize_row with the error of its grid: a step of about range / levels per block (Q6_K:
  // 2 max|x| / 63 per 16 values), rms error step / sqrt(12), plus the rounding of the block
  // scales to f16 and of the K types' sub-block scales to 6 or 8 bits. On normal values that is
  // 0.4% (Q8_0), 2% (Q6_K), 4% (Q5_K), 8-9% (Q4_*) of the values' rms; the bounds below are
  // those with a margin of 1.5x. A block of zeros stays zero.
  void quantize_round_trip_data() {
    QTest::addColumn<int>("type");
    QTest::addColumn<double>("bound");
    const std::pair<DType, double> bounds[] = {{DType::Q8_0, 0.006}, {DType::Q4_0, 0.15}, {DType::Q4_1, 0.13},
                                               {DType::Q4_K, 0.13},  {DType::Q5_K, 0.065}, {DType::Q6_K, 0.03}};
    for (auto [t, b] : bounds) QTest::newRow(folio::dtype_name(t)) << static_cast<int>(t) << b;
  }

  void quantize_round_trip() {
    QFETCH(int, type);
    QFETCH(double, bound);
    const DType t = static_cast<DType>(type);
    const int64_t cols = 256 * 6;
    auto x = random_floats(static_cast<size_t>(cols), 21, 0.02f);
    for (int i = 256; i < 512; ++i) x[static_cast<size_t>(i)] = 0.0f;  // a zero super-block
    std::vector<uint8_t> bytes(folio::row_bytes(t, cols));
    folio::quantize_row(t, x.data(), bytes.data(), cols);
    const auto y = dequant(t, bytes, cols);
    double d2 = 0, x2 = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      d2 += (y[i] - x[i]) * (y[i] - x[i]);
      x2 += x[i] * x[i];
    }
    const double rel = std::sqrt(d2 / x2);
    QVERIFY2(rel < bound, qPrintable(QString("%1: rms error %2 of the values' rms (bound %3)")
                                         .arg(folio::dtype_name(t)).arg(rel).arg(bound)));
    for (int i = 256; i < 512; ++i) QCOMPARE(y[static_cast<size_t>(i)], 0.0f);
  }

  void matmul_data() {
    QTest::addColumn<int>("type");
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("m");
    QTest::addColumn<int>("k");
    // n: one token (decode), tiles of 4 tokens with every remainder (prefill); m: odd counts and
    // fewer rows than a tile; k: 1, 2, 3 and 9 super-blocks of 256
    for (DType t : kTypes) {
      for (int n : {1, 2, 3, 6, 17, 64})
        for (auto [m, k] : {std::pair{37, 256}, {64, 512}, {19, 768}})
          QTest::newRow(qPrintable(QString("%1 n%2 %3x%4").arg(folio::dtype_name(t)).arg(n).arg(m).arg(k)))
              << static_cast<int>(t) << n << m << k;
      for (int n : {1, 5})
        for (auto [m, k] : {std::pair{1, 256}, {3, 2304}})
          QTest::newRow(qPrintable(QString("%1 n%2 %3x%4").arg(folio::dtype_name(t)).arg(n).arg(m).arg(k)))
              << static_cast<int>(t) << n << m << k;
    }
  }

  // cpu::matmul with quantized weights against the double-precision product with the
  // dequantized matrix, with and without bias. Every type runs an integer kernel: the
  // activations are rounded to 8 bits per block of 32 (step d = max|x| / 127), as llama.cpp does
  // (its K-quant kernels round to one scale per 256, coarser).
  //  * Against the product with those rounded activations the error is < 1e-5 of the largest
  //    output (the integer arithmetic is exact; only the fp32 sums round): the kernels compute
  //    exactly what they claim, block layouts and scales included.
  //  * Against the fp32 activations, output j moves by sum_p w[j][p] e[p], e[p] the rounding
  //    error of activation p, uniform in +-d/2 of its block: a spread of
  //    sigma_j = sqrt(sum_p w[j][p]^2 d_p^2 / 12). Every output must be within 6 sigma_j (plus
  //    the fp32 sums), and over 200 or more outputs the rms of error / sigma must be < 1.2
  //    (about 1 expected). On normal activations that is 0.5-0.8% rms of the outputs.
  void matmul() {
    QFETCH(int, type);
    QFETCH(int, n);
    QFETCH(int, m);
    QFETCH(int, k);
    check_matmul(static_cast<DType>(type), n, m, k, static_cast<uint32_t>(type * 100 + n));
  }

  // Many rows, one and two tokens: every row is written, on the calling thread (small
  // matmuls) and split over the pool (above 2^20 multiply-adds).
  void matmul_many_rows() {
    for (DType t : kTypes)
      for (int n : {1, 2})
        for (int m : {1001, 4099}) check_matmul(t, n, m, 256, 9);
  }

  // Weights made by quantize_row from normal values (realistic blocks, unlike random bytes), and
  // an activation block of zeros (its scale is 0): the same bounds.
  void matmul_quantized_normal_weights() {
    for (DType t : kTypes)
      for (int n : {1, 7}) check_matmul(t, n, 29, 512, 31, /*from_normal=*/true);
  }

 private:
  void check_matmul(DType t, int n, int m, int k, uint32_t seed, bool from_normal = false) {
    std::vector<uint8_t> bytes;
    if (from_normal) {
      const auto values = random_floats(static_cast<size_t>(m * k), seed + 3, 0.02f);
      const size_t rb = folio::row_bytes(t, k);
      bytes.resize(rb * static_cast<size_t>(m));
      for (int r = 0; r < m; ++r) folio::quantize_row(t, values.data() + r * k, bytes.data() + r * rb, k);
    } else {
      bytes = random_matrix(t, m, k, seed);
    }
    // the view starts at an odd address, as tensors in a file may
    std::vector<uint8_t> shifted(bytes.size() + 1);
    std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
    const folio::TensorView w{t, m, k, shifted.data() + 1};
    std::vector<float> wf(static_cast<size_t>(m * k));
    for (int r = 0; r < m; ++r) folio::row_to_f32(w, r, wf.data() + r * k);
    auto x = random_floats(static_cast<size_t>(n * k), seed + 1);
    if (from_normal)
      for (int i = 32; i < 64; ++i) x[static_cast<size_t>(i)] = 0.0f;
    const auto bias = random_floats(static_cast<size_t>(m), seed + 2);
    const auto xq = quantize_activations_8bit(x);
    auto reference = [&](const std::vector<float>& xs, bool with_bias) {
      std::vector<double> want(static_cast<size_t>(n * m));
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) {
          double s = with_bias ? bias[static_cast<size_t>(j)] : 0.0;
          for (int p = 0; p < k; ++p) s += double(xs[static_cast<size_t>(i * k + p)]) * wf[static_cast<size_t>(j * k + p)];
          want[static_cast<size_t>(i * m + j)] = s;
        }
      return want;
    };
    // the spread that rounding the activations gives each output (see matmul())
    std::vector<double> sigma2(static_cast<size_t>(n * m), 0.0);
    for (int i = 0; i < n; ++i)
      for (int b = 0; b < k / 32; ++b) {
        double amax = 0;
        for (int p = 32 * b; p < 32 * b + 32; ++p)
          amax = std::max(amax, double(std::abs(x[static_cast<size_t>(i * k + p)])));
        const double var = (amax / 127) * (amax / 127) / 12;
        for (int j = 0; j < m; ++j) {
          double w2 = 0;
          for (int p = 32 * b; p < 32 * b + 32; ++p) {
            const double wv = wf[static_cast<size_t>(j * k + p)];
            w2 += wv * wv;
          }
          sigma2[static_cast<size_t>(i * m + j)] += w2 * var;
        }
      }
    const QString where = QString("%1 n%2 %3x%4").arg(folio::dtype_name(t)).arg(n).arg(m).arg(k);
    for (bool with_bias : {false, true}) {
      std::vector<float> y(static_cast<size_t>(n * m), NAN);
      folio::cpu::matmul(pool_, x.data(), n, w, with_bias ? bias.data() : nullptr, y.data());
      const auto want = reference(x, with_bias);
      const double err_q = max_rel(y, reference(xq, with_bias));
      QVERIFY2(err_q < 1e-5, qPrintable(where + QString(": vs 8-bit activations %1").arg(err_q)));
      double z2 = 0, worst_z = 0;
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) {
          const size_t o = static_cast<size_t>(i * m + j);
          const double sigma = std::sqrt(sigma2[o]);
          const double err = std::abs(y[o] - want[o]);
          QVERIFY2(err <= 6 * sigma + 1e-5 * std::abs(want[o]) + 1e-6,
                   qPrintable(where +
                              QString(": output %1,%2 off by %3, %4 sigma").arg(i).arg(j).arg(err).arg(err / sigma)));
          z2 += sigma > 0 ? err * err / sigma2[o] : 0.0;
          worst_z = std::max(worst_z, sigma > 0 ? err / sigma : 0.0);
        }
      const double rms_z = std::sqrt(z2 / static_cast<double>(n * m));
      if (n * m >= 200)
        QVERIFY2(rms_z < 1.2, qPrintable(where + QString(": rms error %1 sigma (max %2)").arg(rms_z).arg(worst_z)));
    }
  }
};

QTEST_APPLESS_MAIN(QuantTest)
#include "tst_quant.moc"
