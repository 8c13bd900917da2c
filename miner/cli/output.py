"""The long-running commands' stderr: log lines, a live status line on a terminal, and the log options.

``-v``, ``--debug``, ``--log-file``, ``--syslog`` and ``--protocol-dump`` mean the same for ``mine``,
``pool`` and ``solo``, so one decorator adds them and routes the standard ``logging`` tree (see
:mod:`miner.logs`) before the command runs, and detaches it after.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading

import click

from miner.cli.common import CliError
from miner.logs import DEFAULT_BACKUPS, setup_logging


class Console:
    """stderr shared by log lines and a status line that a terminal redraws in place."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status_shown = False

    @property
    def tty(self) -> bool:
        return sys.stderr.isatty()

    def line(self, text: str) -> None:
        with self._lock:
            if self._status_shown:
                click.echo("\r\033[K", nl=False, err=True)
                self._status_shown = False
            click.echo(text, err=True)

    def status(self, text: str, stamp: str) -> None:
        with self._lock:
            if self.tty:
                click.echo(f"\r\033[K{text}", nl=False, err=True)
                self._status_shown = True
            else:
                click.echo(f"[{stamp}] {text}", err=True)

    def end(self) -> None:
        with self._lock:
            if self._status_shown:
                click.echo("", err=True)
                self._status_shown = False


console = Console()


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    value = text.strip().lower().removesuffix("b")
    scale = units.get(value[-1:], 1)
    try:
        number = int(value[:-1] if value[-1:] in units else value) * scale
    except ValueError:
        raise CliError(f"--log-max-size: {text!r} is not a size (e.g. 10M, 512k, 1000000)", 2) from None
    if number < 1024:
        raise CliError(f"--log-max-size: {text!r} is below 1k", 2)
    return number


def log_options(func):
    """-v/--verbose, --debug, --log-file, --log-max-size, --syslog and --protocol-dump for a command."""

    @functools.wraps(func)
    @click.pass_context
    def wrapper(ctx: click.Context, *args, **kwargs):
        meta = ctx.meta.setdefault("log", {})
        quiet = bool(kwargs.get("quiet"))
        try:
            handlers = setup_logging(
                verbose=meta.get("verbose", 0),
                debug=meta.get("debug", False),
                quiet=quiet,
                console=(lambda text: None) if quiet else console.line,
                log_file=meta.get("log_file"),
                max_bytes=_size(meta.get("log_max_size") or "10M"),
                backups=DEFAULT_BACKUPS,
                syslog=meta.get("syslog"),
                protocol_dump=meta.get("protocol_dump", False),
            )
        except OSError as exc:
            where = exc.filename or meta.get("syslog")
            raise CliError(f"cannot open the log: {exc.strerror or exc} ({where})") from None
        try:
            return func(*args, **kwargs)
        finally:
            for name in ("miner", "stratum", "kernels", "protocol"):
                logger = logging.getLogger(name)
                for handler in handlers:
                    logger.removeHandler(handler)
            for handler in handlers:
                handler.close()

    def remember(key: str):
        def callback(ctx: click.Context, param: click.Parameter, value):
            ctx.meta.setdefault("log", {})[key] = value
            return value

        return callback

    options = [
        click.option("-v", "--verbose", count=True, expose_value=False, callback=remember("verbose"),
                     help="more detail: per-thread rates in the status line; -vv is --debug"),
        click.option("--debug", is_flag=True, expose_value=False, callback=remember("debug"),
                     help="log everything, each line with its logger (miner.mining, stratum.client, ...)"),
        click.option("--log-file", type=click.Path(dir_okay=False), default=None, expose_value=False,
                     callback=remember("log_file"), metavar="FILE",
                     help="also log to FILE, with ISO 8601 times, rotated at --log-max-size (5 old files kept)"),
        click.option("--log-max-size", default=None, expose_value=False, callback=remember("log_max_size"),
                     metavar="SIZE", help="rotate --log-file at this size (default 10M)"),
        click.option("--syslog", default=None, is_flag=False, flag_value="local", expose_value=False,
                     callback=remember("syslog"), metavar="[HOST:PORT]",
                     help="also log to syslog (alone: the local /dev/log)"),
        click.option("--protocol-dump", is_flag=True, expose_value=False, callback=remember("protocol_dump"),
                     help="log every Stratum line in and out and every RPC call, passwords redacted"),
    ]  # fmt: skip
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def status_due_every(interval: float | None, tty: bool) -> float:
    """--status-interval, else a redraw a second on a terminal and a line every 10 s in a log."""
    if interval is not None:
        return interval
    return 1.0 if tty else 10.0


def fan_out(wires):
    """One wire hook for the Miner from several consumers (None when there are none: no cost per line)."""
    if not wires:
        return None
    if len(wires) == 1:
        return wires[0]
    return lambda direction, line: [wire(direction, line) for wire in wires] and None
