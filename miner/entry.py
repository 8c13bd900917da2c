"""The `miner` console script: Ctrl-C at any moment, even while the command modules import, ends in one line."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    # While the command modules (numba, llvmlite) import, a KeyboardInterrupt can
    # land inside library code that swallows it, leaving a miner that ignores
    # Ctrl-C. Hold SIGINT until the imports are done, then act on it.
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        try:
            from miner.cli import main as cli
        finally:
            signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt
        cli()  # exits on its own, Ctrl-C included (one line, 130)
    except KeyboardInterrupt:
        sys.stderr.write("miner: interrupted\n")
        sys.exit(130)
