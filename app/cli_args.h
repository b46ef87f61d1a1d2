// A small argument reader shared by folio-cli and folio-bench: options with values, checked ranges.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

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

 private:
  int argc_;
  char** argv_;
  int i_ = 1;
};

}  // namespace folio::cli
