"""The cgminer API as an open port: random bytes, huge and slow requests, half-open sockets, bursts, allow lists.

Each test ends by checking the server still answers a plain ``summary``, and
that no privileged action reached the miner unless the client was allowed it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miner.asic.commands import COMMANDS
from miner.asic.server import ApiServer
from miner.stats import Stats

PRIVILEGED = sorted(name for name, cmd in COMMANDS.items() if cmd.write)
READ_TIMEOUT = 0.5


class RecordingControl:
    """A MinerControl that only records the actions asked of it."""

    backend_name = "reference"

    def __init__(self) -> None:
        self.stats = Stats()
        self.started_wall = self.stats.started_wall
        for port in (3333, 3334):
            self.stats.add_pool(f"stratum+tcp://127.0.0.1:{port}", "w").status = "Alive"
        self.stats.device("CPU 0")
        self.calls: list[tuple] = []
        self._lock = threading.Lock()

    def _record(self, *call) -> None:
        with self._lock:
            self.calls.append(call)

    def current_pool(self) -> int:
        return 0

    def switch_pool(self, index: int) -> None:
        self._record("switch", index)

    def add_pool(self, url: str, user: str, password: str) -> int:
        self._record("add", url)
        return 2

    def remove_pool(self, index: int) -> None:
        self._record("remove", index)

    def enable_pool(self, index: int) -> None:
        self._record("enable", index)

    def disable_pool(self, index: int) -> None:
        self._record("disable", index)

    def set_pool_priority(self, order: list[int]) -> None:
        self._record("priority", order)

    def restart(self) -> None:
        self._record("restart")

    def quit(self) -> None:
        self._record("quit")


@pytest.fixture
def control() -> RecordingControl:
    return RecordingControl()


def start(control, allow: str | None = None) -> ApiServer:
    """A server on a free loopback port, started by ``with``."""
    return ApiServer(control, "127.0.0.1", 0, allow=allow, read_timeout=READ_TIMEOUT)


def exchange(port: int, payload: bytes, source: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    """Send ``payload`` from ``source`` and read until the server closes; b'' if refused without a reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(payload)
        except OSError:
            pass
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk
    finally:
        sock.close()


def summary_ok(port: int, source: str = "127.0.0.1") -> bool:
    reply = exchange(port, b'{"command":"summary"}', source)
    return reply.endswith(b"\0") and json.loads(reply[:-1])["STATUS"][0]["STATUS"] == "S"


def status_of(reply: bytes) -> str:
    text = reply.rstrip(b"\0").decode("utf-8", "replace")
    if text.startswith("{"):
        return json.loads(text)["STATUS"][0]["STATUS"]
    return text.split("STATUS=", 1)[1][:1] if "STATUS=" in text else ""


def refused(reply: bytes) -> bool:
    """The privileged part was answered with an error (a joined request may carry other, successful parts)."""
    return reply.endswith(b"\0") and (b"Access denied" in reply or b"Invalid command" in reply)


@settings(max_examples=40, deadline=None)
@given(payload=st.binary(min_size=1, max_size=9000))
def test_random_bytes_never_act_and_never_kill_the_server(payload: bytes) -> None:
    control = RecordingControl()
    with start(control) as server:  # loopback without --api-allow: read-only
        reply = exchange(server.port, payload)
        assert reply == b"" or reply.endswith(b"\0")
        assert summary_ok(server.port)
    assert control.calls == []


def test_huge_request_is_cut_and_answered(control) -> None:
    with start(control, allow="W:127.0.0.1") as server:
        for payload in (b"summary" + b"x" * 1_000_000, b'{"command":"' + b"a" * 1_000_000 + b'"}', b"{" * 500_000):
            started = time.monotonic()
            reply = exchange(server.port, payload)
            assert time.monotonic() - started < 5 * READ_TIMEOUT + 2
            assert reply == b"" or status_of(reply) == "E"
        assert summary_ok(server.port)
    assert control.calls == []


