// A GGUF serializer for tests (no Qt: the GPU tests use it too): metadata keys of the common types,
// tensors with their dims in GGUF order and raw bytes, 32-byte alignment, and hooks to write broken
// files (a tensor removed, retyped or reshaped).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace folio::testing {

// ggml type ids
constexpr uint32_t kGgufF32 = 0, kGgufF16 = 1, kGgufQ4_0 = 2, kGgufQ4_1 = 3, kGgufQ8_0 = 8, kGgufQ4_K = 12,
                   kGgufQ5_K = 13, kGgufQ6_K = 14, kGgufBF16 = 30;

class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& v) {
    key_header(key, 8);
    str(meta_, v);
  }
  void add_u32(const std::string& key, uint32_t v) {
    key_header(key, 4);
    put(meta_, v);
  }
  void add_i32(const std::string& key, int32_t v) {
    key_header(key, 5);
    put(meta_, v);
  }
  void add_f32(const std::string& key, float v) {
    key_header(key, 6);
    put(meta_, v);
  }
  void add_bool(const std::string& key, bool v) {
    key_header(key, 7);
    put(meta_, static_cast<uint8_t>(v));
  }
  void add_strings(const std::string& key, const std::vector<std::string>& v) {
    key_header(key, 9);
    put(meta_, uint32_t{8});
    put(meta_, static_cast<uint64_t>(v.size()));
    for (const auto& s : v) str(meta_, s);
  }
  void add_i32s(const std::string& key, const std::vector<int32_t>& v) {
    key_header(key, 9);
    put(meta_, uint32_t{5});
    put(meta_, static_cast<uint64_t>(v.size()));
    for (int32_t x : v) put(meta_, x);
  }
  // dims in GGUF order: dims[0] = columns.
  void add_tensor(const std::string& name, std::vector<int64_t> dims, uint32_t type, std::vector<uint8_t> data) {
    tensors_.push_back({name, std::move(dims), type, std::move(data)});
  }
  void remove_tensor(const std::string& name) {
    std::erase_if(tensors_, [&](const Tensor& t) { return t.name == name; });
  }
  void set_tensor_type(const std::string& name, uint32_t type) {
    for (auto& t : tensors_)
      if (t.name == name) t.type = type;
  }
  void set_tensor_dims(const std::string& name, std::vector<int64_t> dims) {
    for (auto& t : tensors_)
      if (t.name == name) t.dims = std::move(dims);
  }

  std::vector<uint8_t> bytes(uint32_t version = 3) const {
    std::vector<uint8_t> out;
    put(out, uint32_t{0x46554747});
    put(out, version);
    put(out, static_cast<uint64_t>(tensors_.size()));
    put(out, n_keys_);
    out.insert(out.end(), meta_.begin(), meta_.end());
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      str(out, t.name);
      put(out, static_cast<uint32_t>(t.dims.size()));
      for (int64_t d : t.dims) put(out, static_cast<uint64_t>(d));
      put(out, t.type);
      put(out, offset);
      offset += (t.data.size() + 31) / 32 * 32;
    }
    header_size_ = out.size();
    out.resize((out.size() + 31) / 32 * 32, 0);
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
      if (i + 1 < tensors_.size()) out.resize((out.size() + 31) / 32 * 32, 0);  // no padding at the end
    }
    return out;
  }
  size_t header_size() const { return header_size_; }  // of the last bytes() call

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    uint32_t type;
    std::vector<uint8_t> data;
  };
  template <typename T>
  static void put(std::vector<uint8_t>& out, T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.insert(out.end(), b, b + sizeof(T));
  }
  static void str(std::vector<uint8_t>& out, const std::string& s) {
    put(out, static_cast<uint64_t>(s.size()));
    out.insert(out.end(), s.begin(), s.end());
  }
  void key_header(const std::string& key, uint32_t type) {
    str(meta_, key);
    put(meta_, type);
    ++n_keys_;
  }
  std::vector<uint8_t> meta_;
  uint64_t n_keys_ = 0;
  std::vector<Tensor> tensors_;
  mutable size_t header_size_ = 0;
};

}  // namespace folio::testing
