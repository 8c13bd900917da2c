"""The Stratum client over real loopback sockets, against a small scripted pool.

:class:`ScriptedPool` speaks through :class:`stratum.protocol.ServerConnection`
and checks every share for real (header rebuilt, hashed, compared with the
job's target), so the same pool serves the end-to-end mining tests.
"""

from __future__ import annotations

import datetime
import os
import queue
import secrets
import socket
import ssl
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miner.block import (
    BlockHeader,
    difficulty_to_target,
    hash_to_int,
    merkle_root,
    sha256d,
)
from miner.work import StratumJob, job_header, roll_version, work_from_job
from stratum.client import (
    AuthFailed,
    ConnectFailed,
    Disconnected,
    Ready,
    StratumClient,
    SubmitLost,
    parse_pool_url,
)
from stratum.protocol import (
    ERR_DUPLICATE,
    ERR_JOB_NOT_FOUND,
    ERR_LOW_DIFFICULTY,
    Authorize,
    Configure,
    ExtranonceSubscribe,
    Notify,
    ProtocolViolation,
    Reply,
    ServerConnection,
    SetDifficulty,
    Submit,
    SubmitResult,
    Subscribe,
    SuggestDifficulty,
)

TIMEOUT = 10.0


def make_job(job_id: str, clean: bool = True, nbits: int = 0x1D00FFFF) -> StratumJob:
    """A random but well-formed job (difficulty-1 nBits: shares are never blocks)."""
    return StratumJob(
        job_id=job_id,
        prevhash=secrets.token_hex(32),
        coinb1="01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20",
        coinb2=secrets.token_hex(20) + "ffffffff0100f2052a010000000151" + "00000000",
        merkle_branch=(secrets.token_hex(32), secrets.token_hex(32)),
        version="20000000",
        nbits=f"{nbits:08x}",
        ntime=f"{int(time.time()):08x}",
        clean_jobs=clean,
    )


class _Session:
    def __init__(self, pool: ScriptedPool, sock: socket.socket, extranonce1: bytes) -> None:
        self.pool = pool
        self.sock = sock
        self.conn = ServerConnection()
        self.extranonce1 = extranonce1
        self.session_id = extranonce1.hex()
        self.lock = threading.Lock()

    def send(self, data: bytes) -> bool:
        """True once the bytes are with the kernel: they then reach the miner ahead of any close."""
        with self.lock:
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                return False


