#include "core/chat/kv_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/common/error.h"

namespace folio::chat {

namespace fs = std::filesystem;

namespace {

// File layout (native byte order; the files stay on the machine that wrote them):
//   "FOLIOKV1"  u64 n_tokens  u64 n_floats  i32 tokens[n_tokens]  f32 kv[n_floats]  u64 checksum
// checksum: 64-bit FNV-1a over everything before it.
constexpr char kMagic[8] = {'F', 'O', 'L', 'I', 'O', 'K', 'V', '1'};
constexpr const char* kSuffix = ".kv";

struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
};

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

std::optional<KvEntry> KvStore::load(const std::string& key, std::string* problem) const {
  std::string why;
  std::optional<KvEntry> e = read_checked(key, &why);
  if (!why.empty() && problem != nullptr) *problem = why + ", the documents are read again";
  return e;
}

std::optional<KvEntry> KvStore::read_checked(const std::string& key, std::string* problem) const {
  const std::string path = path_of(key);
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  auto fail = [&](const std::string& why) -> std::optional<KvEntry> {
    if (problem != nullptr) *problem = path + ": " + why + "; it was deleted";
    in.close();
    std::error_code ec;
    fs::remove(path, ec);
    return std::nullopt;
  };
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  char magic[8];
  uint64_t n_tokens = 0, n_floats = 0;
  if (ec || size < sizeof magic + 24 || !in.read(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof magic) != 0)
    return fail("not a Folio KV file");
  in.read(reinterpret_cast<char*>(&n_tokens), sizeof n_tokens);
  in.read(reinterpret_cast<char*>(&n_floats), sizeof n_floats);
  if (!in || n_tokens == 0 || n_tokens > (uint64_t{1} << 32) || n_floats > (uint64_t{1} << 40) ||
      size != sizeof magic + 16 + n_tokens * 4 + n_floats * 4 + 8)
    return fail("its size does not match its header (cut off?)");
  KvEntry e;
  e.tokens.resize(n_tokens);
  e.kv.resize(n_floats);
  uint64_t stored = 0;
  in.read(reinterpret_cast<char*>(e.tokens.data()), static_cast<std::streamsize>(n_tokens * 4));
  in.read(reinterpret_cast<char*>(e.kv.data()), static_cast<std::streamsize>(n_floats * 4));
  in.read(reinterpret_cast<char*>(&stored), sizeof stored);
  if (!in) return fail("it could not be read whole");
  Fnv f;
  f.add(magic, sizeof magic);
  f.add(&n_tokens, sizeof n_tokens);
  f.add(&n_floats, sizeof n_floats);
  f.add(e.tokens.data(), n_tokens * 4);
  f.add(e.kv.data(), n_floats * 4);
  if (f.h != stored) return fail("its checksum does not match (the file is damaged)");
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // used now: the last to be evicted
  return e;
}

std::optional<KvPrefixMatch> KvStore::load_longest_prefix(const std::string& model_id, const std::string& kv_layout,
                                                          std::span<const int32_t> tokens, int64_t min_tokens,
                                                          std::string* problem) const {
  const std::string domain = hex16(domain_hash(model_id, kv_layout).h);
  struct Candidate {
    std::string key;
    int64_t common = 0;
    uint64_t n_tokens = 0;
  };
  std::vector<Candidate> candidates;
  std::vector<int32_t> saved;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_, ec)) {
    const fs::path p = entry.path();
    const std::string name = p.filename().string();
    if (p.extension() != kSuffix || name.size() != 32 + std::strlen(kSuffix) || name.compare(0, 16, domain) != 0)
      continue;
    // The header and as many tokens as the prompt has; a file that does not check out is left to load().
    std::ifstream in(p, std::ios::binary);
    char magic[8];
    uint64_t n_tokens = 0, n_floats = 0;
    if (!in.read(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof magic) != 0 ||
        !in.read(reinterpret_cast<char*>(&n_tokens), sizeof n_tokens) ||
        !in.read(reinterpret_cast<char*>(&n_floats), sizeof n_floats) || n_tokens == 0 ||
        n_tokens > (uint64_t{1} << 32))
      continue;
    saved.resize(std::min<size_t>(n_tokens, tokens.size()));
    if (!in.read(reinterpret_cast<char*>(saved.data()), static_cast<std::streamsize>(saved.size() * 4))) continue;
    const auto common =
        static_cast<int64_t>(std::mismatch(saved.begin(), saved.end(), tokens.begin()).first - saved.begin());
    if (common >= std::max<int64_t>(min_tokens, 1) && static_cast<uint64_t>(common) * 4 >= n_tokens)
      candidates.push_back({name.substr(0, 32), common, n_tokens});
  }
  // The longest shared start first; of equals, the shortest file (the least to read).
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return a.common != b.common ? a.common > b.common : a.n_tokens < b.n_tokens;
  });
  std::string refused;
  auto note = [&](const char* next) {
    if (problem != nullptr && !refused.empty()) *problem = refused + next;
  };
  for (const Candidate& c : candidates) {
    std::string why;
    std::optional<KvEntry> e = read_checked(c.key, &why);
    if (!why.empty()) refused += (refused.empty() ? "" : "; ") + why;
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

uint64_t KvStore::save(const std::string& key, const KvEntry& e) {
  const std::string path = path_of(key);
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    throw Error(ErrorCode::FileUnreadable, "cannot write the KV cache file " + tmp + ": " + std::strerror(errno));
  const uint64_t n_tokens = e.tokens.size(), n_floats = e.kv.size();
  Fnv f;
  f.add(kMagic, sizeof kMagic);
  f.add(&n_tokens, sizeof n_tokens);
  f.add(&n_floats, sizeof n_floats);
  f.add(e.tokens.data(), n_tokens * 4);
  f.add(e.kv.data(), n_floats * 4);
  const bool ok = write_all(fd, kMagic, sizeof kMagic) && write_all(fd, &n_tokens, sizeof n_tokens) &&
                  write_all(fd, &n_floats, sizeof n_floats) && write_all(fd, e.tokens.data(), n_tokens * 4) &&
                  write_all(fd, e.kv.data(), n_floats * 4) && write_all(fd, &f.h, sizeof f.h) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw Error(ErrorCode::FileUnreadable, "cannot write the KV cache file " + path + ": " +
                                               std::strerror(ok ? errno : err) + " (is the disk full?)");
  }
  const uint64_t written = sizeof kMagic + 16 + n_tokens * 4 + n_floats * 4 + 8;
  // Least recently used out until the folder is within its limit; leftovers of killed saves too.
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
    if (p.extension() != kSuffix || p == fs::path(path)) continue;
    files.push_back({p, entry.last_write_time(ec), entry.file_size(ec)});
  }
  uint64_t total = written;
  for (const File& x : files) total += x.bytes;
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) { return a.used < b.used; });
  for (const File& x : files) {
    if (total <= max_bytes_) break;
    if (fs::remove(x.path, ec)) total -= x.bytes;
  }
  return written;
}

uint64_t KvStore::used_bytes() const {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder_, ec))
    if (entry.path().extension() == kSuffix) total += entry.file_size(ec);
  return total;
}

}  // namespace folio::chat
