#!/usr/bin/env bash
# Folio's packages from a clean build: the DEB (Debian 12 and later: apt install ./folio_*.deb) and
# the TGZ (unpack anywhere, run bin/folio), both in build/package/packages. installer/ says what
# goes in them; ctest -L package checks them (from the ci build).
#   bash tools/package.sh            FOLIO_JOBS=N sets the build's parallelism (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
rm -rf build/package
cmake --preset package >/dev/null
cmake --build --preset package -j "${FOLIO_JOBS:-$(nproc)}"
(cd build/package && cpack -G "DEB;TGZ")
echo "== packages =="
ls -l build/package/packages/*.deb build/package/packages/*.tar.gz
