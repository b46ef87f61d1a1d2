#include "core/model/gguf.h"

#include <cstring>

#include "core/common/error.h"
#include "core/common/input_limits.h"

namespace folio {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxTensors = 1u << 20;
constexpr uint64_t kMaxKeys = 1u << 20;
constexpr uint32_t kMaxDims = 4;

[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::BadModelFile, path + ": " + what + "; the GGUF file is damaged or incomplete, download it again");
}

// A bounds-checked cursor over the mapped bytes.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path) : data_(data), size_(size), path_(path) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename T>
  T read(const char* what) {
    if (remaining() < sizeof(T)) corrupt(path_, std::string("the file ends inside ") + what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what, uint64_t max_bytes = limits::kMaxGgufStringBytes) {
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      corrupt(path_, std::string(what) + " claims " + std::to_string(len) + " bytes but only " +
                         std::to_string(remaining()) + " remain");
    if (len > max_bytes)
      corrupt(path_, std::string(what) + " is " + std::to_string(len) + " bytes long, more than the " +
                         std::to_string(max_bytes) + " Folio reads (real ones are far shorter)");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UInt8: case GgufType::Int8: case GgufType::Bool: return 1;
    case GgufType::UInt16: case GgufType::Int16: return 2;
    case GgufType::UInt32: case GgufType::Int32: case GgufType::Float32: return 4;
    case GgufType::UInt64: case GgufType::Int64: case GgufType::Float64: return 8;
    case GgufType::String: return 8;  // at least its length
    case GgufType::Array: return 12;  // at least type + count
  }
  return 0;
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::Float64); }

// A float's integer part; NaN and values beyond int64 (undefined to cast) become 0.
int64_t to_integer(double x) {
  return x > -9.2e18 && x < 9.2e18 ? static_cast<int64_t>(x) : 0;
}

void read_scalar(Reader& r, GgufType t, GgufValue& v, const std::string& key) {
  switch (t) {
    case GgufType::UInt8: v.integer = r.read<uint8_t>(key.c_str()); break;
    case GgufType::Int8: v.integer = r.read<int8_t>(key.c_str()); break;
    case GgufType::UInt16: v.integer = r.read<uint16_t>(key.c_str()); break;
    case GgufType::Int16: v.integer = r.read<int16_t>(key.c_str()); break;
    case GgufType::UInt32: v.integer = r.read<uint32_t>(key.c_str()); break;
    case GgufType::Int32: v.integer = r.read<int32_t>(key.c_str()); break;
    case GgufType::UInt64: v.integer = static_cast<int64_t>(r.read<uint64_t>(key.c_str())); break;
    case GgufType::Int64: v.integer = r.read<int64_t>(key.c_str()); break;
    case GgufType::Bool: v.integer = r.read<uint8_t>(key.c_str()) != 0; break;
    case GgufType::Float32: v.number = r.read<float>(key.c_str()); v.integer = to_integer(v.number); return;
    case GgufType::Float64: v.number = r.read<double>(key.c_str()); v.integer = to_integer(v.number); return;
    case GgufType::String: v.text = r.read_string(key.c_str()); return;
    case GgufType::Array: return;
  }
  v.number = static_cast<double>(v.integer);
}

// Items of all arrays read so far (limits::kMaxGgufArrayItemsTotal).
struct ArrayBudget {
  uint64_t items = 0;
};

// `key` is the key as messages show it (printable_name).
void read_value(Reader& r, GgufType t, GgufValue& v, const std::string& key, const std::string& path, int depth,
                ArrayBudget& budget) {
  v.type = t;
  if (t != GgufType::Array) {
    read_scalar(r, t, v, key);
    return;
  }
  const uint32_t et = r.read<uint32_t>(key.c_str());
  if (!valid_type(et)) corrupt(path, "key \"" + key + "\" has an array of unknown type " + std::to_string(et));
  v.element_type = static_cast<GgufType>(et);
  v.count = r.read<uint64_t>(key.c_str());
  if (v.count > r.remaining() / scalar_size(v.element_type))
    corrupt(path, "key \"" + key + "\" claims " + std::to_string(v.count) + " items, more than the file holds");
  // Bounded by what a model needs before anything is reserved: a sparse file can hold any count.
  if (v.count > limits::kMaxGgufArrayItems)
    corrupt(path, "key \"" + key + "\" holds an array of " + std::to_string(v.count) +
                      " items; Folio reads arrays of at most " + std::to_string(limits::kMaxGgufArrayItems) +
                      " (the largest real vocabularies have 262,144 tokens)");
  budget.items += v.count;
  if (budget.items > limits::kMaxGgufArrayItemsTotal)
    corrupt(path, "the metadata arrays hold more than " + std::to_string(limits::kMaxGgufArrayItemsTotal) +
                      " items together (at key \"" + key + "\"); a real model's hold far fewer");
  if (v.element_type == GgufType::Array && depth >= 2) corrupt(path, "key \"" + key + "\" nests arrays too deeply");
  if (v.element_type == GgufType::String) v.strings.reserve(static_cast<size_t>(v.count));
  else if (v.element_type != GgufType::Array) v.items.reserve(static_cast<size_t>(v.count));
  for (uint64_t i = 0; i < v.count; ++i) {
    GgufValue item;
    read_value(r, v.element_type, item, key, path, depth + 1, budget);
    if (v.element_type == GgufType::String) v.strings.push_back(std::move(item.text));
    else if (v.element_type != GgufType::Array) v.items.push_back(item.number);
  }
}

}  // namespace

