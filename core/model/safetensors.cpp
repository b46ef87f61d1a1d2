#include "core/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/common/input_limits.h"

namespace folio {

namespace {
[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::BadModelFile,
              path + ": " + what + "; the file is damaged or incomplete, download it again");
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  const size_t size = file_->size();
  if (size < 8) corrupt(path, "too short to be a safetensors file (" + std::to_string(size) + " bytes)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_->data(), 8);
  if (header_len > size - 8)
    corrupt(path, "header length " + std::to_string(header_len) + " is larger than the file (" +
                      std::to_string(size) + " bytes)");
  if (header_len < 2) corrupt(path, "empty header");
  const std::string_view header_text(reinterpret_cast<const char*>(file_->data() + 8), static_cast<size_t>(header_len));
  limits::check_json_bounds(header_text, limits::kSafetensorsHeader, path, ErrorCode::BadModelFile);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(file_->data() + 8, file_->data() + 8 + header_len);
  } catch (const nlohmann::json::exception&) {
    corrupt(path, "the header is not valid JSON");
  }
  if (!header.is_object()) corrupt(path, "the header is not a JSON object");
  const uint8_t* data_start = file_->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const auto& e = it.value();
    const std::string& name = it.key();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      corrupt(path, "tensor \"" + printable_name(name) + "\" lacks dtype, shape or data_offsets");
    SafetensorsEntry entry;
    if (!e["dtype"].is_string())
      corrupt(path, "tensor \"" + printable_name(name) + "\" has a dtype that is not a string");
    std::string dt = e["dtype"].get<std::string>();
    if (dt == "F32") entry.dtype = DType::F32;
    else if (dt == "F16") entry.dtype = DType::F16;
    else if (dt == "BF16") entry.dtype = DType::BF16;
    else
      throw Error(ErrorCode::UnsupportedModel, path + ": tensor \"" + name + "\" has type " + dt +
                                                   "; Folio reads F32, F16 and BF16 safetensors");
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        corrupt(path, "tensor \"" + printable_name(name) + "\" has a bad shape");
      entry.shape.push_back(d.get<int64_t>());
      uint64_t dim = static_cast<uint64_t>(d.get<int64_t>());
      if (dim != 0 && numel > data_size / dim)
        corrupt(path, "tensor \"" + printable_name(name) + "\" is larger than the file");
      numel *= dim;
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      corrupt(path, "tensor \"" + printable_name(name) + "\" has bad data_offsets");
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size)
      corrupt(path, "tensor \"" + printable_name(name) + "\" runs past the end of the file (bytes " +
                        std::to_string(begin) + ".." + std::to_string(end) + " of " + std::to_string(data_size) + ")");
    if (end - begin != numel * dtype_size(entry.dtype))
      corrupt(path, "tensor \"" + printable_name(name) + "\" has " + std::to_string(end - begin) +
                        " bytes but its shape needs " + std::to_string(numel * dtype_size(entry.dtype)));
    entry.data = data_start + begin;
    entry.bytes = end - begin;
    ranges.emplace_back(begin, end);
    tensors_.emplace(name, std::move(entry));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) corrupt(path, "two tensors overlap in the file");
}

}  // namespace folio
