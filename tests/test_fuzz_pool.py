"""Property-based fuzzing of the pool's share validation (miner/pool.py) and of its server over loopback.

The oracle here is independent of the pool: it rebuilds the header from the
job's bytes with hashlib. Mutated submits must be accepted exactly when the
oracle says the share meets the difficulty and was not accepted before; the
counters must follow the verdicts one for one.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miner.block import DIFF1_TARGET
from miner.pool import EmbeddedChain, EmbeddedPool, Pool
from stratum.server import DUPLICATE, RequestError

SHARE_DIFF = 2.0**-24  # about 256 hashes a share
SHARE_TARGET = int(DIFF1_TARGET / SHARE_DIFF)
HARD_NBITS = 0x1D00FFFF  # no share here is a block
MASK = 0x1FFFE000


class Outbox:
    def __init__(self) -> None:
        self.jobs: list[list] = []

    def notify(self, params: list) -> None:
        self.jobs.append(params)

    def set_difficulty(self, difficulty: float) -> None:
        pass

    def set_version_mask(self, mask: int) -> None:
        pass

    def show_message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def dsha(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def oracle_hash(params: list, e1: bytes, e2: bytes, ntime: int, nonce: int, version: int) -> int:
    """The share's hash as an integer, from the notify params alone."""
    _, prevhash, coinb1, coinb2, branches, _, nbits, _, _ = params
    prev = b"".join(bytes.fromhex(prevhash)[i : i + 4][::-1] for i in range(0, 32, 4))
    root = dsha(bytes.fromhex(coinb1) + e1 + e2 + bytes.fromhex(coinb2))
    for branch in branches:
        root = dsha(root + bytes.fromhex(branch))
    header = struct.pack("<I", version) + prev + root + struct.pack("<III", ntime, int(nbits, 16), nonce)
    return int.from_bytes(dsha(header), "little")


def find_share(params: list, e1: bytes, e2: bytes, ntime: int, version: int, start: int = 0) -> int:
    for nonce in range(start, start + (1 << 20)):
        if oracle_hash(params, e1, e2, ntime, nonce, version) <= SHARE_TARGET:
            return nonce
    raise AssertionError("no share found")


@pytest.fixture(scope="module")
def setup():
    pool = Pool(EmbeddedChain(nbits=HARD_NBITS), difficulty=SHARE_DIFF, vardiff=False, clock=lambda: 1_700_000_000)
    pool.start()
    outbox = Outbox()
    session = pool.open_session(outbox, "127.0.0.1:1")
    session.configure(["version-rolling"], {"version-rolling.mask": "ffffffff"})
    _, e1, size = session.subscribe("fuzz/1", None)
    session.subscribed()
    assert session.authorize("alice", "x")
    params = outbox.jobs[-1]
    ntime = int(params[7], 16)
    version = int(params[5], 16)
    e2 = bytes(size)
    nonce = find_share(params, e1, e2, ntime, version)
    return pool, session, params, e1, size, ntime, version, e2, nonce


def hexes(n: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=n, max_size=n).map(bytes.hex)


