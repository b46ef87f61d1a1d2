// folio-server's request rules and response shapes without sockets (app/server/openai_api.h) and
// its Prometheus text (server_metrics.h). tests/server/server_test.py covers the same over HTTP.
#include <QtTest>
#include <nlohmann/json.hpp>

#include "app/server/openai_api.h"
#include "app/server/server_metrics.h"

using folio::server::ApiError;
using folio::server::Endpoint;
using folio::server::parse_completion_request;
using nlohmann::json;

namespace {

// The ApiError a body raises, or status 0 when it parses.
ApiError error_of(const std::string& body, Endpoint endpoint = Endpoint::ChatCompletions) {
  try {
    parse_completion_request(body, endpoint);
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "", "");
}

const char* kMsgs = R"("messages":[{"role":"user","content":"hi"}])";

}  // namespace

class ServerApiTest : public QObject {
  Q_OBJECT

 private slots:
  void parses_a_full_chat_request() {
    const auto r = parse_completion_request(
        R"({"model":"m","messages":[{"role":"developer","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
            "max_tokens":12.0,"temperature":0,"top_p":0.5,"seed":7,"stop":"END","stream":true,
            "stream_options":{"include_usage":true},"top_k":40,"unknown_field":{"x":1},"logit_bias":null})",
        Endpoint::ChatCompletions);
    QCOMPARE(r.model, std::string("m"));
    QCOMPARE(r.messages.size(), size_t{2});
    QCOMPARE(r.messages[0].role, std::string("system"));  // developer is the system turn
    QCOMPARE(r.messages[1].content, std::string("ab"));   // text parts joined
    QCOMPARE(*r.max_tokens, 12);                          // 12.0 is a whole number
    QCOMPARE(r.sampler.temperature, 0.0f);
    QCOMPARE(r.sampler.top_p, 0.5f);
    QCOMPARE(r.sampler.seed, uint64_t{7});
    QCOMPARE(r.sampler.top_k, 40);
    QCOMPARE(r.stop, std::vector<std::string>{"END"});
    QVERIFY(r.stream);
    QVERIFY(r.include_usage);
  }

  void defaults_are_openais() {
    const auto r = parse_completion_request(std::string("{") + kMsgs + "}", Endpoint::ChatCompletions);
    QVERIFY(!r.max_tokens.has_value());
    QCOMPARE(r.sampler.temperature, 1.0f);
    QCOMPARE(r.sampler.top_p, 1.0f);
    QVERIFY(!r.stream);
  }

  void completion_prompts() {
    QCOMPARE(parse_completion_request(R"({"prompt":"abc"})", Endpoint::Completions).prompt, std::string("abc"));
    QCOMPARE(parse_completion_request(R"({"prompt":["abc"]})", Endpoint::Completions).prompt, std::string("abc"));
    const auto ids = parse_completion_request(R"({"prompt":[1,2,3]})", Endpoint::Completions);
    QVERIFY(ids.prompt_is_ids);
    QCOMPARE(ids.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  }

  void each_bad_field_names_itself() {
    struct Case {
      std::string body;
      int status;
      const char* param;
      const char* code;
    };
    const std::string m = kMsgs;
    const std::vector<Case> cases = {
        {"{", 400, "", "invalid_json"},
        {"[]", 400, "", "invalid_json"},
        {"{}", 400, "messages", "missing_required_parameter"},
        {R"({"messages":{}})", 400, "messages", "invalid_type"},
        {R"({"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]})", 400, "messages",
         "invalid_value"},
        {"{" + m + R"(,"max_tokens":-5})", 400, "max_tokens", "invalid_value"},
        {"{" + m + R"(,"max_tokens":1.5})", 400, "max_tokens", "invalid_type"},
        {"{" + m + R"(,"max_tokens":true})", 400, "max_tokens", "invalid_type"},
        {"{" + m + R"(,"max_tokens":18446744073709551615})", 400, "max_tokens", "invalid_value"},
        {"{" + m + R"(,"temperature":-0.1})", 400, "temperature", "invalid_value"},
        {"{" + m + R"(,"top_p":0})", 400, "top_p", "invalid_value"},
        {"{" + m + R"(,"seed":1e300})", 400, "seed", "invalid_type"},
        {"{" + m + R"(,"stop":[""]})", 400, "stop", "invalid_value"},
        {"{" + m + R"(,"stop":[1]})", 400, "stop", "invalid_type"},
        {"{" + m + R"(,"n":2})", 400, "n", "unsupported_value"},
        {"{" + m + R"(,"response_format":{"type":"json_object"}})", 400, "response_format", "unsupported_value"},
        {"{" + m + R"(,"stream":1})", 400, "stream", "invalid_type"},
    };
    for (const Case& c : cases) {
      const ApiError e = error_of(c.body);
      QVERIFY2(e.status() == c.status, c.body.c_str());
      QVERIFY2(e.param() == c.param, (c.body + " -> param " + e.param()).c_str());
      QVERIFY2(e.code() == c.code, (c.body + " -> code " + e.code()).c_str());
      const json j = folio::server::error_json(e);
      QCOMPARE(j["error"].size(), size_t{4});
      QVERIFY(j["error"]["message"].is_string());
    }
    QCOMPARE(error_of(R"({"prompt":{"a":1}})", Endpoint::Completions).code(), std::string("invalid_type"));
    QCOMPARE(error_of(R"({"prompt":[-1]})", Endpoint::Completions).code(), std::string("invalid_value"));
  }

  void response_shapes() {
    folio::RequestResult r;
    r.text = "Paris.";
    r.metrics.prompt_tokens = 10;
    r.metrics.reused_tokens = 4;
    r.metrics.decode_tokens = 3;
    r.metrics.stop = folio::StopReason::Eos;
    const folio::server::ResponseHead head{"chatcmpl-1", 1700000000, "m"};
    const json c = folio::server::completion_json(Endpoint::ChatCompletions, head, r, 2.5);
    QCOMPARE(c["object"].get<std::string>(), std::string("chat.completion"));
    QCOMPARE(c["choices"][0]["message"]["content"].get<std::string>(), std::string("Paris."));
    QCOMPARE(c["choices"][0]["finish_reason"].get<std::string>(), std::string("stop"));
    QCOMPARE(c["usage"]["total_tokens"].get<double>(), 13.0);
    QCOMPARE(c["usage"]["prompt_tokens_details"]["cached_tokens"].get<double>(), 4.0);
    QCOMPARE(c["folio"]["queue_ms"].get<double>(), 2.5);
    r.metrics.stop = folio::StopReason::ContextFull;
    const json t = folio::server::completion_json(Endpoint::Completions, head, r, 0);
    QCOMPARE(t["object"].get<std::string>(), std::string("text_completion"));
    QCOMPARE(t["choices"][0]["text"].get<std::string>(), std::string("Paris."));
    QCOMPARE(t["choices"][0]["finish_reason"].get<std::string>(), std::string("length"));
    const json first = folio::server::chunk_json(Endpoint::ChatCompletions, head, "", true);
    QCOMPARE(first["choices"][0]["delta"]["role"].get<std::string>(), std::string("assistant"));
    QVERIFY(first["choices"][0]["finish_reason"].is_null());
    const json usage = folio::server::usage_chunk_json(Endpoint::ChatCompletions, head, r.metrics);
    QVERIFY(usage["choices"].empty());
  }

  void constant_time_equal() {
    using folio::server::constant_time_equal;
    QVERIFY(constant_time_equal("secret", "secret"));
    QVERIFY(!constant_time_equal("secret", "secreT"));
    QVERIFY(!constant_time_equal("secret", "secret2"));
    QVERIFY(!constant_time_equal("secret", ""));
    QVERIFY(!constant_time_equal("", "x"));
    QVERIFY(constant_time_equal("", ""));
  }

  void prometheus_text() {
    folio::server::ServerMetrics m;
    m.count_response("/v1/completions", 200);
    m.count_response("/v1/completions", 200);
    m.count_response("/v1/completions", 400);
    folio::Metrics g;
    g.prompt_tokens = 100;
    g.reused_tokens = 60;
    g.decode_tokens = 10;
    g.ttft_ms = 30;  // 0.03 s: in the 0.05 bucket, not the 0.025 one
    g.decode_tok_s = 120;
    g.memory.push_back({"cpu", 0, 4096, 0, 0, 0});
    m.count_generation(g, 5);
    m.set_queue_depth(3, 1);
    const std::string text = m.render();
    auto has = [&](const std::string& line) {
      QVERIFY2(text.find(line + "\n") != std::string::npos, (line + " not in\n" + text).c_str());
    };
    has(R"(folio_http_requests_total{endpoint="/v1/completions",code="200"} 2)");
    has(R"(folio_http_requests_total{endpoint="/v1/completions",code="400"} 1)");
    has("# TYPE folio_ttft_seconds histogram");
    has(R"(folio_ttft_seconds_bucket{le="0.025"} 0)");
    has(R"(folio_ttft_seconds_bucket{le="0.05"} 1)");
    has(R"(folio_ttft_seconds_bucket{le="+Inf"} 1)");
    has("folio_ttft_seconds_count 1");
    has(R"(folio_decode_tokens_per_second_bucket{le="250"} 1)");
    has("folio_prompt_tokens_total 100");
    has("folio_prompt_tokens_reused_total 60");
    has("folio_kv_cache_bytes 4096");
    has("folio_queue_depth 3");
    has("folio_requests_running 1");
  }
};

QTEST_GUILESS_MAIN(ServerApiTest)
#include "tst_server_api.moc"
