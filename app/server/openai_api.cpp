#include "app/server/openai_api.h"

#include <cmath>
#include <random>

namespace folio::server {

using nlohmann::json;

ApiError bad_request(const std::string& message, const std::string& param, const std::string& code) {
  return ApiError(400, message, "invalid_request_error", param, code);
}

json error_json(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type()}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param().empty()) err["param"] = e.param();
  if (!e.code().empty()) err["code"] = e.code();
  return json{{"error", err}};
}

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an integer";
  }
}

ApiError wrong_type(const std::string& param, const char* want, const json& got) {
  return bad_request("'" + param + "' must be " + want + ", not " + type_name(got), param, "invalid_type");
}

// A field that is absent or null counts as not given (OpenAI's clients send null for "unset").
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

double number(const json& body, const char* name, double lo, double hi, double fallback) {
  const json* v = field(body, name);
  if (v == nullptr) return fallback;
  if (!v->is_number()) throw wrong_type(name, "a number", *v);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw bad_request(
        "'" + std::string(name) + "' must be from " + json(lo).dump() + " to " + json(hi).dump() + ", not " + v->dump(),
        name, "invalid_value");
  return x;
}

std::optional<int64_t> integer(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  // 3.0 is an integer as JSON numbers go; 3.5 is not.
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.0e15) throw wrong_type(name, "an integer", *v);
  } else if (!v->is_number_integer()) {
    throw wrong_type(name, "an integer", *v);
  }
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    throw bad_request("'" + std::string(name) + "' is out of range", name, "invalid_value");
  const int64_t x = v->is_number_float() ? static_cast<int64_t>(v->get<double>()) : v->get<int64_t>();
  if (x < lo || x > hi)
    throw bad_request("'" + std::string(name) + "' must be from " + std::to_string(lo) + " to " + std::to_string(hi) +
                          ", not " + std::to_string(x),
                      name, "invalid_value");
  return x;
}

bool boolean(const json& body, const char* name, bool fallback) {
  const json* v = field(body, name);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) throw wrong_type(name, "a boolean", *v);
  return v->get<bool>();
}

// Message content: a string, or an array of {"type":"text","text":...} parts (joined).
std::string message_content(const json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) throw wrong_type(param, "a string or an array of text parts", content);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string p = param + "[" + std::to_string(i) + "]";
    if (!part.is_object()) throw wrong_type(p, "an object", part);
    const json* type = field(part, "type");
    if (type == nullptr || !type->is_string() || type->get<std::string>() != "text")
      throw bad_request("'" + p + ".type' must be \"text\": Folio's models read text only", p + ".type",
                        "unsupported_content");
    const json* t = field(part, "text");
    if (t == nullptr || !t->is_string()) throw bad_request("'" + p + ".text' must be a string", p + ".text");
    text += t->get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const json* v = field(body, "messages");
  if (v == nullptr) throw bad_request("'messages' is required", "messages", "missing_required_parameter");
  if (!v->is_array()) throw wrong_type("messages", "an array", *v);
  if (v->empty()) throw bad_request("'messages' must hold at least one message", "messages", "invalid_value");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& m = (*v)[i];
    const std::string p = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw wrong_type(p, "an object", m);
    const json* role = field(m, "role");
    if (role == nullptr) throw bad_request("'" + p + ".role' is required", p + ".role", "missing_required_parameter");
    if (!role->is_string()) throw wrong_type(p + ".role", "a string", *role);
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system turn
    if (r != "system" && r != "user" && r != "assistant")
      throw bad_request("'" + p + ".role' must be system, developer, user or assistant, not \"" + r + "\"", p + ".role",
                        "invalid_value");
    const json* content = field(m, "content");
    if (content == nullptr)
      throw bad_request("'" + p + ".content' is required", p + ".content", "missing_required_parameter");
    out.push_back({r, message_content(*content, p + ".content")});
  }
  if (out.back().role == "assistant")
    throw bad_request("the last message must be from the user or the system, not the assistant", "messages",
                      "invalid_value");
  return out;
}

void parse_prompt(const json& body, CompletionRequest& r) {
  const json* v = field(body, "prompt");
  if (v == nullptr) throw bad_request("'prompt' is required", "prompt", "missing_required_parameter");
  if (v->is_string()) {
    r.prompt = v->get<std::string>();
    return;
  }
  if (!v->is_array()) throw wrong_type("prompt", "a string or an array", *v);
  if (v->size() == 1 && (*v)[0].is_string()) {
    r.prompt = (*v)[0].get<std::string>();
    return;
  }
  if (v->empty()) throw bad_request("'prompt' must not be an empty array", "prompt", "invalid_value");
  for (const json& id : *v) {
    if (id.is_string())
      throw bad_request("'prompt' may hold one string; Folio answers one prompt per request", "prompt");
    if (!id.is_number_integer()) throw wrong_type("prompt", "a string or an array of token ids", *v);
    const int64_t x = id.get<int64_t>();
    if (x < 0 || x > INT32_MAX) throw bad_request("'prompt' holds a token id out of range", "prompt", "invalid_value");
    r.prompt_ids.push_back(static_cast<int32_t>(x));
  }
  r.prompt_is_ids = true;
}

