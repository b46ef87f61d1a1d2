#include "core/chat/kv_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "core/common/error.h"

namespace folio::chat {

namespace fs = std::filesystem;

namespace {

// File layout (native byte order; the files stay on the machine that wrote them):
//   "FOLIOKV2"  u64 n_tokens  u64 n_bytes  f64 compute_ms  i32 tokens[n_tokens]  u8 kv[n_bytes]  u64 checksum
// compute_ms: what the prefill of those tokens took when they were saved (0: not known).
// kv: the backend's own element type (fp32 on the CPU, bf16 on the GPU; the KV layout in the file's
// name says which). checksum: FileSum's (a Checksum of the header and tokens, one of each 1 MiB
// block of the KV, then one over those). Version 1 (fp32 always, FNV-1a) files are not read; they
// go as the least recently used.
constexpr char kMagic[8] = {'F', 'O', 'L', 'I', 'O', 'K', 'V', '2'};
constexpr const char* kSuffix = ".kv";
constexpr uint64_t kHeader = 8 + 8 + 8 + 8;  // magic, counts, compute_ms
constexpr const char* kRateFile = "read-rate";

// 64-bit FNV-1a: names (model, layout, tokens).
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
};

// The file's checksum: four independent multiply-rotate lanes over 8-byte words, so a 16 GiB KV
// (Llama-3.1-8B at 128K in bf16) is checked at memory speed rather than FNV's byte at a time. Bytes
// are fed in the file's order; the pieces may be of any length (the lanes carry a partial word).
class Checksum {
 public:
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    while (n > 0 && fill_ != 0) take_byte(*p++), --n;
    for (; n >= 32; p += 32, n -= 32)
      for (int l = 0; l < 4; ++l) {
        uint64_t w;
        std::memcpy(&w, p + 8 * l, 8);
        mix(l, w);
      }
    while (n > 0) take_byte(*p++), --n;
  }
  uint64_t value() const {
    uint64_t h = static_cast<uint64_t>(total_) * kP3;
    for (int l = 0; l < 4; ++l) h = rotl(h ^ (lane_[l] * kP2), 27) * kP1 + kP4;
    for (int i = 0; i < fill_; ++i) h = rotl(h ^ (uint64_t{partial_[i]} * kP1), 11) * kP2;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    return h;
  }

 private:
  static constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full, kP3 = 0x165667B19E3779F9ull,
                            kP4 = 0x85EBCA77C2B2AE63ull;
  static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
  void mix(int l, uint64_t w) {
    lane_[l] = rotl(lane_[l] + w * kP2, 31) * kP1;
    total_ += 8;
  }
  void take_byte(unsigned char b) {
    partial_[fill_++] = b;
    if (fill_ == 32) {
      fill_ = 0;
      for (int l = 0; l < 4; ++l) {
        uint64_t w;
        std::memcpy(&w, partial_ + 8 * l, 8);
        mix(l, w);
      }
    }
  }
  uint64_t lane_[4] = {kP1 + kP2, kP2, 0, 0 - kP1};
  uint64_t total_ = 0;
  unsigned char partial_[32] = {};
  int fill_ = 0;
};

// The file's checksum. The header and tokens go through one Checksum; the KV is summed in blocks of
// kSumBlock bytes, each its own Checksum, so whole blocks are read and summed on several threads
// (one thread reads from the page cache at 2-3 GiB/s, far below what memory and the PCIe bus take).
// The file's value is a Checksum over the header's value, the blocks' values in order and the KV's
// length.
constexpr size_t kSumBlock = size_t{1} << 20;

class FileSum {
 public:
  Checksum head;  // fed the header and tokens first

  // Bytes already in memory (saving): only read.
  void add(std::span<const uint8_t> bytes) { add(const_cast<uint8_t*>(bytes.data()), bytes.size(), nullptr); }

