#!/usr/bin/env python3
"""folio-server over loopback, one suite per ctest entry (each well under a minute):

  http     stories260K: every endpoint's JSON shape, streamed and not, through raw HTTP
           (http.client); the same greedy text as folio-cli; every 4xx case; the API key; a full
           queue answering 503 with Retry-After.
  load     stories260K: 100 streamed requests from 8 concurrent clients; every answer is the one
           its prompt gives alone (nothing lost or mixed), TTFT median and p95, memory flat.
  openai   stories260K through the OpenAI Python library (PyPI `openai`; skips without it).
  remote   folio-cli --backend remote against folio-server: folio-cli's local answer, the server's
           numbers, each error a user can act on, a stream cut mid-answer (a server that drops it).
  foreign  folio-cli --backend remote against llama.cpp's own server (foreign_server.py: the pinned
           xllamacpp wheel from Folio's venv) on SmolLM2: a question about a document, packing with
           the local tokenizer, the server's context limit, an unknown model, the server killed
           mid-answer. Fails under CI=true when the wheel is missing, else skips.
  smollm2  SmolLM2-135M-Instruct (skips when it is not in the cache): the same greedy answer as
           folio-cli --ask, streaming, prefix reuse, a client killed mid-stream frees the engine, a
           question about a document through --backend remote, and a server killed mid-answer.

Usage: server_test.py SUITE --server BIN --cli BIN --model PATH [--report FILE] [--backend cpu|cuda]
Exit codes: 0 passed, 1 failed, 77 skipped.
"""
import argparse
import http.client
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import unittest

SKIP = 77
ARGS = None


