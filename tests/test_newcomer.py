"""What a newcomer meets first, run as they would run it: the ``miner`` command against loopback servers.

A pool URL with the wrong scheme, an HTTP server or a server that closes at once: the log and the
final error say what the bytes looked like, and the run exits 1 because no job was ever held. Log
lines promise a retry only when one will come. While the only pool is down the miner keeps hashing
its last job, and the summary keeps that apart from the rate on live work. ``miner pool --address``
on the embedded chain pays that address and says so.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import threading

import pytest
from commands import MINER, backend
from test_stratum_client import self_signed

from miner.address import address_to_script
from miner.engine import Engine
from miner.mining import Miner, PoolConfig
from miner.stats import Stats

REGTEST_ADDRESS = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"
MAINNET_ADDRESS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
RUN_TIMEOUT = 120  # a ceiling for a stuck run, not a schedule


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MINER, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL
    )


def mine(url: str, *extra: str) -> subprocess.CompletedProcess:
    return run("mine", "-o", url, "-b", backend(), "-t", "1", *extra)


def log_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("[")]


def final_error(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("miner: error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


class Server:
    """A loopback listener that hands each connection to ``serve(conn)`` in its own thread."""

    def __init__(self, serve, tls: ssl.SSLContext | None = None) -> None:
        self.serve = serve
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            with conn:
                if self.tls is not None:
                    with self.tls.wrap_socket(conn, server_side=True) as tls:
                        self.serve(tls)
                else:
                    self.serve(conn)
        except (OSError, ssl.SSLError, ValueError):
            pass

    def close(self) -> None:
        self.listener.close()


def requests(conn: socket.socket):
    """Each JSON request the miner sends, until it hangs up."""
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


def reply(conn: socket.socket, request: dict, result) -> None:
    conn.sendall(json.dumps({"id": request.get("id"), "result": result, "error": None}).encode() + b"\n")


def stratum_pool(conn: socket.socket) -> None:
    """Subscribe and authorize, and no job: enough for the miner to know it speaks Stratum."""
    for request in requests(conn):
        if request.get("method") == "mining.subscribe":
            reply(conn, request, [[["mining.notify", "s1"]], "01020304", 4])
        else:
            reply(conn, request, True)


def http_server(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def close_at_once(conn: socket.socket) -> None:
    pass


def refuse_the_worker(conn: socket.socket) -> None:
    for request in requests(conn):
        if request.get("method") == "mining.subscribe":
            reply(conn, request, [[["mining.notify", "s1"]], "01020304", 4])
        elif request.get("method") == "mining.authorize":
            conn.sendall(json.dumps({"id": request["id"], "result": False, "error": [24, "no such worker", None]})
                         .encode() + b"\n")  # fmt: skip


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory) -> ssl.SSLContext:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# --- the wrong kind of server: say what it looked like, exit 1 ---------------------------------------------------


def test_tls_pool_given_as_stratum_tcp(tls_context) -> None:
    server = Server(stratum_pool, tls=tls_context)
    try:
        result = mine(f"stratum+tcp://127.0.0.1:{server.port}", "--duration", "30")
    finally:
        server.close()
    hint = f"this looks like TLS; try stratum+ssl://127.0.0.1:{server.port}"
    assert result.returncode == 1, result.stderr
    assert any(hint in line for line in log_lines(result)), result.stderr
    assert hint in final_error(result)


def test_plain_pool_given_as_stratum_ssl() -> None:
    server = Server(stratum_pool)
    try:
        result = mine(f"stratum+ssl://127.0.0.1:{server.port}", "--duration", "30")
    finally:
        server.close()
    hint = f"try stratum+tcp://127.0.0.1:{server.port}"
    assert result.returncode == 1, result.stderr
    assert any("plain Stratum pool" in line and hint in line for line in log_lines(result)), result.stderr
    assert "plain Stratum pool" in final_error(result) and hint in final_error(result)


def test_http_server_given_as_a_pool() -> None:
    server = Server(http_server)
    try:
        result = mine(f"stratum+tcp://127.0.0.1:{server.port}", "--duration", "30")
    finally:
        server.close()
    assert result.returncode == 1, result.stderr
    assert any("this looks like an HTTP server" in line for line in log_lines(result)), result.stderr
    assert "this looks like an HTTP server" in final_error(result)
    assert not any("not valid JSON" in line for line in log_lines(result))  # one line about it, not one per line


def test_server_that_closes_at_once() -> None:
    server = Server(close_at_once)
    try:
        result = mine(f"stratum+tcp://127.0.0.1:{server.port}", "--duration", "3")
    finally:
        server.close()
    said = "the server closed the connection before answering"
    assert result.returncode == 1, result.stderr
    assert any(said in line for line in log_lines(result)), result.stderr
    error = final_error(result)
    assert "mined nothing: no pool ever sent a job" in error and said in error


# --- a retry is promised only when one will come -----------------------------------------------------------------


def test_refused_connection_promises_no_retry() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = mine(f"stratum+tcp://127.0.0.1:{port}", "--retries", "0", "--duration", "30")
    assert result.returncode == 1
    assert "connection refused" in final_error(result)
    assert any("connection refused" in line for line in log_lines(result)), result.stderr
    assert not any("retrying in" in line for line in log_lines(result)), result.stderr


def test_refused_worker_promises_no_reconnect() -> None:
    """The worker refused: the run ends, so the reconnect the connection schedules must not be announced."""
    connections = threading.Semaphore(0)

    def counted(conn: socket.socket) -> None:
        connections.release()
        refuse_the_worker(conn)

    server = Server(counted)
    lines: list[str] = []
    stats = Stats()
    engine = Engine.for_backend("reference", threads=1, stats=stats)
    miner = Miner([PoolConfig(f"stratum+tcp://127.0.0.1:{server.port}", "w", "x")], engine, stats,
                  log=lines.append, backoff_initial=0.01, backoff_max=0.05)  # fmt: skip
    miner.start()
    try:
        assert miner.wait(RUN_TIMEOUT) and miner.fatal and "authorization failed" in miner.fatal
        # A second connection means the first one's end (and its scheduled reconnect) has been handled.
        assert connections.acquire(timeout=RUN_TIMEOUT) and connections.acquire(timeout=RUN_TIMEOUT)
    finally:
        miner.stop(0.5)
        server.close()
    assert any("authorization failed" in line for line in lines), lines
    assert not any("reconnecting in" in line or "retrying in" in line for line in lines), lines


# --- honest figures: hashes on a job no pool holds are not the rate --------------------------------------------


def test_hashes_while_the_only_pool_is_down_are_not_the_live_rate() -> None:
    server: Server | None = None

    def one_job_then_gone(conn: socket.socket) -> None:
        """One job at a difficulty no hash here meets; then the pool hangs up and stops listening."""
        for request in requests(conn):
            if request.get("method") == "mining.subscribe":
                reply(conn, request, [[["mining.notify", "s1"]], "01020304", 4])
            elif request.get("method") == "mining.authorize":
                reply(conn, request, True)
                coinb1 = "01000000" + "01" + "00" * 32 + "ffffffff" + "08"
                coinb2 = "ffffffff" + "01" + "00f2052a01000000" + "0151" + "00000000"
                job = ["1", "00" * 32, coinb1, coinb2, [], "20000000", "1d00ffff", "65000000", True]
                conn.sendall(
                    json.dumps({"id": None, "method": "mining.set_difficulty", "params": [1e6]}).encode()
                    + b"\n"
                    + json.dumps({"id": None, "method": "mining.notify", "params": job}).encode()
                    + b"\n"
                )
                server.close()  # no more connections: the only pool is down from here on
                return

    server = Server(one_job_then_gone)
    try:
        result = mine(f"stratum+tcp://127.0.0.1:{server.port}", "--duration", "4", "--json")
    finally:
        server.close()
    assert result.returncode == 0, result.stderr  # a job was held: something was mined
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["hashes"] > summary["live_hashes"]  # the engine kept scanning the orphaned job
    assert summary["live_seconds"] < summary["seconds"] - 2  # and that time is not live time
    if summary["live_seconds"] > 0:
        assert summary["hashrate"] == pytest.approx(summary["live_hashes"] / summary["live_seconds"], rel=0.01)
    else:
        assert summary["hashrate"] == 0


def test_summary_line_names_time_and_hashes_without_a_live_job() -> None:
    from miner.cli.mine import summary_line

    snap = {"elapsed": 10.0, "live_seconds": 4.0, "hashes": 1_000_000, "live_hashes": 400_000,
            "live_hashrate": 100_000.0, "accepted": 1, "rejected": 0, "stale": 0, "hw_errors": 0,
            "blocks": 0}  # fmt: skip
    line = summary_line(snap)
    assert line.startswith("mined 10.0 s (4.0 s with a live job, 6.0 s without): 400000 hashes on live work")
    assert "(100.00 kH/s)" in line and "600000 more on work no pool held" in line


# --- miner pool --address on the embedded chain ----------------------------------------------------------------


def test_embedded_pool_pays_the_address_and_says_so() -> None:
    proc = subprocess.Popen(
        [*MINER, "pool", "--listen", "127.0.0.1:0", "--address", REGTEST_ADDRESS, "--difficulty", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        line = proc.stderr.readline()  # the pool's first log line, once it listens
        assert f"blocks pay {REGTEST_ADDRESS}" in line, line
        port = int(line.split("stratum+tcp://127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b'{"id": 1, "method": "mining.subscribe", "params": []}\n'
                         b'{"id": 2, "method": "mining.authorize", "params": ["w", "x"]}\n')  # fmt: skip
            reader = sock.makefile("r", encoding="utf-8")
            notify = next(m for m in map(json.loads, reader) if m.get("method") == "mining.notify")
        assert address_to_script(REGTEST_ADDRESS).hex() in notify["params"][3]  # coinb2 holds the payout output
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=RUN_TIMEOUT)


def test_embedded_pool_refuses_a_mainnet_address() -> None:
    result = run("pool", "--address", MAINNET_ADDRESS, "--duration", "0")
    assert result.returncode == 2
    error = final_error(result)
    assert "--address" in error and "mainnet address" in error and "embedded chain" in error
