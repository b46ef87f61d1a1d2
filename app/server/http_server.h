// folio-server's HTTP side: the OpenAI-compatible routes over cpp-httplib, the API key check, the
// body limit, errors as OpenAI-style JSON, and server-sent events for streams. Generation itself
// goes through the GenerationQueue (one engine, requests in order).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/engine/engine.h"
#include "core/tokenizer/chat_format.h"

namespace folio::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0 = any free port (bind() returns it)
  std::string api_key;  // "" = no key needed
  size_t max_body_bytes = size_t{8} << 20;
  int max_waiting = 16;  // queued requests besides the running one; more answer 503
  int64_t context_tokens = 0;
  int kv_slots = 1;
  sparse::AttentionMode attention = sparse::AttentionMode::Auto;
  std::string model_id;  // the name /v1/models lists and requests may give
  ChatFormatKind chat_format = ChatFormatKind::Plain;
  int http_threads = 0;  // 0 = max_waiting + 8, from 16 to 1024
};

class HttpServer {
 public:
  // The engine must outlive the server.
  HttpServer(Engine& engine, const ServerOptions& options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the socket; returns the port. Throws folio::Error when the address cannot be bound.
  int bind();
  // Serves until stop() (from another thread or a signal watcher).
  void serve();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace folio::server
