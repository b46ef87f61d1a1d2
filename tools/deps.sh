#!/usr/bin/env bash
# The one list of what Folio needs from Debian 12 (bookworm). Both README commands run this; it
# installs only what is missing (as root, or through sudo).
#   bash tools/deps.sh          build tools, engine libraries and the Qt parts
#   bash tools/deps.sh --list   print the package names and exit
set -euo pipefail

BUILD_PACKAGES=(cmake ninja-build g++ pkg-config)
ENGINE_PACKAGES=(libsentencepiece-dev nlohmann-json3-dev libpcre2-dev)
FUZZ_PACKAGES=(clang libclang-rt-14-dev)
PYTHON_PACKAGES=(python3 python3-pip python3-venv)
TOOL_PACKAGES=(time)  # /usr/bin/time -v for tools/hostile_probes.py
APP_PACKAGES=(qt6-base-dev libqt6opengl6-dev libqt6sql6-sqlite qt6-charts-dev qt6-pdf-dev libgl-dev
              poppler-utils valgrind r-doc-pdf)
PACKAGES=("${BUILD_PACKAGES[@]}" "${ENGINE_PACKAGES[@]}" "${APP_PACKAGES[@]}" "${FUZZ_PACKAGES[@]}"
          "${PYTHON_PACKAGES[@]}" "${TOOL_PACKAGES[@]}")

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
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: run as root or install sudo: missing ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
