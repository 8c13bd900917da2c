"""Where the long-running commands' logs go: stderr, a rotating file, syslog; at which level.

Every module logs through ``logging.getLogger(__name__)`` (``miner.mining``, ``stratum.client``,
``miner.pool`` ...), so an operator can raise or silence one part. The wire itself, every Stratum
line and RPC call with passwords redacted, goes to the ``protocol`` loggers (``protocol.stratum``,
``protocol.rpc``), which only ``--protocol-dump`` turns on. stdout stays for results and ``--json``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

#: the loggers this project writes to; others (numba, urllib3) stay at WARNING
PROJECT_LOGGERS = ("miner", "stratum", "kernels")
PROTOCOL_LOGGER = "protocol"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5

_STRING = r'"(?:[^"\\]|\\.)*"'  # a JSON string, escaped quotes and all
_SECRET_FIELDS = re.compile(rf'("params"\s*:\s*\[\s*{_STRING}\s*,\s*){_STRING}')
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@/\s]*@")
_BASIC_AUTH = re.compile(r"(Authorization:\s*Basic\s+)\S+", re.IGNORECASE)


def protocol_logger(kind: str) -> logging.Logger:
    """The logger for one wire (``stratum``, ``rpc``): lines at INFO, silent unless --protocol-dump."""
    return logging.getLogger(f"{PROTOCOL_LOGGER}.{kind}")


def redact(text: str) -> str:
    """A wire line with every password replaced by ``***``: authorize's second parameter, URL and Basic auth."""
    text = _SECRET_FIELDS.sub(r'\1"***"', text) if '"mining.authorize"' in text else text
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _BASIC_AUTH.sub(r"\1***", text)


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never where NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ConsoleFormatter(logging.Formatter):
    """``[HH:MM:SS] message``, as the status lines; warnings and errors coloured on a terminal."""

    COLOURS = {logging.WARNING: "\033[33m", logging.ERROR: "\033[31m", logging.CRITICAL: "\033[31m"}

    def __init__(self, colour: bool, names: bool = False) -> None:
        super().__init__()
        self.colour = colour
        self.names = names

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        where = f"{record.name}: " if self.names else ""
        line = f"[{stamp}] {where}{record.getMessage()}"
        if record.exc_info and record.levelno >= logging.ERROR and self.names:
            line += "\n" + self.formatException(record.exc_info)
        colour = self.COLOURS.get(record.levelno) if self.colour else None
        return f"{colour}{line}\033[0m" if colour else line


class FileFormatter(logging.Formatter):
    """ISO 8601 timestamps with the UTC offset, the level and the logger: lines a log search can sort."""

    def format(self, record: logging.LogRecord) -> str:
        moment = time.localtime(record.created)
        offset = time.strftime("%z", moment)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{int(record.msecs):03d}{offset[:3]}:{offset[3:]}"
        return f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"


class CallbackHandler(logging.Handler):
    """Hands each formatted line to a function: the CLI's output, which clears a live status line first."""

    def __init__(self, emit_line: Callable[[str], None], formatter: logging.Formatter) -> None:
        super().__init__()
        self.emit_line = emit_line
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.emit_line(self.format(record))
        except Exception:  # pragma: no cover - logging must never take the miner down
            self.handleError(record)


def level_for(verbose: int = 0, debug: bool = False, quiet: bool = False) -> int:
    if debug or verbose >= 2:
        return logging.DEBUG
    if quiet:
        return logging.WARNING
    return logging.INFO


def setup_logging(
    *,
    verbose: int = 0,
    debug: bool = False,
    quiet: bool = False,
    console: Callable[[str], None] | None = None,
    stream: TextIO | None = None,
    log_file: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    backups: int = DEFAULT_BACKUPS,
    syslog: str | None = None,
    protocol_dump: bool = False,
) -> list[logging.Handler]:
    """Route the project's loggers; returns the handlers so that a caller (a test, a reload) can remove them.

    ``console`` receives each stderr line (the CLI's output object); without it lines go to ``stream``.
    ``--quiet`` keeps warnings and errors on the console, so a failure is never silent. A file and syslog
    always get INFO and above (DEBUG with --debug), whatever the console shows.
    """
    level = level_for(verbose, debug, quiet)
    file_level = logging.DEBUG if debug else logging.INFO
    handlers: list[logging.Handler] = []
    target = stream or sys.stderr
    console_formatter = ConsoleFormatter(use_colour(target), names=debug)
    if console is not None:
        handler: logging.Handler = CallbackHandler(console, console_formatter)
    else:
        handler = logging.StreamHandler(target)
        handler.setFormatter(console_formatter)
    handler.setLevel(level)
    handlers.append(handler)
    if log_file is not None:
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        file_handler.setFormatter(FileFormatter())
        file_handler.setLevel(file_level)
        handlers.append(file_handler)
    if syslog is not None:
        syslog_handler = logging.handlers.SysLogHandler(address=_syslog_address(syslog))
        syslog_handler.setFormatter(logging.Formatter(f"miner[{os.getpid()}]: %(name)s: %(message)s"))
        syslog_handler.setLevel(file_level)
        handlers.append(syslog_handler)
    lowest = min(h.level for h in handlers)
    for name in (*PROJECT_LOGGERS, PROTOCOL_LOGGER):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if getattr(old, "_miner_handler", False):
                logger.removeHandler(old)
        logger.propagate = False
        # the wire is logged at INFO on its own loggers, so one switch turns it on for every destination
        logger.setLevel(lowest if name != PROTOCOL_LOGGER else logging.INFO if protocol_dump else logging.CRITICAL + 1)
        for h in handlers:
            h._miner_handler = True  # type: ignore[attr-defined]
            logger.addHandler(h)
    return handlers


def _syslog_address(spec: str) -> str | tuple[str, int]:
    """'' or 'local' -> /dev/log; 'HOST:PORT' -> UDP; a path -> that socket."""
    if spec in ("", "local"):
        return "/dev/log"
    if spec.startswith("/"):
        return spec
    host, _, port = spec.rpartition(":")
    return (host or "127.0.0.1", int(port or 514))