  // Feeds the next n bytes of the KV at p. fetch(dst, bytes, at) fills [p + at, p + at + bytes) first
  // (reading from the file; null when the bytes are there already) and may run on other threads for
  // whole blocks. false when a fetch failed.
  bool add(uint8_t* p, size_t n, const std::function<bool(uint8_t*, size_t, size_t)>& fetch) {
    size_t at = 0;
    // the rest of a block begun by the previous call
    if (fill_ > 0) {
      const size_t k = std::min(n, kSumBlock - fill_);
      if (!part(p, k, at, fetch)) return false;
      at += k;
    }
    // whole blocks, in parallel
    const size_t whole = (n - at) / kSumBlock;
    if (whole > 0) {
      const size_t first = blocks_.size();
      blocks_.resize(first + whole);
      const unsigned threads =
          static_cast<unsigned>(std::min<size_t>(whole, std::clamp(std::thread::hardware_concurrency(), 1u, 4u)));
      std::atomic<size_t> next{0};
      std::atomic<bool> ok{true};
      auto work = [&] {
        for (size_t b = next++; b < whole && ok; b = next++) {
          uint8_t* q = p + at + b * kSumBlock;
          if (fetch && !fetch(q, kSumBlock, at + b * kSumBlock)) {
            ok = false;
            return;
          }
          Checksum c;
          c.add(q, kSumBlock);
          blocks_[first + b] = c.value();
        }
      };
      std::vector<std::thread> pool;
      for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
      work();
      for (std::thread& t : pool) t.join();
      if (!ok) return false;
      at += whole * kSumBlock;
      total_ += whole * kSumBlock;
    }
    // the start of the next block
    return at == n || part(p + at, n - at, at, fetch);
  }

  uint64_t value() const {
    Checksum all;
    const uint64_t h = head.value();
    all.add(&h, sizeof h);
    all.add(blocks_.data(), blocks_.size() * sizeof(uint64_t));
    if (fill_ > 0) {
      const uint64_t o = open_.value();
      all.add(&o, sizeof o);
    }
    all.add(&total_, sizeof total_);
    return all.value();
  }

 private:
  bool part(uint8_t* q, size_t k, size_t at, const std::function<bool(uint8_t*, size_t, size_t)>& fetch) {
    if (fetch && !fetch(q, k, at)) return false;
    open_.add(q, k);
    fill_ += k;
    total_ += k;
    if (fill_ == kSumBlock) {
      blocks_.push_back(open_.value());
      open_ = Checksum();
      fill_ = 0;
    }
    return true;
  }

  Checksum open_;
  size_t fill_ = 0;
  std::vector<uint64_t> blocks_;
  uint64_t total_ = 0;
};

