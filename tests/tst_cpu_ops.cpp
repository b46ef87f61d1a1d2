// Each CPU op against a plain double-precision version of its definition, on varied shapes:
// odd sizes, every stored dtype, head dims 64/80/96/128, GQA ratios 1/4/8, queries at an offset.
#include <QtTest>
#include <cmath>
#include <random>

#include "core/common/thread_pool.h"
#include "core/cpu/cpu_ops.h"
#include "core/model/tensor.h"

namespace {

std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double max_rel(const std::vector<float>& got, const std::vector<double>& want) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return diff / scale;
}

// Weights stored as `dtype`; `values` receives what they round to.
struct StoredMatrix {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
  folio::TensorView view;
};

StoredMatrix store(const std::vector<float>& src, int64_t rows, int64_t cols, folio::DType dtype) {
  StoredMatrix m;
  m.values = src;
  m.bytes.resize(src.size() * folio::dtype_size(dtype));
  for (size_t i = 0; i < src.size(); ++i) {
    if (dtype == folio::DType::F32) {
      std::memcpy(m.bytes.data() + 4 * i, &src[i], 4);
    } else {
      uint16_t h = dtype == folio::DType::BF16 ? folio::f32_to_bf16(src[i]) : folio::f32_to_f16(src[i]);
      std::memcpy(m.bytes.data() + 2 * i, &h, 2);
      m.values[i] = dtype == folio::DType::BF16 ? folio::bf16_to_f32(h) : folio::f16_to_f32(h);
    }
  }
  m.view = folio::TensorView{dtype, rows, cols, m.bytes.data()};
  return m;
}

}  // namespace

class CpuOpsTest : public QObject {
  Q_OBJECT
  folio::ThreadPool pool_{3};

