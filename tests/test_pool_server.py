"""The pool over real loopback TCP: a raw JSON-lines miner, the Engine, TLS and `miner pool`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from kernels import BackendUnavailable
from miner.block import difficulty_to_target, hash_to_int, sha256d
from miner.engine import Engine
from miner.pool import EmbeddedChain, EmbeddedPool
from miner.work import StratumJob, job_header, work_from_job

SHARE_DIFF = 2.0**-24  # ~256 hashes a share
HARD_NBITS = 0x1D00FFFF  # difficulty 1: shares are never blocks
TIMEOUT = 10.0


class RawMiner:
    """A minimal Stratum miner speaking raw JSON lines, for exact control over what is sent."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.file = sock.makefile("rwb")
        self.ids = iter(range(1, 1 << 30))
        self.backlog: list[dict] = []
        self.extranonce1 = b""
        self.jobs: list[StratumJob] = []
        self.difficulties: list[float] = []

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def send_line(self, raw: bytes) -> None:
        self.file.write(raw + b"\n")
        self.file.flush()

    def request(self, method: str, params: list) -> dict:
        """Send a request and return its reply; notifications seen meanwhile are kept."""
        request_id = next(self.ids)
        self.send_line(json.dumps({"id": request_id, "method": method, "params": params}).encode())
        return self.reply(request_id)

    def reply(self, request_id) -> dict:
        while True:
            message = self.read()
            if message.get("method") is None and message.get("id") == request_id:
                return message

    def read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise ConnectionError("the pool closed the connection")
        message = json.loads(line)
        if message.get("method") == "mining.notify":
            self.jobs.append(StratumJob.from_params(message["params"]))
        elif message.get("method") == "mining.set_difficulty":
            self.difficulties.append(message["params"][0])
        return message

    def wait_for(self, predicate, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.read()

    def handshake(self, worker: str = "alice", version_rolling: bool = False) -> None:
        if version_rolling:
            reply = self.request("mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}])
            assert reply["result"]["version-rolling"] is True
        reply = self.request("mining.subscribe", ["raw/1.0"])
        self.extranonce1 = bytes.fromhex(reply["result"][1])
        assert reply["result"][2] == 4
        assert self.request("mining.authorize", [worker, "x"])["result"] is True
        self.wait_for(lambda: self.jobs and self.difficulties, "the first job")

    def find_share(self, job: StratumJob, e2: bytes, difficulty: float, meets: bool = True) -> int:
        target = difficulty_to_target(difficulty)
        base = job_header(job, self.extranonce1, e2)
        for nonce in range(1 << 20):
            value = hash_to_int(sha256d(base[:76] + nonce.to_bytes(4, "little")))
            if (value <= target) == meets:
                return nonce
        raise AssertionError("no nonce found")

    def submit(self, job: StratumJob, e2: bytes, nonce: int, worker: str = "alice") -> dict:
        return self.request("mining.submit", [worker, job.job_id, e2.hex(), job.ntime, f"{nonce:08x}"])


def error_code(reply: dict) -> int | None:
    return reply["error"][0] if reply.get("error") else None


@pytest.fixture
def hard_pool():
    """A pool whose shares are never blocks, fixed share difficulty."""
    pool = EmbeddedPool(difficulty=SHARE_DIFF, vardiff=False, job_source=EmbeddedChain(nbits=HARD_NBITS))
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture
def miner_factory():
    miners: list[RawMiner] = []

    def make(port: int, **kwargs) -> RawMiner:
        miner = RawMiner(port, **kwargs)
        miners.append(miner)
        return miner

    yield make
    for miner in miners:
        miner.close()


def test_handshake_share_accepted_and_every_rejection_code(hard_pool, miner_factory):
    miner = miner_factory(hard_pool.port)
    early = miner.request("mining.submit", ["alice", "1", "00000000", "00000000", "00000000"])
    assert error_code(early) == 25
    miner.handshake()
    assert miner.jobs[0].clean_jobs and miner.difficulties == [SHARE_DIFF]
    job = miner.jobs[-1]
    e2 = bytes.fromhex("0000002a")
    nonce = miner.find_share(job, e2, SHARE_DIFF)
    accepted = miner.submit(job, e2, nonce)
    assert accepted["result"] is True and accepted["error"] is None
    assert error_code(miner.submit(job, e2, nonce)) == 22
    assert error_code(miner.submit(job, e2, miner.find_share(job, e2, SHARE_DIFF, meets=False))) == 23
    assert error_code(miner.submit(job, e2, nonce, worker="mallory")) == 24
    assert error_code(miner.request("mining.submit", ["alice", "nope", e2.hex(), job.ntime, "00000000"])) == 21
    bad_e2 = miner.request("mining.submit", ["alice", job.job_id, "00", job.ntime, f"{nonce:08x}"])
    assert error_code(bad_e2) == 20
    summary = hard_pool.summary()
    assert summary["connections"] == 1 and summary["accepted"] == 1 and summary["rejected"] == 6


def test_malformed_input_is_answered_and_skipped(hard_pool, miner_factory):
    miner = miner_factory(hard_pool.port)
    miner.send_line(b"this is not json")
    miner.send_line(b'{"id": 77, "method": 5}')
    assert error_code(miner.reply(77)) == 20
    assert error_code(miner.request("mining.no_such_method", [])) == 20
    miner.send_line(b"x" * (64 * 1024))  # over the line limit
    assert miner.request("mining.ping", [])["result"] == "pong"
    miner.handshake()  # the connection still works
    other = miner_factory(hard_pool.port)
    other.handshake("bob")


def test_a_found_block_sends_a_clean_job_to_every_connection(miner_factory):
    with EmbeddedPool(difficulty=SHARE_DIFF, vardiff=False) as pool:  # regtest nBits: every share is a block
        a, b = miner_factory(pool.port), miner_factory(pool.port)
        a.handshake("alice")
        b.handshake("bob")
        job = a.jobs[-1]
        e2 = bytes.fromhex("00000003")
        assert a.submit(job, e2, a.find_share(job, e2, SHARE_DIFF))["result"] is True
        for miner in (a, b):
            miner.wait_for(lambda m=miner: m.jobs[-1].job_id != job.job_id, "the clean job")
            assert miner.jobs[-1].clean_jobs
            assert miner.jobs[-1].prevhash != job.prevhash
        assert pool.job_source.height == 2 and pool.summary()["blocks"] == 1
        stale = a.submit(job, bytes.fromhex("00000004"), a.find_share(job, bytes.fromhex("00000004"), SHARE_DIFF))
        assert error_code(stale) == 21


def test_vardiff_raises_difficulty_for_a_fast_miner(miner_factory):
    chain = EmbeddedChain(nbits=HARD_NBITS)
    with EmbeddedPool(difficulty=SHARE_DIFF, vardiff=True, job_source=chain, share_interval=30.0) as pool:
        miner = miner_factory(pool.port)
        miner.handshake()
        job = miner.jobs[-1]
        for i in range(4):
            e2 = i.to_bytes(4, "big")
            assert miner.submit(job, e2, miner.find_share(job, e2, SHARE_DIFF))["result"] is True
        miner.wait_for(lambda: len(miner.difficulties) > 1, "a retarget")
        assert miner.difficulties[-1] > SHARE_DIFF
        miner.wait_for(lambda: miner.jobs[-1].job_id != job.job_id, "the job at the new difficulty")
        assert not miner.jobs[-1].clean_jobs


def test_version_rolling_share_over_the_wire(hard_pool, miner_factory):
    miner = miner_factory(hard_pool.port)
    miner.handshake(version_rolling=True)
    job = miner.jobs[-1]
    e2 = bytes.fromhex("00000005")
    bits = 0x0000E000
    version = (job.version_int & ~0x1FFFE000) | bits
    target = difficulty_to_target(SHARE_DIFF)
    base = job_header(job, miner.extranonce1, e2, version=version)
    nonce = next(n for n in range(1 << 20) if hash_to_int(sha256d(base[:76] + n.to_bytes(4, "little"))) <= target)
    params = ["alice", job.job_id, e2.hex(), job.ntime, f"{nonce:08x}", f"{bits:08x}"]
    assert miner.request("mining.submit", params)["result"] is True
    params[-1] = "80000000"
    assert error_code(miner.request("mining.submit", params)) == 20


def test_idle_connection_is_closed_and_others_keep_working(miner_factory):
    with EmbeddedPool(difficulty=SHARE_DIFF) as pool:
        pool.server.handshake_timeout = 0.5  # never subscribes
        idle = miner_factory(pool.port)
        deadline = time.monotonic() + TIMEOUT
        with pytest.raises((ConnectionError, OSError)):
            while time.monotonic() < deadline:
                idle.read()
        half = socket.create_connection(("127.0.0.1", pool.port), timeout=TIMEOUT)
        half.sendall(b'{"id": 1, "method": "mining.subscr')
        half.close()  # gone mid-line
        miner_factory(pool.port).handshake()


def test_engine_mines_accepted_shares_against_the_pool(hard_pool, miner_factory):
    miner = miner_factory(hard_pool.port)
    miner.handshake()
    job, difficulty = miner.jobs[-1], miner.difficulties[-1]
    counter = iter(range(1 << 30))

    def next_work():
        e2 = next(counter).to_bytes(4, "big")
        return work_from_job(job, miner.extranonce1, e2, difficulty)

    shares = []
    found = threading.Event()

    def on_share(share):
        shares.append(share)
        if len(shares) >= 3:
            found.set()

    try:
        engine = Engine.for_backend("cpu", threads=1, on_share=on_share)
    except BackendUnavailable:
        engine = Engine.for_backend("reference", threads=1, on_share=on_share)
    engine.set_source(next_work)
    engine.start()
    try:
        assert found.wait(60), "the engine found no shares"
    finally:
        engine.stop()
    for share in shares[:3]:
        reply = miner.submit(job, share.work.extranonce2, share.nonce)
        assert reply["result"] is True, reply
    assert hard_pool.summary()["accepted"] == 3


@pytest.fixture
def tls_files(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_pool(tls_files, miner_factory):
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    with EmbeddedPool(difficulty=SHARE_DIFF, vardiff=False, tls_context=server_ctx) as pool:
        assert pool.url.startswith("stratum+ssl://127.0.0.1:")
        client_ctx = ssl.create_default_context(cafile=str(cert))
        miner = miner_factory(pool.port, tls=client_ctx)
        miner.handshake()
        job = miner.jobs[-1]
        e2 = bytes.fromhex("00000006")
        assert miner.submit(job, e2, miner.find_share(job, e2, SHARE_DIFF))["result"] is True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_pool_json_summary_counts_a_block(miner_factory):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "miner", "pool", "--listen", f"127.0.0.1:{port}", "--difficulty", str(SHARE_DIFF),
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                miner = miner_factory(port)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        miner.handshake()
        job = miner.jobs[-1]
        e2 = bytes.fromhex("00000007")
        assert miner.submit(job, e2, miner.find_share(job, e2, SHARE_DIFF))["result"] is True
        proc.send_signal(signal.SIGTERM)  # once the share is in, however long that took: the summary, exit 0
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert set(summary) == {"connections", "accepted", "rejected", "blocks", "seconds"}
    assert summary["connections"] == 1 and summary["accepted"] == 1 and summary["blocks"] == 1


def test_cli_pool_port_in_use_is_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "miner", "pool", "--listen", f"127.0.0.1:{port}", "--duration", "1"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().startswith("miner: error: cannot listen")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--listen", "127.0.0.1:notaport"], "port"),
        (["--listen", "127.0.0.1:70000"], "out of range"),
        (["--rpc-url", "http://127.0.0.1:1"], "--address"),
        (["--address", "not-an-address"], "--address"),
        (["--nbits", "zz"], "--nbits"),
        (["--nbits", "20800000"], "--nbits"),
        (["--tls-key", "key.pem"], "--tls-cert"),
        (["--tls-cert", "/nonexistent/cert.pem"], "certificate"),
    ],
)
def test_cli_pool_bad_arguments_are_one_clear_line(args, words):
    from click.testing import CliRunner

    from miner.cli import main

    result = CliRunner().invoke(main, ["pool", "--duration", "0", *args])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("miner: error:") and words in lines[-1], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_node_url_credentials_stay_out_of_the_log():
    from miner.cli.pool import redact_url

    assert redact_url("http://user:secret@127.0.0.1:18443") == "http://127.0.0.1:18443"
    assert redact_url("127.0.0.1:18443") == "127.0.0.1:18443"