// Features other servers have and Folio does not: refused rather than ignored when they would
// change the answer's shape.
void refuse_unsupported(const json& body, Endpoint endpoint) {
  if (auto n = integer(body, "n", 1, 128); n && *n != 1)
    throw bad_request("Folio returns one choice per request: 'n' must be 1", "n", "unsupported_value");
  if (auto b = integer(body, "best_of", 1, 128); b && *b != 1)
    throw bad_request("'best_of' must be 1", "best_of", "unsupported_value");
  if (endpoint == Endpoint::ChatCompletions) {
    if (boolean(body, "logprobs", false))
      throw bad_request("Folio does not return log probabilities", "logprobs", "unsupported_value");
  } else if (const json* lp = field(body, "logprobs")) {
    if (!lp->is_number_integer()) throw wrong_type("logprobs", "an integer", *lp);
    if (lp->get<int64_t>() != 0)
      throw bad_request("Folio does not return log probabilities", "logprobs", "unsupported_value");
  }
  if (boolean(body, "echo", false)) throw bad_request("'echo' is not supported", "echo", "unsupported_value");
  for (const char* name : {"tools", "functions"}) {
    const json* v = field(body, name);
    if (v == nullptr) continue;
    if (!v->is_array()) throw wrong_type(name, "an array", *v);
    if (!v->empty()) throw bad_request("Folio's server does not call tools", name, "unsupported_value");
  }
  if (const json* rf = field(body, "response_format")) {
    if (!rf->is_object()) throw wrong_type("response_format", "an object", *rf);
    const json* t = field(*rf, "type");
    if (t != nullptr && (!t->is_string() || t->get<std::string>() != "text"))
      throw bad_request("only response_format {\"type\": \"text\"} is supported", "response_format",
                        "unsupported_value");
  }
  if (const json* s = field(body, "suffix")) {
    if (!s->is_string()) throw wrong_type("suffix", "a string", *s);
    if (!s->get<std::string>().empty()) throw bad_request("'suffix' is not supported", "suffix", "unsupported_value");
  }
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, Endpoint endpoint, const RequestLimits& limits) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw bad_request(std::string("the body is not valid JSON: ") + e.what(), {}, "invalid_json");
  }
  if (!j.is_object())
    throw bad_request(std::string("the body must be a JSON object, not ") + type_name(j), {}, "invalid_json");

  CompletionRequest r;
  r.endpoint = endpoint;
  if (const json* m = field(j, "model")) {
    if (!m->is_string()) throw wrong_type("model", "a string", *m);
    r.model = m->get<std::string>();
  }
  if (endpoint == Endpoint::ChatCompletions)
    r.messages = parse_messages(j);
  else
    parse_prompt(j, r);
  refuse_unsupported(j, endpoint);

  // max_completion_tokens is the newer name; either may be given.
  std::optional<int64_t> max_tokens = integer(j, "max_tokens", 1, limits.max_tokens_cap);
  if (auto mct = integer(j, "max_completion_tokens", 1, limits.max_tokens_cap)) max_tokens = mct;
  if (max_tokens) r.max_tokens = static_cast<int>(*max_tokens);

  r.sampler.temperature = static_cast<float>(number(j, "temperature", 0.0, 2.0, 1.0));
  r.sampler.top_p = static_cast<float>(number(j, "top_p", 0.0, 1.0, 1.0));
  if (j.contains("top_p") && r.sampler.top_p <= 0.0f)
    throw bad_request("'top_p' must be above 0", "top_p", "invalid_value");
  // llama.cpp's server extensions that Folio's sampler has.
  r.sampler.top_k = static_cast<int>(integer(j, "top_k", 0, 1 << 24).value_or(0));
  r.sampler.min_p = static_cast<float>(number(j, "min_p", 0.0, 1.0, 0.0));
  r.sampler.repetition_penalty = static_cast<float>(number(j, "repeat_penalty", 0.0, 10.0, 1.0));
  // Checked for range, not applied: Folio's sampler has a repetition penalty instead.
  number(j, "presence_penalty", -2.0, 2.0, 0.0);
  number(j, "frequency_penalty", -2.0, 2.0, 0.0);
  if (auto seed = integer(j, "seed", INT64_MIN, INT64_MAX)) {
    r.sampler.seed = static_cast<uint64_t>(*seed);
  } else {
    std::random_device rd;
    r.sampler.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }

  if (const json* s = field(j, "stop")) {
    if (s->is_string()) {
      r.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      for (const json& x : *s) {
        if (!x.is_string()) throw wrong_type("stop", "a string or an array of strings", *s);
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      throw wrong_type("stop", "a string or an array of strings", *s);
    }
    if (static_cast<int>(r.stop.size()) > limits.max_stop_strings)
      throw bad_request("'stop' holds at most " + std::to_string(limits.max_stop_strings) + " strings", "stop",
                        "invalid_value");
    for (const std::string& x : r.stop)
      if (x.empty() || x.size() > limits.max_stop_bytes)
        throw bad_request("each 'stop' string must be 1 to " + std::to_string(limits.max_stop_bytes) + " bytes", "stop",
                          "invalid_value");
  }

  r.stream = boolean(j, "stream", false);
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) throw wrong_type("stream_options", "an object", *so);
    if (!r.stream) throw bad_request("'stream_options' goes with 'stream': true", "stream_options");
    r.include_usage = boolean(*so, "include_usage", false);
  }
  return r;
}

