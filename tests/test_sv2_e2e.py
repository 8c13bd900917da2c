"""Stratum V2 end to end: `miner mine` on `miner pool --sv2-listen`, over loopback, real hashing, real verdicts.

The pool is the project's own (EmbeddedPool's Pool with a V2Listener beside its V1 listener, or the
`miner pool` command itself); the miner is the Miner with its V2 adapter, in process or as the `miner
mine` command. One CPU thread; share difficulties are tiny so shares come several times a second.
At regtest nBits every share is also a block, which extends the embedded chain and replaces every job.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from commands import MINER, backend
from test_mine_e2e import free_port, last_json, mine_until, run_mine

from miner.block import difficulty_to_target
from miner.cli import main
from miner.mining import Miner, PoolConfig
from miner.pool import EmbeddedChain, EmbeddedPool
from miner.pool_v2 import V2Listener
from miner.stats import Stats
from stratum.v2 import messages as m
from stratum.v2.noise import encode_authority_key, x_only_public_key
from stratum.v2.protocol import ClientConnection, HandshakeComplete, ShareRejected
from stratum.v2.server import ServerIdentity

BACKEND = backend()
DIFFICULTY = 0.001 if BACKEND == "cpu" else 2.0**-24  # ~2^22 hashes a share on numba, far fewer on pure Python
HARD_NBITS = 0x1D00FFFF  # difficulty 1: no share here is ever a block, so jobs stay valid
IDENTITY = ServerIdentity(b"\x61" * 32, b"\x62" * 32)
OTHER_KEY = encode_authority_key(x_only_public_key(b"\x63" * 32))
ESP_CAPTURE = os.path.join(os.path.dirname(__file__), "data", "sv2", "esp-miner-client-session.json")


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class V2Pool:
    """An EmbeddedPool (V1 listener included) with a V2 listener on the same Pool, and the pool's log lines."""

    def __init__(self, v2_port: int = 0, start_v2: bool = True, **kw) -> None:
        self.logs: list[str] = []
        kw.setdefault("difficulty", DIFFICULTY)
        kw.setdefault("vardiff", False)
        self.embedded = EmbeddedPool(on_event=self.logs.append, **kw)
        self.embedded.start()
        self.v2_port = v2_port or free_port()
        self.listener: V2Listener | None = None
        if start_v2:
            self.start_v2()

    @property
    def pool(self):
        return self.embedded.pool

    @property
    def url(self) -> str:
        return f"stratum2+tcp://127.0.0.1:{self.v2_port}/{IDENTITY.authority_key_text}"

    def start_v2(self) -> None:
        self.listener = V2Listener(self.pool, IDENTITY, "127.0.0.1", self.v2_port)
        self.listener.start()

    def stop_v2(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None

    def summary(self) -> dict:
        return self.embedded.summary()

    def logged(self, text: str) -> int:
        return sum(text in line for line in list(self.logs))

    def close(self) -> None:
        self.stop_v2()
        self.embedded.stop()


def make_miner(urls: list[str], **kw) -> tuple[Miner, list]:
    """A Miner over the chosen backend; ``found`` lists (time, share) for every share the engine verified."""
    from miner.engine import Engine

    stats = Stats()
    engine = Engine.for_backend(BACKEND, threads=1, stats=stats)
    kw.setdefault("backoff_initial", 0.2)
    kw.setdefault("backoff_max", 0.5)
    logs: list[str] = kw.pop("logs", [])
    miner = Miner([PoolConfig(u, "alice.1") for u in urls], engine, stats, log=logs.append, **kw)
    found: list = []
    submit = engine.on_share

    def on_share(share):
        found.append((time.monotonic(), share))
        submit(share)

    engine.on_share = on_share
    return miner, found


# --- through the command line ------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["standard", "extended"])
def test_miner_command_mines_blocks_over_v2_and_both_sides_count_the_same(channel):
    pool = V2Pool()
    try:
        args = ["-o", pool.url, "-u", "alice.1", "--sv2-channel", channel, "--json"]
        code, out, err = mine_until(lambda: pool.summary()["accepted"] >= 2, *args)
        summary = pool.summary()
    finally:
        pool.close()
    assert code == 0, err
    result = last_json(out)
    assert result["accepted"] >= 2 and result["rejected"] == 0 and result["hw_errors"] == 0
    # a share can race the block before it (every share is one here): stale on the miner, refused by the pool
    assert summary["accepted"] == result["accepted"] and summary["rejected"] <= result["stale"]
    assert summary["blocks"] == result["blocks"] == result["accepted"]  # regtest nBits: each share a block
    assert len(pool.embedded.job_source.blocks) == summary["blocks"]  # the embedded chain grew by them
    assert pool.logged(f"V2 {channel} channel 1 for 'alice.1'") == 1
    assert "Traceback" not in err


def test_pool_command_serves_v2_beside_v1_and_the_miner_command_mines_on_it(tmp_path):
    key_file = tmp_path / "sv2-keys.json"
    pool = subprocess.Popen(
        [*MINER, "pool", "--listen", "0", "--sv2-listen", "0", "--sv2-key-file", str(key_file)]
        + ["--difficulty", str(DIFFICULTY), "--no-vardiff", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(pool.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        assert wait_for(lambda: any("Stratum V2 authority key" in line for line in err), 60), "".join(err)
        url = re.search(r"Stratum V2 listening on (\S+)", "".join(err)).group(1)
        key = re.search(r"Stratum V2 authority key (\S+) \(generated and written to ", "".join(err)).group(1)
        assert url.endswith("/" + key) and "listening on stratum+tcp://127.0.0.1:" in "".join(err)
        assert key_file.stat().st_mode & 0o777 == 0o600

        def accepted() -> int:
            return sum("share accepted from 'bob'" in line for line in list(err))

        code, out, miner_err = mine_until(lambda: accepted() >= 2, "-o", url, "-u", "bob", "--json")
        pool.send_signal(signal.SIGTERM)
        pool_out, _ = pool.communicate(timeout=30)
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
    reader.join(10)
    assert code == 0, miner_err
    result, summary = last_json(out), last_json(pool_out)
    assert pool_out.strip().count("\n") == 0  # stdout holds the summary only; the key went to the log
    assert summary["accepted"] == result["accepted"] >= 2 and summary["blocks"] >= 1
    assert summary["rejected"] <= result["stale"] and result["rejected"] == 0
    assert "Traceback" not in "".join(err) + miner_err


def test_a_wrong_authority_key_ends_the_run_in_one_line_and_the_pool_keeps_serving():
    pool = V2Pool()
    good, _ = make_miner([pool.url])
    try:
        good.start()
        assert wait_for(lambda: good.stats.snapshot()["accepted"] >= 1)
        wrong = f"stratum2+tcp://127.0.0.1:{pool.v2_port}/{OTHER_KEY}"
        code, _, err = run_mine("-o", wrong, "--duration", "30")
        served = good.stats.snapshot()["accepted"]
        assert wait_for(lambda: good.stats.snapshot()["accepted"] > served)  # the honest miner never noticed
    finally:
        good.stop()
        pool.close()
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err
    assert lines[-1] == (
        f"miner: error: no pool could be used ({wrong}: handshake failed: "
        "pool certificate is not signed by the expected authority key)"
    )
    assert sum(line.startswith("miner: error:") for line in lines) == 1


def test_a_bad_v2_url_is_a_one_line_usage_error():
    code, _, err = run_mine("-o", "stratum2+tcp://127.0.0.1:3336", "--duration", "1")
    assert code == 2 and err.strip().startswith("miner: error: stratum2+tcp://127.0.0.1:3336: the pool's authority")
    code, _, err = run_mine("-o", "stratum2+tcp://127.0.0.1:3336/notakey", "--duration", "1")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run_mine("-o", "stratum2+tcp://127.0.0.1:3336/x", "--sv2-channel", "group", "--duration", "1")
    assert code == 2 and "--sv2-channel" in err


def test_explain_sv2_walks_the_esp_miner_recording_and_refuses_a_broken_capture_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["explain", "sv2", ESP_CAPTURE])
    assert result.exit_code == 0, result.output
    assert "recomputed from the client's secret and aux randomness: identical" in result.stdout
    assert "OpenStandardMiningChannel.Success" in result.stdout and "SubmitShares.Success" in result.stdout
    as_json = json.loads(CliRunner().invoke(main, ["explain", "sv2", ESP_CAPTURE, "--json"]).stdout)
    assert as_json["lines"] == result.stdout.splitlines()
    capture = json.loads(open(ESP_CAPTURE).read())
    capture["wire"][1][1] = capture["wire"][1][1][:-2] + ("00" if capture["wire"][1][1][-2:] != "00" else "01")
    broken = tmp_path / "tampered.json"
    broken.write_text(json.dumps(capture))
    for path in (broken, tmp_path / "not-json.json"):
        if not path.exists():
            path.write_text("{not json")
        result = CliRunner().invoke(main, ["explain", "sv2", str(path)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.stderr.strip().startswith(f"miner: error: {path}: ") and len(result.stderr.splitlines()) == 1


# --- in process -------------------------------------------------------------------------------------------------


def test_failover_between_a_v1_and_a_v2_pool_and_back():
    v1 = V2Pool(start_v2=False)  # only its V1 listener
    v2 = V2Pool(start_v2=False)  # its V2 listener comes up later, on this port
    miner, _ = make_miner([v2.url, v1.embedded.url])
    try:
        miner.start()
        assert wait_for(lambda: v1.summary()["accepted"] >= 2)  # the V2 pool is down: mining on the V1 one
        assert miner.current_pool() == 1
        v2.start_v2()
        assert wait_for(lambda: v2.summary()["accepted"] >= 2)  # back on the first choice once it answers
        assert miner.current_pool() == 0
        on_v1 = v1.summary()["accepted"]
        assert wait_for(lambda: v2.summary()["accepted"] >= 4)
        assert v1.summary()["accepted"] <= on_v1 + 1  # at most one share in flight at the switch
        v2.stop_v2()
        assert wait_for(lambda: miner.current_pool() == 1 and v1.summary()["accepted"] >= on_v1 + 2)
    finally:
        miner.stop()
        v1.close()
        v2.close()
    first, second = miner.stats.pools
    assert second.shares.accepted == v1.summary()["accepted"] and second.shares.rejected == 0
    # a share the V2 pool took as its listener went away may have lost its answer: stale here, never rejected
    assert first.shares.accepted <= v2.summary()["accepted"] <= first.shares.accepted + first.shares.stale
    assert first.shares.rejected == 0


def test_a_v2_pool_restart_is_reconnected_and_nothing_is_sent_to_the_new_channel_for_an_old_job():
    pool = V2Pool()
    miner, found = make_miner([pool.url])
    try:
        miner.start()
        assert wait_for(lambda: pool.summary()["accepted"] >= 2)
        pool.stop_v2()
        down = time.monotonic()
        assert wait_for(lambda: sum(1 for t, _ in found if t > down + 0.2) >= 1)  # it keeps scanning meanwhile
        pool.start_v2()
        before = pool.summary()["accepted"]
        assert wait_for(lambda: pool.summary()["accepted"] >= before + 2)
    finally:
        miner.stop()
        pool.close()
    snap = miner.stats.snapshot()
    assert snap["accepted"] + snap["rejected"] + snap["stale"] == len(found)  # every share has its verdict
    assert snap["rejected"] == 0 and pool.summary()["rejected"] <= snap["stale"]
    assert snap["accepted"] <= pool.summary()["accepted"] <= snap["accepted"] + snap["stale"]
    assert pool.summary()["connections"] == 2


def test_a_reconnect_message_moves_the_miner_to_the_pools_other_listener():
    pool = V2Pool()
    other = V2Listener(pool.pool, IDENTITY)  # same authority key, as sv2-spec 3.3 requires of a Reconnect
    other.start()
    miner, _ = make_miner([pool.url])
    try:
        miner.start()
        assert wait_for(lambda: pool.summary()["accepted"] >= 1)
        [session] = list(pool.pool._sessions)
        session.outbox.send(m.Reconnect("", other.port))
        assert wait_for(lambda: other.server.connections == 1)
        moved = pool.summary()["accepted"]
        assert wait_for(lambda: pool.summary()["accepted"] >= moved + 1)
        assert wait_for(lambda: pool.listener.server.connections == 0)  # it left the first listener
    finally:
        miner.stop()
        other.stop()
        pool.close()
    assert miner.stats.snapshot()["rejected"] == 0


@pytest.mark.parametrize("channel", ["standard", "extended"])
def test_vardiff_retargets_a_v2_channel_with_set_target_and_shares_keep_their_jobs_difficulty(channel):
    start = DIFFICULTY / 20
    chain = EmbeddedChain(nbits=HARD_NBITS)
    pool = V2Pool(job_source=chain, difficulty=start, vardiff=True, share_interval=1.0)
    miner, found = make_miner([pool.url], sv2_channel=channel)
    try:
        miner.start()
        assert wait_for(lambda: pool.logged("vardiff") >= 1)
        assert wait_for(lambda: miner.stats.pools[0].difficulty > 2 * start)  # SetTarget, then a job under it
        settled = pool.summary()["accepted"]
        assert wait_for(lambda: pool.summary()["accepted"] >= settled + 2)
    finally:
        miner.stop()
        pool.close()
    snap, summary = miner.stats.snapshot(), pool.summary()
    # shares found on a job sent before a SetTarget were checked at that job's target: none refused
    assert summary["rejected"] == snap["rejected"] == 0
    assert summary["accepted"] == snap["accepted"] == len(found) - snap["stale"]


def test_the_pool_answers_channel_limits_and_unknown_jobs_as_the_spec_says():
    pool = V2Pool()
    sock = socket.create_connection(("127.0.0.1", pool.v2_port), timeout=10)
    conn = ClientConnection(IDENTITY.authority_key)
    events: list = []  # what arrived and was not asked for yet: one read may bring several messages

    def until(kind):
        while True:
            for i, event in enumerate(events):
                if isinstance(event, kind):
                    del events[: i + 1]
                    return event
            data = sock.recv(65536)
            assert data, "the pool closed the connection"
            events.extend(conn.receive_data(data))

    try:
        sock.sendall(conn.initiate())
        until(HandshakeComplete)
        sock.sendall(conn.setup_connection("127.0.0.1", pool.v2_port, flags=m.REQUIRES_WORK_SELECTION))
        assert until(m.SetupConnectionError).error_code == m.ERR_UNSUPPORTED_FEATURE_FLAGS
        sock.close()

        sock = socket.create_connection(("127.0.0.1", pool.v2_port), timeout=10)
        conn = ClientConnection(IDENTITY.authority_key)
        events.clear()
        sock.sendall(conn.initiate())
        until(HandshakeComplete)
        sock.sendall(conn.setup_connection("127.0.0.1", pool.v2_port))
        until(m.SetupConnectionSuccess)
        max_target = difficulty_to_target(0.5)  # harder than the pool's own start
        sock.sendall(conn.open_extended_channel("carol", 0.0, 9, max_target).data)
        assert until(m.OpenMiningChannelError).error_code == m.ERR_UNSUPPORTED_EXTRANONCE_SIZE
        sock.sendall(conn.open_standard_channel("carol", 0.0, max_target).data)
        opened = until(m.OpenStandardMiningChannelSuccess)
        assert opened.target <= max_target and len(opened.extranonce_prefix) == 8
        first = until(m.NewMiningJob)
        prev = until(m.SetNewPrevHash)
        assert (
            first.is_future
            and prev.job_id == first.job_id
            and prev.prev_hash == pool.pool.current_job().prev_block_internal
        )

        lower = difficulty_to_target(2.0)
        sock.sendall(conn.update_channel(opened.channel_id, 0.0, lower))
        assert until(m.SetTarget).maximum_target <= lower
        again = until(m.NewMiningJob)  # the new target applies to the job after it
        assert not again.is_future and again.job_id != first.job_id

        sock.sendall(conn.submit_standard(opened.channel_id, 999, 0, prev.min_ntime, first.version, "x").data)
        refused = until(ShareRejected)
        assert refused.message.error_code == m.ERR_INVALID_JOB_ID and refused.context == "x"
    finally:
        sock.close()
        pool.close()
    assert pool.embedded.rejection_reasons() == {"job not found": 1}


def test_a_thousand_concurrent_v2_connections_to_the_pool_complete_the_handshake_and_get_a_job():
    count = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 256  # both ends of every connection live in this process
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files; the hard limit here is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    pool = V2Pool()
    port = pool.v2_port

    async def one(done: list, all_in: asyncio.Event, release: asyncio.Event) -> None:
        conn = ClientConnection(IDENTITY.authority_key)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(conn.initiate())
            job = None
            while True:
                data = await reader.read(65536)
                assert data, "the pool closed a healthy connection"
                for event in conn.receive_data(data):
                    if isinstance(event, HandshakeComplete):
                        writer.write(conn.setup_connection("127.0.0.1", port))
                    elif isinstance(event, m.SetupConnectionSuccess):
                        writer.write(conn.open_standard_channel("load", 1e6).data)
                    elif isinstance(event, m.NewMiningJob):
                        job = event
                    elif isinstance(event, m.SetNewPrevHash) and job is not None and event.job_id == job.job_id:
                        done.append(1)
                        if len(done) == count:
                            all_in.set()
                        await release.wait()  # every connection stays open until all have their job
                        return
        finally:
            writer.close()

    async def run() -> int:
        done, all_in, release = [], asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(one(done, all_in, release)) for _ in range(count)]
        waiter = asyncio.create_task(all_in.wait())
        finished, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            task.result()
        concurrent = pool.listener.server.connections
        release.set()
        await asyncio.gather(*tasks)
        return concurrent

    try:
        assert asyncio.run(asyncio.wait_for(run(), 240)) == count
    finally:
        pool.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert pool.summary()["connections"] == count


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
