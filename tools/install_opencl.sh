#!/bin/sh
# Install an OpenCL runtime that runs on the CPU (Debian's PoCL) and pyopencl.
#
# Debian's pocl-opencl-icd is built against the distribution's LLVM and knows
# current CPUs; the PyPI pocl-binary-distribution wheel does not (it fails with
# "unknown target CPU 'generic'"), so it is deliberately not used here.
# Idempotent: packages already present are left as they are. Run as root.
set -eu

PYTHON="${PYTHON:-python3}"
PACKAGES="pocl-opencl-icd ocl-icd-libopencl1"
OPTIONAL="clinfo"

if [ "$(id -u)" -ne 0 ]; then
    echo "install_opencl.sh: must run as root (apt-get)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES $OPTIONAL; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $PACKAGES
    # clinfo only helps people look at their devices; its absence is no failure
    apt-get install -y --no-install-recommends $OPTIONAL || echo "install_opencl.sh: clinfo not installed (optional)" >&2
fi

if ! "$PYTHON" -c "import pyopencl" 2>/dev/null; then
    "$PYTHON" -m pip install "pyopencl>=2023.1"
fi

"$PYTHON" - <<'PY'
import pyopencl as cl

platforms = cl.get_platforms()
for p in platforms:
    for d in p.get_devices():
        print(f"OpenCL: {p.name}: {d.name.strip()} ({d.max_compute_units} compute units)")
if not platforms:
    raise SystemExit("install_opencl.sh: no OpenCL platform found after installing")
PY
