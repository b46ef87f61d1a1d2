#include "app/server/server_metrics.h"

#include <cstdio>

namespace folio::server {

namespace {

std::string number_text(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, const std::string& name, double value) {
  out += name + ' ' + number_text(value) + '\n';
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(const std::string& name, std::string& out) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + number_text(bounds_[i]) + "\"} " + std::to_string(cumulative) + '\n';
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + '\n';
  sample(out, name + "_sum", sum_);
  out += name + "_count " + std::to_string(count_) + '\n';
}

ServerMetrics::ServerMetrics()
    : ttft_seconds_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}),
      queue_seconds_({0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60}),
      decode_tok_s_({1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000}),
      prefill_tok_s_({10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000}) {}

void ServerMetrics::count_response(const std::string& endpoint, int status) {
  std::lock_guard lock(mutex_);
  ++responses_[{endpoint, status}];
}

void ServerMetrics::count_generation(const Metrics& m, double queue_ms) {
  std::lock_guard lock(mutex_);
  ++generations_;
  if (m.stop == StopReason::Cancelled) ++cancelled_;
  prompt_tokens_ += static_cast<uint64_t>(m.prompt_tokens);
  reused_tokens_ += static_cast<uint64_t>(m.reused_tokens);
  completion_tokens_ += static_cast<uint64_t>(m.decode_tokens);
  queue_seconds_.observe(queue_ms / 1000.0);
  if (m.decode_tokens > 0) ttft_seconds_.observe(m.ttft_ms / 1000.0);
  if (m.decode_tokens > 1 && m.decode_tok_s > 0) decode_tok_s_.observe(m.decode_tok_s);
  if (m.prefill_tokens > 0 && m.prefill_tok_s > 0) prefill_tok_s_.observe(m.prefill_tok_s);
  size_t kv = 0;
  for (const DeviceMemory& d : m.memory) kv += d.kv_bytes;
  kv_bytes_ = kv;
}

void ServerMetrics::set_queue_depth(int64_t waiting, int64_t running) {
  std::lock_guard lock(mutex_);
  waiting_ = waiting;
  running_ = running;
}

void ServerMetrics::set_kv_bytes(size_t bytes) {
  std::lock_guard lock(mutex_);
  kv_bytes_ = bytes;
}

std::string ServerMetrics::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  header(out, "folio_http_requests_total", "counter", "HTTP requests answered, by endpoint and status code.");
  for (const auto& [key, n] : responses_)
    out += "folio_http_requests_total{endpoint=\"" + key.first + "\",code=\"" + std::to_string(key.second) + "\"} " +
           std::to_string(n) + '\n';
  header(out, "folio_generations_total", "counter", "Generations run by the engine (including cancelled ones).");
  sample(out, "folio_generations_total", static_cast<double>(generations_));
  header(out, "folio_generations_cancelled_total", "counter", "Generations stopped because the client went away.");
  sample(out, "folio_generations_cancelled_total", static_cast<double>(cancelled_));
  header(out, "folio_prompt_tokens_total", "counter", "Prompt tokens of all generations.");
  sample(out, "folio_prompt_tokens_total", static_cast<double>(prompt_tokens_));
  header(out, "folio_prompt_tokens_reused_total", "counter", "Prompt tokens found in the KV cache (not prefilled).");
  sample(out, "folio_prompt_tokens_reused_total", static_cast<double>(reused_tokens_));
  header(out, "folio_completion_tokens_total", "counter", "Generated tokens.");
  sample(out, "folio_completion_tokens_total", static_cast<double>(completion_tokens_));
  header(out, "folio_ttft_seconds", "histogram", "Engine time to first token (prefill included, queue excluded).");
  ttft_seconds_.render("folio_ttft_seconds", out);
  header(out, "folio_queue_wait_seconds", "histogram", "Time a request waited in the queue before the engine ran it.");
  queue_seconds_.render("folio_queue_wait_seconds", out);
  header(out, "folio_decode_tokens_per_second", "histogram", "Decode rate of each generation (tokens/s).");
  decode_tok_s_.render("folio_decode_tokens_per_second", out);
  header(out, "folio_prefill_tokens_per_second", "histogram", "Prefill rate of each generation (tokens/s).");
  prefill_tok_s_.render("folio_prefill_tokens_per_second", out);
  header(out, "folio_kv_cache_bytes", "gauge", "Bytes of the live KV caches after the last generation.");
  sample(out, "folio_kv_cache_bytes", static_cast<double>(kv_bytes_));
  header(out, "folio_queue_depth", "gauge", "Requests waiting for the engine.");
  sample(out, "folio_queue_depth", static_cast<double>(waiting_));
  header(out, "folio_requests_running", "gauge", "Requests the engine is running (0 or 1).");
  sample(out, "folio_requests_running", static_cast<double>(running_));
  return out;
}

}  // namespace folio::server
