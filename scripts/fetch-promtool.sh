#!/usr/bin/env bash
# Puts promtool into DIR/bin (default target/tools) without installing Debian's
# `prometheus` package: that package is the only one shipping promtool, and
# installing it also starts a Prometheus server on port 9090 (tether's default
# metrics port) and enables it at boot. Here the .deb is only downloaded and
# promtool alone is unpacked from it (a Go binary needing only libc): nothing is
# installed, no service starts. Prints the directory to put on PATH.
#
#   bash scripts/fetch-promtool.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${1:-target/tools}"
bin="$dir/bin/promtool"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  (cd "$dir/bin" && pwd)
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# apt downloads as the _apt user when it can write the directory.
chmod a+rwx "$tmp"
$SUDO apt-get update -qq >&2
(cd "$tmp" && apt-get download -qq prometheus >&2)
debs=("$tmp"/prometheus_*.deb)
[ -f "${debs[0]}" ] || { echo "apt-get download prometheus gave no .deb" >&2; exit 1; }
dpkg-deb -x "${debs[0]}" "$tmp/x"
install -D -m 0755 "$tmp/x/usr/bin/promtool" "$bin"
"$bin" --version >/dev/null
(cd "$dir/bin" && pwd)
