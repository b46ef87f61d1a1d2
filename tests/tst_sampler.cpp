// The sampler: greedy, temperature, top-k, top-p, min-p, repetition penalty and seeds.
#include <QtTest>
#include <cmath>

#include "core/engine/sampler.h"

namespace {
const std::vector<float> kLogits = {1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f};

std::vector<int> histogram(folio::SamplerParams p, int draws, std::span<const int32_t> recent = {}) {
  folio::Sampler s(p);
  std::vector<int> h(kLogits.size());
  for (int i = 0; i < draws; ++i) h[static_cast<size_t>(s.sample(kLogits, recent))]++;
  return h;
}
}  // namespace

class SamplerTest : public QObject {
  Q_OBJECT

 private slots:
  void greedy_takes_argmax() {
    folio::Sampler s(folio::SamplerParams{});
    QCOMPARE(s.sample(kLogits, {}), 1);
  }

  void same_seed_same_draws() {
    folio::SamplerParams p;
    p.temperature = 1.0f;
    p.seed = 99;
    folio::Sampler a(p), b(p);
    for (int i = 0; i < 50; ++i) QCOMPARE(a.sample(kLogits, {}), b.sample(kLogits, {}));
  }

  void temperature_one_follows_softmax() {
    folio::SamplerParams p;
    p.temperature = 1.0f;
    p.seed = 1;
    const int draws = 20000;
    auto h = histogram(p, draws);
    double z = 0;
    for (float l : kLogits) z += std::exp(l);
    for (size_t i = 0; i < kLogits.size(); ++i) {
      const double want = std::exp(kLogits[i]) / z;
      QVERIFY2(std::abs(h[i] / double(draws) - want) < 0.015, qPrintable(QString("token %1").arg(i)));
    }
  }

  void top_k_keeps_only_k_best() {
    folio::SamplerParams p;
    p.temperature = 5.0f;  // flat: without top-k every token would appear
    p.top_k = 2;
    auto h = histogram(p, 2000);
    QVERIFY(h[1] > 0 && h[5] > 0);
    QCOMPARE(h[0] + h[2] + h[3] + h[4], 0);
  }

  void top_p_cuts_the_tail() {
    folio::SamplerParams p;
    p.temperature = 1.0f;
    p.top_p = 0.5f;  // p(1) ~ 0.35, p(5) ~ 0.32: the two reach 0.5
    auto h = histogram(p, 2000);
    QVERIFY(h[1] > 0 && h[5] > 0);
    QCOMPARE(h[0] + h[2] + h[3] + h[4], 0);
  }

  void min_p_drops_unlikely_tokens() {
    folio::SamplerParams p;
    p.temperature = 1.0f;
    p.min_p = 0.5f;  // keeps tokens with p >= 0.5 * p(1): ids 1, 5 and 2 (0.61)
    auto h = histogram(p, 3000);
    QVERIFY(h[1] > 0 && h[5] > 0 && h[2] > 0);
    QCOMPARE(h[0] + h[3] + h[4], 0);
  }

  void repetition_penalty_steers_away() {
    folio::SamplerParams p;
    p.repetition_penalty = 2.0f;
    folio::Sampler s(p);
    const std::vector<int32_t> recent = {1};
    QCOMPARE(s.sample(kLogits, recent), 5);  // 3.0 / 2 = 1.5 < 2.9
    const std::vector<int32_t> both = {1, 5};
    QCOMPARE(s.sample(kLogits, both), 2);
  }
};

QTEST_APPLESS_MAIN(SamplerTest)
#include "tst_sampler.moc"
