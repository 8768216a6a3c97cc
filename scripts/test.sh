#!/usr/bin/env bash
# tether's test command (README "Run the tests"). On a fresh Debian machine it first installs
# what the tests need and is missing (curl, openssl; promtool is unpacked from Debian's
# `prometheus` package into target/tools by scripts/fetch-promtool.sh, without installing the
# package, whose install would start a Prometheus server on tether's metrics port 9090), then
# runs every test: unit, integration (real binary, real TLS), doc tests, and the deployment
# checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool missing: unpacking it from Debian's prometheus package into target/tools"
  PATH="$(bash scripts/fetch-promtool.sh target/tools):$PATH"
  export PATH
fi

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo test --locked

# Deployment artifacts: Helm lint/render with Helm's own engine, schema validation of every
# manifest, webhook routing (see tests/deploy/check.sh for how Helm runs on this machine).
bash tests/deploy/check.sh
