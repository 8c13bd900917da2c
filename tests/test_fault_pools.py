"""Pools that misbehave, each in front of a working backup: the miner says what happened and mines on.

Scripted loopback pools: one that accepts TCP and says nothing, one that
closes mid-line, one that answers subscribe and authorize but never sends a
job, one whose TLS certificate does not verify, and a host name that does not
resolve. In each case the backup (a real EmbeddedPool) must receive accepted
shares, the odd pool's trouble must appear as one log line, and the pool must
see no duplicate.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from miner.engine import Engine
from miner.mining import Miner, PoolConfig
from miner.pool import EmbeddedChain, EmbeddedPool
from miner.stats import Stats

HARD_NBITS = 0x1D00FFFF


def engine_for_test(stats: Stats) -> tuple[Engine, float]:
    try:
        return Engine.for_backend("cpu", threads=1, stats=stats), 2.0**-10
    except Exception:
        return Engine.for_backend("reference", threads=1, stats=stats), 2.0**-22


class ScriptedPool:
    """A loopback listener that runs ``script(conn)`` for every connection, in a thread."""

    def __init__(self, script: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            self.script(conn)
        except (OSError, ssl.SSLError, ValueError):
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass


def read_requests(conn: socket.socket):
    """Yield each JSON request the miner sends."""
    buf = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


def say_nothing(conn: socket.socket) -> None:
    while conn.recv(65536):
        pass


def close_mid_line(conn: socket.socket) -> None:
    for request in read_requests(conn):
        if request.get("method") == "mining.subscribe":
            reply = json.dumps({"id": request["id"], "result": [[], "01020304", 4], "error": None}).encode()
            conn.sendall(reply[: len(reply) // 2])
            conn.close()
            return


def never_a_job(conn: socket.socket) -> None:
    for request in read_requests(conn):
        if request.get("method") == "mining.subscribe":
            result: object = [[["mining.notify", "s1"]], "01020304", 4]
        elif request.get("method") == "mining.authorize":
            result = True
        else:
            result = None
        conn.sendall(json.dumps({"id": request.get("id"), "result": result, "error": None}).encode() + b"\n")


def run_with_backup(
    primary_url: str, seen: Callable[[list[str]], bool], timeout: float = 60.0, **miner_options
) -> tuple[list[str], dict, dict]:
    """Mine with ``primary_url`` first and an EmbeddedPool as the backup, until the backup has taken a
    share and ``seen(log lines)`` holds (or ``timeout``, a ceiling for a stuck run, not a schedule);
    (log lines, miner stats, pool summary)."""
    stats = Stats()
    engine, difficulty = engine_for_test(stats)
    events: list[str] = []
    backup = EmbeddedPool(
        difficulty=difficulty, vardiff=False, job_source=EmbeddedChain(nbits=HARD_NBITS), on_event=events.append
    )
    backup.start()
    lines: list[str] = []
    options = {"backoff_initial": 0.2, "backoff_max": 0.5, "silence_timeout": 1.0, **miner_options}
    miner = Miner(
        [PoolConfig(primary_url, "w", "x"), PoolConfig(backup.url, "w", "x")],
        engine,
        stats,
        log=lines.append,
        **options,
    )
    miner.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not miner.wait(0.05):
            if stats.snapshot()["accepted"] > 0 and seen(list(lines)):
                break
    finally:
        miner.stop(1.0)
        summary = backup.summary()
        backup.stop()
    assert miner.fatal is None, miner.fatal
    assert not any(": 22 " in e for e in events), "a share was submitted twice"
    assert all("\n" not in line for line in lines)
    return lines, stats.snapshot(), summary


def logged(text: str) -> Callable[[list[str]], bool]:
    return lambda lines: any(text in line for line in lines)


def assert_mined_on_backup(snap: dict, summary: dict) -> None:
    assert snap["accepted"] > 0 and summary["accepted"] >= snap["accepted"]
    assert snap["rejected"] == 0 and snap["hw_errors"] == 0


def test_silent_pool_times_out_and_backup_mines() -> None:
    pool = ScriptedPool(say_nothing)
    try:
        lines, snap, summary = run_with_backup(
            f"stratum+tcp://127.0.0.1:{pool.port}",
            lambda lines: logged("silent for 1 s")(lines) and pool.connections >= 2,
        )
    finally:
        pool.close()
    assert any("silent for 1 s" in line for line in lines), lines
    assert pool.connections >= 2  # it tried again after the timeout
    assert_mined_on_backup(snap, summary)


def test_pool_closing_mid_line_is_retried_with_backoff() -> None:
    pool = ScriptedPool(close_mid_line)
    try:
        lines, snap, summary = run_with_backup(
            f"stratum+tcp://127.0.0.1:{pool.port}",
            lambda lines: logged("closed the connection")(lines) and pool.connections >= 2,
        )
    finally:
        pool.close()
    assert any("closed the connection" in line for line in lines), lines
    assert 2 <= pool.connections <= 30  # reconnects, but backs off rather than spinning
    assert_mined_on_backup(snap, summary)


def test_pool_that_never_sends_a_job() -> None:
    pool = ScriptedPool(never_a_job)
    try:
        lines, snap, summary = run_with_backup(f"stratum+tcp://127.0.0.1:{pool.port}", logged("silent"))
    finally:
        pool.close()
    assert any("authorized as" in line and str(pool.port) in line for line in lines), lines
    assert any("silent" in line for line in lines), lines  # a pool that never sends work counts as dead
    assert_mined_on_backup(snap, summary)


def test_unresolvable_pool_host() -> None:
    lines, snap, summary = run_with_backup("stratum+tcp://pool.example.invalid:3333", logged("cannot resolve host"))
    assert any("cannot resolve host" in line for line in lines), lines
    assert_mined_on_backup(snap, summary)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


def test_tls_certificate_that_does_not_verify(self_signed) -> None:
    cert, key = self_signed
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    pool = ScriptedPool(say_nothing, tls=context)
    try:
        lines, snap, summary = run_with_backup(
            f"stratum+ssl://127.0.0.1:{pool.port}", logged("certificate verification failed")
        )
    finally:
        pool.close()
    assert any("certificate verification failed" in line for line in lines), lines
    assert_mined_on_backup(snap, summary)


def test_dead_first_pool_only_is_fatal_with_one_line() -> None:
    """With no backup and its one try used up (--retries 0), the miner gives up with the reason (the CLI's one line)."""
    stats = Stats()
    engine, _ = engine_for_test(stats)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    miner = Miner(
        [PoolConfig(f"127.0.0.1:{port}", "w")], engine, stats, backoff_initial=0.1, backoff_max=0.2, retries=0
    )
    miner.start()
    try:
        assert miner.wait(10)
    finally:
        miner.stop(0.5)
    assert miner.fatal is not None and "refused" in miner.fatal and "\n" not in miner.fatal
