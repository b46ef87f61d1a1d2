#!/usr/bin/env bash
# Renders the hicolor PNG sizes of Folio's icon from its SVG (rsvg-convert, Debian's librsvg2-bin).
# The PNGs are committed: the build needs no image tools, and the app's window icon (ui/folio.qrc)
# and the installed hicolor theme use the same files. Run again after editing the SVG.
set -euo pipefail
cd "$(dirname "$0")"
svg=io.github.folio.Folio.svg
for size in 16 24 32 48 64 128 256 512; do
  rsvg-convert --width "$size" --height "$size" --format png --output "png/${size}.png" "$svg"
done
echo "rendered: $(ls png | tr '\n' ' ')"
