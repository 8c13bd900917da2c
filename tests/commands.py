"""How tests run the ``miner`` command as a user would: the console script of the Python running the tests."""

from __future__ import annotations

import sys
from pathlib import Path

_SCRIPT = Path(sys.executable).with_name("miner")

# The script installed beside this interpreter, not whatever ``miner`` is first on PATH: a global
# install must never stand in for the checkout under test.
MINER: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "miner"]


def backend() -> str:
    """The numba CPU backend where it runs here, else the pure-Python reference one."""
    try:
        from kernels import get_backend

        get_backend("cpu")
        return "cpu"
    except Exception:
        return "reference"
