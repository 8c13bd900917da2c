"""The V2 server transport and client over loopback sockets, with a small pool logic defined here.

The pool logic is deliberately tiny (one fixed job, a fixed target); what is under test is the transport: handshake,
setup, channels, shares answered, and that a connection breaking the protocol is closed with a clear reason while
every other miner keeps being served.
"""

import asyncio
import os
import queue
import resource
import socket
import stat
import threading

import pytest

from stratum.v2 import jobs, noise
from stratum.v2 import messages as m
from stratum.v2.client import (
    ChannelReady,
    ConnectFailed,
    Disconnected,
    SubmitLost,
    V2Client,
    parse_v2_url,
)
from stratum.v2.framing import frame
from stratum.v2.protocol import EXTENDED, STANDARD, ClientConnection, HandshakeComplete, ShareRejected, SharesAccepted
from stratum.v2.server import (
    ExtendedGrant,
    Refused,
    ServerIdentity,
    StandardGrant,
    V2Server,
    V2ServerThread,
    load_or_create_identity,
)

WAIT = 20.0
SHARE_TARGET = 1 << 248  # one hash in 256
NBITS = 0x207FFFFF  # regtest: every share is a block
PREV_HASH = bytes(range(32))
NTIME = 1_700_000_000
VERSION = 0x20000000
# coinbase halves around an 8-byte extranonce area (4 prefix + 4 miner bytes); the content is arbitrary
CB_PREFIX = bytes.fromhex("01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0c")
CB_SUFFIX = bytes.fromhex("ffffffff0100f2052a010000000000000000")


class ToyPool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted = self.rejected = self.blocks = 0
        self.seen: set[bytes] = set()
        self.sessions = 0
        self.next_prefix = 0

    def open_session(self, outbox, peer):
        with self.lock:
            self.sessions += 1
        return ToySession(self, outbox)

    def prefix(self) -> bytes:
        with self.lock:
            self.next_prefix += 1
            return self.next_prefix.to_bytes(4, "big")


class ToySession:
    def __init__(self, pool: ToyPool, outbox) -> None:
        self.pool, self.outbox = pool, outbox
        self.jobs = {}

    def setup(self, request):
        if request.protocol != m.PROTOCOL_MINING:
            raise Refused(m.ERR_UNSUPPORTED_PROTOCOL)
        return 0

    def open_standard_channel(self, request):
        if request.user_identity == "nobody":
            raise Refused(m.ERR_UNKNOWN_USER)
        return StandardGrant(SHARE_TARGET, self.pool.prefix())

    def open_extended_channel(self, request):
        return ExtendedGrant(SHARE_TARGET, 4, self.pool.prefix())

    def channel_opened(self, channel):
        extended = m.NewExtendedMiningJob(channel.channel_id, 1, None, VERSION, True, [bytes(32)], CB_PREFIX, CB_SUFFIX)
        self.jobs[channel.channel_id] = extended
        if channel.kind == STANDARD:
            self.outbox.send(jobs.standard_job(extended, channel.channel_id, channel.extranonce_prefix + bytes(4)))
        else:
            self.outbox.send(extended)
        self.outbox.send(m.SetNewPrevHash(channel.channel_id, 1, PREV_HASH, NTIME, NBITS))

    def _check(self, channel, share, extranonce):
        job = self.jobs[channel.channel_id]
        if share.job_id != job.job_id:
            raise Refused(m.ERR_INVALID_JOB_ID)
        root = jobs.extended_merkle_root(job, channel.extranonce_prefix, extranonce)
        header = jobs.header_le(share.version, PREV_HASH, root, share.ntime, NBITS, share.nonce)
        if not jobs.meets_target(header, channel.target):
            with self.pool.lock:
                self.pool.rejected += 1
            raise Refused(m.ERR_DIFFICULTY_TOO_LOW)
        with self.pool.lock:
            if header in self.pool.seen:
                self.pool.rejected += 1
                raise Refused(m.ERR_DUPLICATE_SHARE)
            self.pool.seen.add(header)
            self.pool.accepted += 1
            if jobs.meets_target(header, jobs.nbits_to_target(NBITS)):
                self.pool.blocks += 1
        return 1

    def submit_standard(self, channel, share):
        return self._check(channel, share, bytes(4))

    def submit_extended(self, channel, share):
        return self._check(channel, share, share.extranonce)

    def update_channel(self, channel, update):
        pass

    def channel_closed(self, channel_id):
        pass

    def violation(self, reason, fatal):
        pass

    def tick(self):
        pass

    def close(self):
        pass


