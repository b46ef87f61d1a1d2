#!/usr/bin/env bash
# ctest (label package): Folio's DEB and TGZ (installer/) as users get them.
#   check_package.sh build BUILD SOURCE      cpack: the DEB and the TGZ into BUILD/packages
#   check_package.sh contents BUILD SOURCE   the DEB's files and control fields, lintian, desktop-file-validate,
#                                            appstreamcli validate
#   check_package.sh unpacked-deb BUILD SOURCE   the DEB unpacked (dpkg-deb -x) into a temporary root: folio-cli
#                                            --version, the stories260K golden run and the app, with no build or
#                                            source tree to fall back on
#   check_package.sh unpacked-tgz BUILD SOURCE   the same from the tarball
#   check_package.sh apt BUILD SOURCE        as root: apt install, the golden run from /usr/bin/folio-cli, the app
#                                            offscreen, apt purge, nothing of it left (exit 77 when not root)
# Every program runs with a clean environment (no FOLIO_* variables), an empty working folder and a
# HOME of its own (no SmolLM2 in its cache: the app starts on the bundled stories260K).
set -euo pipefail
step=$1 build=$(realpath "$2") source=$(realpath "$3")
packages=$build/packages
# tests/tst_cli.cpp goldenStories: stories260K, greedy from BOS, 24 tokens.
golden="Once upon a time, there was a little girl named Lily. She loved to play outsid"

tmp=$(mktemp -d /tmp/folio-package.XXXXXX)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

the_deb() {
  local debs=("$packages"/folio_*.deb)
  [[ -f ${debs[0]} ]] || fail "no DEB in $packages (the package_build test makes it)"
  echo "${debs[0]}"
}
the_tgz() {
  local tgzs=("$packages"/folio-*.tar.gz)
  [[ -f ${tgzs[0]} ]] || fail "no TGZ in $packages (the package_build test makes it)"
  echo "${tgzs[0]}"
}

# run_clean PROGRAM ARGS...: in an empty folder, with nothing but PATH, HOME and the Qt platform.
run_clean() {
  mkdir -p "$tmp/cwd" "$tmp/home" "$tmp/runtime"
  chmod 700 "$tmp/runtime"
  (cd "$tmp/cwd" && env -i PATH=/usr/bin:/bin HOME="$tmp/home" LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen \
     XDG_RUNTIME_DIR="$tmp/runtime" "$@")
}

