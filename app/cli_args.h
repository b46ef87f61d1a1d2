// A small argument reader shared by folio-cli and folio-bench: options with values, checked ranges.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/model/quant.h"

namespace folio::cli {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  Args(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool done() const { return i_ >= argc_; }
  std::string peek() const { return done() ? std::string() : std::string(argv_[i_]); }
  std::string next() { return std::string(argv_[i_++]); }
  std::string value(const std::string& option) {
    if (done()) throw UsageError(option + " needs a value");
    return next();
  }
  int64_t integer(const std::string& option, int64_t lo, int64_t hi) {
    std::string v = value(option);
    size_t used = 0;
    long long x = 0;
    try {
      x = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != v.size() || x < lo || x > hi)
      throw UsageError(option + " takes a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                       ", not \"" + v + "\"");
    return x;
  }
  double number(const std::string& option, double lo, double hi) {
    std::string v = value(option);
    size_t used = 0;
    double x = 0;
    try {
      x = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != v.size() || !(x >= lo && x <= hi))
      throw UsageError(option + " takes a number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                       ", not \"" + v + "\"");
    return x;
  }
  // A list of GPU indices, "0,1,3": each from 0 to 1023, none twice, at least one.
  std::vector<int> gpu_list(const std::string& option) {
    const std::string v = value(option);
    std::vector<int> ids;
    size_t start = 0;
    while (start <= v.size()) {
      const size_t comma = std::min(v.find(',', start), v.size());
      const std::string item = v.substr(start, comma - start);
      size_t used = 0;
      long long x = -1;
      try {
        x = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (item.empty() || used != item.size() || x < 0 || x > 1023)
        throw UsageError(option + " takes GPU indices from 0 to 1023 separated by commas (e.g. 0,1), not \"" + v +
                         "\"");
      for (int id : ids)
        if (id == x) throw UsageError(option + " names GPU " + item + " twice: \"" + v + "\"");
      ids.push_back(static_cast<int>(x));
      start = comma + 1;
    }
    return ids;
  }

  // --kv-dtype native|fp8|q8: the KV cache's values.
  KvQuant kv_dtype(const std::string& option) {
    const std::string v = value(option);
    if (v != "native" && v != "fp8" && v != "q8") throw UsageError(option + " takes native, fp8 or q8, not " + v);
    return v == "fp8" ? KvQuant::Fp8 : v == "q8" ? KvQuant::Q8 : KvQuant::None;
  }

  // --gpus LIST into an engine's options: one GPU is the same as --gpu N; two or more lay the model
  // across them (tensor parallel), the first also the engine's GPU.
  void gpus(const std::string& option, int& gpu_device, std::vector<int>& gpu_devices) {
    std::vector<int> ids = gpu_list(option);
    gpu_device = ids.front();
    if (ids.size() > 1) gpu_devices = std::move(ids);
    else gpu_devices.clear();
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 1;
};

}  // namespace folio::cli
