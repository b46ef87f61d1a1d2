#include "core/remote/remote_engine.h"

#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace folio::remote {

using nlohmann::json;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The server's error object, when the body is one: message and code ("" when absent).
struct ServerError {
  std::string message;
  std::string code;
  int64_t context_tokens = 0;  // the server's context, where the error says it (llama.cpp's n_ctx)
};

ServerError parse_server_error(const std::string& body) {
  ServerError e;
  try {
    const json j = json::parse(body);
    const json& err = j.contains("error") ? j["error"] : j;
    if (err.is_object()) {
      if (err.contains("message") && err["message"].is_string()) e.message = err["message"].get<std::string>();
      if (err.contains("code") && err["code"].is_string()) e.code = err["code"].get<std::string>();
      if (err.contains("n_ctx") && err["n_ctx"].is_number_integer()) e.context_tokens = err["n_ctx"].get<int64_t>();
      // OpenAI's wording, which vLLM and llama-cpp-python's server copy: "This model's maximum
      // context length is 1024 tokens. However, ..."
      const std::string said = "maximum context length is ";
      if (const size_t at = e.message.find(said); e.context_tokens == 0 && at != std::string::npos)
        e.context_tokens = std::strtoll(e.message.c_str() + at + said.size(), nullptr, 10);
    } else if (err.is_string()) {
      e.message = err.get<std::string>();
    }
    // FastAPI-style servers (llama-cpp-python) answer {"detail": "..."}.
    if (e.message.empty() && j.contains("detail"))
      e.message = j["detail"].is_string() ? j["detail"].get<std::string>() : j["detail"].dump();
  } catch (const json::exception&) {
  }
  if (e.message.empty()) e.message = body.substr(0, 300);
  return e;
}

bool mentions_context(const std::string& s) {
  // OpenAI and vLLM ("maximum context length"), llama.cpp's server ("exceeds the available context
  // size"), folio-server (code context_length_exceeded, "this model's context is N tokens").
  for (const char* w : {"context length", "context_length", "maximum context", "context window", "context of",
                        "context size", "context is"})
    if (s.find(w) != std::string::npos) return true;
  return false;
}

}  // namespace

struct RemoteEngine::Http {
  explicit Http(const std::string& scheme_host_port) : client(scheme_host_port) {}
  httplib::Client client;
};

RemoteEngine::RemoteEngine(RemoteOptions options) : options_(std::move(options)) {
  const std::string& url = options_.url;
  const size_t scheme_end = url.find("://");
  const std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https")
    throw Error(ErrorCode::BadArgument,
                "the remote URL must start with http:// or https:// (e.g. http://host:8080/v1), not \"" + url + "\"");
  const size_t path_start = url.find('/', scheme_end + 3);
  const std::string host = url.substr(0, path_start);
  if (host.size() <= scheme_end + 3) throw Error(ErrorCode::BadArgument, "the remote URL has no host: \"" + url + "\"");
  base_path_ = path_start == std::string::npos ? "" : url.substr(path_start);
  while (!base_path_.empty() && base_path_.back() == '/') base_path_.pop_back();
  http_ = std::make_unique<Http>(host);
  http_->client.set_connection_timeout(options_.connect_timeout_s, 0);
  http_->client.set_read_timeout(options_.read_timeout_s, 0);
  http_->client.set_write_timeout(60, 0);
  http_->client.set_keep_alive(true);
}

RemoteEngine::~RemoteEngine() = default;

