#include "core/common/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace folio {

namespace {

// Decode calls parallel_for hundreds of times per token, each a few tens of microseconds of work:
// waking sleeping threads through a condition variable costs as much as the work. Threads spin
// this long for the next job (or for the others to finish) before they sleep.
constexpr auto kSpin = std::chrono::microseconds(100);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline void part_range(int64_t n, int parts, int index, int64_t* begin, int64_t* end) {
  *begin = n * index / parts;
  *end = n * (index + 1) / parts;
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  const int parts = static_cast<int>(std::min<int64_t>(n, size()));
  if (parts == 1) {
    fn(0, n, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_n_ = n;
    job_parts_ = parts;
    pending_.store(parts - 1);
    generation_.fetch_add(1);
  }
  start_cv_.notify_all();
  int64_t b = 0, e = 0;
  part_range(n, parts, 0, &b, &e);
  fn(b, e, 0);
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  while (pending_.load() != 0 && std::chrono::steady_clock::now() < deadline) cpu_relax();
  if (pending_.load() != 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [this] { return pending_.load() == 0; });
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    while (generation_.load() == seen && !stop_.load() && std::chrono::steady_clock::now() < deadline) cpu_relax();
    const std::function<void(int64_t, int64_t, int)>* job = nullptr;
    int64_t n = 0;
    int parts = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      if (stop_.load()) return;
      seen = generation_.load();
      job = job_;
      n = job_n_;
      parts = job_parts_;
    }
    if (index < parts) {
      int64_t b = 0, e = 0;
      part_range(n, parts, index, &b, &e);
      (*job)(b, e, index);
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_cv_.notify_one();
      }
    }
  }
}

}  // namespace folio
