// Reader of the safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}}, then the tensor bytes. Every offset is
// checked against the file before any tensor is used.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/common/mapped_file.h"
#include "core/model/tensor.h"

namespace folio {

struct SafetensorsEntry {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates the file; throws Error(BadModelFile / UnsupportedModel) naming it.
  explicit SafetensorsFile(const std::string& path);
  const std::map<std::string, SafetensorsEntry>& tensors() const { return tensors_; }
  const std::string& path() const { return file_->path(); }
  std::unique_ptr<MappedFile> release_mapping() { return std::move(file_); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, SafetensorsEntry> tensors_;
};

}  // namespace folio
