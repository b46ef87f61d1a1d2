#include "app/server/generation_queue.h"

#include <algorithm>

#include "app/server/server_metrics.h"

namespace folio::server {

namespace {
constexpr size_t kMinReusedTokens = 32;
}  // namespace

Job::Update Job::take(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !pending_.empty() || done_; });
  Update u;
  u.text.swap(pending_);
  u.started = started_;
  u.done = done_;
  return u;
}

void Job::wait_done() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return done_; });
}

void Job::mark_started(double queue_ms) {
  std::lock_guard lock(mutex_);
  started_ = true;
  queue_ms_ = queue_ms;
}

void Job::push_text(std::string_view text) {
  if (text.empty()) return;
  {
    std::lock_guard lock(mutex_);
    pending_.append(text);
  }
  cv_.notify_all();
}

void Job::finish(RequestResult result) {
  {
    std::lock_guard lock(mutex_);
    result_ = std::move(result);
    done_ = true;
  }
  cv_.notify_all();
}

void Job::fail(ErrorCode code, std::string message) {
  {
    std::lock_guard lock(mutex_);
    error_code_ = code;
    error_ = std::move(message);
    done_ = true;
  }
  cv_.notify_all();
}

GenerationQueue::GenerationQueue(Engine& engine, const QueueOptions& options, ServerMetrics& metrics)
    : engine_(engine), options_(options), metrics_(metrics), worker_([this] { work(); }) {
  // The first KV cache is made now, so a context that does not fit (a GPU's memory plan) stops the
  // server at start with the backend's message, not at the first request.
  try {
    SessionOptions so;
    so.context_tokens = options_.context_tokens;
    so.attention = options_.attention;
    sessions_.push_back(engine_.create_session(so));
    last_used_.push_back(0);
  } catch (...) {
    shutdown();
    worker_.join();
    throw;
  }
}

GenerationQueue::~GenerationQueue() {
  shutdown();
  if (worker_.joinable()) worker_.join();
}

bool GenerationQueue::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard lock(mutex_);
    // An idle engine takes a job even with max_waiting 0: the bound is on jobs that would wait.
    const bool idle = running_ == nullptr && waiting_.empty();
    if (stopping_ || (!idle && static_cast<int>(waiting_.size()) >= options_.max_waiting)) return false;
    job->enqueued_ = std::chrono::steady_clock::now();
    waiting_.push_back(job);
  }
  publish_depth();
  cv_.notify_all();
  return true;
}

int64_t GenerationQueue::waiting() const {
  std::lock_guard lock(mutex_);
  return static_cast<int64_t>(waiting_.size());
}

bool GenerationQueue::running() const {
  std::lock_guard lock(mutex_);
  return running_ != nullptr;
}

void GenerationQueue::shutdown() {
  std::deque<std::shared_ptr<Job>> dropped;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    dropped.swap(waiting_);
    if (running_) running_->cancel.cancel();
  }
  cv_.notify_all();
  for (auto& job : dropped) job->fail(ErrorCode::Cancelled, "the server is shutting down");
}

void GenerationQueue::publish_depth() {
  std::lock_guard lock(mutex_);
  metrics_.set_queue_depth(static_cast<int64_t>(waiting_.size()), running_ ? 1 : 0);
}

void GenerationQueue::work() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !waiting_.empty(); });
      if (stopping_) return;
      job = std::move(waiting_.front());
      waiting_.pop_front();
      running_ = job;
    }
    publish_depth();
    run_job(*job);
    {
      std::lock_guard lock(mutex_);
      running_.reset();
    }
    publish_depth();
  }
}

Session& GenerationQueue::session_for(const std::vector<int32_t>& prompt, size_t& common_tokens) {
  // The session whose cache the prompt extends loses nothing; else a new session while there is a
  // free slot; else the one sharing the longest prefix, the least recently used on a tie.
  size_t best = sessions_.size();
  size_t best_common = 0;
  bool best_extends = false;
  for (size_t i = 0; i < sessions_.size(); ++i) {
    const std::vector<int32_t>& cached = sessions_[i]->tokens();
    const size_t limit = std::min(cached.size(), prompt.size());
    size_t common = 0;
    while (common < limit && cached[common] == prompt[common]) ++common;
    const bool better =
        best == sessions_.size() || common > best_common || (common == best_common && last_used_[i] < last_used_[best]);
    if (better) {
      best = i;
      best_common = common;
      best_extends = common == cached.size();
    }
  }
  const bool free_slot = static_cast<int>(sessions_.size()) < std::max(1, options_.kv_slots);
  if (best == sessions_.size() || (!best_extends && free_slot)) {
    SessionOptions so;
    so.context_tokens = options_.context_tokens;
    so.attention = options_.attention;
    sessions_.push_back(engine_.create_session(so));
    last_used_.push_back(0);
    best = sessions_.size() - 1;
    best_common = 0;
  }
  common_tokens = best_common;
  last_used_[best] = ++use_clock_;
  return *sessions_[best];
}

void GenerationQueue::run_job(Job& job) {
  const double queue_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - job.enqueued_).count();
  if (job.cancel.cancelled()) {
    // The client left while it waited: nothing runs.
    RequestResult r;
    r.metrics.stop = StopReason::Cancelled;
    r.metrics.prompt_tokens = static_cast<int64_t>(job.prompt.size());
    metrics_.count_generation(r.metrics, queue_ms);
    job.finish(std::move(r));
    return;
  }
  job.mark_started(queue_ms);
  Session* session = nullptr;
  try {
    size_t common = 0;
    session = &session_for(job.prompt, common);
    RequestOptions ro;
    // A prefix as short as a chat template's header saves nothing, and prefilling from a different
    // position can change the last bits of the logits (and so a near-tie in greedy decoding): such a
    // request is prefilled whole, as folio-cli would.
    ro.keep_prefix = common >= kMinReusedTokens;
    ro.prefill.cancel = &job.cancel;
    ro.generate = job.generate;
    ro.generate.cancel = &job.cancel;
    ro.generate.on_token = [&job](int32_t, std::string_view text) { job.push_text(text); };
    RequestResult r = session->run(job.prompt, ro);
    metrics_.count_generation(r.metrics, queue_ms);
    job.finish(std::move(r));
  } catch (const Error& e) {
    // A failed request may leave its cache half written: that session starts afresh.
    for (auto& s : sessions_)
      if (s.get() == session) s->clear();
    job.fail(e.code(), e.what());
  } catch (const std::exception& e) {
    for (auto& s : sessions_)
      if (s.get() == session) s->clear();
    job.fail(ErrorCode::Internal, e.what());
  }
}

}  // namespace folio::server