namespace {

// An HTTP answer other than 200 as the error the user can act on.
// `listing`: the answer to GET /models, where a 404 means the path is not an OpenAI API (its body
// may well mention "models") rather than an unknown model.
RemoteError refusal(const std::string& url, int status, const std::string& body, const std::string& model,
                    int64_t context_tokens, bool listing = false) {
  const ServerError e = parse_server_error(body);
  const std::string detail = "HTTP " + std::to_string(status) + ": " + e.message;
  const std::string said = " (" + detail + ")";
  auto fail = [&](RemoteFailure f, ErrorCode code, const std::string& message) {
    return RemoteError(f, code, message, detail);
  };
  if (status == 401 || status == 403)
    return fail(RemoteFailure::Unauthorized, ErrorCode::BackendUnavailable,
                "the server at " + url + " refused the API key" + said + "; give the key it expects with --api-key");
  if (status == 404 && !listing && (e.code == "model_not_found" || e.message.find("model") != std::string::npos))
    return fail(RemoteFailure::ModelNotFound, ErrorCode::BackendUnavailable,
                "the server at " + url + " does not serve the model '" + model + "'" + said +
                    "; choose one it lists at " + url + "/models (--remote-model)");
  if (status == 404 || status == 405)
    return fail(RemoteFailure::WrongProtocol, ErrorCode::BackendUnavailable,
                "the server at " + url + " has no such endpoint" + said +
                    "; --url should end with the API's base path, e.g. /v1");
  if (context_tokens <= 0) context_tokens = e.context_tokens;
  if ((status == 400 || status == 413 || status == 422) &&
      (e.code == "context_length_exceeded" || mentions_context(e.message)))
    return fail(RemoteFailure::ContextTooLong, ErrorCode::OutOfContext,
                "the prompt is longer than the server's context" +
                    (context_tokens > 0 ? " of " + std::to_string(context_tokens) + " tokens" : std::string()) + said +
                    "; choose fewer or shorter documents, fewer answer tokens, or a server with a larger context");
  if (status == 503 || status == 429)
    return fail(RemoteFailure::Busy, ErrorCode::BackendUnavailable,
                "the server at " + url + " is busy" + said + "; try again shortly");
  return fail(RemoteFailure::Refused, ErrorCode::BackendUnavailable,
              "the server at " + url + " refused the request" + said);
}

RemoteError unreachable(const std::string& url, httplib::Error err) {
  return RemoteError(
      RemoteFailure::Unreachable, ErrorCode::BackendUnavailable,
      "cannot reach the server at " + url + " (" + httplib::to_string(err) + "): is it running, and is --url right?",
      httplib::to_string(err));
}

}  // namespace

RemoteModel RemoteEngine::connect() {
  httplib::Headers headers;
  if (!options_.api_key.empty()) headers.emplace("Authorization", "Bearer " + options_.api_key);
  httplib::Result res = http_->client.Get(base_path_ + "/models", headers);
  if (!res) throw unreachable(options_.url, res.error());
  if (res->status != 200) throw refusal(options_.url, res->status, res->body, options_.model, 0, /*listing=*/true);
  std::vector<RemoteModel> models;
  try {
    const json j = json::parse(res->body);
    for (const json& m : j.at("data")) {
      RemoteModel rm;
      rm.id = m.at("id").get<std::string>();
      if (m.contains("folio") && m["folio"].contains("context_tokens"))
        rm.context_tokens = m["folio"]["context_tokens"].get<int64_t>();
      else if (m.contains("max_model_len") && m["max_model_len"].is_number_integer())  // vLLM
        rm.context_tokens = m["max_model_len"].get<int64_t>();
      else if (m.contains("meta") && m["meta"].is_object() && m["meta"].contains("n_ctx") &&
               m["meta"]["n_ctx"].is_number_integer())  // llama.cpp's server (llama-server)
        rm.context_tokens = m["meta"]["n_ctx"].get<int64_t>();
      models.push_back(rm);
    }
  } catch (const json::exception& e) {
    throw RemoteError(RemoteFailure::WrongProtocol, ErrorCode::BackendUnavailable,
                      "the server at " + options_.url +
                          " answered /models with something other than an OpenAI model list (" + e.what() +
                          "); is --url the API's base (e.g. http://host:8080/v1)?",
                      e.what());
  }
  if (models.empty())
    throw RemoteError(RemoteFailure::ModelNotFound, ErrorCode::BackendUnavailable,
                      "the server at " + options_.url + " lists no models", "");
  if (options_.model.empty()) {
    model_ = models.front();
    return model_;
  }
  std::string listed;
  for (const RemoteModel& m : models) {
    if (m.id == options_.model) {
      model_ = m;
      return model_;
    }
    listed += (listed.empty() ? "" : ", ") + m.id;
  }
  throw RemoteError(RemoteFailure::ModelNotFound, ErrorCode::BackendUnavailable,
                    "the server at " + options_.url + " does not serve the model '" + options_.model +
                        "'; it serves: " + listed + " (--remote-model)",
                    "it serves: " + listed);
}

