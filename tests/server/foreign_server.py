#!/usr/bin/env python3
"""A server nobody here wrote: llama.cpp's own OpenAI-compatible HTTP server (llama-server's code,
through the prebuilt PyPI wheel `xllamacpp` that tools/deps.sh pins into Folio's venv), on a GGUF
model on a loopback port. It prints one line, "listening on http://127.0.0.1:PORT/v1", once the
model is loaded, and serves until SIGTERM or SIGINT (exit 0).

Usage: foreign_server.py --model GGUF [--ctx N] [--alias NAME] [--threads N] [--port N]
Exit codes: 0 stopped by a signal, 1 failed to start, 77 xllamacpp is not installed here.
"""
import argparse
import os
import signal
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--ctx", type=int, default=2048, help="context tokens of the one slot")
    p.add_argument("--alias", default="", help="the model's id in /v1/models (default: the file's path)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--port", type=int, default=0, help="0: a free port the kernel picks")
    args = p.parse_args()
    try:
        import xllamacpp  # noqa: PLC0415 - only in Folio's venv
    except ImportError:
        print("xllamacpp is not installed (bash tools/deps.sh installs it into Folio's venv)", file=sys.stderr)
        return 77

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = 1  # one slot: the whole context for one request, as folio-server
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.ui = False
    if args.alias:
        params.model_alias = {args.alias}
    t0 = time.monotonic()
    try:
        server = xllamacpp.Server(params)
    except Exception as e:  # noqa: BLE001 - any failure to load is reported the same way
        print(f"llama.cpp's server did not start: {e}", file=sys.stderr)
        return 1
    print(f"listening on {server.listening_address}/v1 (llama.cpp server {xllamacpp.__version__}, "
          f"loaded in {time.monotonic() - t0:.2f} s)", flush=True)

    # The server runs on its own threads; its teardown at interpreter exit is not needed here.
    def stop(*_):
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