const char* finish_reason(StopReason stop) {
  switch (stop) {
    case StopReason::Eos:
    case StopReason::StopString:
      return "stop";
    case StopReason::MaxTokens:
    case StopReason::ContextFull:
      return "length";
    case StopReason::Cancelled:
      return "cancelled";
    case StopReason::None:
      break;
  }
  return "";
}

json folio_json(const Metrics& m, double queue_ms) {
  size_t kv_bytes = 0;
  for (const DeviceMemory& d : m.memory) kv_bytes += d.kv_bytes;
  return json{{"backend", m.backend},
              {"queue_ms", queue_ms},
              {"ttft_ms", m.ttft_ms},
              {"prompt_tokens", m.prompt_tokens},
              {"reused_tokens", m.reused_tokens},
              {"prefill_tokens", m.prefill_tokens},
              {"prefill_ms", m.prefill_ms},
              {"prefill_tok_s", m.prefill_tok_s},
              {"decode_tokens", m.decode_tokens},
              {"decode_ms", m.decode_ms},
              {"decode_tok_s", m.decode_tok_s},
              {"total_ms", m.total_ms},
              {"stop_reason", stop_reason_name(m.stop)},
              {"attention",
               {{"mode", m.attention_mode},
                {"sparse_chunks", m.sparse_chunks},
                {"dense_chunks", m.dense_chunks},
                {"density", m.attention_density},
                {"est_mass_mean", m.est_mass_mean}}},
              {"kv_cache_bytes", kv_bytes}};
}

json usage_json(const Metrics& m) {
  return json{{"prompt_tokens", m.prompt_tokens},
              {"completion_tokens", m.decode_tokens},
              {"total_tokens", m.prompt_tokens + m.decode_tokens},
              {"prompt_tokens_details", {{"cached_tokens", m.reused_tokens}}}};
}

namespace {

json head_json(Endpoint endpoint, const ResponseHead& head, bool chunk) {
  const char* object =
      endpoint == Endpoint::ChatCompletions ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return json{{"id", head.id},
              {"object", object},
              {"created", head.created},
              {"model", head.model},
              {"system_fingerprint", "folio"}};
}

}  // namespace

json completion_json(Endpoint endpoint, const ResponseHead& head, const RequestResult& result, double queue_ms) {
  json j = head_json(endpoint, head, false);
  json choice = {{"index", 0}, {"finish_reason", finish_reason(result.metrics.stop)}, {"logprobs", nullptr}};
  if (endpoint == Endpoint::ChatCompletions)
    choice["message"] = {{"role", "assistant"}, {"content", result.text}};
  else
    choice["text"] = result.text;
  j["choices"] = json::array({choice});
  j["usage"] = usage_json(result.metrics);
  j["folio"] = folio_json(result.metrics, queue_ms);
  return j;
}

json chunk_json(Endpoint endpoint, const ResponseHead& head, const std::string& text, bool first) {
  json j = head_json(endpoint, head, true);
  json choice = {{"index", 0}, {"finish_reason", nullptr}, {"logprobs", nullptr}};
  if (endpoint == Endpoint::ChatCompletions) {
    choice["delta"] = first ? json{{"role", "assistant"}, {"content", text}} : json{{"content", text}};
  } else {
    choice["text"] = text;
  }
  j["choices"] = json::array({choice});
  return j;
}

json final_chunk_json(Endpoint endpoint, const ResponseHead& head, const RequestResult& result, double queue_ms) {
  json j = head_json(endpoint, head, true);
  json choice = {{"index", 0}, {"finish_reason", finish_reason(result.metrics.stop)}, {"logprobs", nullptr}};
  if (endpoint == Endpoint::ChatCompletions)
    choice["delta"] = json::object();
  else
    choice["text"] = "";
  j["choices"] = json::array({choice});
  j["folio"] = folio_json(result.metrics, queue_ms);
  return j;
}

json usage_chunk_json(Endpoint endpoint, const ResponseHead& head, const Metrics& m) {
  json j = head_json(endpoint, head, true);
  j["choices"] = json::array();
  j["usage"] = usage_json(m);
  return j;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  // Every byte of the longer string is visited; the length difference is folded in.
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

}  // namespace folio::server
