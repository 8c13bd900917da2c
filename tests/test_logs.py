"""Log destinations: a file that rotates at its size, ISO 8601 in files, colour only on a terminal, redaction."""

from __future__ import annotations

import io
import logging
import re

import pytest

from miner.logs import ConsoleFormatter, protocol_logger, redact, setup_logging, use_colour

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (INFO|WARNING|DEBUG|ERROR)\s+\S+: ")


@pytest.fixture
def restore_loggers():
    yield
    for name in ("miner", "stratum", "kernels", "protocol"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_rotates_at_its_size_limit(tmp_path, restore_loggers):
    path = tmp_path / "miner.log"
    setup_logging(stream=io.StringIO(), log_file=str(path), max_bytes=2000, backups=2)
    log = logging.getLogger("miner.mining")
    for i in range(200):
        log.info("pool stratum+tcp://127.0.0.1:3333: share accepted (difficulty 0.001) %d", i)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["miner.log", "miner.log.1", "miner.log.2"]  # the oldest beyond two backups are gone
    for name in files:
        assert (tmp_path / name).stat().st_size <= 2000
    lines = path.read_text().splitlines()
    assert lines and all(ISO.match(line) for line in lines), lines[:3]
    assert lines[-1].endswith(" 199") and "miner.mining: " in lines[-1]
    assert "\033[" not in path.read_text()  # never colour in a file


def test_console_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch, restore_loggers):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Tty()) and not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())
    tty = Tty()
    setup_logging(stream=tty)
    logging.getLogger("stratum.client").warning("pool closed the connection")
    assert tty.getvalue().endswith("] pool closed the connection\n") and "\033[" not in tty.getvalue()
    line = ConsoleFormatter(colour=True).format(logging.makeLogRecord({"msg": "x", "levelno": logging.WARNING}))
    assert line.startswith("\033[33m") and line.endswith("\033[0m")


def test_levels_quiet_keeps_warnings_and_debug_names_the_logger(restore_loggers):
    out = io.StringIO()
    setup_logging(stream=out, quiet=True)
    logging.getLogger("miner.mining").info("share accepted")
    logging.getLogger("miner.mining").warning("pool is down")
    assert "share accepted" not in out.getvalue() and "pool is down" in out.getvalue()
    out = io.StringIO()
    setup_logging(stream=out, debug=True)
    logging.getLogger("miner.engine").debug("chunk grown to 2^21")
    assert "miner.engine: chunk grown to 2^21" in out.getvalue()
    out = io.StringIO()
    setup_logging(stream=out)
    logging.getLogger("miner.engine").debug("chunk grown to 2^21")
    assert out.getvalue() == ""


def test_the_protocol_dump_is_off_unless_asked_and_redacts_passwords(restore_loggers):
    out = io.StringIO()
    setup_logging(stream=out)
    protocol_logger("stratum").info("> %s", "{}")
    assert out.getvalue() == ""
    setup_logging(stream=out, protocol_dump=True)
    line = '{"id": 2, "method": "mining.authorize", "params": ["alice.1", "hunter2"]}'
    protocol_logger("stratum").info("> %s", redact(line))
    assert '"params": ["alice.1", "***"]' in out.getvalue() and "hunter2" not in out.getvalue()


def test_redact_covers_authorize_urls_and_basic_auth():
    assert redact('{"method": "mining.authorize", "params": ["w", "pw"], "id": 1}') == (
        '{"method": "mining.authorize", "params": ["w", "***"], "id": 1}'
    )
    assert redact("POST http://user:pw@127.0.0.1:18443/") == "POST http://user:***@127.0.0.1:18443/"
    assert redact("Authorization: Basic dXNlcjpwdw==") == "Authorization: Basic ***"
    notify = '{"method": "mining.notify", "params": ["job", "00ff"]}'
    assert redact(notify) == notify  # nothing else in a message changes
