// A model that runs elsewhere, behind an OpenAI-compatible API (folio-server, vLLM, SGLang,
// llama.cpp's server): the same chat messages the local engine would get are sent to
// {url}/chat/completions and streamed back. Times are measured here, at the client (TTFT, decode
// rate); the server's own numbers are kept when it sends them (folio-server's `folio` field).
// Errors say what the user can do: server unreachable, API key refused, model not served, prompt
// longer than the server's context (with its limit), stream cut mid-answer (the text received is
// kept). Qt-free; built where cpp-httplib is.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/engine/engine.h"
#include "core/tokenizer/chat_format.h"

namespace folio::remote {

struct RemoteOptions {
  std::string url;      // the API base, e.g. http://host:8080/v1 (https works too)
  std::string api_key;  // "" = none sent
  std::string model;    // "" = the first model the server lists
  int connect_timeout_s = 10;
  int read_timeout_s = 600;  // the longest silence while waiting for a token (long prefills)
};

// What kind of failure a RemoteError is, so a front end can word it for its own controls (folio-cli
// names its options, the app its Settings fields).
enum class RemoteFailure {
  Unreachable,     // no connection, or no HTTP answer (wrong host or port, server down, not HTTP)
  WrongProtocol,   // an HTTP answer, but not an OpenAI-compatible API at that base path
  Unauthorized,    // 401/403: the API key is missing or wrong
  ModelNotFound,   // the server does not serve the model asked for
  ContextTooLong,  // the prompt does not fit the server's context
  Busy,            // 503/429
  Refused,         // any other refusal
};

class RemoteError : public Error {
 public:
  // `detail`: what the server or the connection said, in its own words ("" when nothing).
  RemoteError(RemoteFailure failure, ErrorCode code, const std::string& message, std::string detail)
      : Error(code, message), failure_(failure), detail_(std::move(detail)) {}
  RemoteFailure failure() const { return failure_; }
  const std::string& detail() const { return detail_; }

 private:
  RemoteFailure failure_;
  std::string detail_;
};

struct RemoteModel {
  std::string id;
  int64_t context_tokens = 0;  // 0 = the server did not say (folio-server and vLLM do)
};

// What one remote request gave.
struct RemoteResult {
  RequestResult result;  // text; metrics measured at the client (backend "remote <url>")
  // The server's own metrics (folio-server's `folio` object as JSON text); "" when it sent none.
  std::string server_metrics_json;
  bool usage_from_server = false;  // prompt/decode token counts came from the server's usage
  // The stream ended before the server said it was done: result.text holds what came, cut_reason
  // says why (connection lost, an error event).
  bool cut = false;
  std::string cut_reason;
};

class RemoteEngine {
 public:
  explicit RemoteEngine(RemoteOptions options);
  ~RemoteEngine();
  RemoteEngine(const RemoteEngine&) = delete;
  RemoteEngine& operator=(const RemoteEngine&) = delete;

  // GET {url}/models: the server answers, accepts the key and serves the model (the one asked
  // for, else its first). Throws RemoteError with what to do.
  RemoteModel connect();
  const RemoteModel& model() const { return model_; }
  const std::string& url() const { return options_.url; }

  // A streamed chat completion of these messages. Uses the sampler's temperature, top_p, top_k,
  // min_p and seed, max_tokens and the stop strings of `options`; calls options.on_token for each
  // piece of text and stops (cancel) when options.cancel is set. Throws RemoteError when the
  // server refuses the request; a stream cut mid-answer returns with cut set.
  RemoteResult chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options);
  // The same for a raw completion of `prompt` ({url}/completions).
  RemoteResult complete(const std::string& prompt, const GenerateOptions& options);

 private:
  RemoteResult stream(const std::string& path, const std::string& body, bool chat, const GenerateOptions& options);
  // The same request without streaming: the fallback for a stream that ended before its first event.
  RemoteResult unstreamed(const std::string& path, const std::string& body, bool chat, const GenerateOptions& options,
                          double t0_ms);

  struct Http;
  RemoteOptions options_;
  std::unique_ptr<Http> http_;
  std::string base_path_;  // the URL's path ("/v1")
  RemoteModel model_;
};

}  // namespace folio::remote
