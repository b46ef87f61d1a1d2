#!/usr/bin/env bash
# Run here (Debian, after tools/deps.sh): copies the few Debian files the GPU build needs into
# .deps/ (ignored by git), which a device run carries: nlohmann-json headers and CMake config,
# libsentencepiece headers and shared library.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .deps && mkdir -p .deps/include .deps/lib .deps/share/cmake
cp -r /usr/include/nlohmann .deps/include/
cp -r /usr/share/cmake/nlohmann_json .deps/share/cmake/
cp /usr/include/sentencepiece_processor.h /usr/include/sentencepiece_trainer.h /usr/include/pcre2.h .deps/include/
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
cp -P /usr/lib/"$arch"/libsentencepiece.so* /usr/lib/"$arch"/libsentencepiece_train.so* .deps/lib/
cp -P /usr/lib/"$arch"/libpcre2-8.so* .deps/lib/
du -sh .deps