class ScriptedPool:
    """A threaded Stratum pool for tests: real TCP (or TLS) on 127.0.0.1, every share checked."""

    def __init__(
        self,
        difficulty: float = 2.0**-20,
        version_mask: int = 0x1FFFE000,
        password: str | None = None,
        resume: bool = True,
        silent: bool = False,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        self.difficulty = difficulty
        self.version_mask = version_mask
        self.password = password
        self.resume = resume
        self.silent = silent
        self.tls = tls
        self.port = port
        self.jobs: dict[str, StratumJob] = {}
        self.job: StratumJob | None = None
        self.job_difficulty: dict[str, float] = {}
        self.sessions: list[_Session] = []
        self.known_sessions: dict[str, bytes] = {}
        self.submits: list[tuple[float, Submit, str]] = []  # (time, submit, verdict)
        self.seen: set = set()
        self.events: queue.Queue = queue.Queue()
        self.connections = 0
        self._listener: socket.socket | None = None
        self._lock = threading.RLock()
        self._next_job = 1
        self._next_en1 = 1

    # control

    def start(self) -> ScriptedPool:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        self._listener = listener
        if self.job is None:
            self.new_job(clean=True, send=False)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"stratum+{'ssl' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Stop listening and drop every connection (the pool process died)."""
        with self._lock:
            if self._listener is not None:
                try:
                    self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
                except OSError:
                    pass
                self._listener.close()
                self._listener = None
            sessions, self.sessions = self.sessions, []
        for s in sessions:
            try:
                s.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.sock.close()

    def new_job(self, clean: bool = True, send: bool = True) -> StratumJob:
        with self._lock:
            job = make_job(str(self._next_job), clean)
            self._next_job += 1
            if clean:
                self.jobs.clear()
            self.jobs[job.job_id] = job
            self.job_difficulty[job.job_id] = self.difficulty
            self.job = job
            sessions = list(self.sessions)
        if send:
            for s in sessions:
                s.send(s.conn.notify(job.to_params()))
        return job

    def broadcast(self, build) -> None:
        with self._lock:
            sessions = list(self.sessions)
        for s in sessions:
            s.send(build(s.conn))

    def accepted(self) -> list[Submit]:
        return [sub for _, sub, verdict in self.submits if verdict == "accepted"]

    def wait_for(self, predicate, timeout: float = TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    # serving

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    sock.settimeout(5)
                    sock = self.tls.wrap_socket(sock, server_side=True)
                    sock.settimeout(None)
                except (OSError, ssl.SSLError):
                    sock.close()
                    continue
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            en1 = self._next_en1.to_bytes(4, "big")
            self._next_en1 += 1
            session = _Session(self, sock, en1)
            self.sessions.append(session)
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                events = session.conn.receive_data(data)
                for event in events:
                    self.events.put(event)
                    if not self.silent:
                        self._handle(session, event)
                if not data:
                    return
        finally:
            sock.close()

    def _handle(self, s: _Session, event) -> None:
        conn = s.conn
        if isinstance(event, Subscribe):
            if self.resume and event.session_id in self.known_sessions:
                s.extranonce1 = self.known_sessions[event.session_id]
                s.session_id = event.session_id
            self.known_sessions[s.session_id] = s.extranonce1
            s.send(conn.reply_subscribe(event.request_id, s.extranonce1, 4, s.session_id))
            with self._lock:
                job = self.job
            s.send(conn.set_difficulty(self.difficulty) + conn.notify(job.to_params()))
        elif isinstance(event, Authorize):
            ok = self.password is None or event.password == self.password
            s.send(conn.reply_authorize(event.request_id, ok, "" if ok else "wrong password"))
        elif isinstance(event, Configure):
            s.send(conn.reply_configure(event.request_id, self.version_mask))
        elif isinstance(event, (ExtranonceSubscribe, SuggestDifficulty)):
            s.send(conn.reply_result(event.request_id, True))
        elif isinstance(event, Submit):
            verdict, code = self._check(s, event)
            reply = (
                conn.reply_submit(event.request_id)
                if code is None
                else conn.reply_error(event.request_id, code, verdict)
            )
            # A verdict counts only once the reply is on its way: a pool that dies between judging a
            # share and answering has told the miner nothing, so neither side may count it accepted.
            if not s.send(reply):
                verdict = f"{verdict}, reply lost"
            with self._lock:
                self.submits.append((time.monotonic(), event, verdict))
        elif isinstance(event, ProtocolViolation) and event.request_id is not None:
            s.send(conn.reply_error(event.request_id, event.code, event.reason))

    def _check(self, s: _Session, sub: Submit) -> tuple[str, int | None]:
        with self._lock:
            job = self.jobs.get(sub.job_id)
            difficulty = self.job_difficulty.get(sub.job_id, self.difficulty)
            key = (sub.job_id, s.extranonce1, sub.extranonce2, sub.ntime, sub.nonce, sub.version_bits)
            if job is None:
                return "stale", ERR_JOB_NOT_FOUND
            if key in self.seen:
                return "duplicate", ERR_DUPLICATE
            self.seen.add(key)
        version = job.version_int
        if sub.version_bits is not None:
            if sub.version_bits_int & ~s.conn.version_mask:
                return "version bits outside the mask", 20
            version = roll_version(version, s.conn.version_mask, sub.version_bits_int)
        header = job_header(job, s.extranonce1, sub.extranonce2_bytes, sub.ntime_int, version, sub.nonce_int)
        if hash_to_int(sha256d(header)) > difficulty_to_target(difficulty):
            return "low difficulty", ERR_LOW_DIFFICULTY
        return "accepted", None


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, written as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = os.path.join(tmp_path, "pool.crt"), os.path.join(tmp_path, "pool.key")
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_file, key_file


def server_tls(tmp_path) -> tuple[ssl.SSLContext, str]:
    cert_file, key_file = self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx, cert_file


# --- helpers ---------------------------------------------------------------------------------------------------------


class Recorder:
    """Collects a client's events for assertions."""

    def __init__(self) -> None:
        self.events: list = []
        self.cond = threading.Condition()

    def __call__(self, client, event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, kind, count: int = 1, timeout: float = TIMEOUT, where=lambda e: True):
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.of(kind, where)) >= count, timeout)
        assert ok, f"no {kind.__name__} within {timeout} s; got {[type(e).__name__ for e in self.events]}"
        return self.of(kind, where)[count - 1]

    def of(self, kind, where=lambda e: True) -> list:
        return [e for e in list(self.events) if isinstance(e, kind) and where(e)]


