"""The `miner` console script: Ctrl-C at any moment, even while the command modules import, ends in one line."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from miner.cli import main as cli

        cli()
    except KeyboardInterrupt:
        sys.stderr.write("miner: interrupted\n")
        sys.exit(130)