bool pread_all(int fd, uint8_t* p, size_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

bool write_all(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

KvStore::KvStore(std::string folder, uint64_t max_bytes) : folder_(std::move(folder)), max_bytes_(max_bytes) {
  std::error_code ec;
  fs::create_directories(folder_, ec);
  if (ec || !fs::is_directory(folder_))
    throw Error(ErrorCode::FileUnreadable,
                "cannot make the KV cache folder " + folder_ + " (" + ec.message() + "); choose another folder");
}

namespace {

// The model and KV layout: what a file's KV is valid for.
Fnv domain_hash(const std::string& model_id, const std::string& kv_layout) {
  Fnv f;
  f.add(model_id.data(), model_id.size());
  f.add("\n", 1);
  f.add(kv_layout.data(), kv_layout.size());
  f.add("\n", 1);
  return f;
}

std::string hex16(uint64_t h) {
  char s[17];
  std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(h));
  return s;
}

}  // namespace

std::string KvStore::layout(bool on_gpu, int element_bytes) {
  return std::string(on_gpu ? "gpu" : "cpu") + (element_bytes == 2 ? " bf16" : " fp32") + " v2";
}

std::string KvStore::key(const std::string& model_id, const std::string& kv_layout, std::span<const int32_t> tokens) {
  // 64 bits for the model and layout (the files load_longest_prefix reads), 64 for those and the
  // tokens (a file's own tokens are compared with the prompt's before it is used).
  const Fnv domain = domain_hash(model_id, kv_layout);
  Fnv all = domain;
  all.add("folio", 5);
  all.add(tokens.data(), tokens.size_bytes());
  return hex16(domain.h) + hex16(all.h);
}

std::string KvStore::path_of(const std::string& key) const {
  return (fs::path(folder_) / (key + kSuffix)).string();
}

// ---- saving in pieces

struct KvStore::Saving::State {
  KvStore* store = nullptr;
  std::string key, path, tmp;
  int fd = -1;
  uint64_t n_tokens = 0, kv_bytes = 0, written_kv = 0;
  double compute_ms = 0.0;
  FileSum sum;
  int err = 0;  // errno of the first failed write
};

KvStore::Saving::Saving(KvStore& store, std::string key, std::span<const int32_t> tokens, uint64_t kv_bytes,
                        double compute_ms)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.store = &store;
  s.key = std::move(key);
  s.path = store.path_of(s.key);
  s.tmp = s.path + ".tmp-" + std::to_string(::getpid());
  s.fd = ::open(s.tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (s.fd < 0)
    throw Error(ErrorCode::FileUnreadable, "cannot write the KV cache file " + s.tmp + ": " + std::strerror(errno));
  s.n_tokens = tokens.size();
  s.kv_bytes = kv_bytes;
  s.compute_ms = compute_ms > 0.0 ? compute_ms : 0.0;
  s.sum.head.add(kMagic, sizeof kMagic);
  s.sum.head.add(&s.n_tokens, sizeof s.n_tokens);
  s.sum.head.add(&s.kv_bytes, sizeof s.kv_bytes);
  s.sum.head.add(&s.compute_ms, sizeof s.compute_ms);
  s.sum.head.add(tokens.data(), tokens.size_bytes());
  if (!write_all(s.fd, kMagic, sizeof kMagic) || !write_all(s.fd, &s.n_tokens, sizeof s.n_tokens) ||
      !write_all(s.fd, &s.kv_bytes, sizeof s.kv_bytes) || !write_all(s.fd, &s.compute_ms, sizeof s.compute_ms) ||
      !write_all(s.fd, tokens.data(), tokens.size_bytes()))
    s.err = errno != 0 ? errno : EIO;
}

KvStore::Saving::Saving(Saving&&) noexcept = default;

KvStore::Saving::~Saving() {
  if (s_ && s_->fd >= 0) {
    ::close(s_->fd);
    ::unlink(s_->tmp.c_str());
  }
}

bool KvStore::Saving::write(std::span<const uint8_t> bytes) {
  State& s = *s_;
  if (s.err != 0 || s.fd < 0) return false;
  if (bytes.size() > s.kv_bytes - s.written_kv) {
    s.err = EINVAL;
    return false;
  }
  s.sum.add(bytes);
  if (!write_all(s.fd, bytes.data(), bytes.size())) {
    s.err = errno != 0 ? errno : EIO;
    return false;
  }
  s.written_kv += bytes.size();
  return true;
}

uint64_t KvStore::Saving::commit() {
  State& s = *s_;
  if (s.fd < 0) throw Error(ErrorCode::BadArgument, "this KV cache file was saved already");
  const uint64_t sum = s.sum.value();
  const bool ok = s.err == 0 && s.written_kv == s.kv_bytes && write_all(s.fd, &sum, sizeof sum) && ::fsync(s.fd) == 0;
  const int err = s.err != 0 ? s.err : s.written_kv != s.kv_bytes ? EINVAL : errno;
  ::close(s.fd);
  s.fd = -1;
  if (!ok || std::rename(s.tmp.c_str(), s.path.c_str()) != 0) {
    const int why = ok ? errno : err;
    ::unlink(s.tmp.c_str());
    throw Error(ErrorCode::FileUnreadable, "cannot write the KV cache file " + s.path + ": " + std::strerror(why) +
                                               (why == EINVAL ? " (the KV handed over was not of the announced size)"
                                                              : " (is the disk full?)"));
  }
  const uint64_t written = kHeader + s.n_tokens * 4 + s.kv_bytes + 8;
  s.store->evict(s.key, written);
  return written;
}

KvStore::Saving KvStore::begin_save(const std::string& key, std::span<const int32_t> tokens, uint64_t kv_bytes,
                                    double compute_ms) {
  // One file over the folder's limit would evict everything else and still not fit: not kept.
  const uint64_t file = kHeader + tokens.size() * 4 + kv_bytes + 8;
  if (file > max_bytes_) {
    char why[200];
    std::snprintf(why, sizeof why, "the documents' KV (%.1f GiB) is larger than the KV cache folder's limit (%.1f GiB); it is not kept",
                  static_cast<double>(file) / 1073741824.0, static_cast<double>(max_bytes_) / 1073741824.0);
    throw Error(ErrorCode::BadArgument, why);
  }
  return Saving(*this, key, tokens, kv_bytes, compute_ms);
}

uint64_t KvStore::save(const std::string& key, const KvEntry& e) {
  Saving s = begin_save(key, e.tokens, e.kv.size(), e.compute_ms);
  s.write(e.kv);
  return s.commit();
}

// ---- reading in pieces

struct KvStore::Reading::State {
  std::string path;
  int fd = -1;
  uint64_t kv_offset = 0;  // where the KV starts in the file
  std::vector<int32_t> tokens;
  uint64_t kv_bytes = 0, read_kv = 0;
  double compute_ms = 0.0;
  FileSum sum;
  ~State() {
    if (fd >= 0) ::close(fd);
  }
};

KvStore::Reading::Reading() : s_(std::make_unique<State>()) {}
KvStore::Reading::Reading(Reading&&) noexcept = default;
KvStore::Reading::~Reading() = default;
const std::vector<int32_t>& KvStore::Reading::tokens() const { return s_->tokens; }
uint64_t KvStore::Reading::kv_bytes() const { return s_->kv_bytes; }
double KvStore::Reading::compute_ms() const { return s_->compute_ms; }

bool KvStore::Reading::read(std::span<uint8_t> into) {
  State& s = *s_;
  if (into.size() > s.kv_bytes - s.read_kv) return false;
  const uint64_t base = s.kv_offset + s.read_kv;
  // read and summed block by block, whole blocks on several threads (pread: no shared file position)
  if (!s.sum.add(into.data(), into.size(),
                 [&](uint8_t* q, size_t n, size_t at) { return pread_all(s.fd, q, n, base + at); }))
    return false;
  s.read_kv += into.size();
  return true;
}

bool KvStore::Reading::finish(std::string* problem) {
  State& s = *s_;
  uint64_t stored = 0;
  const bool whole = s.read_kv == s.kv_bytes;
  if (whole && pread_all(s.fd, reinterpret_cast<uint8_t*>(&stored), sizeof stored, s.kv_offset + s.kv_bytes) &&
      stored == s.sum.value()) {
    ::utimensat(AT_FDCWD, s.path.c_str(), nullptr, 0);  // used now: the last to be evicted
    return true;
  }
  if (!whole) return false;  // the caller stopped early: nothing is known about the file
  if (problem != nullptr) *problem = s.path + ": its checksum does not match (the file is damaged); it was deleted";
  std::error_code ec;
  fs::remove(s.path, ec);
  return false;
}

std::optional<KvStore::Reading> KvStore::open(const std::string& key, std::string* problem) const {
  Reading r;
  Reading::State& s = *r.s_;
  s.path = path_of(key);
  s.fd = ::open(s.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (s.fd < 0) return std::nullopt;
  auto fail = [&](const std::string& why) -> std::optional<Reading> {
    if (problem != nullptr) *problem = s.path + ": " + why + "; it was deleted";
    std::error_code ec;
    fs::remove(s.path, ec);
    return std::nullopt;
  };
  struct stat st {};
  char magic[8];
  uint64_t n_tokens = 0, n_bytes = 0;
  double compute_ms = 0.0;
  auto get = [&](void* p, size_t n, uint64_t at) { return pread_all(s.fd, static_cast<uint8_t*>(p), n, at); };
  if (::fstat(s.fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < kHeader + 8 || !get(magic, 8, 0) ||
      std::memcmp(magic, kMagic, sizeof magic) != 0)
    return fail("not a Folio KV file of this version");
  const auto size = static_cast<uint64_t>(st.st_size);
  if (!get(&n_tokens, 8, 8) || !get(&n_bytes, 8, 16) || !get(&compute_ms, 8, 24) || n_tokens == 0 ||
      n_tokens > (uint64_t{1} << 32) || n_bytes > (uint64_t{1} << 42) || size != kHeader + n_tokens * 4 + n_bytes + 8)
    return fail("its size does not match its header (cut off?)");
  s.tokens.resize(n_tokens);
  if (!get(s.tokens.data(), n_tokens * 4, kHeader)) return fail("it could not be read whole");
  s.kv_offset = kHeader + n_tokens * 4;
  s.kv_bytes = n_bytes;
  s.compute_ms = compute_ms;
  s.sum.head.add(magic, sizeof magic);
  s.sum.head.add(&n_tokens, sizeof n_tokens);
  s.sum.head.add(&n_bytes, sizeof n_bytes);
  s.sum.head.add(&compute_ms, sizeof compute_ms);
  s.sum.head.add(s.tokens.data(), n_tokens * 4);
  return r;
}

// ---- whole

std::optional<KvEntry> KvStore::load(const std::string& key, std::string* problem) const {
  std::string why;
  std::optional<Reading> r = open(key, &why);
  std::optional<KvEntry> e;
  if (r) {
    e.emplace();
    e->tokens = r->tokens();
    e->compute_ms = r->compute_ms();
    e->kv.resize(r->kv_bytes());
    if (!r->read(e->kv) || !r->finish(&why)) e.reset();
    if (!e && why.empty()) {
      why = path_of(key) + ": it could not be read whole; it was deleted";
      r.reset();
      std::error_code ec;
      fs::remove(path_of(key), ec);
    }
  }
  if (!why.empty() && problem != nullptr) *problem = why + ", the documents are read again";
  return e;
}

std::vector<KvCandidate> KvStore::candidates(const std::string& model_id, const std::string& kv_layout,
                                             std::span<const int32_t> tokens, int64_t min_tokens) const {
  const std::string domain = hex16(domain_hash(model_id, kv_layout).h);
  std::vector<KvCandidate> out;
  std::vector<int32_t> saved;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_, ec)) {
    const fs::path p = entry.path();
    const std::string name = p.filename().string();
    if (p.extension() != kSuffix || name.size() != 32 + std::strlen(kSuffix) || name.compare(0, 16, domain) != 0)
      continue;
    // The header and as many tokens as the prompt has; a file that does not check out is left to open().
    std::ifstream in(p, std::ios::binary);
    char magic[8];
    uint64_t n_tokens = 0, n_bytes = 0;
    double compute_ms = 0.0;
    if (!in.read(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof magic) != 0 ||
        !in.read(reinterpret_cast<char*>(&n_tokens), sizeof n_tokens) ||
        !in.read(reinterpret_cast<char*>(&n_bytes), sizeof n_bytes) ||
        !in.read(reinterpret_cast<char*>(&compute_ms), sizeof compute_ms) || n_tokens == 0 ||
        n_tokens > (uint64_t{1} << 32))
      continue;
    saved.resize(std::min<size_t>(n_tokens, tokens.size()));
    if (!in.read(reinterpret_cast<char*>(saved.data()), static_cast<std::streamsize>(saved.size() * 4))) continue;
    const auto common =
        static_cast<int64_t>(std::mismatch(saved.begin(), saved.end(), tokens.begin()).first - saved.begin());
    if (common >= std::max<int64_t>(min_tokens, 1) && static_cast<uint64_t>(common) * 4 >= n_tokens)
      out.push_back({name.substr(0, 32), common, n_tokens, n_bytes, compute_ms});
  }
  std::sort(out.begin(), out.end(), [](const KvCandidate& a, const KvCandidate& b) {
    return a.common_tokens != b.common_tokens ? a.common_tokens > b.common_tokens : a.n_tokens < b.n_tokens;
  });
  return out;
}

std::optional<KvPrefixMatch> KvStore::load_longest_prefix(const std::string& model_id, const std::string& kv_layout,
                                                          std::span<const int32_t> tokens, int64_t min_tokens,
                                                          std::string* problem) const {
  std::string refused;
  auto note = [&](const char* next) {
    if (problem != nullptr && !refused.empty()) *problem = refused + next;
  };
  for (const KvCandidate& c : candidates(model_id, kv_layout, tokens, min_tokens)) {
    std::string why;
    std::optional<KvEntry> e = load(c.key, &why);
    if (!why.empty()) refused += (refused.empty() ? "" : "; ") + why.substr(0, why.rfind(", the documents"));
    if (!e) continue;
    // Checked again on what was read whole (the file may have been replaced since).
    const size_t n = std::min(e->tokens.size(), tokens.size());
    const auto common = static_cast<int64_t>(
        std::mismatch(e->tokens.begin(), e->tokens.begin() + static_cast<std::ptrdiff_t>(n), tokens.begin()).first -
        e->tokens.begin());
    if (common < std::max<int64_t>(min_tokens, 1)) continue;
    note(", another saved prefix was loaded");
    return KvPrefixMatch{c.key, std::move(*e), common};
  }
  note(", the documents are read again");
  return std::nullopt;
}

bool KvStore::contains(const std::string& key) const {
  std::error_code ec;
  return fs::is_regular_file(path_of(key), ec);
}

void KvStore::evict(const std::string& keep, uint64_t keep_bytes) {
  const fs::path kept = path_of(keep);
  struct File {
    fs::path path;
    fs::file_time_type used;
    uint64_t bytes;
  };
  std::vector<File> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_, ec)) {
    const fs::path p = entry.path();
    const std::string name = p.filename().string();
    if (name.find(".kv.tmp-") != std::string::npos) {
      // a save of this process is finished; another process's may be running: leave the young ones
      const auto age = fs::file_time_type::clock::now() - entry.last_write_time(ec);
      if (!ec && age > std::chrono::hours(1)) fs::remove(p, ec);
      continue;
    }
    if (p.extension() != kSuffix || p == kept) continue;
    files.push_back({p, entry.last_write_time(ec), entry.file_size(ec)});
  }
  uint64_t total = keep_bytes;
  for (const File& x : files) total += x.bytes;
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) { return a.used < b.used; });
  for (const File& x : files) {
    if (total <= max_bytes_) break;
    if (fs::remove(x.path, ec)) total -= x.bytes;
  }
}

