#!/usr/bin/env bash
# Run here (Debian, after tools/deps.sh): copies the few Debian files the GPU build needs into
# .deps/ (ignored by git), which a device run carries: nlohmann-json headers and CMake config,
# libsentencepiece headers and shared library, and cpp-httplib (folio-server, --backend remote):
# its header with the OpenSSL, zlib and brotli headers it includes, and in .deps/lib/httplib the
# library with the ones it links to.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .deps && mkdir -p .deps/include .deps/lib .deps/share/cmake
cp -r /usr/include/nlohmann .deps/include/
cp -r /usr/share/cmake/nlohmann_json .deps/share/cmake/
cp /usr/include/sentencepiece_processor.h /usr/include/sentencepiece_trainer.h /usr/include/pcre2.h .deps/include/
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
cp -P /usr/lib/"$arch"/libsentencepiece.so* /usr/lib/"$arch"/libsentencepiece_train.so* .deps/lib/
cp -P /usr/lib/"$arch"/libpcre2-8.so* .deps/lib/
if [ -f /usr/include/httplib.h ]; then
  mkdir -p .deps/lib/httplib .deps/include/openssl
  cp /usr/include/httplib.h /usr/include/zlib.h /usr/include/zconf.h .deps/include/
  cp -r /usr/include/brotli .deps/include/
  cp /usr/include/openssl/*.h /usr/include/"$arch"/openssl/*.h .deps/include/openssl/
  for lib in libcpp-httplib.so libssl.so.3 libcrypto.so.3 libz.so.1 libbrotlidec.so.1 libbrotlienc.so.1 \
             libbrotlicommon.so.1; do
    cp -P /usr/lib/"$arch"/"$lib"* .deps/lib/httplib/ 2>/dev/null || cp -P /lib/"$arch"/"$lib"* .deps/lib/httplib/
  done
fi
du -sh .deps