@pytest.fixture
def pool():
    p = ScriptedPool().start()
    yield p
    p.kill()


def make_client(url, rec, **kw) -> StratumClient:
    kw.setdefault("backoff_initial", 0.1)
    kw.setdefault("backoff_max", 0.5)
    return StratumClient(url, kw.pop("user", "alice.1"), kw.pop("password", "x"), rec, **kw)


@pytest.fixture
def clients():
    made: list[StratumClient] = []
    yield made
    for c in made:
        c.close()


def solve(job: StratumJob, extranonce1: bytes, extranonce2: bytes, difficulty: float, version=None) -> int:
    """A nonce meeting ``difficulty`` (tests keep it tiny so this is quick)."""
    target = difficulty_to_target(difficulty)
    header = job_header(job, extranonce1, extranonce2, version=version)
    for nonce in range(1 << 24):
        if hash_to_int(sha256d(header[:76] + nonce.to_bytes(4, "little"))) <= target:
            return nonce
    raise AssertionError("no nonce found")


# --- URL parsing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url,host,port,tls",
    [
        ("stratum+tcp://pool.example:3333", "pool.example", 3333, False),
        ("stratum+ssl://pool.example:443", "pool.example", 443, True),
        ("stratum+tcps://10.0.0.1:4444", "10.0.0.1", 4444, True),
        ("127.0.0.1:3333", "127.0.0.1", 3333, False),
        ("stratum+tcp://[::1]:3333", "::1", 3333, False),
        ("STRATUM+TCP://Pool.Example:1/", "pool.example", 1, False),
        ("stratum+tcp://pool.example:3333#xnsub", "pool.example", 3333, False),
    ],
)
def test_parse_pool_url(url, host, port, tls):
    parsed = parse_pool_url(url)
    assert (parsed.host, parsed.port, parsed.tls) == (host, port, tls)
    assert parsed.xnsub == url.endswith("#xnsub")


@pytest.mark.parametrize(
    "url,words",
    [
        ("", "empty"),
        ("http://pool:3333", "scheme"),
        ("stratum+tcp://pool", "no port"),
        ("stratum+tcp://pool:99999", "port"),
        ("stratum+tcp://:3333", "no host"),
        ("stratum+tcp://pool:3333/path", "path"),
        ("stratum+tcp://pool:abc", "port"),
        ("stratum+tcp://pool:3333#what", "#xnsub"),
    ],
)
def test_parse_pool_url_errors_are_one_line(url, words):
    with pytest.raises(ValueError) as info:
        parse_pool_url(url)
    assert words in str(info.value) and "\n" not in str(info.value)


# --- header construction from a notify ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    txids=st.lists(st.binary(min_size=32, max_size=32), max_size=6),
    prev=st.binary(min_size=32, max_size=32),
    version=st.integers(0, 2**32 - 1),
    nbits=st.builds(lambda e, m: e << 24 | m, st.integers(3, 0x1D), st.integers(1, 0x7FFFFF)),
    ntime=st.integers(0, 2**32 - 1),
    nonce=st.integers(0, 2**32 - 1),
    extranonce1=st.binary(min_size=0, max_size=8),
    extranonce2=st.binary(min_size=1, max_size=8),
    coinb1=st.binary(min_size=1, max_size=60),
    coinb2=st.binary(min_size=1, max_size=60),
    mask=st.sampled_from([0, 0x1FFFE000, 0x00FFF000]),
    bits=st.integers(0, 2**32 - 1),
)
def test_header_from_notify_matches_direct_construction(
    txids, prev, version, nbits, ntime, nonce, extranonce1, extranonce2, coinb1, coinb2, mask, bits
):
    """A pool's notify, through the wire core and the job code, rebuilds the header a node would."""
    from miner.block import merkle_branches
    from miner.work import internal_prevhash_to_stratum

    server, client = ServerConnection(), __import__("stratum.protocol", fromlist=["x"]).ClientConnection()
    params = [
        "j1",
        internal_prevhash_to_stratum(prev),
        coinb1.hex(),
        coinb2.hex(),
        [b.hex() for b in merkle_branches(txids)],
        f"{version:08x}",
        f"{nbits:08x}",
        f"{ntime:08x}",
        True,
    ]
    (event,) = client.receive_data(server.notify(params))
    assert isinstance(event, Notify)
    job = StratumJob.from_params(event.params)
    coinbase = coinb1 + extranonce1 + extranonce2 + coinb2
    rolled = (version & ~mask | bits & mask) & 0xFFFFFFFF if mask else version
    direct = BlockHeader(rolled, prev, merkle_root([sha256d(coinbase)] + txids), ntime, nbits, nonce).serialize()
    work = work_from_job(job, extranonce1, extranonce2, 1.0, version_mask=mask, version_bits=bits if mask else None)
    assert work.header_with_nonce(nonce) == direct
    assert job_header(job, extranonce1, extranonce2, version=rolled, nonce=nonce) == direct
    if mask:
        assert work.version_bits == rolled & mask and (work.version ^ version) & ~mask == 0