uint64_t KvStore::used_bytes() const {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_, ec))
    if (entry.path().extension() == kSuffix) total += entry.file_size(ec);
  return total;
}

double KvStore::read_rate() const {
  if (read_rate_ < 0.0) {
    read_rate_ = 0.0;
    std::ifstream in(fs::path(folder_) / kRateFile);
    double r = 0.0;
    if (in >> r && std::isfinite(r) && r > 0.0) read_rate_ = r;
  }
  return read_rate_;
}

void KvStore::note_read(uint64_t bytes, double ms) const {
  if (ms <= 0.0 || bytes < (uint64_t{64} << 20)) return;  // small files say little about the disk
  read_rate_ = static_cast<double>(bytes) / ms;
  std::ofstream out(fs::path(folder_) / kRateFile, std::ios::trunc);
  out << read_rate_ << "\n";
}

KvRestore restore_saved_prefix(const KvStore& store, Session& session, const std::string& model_id,
                               const std::string& kv_layout, std::span<const int32_t> tokens, int64_t min_tokens,
                               bool always) {
  KvRestore out;
  std::string refused;
  auto add = [&](const std::string& why) { refused += (refused.empty() ? "" : "; ") + why; };
  for (const KvCandidate& c : store.candidates(model_id, kv_layout, tokens, min_tokens)) {
    const int64_t n = std::min<int64_t>(c.common_tokens, static_cast<int64_t>(tokens.size()));
    const double rate = store.read_rate();
    if (!always && rate > 0.0 && c.compute_ms > 0.0) {
      // Reading costs the whole file; computing costs (about) its share of the tokens.
      const double read_ms = static_cast<double>(c.kv_bytes) / rate;
      const double compute_ms = c.compute_ms * static_cast<double>(n) / static_cast<double>(c.n_tokens);
      if (read_ms > compute_ms) {
        char why[256];
        std::snprintf(why, sizeof why,
                      "the saved KV of these documents (%.1f GiB) would take about %.1f s to read at the %.1f GiB/s "
                      "last measured, longer than the %.1f s their prefill takes here; they are prefilled instead",
                      static_cast<double>(c.kv_bytes) / 1073741824.0, read_ms / 1000.0, rate * 1000.0 / 1073741824.0,
                      compute_ms / 1000.0);
        out.note = why;
        return out;
      }
    }
    std::string why;
    const auto t0 = std::chrono::steady_clock::now();
    std::optional<KvStore::Reading> r = store.open(c.key, &why);
    // checked again on the file as opened (it may have been replaced since candidates())
    const bool same = r && static_cast<int64_t>(r->tokens().size()) >= n &&
                      std::equal(tokens.begin(), tokens.begin() + n, r->tokens().begin());
    if (same && session.restore_prefix(
                    tokens.first(static_cast<size_t>(n)), static_cast<int64_t>(r->tokens().size()),
                    [&](std::span<uint8_t> piece) { return r->read(piece); }, [&] { return r->finish(&why); })) {
      store.note_read(r->kv_bytes(),
                      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      out.tokens = n;
      if (!refused.empty()) out.note = refused + ", another saved prefix was loaded";
      return out;
    }
    if (!why.empty()) add(why);
    else if (same) add("the saved KV of these documents does not fit this model or session");
  }
  if (!refused.empty()) out.note = refused + "; the documents are read again";
  return out;
}

uint64_t save_session_prefix(KvStore& store, const Session& session, const std::string& key,
                             std::span<const int32_t> tokens, double compute_ms) {
  const auto n = static_cast<int64_t>(tokens.size());
  KvStore::Saving saving = store.begin_save(key, tokens, session.kv_prefix_bytes(n), compute_ms);
  if (!session.save_prefix(n, [&](std::span<const uint8_t> piece) { return saving.write(piece); }) &&
      session.kv_element_bytes() <= 0)
    throw Error(ErrorCode::BadArgument, "this backend keeps no KV on disk");
  return saving.commit();  // throws with the disk's reason when a piece was refused
}

}  // namespace folio::chat
