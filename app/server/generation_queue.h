// One engine, many HTTP clients: requests wait in a bounded first-in-first-out queue and one
// worker thread runs them in order. The worker keeps a few sessions (KV caches) and gives each
// request the one whose cached tokens share the longest prefix with its prompt, so questions
// about the same long document reuse its prefill (Session::run with keep_prefix).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/engine/engine.h"

namespace folio::server {

class ServerMetrics;

// One request, shared by the HTTP thread that waits on it and the engine's worker.
class Job {
 public:
  std::vector<int32_t> prompt;
  GenerateOptions generate;  // on_token and cancel are set by the queue
  CancelToken cancel;        // set by the HTTP side when the client goes away

  // What the HTTP side sees: text generated since the last take, and whether the job is over.
  struct Update {
    std::string text;
    bool started = false;  // the engine has begun (prefill)
    bool done = false;
  };
  // Waits up to `timeout` for text or the end; returns at once when either is there.
  Update take(std::chrono::milliseconds timeout);
  // Waits for the end (non-streaming requests).
  void wait_done();

  // After done: the result (metrics, text) or the error message.
  const RequestResult& result() const { return result_; }
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }
  ErrorCode error_code() const { return error_code_; }
  double queue_ms() const { return queue_ms_; }

 private:
  friend class GenerationQueue;
  void mark_started(double queue_ms);
  void push_text(std::string_view text);
  void finish(RequestResult result);
  void fail(ErrorCode code, std::string message);

  std::mutex mutex_;
  std::condition_variable cv_;
  std::string pending_;
  bool started_ = false;
  bool done_ = false;
  RequestResult result_;
  std::string error_;
  ErrorCode error_code_ = ErrorCode::Internal;
  double queue_ms_ = 0.0;
  std::chrono::steady_clock::time_point enqueued_;
};

struct QueueOptions {
  int max_waiting = 16;        // requests that may wait besides the one running
  int64_t context_tokens = 0;  // every session's context
  int kv_slots = 1;            // sessions kept (each a KV cache of context_tokens)
  sparse::AttentionMode attention = sparse::AttentionMode::Auto;
};

class GenerationQueue {
 public:
  GenerationQueue(Engine& engine, const QueueOptions& options, ServerMetrics& metrics);
  // Cancels what is running and waiting and joins the worker.
  ~GenerationQueue();
  GenerationQueue(const GenerationQueue&) = delete;
  GenerationQueue& operator=(const GenerationQueue&) = delete;

  // Queues a job; false when max_waiting jobs already wait (the caller answers 503).
  bool submit(const std::shared_ptr<Job>& job);
  int64_t waiting() const;
  bool running() const;
  // Stops taking jobs; cancels the running one and every waiting one.
  void shutdown();

 private:
  void work();
  void run_job(Job& job);
  // The session for a prompt and how many of its cached tokens the prompt shares.
  Session& session_for(const std::vector<int32_t>& prompt, size_t& common_tokens);
  void publish_depth();

  Engine& engine_;
  QueueOptions options_;
  ServerMetrics& metrics_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> waiting_;
  std::shared_ptr<Job> running_;
  bool stopping_ = false;
  // Used by the worker thread only.
  std::vector<std::unique_ptr<Session>> sessions_;
  std::vector<uint64_t> last_used_;
  uint64_t use_clock_ = 0;
  std::thread worker_;
};

}  // namespace folio::server
