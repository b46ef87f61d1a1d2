// The OpenAI-compatible HTTP API of folio-server as data: request bodies parsed and checked into a
// CompletionRequest, and the JSON of responses, stream chunks and errors. No sockets here, so every
// 4xx rule is a plain function a unit test can call.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/engine/engine.h"
#include "core/tokenizer/chat_format.h"

namespace folio::server {

// An answer other than 200, as OpenAI writes it: {"error":{"message","type","param","code"}}.
// Thrown by the parsers and caught at the HTTP edge.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string type, std::string param = {}, std::string code = {})
      : std::runtime_error(message),
        status_(status),
        type_(std::move(type)),
        param_(std::move(param)),
        code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }  // "" = null
  const std::string& code() const { return code_; }    // "" = null

 private:
  int status_;
  std::string type_, param_, code_;
};

// 400 invalid_request_error naming the field.
ApiError bad_request(const std::string& message, const std::string& param = {}, const std::string& code = {});
nlohmann::json error_json(const ApiError& e);

enum class Endpoint { ChatCompletions, Completions };

// What the client asked for, checked (ranges, types) but not yet tokenized.
struct CompletionRequest {
  Endpoint endpoint = Endpoint::ChatCompletions;
  std::string model;                  // "" = not given
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions: text (BOS is added) ...
  std::vector<int32_t> prompt_ids;    // ... or token ids as given (no BOS added)
  bool prompt_is_ids = false;
  std::optional<int> max_tokens;  // none = until the context is full
  SamplerParams sampler;          // OpenAI's temperature defaults to 1 (sampled), as there
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with usage
};

// Limits a request is checked against.
struct RequestLimits {
  int max_stop_strings = 4;
  size_t max_stop_bytes = 256;
  int max_tokens_cap = 1 << 20;
};

// Parses and checks a body; throws ApiError (400) for malformed JSON, a field of the wrong type,
// a value out of range or a feature Folio does not offer (n > 1, logprobs, tools).
CompletionRequest parse_completion_request(const std::string& body, Endpoint endpoint,
                                           const RequestLimits& limits = {});

// "stop" for EOS and stop strings, "length" for max_tokens and a full context; "" while running.
const char* finish_reason(StopReason stop);

// The `folio` field: Folio's own numbers of the request (the engine's Metrics) plus the wait in
// the queue, so a client can show what the app's performance panel shows.
nlohmann::json folio_json(const Metrics& m, double queue_ms);
nlohmann::json usage_json(const Metrics& m);

// Identity of one response: id ("chatcmpl-..." or "cmpl-..."), created (unix seconds), model.
struct ResponseHead {
  std::string id;
  int64_t created = 0;
  std::string model;
};

nlohmann::json completion_json(Endpoint endpoint, const ResponseHead& head, const RequestResult& result,
                               double queue_ms);
// One streamed chunk: a piece of text (the first chat chunk carries role "assistant").
nlohmann::json chunk_json(Endpoint endpoint, const ResponseHead& head, const std::string& text, bool first);
// The last chunk with the finish reason and the folio field (and usage when asked for).
nlohmann::json final_chunk_json(Endpoint endpoint, const ResponseHead& head, const RequestResult& result,
                                double queue_ms);
// stream_options.include_usage: a chunk with no choices and the usage.
nlohmann::json usage_chunk_json(Endpoint endpoint, const ResponseHead& head, const Metrics& m);

// Compares two secrets in time that depends only on their lengths, not on where they differ.
bool constant_time_equal(const std::string& a, const std::string& b);

}  // namespace folio::server