# --- the client against the scripted pool -------------------------------------------------------------------------


def test_handshake_job_and_accepted_share(pool, clients):
    rec = Recorder()
    client = make_client(pool.url, rec, extranonce_subscribe=True, suggest_difficulty=0.5)
    clients.append(client)
    client.start()
    ready = rec.wait(Ready)
    assert ready.extranonce1 == client.extranonce1 and ready.extranonce2_size == 4 and not ready.resumed
    notify = rec.wait(Notify)
    difficulty = rec.wait(SetDifficulty).difficulty
    job = StratumJob.from_params(notify.params)
    nonce = solve(job, ready.extranonce1, b"\x00\x00\x00\x07", difficulty)
    assert client.submit(job.job_id, "00000007", job.ntime, f"{nonce:08x}", context="mine")
    result = rec.wait(SubmitResult)
    assert result.accepted and result.context == "mine"
    # the same share again is the pool's duplicate (22); a bad nonce is low difficulty (23)
    client.submit(job.job_id, "00000007", job.ntime, f"{nonce:08x}", context="again")
    bad_nonce = next(
        n
        for n in range(1000)
        if n != nonce
        and hash_to_int(sha256d(job_header(job, ready.extranonce1, b"\x00\x00\x00\x07", nonce=n)))
        > difficulty_to_target(difficulty)
    )
    client.submit(job.job_id, "00000007", job.ntime, f"{bad_nonce:08x}", context="bad")
    assert rec.wait(SubmitResult, 2).code == ERR_DUPLICATE
    assert rec.wait(SubmitResult, 3).code == ERR_LOW_DIFFICULTY
    client.submit("nope", "00000007", job.ntime, f"{nonce:08x}", context="stale")
    assert rec.wait(SubmitResult, 4).stale
    kinds = [type(e) for e in list(pool.events.queue)]
    assert ExtranonceSubscribe in kinds and SuggestDifficulty in kinds


def test_version_rolling_negotiation_and_rolled_share(clients):
    pool = ScriptedPool(version_mask=0x00FFE000).start()
    try:
        rec = Recorder()
        client = make_client(pool.url, rec, version_rolling=True, version_mask=0x1FFFE000)
        clients.append(client)
        client.start()
        ready = rec.wait(Ready)
        assert ready.version_mask == 0x00FFE000 == client.version_mask
        job = StratumJob.from_params(rec.wait(Notify).params)
        bits = 0x00AB6000
        version = roll_version(job.version_int, ready.version_mask, bits)
        nonce = solve(job, ready.extranonce1, b"\x01\x00\x00\x00", pool.difficulty, version=version)
        client.submit(job.job_id, "01000000", job.ntime, f"{nonce:08x}", f"{bits:08x}")
        assert rec.wait(SubmitResult).accepted
        client.submit(job.job_id, "01000000", job.ntime, f"{nonce:08x}", "e0000000")  # outside the mask
        assert not rec.wait(SubmitResult, 2).accepted
    finally:
        pool.kill()


def test_refused_credentials(clients):
    pool = ScriptedPool(password="secret").start()
    try:
        rec = Recorder()
        client = make_client(pool.url, rec, password="wrong")
        clients.append(client)
        client.start()
        failed = rec.wait(AuthFailed)
        assert "wrong password" in failed.reason
        assert not client.ready and not client.submit("1", "00000000", "00000000", "00000000")
        assert rec.wait(Disconnected).retry_in > 0
    finally:
        pool.kill()


def test_connection_refused_backs_off_with_jitter(clients):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    rec = Recorder()
    client = make_client(f"stratum+tcp://127.0.0.1:{port}", rec, backoff_initial=0.05, backoff_max=0.4)
    clients.append(client)
    client.start()
    failures = [rec.wait(ConnectFailed, n) for n in range(1, 6)]
    assert all(f.reason == "connection refused" for f in failures)
    delays = [f.retry_in for f in failures]
    assert all(0.025 <= d <= 0.4 for d in delays)
    assert delays[4] > delays[0]  # exponential: 0.05 * 2^4 capped at 0.4, times a jitter of 0.5..1