@pytest.fixture
def identity():
    return ServerIdentity(b"\x41" * 32, b"\x42" * 32)


@pytest.fixture
def pool(identity):
    toy = ToyPool()
    thread = V2ServerThread(V2Server(toy, identity, "127.0.0.1", 0, handshake_timeout=10.0))
    thread.start()
    toy.thread, toy.identity = thread, identity
    toy.url = f"stratum2+tcp://127.0.0.1:{thread.port}/{identity.authority_key_text}"
    yield toy
    thread.stop()


class Miner:
    """A V2Client plus the hashing a miner does: find a nonce under the target, re-check with hashlib, submit."""

    def __init__(self, url, channel=STANDARD, user="worker.1") -> None:
        self.events: queue.Queue = queue.Queue()
        self.client = V2Client(url, user, self.events.put, channel=channel, nominal_hash_rate=1e6, backoff=(0.05, 0.2))

    def __enter__(self):
        self.client.start()
        return self

    def __exit__(self, *exc):
        self.client.stop()

    def wait_for(self, *kinds):
        while True:
            event = self.events.get(timeout=WAIT)
            if isinstance(event, kinds):
                return event

    def work(self):
        """The channel, job and prev hash, waited for once and then remembered."""
        if not hasattr(self, "channel"):
            self.channel = self.wait_for(ChannelReady).channel
            self.job = self.wait_for(m.NewMiningJob, m.NewExtendedMiningJob)
            self.prev = self.wait_for(m.SetNewPrevHash)
        return self.channel, self.job, self.prev

    def mine_one(self, after_nonce=0):
        channel, job, prev = self.work()
        extranonce = b"\x00\x00\x00\x07" if channel.kind == EXTENDED else b""
        if isinstance(job, m.NewMiningJob):
            root = job.merkle_root
        else:
            root = jobs.extended_merkle_root(job, channel.extranonce_prefix, extranonce)
        for nonce in range(after_nonce, after_nonce + (1 << 16)):
            header = jobs.header_le(job.version, prev.prev_hash, root, prev.min_ntime, prev.nbits, nonce)
            if jobs.meets_target(header, channel.target):  # the hashlib re-check before every submit
                self.client.submit(job.job_id, nonce, prev.min_ntime, job.version, extranonce, context=nonce)
                return nonce
        raise AssertionError("no share in 65536 nonces at 1/256 odds")


def test_a_v2_url_names_host_port_and_authority_key(identity):
    url = parse_v2_url(f"stratum2+tcp://pool.example:3336/{identity.authority_key_text}")
    assert (url.host, url.port, url.authority_key) == ("pool.example", 3336, identity.authority_key)
    for bad, complaint in [
        ("stratum+tcp://pool.example:3336/x", "starts with stratum2"),
        ("stratum2+tcp://pool.example/KEY", "HOST:PORT"),
        ("stratum2+tcp://pool.example:3336", "authority key goes after the port"),
        ("stratum2+tcp://pool.example:3336/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXj", "checksum"),
    ]:
        with pytest.raises(ValueError, match=complaint):
            parse_v2_url(bad)


@pytest.mark.parametrize("channel", [STANDARD, EXTENDED])
def test_a_miner_mines_on_the_pool_and_both_sides_count_the_same(pool, channel):
    with Miner(pool.url, channel=channel) as miner:
        nonce = miner.mine_one()
        accepted = miner.wait_for(SharesAccepted)
        assert accepted.contexts == [nonce]
        # the same share again is a duplicate
        miner.client.submit(*_resubmit(miner, nonce))
        rejected = miner.wait_for(ShareRejected)
        assert rejected.message.error_code == m.ERR_DUPLICATE_SHARE and rejected.context == "again"
    assert (pool.accepted, pool.rejected, pool.blocks) == (1, 1, 1)


def _resubmit(miner, nonce):
    channel = miner.client.channel
    extranonce = b"\x00\x00\x00\x07" if channel.kind == EXTENDED else b""
    return 1, nonce, NTIME, VERSION, extranonce, "again"