namespace {

json request_body(const GenerateOptions& options, const std::string& model) {
  json j;
  if (!model.empty()) j["model"] = model;
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  j["max_tokens"] = options.max_tokens;
  j["temperature"] = options.sampler.temperature;
  if (options.sampler.top_p < 1.0f) j["top_p"] = options.sampler.top_p;
  if (options.sampler.top_k > 0) j["top_k"] = options.sampler.top_k;
  if (options.sampler.min_p > 0.0f) j["min_p"] = options.sampler.min_p;
  j["seed"] = options.sampler.seed;
  if (!options.stop_strings.empty()) j["stop"] = options.stop_strings;
  return j;
}

}  // namespace

RemoteResult RemoteEngine::chat(const std::vector<ChatMessage>& messages, const GenerateOptions& options) {
  json body = request_body(options, model_.id);
  body["messages"] = json::array();
  for (const ChatMessage& m : messages) body["messages"].push_back({{"role", m.role}, {"content", m.content}});
  return stream(base_path_ + "/chat/completions", body.dump(), true, options);
}

RemoteResult RemoteEngine::complete(const std::string& prompt, const GenerateOptions& options) {
  json body = request_body(options, model_.id);
  body["prompt"] = prompt;
  return stream(base_path_ + "/completions", body.dump(), false, options);
}

RemoteResult RemoteEngine::stream(const std::string& path, const std::string& body, bool chat,
                                  const GenerateOptions& options) {
  RemoteResult out;
  Metrics& m = out.result.metrics;
  m.backend = "remote " + (model_.id.empty() ? std::string() : model_.id + " at ") + options_.url;
  int status = 0;
  std::string error_body;  // the body of an answer other than 200
  std::string pending;     // SSE bytes not yet split into lines
  bool done = false, finished = false;
  int64_t pieces = 0;
  double first_ms = 0.0, last_ms = 0.0;
  std::string finish;
  const double t0 = now_ms();

  int64_t events = 0;  // data lines, [DONE] included
  auto on_event = [&](const std::string& data) {
    ++events;
    if (data == "[DONE]") {
      done = true;
      return;
    }
    json ev;
    try {
      ev = json::parse(data);
    } catch (const json::exception&) {
      return;  // not an event of the API: ignored
    }
    if (ev.contains("error")) {
      out.cut = true;
      out.cut_reason = "the server reported an error mid-answer: " + parse_server_error(data).message;
      return;
    }
    if (ev.contains("usage") && ev["usage"].is_object()) {
      const json& u = ev["usage"];
      if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer()) {
        m.prompt_tokens = u["prompt_tokens"].get<int64_t>();
        out.usage_from_server = true;
      }
      if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
        m.decode_tokens = u["completion_tokens"].get<int64_t>();
    }
    if (ev.contains("folio")) out.server_metrics_json = ev["folio"].dump();
    if (!ev.contains("choices") || !ev["choices"].is_array() || ev["choices"].empty()) return;
    const json& ch = ev["choices"][0];
    std::string text;
    if (chat && ch.contains("delta") && ch["delta"].contains("content") && ch["delta"]["content"].is_string())
      text = ch["delta"]["content"].get<std::string>();
    else if (!chat && ch.contains("text") && ch["text"].is_string())
      text = ch["text"].get<std::string>();
    if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) {
      finish = ch["finish_reason"].get<std::string>();
      finished = true;
    }
    if (text.empty()) return;
    last_ms = now_ms();
    if (pieces++ == 0) {
      first_ms = last_ms;
      m.ttft_ms = first_ms - t0;
    }
    out.result.text += text;
    if (options.on_token) options.on_token(-1, text);
  };

  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");
  if (!options_.api_key.empty()) req.set_header("Authorization", "Bearer " + options_.api_key);
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (status != 200) {
      if (error_body.size() < (1u << 20)) error_body.append(data, n);
      return true;
    }
    pending.append(data, n);
    size_t start = 0, nl;
    while ((nl = pending.find('\n', start)) != std::string::npos) {
      std::string line = pending.substr(start, nl - start);
      start = nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.rfind("data:", 0) == 0) on_event(line.substr(line.size() > 5 && line[5] == ' ' ? 6 : 5));
    }
    pending.erase(0, start);
    return !(options.cancel != nullptr && options.cancel->cancelled());
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool ok = http_->client.send(req, res, err);
  m.total_ms = now_ms() - t0;

  if (status != 0 && status != 200) throw refusal(options_.url, status, error_body, model_.id, model_.context_tokens);
  if (!ok && status == 0) throw unreachable(options_.url, err);
  // A stream that ended before its first event: llama-cpp-python's server answers a streamed
  // request it refuses (a prompt longer than its context) with 200 and an empty stream. Asked
  // again without streaming, it says why (or answers).
  if (ok && status == 200 && events == 0 && !(options.cancel != nullptr && options.cancel->cancelled()))
    return unstreamed(path, body, chat, options, t0);
  if (pieces > 0) {
    m.decode_ms = last_ms - first_ms;
    if (!out.usage_from_server || m.decode_tokens == 0) m.decode_tokens = pieces;
    // Pieces that arrive together (a fast model, one network read) say nothing about the rate.
    if (m.decode_tokens > 1 && m.decode_ms >= 5.0) m.decode_tok_s = double(m.decode_tokens - 1) * 1000.0 / m.decode_ms;
  }
  if (options.cancel != nullptr && options.cancel->cancelled()) {
    m.stop = StopReason::Cancelled;
    return out;
  }
  if (!out.cut && (!ok || !(done || finished))) {
    out.cut = true;
    out.cut_reason = !ok ? "the connection to " + options_.url + " was lost (" + httplib::to_string(err) + ")"
                         : "the server at " + options_.url + " ended the stream before the answer was finished";
  }
  if (finish == "length")
    m.stop = StopReason::MaxTokens;
  else if (finish == "stop")
    m.stop = StopReason::Eos;
  return out;
}

