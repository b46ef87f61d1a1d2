#include "app/server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>

#include "app/server/generation_queue.h"
#include "app/server/openai_api.h"
#include "app/server/server_metrics.h"
#include "core/engine/chat_prompt.h"

namespace folio::server {

using nlohmann::json;

namespace {

const char* kJson = "application/json";

// Generated text may hold bytes that are not UTF-8 (a byte-fallback token on its own): they are
// sent as U+FFFD rather than failing the response.
std::string json_text(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(json_text(body), kJson);
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.status(), error_json(e));
}

// The label /metrics counts a path under: the known routes, else "other" (so a scan of random
// paths cannot grow the metrics without bound).
std::string endpoint_label(const std::string& path) {
  for (const char* known : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"})
    if (path == known) return known;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

// How an engine error reaches the client.
ApiError engine_error(ErrorCode code, const std::string& message) {
  switch (code) {
    case ErrorCode::OutOfContext:
      return ApiError(400, message, "invalid_request_error", "messages", "context_length_exceeded");
    case ErrorCode::BadArgument:
      return ApiError(400, message, "invalid_request_error");
    case ErrorCode::Cancelled:
      return ApiError(503, message, "server_error", {}, "server_shutting_down");
    case ErrorCode::OutOfMemory:
      return ApiError(503, message, "server_error", {}, "out_of_memory");
    default:
      return ApiError(500, message, "server_error");
  }
}

std::string sse(const json& j) {
  return "data: " + json_text(j) + "\n\n";
}

}  // namespace

struct HttpServer::Impl {
  Engine& engine;
  ServerOptions options;
  ServerMetrics metrics;
  GenerationQueue queue;
  httplib::Server http;
  int64_t created = static_cast<int64_t>(std::time(nullptr));
  std::atomic<uint64_t> next_id{1};
  uint64_t id_salt = 0;

  Impl(Engine& e, const ServerOptions& o) : engine(e), options(o), queue(e, queue_options(o), metrics) {
    std::random_device rd;
    id_salt = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    routes();
  }

  static QueueOptions queue_options(const ServerOptions& o) {
    QueueOptions q;
    q.max_waiting = o.max_waiting;
    q.context_tokens = o.context_tokens;
    q.kv_slots = o.kv_slots;
    q.attention = o.attention;
    return q;
  }

  std::string response_id(Endpoint endpoint) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s-%08llx%06llx", endpoint == Endpoint::ChatCompletions ? "chatcmpl" : "cmpl",
                  static_cast<unsigned long long>(id_salt & 0xffffffffu),
                  static_cast<unsigned long long>(next_id.fetch_add(1)));
    return buf;
  }

  json model_json() const {
    return json{{"id", options.model_id},
                {"object", "model"},
                {"created", created},
                {"owned_by", "folio"},
                {"folio",
                 {{"context_tokens", options.context_tokens},
                  {"backend", engine.backend_name()},
                  {"chat_format", chat_format_name(options.chat_format)},
                  {"attention", sparse::attention_mode_name(options.attention)}}}};
  }