def test_a_share_over_the_target_is_refused_with_the_spec_code(pool):
    with Miner(pool.url) as miner:
        ready, job, _prev = miner.work()
        nonce = next(
            n
            for n in range(1 << 16)
            if not jobs.meets_target(jobs.header_le(VERSION, PREV_HASH, job.merkle_root, NTIME, NBITS, n), ready.target)
        )
        miner.client.submit(1, nonce, NTIME, VERSION, context="weak")
        rejected = miner.wait_for(ShareRejected)
        assert (rejected.message.error_code, rejected.context) == (m.ERR_DIFFICULTY_TOO_LOW, "weak")


def test_a_refused_channel_ends_the_session_with_the_pools_reason(pool):
    with Miner(pool.url, user="nobody") as miner:
        assert "unknown-user" in miner.wait_for(Disconnected).reason


def test_a_wrong_authority_key_is_refused_by_the_miner(pool):
    other = noise.encode_authority_key(noise.x_only_public_key(b"\x07" * 32))
    with Miner(pool.url.rsplit("/", 1)[0] + "/" + other) as miner:
        assert "not signed by the expected authority" in miner.wait_for(Disconnected).reason
    with Miner(pool.url) as miner:  # and the pool still serves everyone else
        miner.mine_one()
        miner.wait_for(SharesAccepted)


def test_an_expired_certificate_is_refused_by_the_miner():
    stale = ServerIdentity(b"\x41" * 32, b"\x42" * 32, lifetime=3600, renew_before=60, clock=lambda: 1_000_000_000)
    thread = V2ServerThread(V2Server(ToyPool(), stale, "127.0.0.1", 0))
    thread.start()
    try:
        url = f"stratum2+tcp://127.0.0.1:{thread.port}/{stale.authority_key_text}"
        with Miner(url) as miner:
            assert "expired" in miner.wait_for(Disconnected).reason
    finally:
        thread.stop()


def test_a_miner_reconnects_after_the_pool_goes_away_and_reports_what_it_lost(identity):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"stratum2+tcp://127.0.0.1:{port}/{identity.authority_key_text}"
    with Miner(url) as miner:
        miner.client.submit(1, 1, NTIME, VERSION, context="queued")
        lost = miner.wait_for(SubmitLost)
        assert (lost.context, lost.sent) == ("queued", False)
        assert isinstance(miner.wait_for(ConnectFailed), ConnectFailed)
        toy = ToyPool()
        thread = V2ServerThread(V2Server(toy, identity, "127.0.0.1", port))
        thread.start()
        try:
            miner.mine_one()
            miner.wait_for(SharesAccepted)
        finally:
            thread.stop()


# --- a misbehaving connection is closed; the pool keeps serving ------------------------------------------------------


def _raw_session(pool, authority_key=None):
    """A hand-driven client over a blocking socket, up to SetupConnection.Success."""
    conn = ClientConnection(authority_key or pool.identity.authority_key)
    sock = socket.create_connection(("127.0.0.1", pool.thread.port), timeout=WAIT)
    sock.sendall(conn.initiate())
    events = []
    while not any(isinstance(e, HandshakeComplete) for e in events):
        events += conn.receive_data(sock.recv(4096))
    sock.sendall(conn.setup_connection("127.0.0.1", pool.thread.port))
    while not any(isinstance(e, m.SetupConnectionSuccess) for e in events):
        events += conn.receive_data(sock.recv(4096))
    return conn, sock


def _closed_by_pool(sock) -> bool:
    while True:
        try:
            if sock.recv(4096) == b"":
                return True
        except ConnectionResetError:
            return True


def _closed_reasons(pool):
    return pool.thread.call(lambda: dict(pool.thread.server.closed_for))


