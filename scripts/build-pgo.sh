#!/usr/bin/env bash
# Builds tether's release binary with profile-guided optimisation (PGO), the way the image is
# built (Dockerfile):
#   1. an instrumented release build;
#   2. a training run: `tether serve --standalone` answers the reviews in bench/fixtures, as
#      the API server sends them (the mutating and the validating path, allowed, patched and
#      denied, over HTTP/1.1 keep-alive and HTTP/2), sent by curl over TLS;
#   3. the counts merged with llvm-profdata;
#   4. the release build again, optimised with those counts.
# The counts tell the compiler which branches and calls are hot: it lays the admission path's
# code out together and inlines along it. bench/RESULTS.md ("round ten") has the measurements.
#
#   scripts/build-pgo.sh [--target TRIPLE] [--out FILE] [--requests N]
#   scripts/build-pgo.sh --find-profdata    (prints the llvm-profdata it would use, or fails)
#
#   --target   the Rust target (default: the host's); always passed to cargo, so build scripts
#              and proc macros are not instrumented
#   --out      where the optimised binary goes (default target/pgo/tether; CARGO_TARGET_DIR
#              is honoured for target/)
#   --requests reviews per fixture, path and protocol in the training run (default 500)
#
# Needs curl and an llvm-profdata that reads this rustc's profiles: `rustup component add
# llvm-tools` (the exact match), or Debian's llvm-NN (NN >= 19), or LLVM_PROFDATA=path.
# Build outputs: target/pgo-instrument and target/pgo (separate from target/release, whose
# flags differ).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

die() {
  echo "build-pgo: $*" >&2
  exit 1
}

