"""The ``miner`` command line: one module per command (``miner.cli.mine``, ...), shared options in ``common``."""

from __future__ import annotations

import errno
import importlib
import sys

import click

from miner import __version__
from miner.cli.common import Interrupted
from miner.cli.config import name_envvars

#: modules that each export ``commands``: a list of click commands
COMMAND_MODULES = (
    "miner.cli.core",  # grind, scan, bench
    "miner.cli.mine",  # mine
    "miner.cli.pool",  # pool
    "miner.cli.solo",  # solo
    "miner.cli.asic",  # asic
    "miner.cli.farm",  # farm simulate, exporter, curtail
    "miner.cli.explain",  # explain
    "miner.cli.devices",  # devices
)


class MinerGroup(click.Group):
    """Click's group, with every way out made one line: ``miner: error: ...`` for a bad option
    (not Click's three-line usage block) and ``miner: interrupted`` with exit 130 for Ctrl-C,
    wherever it lands (not Click's ``Aborted!`` with exit 1)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted() from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name or "miner", complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"miner: error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            Interrupted().show()
            sys.exit(Interrupted.exit_code)
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            sys.exit(1)  # stdout closed under us (`miner scan ... | head`): nothing left to say
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=MinerGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
        if any(param.name == "config" for param in _command.params):
            name_envvars(_command)
        main.add_command(_command)