def test_slow_and_silent_clients_do_not_lock_out_others(control) -> None:
    """More idle connections than the server has slots: a real query still gets through in bounded time."""
    with start(control) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(40)]
        trickle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            for ch in b'{"command":':  # a slowloris trickle, slower than the read timeout allows
                trickle.sendall(bytes([ch]))
                time.sleep(0.02)
            started = time.monotonic()
            assert summary_ok(server.port)
            assert time.monotonic() - started < 4 * READ_TIMEOUT * len(idle) / 16 + 5
        finally:
            for sock in idle + [trickle]:
                sock.close()
        assert summary_ok(server.port)


def test_half_open_and_reset_connections(control) -> None:
    with start(control, allow="W:127.0.0.1") as server:
        for _ in range(20):
            # request sent, write side shut, never read: the reply goes nowhere
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"summary")
            sock.shutdown(socket.SHUT_WR)
            sock.close()
            # connect and close at once
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
            # reset mid-request (SO_LINGER 0 sends RST)
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.sendall(b'{"command":"swi')
            sock.close()
        # a half-open client that sends nothing and never closes
        lingering = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        try:
            assert summary_ok(server.port)
        finally:
            lingering.close()
    assert control.calls == []


def test_burst_of_a_thousand_connections(control) -> None:
    """1,000 queries from 64 concurrent clients: every one answered, bounded in time."""
    with start(control) as server:

        def one(_: int) -> bool:
            for _attempt in range(3):  # a full accept backlog may refuse a connection: a client retries
                try:
                    return summary_ok(server.port)
                except OSError:
                    time.sleep(0.05)
            return False

        started = time.monotonic()
        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, range(1000)))
        elapsed = time.monotonic() - started
        assert all(results), f"{results.count(False)} of 1000 queries failed"
        assert elapsed < 60
        assert server.requests >= 1000


# --- privileged commands and --api-allow ---------------------------------------------------------------------


def command_forms(name: str, param: str) -> list[bytes]:
    return [
        name.encode(),
        f"{name}|{param}".encode(),
        f" {name}|{param}\n".encode(),
        json.dumps({"command": name, "parameter": param}).encode(),
        json.dumps({"command": name, "parameter": int(param) if param.isdigit() else param}).encode(),
        f"summary+{name}".encode(),
        json.dumps({"command": f"{name}+summary"}).encode(),
        f"{name}\0summary".encode(),
    ]


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(PRIVILEGED), param=st.sampled_from(["0", "1", "stratum+tcp://127.0.0.1:1,u,p", "0,1", ""]))
def test_privileged_refused_every_time_from_read_only_addresses(name: str, param: str) -> None:
    control = RecordingControl()
    with start(control, allow="W:127.0.0.1,R:127.0.0.2") as server:
        for payload in command_forms(name, param):
            reply = exchange(server.port, payload, source="127.0.0.2")
            assert refused(reply), (payload, reply)
            assert exchange(server.port, payload, source="127.0.0.3") == b""  # not listed: no reply at all
        assert summary_ok(server.port, source="127.0.0.2")
        assert exchange(server.port, b"summary", source="127.0.0.4") == b""
    assert control.calls == []


def test_default_allow_is_loopback_read_only(control) -> None:
    with start(control) as server:
        for name in PRIVILEGED:
            for payload in command_forms(name, "0"):
                assert refused(exchange(server.port, payload)), payload
        assert summary_ok(server.port)
    assert control.calls == []


def test_writer_address_may_act(control) -> None:
    """The positive control: the same requests from a W: address do reach the miner."""
    with start(control, allow="W:127.0.0.1,R:127.0.0.2") as server:
        assert status_of(exchange(server.port, b"switchpool|1")) == "S"
        assert status_of(exchange(server.port, b"switchpool|1", source="127.0.0.2")) == "E"
    assert control.calls == [("switch", 1)]
