"""argparse types shared by the benchmark scripts: numbers a measurement can use, or one clear refusal.

``type=float`` lets ``nan``, ``inf`` and ``1e400`` (which parses as inf) through: a run of
``--seconds nan`` never ends, and a ratio against an infinite baseline means nothing. Every float
option of every script in ``benchmarks/`` takes one of these instead; argparse turns the refusal
into a usage line and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def finite_float(minimum: float | None = None, min_open: bool = False, maximum: float | None = None) -> Callable:
    """A converter for ``type=``: a finite float, at least (or above, with ``min_open``) ``minimum``."""
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if min_open else '>='} {minimum:g}")
    if maximum is not None:
        bounds.append(f"<= {maximum:g}")
    expected = "a finite number" + (" " + " and ".join(bounds) if bounds else "")

    def convert(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number (expected {expected})") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
        if minimum is not None and (value <= minimum if min_open else value < minimum):
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}")
        return value

    convert.__name__ = "finite number"
    convert.expected = expected  # type: ignore[attr-defined]
    return convert


#: seconds, intervals, difficulties: strictly positive
positive_float = finite_float(0, min_open=True)
#: pauses and warm-ups that may be zero
non_negative_float = finite_float(0)
