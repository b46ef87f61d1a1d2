#include "core/common/error.h"

namespace folio {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::FileNotFound: return "file not found";
    case ErrorCode::FileUnreadable: return "file unreadable";
    case ErrorCode::BadModelFile: return "bad model file";
    case ErrorCode::BadConfig: return "bad model config";
    case ErrorCode::UnsupportedModel: return "unsupported model";
    case ErrorCode::BadTokenizer: return "bad tokenizer";
    case ErrorCode::BadArgument: return "bad argument";
    case ErrorCode::OutOfContext: return "out of context";
    case ErrorCode::OutOfMemory: return "out of memory";
    case ErrorCode::Cancelled: return "cancelled";
    case ErrorCode::BackendUnavailable: return "backend unavailable";
    case ErrorCode::Internal: return "internal error";
  }
  return "error";
}

}  // namespace folio
