#!/usr/bin/env bash
# The one list of what Folio needs from Debian 12 (bookworm). Both README commands run this; it
# installs only what is missing (as root, or through sudo).
#   bash tools/deps.sh          build tools, engine libraries and the Qt parts
#   bash tools/deps.sh --list   print the package names and exit
# PyPI packages the tests use as clients (the OpenAI library against folio-server) go into one
# virtual environment, $FOLIO_VENV (default ~/.cache/folio/venv), which the tests look for.
set -euo pipefail

BUILD_PACKAGES=(cmake ninja-build g++ pkg-config)
ENGINE_PACKAGES=(libsentencepiece-dev nlohmann-json3-dev libpcre2-dev libcpp-httplib-dev)
FUZZ_PACKAGES=(clang libclang-rt-14-dev)
PYTHON_PACKAGES=(python3 python3-pip python3-venv)
# The packages (installer/, tools/package.sh) and their checks: man pages from --help, the icon's PNG
# sizes, Debian's shlibdeps, lintian and the desktop entry and AppStream validators.
PACKAGING_PACKAGES=(help2man librsvg2-bin dpkg-dev lintian desktop-file-utils appstream)
PYPI_PACKAGES=(openai==3.60.0)
# A server nobody here wrote, for the remote engine's tests (server_foreign): llama.cpp's own
# OpenAI-compatible server, prebuilt for the CPU in xllamacpp's wheel (34 MB, no dependencies;
# installs in seconds, where llama-cpp-python from source compiles llama.cpp for many minutes).
# Pinned by version and, on x86-64, by the wheel's sha256.
FOREIGN_SERVER_VERSION=2026.10.11549
FOREIGN_SERVER_SHA256_X86_64=c54e7d13520ecc989c63dc99d55de3065e2f343a91f43f053d16b5e62077c261
FOLIO_VENV="${FOLIO_VENV:-$HOME/.cache/folio/venv}"
TOOL_PACKAGES=(time)  # /usr/bin/time -v for tools/hostile_probes.py
APP_PACKAGES=(qt6-base-dev libqt6opengl6-dev libqt6sql6-sqlite qt6-charts-dev qt6-pdf-dev libgl-dev
              poppler-utils valgrind r-doc-pdf)
PACKAGES=("${BUILD_PACKAGES[@]}" "${ENGINE_PACKAGES[@]}" "${APP_PACKAGES[@]}" "${FUZZ_PACKAGES[@]}"
          "${PYTHON_PACKAGES[@]}" "${PACKAGING_PACKAGES[@]}" "${TOOL_PACKAGES[@]}")

if [[ "${1:-}" == "--list" ]]; then
  echo "${PACKAGES[@]}"
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#PACKAGES[@]} packages are installed"
else
  echo "deps: installing ${missing[*]}"
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "deps: run as root or install sudo: missing ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The PyPI clients, as the user (no root needed). Without network the tests that need them skip.
if ! "$FOLIO_VENV/bin/python" -c "import openai" 2>/dev/null; then
  echo "deps: installing ${PYPI_PACKAGES[*]} into $FOLIO_VENV"
  { [[ -x "$FOLIO_VENV/bin/python" ]] || python3 -m venv "$FOLIO_VENV"; } &&
    "$FOLIO_VENV/bin/pip" install -q --disable-pip-version-check "${PYPI_PACKAGES[@]}" ||
    echo "deps: note: could not install ${PYPI_PACKAGES[*]} (no network?); the OpenAI-client tests will skip" >&2
fi
# llama.cpp's server, the pinned version only (a newer one is replaced).
if ! "$FOLIO_VENV/bin/python" -c "import importlib.metadata as m, sys; \
    sys.exit(m.version('xllamacpp') != '$FOREIGN_SERVER_VERSION')" 2>/dev/null; then
  echo "deps: installing xllamacpp==$FOREIGN_SERVER_VERSION (llama.cpp's server) into $FOLIO_VENV"
  requirement="xllamacpp==$FOREIGN_SERVER_VERSION"
  [[ $(uname -m) == x86_64 ]] && requirement+=" --hash=sha256:$FOREIGN_SERVER_SHA256_X86_64"
  { [[ -x "$FOLIO_VENV/bin/python" ]] || python3 -m venv "$FOLIO_VENV"; } &&
    "$FOLIO_VENV/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
      -r /dev/stdin <<<"$requirement" ||
    echo "deps: note: could not install xllamacpp (no network?); server_foreign fails under CI=true, else skips" >&2
fi
