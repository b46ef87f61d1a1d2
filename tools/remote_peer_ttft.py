#!/usr/bin/env python3
"""TTFT through the remote engine: folio-cli --backend remote against folio-server and against
llama.cpp's own server (tests/server/foreign_server.py, the xllamacpp wheel in Folio's venv), both
on the same GGUF model with the same engine threads, for the same document and question. Each run
starts with another --system line, so no run reuses the KV of an earlier one (both servers keep a
prefix); the TTFT is folio-cli's own, measured at the client.

With --llama-cpp-python PYTHON (a Python that has llama-cpp-python[server], which compiles
llama.cpp when installed and so is not in tools/deps.sh), its server is measured too.

Usage: tools/remote_peer_ttft.py --build build/h [--model GGUF] [--doc FILE] [--runs 5] [--threads 1]
                                 [--llama-cpp-python PYTHON]
Prints one JSON object: per server, the prompt tokens, the median and each TTFT in ms, and the CPU
time the server process spent on each request (user + system, from /proc): on a shared machine
the wall-clock TTFT grows with the load, the CPU time of a one-thread server much less.
"""
import argparse
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_ms(pid):
    """User + system CPU time of a process, its threads included (/proc/PID/stat), in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, log):
    if "llama_cpp.server" in cmd:  # uvicorn says nothing on stdout: wait for /v1/models
        url = f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}/v1"
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "/models", timeout=2).read()
                return proc, url
            except OSError:
                time.sleep(0.5)
        proc.kill()
        sys.exit("llama-cpp-python's server did not start")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if "listening on http://" not in line:
        proc.kill()
        sys.exit(f"{cmd[0]} did not start: {line}")
    return proc, line.split("listening on ", 1)[1].split()[0].rstrip("/")


def main():
    home = os.environ.get("HOME", "/")
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True, help="the build folder (has app/folio-cli, app/folio-server)")
    p.add_argument("--model", default=os.path.join(home, ".cache/folio/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--doc", default=os.path.join(ROOT, "resources/demo/halcyon-h40-manual.md"))
    p.add_argument("--question", default="How far can the outdoor sensor be from the display in open air?")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--max-tokens", default="24")
    p.add_argument("--threads", default="1")
    p.add_argument("--ctx", default="4096")
    p.add_argument("--llama-cpp-python", default="", help="a Python with llama-cpp-python[server] installed")
    args = p.parse_args()
    venv = os.environ.get("FOLIO_VENV") or os.path.join(home, ".cache/folio/venv")
    servers = {
        "folio-server": [os.path.join(args.build, "app/folio-server"), "--model", args.model, "--port", "0",
                         "--threads", args.threads, "--ctx", args.ctx],
        "llama.cpp server (xllamacpp)": [os.path.join(venv, "bin/python"),
                                         os.path.join(ROOT, "tests/server/foreign_server.py"), "--model", args.model,
                                         "--threads", args.threads, "--ctx", args.ctx],
    }
    if args.llama_cpp_python:
        servers["llama-cpp-python server"] = [args.llama_cpp_python, "-m", "llama_cpp.server", "--model", args.model,
                                              "--n_threads", args.threads, "--n_threads_batch", args.threads,
                                              "--n_ctx", args.ctx, "--host", "127.0.0.1", "--port", str(free_port())]
    out = {"model": os.path.basename(args.model), "document": os.path.basename(args.doc), "threads": args.threads,
           "max_tokens": args.max_tokens, "load_average_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in servers.items():
            with open(os.path.join(tmp, "server.log"), "w") as log:
                proc, url = start(cmd, log)
                ttft, cpu, prompt = [], [], None
                try:
                    for i in range(args.runs):
                        metrics = os.path.join(tmp, "m.json")
                        cpu0 = cpu_ms(proc.pid)
                        r = subprocess.run([os.path.join(args.build, "app/folio-cli"), "--backend", "remote", "--url",
                                            url, "--quiet", "--system", f"Run {i}: answer briefly.", "--file", args.doc,
                                            "--ask", args.question, "--max-tokens", args.max_tokens, "--temperature", "0",
                                            "--metrics-json", metrics], capture_output=True, text=True, timeout=300)
                        if r.returncode != 0:
                            sys.exit(f"{name}: folio-cli failed: {r.stderr}")
                        with open(metrics) as f:
                            m = json.load(f)
                        cpu.append(round(cpu_ms(proc.pid) - cpu0, 1))
                        ttft.append(round(m["ttft_ms"], 1))
                        prompt = m["prompt_tokens"]
                finally:
                    proc.terminate()
                    proc.wait(timeout=15)
            out[name] = {"prompt_tokens": prompt, "ttft_ms_median": statistics.median(ttft), "ttft_ms": ttft,
                         "server_cpu_ms_median": statistics.median(cpu), "server_cpu_ms": cpu}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
