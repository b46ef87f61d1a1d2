// Reader of GGUF v2/v3 files (llama.cpp's format): metadata key/values of every type including
// arrays, tensor infos, alignment, and tensor data used in place from a memory map. Every count,
// length and offset is checked against the file before use.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/common/mapped_file.h"
#include "core/model/tensor.h"

namespace folio {

enum class GgufType : uint32_t {
  UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
  String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
};

// One metadata value. Scalars fill `number` (and `text` for strings); arrays fill `items`
// (numbers) or `strings`, with `element_type` saying which.
struct GgufValue {
  GgufType type = GgufType::UInt8;
  double number = 0.0;       // every numeric scalar and bool (int64 beyond 2^53 loses precision)
  int64_t integer = 0;       // exact for integer scalars
  std::string text;          // String
  GgufType element_type = GgufType::UInt8;  // Array
  std::vector<double> items;                // numeric arrays
  std::vector<std::string> strings;         // string arrays
  uint64_t count = 0;                       // array length (nested arrays are counted, not kept)
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (column) dimension
  uint32_t ggml_type = 0;
  DType dtype = DType::F32;   // valid when supported
  bool supported = false;
  uint64_t offset = 0;        // from the start of the data section
  const void* data = nullptr;
  size_t bytes = 0;
};

class GgufFile {
 public:
  // Maps and validates; throws Error(BadModelFile / UnsupportedModel) naming the file.
  explicit GgufFile(const std::string& path);

  uint32_t version() const { return version_; }
  const std::string& path() const { return file_->path(); }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* find(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  const GgufTensorInfo* find_tensor(const std::string& name) const;

  std::unique_ptr<MappedFile> release_mapping() { return std::move(file_); }

 private:
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// The ggml type number of a DType and back (nullopt for types Folio does not read).
std::optional<DType> dtype_from_ggml(uint32_t ggml_type);
const char* ggml_type_name(uint32_t ggml_type);

}  // namespace folio