@st.composite
def mutated_submits(draw, base: dict) -> dict:
    """The valid share's fields with a few replaced by near misses or junk."""
    sub = dict(base)
    for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=3, unique=True)):
        value = base[key]
        choices = [
            st.just(value.upper() if isinstance(value, str) else value),
            st.text(max_size=12),
            st.sampled_from(["", "zz", "0x00", "ffffffffff", "00" * 64, "é" * 4]),
        ]
        if key in ("nonce", "ntime", "version_bits"):
            number = int(value, 16) if isinstance(value, str) else 0
            choices.append(st.integers(-3, 3).map(lambda d, n=number: f"{(n + d) % 2**32:08x}"))
            choices.append(hexes(4))
        if key == "extranonce2":
            choices.append(hexes(len(value) // 2))
            choices.append(hexes(len(value) // 2 + 1))
        if key == "job_id":
            choices.append(st.sampled_from(["0", "ffff", base["job_id"] + ".1"]))
        if key == "worker":
            choices.append(st.sampled_from(["bob", "ALICE", "alice "]))
        if key == "version_bits":
            choices.append(st.none())
        sub[key] = draw(st.one_of(choices))
    return sub


def word(text: str) -> int | None:
    raw = bytes.fromhex(text)
    return int.from_bytes(raw, "big") if len(raw) == 4 else None


def expected_valid(sub: dict, setup_) -> bool:
    """The oracle's verdict, ignoring duplicates (the caller tracks those)."""
    pool, session, params, e1, size, ntime0, version0, _, _ = setup_
    try:
        if sub["worker"] != "alice" or sub["job_id"] != params[0]:
            return False
        e2 = bytes.fromhex(sub["extranonce2"])
        ntime, nonce = word(sub["ntime"]), word(sub["nonce"])
        bits = sub["version_bits"]
        bits_int = None if bits is None else word(bits)
    except (ValueError, TypeError):
        return False
    if len(e2) != size or ntime is None or nonce is None or (bits is not None and bits_int is None):
        return False
    if not ntime0 <= ntime <= ntime0 + 7200:
        return False
    version = version0
    if bits_int is not None:
        if bits_int & ~MASK:
            return False
        version = (version0 & ~MASK) | bits_int
    return oracle_hash(params, e1, e2, ntime, nonce, version) <= SHARE_TARGET


def share_key(sub: dict, version0: int) -> tuple:
    """What makes two submits the same share: the header fields after parsing."""
    bits = sub["version_bits"]
    version = version0 if bits is None else (version0 & ~MASK) | int(bits, 16)
    return bytes.fromhex(sub["extranonce2"]), int(sub["ntime"], 16), int(sub["nonce"], 16), version


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_submits_follow_the_oracle(setup, data) -> None:
    pool, session, params, e1, size, ntime, version, e2, nonce = setup
    base = {
        "worker": "alice",
        "job_id": params[0],
        "extranonce2": e2.hex(),
        "ntime": f"{ntime:08x}",
        "nonce": f"{nonce:08x}",
        "version_bits": data.draw(st.sampled_from([None, f"{version & MASK:08x}"])),
    }
    sub = data.draw(mutated_submits(base))
    valid = expected_valid(sub, setup)
    before = pool.summary()
    try:
        result = session.submit(
            sub["worker"], sub["job_id"], sub["extranonce2"], sub["ntime"], sub["nonce"], sub["version_bits"]
        )
    except RequestError as exc:
        after = pool.summary()
        assert after["accepted"] == before["accepted"] and after["rejected"] == before["rejected"] + 1
        if valid:  # only a duplicate of an earlier acceptance may be refused
            assert exc.code == DUPLICATE, exc.message
            assert share_key(sub, version) in accepted_keys
        return
    after = pool.summary()
    assert valid, f"accepted an invalid share {sub}"
    assert after["accepted"] == before["accepted"] + 1 and after["rejected"] == before["rejected"]
    key = share_key(sub, version)
    assert key not in accepted_keys, "the same share accepted twice"
    accepted_keys.add(key)
    assert result.share_difficulty >= SHARE_DIFF


accepted_keys: set[tuple] = set()


def test_valid_share_twice_and_case_variants_accepted_once(setup) -> None:
    pool, session, params, e1, size, ntime, version, e2, _ = setup
    e2 = b"\xab\xcd\x00\x01"[:size].ljust(size, b"\x00")
    nonce = find_share(params, e1, e2, ntime, version)
    forms = [
        (e2.hex(), f"{ntime:08x}", f"{nonce:08x}", None),
        (e2.hex().upper(), f"{ntime:08X}", f"{nonce:08X}", None),
        (e2.hex(), f"{ntime:08x}", f"{nonce:08x}", f"{version & MASK:08x}"),  # same header, explicit bits
    ]
    before = pool.summary()
    outcomes = []
    for e2_hex, ntime_hex, nonce_hex, bits in forms:
        try:
            session.submit("alice", params[0], e2_hex, ntime_hex, nonce_hex, bits)
            outcomes.append("accepted")
        except RequestError as exc:
            outcomes.append(exc.code)
    after = pool.summary()
    assert outcomes == ["accepted", DUPLICATE, DUPLICATE]
    assert after["accepted"] - before["accepted"] == 1 and after["rejected"] - before["rejected"] == 2


# --- the same through the real server over loopback ------------------------------------------------------------


class LineClient:
    """A blocking loopback Stratum peer that keeps every message it has read."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.messages: list[dict] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, request: dict | bytes) -> None:
        self.sock.sendall(request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n")

    def wait_for(self, match) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for msg in self.messages:
                if match(msg):
                    self.messages.remove(msg)
                    return msg
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            self.messages += [json.loads(line) for line in lines if line.strip()]

    def call(self, request: dict) -> dict:
        self.send(request)
        return self.wait_for(lambda m: m.get("id") == request["id"] and "method" not in m)

    def notify(self) -> list:
        return self.wait_for(lambda m: m.get("method") == "mining.notify")["params"]


junk_lines = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")),
    st.builds(
        lambda m, p, i: json.dumps({"id": i, "method": m, "params": p}).encode(),
        st.sampled_from(["mining.submit", "mining.authorize", "mining.subscribe", "mining.configure", "nope", ""]),
        st.lists(st.one_of(st.text(max_size=10), st.integers(), st.none(), st.floats(allow_nan=False)), max_size=7),
        st.integers(100, 10**6),
    ),
    st.just(b"{" * 200),
    st.just(b"[" + b"1," * 3000 + b"1]"),
)


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(junk_lines, min_size=1, max_size=20))
def test_server_survives_junk_and_counts_right(lines: list[bytes]) -> None:
    """Junk between valid requests: the connection keeps working, nothing junk is accepted."""
    with EmbeddedPool(difficulty=SHARE_DIFF, vardiff=False, job_source=EmbeddedChain(nbits=HARD_NBITS)) as pool:
        client = LineClient(pool.port)
        try:
            sub = client.call({"id": 1, "method": "mining.subscribe", "params": ["fuzz"]})
            e1 = bytes.fromhex(sub["result"][1])
            size = sub["result"][2]
            assert client.call({"id": 2, "method": "mining.authorize", "params": ["w", "x"]})["result"] is True
            params = client.notify()
            client.send(b"\n".join(lines) + b"\n")
            e2 = bytes(size)
            nonce = find_share(params, e1, e2, int(params[7], 16), int(params[5], 16))
            fields = ["w", params[0], e2.hex(), params[7], f"{nonce:08x}"]
            reply = client.call({"id": 7, "method": "mining.submit", "params": fields})
            again = client.call({"id": 8, "method": "mining.submit", "params": fields})
            summary = pool.summary()
        finally:
            client.close()
    assert reply["result"] is True and reply["error"] is None
    assert again["error"][0] == DUPLICATE
    assert summary["accepted"] == 1


def test_over_long_line_does_not_kill_the_connection() -> None:
    with EmbeddedPool(difficulty=SHARE_DIFF, vardiff=False, job_source=EmbeddedChain(nbits=HARD_NBITS)) as pool:
        client = LineClient(pool.port)
        try:
            client.send(b'{"id":1,"method":"mining.subscribe","params":["' + b"a" * 100_000 + b'"]}\n')
            reply = client.call({"id": 2, "method": "mining.subscribe", "params": ["ok"]})
        finally:
            client.close()
        assert reply["error"] is None
        assert pool.summary()["accepted"] == 0