 private slots:
  void half_conversions() {
    // exactly representable in f16: round trip is exact
    for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 0.00006103515625f, -1234.0f, 0.000000059604645f})
      QCOMPARE(folio::f16_to_f32(folio::f32_to_f16(f)), f);
    // others round to the nearest f16 (relative step 2^-11) and bf16 (2^-8)
    for (float f : {0.1f, 3.14159f, -1e-3f, 12345.678f}) {
      QVERIFY(std::abs(folio::f16_to_f32(folio::f32_to_f16(f)) - f) <= std::abs(f) * (1.0f / 2048));
      QVERIFY(std::abs(folio::bf16_to_f32(folio::f32_to_bf16(f)) - f) <= std::abs(f) * (1.0f / 256));
    }
    QVERIFY(std::isinf(folio::f16_to_f32(folio::f32_to_f16(1e6f))));
    QCOMPARE(folio::f16_to_f32(0x3c00), 1.0f);
    QCOMPARE(folio::f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  }

  void matmul_data() {
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("m");
    QTest::addColumn<int>("k");
    QTest::addColumn<int>("dtype");
    for (int dt = 0; dt < 3; ++dt)
      for (auto [n, m, k] : {std::tuple{1, 7, 13}, {2, 64, 172}, {3, 33, 64}, {5, 100, 96}, {17, 65, 81}, {64, 48, 200}})
        QTest::newRow(qPrintable(QString("%1x%2x%3 %4").arg(n).arg(m).arg(k).arg(folio::dtype_name(folio::DType(dt)))))
            << n << m << k << dt;
  }

  void matmul() {
    QFETCH(int, n);
    QFETCH(int, m);
    QFETCH(int, k);
    QFETCH(int, dtype);
    const auto x = random_vector(static_cast<size_t>(n * k), 1);
    const auto stored = store(random_vector(static_cast<size_t>(m * k), 2, 0.1f), m, k, folio::DType(dtype));
    const auto bias = random_vector(static_cast<size_t>(m), 3);
    for (bool with_bias : {false, true}) {
      std::vector<float> y(static_cast<size_t>(n * m), NAN);
      folio::cpu::matmul(pool_, x.data(), n, stored.view, with_bias ? bias.data() : nullptr, y.data());
      std::vector<double> want(y.size());
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) {
          double s = with_bias ? bias[static_cast<size_t>(j)] : 0.0;
          for (int p = 0; p < k; ++p)
            s += static_cast<double>(x[static_cast<size_t>(i * k + p)]) * stored.values[static_cast<size_t>(j * k + p)];
          want[static_cast<size_t>(i * m + j)] = s;
        }
      QVERIFY2(max_rel(y, want) < 1e-5, qPrintable(QString::number(max_rel(y, want))));
    }
  }

  void rmsnorm_and_elementwise() {
    const int rows = 3, dim = 37;
    const auto x = random_vector(rows * dim, 4);
    const auto w = random_vector(dim, 5);
    std::vector<float> y(rows * dim);
    folio::cpu::rmsnorm(x.data(), w.data(), rows, dim, 1e-5f, y.data());
    std::vector<double> want(y.size());
    for (int r = 0; r < rows; ++r) {
      double ss = 0;
      for (int i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
      const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
      for (int i = 0; i < dim; ++i) want[r * dim + i] = x[r * dim + i] * inv * w[i];
    }
    QVERIFY(max_rel(y, want) < 1e-6);

    std::vector<float> out(x.size());
    folio::cpu::swiglu(x.data(), w.data(), dim, out.data());
    for (int i = 0; i < dim; ++i) {
      const double g = x[i];
      QVERIFY(std::abs(out[i] - g / (1 + std::exp(-g)) * w[i]) < 1e-5);
    }
    auto a = x;
    folio::cpu::add_inplace(a.data(), x.data(), dim);
    for (int i = 0; i < dim; ++i) QCOMPARE(a[i], 2 * x[i]);
  }

  void rope_layouts() {
    const int heads = 3, hd = 8, n = 4;
    folio::RopeTable table;
    table.inv_freq = {1.0f, 0.1f, 0.01f, 0.001f};
    table.attention_scale = 1.5f;
    const std::vector<int32_t> pos = {0, 5, 17, 1000};
    for (auto layout : {folio::RopeLayout::RotateHalf, folio::RopeLayout::AdjacentPairs}) {
      auto x = random_vector(n * heads * hd, 6);
      auto y = x;
      folio::cpu::rope(y.data(), n, heads * hd, heads, hd, pos, table, layout);
      for (int t = 0; t < n; ++t)
        for (int h = 0; h < heads; ++h)
          for (int i = 0; i < hd / 2; ++i) {
            const int i0 = layout == folio::RopeLayout::RotateHalf ? i : 2 * i;
            const int i1 = layout == folio::RopeLayout::RotateHalf ? i + hd / 2 : 2 * i + 1;
            const double ang = double(pos[t]) * table.inv_freq[i];
            const double c = std::cos(ang) * 1.5, s = std::sin(ang) * 1.5;
            const double a = x[t * heads * hd + h * hd + i0], b = x[t * heads * hd + h * hd + i1];
            QVERIFY(std::abs(y[t * heads * hd + h * hd + i0] - (a * c - b * s)) < 1e-3);
            QVERIFY(std::abs(y[t * heads * hd + h * hd + i1] - (b * c + a * s)) < 1e-3);
          }
    }
  }

  void attention_data() {
    QTest::addColumn<int>("head_dim");
    QTest::addColumn<int>("n_heads");
    QTest::addColumn<int>("n_kv_heads");
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("pos0");
    for (int hd : {64, 80, 96, 128})
      for (auto [h, kv] : {std::pair{4, 4}, {8, 2}, {8, 1}})
        for (auto [n, pos0] : {std::pair{1, 0}, {1, 40}, {19, 0}, {33, 17}})
          QTest::newRow(qPrintable(QString("hd%1 h%2/kv%3 n%4 at %5").arg(hd).arg(h).arg(kv).arg(n).arg(pos0)))
              << hd << h << kv << n << pos0;
  }

  void attention() {
    QFETCH(int, head_dim);
    QFETCH(int, n_heads);
    QFETCH(int, n_kv_heads);
    QFETCH(int, n);
    QFETCH(int, pos0);
    const int64_t cap = pos0 + n + 3;  // cache longer than used: unused rows must not matter
    const auto q = random_vector(static_cast<size_t>(n * n_heads * head_dim), 7);
    auto k = random_vector(static_cast<size_t>(n_kv_heads * cap * head_dim), 8);
    const auto v = random_vector(static_cast<size_t>(n_kv_heads * cap * head_dim), 9);
    for (int g = 0; g < n_kv_heads; ++g)  // poison positions past the last query
      for (int64_t p = pos0 + n; p < cap; ++p) k[static_cast<size_t>((g * cap + p) * head_dim)] = NAN;
    std::vector<float> out(q.size(), NAN);
    folio::cpu::attention(pool_, q.data(), n, pos0, k.data(), v.data(), cap, n_heads, n_kv_heads, head_dim, out.data());
    std::vector<double> want(out.size());
    const int group = n_heads / n_kv_heads;
    for (int t = 0; t < n; ++t)
      for (int h = 0; h < n_heads; ++h) {
        const int g = h / group;
        const int visible = pos0 + t + 1;
        std::vector<double> s(static_cast<size_t>(visible));
        double mx = -1e300;
        for (int j = 0; j < visible; ++j) {
          double d = 0;
          for (int e = 0; e < head_dim; ++e)
            d += double(q[(t * n_heads + h) * head_dim + e]) * k[static_cast<size_t>((g * cap + j) * head_dim + e)];
          s[static_cast<size_t>(j)] = d / std::sqrt(double(head_dim));
          mx = std::max(mx, s[static_cast<size_t>(j)]);
        }
        double sum = 0;
        for (auto& x : s) sum += (x = std::exp(x - mx));
        for (int e = 0; e < head_dim; ++e) {
          double o = 0;
          for (int j = 0; j < visible; ++j) o += s[static_cast<size_t>(j)] * v[static_cast<size_t>((g * cap + j) * head_dim + e)];
          want[static_cast<size_t>((t * n_heads + h) * head_dim + e)] = o / sum;
        }
      }
    for (float x : out) QVERIFY(std::isfinite(x));
    QVERIFY2(max_rel(out, want) < 1e-5, qPrintable(QString::number(max_rel(out, want))));
  }

  void embedding_rows() {
    const auto stored = store(random_vector(10 * 6, 10), 10, 6, folio::DType::BF16);
    const std::vector<int32_t> ids = {9, 0, 3};
    std::vector<float> out(18);
    folio::cpu::embedding(stored.view, ids, out.data());
    for (size_t t = 0; t < ids.size(); ++t)
      for (int i = 0; i < 6; ++i) QCOMPARE(out[t * 6 + i], stored.values[static_cast<size_t>(ids[t] * 6 + i)]);
  }

  void thread_pool_covers_every_index_once() {
    for (int64_t n : {1, 2, 3, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool_.parallel_for(n, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      });
      for (auto& h : hits) QCOMPARE(h.load(), 1);
    }
  }
};

QTEST_APPLESS_MAIN(CpuOpsTest)
#include "tst_cpu_ops.moc"