class Server:
    """A folio-server on an ephemeral loopback port, stopped with SIGTERM (it must exit 0)."""

    def __init__(self, *extra, model=None):
        # One engine thread: on this shared 2-core machine a 2-thread pool loses most of its speed
        # whenever other work takes a core, and the timing tests need steady speed.
        self.cmd = [ARGS.server, "--model", model or ARGS.model, "--port", "0", "--threads", ARGS.threads,
                    "--backend", ARGS.backend, *extra]
        self.proc = None
        self.port = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        if "listening on http://" not in line:
            self.proc.kill()
            raise RuntimeError("folio-server did not start: " + line + self.proc.stderr.read())
        self.port = int(line.rsplit(":", 1)[1].split("/")[0])
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("folio-server did not stop within 15 s of SIGTERM")
        if exc[0] is None and rc != 0:
            raise AssertionError(f"folio-server exited {rc}: {self.proc.stderr.read()}")
        self.proc.stdout.close()
        self.proc.stderr.close()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # Raw HTTP ---------------------------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), data

    def json(self, method, path, body=None, headers=None, timeout=60):
        status, hdrs, data = self.request(method, path, body, headers, timeout)
        return status, hdrs, json.loads(data) if data else None

    def stream(self, path, body, headers=None, timeout=60):
        """Streams a request; returns (status, events as parsed JSON, saw [DONE], seconds to the
        first non-empty text, the text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        t0 = time.monotonic()
        conn.request("POST", path, body=json.dumps(dict(body, stream=True)), headers=hdrs)
        resp = conn.getresponse()
        if resp.status != 200:
            data = resp.read()
            conn.close()
            return resp.status, [json.loads(data)], False, None, ""
        assert resp.getheader("Content-Type", "").startswith("text/event-stream"), resp.getheaders()
        events, done, ttft, text = [], False, None, ""
        for raw in resp:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line or line.startswith(":"):
                continue
            assert line.startswith("data: "), line
            payload = line[len("data: "):]
            if payload == "[DONE]":
                done = True
                continue
            assert not done, "an event after [DONE]"
            ev = json.loads(payload)
            events.append(ev)
            for ch in ev.get("choices", []):
                piece = ch.get("delta", {}).get("content") if "delta" in ch else ch.get("text")
                if piece:
                    if ttft is None:
                        ttft = time.monotonic() - t0
                    text += piece
        conn.close()
        return 200, events, done, ttft, text

    def metric(self, name):
        _, _, data = self.request("GET", "/metrics")
        for line in data.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")


def cli(*args, model=None):
    out = subprocess.run([ARGS.cli, "--model", model or ARGS.model, "--quiet", "--threads", ARGS.threads,
                          "--backend", ARGS.backend, *args],
                         capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\n")
    return out.stdout[:-1]  # folio-cli ends the answer with a newline


def greedy(body, max_tokens=24):
    return dict(body, temperature=0, max_tokens=max_tokens)


class Shapes:
    """Checks of the JSON shapes OpenAI's clients rely on."""

    @staticmethod
    def error(tc, status, body, want_status, code=None, param=None):
        tc.assertEqual(status, want_status, body)
        tc.assertEqual(set(body), {"error"})
        err = body["error"]
        tc.assertEqual(set(err), {"message", "type", "param", "code"})
        tc.assertIsInstance(err["message"], str)
        tc.assertTrue(err["message"])
        tc.assertIsInstance(err["type"], str)
        if code is not None:
            tc.assertEqual(err["code"], code, err)
        if param is not None:
            tc.assertEqual(err["param"], param, err)

    @staticmethod
    def folio(tc, f):
        for key in ("ttft_ms", "prefill_tok_s", "decode_tok_s", "prompt_tokens", "reused_tokens", "prefill_tokens",
                    "decode_tokens", "queue_ms", "total_ms", "kv_cache_bytes"):
            tc.assertIn(key, f)
            tc.assertGreaterEqual(f[key], 0)
        tc.assertIn(f["attention"]["mode"], ("auto", "dense", "sparse"))
        tc.assertGreater(f["attention"]["density"], 0)
        tc.assertLessEqual(f["attention"]["density"], 1)

    @staticmethod
    def usage(tc, u, completion_tokens=None):
        tc.assertEqual(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"])
        tc.assertGreater(u["prompt_tokens"], 0)
        if completion_tokens is not None:
            tc.assertEqual(u["completion_tokens"], completion_tokens)

    @staticmethod
    def completion(tc, body, chat, model):
        tc.assertTrue(body["id"].startswith("chatcmpl-" if chat else "cmpl-"))
        tc.assertEqual(body["object"], "chat.completion" if chat else "text_completion")
        tc.assertEqual(body["model"], model)
        tc.assertIsInstance(body["created"], int)
        tc.assertEqual(len(body["choices"]), 1)
        ch = body["choices"][0]
        tc.assertEqual(ch["index"], 0)
        tc.assertIn(ch["finish_reason"], ("stop", "length"))
        if chat:
            tc.assertEqual(ch["message"]["role"], "assistant")
            tc.assertIsInstance(ch["message"]["content"], str)
        else:
            tc.assertIsInstance(ch["text"], str)
        Shapes.usage(tc, body["usage"])
        Shapes.folio(tc, body["folio"])

    @staticmethod
    def stream(tc, events, done, chat, include_usage=False):
        tc.assertTrue(done, "the stream did not end with data: [DONE]")
        ids = {e["id"] for e in events}
        tc.assertEqual(len(ids), 1, "one id for every chunk of a stream")
        obj = "chat.completion.chunk" if chat else "text_completion"
        for e in events:
            tc.assertEqual(e["object"], obj)
        body = events[:-1] if include_usage else events
        if chat:
            tc.assertEqual(body[0]["choices"][0]["delta"]["role"], "assistant")
        for e in body[:-1]:
            tc.assertIsNone(e["choices"][0]["finish_reason"])
        last = body[-1]
        tc.assertIn(last["choices"][0]["finish_reason"], ("stop", "length"))
        Shapes.folio(tc, last["folio"])
        if include_usage:
            tc.assertEqual(events[-1]["choices"], [])
            Shapes.usage(tc, events[-1]["usage"])


# ----------------------------------------------------------------------------------------------
class HttpSuite(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server("--ctx", "256").__enter__()
        _, _, models = cls.server.json("GET", "/v1/models")
        cls.model_id = models["data"][0]["id"]

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def test_health_and_models(self):
        status, _, body = self.server.json("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")
        status, _, body = self.server.json("GET", "/v1/models")
        self.assertEqual(status, 200)
        self.assertEqual(body["object"], "list")
        self.assertEqual(len(body["data"]), 1)
        m = body["data"][0]
        self.assertEqual(m["id"], "stories260K")
        self.assertEqual(m["object"], "model")
        self.assertEqual(m["folio"]["context_tokens"], 256)
        status, _, one = self.server.json("GET", "/v1/models/stories260K")
        self.assertEqual((status, one["id"]), (200, "stories260K"))
        status, _, err = self.server.json("GET", "/v1/models/gpt-4")
        Shapes.error(self, status, err, 404, "model_not_found")

    def test_completion_is_folio_cli_greedy(self):
        for prompt in ("", "Once upon a time", "The cat"):
            status, _, body = self.server.json("POST", "/v1/completions", greedy({"prompt": prompt}))
            self.assertEqual(status, 200, body)
            Shapes.completion(self, body, chat=False, model=self.model_id)
            want = cli("--prompt", prompt, "--max-tokens", "24", "--temperature", "0")
            self.assertEqual(body["choices"][0]["text"], want)
            self.assertEqual(body["choices"][0]["finish_reason"], "length")
            self.assertEqual(body["usage"]["completion_tokens"], 24)

    def test_prompt_as_token_ids(self):
        ids = subprocess.run([ARGS.cli, "tokenize", "--model", ARGS.model, "Once upon a time"], capture_output=True,
                             text=True, check=True).stdout.split()
        bos = 1  # stories260K's BOS; a text prompt gets it, token ids are taken as given
        _, _, by_ids = self.server.json("POST", "/v1/completions", greedy({"prompt": [bos] + [int(i) for i in ids]}))
        _, _, by_text = self.server.json("POST", "/v1/completions", greedy({"prompt": "Once upon a time"}))
        self.assertEqual(by_ids["choices"][0]["text"], by_text["choices"][0]["text"])
        self.assertEqual(by_ids["usage"]["prompt_tokens"], by_text["usage"]["prompt_tokens"])

    def test_chat_is_folio_cli_greedy(self):
        cases = [([{"role": "user", "content": "Lily and Tom"}], ["--ask", "Lily and Tom"]),
                 ([{"role": "system", "content": "A story."}, {"role": "user", "content": "The dog"}],
                  ["--system", "A story.", "--ask", "The dog"])]
        for messages, args in cases:
            status, _, body = self.server.json("POST", "/v1/chat/completions", greedy({"messages": messages}))
            self.assertEqual(status, 200, body)
            Shapes.completion(self, body, chat=True, model=self.model_id)
            want = cli(*args, "--max-tokens", "24", "--temperature", "0")
            self.assertEqual(body["choices"][0]["message"]["content"], want)

    def test_stream_equals_plain(self):
        for path, body, chat in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "Ben"}]}, True),
                                 ("/v1/completions", {"prompt": "Ben"}, False)):
            _, _, plain = self.server.json("POST", path, greedy(body, 40))
            status, events, done, _, text = self.server.stream(path, greedy(body, 40))
            self.assertEqual(status, 200)
            Shapes.stream(self, events, done, chat)
            want = plain["choices"][0]["message"]["content"] if chat else plain["choices"][0]["text"]
            self.assertEqual(text, want)
            status, events, done, _, text2 = self.server.stream(
                path, greedy(dict(body, stream_options={"include_usage": True}), 40))
            Shapes.stream(self, events, done, chat, include_usage=True)
            self.assertEqual(text2, want)
            self.assertEqual(events[-1]["usage"]["completion_tokens"], plain["usage"]["completion_tokens"])

    def test_stop_strings(self):
        _, _, full = self.server.json("POST", "/v1/completions", greedy({"prompt": ""}, 40))
        text = full["choices"][0]["text"]
        word = text.split()[3]
        _, _, body = self.server.json("POST", "/v1/completions", greedy({"prompt": "", "stop": [word, "zzz"]}, 40))
        self.assertEqual(body["choices"][0]["text"], text[:text.index(word)])
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        status, events, done, _, streamed = self.server.stream("/v1/completions",
                                                               greedy({"prompt": "", "stop": word}, 40))
        self.assertEqual(streamed, text[:text.index(word)])

    def test_seed_and_temperature(self):
        body = {"prompt": "Once", "max_tokens": 32, "temperature": 1.0, "top_p": 0.9, "seed": 1234}
        a = self.server.json("POST", "/v1/completions", body)[2]["choices"][0]["text"]
        b = self.server.json("POST", "/v1/completions", body)[2]["choices"][0]["text"]
        self.assertEqual(a, b, "the same seed gives the same text")
        texts = {self.server.json("POST", "/v1/completions", dict(body, seed=s))[2]["choices"][0]["text"]
                 for s in range(1, 6)}
        self.assertGreater(len(texts), 1, "different seeds give different texts")

    def test_prefix_reuse(self):
        system = "Once upon a time there was a big red ball in a park. " * 5
        first = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "Tom"}]}
        second = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "Sue"}]}
        _, _, a = self.server.json("POST", "/v1/chat/completions", greedy(first, 4))
        _, _, b = self.server.json("POST", "/v1/chat/completions", greedy(second, 4))
        self.assertGreater(b["folio"]["reused_tokens"], 30, b["folio"])
        self.assertEqual(b["usage"]["prompt_tokens_details"]["cached_tokens"], b["folio"]["reused_tokens"])
        self.assertEqual(b["folio"]["prefill_tokens"], b["usage"]["prompt_tokens"] - b["folio"]["reused_tokens"])

    def test_bad_requests(self):
        msgs = [{"role": "user", "content": "hi"}]
        chat = "/v1/chat/completions"
        cases = [
            (chat, "{not json", 400, "invalid_json", None),
            (chat, "[1, 2]", 400, "invalid_json", None),
            (chat, "", 400, "invalid_json", None),
            (chat, {}, 400, "missing_required_parameter", "messages"),
            (chat, {"messages": "hi"}, 400, "invalid_type", "messages"),
            (chat, {"messages": []}, 400, "invalid_value", "messages"),
            (chat, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_value", "messages[0].role"),
            (chat, {"messages": [{"role": "user", "content": 5}]}, 400, "invalid_type", "messages[0].content"),
            (chat, {"messages": [{"role": "user"}]}, 400, "missing_required_parameter", "messages[0].content"),
            (chat, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "unsupported_content",
             None),
            (chat, {"messages": msgs, "max_tokens": "10"}, 400, "invalid_type", "max_tokens"),
            (chat, {"messages": msgs, "max_tokens": -1}, 400, "invalid_value", "max_tokens"),
            (chat, {"messages": msgs, "max_tokens": 0}, 400, "invalid_value", "max_tokens"),
            (chat, {"messages": msgs, "max_tokens": 2.5}, 400, "invalid_type", "max_tokens"),
            (chat, {"messages": msgs, "max_tokens": 10**30}, 400, None, "max_tokens"),
            (chat, {"messages": msgs, "temperature": 7}, 400, "invalid_value", "temperature"),
            (chat, {"messages": msgs, "temperature": "hot"}, 400, "invalid_type", "temperature"),
            (chat, {"messages": msgs, "top_p": 0}, 400, "invalid_value", "top_p"),
            (chat, {"messages": msgs, "top_p": 1.5}, 400, "invalid_value", "top_p"),
            (chat, {"messages": msgs, "seed": "x"}, 400, "invalid_type", "seed"),
            (chat, {"messages": msgs, "n": 3}, 400, "unsupported_value", "n"),
            (chat, {"messages": msgs, "stream": "yes"}, 400, "invalid_type", "stream"),
            (chat, {"messages": msgs, "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_value", "stop"),
            (chat, {"messages": msgs, "stop": 3}, 400, "invalid_type", "stop"),
            (chat, {"messages": msgs, "stream_options": {"include_usage": True}}, 400, None, "stream_options"),
            (chat, {"messages": msgs, "logprobs": True}, 400, "unsupported_value", "logprobs"),
            (chat, {"messages": msgs, "tools": [{"type": "function"}]}, 400, "unsupported_value", "tools"),
            (chat, {"messages": msgs, "model": 7}, 400, "invalid_type", "model"),
            (chat, {"messages": msgs, "model": "gpt-4o"}, 404, "model_not_found", "model"),
            (chat, {"messages": [{"role": "user", "content": "word " * 400}]}, 400, "context_length_exceeded",
             "messages"),
            (chat, {"messages": msgs, "max_tokens": 255}, 400, "context_length_exceeded", "max_tokens"),
            ("/v1/completions", {"prompt": 5}, 400, "invalid_type", "prompt"),
            ("/v1/completions", {"prompt": [1, 2, 99999]}, 400, "invalid_value", "prompt"),
            ("/v1/completions", {"prompt": ["a", "b"]}, 400, None, "prompt"),
            ("/v1/completions", {"prompt": "x", "echo": True}, 400, "unsupported_value", "echo"),
            # Bytes that are not UTF-8 (the error message quotes them: it must still be valid JSON).
            ("/v1/completions", b'{"prompt": "\xff\xfe"}', 400, "invalid_json", None),
        ]
        for path, body, status, code, param in cases:
            with self.subTest(body=body):
                st, _, err = self.server.json("POST", path, body)
                Shapes.error(self, st, err, status, code, param)
        st, _, err = self.server.json("GET", "/v1/nowhere")
        Shapes.error(self, st, err, 404, "unknown_url")
        st, _, err = self.server.json("GET", "/v1/chat/completions")
        Shapes.error(self, st, err, 404)
        # Nothing above blocked the queue or hurt the server.
        status, _, body = self.server.json("POST", chat, greedy({"messages": msgs}, 4))
        self.assertEqual(status, 200)
        self.assertEqual(self.server.metric("folio_queue_depth"), 0)

    def test_body_limit(self):
        with Server("--max-body", "4096") as s:
            st, _, err = s.json("POST", "/v1/completions", {"prompt": "x" * 5000})
            Shapes.error(self, st, err, 413, "request_too_large")
            st, _, ok = s.json("POST", "/v1/completions", greedy({"prompt": "x" * 100}, 2))
            self.assertEqual(st, 200, ok)
        # The default limit is 8 MiB, also for a chunked body (no Content-Length to refuse early).
        st, _, err = self.server.json("POST", "/v1/completions", {"prompt": "x" * (8 << 20)})
        Shapes.error(self, st, err, 413, "request_too_large")
        big = json.dumps({"prompt": "x" * (9 << 20)}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        conn.request("POST", "/v1/completions", body=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        Shapes.error(self, resp.status, json.loads(resp.read()), 413, "request_too_large")
        conn.close()
        # A small chunked body is read as any other.
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        conn.request("POST", "/v1/completions", body=iter([b'{"prompt": "Once", ', b'"max_tokens": 3}']),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertEqual(json.loads(resp.read())["usage"]["completion_tokens"], 3)
        conn.close()

    def test_api_key(self):
        with Server("--api-key", "s3cret-key") as s:
            self.assertEqual(s.json("GET", "/health")[0], 200)
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cret-ke"},
                            {"Authorization": "Bearer s3cret-key2"}, {"Authorization": "Basic s3cret-key"},
                            {"Authorization": "s3cret-key"}):
                for method, path, body in (("GET", "/v1/models", None), ("GET", "/metrics", None),
                                           ("POST", "/v1/completions", {"prompt": "x"})):
                    st, hdrs, err = s.json(method, path, body, headers)
                    Shapes.error(self, st, err, 401, "invalid_api_key")
                    self.assertEqual(hdrs.get("WWW-Authenticate"), "Bearer")
            good = {"Authorization": "Bearer s3cret-key"}
            self.assertEqual(s.json("GET", "/v1/models", None, good)[0], 200)
            self.assertEqual(s.request("GET", "/metrics", None, good)[0], 200)
            st, _, body = s.json("POST", "/v1/completions", greedy({"prompt": ""}, 3), good)
            self.assertEqual(st, 200, body)

    def test_gpus_argument(self):
        # --gpus is read and checked; one GPU is --gpu; several lay the model across them, and where
        # that cannot be done (here: no usable GPU) the server refuses with the reason instead of
        # quietly serving on one GPU or the CPU.
        def run(*extra):
            p = subprocess.run([ARGS.server, "--model", ARGS.model, "--port", "0", "--threads", "1", *extra],
                               capture_output=True, text=True, timeout=30)
            return p.returncode, p.stderr
        rc, err = run("--backend", "cuda", "--gpus", "0,1")
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot be laid across 2 GPUs (0,1)", err)
        self.assertIn("--gpu N", err)
        for extra, words in ((("--gpus", "0"), "--gpus goes with --backend cuda"),
                             (("--backend", "cuda", "--gpus", "0,0"), "names GPU 0 twice"),
                             (("--backend", "cuda", "--gpus", "0,x"), "takes GPU indices"),
                             (("--backend", "cuda", "--gpus", ""), "takes GPU indices"),
                             (("--backend", "cuda", "--gpu", "0", "--gpus", "1"), "not both")):
            rc, err = run(*extra)
            self.assertEqual(rc, 2, (extra, err))
            self.assertIn(words, err)
        # One index serves (on the GPU, or on the CPU with a note where none is usable).
        with Server("--backend", "cuda", "--gpus", "0") as s:
            self.assertEqual(s.json("GET", "/health")[0], 200)

    def test_kv_dtype_argument(self):
        # --kv-dtype q8 serves from the 8-bit KV cache: the same greedy text as folio-cli with the same
        # cache; a name it does not know is a usage error that lists the choices.
        with Server("--kv-dtype", "q8") as s:
            for prompt in ("", "Once upon a time"):
                status, _, body = s.json("POST", "/v1/completions", greedy({"prompt": prompt}))
                self.assertEqual(status, 200, body)
                want = cli("--prompt", prompt, "--max-tokens", "24", "--temperature", "0", "--kv-dtype", "q8")
                self.assertEqual(body["choices"][0]["text"], want)
        p = subprocess.run([ARGS.server, "--model", ARGS.model, "--port", "0", "--kv-dtype", "int4"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--kv-dtype takes native, fp8 or q8, not int4", p.stderr)

    def test_queue_full(self):
        # --queue 0: while one request runs, every other answers 503 at once.
        with Server("--queue", "0") as s:
            seen_503 = False
            for _ in range(10):
                results = []

                def one():
                    results.append(s.json("POST", "/v1/completions", greedy({"prompt": "Once"}, 400)))

                threads = [threading.Thread(target=one) for _ in range(8)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                for st, hdrs, body in results:
                    if st == 503:
                        seen_503 = True
                        Shapes.error(self, st, body, 503, "queue_full")
                        self.assertEqual(hdrs.get("Retry-After"), "1")
                    else:
                        self.assertEqual(st, 200, body)
                        self.assertEqual(body["usage"]["completion_tokens"], 400)
                self.assertTrue(any(st == 200 for st, _, _ in results))
                if seen_503:
                    break
            self.assertTrue(seen_503, "8 concurrent requests never filled a queue of 0")
            self.assertEqual(s.json("GET", "/health")[2]["queue_depth"], 0)


# ----------------------------------------------------------------------------------------------
class LoadSuite(unittest.TestCase):
    PROMPTS = ["Once upon a time", "Lily", "The dog", "Tom and Sam", "One day", "The sun", "A little bird",
               "Mom said", "The box", "They played"]

    def test_load(self):
        requests, clients, max_tokens = ARGS.requests, ARGS.clients, ARGS.max_tokens
        with Server("--ctx", "512", "--queue", "16") as s:
            # Each prompt's answer alone, first: the answers under load must be exactly these.
            want = {}
            for i, p in enumerate(self.PROMPTS):
                path = "/v1/chat/completions" if i % 2 else "/v1/completions"
                body = {"messages": [{"role": "user", "content": p}]} if i % 2 else {"prompt": p}
                _, _, r = s.json("POST", path, greedy(body, max_tokens))
                want[p] = r["choices"][0]["message"]["content"] if i % 2 else r["choices"][0]["text"]
            rss_before = s.rss_kib()
            gen_before = s.metric("folio_generations_total")
            lock = threading.Lock()
            results, errors = [], []
            next_index = [0]

            def client():
                while True:
                    with lock:
                        k = next_index[0]
                        next_index[0] += 1
                    if k >= requests:
                        return
                    i = k % len(self.PROMPTS)
                    p = self.PROMPTS[i]
                    path = "/v1/chat/completions" if i % 2 else "/v1/completions"
                    body = {"messages": [{"role": "user", "content": p}]} if i % 2 else {"prompt": p}
                    try:
                        status, events, done, ttft, text = s.stream(path, greedy(body, max_tokens))
                        with lock:
                            results.append((k, p, status, events, done, ttft, text))
                    except Exception as e:  # noqa: BLE001 - reported below
                        with lock:
                            errors.append(f"request {k}: {e!r}")

            t0 = time.monotonic()
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            wall = time.monotonic() - t0
            self.assertEqual(errors, [])
            self.assertEqual(len(results), requests, "requests lost")
            ids = set()
            for k, p, status, events, done, ttft, text in results:
                self.assertEqual(status, 200, events)
                self.assertTrue(done)
                self.assertEqual(text, want[p], f"request {k} got another client's text")
                ids.add(events[0]["id"])
            self.assertEqual(len(ids), requests, "every stream has its own id")
            # A client has its [DONE] a moment before the server's thread ends the request and
            # lowers the gauges: wait for them (briefly) rather than read them once.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (s.metric("folio_requests_running") != 0 or
                                                   s.metric("folio_queue_depth") != 0 or
                                                   s.metric("folio_generations_total") - gen_before != requests):
                time.sleep(0.05)
            self.assertEqual(s.metric("folio_generations_total") - gen_before, requests)
            self.assertEqual(s.metric("folio_queue_depth"), 0)
            self.assertEqual(s.metric("folio_requests_running"), 0)
            rss_after = s.rss_kib()
            ttfts = sorted(r[5] * 1000 for r in results)
            engine_ttft = sorted(r[3][-1]["folio"]["ttft_ms"] for r in results)
            queue_ms = sorted(r[3][-1]["folio"]["queue_ms"] for r in results)

            def pct(xs, q):
                return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

            report = {
                "model": os.path.basename(ARGS.model), "requests": requests, "clients": clients, "max_tokens": max_tokens,
                "wall_s": round(wall, 2), "requests_per_s": round(requests / wall, 1),
                "client_ttft_ms": {"median": round(statistics.median(ttfts), 1), "p95": round(pct(ttfts, 0.95), 1),
                                   "max": round(ttfts[-1], 1)},
                "engine_ttft_ms": {"median": round(statistics.median(engine_ttft), 2),
                                   "p95": round(pct(engine_ttft, 0.95), 2)},
                "queue_ms": {"median": round(statistics.median(queue_ms), 1), "p95": round(pct(queue_ms, 0.95), 1)},
                "rss_kib": {"before": rss_before, "after": rss_after},
            }
            print(json.dumps(report, indent=2))
            if ARGS.report:
                with open(ARGS.report, "w") as f:
                    json.dump(report, f, indent=2)
            # Memory flat: 100 requests may not grow the process by more than 16 MiB (under ASan
            # its quarantine holds freed memory back, so only leaks found at exit count there).
            if not ARGS.sanitized:
                self.assertLess(rss_after - rss_before, 16 * 1024, report["rss_kib"])


# ----------------------------------------------------------------------------------------------
class OpenAISuite(unittest.TestCase):
    def test_openai_client(self):
        import openai  # noqa: PLC0415 - only this suite needs it

        with Server("--api-key", "k-123", "--ctx", "256") as s:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}/v1", api_key="k-123", max_retries=0,
                                   timeout=60)
            models = client.models.list()
            self.assertEqual([m.id for m in models.data], ["stories260K"])
            r = client.chat.completions.create(model="stories260K", messages=[{"role": "user", "content": "Lily"}],
                                               max_tokens=24, temperature=0)
            self.assertEqual(r.object, "chat.completion")
            self.assertEqual(r.choices[0].message.role, "assistant")
            want = cli("--ask", "Lily", "--max-tokens", "24", "--temperature", "0")
            self.assertEqual(r.choices[0].message.content, want)
            self.assertEqual(r.choices[0].finish_reason, "length")
            self.assertEqual(r.usage.completion_tokens, 24)
            folio = r.model_extra["folio"]
            self.assertGreater(folio["ttft_ms"], 0)
            self.assertEqual(folio["attention"]["mode"], "auto")

            chunks = list(client.chat.completions.create(
                model="stories260K", messages=[{"role": "user", "content": "Lily"}], max_tokens=24, temperature=0,
                stream=True, stream_options={"include_usage": True}))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            self.assertEqual(text, want)
            self.assertEqual(chunks[-1].usage.completion_tokens, 24)

            c = client.completions.create(model="stories260K", prompt="", max_tokens=24, temperature=0)
            self.assertEqual(c.choices[0].text, cli("--prompt", "", "--max-tokens", "24", "--temperature", "0"))
            streamed = "".join(x.choices[0].text for x in client.completions.create(
                model="stories260K", prompt="", max_tokens=24, temperature=0, stream=True))
            self.assertEqual(streamed, c.choices[0].text)

            with self.assertRaises(openai.BadRequestError) as e:
                client.chat.completions.create(model="stories260K", messages=[{"role": "user", "content": "x"}],
                                               temperature=9)
            self.assertEqual(e.exception.code, "invalid_value")
            with self.assertRaises(openai.NotFoundError):
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
            with self.assertRaises(openai.AuthenticationError):
                openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}/v1", api_key="nope",
                              max_retries=0).models.list()


# ----------------------------------------------------------------------------------------------
def remote_cli(url, *args, api_key=None, timeout=120):
    cmd = [ARGS.cli, "--backend", "remote", "--url", url, *args]
    if api_key:
        cmd += ["--api-key", api_key]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class CutStreamHandler(__import__("http.server").server.BaseHTTPRequestHandler):
    """An OpenAI-style server that lists one model, streams two pieces of an answer and then drops
    the connection without finishing."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "cut-model", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ("The answer ", "begins here"):
            ev = {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece},
                                                                             "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True


class EmptyStreamHandler(CutStreamHandler):
    """Like llama-cpp-python's server: a streamed request it refuses gets 200 and an empty stream;
    without streaming it says why (a prompt with "long" in it is too long) or answers."""

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if req.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.close_connection = True
            return
        if "long" in json.dumps(req["messages"]):
            status, body = 400, {"error": {
                "message": "This model's maximum context length is 64 tokens. However, you requested 90 tokens "
                           "(80 in the messages, 10 in the completion).", "type": "invalid_request_error",
                "param": "messages", "code": "context_length_exceeded"}}
        else:
            status, body = 200, {"object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "A whole answer."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class RemoteSuite(unittest.TestCase):
    """folio-cli --backend remote against folio-server (and a server that fails on purpose)."""

    def test_same_answer_as_local(self):
        with Server("--api-key", "key-1") as s:
            url = f"http://127.0.0.1:{s.port}/v1"
            for args in (["--ask", "Lily and Tom"], ["--system", "A story.", "--ask", "The dog"]):
                r = remote_cli(url, *args, "--max-tokens", "24", "--temperature", "0", api_key="key-1")
                self.assertEqual(r.returncode, 0, r.stderr)
                want = cli(*args, "--max-tokens", "24", "--temperature", "0")
                self.assertEqual(r.stdout[:-1], want)
                self.assertIn("server: ttft", r.stderr)  # folio-server's own numbers are shown
            r = remote_cli(url, "--prompt", "", "--max-tokens", "24", "--temperature", "0", "--quiet", api_key="key-1")
            self.assertEqual(r.stdout[:-1], cli("--prompt", "", "--max-tokens", "24", "--temperature", "0"))
            report = os.path.join(os.path.dirname(ARGS.report) or ".", "remote_metrics.json")
            r = remote_cli(url, "--ask", "Lily", "--max-tokens", "8", "--temperature", "0", "--metrics-json", report,
                           "--quiet", api_key="key-1")
            with open(report) as f:
                m = json.load(f)
            self.assertTrue(m["backend"].startswith("remote stories260K at "))
            self.assertEqual(m["decode_tokens"], 8)
            self.assertGreater(m["ttft_ms"], 0)
            self.assertEqual(m["server"]["decode_tokens"], 8)

    def test_documents_packed_with_a_local_tokenizer(self):
        doc = os.path.join(os.path.dirname(ARGS.report) or ".", "remote_pack_doc.txt")
        words = "the dog cat ran park ball tree sun happy big little girl boy played".split()
        lines = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(12)) for i in range(300)]
        lines[150] = "The secret key is hidden under the purple lighthouse."
        with open(doc, "w") as f:
            f.write("\n".join(lines) + "\n")
        tok = os.path.join(os.path.dirname(ARGS.model), "tok512.bin")
        question = ["--file", doc, "--ask", "Where is the purple lighthouse key?", "--max-tokens", "32"]
        with Server() as s:  # the model's context: 512 tokens, the document about 8000
            url = f"http://127.0.0.1:{s.port}/v1"
            r = remote_cli(url, *question, "--tokenizer", tok)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("documents packed:", r.stderr)
            r = remote_cli(url, *question, "--tokenizer", tok, "--fit", "error")
            self.assertEqual(r.returncode, 1)
            self.assertIn("more than the server's context of 512 tokens", r.stderr)
            # Without a tokenizer the server counts, and says it does not fit.
            r = remote_cli(url, *question)
            self.assertEqual(r.returncode, 1)
            self.assertIn("longer than the server's context of 512 tokens", r.stderr)

    def test_errors_a_user_can_act_on(self):
        with Server("--api-key", "key-1", "--ctx", "256") as s:
            url = f"http://127.0.0.1:{s.port}/v1"
            r = remote_cli(url, "--ask", "x", api_key="wrong")
            self.assertEqual(r.returncode, 1)
            self.assertIn("refused the API key", r.stderr)
            self.assertIn("--api-key", r.stderr)
            r = remote_cli(url, "--ask", "x")
            self.assertEqual(r.returncode, 1)
            self.assertIn("refused the API key", r.stderr)
            r = remote_cli(url, "--ask", "x", "--remote-model", "gpt-4o", api_key="key-1")
            self.assertEqual(r.returncode, 1)
            self.assertIn("does not serve the model 'gpt-4o'", r.stderr)
            self.assertIn("stories260K", r.stderr)
            doc = os.path.join(os.path.dirname(ARGS.report) or ".", "remote_long_doc.txt")
            with open(doc, "w") as f:
                f.write("The little dog ran to the park. " * 120)
            r = remote_cli(url, "--file", doc, "--ask", "Where did the dog run?", api_key="key-1")
            self.assertEqual(r.returncode, 1)
            self.assertIn("longer than the server's context of 256 tokens", r.stderr)
            r = remote_cli(url[:-3] + "/nope", "--ask", "x", api_key="key-1")
            self.assertEqual(r.returncode, 1)
            self.assertIn("no such endpoint", r.stderr)
        # Nobody listens on a port that was just closed.
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        r = remote_cli(f"http://127.0.0.1:{port}/v1", "--ask", "x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot reach the server", r.stderr)
        r = remote_cli("ftp://example/v1", "--ask", "x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("http://", r.stderr)

    def test_empty_stream_asks_again_without_streaming(self):
        import http.server  # noqa: PLC0415

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EmptyStreamHandler)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        try:
            url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
            long_q = remote_cli(url, "--ask", "a long question", timeout=30)
            short_q = remote_cli(url, "--ask", "a question", timeout=30)
        finally:
            srv.shutdown()
            srv.server_close()
        self.assertEqual(long_q.returncode, 1)
        self.assertIn("the prompt is longer than the server's context of 64 tokens", long_q.stderr)
        self.assertNotIn("cut off", long_q.stdout + long_q.stderr)
        self.assertEqual(short_q.returncode, 0, short_q.stderr)
        self.assertEqual(short_q.stdout, "A whole answer.\n")
        self.assertIn("prompt 12 tokens | stop: eos", short_q.stderr)

    def test_stream_cut_keeps_the_partial_answer(self):
        import http.server  # noqa: PLC0415

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutStreamHandler)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        try:
            # This server sends no usage: with --tokenizer the prompt is counted here.
            r = remote_cli(f"http://127.0.0.1:{srv.server_address[1]}/v1", "--ask", "x", "--tokenizer",
                           os.path.join(os.path.dirname(ARGS.model), "tok512.bin"), timeout=30)
        finally:
            srv.shutdown()
            srv.server_close()
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stdout.startswith("The answer begins here\n[the answer was cut off here: "), r.stdout)
        self.assertIn("cut off after 2 tokens", r.stderr)
        self.assertIn("what came is kept", r.stderr)
        self.assertIn("(counted here)", r.stderr)


# ----------------------------------------------------------------------------------------------
SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path():
    if os.environ.get("FOLIO_SMOLLM2_GGUF"):
        return os.environ["FOLIO_SMOLLM2_GGUF"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ.get("HOME", "/"), ".cache")
    return os.path.join(cache, "folio", "models", SMOLLM2)


class SmolLM2Suite(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = smollm2_path()
        cls.server = Server("--ctx", "2048", model=cls.model).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def test_greedy_answer_is_folio_cli(self):
        messages = [{"role": "system", "content": "Answer in one short sentence."},
                    {"role": "user", "content": "What is the capital of France?"}]
        status, _, body = self.server.json("POST", "/v1/chat/completions", greedy({"messages": messages}, 32))
        self.assertEqual(status, 200, body)
        Shapes.completion(self, body, chat=True, model="SmolLM2-135M-Instruct.Q4_1")
        answer = body["choices"][0]["message"]["content"]
        self.assertIn("Paris", answer)
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        want = cli("--system", "Answer in one short sentence.", "--ask", "What is the capital of France?",
                   "--max-tokens", "32", "--temperature", "0", model=self.model)
        self.assertEqual(answer, want)
        # The same request streamed, and the follow-up reuses the conversation's KV.
        status, events, done, _, text = self.server.stream("/v1/chat/completions", greedy({"messages": messages}, 32))
        Shapes.stream(self, events, done, chat=True)
        self.assertEqual(text, answer)
        follow = messages + [{"role": "assistant", "content": answer},
                             {"role": "user", "content": "And of Italy?"}]
        _, _, body2 = self.server.json("POST", "/v1/chat/completions", greedy({"messages": follow}, 32))
        self.assertIn("Rome", body2["choices"][0]["message"]["content"])
        self.assertGreater(body2["folio"]["reused_tokens"], body["usage"]["prompt_tokens"] - 2)

    def test_killed_client_frees_the_engine(self):
        s = self.server
        cancelled_before = s.metric("folio_generations_cancelled_total")
        # Client processes that stream a long answer; each is killed (SIGKILL) once it has seen
        # something: A its first text (it is running), B its first event (it waits behind A).
        def spawn(what):
            p = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, str(s.port), what], stdout=subprocess.PIPE,
                                 text=True)
            self.assertEqual(p.stdout.readline().strip(), "seen " + what)
            return p

        def kill(p):
            p.kill()
            p.wait()
            p.stdout.close()

        running = spawn("text")
        waiting = spawn("event")
        self.assertEqual(s.json("GET", "/health")[2]["queue_depth"], 1)
        kill(waiting)
        time.sleep(2.5)  # its stream notices within about two keep-alive seconds
        kill(running)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10 and s.metric("folio_generations_cancelled_total") < cancelled_before + 2:
            time.sleep(0.05)
        freed_s = time.monotonic() - t0
        self.assertEqual(s.metric("folio_generations_cancelled_total"), cancelled_before + 2,
                         "the killed clients' requests were not both cancelled")
        self.assertEqual(s.metric("folio_requests_running"), 0)
        self.assertEqual(s.metric("folio_queue_depth"), 0)
        # The engine is free: the next request starts at once.
        _, _, body = s.json("POST", "/v1/chat/completions",
                            greedy({"messages": [{"role": "user", "content": "Say hi."}]}, 4))
        self.assertLess(body["folio"]["queue_ms"], 100)
        print(f"killed clients: both requests cancelled {freed_s * 1000:.0f} ms after the running one's kill")

    def test_sigterm_mid_request(self):
        # SIGTERM while a request runs: it is answered 503 (not left hanging) and the server exits 0.
        with Server("--ctx", "2048", model=self.model) as victim:
            result = {}

            def ask():
                result["r"] = victim.json("POST", "/v1/chat/completions", greedy(
                    {"messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}, 1500))

            t = threading.Thread(target=ask)
            t.start()
            t0 = time.monotonic()
            while victim.metric("folio_requests_running") == 0 and time.monotonic() - t0 < 10:
                time.sleep(0.05)
            time.sleep(0.3)
            victim.proc.send_signal(signal.SIGTERM)
            t.join(timeout=20)
            self.assertFalse(t.is_alive(), "the request was left hanging")
            st, _, body = result["r"]
            Shapes.error(self, st, body, 503, "server_shutting_down")
            self.assertEqual(victim.proc.wait(timeout=15), 0)

    def test_remote_document_question_and_server_killed(self):
        doc = os.path.join(os.path.dirname(ARGS.report) or ".", "remote_doc.md")
        with open(doc, "w") as f:
            f.write("# Lighthouse notes\n\nThe lighthouse on Karrow Point was built in 1871 by the engineer "
                    "Mara Quill. Its lamp is green.\n")
        question = ["--file", doc, "--ask", "Who built the lighthouse on Karrow Point?"]
        url = f"http://127.0.0.1:{self.server.port}/v1"
        r = remote_cli(url, *question, "--max-tokens", "40", "--temperature", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Quill", r.stdout)
        want = cli(*question, "--max-tokens", "40", "--temperature", "0", model=self.model)
        self.assertEqual(r.stdout[:-1], want, "the remote answer is the local one")
        # A server killed mid-answer: folio-cli keeps what came, marks it and says why.
        with Server("--ctx", "2048", model=self.model) as victim:
            cmd = [ARGS.cli, "--backend", "remote", "--url", f"http://127.0.0.1:{victim.port}/v1", "--ask",
                   "Write a very long story about a dragon.", "--max-tokens", "1500", "--temperature", "0"]
            client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            first = client.stdout.read(20)
            victim.proc.kill()
            victim.proc.wait()
            out, err = client.communicate(timeout=30)
            victim.proc.send_signal = lambda sig: None  # already gone; __exit__ must not fail
            victim.proc.returncode = 0
        self.assertEqual(client.returncode, 1, err)
        self.assertGreater(len(first), 0)
        self.assertIn("[the answer was cut off here: ", out)
        self.assertIn("what came is kept", err)


# ----------------------------------------------------------------------------------------------
FOREIGN_ALIAS = "SmolLM2-135M-Instruct"


def venv_python():
    venv = os.environ.get("FOLIO_VENV") or os.path.join(os.environ.get("HOME", "/"), ".cache/folio/venv")
    return os.path.join(venv, "bin", "python")


def foreign_server_missing():
    """Why llama.cpp's server (PyPI xllamacpp in Folio's venv) cannot run here, or "" when it can."""
    py = venv_python()
    if not os.path.exists(py):
        return f"there is no venv at {os.path.dirname(os.path.dirname(py))}"
    r = subprocess.run([py, "-c", "import xllamacpp"], capture_output=True, text=True, timeout=60)
    return "" if r.returncode == 0 else f"xllamacpp is not installed in {py}"


class ForeignServer:
    """llama.cpp's own OpenAI-compatible server (tests/server/foreign_server.py, through the xllamacpp
    wheel) on SmolLM2 on a free loopback port; its log goes to a file beside the report."""

    def __init__(self, ctx, log_name):
        self.cmd = [venv_python(), os.path.join(os.path.dirname(os.path.abspath(__file__)), "foreign_server.py"),
                    "--model", smollm2_path(), "--alias", FOREIGN_ALIAS, "--ctx", str(ctx), "--threads", ARGS.threads]
        self.log_path = os.path.join(os.path.dirname(ARGS.report) or ".", log_name)
        self.proc = None
        self.url = None

    def __enter__(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if "listening on http://" not in line:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            with open(self.log_path) as f:
                raise RuntimeError("llama.cpp's server did not start: " + line + f.read()[-2000:])
        self.url = line.split()[2]
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.stdout.close()
        self.log.close()


LIGHTHOUSE = ("# Lighthouse notes\n\nThe lighthouse on Karrow Point was built in 1871 by the engineer "
              "Mara Quill. Its lamp is green.\n")


def footer_ttft_ms(stderr):
    """The client-side TTFT of folio-cli's footer ("ttft 123.4 ms | decode ... (measured here)")."""
    for line in stderr.splitlines():
        if line.startswith("ttft ") and "(measured here)" in line:
            return float(line.split()[1])
    return None