# check_programs BINDIR SHAREDIR: what a user of an installed Folio runs.
check_programs() {
  local bin=$1 share=$2
  local version
  version=$(run_clean "$bin/folio-cli" --version)
  [[ $version =~ ^folio-cli\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "folio-cli --version said '$version'"
  echo "ok: $version"

  run_clean "$bin/folio-cli" --model stories260K --prompt "" --max-tokens 24 --temperature 0 \
    >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; fail "the golden run failed"; }
  [[ $(cat "$tmp/out") == "$golden" ]] || { cat "$tmp/err"; fail "the golden run wrote '$(cat "$tmp/out")'"; }
  # The model came from this root's share/folio, found beside bin/, not from the source tree.
  grep -qF "ships with Folio: $share/models/stories260K/stories260K.bin" "$tmp/err" ||
    { cat "$tmp/err"; fail "the golden run did not take stories260K from $share"; }
  echo "ok: golden run with $share/models/stories260K"

  # No path of the source or build tree is compiled into a program, and a folio-cli without its
  # share/folio beside it finds no bundled model (it does not fall back to the source tree).
  for name in folio folio-cli folio-bench folio-sparse folio-server; do
    [[ -e $bin/$name ]] || continue
    if grep -qaF -e "$source/resources" -e "$build/share" "$bin/$name"; then
      fail "$bin/$name holds a path of the source or build tree"
    fi
  done
  mkdir -p "$tmp/lonely/bin"
  cp "$bin/folio-cli" "$tmp/lonely/bin/"
  if run_clean "$tmp/lonely/bin/folio-cli" --model stories260K --prompt "" --max-tokens 2 >/dev/null 2>"$tmp/err"; then
    fail "folio-cli without share/folio beside it still found stories260K"
  fi
  echo "ok: no fallback to the source tree"

  # The default model is not in the package: folio-fetch-model fetches it (here: only looks for it).
  if run_clean "$bin/folio-fetch-model" --print-path-only >"$tmp/out" 2>"$tmp/err" || ! grep -q "is not there" "$tmp/err"; then
    cat "$tmp/out" "$tmp/err"
    fail "folio-fetch-model --print-path-only should say the model is not there"
  fi
  echo "ok: folio-fetch-model runs (no default model in a fresh HOME)"

  # The app opens offscreen on the bundled model, shows the welcome screen, saves it and quits.
  run_clean "$bin/folio" --screenshot "$tmp/welcome.png" --welcome --timeout 60 >"$tmp/app.log" 2>&1 ||
    { cat "$tmp/app.log"; fail "the app did not start and quit"; }
  [[ -s $tmp/welcome.png ]] || fail "the app saved no screenshot"
  echo "ok: the app opened offscreen on the bundled model and quit"
}

case $step in
  build)
    rm -rf "$packages"
    (cd "$build" && cpack -G "DEB;TGZ" >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; fail "cpack failed"; }
    deb=$(the_deb) tgz=$(the_tgz)
    echo "ok: $(basename "$deb") $(du -h "$deb" | cut -f1), $(basename "$tgz") $(du -h "$tgz" | cut -f1)"
    ;;

  contents)
    deb=$(the_deb)
    dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$tmp/files"
    want=(/usr/bin/folio /usr/bin/folio-cli /usr/bin/folio-bench /usr/bin/folio-sparse /usr/bin/folio-fetch-model
          /usr/share/folio/models/stories260K/stories260K.bin /usr/share/folio/models/stories260K/tok512.bin
          /usr/share/folio/models/folio-needle/config.json /usr/share/folio/models/folio-needle/tokenizer.model
          /usr/share/folio/models/folio-needle/folio-sparse.json
          /usr/share/folio/models/folio-needle/model-00001-of-00002.safetensors
          /usr/share/folio/demo/halcyon-h40-manual.md /usr/share/folio/demo/planted-facts.md
          /usr/share/folio/demo/planted-facts.json
          /usr/share/applications/io.github.folio.Folio.desktop
          /usr/share/metainfo/io.github.folio.Folio.metainfo.xml
          /usr/share/icons/hicolor/scalable/apps/io.github.folio.Folio.svg
          /usr/share/man/man1/folio-cli.1.gz /usr/share/man/man1/folio.1.gz /usr/share/man/man1/folio-fetch-model.1.gz
          /usr/share/doc/folio/copyright /usr/share/doc/folio/changelog.gz)
    for size in 16 24 32 48 64 128 256 512; do want+=("/usr/share/icons/hicolor/${size}x${size}/apps/io.github.folio.Folio.png"); done
    for f in "${want[@]}"; do grep -qxF "$f" "$tmp/files" || fail "the DEB has no $f"; done
    if grep -qE '\.gguf$' "$tmp/files"; then fail "the DEB holds a GGUF model (the default model is fetched on first use)"; fi
    echo "ok: the DEB holds the ${#want[@]} files looked for ($(wc -l <"$tmp/files") entries)"

    for field in Package Version Maintainer Section Homepage Description Depends; do
      [[ -n $(dpkg-deb -f "$deb" "$field") ]] || fail "the DEB has no $field field"
    done
    depends=$(dpkg-deb -f "$deb" Depends) recommends=$(dpkg-deb -f "$deb" Recommends)
    for p in libqt6core6 libqt6widgets6 libqt6pdf6 libsentencepiece0 libpcre2-8-0 libqt6sql6-sqlite python3; do
      [[ $depends == *"$p"* ]] || fail "Depends does not name $p: $depends"
    done
    if [[ $depends == *cuda* || $depends == *cublas* ]]; then fail "Depends names CUDA (it goes in Recommends): $depends"; fi
    echo "ok: Depends: $depends"
    echo "ok: Recommends: $recommends"

    mkdir -p "$tmp/root"
    dpkg-deb -x "$deb" "$tmp/root"
    desktop-file-validate "$tmp/root/usr/share/applications/io.github.folio.Folio.desktop"
    appstreamcli validate --no-net "$tmp/root/usr/share/metainfo/io.github.folio.Folio.metainfo.xml"
    echo "ok: desktop-file-validate and appstreamcli validate"
    # lintian: no errors (warnings are listed for the reader).
    lintian --fail-on error --tag-display-limit 0 "$deb" || fail "lintian reports errors"
    echo "ok: lintian reports no errors"
    ;;

  unpacked-deb)
    deb=$(the_deb)
    mkdir -p "$tmp/root"
    dpkg-deb -x "$deb" "$tmp/root"
    check_programs "$tmp/root/usr/bin" "$tmp/root/usr/share/folio"
    ;;

  unpacked-tgz)
    tgz=$(the_tgz)
    mkdir -p "$tmp/root"
    tar -xzf "$tgz" -C "$tmp/root"
    top=("$tmp"/root/*)
    [[ ${#top[@]} -eq 1 && -d ${top[0]} ]] || fail "the TGZ does not hold one top folder"
    for f in bin/folio bin/folio-cli bin/folio-bench bin/folio-sparse bin/folio-fetch-model share/folio/models/stories260K/stories260K.bin \
             share/folio/models/folio-needle/config.json share/folio/demo/planted-facts.md \
             share/applications/io.github.folio.Folio.desktop share/man/man1/folio-cli.1.gz; do
      [[ -e ${top[0]}/$f ]] || fail "the TGZ has no $f"
    done
    check_programs "${top[0]}/bin" "${top[0]}/share/folio"
    ;;

  apt)
    if [[ $(id -u) -ne 0 ]]; then echo "skipped: installing the DEB needs root"; exit 77; fi
    command -v apt-get >/dev/null || { echo "skipped: no apt-get"; exit 77; }
    if dpkg-query -W -f='${Status}' folio 2>/dev/null | grep -q "installed"; then
      echo "skipped: a folio package is installed already; this test leaves it alone"
      exit 77
    fi
    deb=$(the_deb)
    apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 "$@"; }
    purge() { apt_get purge folio >"$tmp/purge.log" 2>&1 || cat "$tmp/purge.log"; }
    trap 'purge; cleanup' EXIT
    cp "$deb" "$tmp/folio.deb"  # apt reads a local file as the _apt user
    chmod 644 "$tmp/folio.deb"
    chmod 755 "$tmp"
    apt_get install --no-install-recommends "$tmp/folio.deb" >"$tmp/install.log" 2>&1 ||
      { cat "$tmp/install.log"; fail "apt could not install $deb"; }
    dpkg-query -L folio >"$tmp/owned"
    echo "ok: apt installed $(basename "$deb") ($(wc -l <"$tmp/owned") paths)"
    [[ -x /usr/bin/folio-cli && -x /usr/bin/folio ]] || fail "apt installed no /usr/bin/folio-cli or /usr/bin/folio"
    check_programs /usr/bin /usr/share/folio
    apt_get purge folio >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "apt could not remove folio"; }
    trap cleanup EXIT
    if dpkg-query -W -f='${Status}' folio 2>/dev/null | grep -q "installed"; then fail "folio is still installed"; fi
    left=0
    while read -r path; do
      # Folders the package shares with others (/usr/bin, /usr/share/man/man1, ...) stay.
      if [[ -e $path && ! -d $path ]]; then echo "left behind: $path" >&2; left=1; fi
    done <"$tmp/owned"
    [[ ! -e /usr/share/folio && ! -e /usr/share/doc/folio ]] || left=1
    [[ $left -eq 0 ]] || fail "files of the package are left after apt purge"
    echo "ok: apt purge left nothing of folio"
    ;;

  *)
    fail "unknown step $step"
    ;;
esac