  void routes() {
    // Every waiting request holds a thread (a stream, or a handler waiting for its answer): room for
    // all of them and a few more for /health, /metrics and the 503s of a full queue.
    const int threads = options.http_threads > 0 ? options.http_threads : std::clamp(options.max_waiting + 8, 16, 1024);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    http.set_payload_max_length(options.max_body_bytes);
    http.set_keep_alive_timeout(5);
    http.set_read_timeout(30);
    http.set_write_timeout(30);

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (options.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";
      const bool ok = auth.size() > prefix.size() && auth.compare(0, prefix.size(), prefix) == 0 &&
                      constant_time_equal(auth.substr(prefix.size()), options.api_key);
      if (ok) return httplib::Server::HandlerResponse::Unhandled;
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, ApiError(401,
                               auth.empty() ? "no API key: send the header 'Authorization: Bearer KEY'"
                                            : "the API key is not the one this server was started with (--api-key)",
                               "invalid_request_error", {}, "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });

    // httplib's own answers (unknown route, body over the limit) get a JSON body too.
    http.set_error_handler(
        httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          if (res.status == 404) {
            send_error(res, ApiError(404, "no such endpoint: " + req.method + " " + req.path, "invalid_request_error",
                                     {}, "unknown_url"));
          } else if (res.status == 413) {
            send_error(res, body_too_large());
          } else {
            send_error(res, ApiError(res.status, "the request was refused (HTTP " + std::to_string(res.status) + ")",
                                     "invalid_request_error"));
          }
          return httplib::Server::HandlerResponse::Handled;
        }));

    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, ApiError(500, "internal error: " + what, "server_error"));
    });

    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics.count_response(endpoint_label(req.path), res.status);
    });

    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200,
                json{{"status", "ok"},
                     {"model", options.model_id},
                     {"queue_depth", queue.waiting()},
                     {"running", queue.running() ? 1 : 0}});
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(), "text/plain; version=0.0.4");
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, json{{"object", "list"}, {"data", json::array({model_json()})}});
    });
    http.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string id = req.matches[1];
      if (id != options.model_id) return send_error(res, model_not_found(id));
      send_json(res, 200, model_json());
    });
    // The body is read here, not by httplib: its limit holds only for a Content-Length, and a
    // chunked body must be cut off at --max-body too.
    auto post = [this](Endpoint endpoint) {
      return
          [this, endpoint](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
            std::string body;
            bool too_large = req.has_header("Content-Length") &&
                             req.get_header_value<uint64_t>("Content-Length") > options.max_body_bytes;
            const bool read = !too_large && reader([&](const char* data, size_t n) {
              if (body.size() + n > options.max_body_bytes) {
                too_large = true;
                return false;
              }
              body.append(data, n);
              return true;
            });
            if (!read && !too_large) {
              res.set_header("Connection", "close");
              return send_error(res,
                                bad_request("the request body could not be read (cut off, or a bad chunked encoding)"));
            }
            if (too_large) {
              res.set_header("Connection", "close");
              return send_error(res, body_too_large());
            }
            completion(body, res, endpoint);
          };
    };
    http.Post("/v1/chat/completions", post(Endpoint::ChatCompletions));
    http.Post("/v1/completions", post(Endpoint::Completions));
  }

  // A request stopped while its client was still there: only a shutdown does that.
  static ApiError shutting_down() {
    return ApiError(503, "the server is shutting down; the request was stopped", "server_error", {},
                    "server_shutting_down");
  }

  ApiError body_too_large() const {
    return ApiError(413,
                    "the request body is larger than this server's limit of " + std::to_string(options.max_body_bytes) +
                        " bytes (--max-body)",
                    "invalid_request_error", {}, "request_too_large");
  }

  ApiError model_not_found(const std::string& id) const {
    return ApiError(404, "the model '" + id + "' is not served here; this server serves '" + options.model_id + "'",
                    "invalid_request_error", "model", "model_not_found");
  }

  // Prompt tokens of a checked request; throws ApiError for a prompt that is empty or too long.
  std::vector<int32_t> prompt_tokens(const CompletionRequest& r) const {
    std::vector<int32_t> ids;
    if (r.endpoint == Endpoint::ChatCompletions) {
      ids = encode_chat(engine, options.chat_format, r.messages);
    } else if (r.prompt_is_ids) {
      const int32_t vocab = engine.config().vocab_size;
      for (int32_t id : r.prompt_ids)
        if (id >= vocab)
          throw bad_request(
              "'prompt' holds token id " + std::to_string(id) + ", outside the vocabulary of " + std::to_string(vocab),
              "prompt", "invalid_value");
      ids = r.prompt_ids;
    } else {
      ids = engine.tokenizer().encode(r.prompt, /*add_bos=*/true);  // as folio-cli --prompt
    }
    const char* param = r.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt";
    if (ids.empty()) throw bad_request("the prompt is empty (this model has no BOS token)", param, "invalid_value");
    const auto n = static_cast<int64_t>(ids.size());
    if (n >= options.context_tokens)
      throw bad_request("this model's context is " + std::to_string(options.context_tokens) +
                            " tokens, but the prompt is " + std::to_string(n) +
                            " tokens; send less text, or start the server with a larger --ctx",
                        param, "context_length_exceeded");
    if (r.max_tokens && n + *r.max_tokens > options.context_tokens)
      throw bad_request("this model's context is " + std::to_string(options.context_tokens) +
                            " tokens; you asked for " + std::to_string(n + *r.max_tokens) + " (" + std::to_string(n) +
                            " in the prompt, " + std::to_string(*r.max_tokens) +
                            " for the answer); ask for fewer max_tokens",
                        "max_tokens", "context_length_exceeded");
    return ids;
  }

  void completion(const std::string& body, httplib::Response& res, Endpoint endpoint) {
    std::shared_ptr<Job> job = std::make_shared<Job>();
    CompletionRequest r;
    try {
      r = parse_completion_request(body, endpoint);
      if (!r.model.empty() && r.model != options.model_id) throw model_not_found(r.model);
      job->prompt = prompt_tokens(r);
    } catch (const ApiError& e) {
      return send_error(res, e);
    }
    const auto n = static_cast<int64_t>(job->prompt.size());
    job->generate.sampler = r.sampler;
    job->generate.max_tokens = r.max_tokens ? *r.max_tokens : static_cast<int>(options.context_tokens - n);
    job->generate.stop_strings = r.stop;
    if (endpoint == Endpoint::ChatCompletions)
      job->generate.stop_tokens = chat_stop_tokens(engine, options.chat_format);
    if (!queue.submit(job)) {
      res.set_header("Retry-After", "1");
      return send_error(res, ApiError(503,
                                      "the server is busy: " + std::to_string(options.max_waiting) +
                                          " requests are waiting (--queue); retry shortly",
                                      "server_error", {}, "queue_full"));
    }
    ResponseHead head{response_id(endpoint), static_cast<int64_t>(std::time(nullptr)), options.model_id};
    if (r.stream) return stream(res, job, endpoint, head, r.include_usage);
    job->wait_done();
    if (job->failed()) return send_error(res, engine_error(job->error_code(), job->error()));
    if (job->result().metrics.stop == StopReason::Cancelled) return send_error(res, shutting_down());
    send_json(res, 200, completion_json(endpoint, head, job->result(), job->queue_ms()));
  }

  // Server-sent events: a chunk per piece of text as it comes, the last chunk with the finish
  // reason and the folio numbers, usage when asked, then [DONE]. While nothing comes (waiting,
  // prefill) a comment line every second finds out whether the client is still there; a failed
  // write cancels the job, which stops at its next chunk or token.
  void stream(httplib::Response& res, const std::shared_ptr<Job>& job, Endpoint endpoint, const ResponseHead& head,
              bool include_usage) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto first = std::make_shared<bool>(true);
    auto idle_since = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, job, endpoint, head, include_usage, first, idle_since](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) {
            if (sink.write(s.data(), s.size())) return true;
            job->cancel.cancel();
            return false;
          };
          if (*first && endpoint == Endpoint::ChatCompletions) {
            // The role comes first, as OpenAI sends it, before any text.
            *first = false;
            return write(sse(chunk_json(endpoint, head, "", true)));
          }
          const Job::Update u = job->take(std::chrono::milliseconds(250));
          if (!u.text.empty()) {
            *idle_since = std::chrono::steady_clock::now();
            *first = false;
            if (!write(sse(chunk_json(endpoint, head, u.text, false)))) return false;
          }
          if (u.done) {
            if (job->failed()) {
              if (!write(sse(error_json(engine_error(job->error_code(), job->error()))))) return false;
            } else if (job->result().metrics.stop == StopReason::Cancelled) {
              // The client is still here, so the server stopped it: it is shutting down.
              if (!write(sse(error_json(shutting_down())))) return false;
            } else {
              if (!write(sse(final_chunk_json(endpoint, head, job->result(), job->queue_ms())))) return false;
              if (include_usage && !write(sse(usage_chunk_json(endpoint, head, job->result().metrics)))) return false;
            }
            if (!write("data: [DONE]\n\n")) return false;
            sink.done();
            return true;
          }
          if (std::chrono::steady_clock::now() - *idle_since > std::chrono::seconds(1)) {
            *idle_since = std::chrono::steady_clock::now();
            return write(": waiting\n\n");
          }
          return true;
        },
        [job](bool success) {
          // The stream ended before [DONE] (the client went away, or the server stops).
          if (!success) job->cancel.cancel();
        });
  }
};

HttpServer::HttpServer(Engine& engine, const ServerOptions& options) : impl_(std::make_unique<Impl>(engine, options)) {}

HttpServer::~HttpServer() {
  stop();
}

int HttpServer::bind() {
  const ServerOptions& o = impl_->options;
  if (o.port == 0) {
    const int port = impl_->http.bind_to_any_port(o.host);
    if (port <= 0) throw Error(ErrorCode::BadArgument, "cannot listen on " + o.host + ": choose another --host");
    return port;
  }
  if (!impl_->http.bind_to_port(o.host, o.port))
    throw Error(ErrorCode::BadArgument,
                "cannot listen on " + o.host + ":" + std::to_string(o.port) +
                    " (in use, or not an address of this machine): choose another --port or --host");
  return o.port;
}

void HttpServer::serve() {
  impl_->http.listen_after_bind();
}

void HttpServer::stop() {
  impl_->queue.shutdown();
  impl_->http.stop();
}

}  // namespace folio::server