def test_pool_restart_resumes_session_and_submits_again(pool, clients):
    rec = Recorder()
    client = make_client(pool.url, rec)
    clients.append(client)
    client.start()
    first = rec.wait(Ready)
    pool.kill()
    rec.wait(Disconnected)
    assert not client.ready and not client.submit("1", "00000000", "00000000", "00000000")
    pool.start()  # same port, same remembered sessions
    second = rec.wait(Ready, 2)
    assert second.resumed and second.extranonce1 == first.extranonce1
    assert pool.connections == 2


def test_restart_without_resume_gets_a_new_session(clients):
    pool = ScriptedPool(resume=False).start()
    try:
        rec = Recorder()
        client = make_client(pool.url, rec)
        clients.append(client)
        client.start()
        first = rec.wait(Ready)
        pool.kill()
        pool.start()
        second = rec.wait(Ready, 2)
        assert not second.resumed and second.extranonce1 != first.extranonce1
    finally:
        pool.kill()


def test_share_in_flight_when_the_pool_dies_is_reported_lost(clients):
    pool = ScriptedPool(silent=True)
    pool.start()
    try:
        rec = Recorder()
        # the silent pool never answers, so fake a ready state by hand-rolling the handshake replies
        client = make_client(pool.url, rec, silence_timeout=30)
        clients.append(client)
        client.start()
        sub = None
        deadline = time.monotonic() + TIMEOUT
        while sub is None and time.monotonic() < deadline:
            event = pool.events.get(timeout=TIMEOUT)
            sub = event if isinstance(event, Subscribe) else None
        session = pool.sessions[0]
        session.send(session.conn.reply_subscribe(sub.request_id, b"\x00\x00\x00\x01", 4))
        auth = pool.events.get(timeout=TIMEOUT)
        assert isinstance(auth, Authorize)
        session.send(session.conn.reply_authorize(auth.request_id, True))
        rec.wait(Ready)
        assert client.submit("1", "00000000", "00000000", "00000000", context="in flight")
        assert isinstance(pool.events.get(timeout=TIMEOUT), Submit)
        pool.kill()
        lost = rec.wait(SubmitLost)
        assert lost.context == "in flight" and lost.sent
    finally:
        pool.kill()


def test_silent_pool_counts_as_dead(clients):
    pool = ScriptedPool(silent=True).start()
    try:
        rec = Recorder()
        client = make_client(pool.url, rec, silence_timeout=0.5)
        clients.append(client)
        started = time.monotonic()
        client.start()
        gone = rec.wait(Disconnected)
        assert "silent" in gone.reason and time.monotonic() - started >= 0.5
        assert pool.wait_for(lambda: pool.connections >= 2)  # and it tries again
    finally:
        pool.kill()


def test_get_version_ping_and_unknown_requests_are_answered(pool, clients):
    rec = Recorder()
    client = make_client(pool.url, rec, user_agent="test-agent/9")
    clients.append(client)
    client.start()
    rec.wait(Ready)
    pool.broadcast(lambda conn: conn.get_version().data + conn.ping().data)
    pool.broadcast(lambda conn: b'{"id": 77, "method": "mining.nonsense", "params": []}\n')
    replies = []
    deadline = time.monotonic() + TIMEOUT
    while len(replies) < 2 and time.monotonic() < deadline:
        event = pool.events.get(timeout=TIMEOUT)
        if isinstance(event, Reply):
            replies.append(event)
    assert {(r.method, r.result) for r in replies} == {("client.get_version", "test-agent/9"), ("mining.ping", "pong")}
    # the pool's unknown request got an error reply, which it cannot match to anything it asked
    assert pool.wait_for(
        lambda: any(isinstance(e, ProtocolViolation) and "77" in e.reason for e in list(pool.events.queue))
    )


def test_malformed_pool_messages_do_not_break_the_connection(pool, clients):
    rec = Recorder()
    client = make_client(pool.url, rec)
    clients.append(client)
    client.start()
    rec.wait(Ready)
    pool.broadcast(
        lambda conn: b"garbage\n" + b"[" * 20000 + b"\n" + b'{"id":null,"method":"mining.notify","params":[1]}\n'
    )
    rec.wait(ProtocolViolation, 3)
    job = pool.new_job(clean=True)
    assert rec.wait(Notify, where=lambda e: e.job_id == job.job_id).clean_jobs
    assert client.ready