HOST=$(rustc -vV | sed -n 's/^host: //p')
TARGET=$HOST
OUT="$TARGET_DIR/pgo/tether"
REQUESTS=500
FIND_ONLY=false
while [ $# -gt 0 ]; do
  case "$1" in
    --find-profdata) FIND_ONLY=true; shift ;;
    --target) TARGET=${2:?--target needs a value, e.g. x86_64-unknown-linux-musl}; shift 2 ;;
    --out) OUT=${2:?--out needs a file path}; shift 2 ;;
    --requests)
      REQUESTS=${2:?--requests needs a number}
      [[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || die "--requests $REQUESTS: give a positive whole number"
      shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument $1; usage: scripts/build-pgo.sh [--target TRIPLE] [--out FILE] [--requests N]" ;;
  esac
done

# llvm-profdata: rustup's (same LLVM as rustc) first, then a versioned Debian one, newest first.
# Profiles are versioned; a too-old tool fails the merge below with its own message.
find_profdata() {
  if [ -n "${LLVM_PROFDATA:-}" ]; then
    echo "$LLVM_PROFDATA"
    return
  fi
  local own llvm_major n
  own="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
  if [ -x "$own" ]; then
    echo "$own"
    return
  fi
  llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
  for ((n = llvm_major; n >= 19; n--)); do
    for cand in "llvm-profdata-$n" "/usr/lib/llvm-$n/bin/llvm-profdata"; do
      if command -v "$cand" >/dev/null 2>&1; then
        command -v "$cand"
        return
      fi
    done
  done
  return 1
}
PROFDATA=$(find_profdata) || die "no llvm-profdata for rustc's LLVM $(rustc -vV | sed -n 's/^LLVM version: //p'): run \`rustup component add llvm-tools\`, or install Debian's llvm-19 (or newer), or set LLVM_PROFDATA"
if $FIND_ONLY; then
  echo "$PROFDATA"
  exit 0
fi
command -v curl >/dev/null || die "curl is missing (Debian package curl): the training run sends reviews with it"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tether-pgo.XXXXXX")
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "build-pgo: 1/4 instrumented build ($TARGET)"
# A fixed default path keeps this build cached between runs (the training run names its own
# file with LLVM_PROFILE_FILE). The optimised build below gets a fresh profile path on purpose:
# cargo does not see a profile's content change, only its flags.
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$TARGET_DIR/pgo-instrument/profiles" \
  cargo build --release --locked --bin tether --target "$TARGET" \
  --target-dir "$TARGET_DIR/pgo-instrument"
INSTRUMENTED="$TARGET_DIR/pgo-instrument/$TARGET/release/tether"

echo "build-pgo: 2/4 training run ($REQUESTS reviews per fixture, path and protocol)"
mkdir -p "$WORK/raw"
# %p: one file per process, so nothing else can write into this profile.
LLVM_PROFILE_FILE="$WORK/raw/tether-%p.profraw" "$INSTRUMENTED" serve --standalone \
  --dev-certs-dir "$WORK/certs" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  --log-format json --domain-root apps.example.com >"$WORK/serve.log" 2>&1 &
SERVER=$!
# Port 0: the bound address is read back from the "tether ready" log line.
ADDR=""
for _ in $(seq 1 300); do
  ADDR=$(sed -n 's/.*"message":"tether ready".*"listen":"\([0-9.:]*\)".*/\1/p' "$WORK/serve.log" | head -n 1)
  [ -n "$ADDR" ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log" >&2; die "the instrumented tether exited before it was ready"; }
  sleep 0.1
done
[ -n "$ADDR" ] || { cat "$WORK/serve.log" >&2; die "the instrumented tether was not ready within 30 s"; }

FIXTURES="$ROOT/bench/fixtures"
# (path, fixture) pairs the chart's webhooks send: mutate on create (AttachedResource,
# a workload's HPA, AppDomain), then validate (allowed and denied AttachedResources).
PAIRS="mutate:attached-create mutate:hpa-mutate mutate:appdomain-mutate validate:attached-create validate:attached-invalid"
for proto in http1.1 http2; do
  # One block per review; `next` starts a new one, and each block carries all its options
  # (options before `next` do not carry over).
  cfg="$WORK/curl-$proto.cfg"
  for pair in $PAIRS; do
    path=${pair%%:*} fixture=${pair#*:}
    for _ in $(seq 1 "$REQUESTS"); do
      printf 'next\nurl = "https://%s/%s"\n%s\ncacert = "%s"\nheader = "Content-Type: application/json"\ndata-binary = "@%s/%s.json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
        "$ADDR" "$path" "$proto" "$WORK/certs/ca.crt" "$FIXTURES" "$fixture"
    done
  done | tail -n +2 >"$cfg"
  # curl draws its parallel progress meter whatever the flags: its stderr is kept and shown
  # only when the run fails.
  codes=$(curl --silent --show-error --parallel --parallel-max 16 --config "$cfg" 2>"$WORK/curl.err" || true)
  ok=$(grep -c '^200$' <<<"$codes" || true)
  want=$((REQUESTS * $(wc -w <<<"$PAIRS")))
  if [ "$ok" -ne "$want" ]; then
    tr '\r' '\n' <"$WORK/curl.err" | grep -v '^ *$' | tail -n 5 >&2 || true
    die "training over $proto: $ok of $want reviews were answered 200"
  fi
done
kill -TERM "$SERVER"
wait "$SERVER" || true
SERVER=""

echo "build-pgo: 3/4 merging the counts with $PROFDATA"
compgen -G "$WORK/raw/*.profraw" >/dev/null || die "the training run wrote no profile (did tether exit cleanly on SIGTERM?)"
"$PROFDATA" merge -o "$WORK/tether.profdata" "$WORK/raw"/*.profraw ||
  die "$PROFDATA could not read this rustc's profiles; use rustup's (\`rustup component add llvm-tools\`) or a newer llvm-NN"

echo "build-pgo: 4/4 optimised build"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$WORK/tether.profdata" \
  cargo build --release --locked --bin tether --target "$TARGET" \
  --target-dir "$TARGET_DIR/pgo"
mkdir -p "$(dirname "$OUT")"
install -m 0755 "$TARGET_DIR/pgo/$TARGET/release/tether" "$OUT"
echo "build-pgo: $OUT"
