// folio-server's counters for GET /metrics, in the Prometheus text format (version 0.0.4).
// Every figure comes from the engine's own Metrics of each request, the numbers folio-bench and
// the app's panel show. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/engine/engine.h"

namespace folio::server {

// A cumulative histogram with fixed upper bounds.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Appends _bucket{le=...}, _sum and _count lines for `name`.
  void render(const std::string& name, std::string& out) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative; the last one is +Inf
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();

  // One HTTP answer: endpoint path and status code.
  void count_response(const std::string& endpoint, int status);
  // One generation that ran (finished, stopped or cancelled).
  void count_generation(const Metrics& m, double queue_ms);
  void set_queue_depth(int64_t waiting, int64_t running);
  void set_kv_bytes(size_t bytes);

  std::string render() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> responses_;
  Histogram ttft_seconds_;
  Histogram queue_seconds_;
  Histogram decode_tok_s_;
  Histogram prefill_tok_s_;
  uint64_t prompt_tokens_ = 0, reused_tokens_ = 0, completion_tokens_ = 0;
  uint64_t generations_ = 0, cancelled_ = 0;
  int64_t waiting_ = 0, running_ = 0;
  size_t kv_bytes_ = 0;
};

}  // namespace folio::server