std::optional<DType> dtype_from_ggml(uint32_t t) {
  switch (t) {
    case 0: return DType::F32;
    case 1: return DType::F16;
    case 2: return DType::Q4_0;
    case 3: return DType::Q4_1;
    case 8: return DType::Q8_0;
    case 12: return DType::Q4_K;
    case 13: return DType::Q5_K;
    case 14: return DType::Q6_K;
    case 30: return DType::BF16;
    default: return std::nullopt;
  }
}

const char* ggml_type_name(uint32_t t) {
  static const char* names[] = {"F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1",
                                "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",
                                "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
                                "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16"};
  return t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  Reader r(file_->data(), file_->size(), path);
  if (file_->size() < 4 || r.read<uint32_t>("the magic") != kMagic)
    throw Error(ErrorCode::BadModelFile, path + " is not a GGUF file (wrong magic number)");
  version_ = r.read<uint32_t>("the version");
  if (version_ != 2 && version_ != 3)
    throw Error(ErrorCode::UnsupportedModel, path + ": GGUF version " + std::to_string(version_) +
                                                 " is not supported (Folio reads versions 2 and 3); convert the model again");
  const uint64_t n_tensors = r.read<uint64_t>("the tensor count");
  const uint64_t n_keys = r.read<uint64_t>("the key count");
  if (n_tensors > kMaxTensors || n_tensors > r.remaining() / 24)
    corrupt(path, "absurd tensor count " + std::to_string(n_tensors));
  if (n_keys > kMaxKeys || n_keys > r.remaining() / 12) corrupt(path, "absurd metadata key count " + std::to_string(n_keys));

  ArrayBudget budget;
  for (uint64_t k = 0; k < n_keys; ++k) {
    std::string key = r.read_string("a metadata key", limits::kMaxGgufNameBytes);
    const uint32_t t = r.read<uint32_t>("a metadata type");
    if (!valid_type(t)) corrupt(path, "key \"" + printable_name(key) + "\" has unknown type " + std::to_string(t));
    GgufValue v;
    read_value(r, static_cast<GgufType>(t), v, printable_name(key), path, 0, budget);  // the key as messages show it
    if (metadata_.count(key) != 0) corrupt(path, "metadata key \"" + printable_name(key) + "\" appears twice");
    metadata_[key] = std::move(v);
  }

  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo info;
    info.name = r.read_string("a tensor name", limits::kMaxGgufNameBytes);
    const uint32_t n_dims = r.read<uint32_t>("a tensor's dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      corrupt(path, "tensor \"" + printable_name(info.name) + "\" has " + std::to_string(n_dims) + " dimensions");
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = r.read<uint64_t>("a tensor dimension");
      if (dim == 0 || dim > (uint64_t{1} << 40))
        corrupt(path, "tensor \"" + printable_name(info.name) + "\" has a bad dimension");
      info.dims.push_back(static_cast<int64_t>(dim));
    }
    info.ggml_type = r.read<uint32_t>("a tensor type");
    info.offset = r.read<uint64_t>("a tensor offset");
    if (auto dt = dtype_from_ggml(info.ggml_type)) {
      info.dtype = *dt;
      info.supported = true;
    }
    if (tensor_index_.count(info.name) != 0)
      corrupt(path, "tensor \"" + printable_name(info.name) + "\" is listed twice");
    tensor_index_[info.name] = tensors_.size();
    tensors_.push_back(std::move(info));
  }

  uint64_t alignment = 32;
  if (auto a = get_int("general.alignment")) {
    if (*a <= 0 || *a > 65536 || (*a & (*a - 1)) != 0) corrupt(path, "general.alignment is not a power of two");
    alignment = static_cast<uint64_t>(*a);
  }
  const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  if (data_start > file_->size() && !tensors_.empty()) corrupt(path, "the tensor data is missing");
  const uint64_t data_size = file_->size() - std::min<uint64_t>(data_start, file_->size());
  for (auto& t : tensors_) {
    if (!t.supported) continue;  // an error only if the model needs it (the loader says which)
    uint64_t numel = 1;
    for (int64_t d : t.dims) {
      if (numel > (uint64_t{1} << 50) / static_cast<uint64_t>(d))
        corrupt(path, "tensor \"" + printable_name(t.name) + "\" is impossibly large");
      numel *= static_cast<uint64_t>(d);
    }
    const int64_t block = block_elements(t.dtype);
    if (t.dims[0] % block != 0)
      corrupt(path, "tensor \"" + printable_name(t.name) + "\" has rows of " + std::to_string(t.dims[0]) +
                        " values, not a multiple of " + std::to_string(block) + " for " + dtype_name(t.dtype));
    t.bytes = static_cast<size_t>(numel / static_cast<uint64_t>(block) * block_bytes(t.dtype));
    if (t.offset > data_size || t.bytes > data_size - t.offset)
      corrupt(path, "tensor \"" + printable_name(t.name) + "\" runs past the end of the file (truncated download?)");
    t.data = file_->data() + data_start + t.offset;
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type != GgufType::String) return std::nullopt;
  return v->text;
}

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type == GgufType::String || v->type == GgufType::Array) return std::nullopt;
  return v->integer;
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type == GgufType::String || v->type == GgufType::Array) return std::nullopt;
  return v->number;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace folio