RemoteResult RemoteEngine::unstreamed(const std::string& path, const std::string& body, bool chat,
                                      const GenerateOptions& options, double t0_ms) {
  json request = json::parse(body);
  request["stream"] = false;
  request.erase("stream_options");
  httplib::Headers headers;
  if (!options_.api_key.empty()) headers.emplace("Authorization", "Bearer " + options_.api_key);
  httplib::Result res = http_->client.Post(path, headers, request.dump(), "application/json");
  if (!res) throw unreachable(options_.url, res.error());
  if (res->status != 200) throw refusal(options_.url, res->status, res->body, model_.id, model_.context_tokens);
  RemoteResult out;
  Metrics& m = out.result.metrics;
  m.backend = "remote " + (model_.id.empty() ? std::string() : model_.id + " at ") + options_.url;
  std::string finish;
  try {
    const json j = json::parse(res->body);
    const json& ch = j.at("choices").at(0);
    out.result.text = chat ? ch.at("message").value("content", std::string()) : ch.value("text", std::string());
    if (ch.contains("finish_reason") && ch["finish_reason"].is_string())
      finish = ch["finish_reason"].get<std::string>();
    if (j.contains("usage") && j["usage"].is_object()) {
      const json& u = j["usage"];
      if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer()) {
        m.prompt_tokens = u["prompt_tokens"].get<int64_t>();
        out.usage_from_server = true;
      }
      if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
        m.decode_tokens = u["completion_tokens"].get<int64_t>();
    }
    if (j.contains("folio")) out.server_metrics_json = j["folio"].dump();
  } catch (const json::exception& e) {
    throw RemoteError(RemoteFailure::WrongProtocol, ErrorCode::BackendUnavailable,
                      "the server at " + options_.url + " sent an empty stream, and without streaming an answer " +
                          "that is not an OpenAI completion (" + e.what() + ")",
                      e.what());
  }
  // The whole answer came at once: the time to it is the time to its first token.
  m.total_ms = now_ms() - t0_ms;
  if (!out.result.text.empty()) {
    m.ttft_ms = m.total_ms;
    if (options.on_token) options.on_token(-1, out.result.text);
  }
  if (finish == "length")
    m.stop = StopReason::MaxTokens;
  else if (finish == "stop")
    m.stop = StopReason::Eos;
  return out;
}

}  // namespace folio::remote