class ForeignSuite(unittest.TestCase):
    """folio-cli --backend remote against llama.cpp's own server (a server nobody here wrote), on
    SmolLM2 Q4_1: a question about a document, the errors it lets us check, and the server killed
    mid-answer."""

    @classmethod
    def setUpClass(cls):
        cls.server = ForeignServer(1024, "foreign_server.log").__enter__()
        cls.doc = os.path.join(os.path.dirname(ARGS.report) or ".", "foreign_doc.md")
        with open(cls.doc, "w") as f:
            f.write(LIGHTHOUSE)
        cls.report = {}

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)
        if ARGS.report:
            with open(ARGS.report, "w") as f:
                json.dump(cls.report, f, indent=2)

    def test_document_question(self):
        question = ["--file", self.doc, "--ask", "Who built the lighthouse on Karrow Point?", "--max-tokens", "40",
                    "--temperature", "0"]
        metrics = os.path.join(os.path.dirname(ARGS.report) or ".", "foreign_metrics.json")
        r = remote_cli(self.server.url, *question, "--metrics-json", metrics)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Quill", r.stdout)
        self.assertIn(f"asking {FOREIGN_ALIAS} at {self.server.url}, context 1024 tokens", r.stderr)
        ttft = footer_ttft_ms(r.stderr)
        self.assertIsNotNone(ttft, r.stderr)
        self.assertGreater(ttft, 0)
        self.assertRegex(r.stderr, r"prompt \d+ tokens")  # the server's usage, not "?"
        self.assertNotIn("server: ttft", r.stderr)  # llama.cpp sends no folio field
        with open(metrics) as f:
            m = json.load(f)
        self.assertTrue(m["backend"].startswith(f"remote {FOREIGN_ALIAS} at "), m["backend"])
        self.assertGreater(m["ttft_ms"], 0)
        self.assertGreater(m["decode_tokens"], 0)
        self.assertNotIn("server", m)
        # The same prompt bytes as the local engine; the numbers of another engine may pick
        # other tokens, so the local answer is reported, not required.
        local = cli(*question, model=smollm2_path())
        self.report["document_question"] = {"answer": r.stdout[:-1], "local_answer": local,
                                            "same_as_local": r.stdout[:-1] == local, "ttft_ms": m["ttft_ms"],
                                            "decode_tok_s": m["decode_tok_s"], "prompt_tokens": m["prompt_tokens"]}
        print(json.dumps(self.report["document_question"], indent=2))

    def test_documents_packed_with_the_local_tokenizer(self):
        # A document of about 3000 tokens for a 1024-token server: with the model's tokenizer here,
        # folio-cli packs the part that holds the answer into the server's context.
        doc = os.path.join(os.path.dirname(ARGS.report) or ".", "foreign_long_doc.md")
        filler = ["The harbour office keeps the tide tables for the northern coast."] * 220
        filler[110] = LIGHTHOUSE.split("\n\n")[1].strip()
        with open(doc, "w") as f:
            f.write("\n".join(filler) + "\n")
        question = ["--file", doc, "--ask", "Who built the lighthouse on Karrow Point?", "--max-tokens", "40",
                    "--temperature", "0"]
        r = remote_cli(self.server.url, *question)
        self.assertEqual(r.returncode, 1)
        self.assertIn("the prompt is longer than the server's context of 1024 tokens", r.stderr)
        self.assertIn("exceeds the available context size", r.stderr)  # llama.cpp's own words
        self.assertIn("or give --tokenizer", r.stderr)  # what would make it fit
        r = remote_cli(self.server.url, *question, "--tokenizer", smollm2_path())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("documents packed:", r.stderr)
        self.assertIn("Quill", r.stdout)

    def test_unknown_model(self):
        r = remote_cli(self.server.url, "--ask", "x", "--remote-model", "gpt-4o")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"does not serve the model 'gpt-4o'; it serves: {FOREIGN_ALIAS}", r.stderr)

    def test_server_killed_mid_answer(self):
        with ForeignServer(2048, "foreign_victim.log") as victim:
            cmd = [ARGS.cli, "--backend", "remote", "--url", victim.url, "--ask",
                   "Write a very long story about a dragon.", "--max-tokens", "1500", "--temperature", "0"]
            client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            first = client.stdout.read(20)
            victim.kill()
            out, err = client.communicate(timeout=30)
        self.assertEqual(client.returncode, 1, err)
        self.assertEqual(len(first), 20)
        self.assertIn("[the answer was cut off here: ", out)
        self.assertIn(victim.url, out.split("[the answer was cut off here: ", 1)[1])
        self.assertIn("what came is kept", err)


