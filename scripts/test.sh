#!/usr/bin/env bash
# tether's test command (README "Run the tests"). On a fresh Debian machine it first installs
# what the tests need and is missing (curl, openssl, llvm-19 for llvm-profdata; promtool is
# unpacked from Debian's `prometheus` package into target/tools by scripts/fetch-promtool.sh,
# without installing the package, whose install would start a Prometheus server on tether's
# metrics port 9090), then runs every test: unit, integration (real binary, real TLS), doc
# tests, the image's profile-guided build against the test build, and the deployment checks.
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
# The image's profile-guided build (scripts/build-pgo.sh) needs an llvm-profdata that reads
# rustc's profiles: rustup's llvm-tools, or Debian's llvm-19.
bash scripts/build-pgo.sh --find-profdata >/dev/null 2>&1 || missing+=(llvm-19)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo test --locked

# The image's build (Dockerfile): profile-guided, trained on bench/fixtures. The optimised
# binary must answer every fixture byte for byte as the test build does, on both paths.
# CARGO_TARGET_DIR is honoured, as cargo does: the test build is wherever cargo put it.
TARGET_DIR=${CARGO_TARGET_DIR:-target}
bash scripts/build-pgo.sh --out "$TARGET_DIR/pgo/tether"
for fixture in bench/fixtures/*.json; do
  for webhook in mutate validate; do
    want=$("$TARGET_DIR/debug/tether" review --exit-zero --webhook "$webhook" -f "$fixture" 2>&1)
    got=$("$TARGET_DIR/pgo/tether" review --exit-zero --webhook "$webhook" -f "$fixture" 2>&1)
    if [ "$want" != "$got" ]; then
      echo "PGO build answers $fixture on /$webhook differently from the test build:" >&2
      diff <(echo "$want") <(echo "$got") >&2 || true
      exit 1
    fi
  done
done
echo "PGO build: answers every bench fixture as the test build does"

# Deployment artifacts: Helm lint/render with Helm's own engine, schema validation of every
# manifest, webhook routing (see tests/deploy/check.sh for how Helm runs on this machine).
bash tests/deploy/check.sh
