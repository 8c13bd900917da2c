"""The ``miner`` command line. Subcommands live in small ``cli_*`` modules."""

from __future__ import annotations

import importlib

import click

from miner import __version__

#: modules that each export ``commands``: a list of click commands
COMMAND_MODULES = (
    "miner.cli_core",  # grind, scan, bench
    "miner.cli_mine",  # mine
    "miner.cli_pool",  # pool
    "miner.cli_solo",  # solo
    "miner.cli_asic",  # asic
    "miner.cli_explain",  # explain
    "miner.cli_devices",  # devices
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="miner")
def main() -> None:
    """A SHA-256d proof-of-work miner: numba kernels on every core, Stratum V1,
    getblocktemplate solo mining and a cgminer-compatible API."""


for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _name:
            raise
        continue
    for _command in _module.commands:
        main.add_command(_command)