KILLED_CLIENT = r"""
import http.client, json, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
body = {"messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": 1500, "temperature": 0, "stream": True}
conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
resp = conn.getresponse()
for raw in resp:
    line = raw.decode().strip()
    if not line.startswith("data: {"):
        continue
    if sys.argv[2] == "event" or json.loads(line[6:])["choices"][0]["delta"].get("content"):
        print("seen " + sys.argv[2], flush=True)
        break
time.sleep(600)
"""

SUITES = {"foreign": ForeignSuite, "http": HttpSuite, "load": LoadSuite, "openai": OpenAISuite,
          "remote": RemoteSuite, "smollm2": SmolLM2Suite}


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("suite", choices=sorted(SUITES))
    p.add_argument("--server", required=True)
    p.add_argument("--cli", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--report", default="")
    p.add_argument("--requests", type=int, default=100, help="load: requests in all")
    p.add_argument("--clients", type=int, default=8, help="load: concurrent clients")
    p.add_argument("--max-tokens", type=int, default=48, help="load: tokens per answer")
    p.add_argument("--backend", default="cpu", help="the engine's backend in folio-server and folio-cli")
    p.add_argument("--sanitized", action="store_true", help="the binaries are built with ASan+UBSan")
    p.add_argument("--threads", default="1", help="engine threads of folio-server and folio-cli")
    ARGS, rest = p.parse_known_args()
    if ARGS.suite == "openai":
        try:
            import openai  # noqa: F401
        except ImportError:
            # The venv tools/deps.sh fills; run again with its Python when it has the library.
            venv = os.environ.get("FOLIO_VENV") or os.path.join(os.environ.get("HOME", "/"), ".cache/folio/venv")
            py = os.path.join(venv, "bin", "python")
            if os.path.exists(py) and not os.environ.get("FOLIO_SERVER_TEST_VENV"):
                os.environ["FOLIO_SERVER_TEST_VENV"] = "1"
                os.execv(py, [py, *sys.argv])
            print("SKIP: the openai library is not installed (bash tools/deps.sh installs it)")
            return SKIP
    if ARGS.suite == "foreign" and (why := foreign_server_missing()):
        # CI installs it (tools/deps.sh) and must run this suite; elsewhere it may be absent.
        print(f"{'FAIL' if os.environ.get('CI') == 'true' else 'SKIP'}: llama.cpp's server cannot run: {why}; "
              "bash tools/deps.sh installs the pinned xllamacpp wheel into Folio's venv")
        return 1 if os.environ.get("CI") == "true" else SKIP
    if ARGS.suite in ("smollm2", "foreign") and not os.path.exists(smollm2_path()):
        print(f"SKIP: SmolLM2 is not in the cache ({smollm2_path()}); run python3 tools/fetch_model.py")
        return SKIP
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(SUITES[ARGS.suite])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
