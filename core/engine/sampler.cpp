#include "core/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

namespace folio {

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> recent) {
  const int32_t n = static_cast<int32_t>(logits.size());
  work_.assign(logits.begin(), logits.end());
  if (params_.repetition_penalty != 1.0f && params_.repetition_window > 0) {
    const size_t start = recent.size() > static_cast<size_t>(params_.repetition_window)
                             ? recent.size() - static_cast<size_t>(params_.repetition_window)
                             : 0;
    std::unordered_set<int32_t> seen(recent.begin() + static_cast<std::ptrdiff_t>(start), recent.end());
    for (int32_t t : seen) {
      if (t < 0 || t >= n) continue;
      float& l = work_[static_cast<size_t>(t)];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    }
  }
  if (params_.temperature <= 0.0f)
    return static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());

  order_.resize(static_cast<size_t>(n));
  std::iota(order_.begin(), order_.end(), 0);
  size_t keep = static_cast<size_t>(n);
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) keep = static_cast<size_t>(params_.top_k);
  auto by_logit = [&](int32_t a, int32_t b) {
    const float la = work_[static_cast<size_t>(a)], lb = work_[static_cast<size_t>(b)];
    return la > lb || (la == lb && a < b);
  };
  std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(keep), order_.end(), by_logit);
  order_.resize(keep);

  // softmax over the kept candidates at the temperature (sorted, so order_[0] is the max)
  std::vector<double> p(keep);
  const double mx = work_[static_cast<size_t>(order_[0])];
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    p[i] = std::exp((work_[static_cast<size_t>(order_[i])] - mx) / params_.temperature);
    sum += p[i];
  }
  for (auto& v : p) v /= sum;
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      cum += p[i];
      if (cum >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  if (params_.min_p > 0.0f) {
    const double floor = params_.min_p * p[0];
    size_t cut = 1;
    while (cut < keep && p[cut] >= floor) ++cut;
    keep = cut;
  }
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) total += p[i];
  std::uniform_real_distribution<double> dist(0.0, total);
  double r = dist(rng_);
  for (size_t i = 0; i < keep; ++i) {
    r -= p[i];
    if (r <= 0.0) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace folio