def _tampered(conn) -> bytes:
    sealed = bytearray(conn.send(m.CloseChannel(1, "x")))
    sealed[0] ^= 1
    return bytes(sealed)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_tampered, "MAC"),
        (lambda c: c.transport.encrypt_frame(frame(0x7E, b"\x00")), "0x7e"),
        (lambda c: c.transport.encrypt_frame(frame(0x1F, b"\x00" * 300_000, channel_msg=True))[:22], "300000"),
        (lambda c: c.transport.encrypt_frame(frame(0x18, m.CloseChannel(1, "x").encode() + b"\x00")), "left over"),
    ],
    ids=["tampered ciphertext", "unknown message type", "frame over the limit", "frame longer than it says"],
)
def test_a_protocol_breaking_connection_is_closed_with_its_reason_and_the_others_keep_mining(pool, make, reason):
    with Miner(pool.url) as bystander:
        bystander.mine_one()
        bystander.wait_for(SharesAccepted)
        conn, sock = _raw_session(pool)
        with sock:
            sock.sendall(make(conn))
            assert _closed_by_pool(sock)
        assert any(reason in key for key in _closed_reasons(pool)), _closed_reasons(pool)
        bystander.mine_one(after_nonce=1 << 16)
        bystander.wait_for(SharesAccepted)
    assert pool.accepted == 2


def test_a_share_for_a_channel_never_opened_gets_the_spec_error_and_the_connection_lives(pool):
    conn, sock = _raw_session(pool)
    with sock:
        for sequence in (3, 4):
            share = m.SubmitSharesStandard(42, sequence, 1, 1, NTIME, VERSION)
            sock.sendall(conn.transport.encrypt_frame(share.to_frame()))
            events = []
            while not events:
                events = conn.receive_data(sock.recv(4096))
            # the client core never opened channel 42 either, so it reports the answer rather than pairing it
            [answer] = events
            assert answer.message == m.SubmitSharesError(42, sequence, m.ERR_INVALID_CHANNEL_ID)


# --- keys ------------------------------------------------------------------------------------------------------------


def test_the_key_file_is_created_owner_only_and_loads_back_the_same_identity(tmp_path):
    path = tmp_path / "sv2.json"
    first, created = load_or_create_identity(path)
    assert created and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, created = load_or_create_identity(path)
    assert not created and again.authority_key_text == first.authority_key_text
    assert again.static_key == first.static_key
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_identity(path)


def test_certificates_are_renewed_before_they_expire():
    now = [1_800_000_000]
    ident = ServerIdentity(b"\x41" * 32, b"\x42" * 32, lifetime=3600, renew_before=600, clock=lambda: now[0])
    first = ident.certificate()
    first.check(ident.static_key, ident.authority_key, now[0])
    now[0] += 3600 - 601
    assert ident.certificate() is first
    now[0] += 2
    second = ident.certificate()
    assert second is not first and second.not_valid_after > first.not_valid_after
    second.check(ident.static_key, ident.authority_key, first.not_valid_after + 60)


# --- load ------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_thousand_concurrent_v2_connections_complete_the_handshake_and_get_a_job(pool):
    count = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 256  # both ends of every connection live in this process
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files; the hard limit here is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))

    async def one(all_ready: asyncio.Event, release: asyncio.Event, done: list) -> None:
        conn = ClientConnection(pool.identity.authority_key)
        reader, writer = await asyncio.open_connection("127.0.0.1", pool.thread.port)
        try:
            writer.write(conn.initiate())
            got_job = False
            while not got_job:
                data = await reader.read(65536)
                assert data, "the pool closed a healthy connection"
                for event in conn.receive_data(data):
                    if isinstance(event, HandshakeComplete):
                        writer.write(conn.setup_connection("127.0.0.1", pool.thread.port))
                    elif isinstance(event, m.SetupConnectionSuccess):
                        writer.write(conn.open_standard_channel("load", 1e6).data)
                    elif isinstance(event, m.NewMiningJob):
                        got_job = True
            done.append(1)
            if len(done) == count:
                all_ready.set()
            await release.wait()  # hold every connection open until all have their job
        finally:
            writer.close()

    async def main() -> int:
        all_ready, release, done = asyncio.Event(), asyncio.Event(), []
        tasks = [asyncio.create_task(one(all_ready, release, done)) for _ in range(count)]
        ready = asyncio.create_task(all_ready.wait())
        finished, _ = await asyncio.wait([ready, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            task.result()  # a client that ended before all were ready re-raises here
        concurrent = pool.thread.call(lambda: pool.thread.server.connections)
        release.set()
        await asyncio.gather(*tasks)
        return concurrent

    try:
        assert asyncio.run(asyncio.wait_for(main(), 240)) == count
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert pool.sessions == count