def test_client_reconnect_moves_to_another_port(pool, clients):
    other = ScriptedPool().start()
    try:
        rec = Recorder()
        client = make_client(pool.url, rec)
        clients.append(client)
        client.start()
        rec.wait(Ready)
        pool.broadcast(lambda conn: conn.reconnect("127.0.0.1", other.port, 0))
        rec.wait(Ready, 2)
        assert client.port == other.port and other.connections == 1
        pool.broadcast(lambda conn: conn.reconnect("evil.example", 1, 0))  # another host: ignored
        assert client.host == "127.0.0.1"
    finally:
        other.kill()


def test_tls_verification_on_by_default(tmp_path, clients):
    ctx, cert_file = server_tls(tmp_path)
    pool = ScriptedPool(tls=ctx).start()
    try:
        rec = Recorder()
        client = make_client(pool.url, rec)
        clients.append(client)
        client.start()
        failed = rec.wait(ConnectFailed)
        assert "certificate verification failed" in failed.reason and "--no-verify-tls" in failed.reason
        client.stop()
        for options in ({"ca_file": cert_file}, {"verify_tls": False}):
            rec = Recorder()
            client = make_client(pool.url.replace("+ssl", "+tcps"), rec, **options)
            clients.append(client)
            client.start()
            ready = rec.wait(Ready)
            job = StratumJob.from_params(rec.wait(Notify).params)
            nonce = solve(job, ready.extranonce1, b"\x00" * 4, pool.difficulty)
            client.submit(job.job_id, "00000000", job.ntime, f"{nonce:08x}")
            result = rec.wait(SubmitResult)
            assert result.accepted or result.code == ERR_DUPLICATE
            client.stop()
    finally:
        pool.kill()


# --- a server that is not the pool the URL promised --------------------------------------------------------------


class OneShotServer:
    """A loopback listener that runs ``reply(conn)`` on each connection, in a thread, then closes it."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                try:
                    self.reply(conn)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def http_reply(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def close_at_once(conn: socket.socket) -> None:
    pass


def test_tls_pool_given_as_stratum_tcp_is_named_tls(tmp_path, clients):
    ctx, _ = server_tls(tmp_path)
    pool = ScriptedPool(tls=ctx).start()
    try:
        rec = Recorder()
        client = make_client(f"stratum+tcp://127.0.0.1:{pool.port}", rec)
        clients.append(client)
        client.start()
        failed = rec.wait(ConnectFailed)
        assert f"this looks like TLS; try stratum+ssl://127.0.0.1:{pool.port}" in failed.reason
        assert client.last_error == failed.reason
    finally:
        pool.kill()


def test_plain_pool_given_as_stratum_ssl_is_named_plain_without_waiting_out_the_timeout(clients):
    pool = ScriptedPool().start()
    try:
        rec = Recorder()
        client = make_client(pool.url.replace("+tcp", "+ssl"), rec, connect_timeout=60)
        clients.append(client)
        client.start()
        failed = rec.wait(ConnectFailed, timeout=30)  # well inside the 60 s handshake timeout
        assert "plain Stratum pool" in failed.reason and f"try stratum+tcp://127.0.0.1:{pool.port}" in failed.reason
    finally:
        pool.kill()


@pytest.mark.parametrize("scheme", ["stratum+tcp", "stratum+ssl"])
def test_http_server_is_named_http(scheme, clients):
    server = OneShotServer(http_reply)
    try:
        rec = Recorder()
        client = make_client(f"{scheme}://127.0.0.1:{server.port}", rec)
        clients.append(client)
        client.start()
        failed = rec.wait(ConnectFailed)
        assert "this looks like an HTTP server" in failed.reason and "400 Bad Request" in failed.reason
        assert not rec.of(ProtocolViolation)  # the HTTP lines are not reported one by one as bad Stratum
    finally:
        server.close()


def test_server_that_closes_at_once_is_said_so_and_retried(clients):
    server = OneShotServer(close_at_once)
    try:
        rec = Recorder()
        client = make_client(f"stratum+tcp://127.0.0.1:{server.port}", rec)
        clients.append(client)
        client.start()
        gone = rec.wait(Disconnected, 2)
        assert gone.reason == "the server closed the connection before answering"
        assert gone.retry_in > 0 and server.connections >= 2
    finally:
        server.close()
