#!/usr/bin/env bash
# Checks of tether's deployment artifacts (charts/tether, webhook-config/,
# Dockerfile, certs/). Needs only python3 (>= 3.11, with venv) and pip with
# access to PyPI; everything else goes into a venv this script creates.
#
#   bash tests/deploy/check.sh               run every check (exit 1 on any failure)
#   bash tests/deploy/check.sh --regen-raw   rewrite webhook-config/ from the chart
#
# Helm: PyPI helm-sdkpy ships Helm v4's Go library as a shared object
# (helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so). Its Python wrapper declares
# Requires-Python >= 3.12 and needs cffi; this machine has CPython 3.11. So the
# wheel is installed with --no-deps --ignore-requires-python (only to unpack it
# where the venv keeps packages) and tests/deploy/helm.py loads the .so with
# ctypes and calls its C entry points itself (helm_sdkpy_lint,
# helm_sdkpy_install, ...; see the docstring there). The wrapper is never
# imported. Rendering runs Helm's install action against a loopback-only API
# stand-in with HELM_DRIVER=memory: nothing is contacted beyond 127.0.0.1.
#
# The venv (target/deploy-venv, git-ignored with target/) is reused while
# requirements.txt and the helm-sdkpy pin are unchanged.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

HELM_SDKPY="helm-sdkpy==0.1.32"
VENV="${TETHER_DEPLOY_VENV:-target/deploy-venv}"
PYTHON="${PYTHON:-python3}"
REQS="tests/deploy/requirements.txt"

stamp="$( { cat "$REQS"; echo "$HELM_SDKPY"; "$PYTHON" --version; } | sha256sum | cut -d' ' -f1)"

if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.stamp" 2>/dev/null || true)" != "$stamp" ]]; then
    echo "deploy checks: creating $VENV"
    rm -rf "$VENV"
    if ! {
        "$PYTHON" -m venv "$VENV" &&
        "$VENV/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
            -r "$REQS" &&
        "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps \
            --ignore-requires-python --only-binary=:all: "$HELM_SDKPY"
    }; then
        echo "FAIL setting up $VENV (python3 -m venv / pip install)"
        echo "deploy checks: 0 passed, 1 failed"
        exit 1
    fi
    echo "$stamp" > "$VENV/.stamp"
fi

exec "$VENV/bin/python" tests/deploy/checks.py "$@"
