// Typed errors of the engine. Library code throws folio::Error; app/ and ui/ catch it at the
// engine API edge and show what() (one line: what was wrong and what to do).
#pragma once

#include <stdexcept>
#include <string>

namespace folio {

enum class ErrorCode {
  FileNotFound,
  FileUnreadable,
  BadModelFile,      // corrupt or truncated weights, bad header
  BadConfig,         // config.json missing fields, bad values
  UnsupportedModel,  // unknown architecture or tensor type
  BadTokenizer,
  BadArgument,
  OutOfContext,      // request longer than the session's context
  OutOfMemory,
  Cancelled,
  BackendUnavailable,
  Internal,
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace folio
