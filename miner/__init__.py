"""A SHA-256d proof-of-work miner written in Python.

The teaching API (:mod:`miner.teach`) is importable from here: ``from miner import header, scan,
job_from_capture, measure_odds`` or ``import miner; miner.teach``. Its names are loaded on first use,
so a ``miner`` command that never teaches pays nothing for them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: the names of miner.teach offered here
TEACHING = (
    "CaptureWriter",
    "block_hash",
    "capture_shares",
    "difficulty_to_target",
    "economics",
    "explain_header",
    "explain_template",
    "header",
    "header_fields",
    "job_from_capture",
    "ks_exponential",
    "leading_zero_bits",
    "measure_odds",
    "nbits_to_target",
    "odds",
    "plot_odds",
    "read_capture",
    "record_capture",
    "scan",
    "sha256d",
    "target_to_difficulty",
)


def __getattr__(name: str) -> Any:
    if name == "teach":
        return importlib.import_module("miner.teach")
    if name in TEACHING:
        return getattr(importlib.import_module("miner.teach"), name)
    raise AttributeError(f"module 'miner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "teach", *TEACHING])
