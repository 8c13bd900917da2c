"""A SHA-256d proof-of-work miner written in Python.

The teaching API (:mod:`miner.teach`) is importable from here: ``from miner import header, scan,
job_from_capture, measure_odds`` or ``import miner; miner.teach``. Its names are loaded on first use,
so a ``miner`` command that never teaches pays nothing for them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def _teach():
    return importlib.import_module("miner.teach")


def __getattr__(name: str) -> Any:
    if name == "teach":
        return _teach()
    if not name.startswith("_") and name in _teach().__all__:  # only a name nothing else defined gets here
        return getattr(_teach(), name)
    raise AttributeError(f"module 'miner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "teach", *_teach().__all__])
